"""The Raft checkers (labkit.checkers.raft) over hand-built journals, a hand-driven Figure 8
run, and buggy Raft variants in the simulator: each checker must be able to fail."""
from __future__ import annotations

import pytest

import labkit
from labkit import Event, Journal
from labkit.checkers import (applied_exactly_once, check_raft, commit_monotonic, election_safety,
                             leader_completeness, leader_within, log_matching, message_budget, progress,
                             state_machine_safety)
from labkit.sweep import SweepFailed, sweep
from labkit.systems.raft import TERM_KEY, Raft, RaftKV
from labkit.testing import FakeContext


# ---- hand-built journals ----------------------------------------------------------------------
class J:
    """A tiny journal builder: one method per note kind; time advances by 1 ms per event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def _add(self, kind: str, node: str, **data) -> "J":
        self.events.append(Event(float(len(self.events)), kind, node, None, data))
        return self

    def start(self, node: str, inc: int = 1, log=(), term: int = 0) -> "J":
        self._add("start", node, incarnation=inc)
        return self.state(node, "follower", term).log(node, 1, list(log))

    def state(self, node, role, term):
        return self._add("note", node, what="state", role=role, term=term)

    def log(self, node, index, entries):
        return self._add("note", node, what="log", index=index, entries=[list(e) for e in entries])

    def commit(self, node, index):
        return self._add("note", node, what="commit", index=index)

    def apply(self, node, index, term, command, **more):
        return self._add("note", node, what="apply", index=index, term=term, command=command, **more)

    def applies(self, node, index, last, skipped=None):
        more = {} if skipped is None else {"skipped": list(skipped)}
        return self._add("note", node, what="apply", index=index, last=last, **more)

    def kill(self, node):
        return self._add("kill", node)

    def send(self, src, dst, t=None):
        ev = Event(float(len(self.events)) if t is None else t, "send", src, f"{src}.1.{len(self.events)}",
                   {"src": src, "dst": dst, "type": "append_entries", "body": {}})
        self.events.append(ev)
        return self

    @property
    def journal(self) -> Journal:
        return Journal(self.events)


def healthy() -> J:
    j = J()
    for n in ("n1", "n2", "n3"):
        j.start(n)
    j.state("n1", "candidate", 1).state("n1", "leader", 1).log("n1", 1, [[1, "a"], [1, "b"]])
    j.state("n2", "follower", 1).log("n2", 1, [[1, "a"], [1, "b"]])
    j.commit("n1", 2).apply("n1", 1, 1, "a").apply("n1", 2, 1, "b")
    j.commit("n2", 1).apply("n2", 1, 1, "a")
    j.kill("n2").start("n2", 2, [[1, "a"], [1, "b"]], term=1)
    j.commit("n2", 2).apply("n2", 1, 1, "a").apply("n2", 2, 1, "b")
    return j


def test_a_healthy_journal_passes_every_checker():
    v = check_raft(healthy().journal)
    assert v.valid is True, str(v)
    assert v.checker == "raft" and "election_safety" in v.details


def test_election_safety_names_both_leaders():
    j = healthy().state("n2", "candidate", 2).state("n2", "leader", 2).state("n3", "candidate", 2)
    assert election_safety(j.journal).passed
    j.state("n3", "leader", 2)
    v = election_safety(j.journal)
    assert v.failed and "term 2 has two leaders: n2" in v.summary and "n3" in v.summary
    assert v.explanations[0].term == 2 and v.explanations[0].evidence["leaders"] == ["n2", "n3"]
    assert check_raft(j.journal).failed


def test_log_matching_reports_the_first_differing_entry():
    j = J().start("n1").start("n2")
    j.log("n1", 1, [[1, "a"], [2, "b"], [2, "c"]]).log("n2", 1, [[1, "a"], [2, "X"], [2, "c"]])
    v = log_matching(j.journal)
    assert v.failed and "index 2, term 2" in v.summary and "'b'" in v.summary and "'X'" in v.summary
    assert v.explanations[0].index == 2 and v.explanations[0].evidence["entries"] == [[2, "b"], [2, "X"]]


def test_log_matching_same_entry_after_different_prefixes():
    j = J().start("n1").start("n2")
    j.log("n1", 1, [[1, "a"], [3, "b"]]).log("n2", 1, [[2, "a"], [3, "b"]])
    v = log_matching(j.journal)
    assert v.failed and "index 2" in v.summary and "different entries" in v.summary


def test_log_matching_allows_truncating_an_uncommitted_suffix():
    j = J().start("n1").start("n2")
    j.log("n1", 1, [[1, "a"], [2, "b"]]).log("n2", 1, [[1, "a"], [3, "c"]]).log("n1", 2, [[3, "c"], [3, "d"]])
    assert log_matching(j.journal).passed


def test_state_machine_safety_catches_conflicts_gaps_and_uncommitted_applies():
    j = healthy()
    j.start("n3", 1, [[1, "a"], [2, "Z"]]).commit("n3", 2).apply("n3", 1, 1, "a").apply("n3", 2, 2, "Z")
    v = state_machine_safety(j.journal)
    assert v.failed and "index 2 was applied as [term 1, 'b'] by n1" in v.summary
    assert "[term 2, 'Z'] by n3" in v.summary
    gap = J().start("n1", 1, [[1, "a"], [1, "b"]]).commit("n1", 2).apply("n1", 2, 1, "b")
    assert "right after index 0" in state_machine_safety(gap.journal).summary
    early = J().start("n1", 1, [[1, "a"]]).apply("n1", 1, 1, "a")
    assert "committed only up to 0" in state_machine_safety(early.journal).summary


def test_leader_completeness_finds_the_missing_committed_entry():
    j = healthy().state("n3", "candidate", 2).state("n3", "leader", 2)     # n3's log is empty
    v = leader_completeness(j.journal)
    assert v.failed and "n3 became leader of term 2" in v.summary and "entry 1 [term 1, 'a']" in v.summary
    assert v.explanations[0].index == 1 and v.explanations[0].evidence["committed_by"] == "n1"
    # a leader of the same term as the commit does not need it
    same = J().start("n1", 1, [[1, "a"]]).state("n1", "leader", 1).commit("n1", 1).state("n2", "leader", 1)
    assert leader_completeness(same.journal).passed


def test_commit_monotonic_catches_backwards_rewrites_and_overreach():
    back = J().start("n1", 1, [[1, "a"], [1, "b"]]).commit("n1", 2).commit("n1", 1)
    assert "back from 2 to 1" in commit_monotonic(back.journal).summary
    rewrite = J().start("n1", 1, [[1, "a"], [1, "b"]]).commit("n1", 2).log("n1", 2, [[2, "c"]])
    assert "rewrote its log from index 2" in commit_monotonic(rewrite.journal).summary
    over = J().start("n1", 1, [[1, "a"]]).commit("n1", 3)
    assert "its log has 1 entries" in commit_monotonic(over.journal).summary
    two = J().start("n1", 1, [[1, "a"]]).start("n2", 1, [[2, "b"]]).commit("n1", 1).commit("n2", 1)
    v = commit_monotonic(two.journal)
    assert v.failed and "index 1 was committed as [term 1, 'a'] by n1" in v.summary
    assert commit_monotonic(healthy().journal).passed       # a restart starts again from 0


def test_bad_input_gets_a_clear_error():
    with pytest.raises(TypeError, match="labkit.Journal"):
        check_raft("not a journal")
    with pytest.raises(TypeError, match="labkit.Journal"):
        election_safety([1, 2, 3])
    bad = J().start("n1")._add("note", "n1", what="log", index=0, entries=[])
    with pytest.raises(ValueError, match="index must be an int >= 1"):
        log_matching(bad.journal)
    gap = J().start("n1")._add("note", "n1", what="log", index=5, entries=[[1, "x"]])
    with pytest.raises(ValueError, match="leaves a gap"):
        check_raft(gap.journal)
    role = J().start("n1").state("n1", "boss", 1)
    with pytest.raises(ValueError, match="role must be one of"):
        election_safety(role.journal)


def test_leader_within_and_progress():
    j = healthy()                                    # n1 leads term 1 from t=7
    assert leader_within(j.journal, after_ms=0, within_ms=20).passed
    j.kill("n1")
    t = j.events[-1].t
    for _ in range(10):
        j._add("log", "n2", text="waiting")
    v = leader_within(j.journal, after_ms=t, within_ms=5)
    assert v.failed and "no leader within 5 ms" in v.summary
    assert leader_within(j.journal, after_ms=t, within_ms=500).unknown
    j.state("n2", "candidate", 2).state("n2", "leader", 2)
    assert leader_within(j.journal, after_ms=t, within_ms=50).passed
    assert progress(j.journal, after_ms=t, within_ms=5).failed
    j.commit("n2", 3)
    assert progress(j.journal, after_ms=t, within_ms=50).passed
    assert progress(j.journal, after_ms=t, within_ms=5000).passed


def test_message_budget_counts_node_to_node_sends():
    j = J()
    for k in range(100):
        j.send("n1", "n2", t=k * 10.0)
    j.send("c1", "n1", t=999.0)                     # clients are not counted
    assert message_budget(j.journal, since=0, until=999, per_second=101).passed
    v = message_budget(j.journal, since=0, until=999, per_second=50)
    assert v.failed and v.details["messages"] == 100 and v.details["by_type"] == {"append_entries": 100}
    assert message_budget(j.journal, since=2000, until=5000, per_second=50).unknown
    assert message_budget(j.journal, since=500, until=500, per_second=50).unknown


# ---- Figure 8, driven by hand -----------------------------------------------------------------
class Net:
    """Three nodes on FakeContexts; the test decides which message is delivered when."""

    def __init__(self, cls: type[Raft]) -> None:
        self.ids, self.cls = ("n1", "n2", "n3"), cls
        self.ctx: dict[str, FakeContext] = {}
        self.node: dict[str, Raft] = {}
        self.seen: dict[str, int] = {}
        self.orig: dict[str, str] = {}               # delivered message id -> the sender's id
        self.done: list[Event] = []                  # events of incarnations that ended
        for n in self.ids:
            self.restart(n)

    def restart(self, n: str) -> None:
        """A crash and a restart: a new node object and context on the same durable storage."""
        old = self.ctx.get(n)
        if old is not None:
            self.done += old.events
        self.ctx[n] = FakeContext(n, [p for p in self.ids if p != n], incarnation=old.incarnation + 1 if old else 1,
                                  storage=dict(old.storage.items()) if old else None)
        self.ctx[n]._fake.t = self.now
        self.node[n] = self.cls()
        self.seen[n] = 0
        self.ctx[n].start(self.node[n])

    @property
    def now(self) -> float:
        return max((c.now for c in self.ctx.values()), default=0.0)

    def pending(self, src: str) -> list:
        out = self.ctx[src].sent[self.seen[src]:]
        self.seen[src] = len(self.ctx[src].sent)
        return out

    def deliver(self, src: str, to: set[str]) -> None:
        """Deliver what ``src`` sent since last time to the nodes in ``to``; replies come back."""
        for m in self.pending(src):
            if m.dst in to:
                re = self.orig.get(m.in_reply_to, m.in_reply_to) if m.in_reply_to else None
                d = self.ctx[m.dst].deliver(self.node[m.dst], m.type, src=src, in_reply_to=re, **m.body)
                self.orig[d.id] = m.id
                for r in self.pending(m.dst):
                    if r.dst == src:
                        self.ctx[src].deliver(self.node[src], r.type, src=m.dst,
                                              in_reply_to=self.orig.get(r.in_reply_to), **r.body)
        self.tick()

    def elect(self, n: str, voters: set[str]) -> None:
        for _ in range(3):                           # a stale term is learned from the replies
            self.node[n].on_timer(self.ctx[n], "election")
            self.deliver(n, voters)
            if self.node[n].role == "leader":
                return
        raise AssertionError(f"{n} was not elected")

    def tick(self) -> None:
        t = self.now + 1.0
        for c in self.ctx.values():
            c._fake.t = t

    @property
    def journal(self) -> Journal:
        evs = sorted(self.done + [e for c in self.ctx.values() for e in c.events], key=lambda e: e.t)
        return Journal(evs)


class NoNoop(Raft):
    NOOP_ON_ELECTION = False


class Figure8Bug(NoNoop):
    """Counts replicas of an old term's entry toward commit: the bug of the paper's Figure 8."""

    def commit_counts(self, index: int) -> bool:
        return True


def figure8(cls: type[Raft]) -> Net:
    net = Net(cls)
    net.elect("n1", {"n2"})                            # term 1
    net.node["n1"].propose(net.ctx["n1"], "A")        # index 1, term 1: stays on n1, which crashes
    net.restart("n1")
    net.elect("n2", {"n3"})                            # term 2
    net.node["n2"].propose(net.ctx["n2"], "B")        # index 1, term 2: stays on n2, which crashes
    net.restart("n2")
    net.elect("n1", {"n3"})                            # term 3: n1 (last term 1) beats n3's empty log
    for _ in range(2):                                 # n1 backs up and copies A to n3 ...
        net.node["n1"].on_timer(net.ctx["n1"], "heartbeat")
        net.deliver("n1", {"n3"})
    net.restart("n1")                                  # ... and crashes before n3 hears of a commit
    net.elect("n2", {"n3"})                            # term 4: n2's last term 2 > n3's 1
    for _ in range(3):                                 # n2 overwrites index 1 on n3 with B
        net.node["n2"].on_timer(net.ctx["n2"], "heartbeat")
        net.deliver("n2", {"n3"})
    return net


def commits(net: Net, node: str) -> list[int]:
    return [e["index"] for e in net.journal.filter(kind="note", node=node) if e.get("what") == "commit"]


def test_figure8_bug_is_caught_and_the_correct_rule_is_safe():
    bad = figure8(Figure8Bug)
    assert commits(bad, "n1") == [1] and bad.node["n3"].log == [[2, "B"]]
    v = check_raft(bad.journal)
    assert v.failed
    failed = {name for name, d in v.details.items() if d["violations"]}
    assert {"state_machine_safety", "leader_completeness", "commit_monotonic"} <= failed, str(v)
    assert "n2 became leader of term 4" in str(leader_completeness(bad.journal))
    good = figure8(NoNoop)
    assert commits(good, "n1") == []                   # §5.4.2: the term-1 entry is not committed in term 3
    assert good.node["n3"].log == [[2, "B"]]
    assert check_raft(good.journal).passed, str(check_raft(good.journal))


# ---- buggy variants in the simulator ----------------------------------------------------------
class Tight(RaftKV):
    ELECTION_TIMEOUT = (150.0, 160.0)                  # many simultaneous candidates


class DoubleVoter(Tight):
    """Votes for every up-to-date candidate, even twice in one term."""

    def may_grant_vote(self, candidate, last_log_index, last_log_term):
        return (last_log_term, last_log_index) >= (self.term_at(self.last_index), self.last_index)


class ForgetfulVoter(Tight):
    """Persists its term but not its vote: after a restart it may vote again in that term."""

    def persist_vote(self, ctx, term, voted_for):
        ctx.storage[TERM_KEY] = [term, None]


class NoLogCheck(RaftKV):
    """Votes without the §5.4.1 up-to-date check."""

    def may_grant_vote(self, candidate, last_log_index, last_log_term):
        return self.voted_for in (None, candidate)


def elections(cls, faults, every, duration):
    def scenario(seed: int) -> None:
        with labkit.Cluster(cls, n=5, runtime="sim", seed=seed) as c:
            c.set_link(delay=20, jitter=10)
            c.nemesis(list(faults), every=every, duration=duration, seed=seed)
            c.run_for(5.0)
            v = check_raft(c.journal)
            assert v.valid is True, str(v)
    scenario.__name__ = f"elections_{cls.__name__}"
    return scenario


@pytest.mark.parametrize("cls, faults, every, duration, seeds, catcher", [
    (DoubleVoter, ("kill",), (0.1, 0.3), (0.1, 0.4), 10, "election_safety"),
    (ForgetfulVoter, ("kill",), (0.02, 0.1), (0.0, 0.02), 120, "election_safety"),
])
def test_buggy_voters_are_caught(cls, faults, every, duration, seeds, catcher):
    with pytest.raises(SweepFailed) as err:
        sweep(elections(cls, faults, every, duration), seeds=range(seeds), stop_after=1, quiet=True)
    assert catcher in str(err.value) and "two leaders" in str(err.value)


def test_the_correct_raft_passes_the_same_election_storms():
    sweep(elections(Tight, ("kill",), (0.02, 0.1), (0.0, 0.02)), seeds=range(20), quiet=True)
    sweep(elections(Tight, ("kill",), (0.1, 0.3), (0.1, 0.4)), seeds=range(20), quiet=True)


def test_voting_without_the_up_to_date_check_loses_committed_entries():
    def scenario(seed: int) -> None:
        with labkit.Cluster(NoLogCheck, n=5, runtime="sim", seed=seed) as c:
            c.nemesis(["partition", "kill"], every=(0.2, 0.6), duration=(0.2, 0.8), seed=seed)
            labkit.workload(c, clients=5, rate=50, duration=3.0)
            v = leader_completeness(c.journal)
            assert v.valid is True, str(v)
    with pytest.raises(SweepFailed) as err:
        sweep(scenario, seeds=range(10), stop_after=1, quiet=True)
    assert "became leader of term" in str(err.value) and "committed in term" in str(err.value)


def test_apply_runs_are_checked_against_the_noted_log():
    """``apply(index=i, last=j)`` takes the commands from the node's noted log: two nodes that
    applied different logs at the same index are caught, and a run past the log is an error."""
    from labkit.journal import Event, Journal
    def note(t, node, **f):
        return Event(t, "note", node, None, f)
    ok = [note(1, "n1", what="log", index=1, entries=[[1, "a"], [1, "b"]]), note(2, "n1", what="commit", index=2),
          note(3, "n1", what="apply", index=1, last=2),
          note(4, "n2", what="log", index=1, entries=[[1, "a"], [1, "b"]]), note(5, "n2", what="commit", index=2),
          note(6, "n2", what="apply", index=1, last=2)]
    assert state_machine_safety(Journal(ok)).passed
    bad = ok[:3] + [note(4, "n2", what="log", index=1, entries=[[1, "a"], [2, "X"]]), ok[4], ok[5]]
    v = state_machine_safety(Journal(bad))
    assert v.failed and "index 2 was applied as [term 1, 'b']" in str(v)
    with pytest.raises(ValueError, match="log has 2 entries"):
        state_machine_safety(Journal(ok[:2] + [note(3, "n1", what="apply", index=1, last=3)]))


def test_a_journal_without_raft_notes_is_unknown_not_a_pass():
    class Silent(labkit.Node):
        pass

    with labkit.Cluster(Silent, n=3, runtime="sim", seed=1) as c:
        c.run_for(0.1)
        v = check_raft(c.journal)
    assert v.valid is None and "no Raft notes" in str(v)
    assert all(f(c.journal).valid is None for f in (election_safety, log_matching, state_machine_safety,
                                                      leader_completeness, commit_monotonic, applied_exactly_once))


# ---- applied exactly once: completeness, and client requests executed once (§6.3) ---------------
def req(seq, value, client="c1", **more):
    return {"op": "append", "key": "k", "value": value, "client": client, "seq": seq, **more}


def sessions_journal(log, skipped_n1, skipped_n2=None):
    """n1 leads term 1 with ``log`` (after its no-op); both nodes commit and apply it all."""
    j = J()
    for n in ("n1", "n2"):
        j.start(n)
    entries = [[1, None]] + [[1, c] for c in log]
    j.state("n1", "candidate", 1).state("n1", "leader", 1).log("n1", 1, entries)
    j.state("n2", "follower", 1).log("n2", 1, entries)
    for n, skipped in (("n1", skipped_n1), ("n2", skipped_n1 if skipped_n2 is None else skipped_n2)):
        j.commit(n, len(entries)).applies(n, 1, len(entries), skipped)
    return j


def test_applied_exactly_once_passes_copies_and_requests_out_of_order():
    # seq 3 committed before seq 2 (one forwarded, one sent to the leader): both executed; a copy skipped
    j = sessions_journal([req(3, "B"), req(2, "A"), req(3, "B")], skipped_n1=[4])
    v = applied_exactly_once(j.journal)
    assert v.valid is True and v.details["checked"] == 6, str(v)
    assert check_raft(j.journal).valid is True


def test_applied_exactly_once_catches_a_dropped_committed_request():
    # the old "last seq only" table: seq 2 after seq 3 is skipped, though never executed
    v = applied_exactly_once(sessions_journal([req(3, "B"), req(2, "A")], skipped_n1=[3]).journal)
    assert v.failed and "applied committed entry 3" in str(v) and "a committed command was dropped" in str(v)
    assert v.explanations[0].property == "applied exactly once" and v.explanations[0].index == 3
    assert check_raft(sessions_journal([req(3, "B"), req(2, "A")], skipped_n1=[3]).journal).failed


def test_applied_exactly_once_catches_a_request_executed_twice_and_diverging_nodes():
    v = applied_exactly_once(sessions_journal([req(2, "A"), req(2, "A")], skipped_n1=[]).journal)
    assert v.failed and "executed request 2 of client 'c1' twice: at index 2 and again at index 3" in str(v)
    v = applied_exactly_once(sessions_journal([req(2, "A"), req(2, "A")], skipped_n1=[3], skipped_n2=[]).journal)
    assert v.failed and "skipped by n1" in str(v) and "but executed by n2" in str(v)


def test_applied_exactly_once_allows_skipping_what_the_client_no_longer_awaits():
    log = [req(5, "B", lowest_awaited=5), req(4, "A")]         # the client awaited nothing below 5
    assert applied_exactly_once(sessions_journal(log, skipped_n1=[3]).journal).valid is True
    log = [req(5, "B", lowest_awaited=4), req(4, "A")]         # ... but it still awaited 4
    assert applied_exactly_once(sessions_journal(log, skipped_n1=[3]).journal).failed


def test_applied_exactly_once_requires_up_nodes_to_apply_what_they_committed():
    j = healthy().commit("n1", 2)
    assert applied_exactly_once(j.journal).valid is True
    j = healthy().log("n1", 3, [[1, "c"]]).commit("n1", 3)     # committed, never applied
    v = applied_exactly_once(j.journal)
    assert v.failed and "n1 committed up to index 3 but applied only up to 2" in str(v)
    assert applied_exactly_once(j.kill("n1").journal).valid is True   # a killed node applies nothing more


def test_applied_exactly_once_says_when_requests_were_not_checked_and_rejects_bad_notes():
    v = applied_exactly_once(healthy().journal)                 # apply notes without 'skipped'
    assert v.valid is True and "not checked" in v.summary and v.details["checked"] == 0
    with pytest.raises(ValueError, match="skipped"):
        applied_exactly_once(sessions_journal([req(1, "A")], skipped_n1=[7]).journal)


class LastSeqOnly(RaftKV):
    """The old session table: each client's highest seq and its result only, so a request that
    reaches the log after a newer one of the same client is skipped -- and never answered."""

    def on_start(self, ctx):
        self.last_seq = {}
        super().on_start(ctx)

    def _apply_entry(self, ctx, command):
        if not (isinstance(command, dict) and "client" in command):
            return (None, False) if command is None else (self.apply(ctx, command), True)
        last = self.last_seq.get(command["client"])
        if last is not None and command["seq"] <= last[0]:
            return (last[1] if command["seq"] == last[0] else None), False
        result = self.apply(ctx, command)
        self.last_seq[command["client"]] = [command["seq"], result]
        return result, True

    def client_reply(self, ctx, msg, result):
        if isinstance(result, dict):                   # None: "older than the client's last": silence
            super().client_reply(ctx, msg, result)


def test_the_old_session_table_fails_and_the_reference_passes_the_issue_example():
    from test_raft import two_requests_one_forwarded
    for cls, ok in ((LastSeqOnly, False), (RaftKV, True)):
        with labkit.Cluster(cls, n=3, runtime="sim", seed=3) as c:
            try:
                two_requests_one_forwarded(c)
            except AssertionError as e:
                assert not ok, f"{cls.__name__}: {e}"
                assert "answers: {'B': 'append_ok'}" in str(e), str(e)     # A never answered
            else:
                assert ok, f"{cls.__name__} passed"
            v = applied_exactly_once(c.journal)
            assert v.valid is ok, str(v)
            if not ok:
                assert "a committed command was dropped" in str(v) and "'value': 'A'" in str(v)


def test_the_chaos_sweep_catches_the_old_session_table():
    from test_raft import chaos
    with pytest.raises(SweepFailed) as err:
        sweep(lambda seed: chaos(seed, LastSeqOnly), seeds=range(10), stop_after=1, quiet=True)
    assert "applied_exactly_once" in str(err.value) and "dropped" in str(err.value)
