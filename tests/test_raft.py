"""The reference Raft (labkit.systems.raft): unit tests on a fake context, simulator sweeps under a
seeded nemesis, durability, liveness, the idle message budget, and real processes.

LABKIT_RAFT_SEEDS sets the sweep size (default 200, the issue's figure; the sweep of a
short scenario takes about 15 s)."""
from __future__ import annotations

import os
import random

import pytest

import labkit
from labkit.checkers import applied_exactly_once, check_raft, leader_within, message_budget, progress
from labkit.checkers.raft import leaderless_ms
from labkit.sweep import sweep
from labkit.history import History, Op
from labkit.systems.raft import LEN_KEY, TERM_KEY, Expired, Raft, RaftKV
from labkit.recorder import KVProtocol
from labkit.runtime.storage import Storage
from labkit.testing import FakeContext

SEEDS = int(os.environ.get("LABKIT_RAFT_SEEDS", "200"))


def follower(log=(), term=1, voted_for=None, cls=Raft):
    """A node started on storage holding ``log`` and ``term``; writes are recorded with how
    many messages had been sent at that moment."""
    store = {TERM_KEY: [term, voted_for], LEN_KEY: len(log)}
    if log:
        store["raft/log/1"] = [list(e) for e in log]                       # one chunk
    ctx = FakeContext("n1", ["n2", "n3"], storage=store)
    writes: list[tuple[str, int]] = []
    data = {k: ctx.storage._data[k] for k in ctx.storage._data}

    def on_write(*args) -> None:                     # (key, value) or ({key: value, ...})
        for key in (args[0] if isinstance(args[0], dict) else [args[0]]):
            writes.append((key, len(ctx.sent)))
    ctx.storage = Storage("n1", data, on_write=on_write)
    node = cls()
    ctx.start(node)
    return node, ctx, writes


# ---- §5.2 / §5.4.1 voting -----------------------------------------------------------------
def vote(ctx, node, src="n2", term=2, last_index=0, last_term=0):
    ctx.deliver(node, "request_vote", src=src, term=term, last_log_index=last_index, last_log_term=last_term)
    return ctx.sent[-1]


def test_a_vote_is_durable_before_the_reply_and_given_once_per_term():
    node, ctx, writes = follower()
    reply = vote(ctx, node, "n2", term=2)
    assert reply.type == "request_vote_ok" and reply.body == {"term": 2, "granted": True}
    assert ctx.storage[TERM_KEY] == [2, "n2"]
    assert (TERM_KEY, 0) in writes                   # written while the outbox was still empty
    assert vote(ctx, node, "n3", term=2).body["granted"] is False   # one vote per term
    assert vote(ctx, node, "n2", term=2).body["granted"] is True    # the same candidate again
    assert vote(ctx, node, "n3", term=3).body["granted"] is True    # a new term, a new vote


def test_votes_go_only_to_up_to_date_logs():
    log = [[1, "a"], [2, "b"]]
    for last_index, last_term, granted in [(2, 2, True), (5, 2, True), (1, 2, False), (9, 1, False), (1, 3, True)]:
        node, ctx, _ = follower(log, term=2)
        assert vote(ctx, node, term=3, last_index=last_index, last_term=last_term).body["granted"] is granted, \
            (last_index, last_term)
    node, ctx, _ = follower(log, term=4)
    assert vote(ctx, node, term=3, last_index=9, last_term=3).body == {"term": 4, "granted": False}


def test_a_higher_term_makes_a_leader_step_down():
    node, ctx, _ = follower(term=1)
    ctx.advance(400)                                 # election timeout: a candidate of term 2
    assert node.role == "candidate" and node.term == 2 and ctx.storage[TERM_KEY] == [2, "n1"]
    ctx.deliver(node, "request_vote_ok", src="n2", term=2, granted=True)
    assert node.role == "leader" and node.log == [[2, None]]     # §8: the no-op of its term
    vote(ctx, node, "n3", term=5, last_index=0)
    assert node.role == "follower" and node.term == 5 and node.voted_for is None


# ---- §5.3 AppendEntries --------------------------------------------------------------------
def append(ctx, node, prev, prev_term, entries, commit=0, term=3):
    ctx.deliver(node, "append_entries", src="n2", term=term, prev_index=prev, prev_term=prev_term,
                entries=entries, commit=commit)
    return ctx.sent[-1]


def test_append_entries_rejects_with_conflict_information():
    node, ctx, _ = follower([[1, "a"], [2, "b"], [2, "c"]], term=3)
    r = append(ctx, node, 7, 3, [])
    assert r.body["success"] is False and r.body["conflict_index"] == 4 and r.body["conflict_term"] is None
    r = append(ctx, node, 3, 3, [])
    assert r.body["conflict_term"] == 2 and r.body["conflict_index"] == 2   # first index of term 2
    r = append(ctx, node, 1, 1, [], term=2)                                  # a stale leader
    assert r.body == {"term": 3, "success": False, "prev_index": 1, "conflict_index": 0, "conflict_term": None}


def test_append_entries_truncates_a_conflict_durably_before_replying():
    node, ctx, writes = follower([[1, "a"], [2, "b"], [2, "c"]], term=3)
    r = append(ctx, node, 1, 1, [[3, "x"]], commit=5)
    assert r.body == {"term": 3, "success": True, "match_index": 2}
    assert node.log == [[1, "a"], [3, "x"]] and node.commit_index == 2   # min(leader commit, last new)
    assert node.load_log(ctx) == node.log and ctx.storage[LEN_KEY] == 2
    assert ctx.storage["raft/log/2"] == [[3, "x"]]                        # the new chunk
    sent_before = len(ctx.sent) - 1
    assert {k for k, n in writes if n == sent_before} >= {LEN_KEY, "raft/log/2"}
    notes = [e for e in ctx.events if e.kind == "note" and e.get("what") == "log"]
    assert notes[-1].get("index") == 2 and notes[-1].get("entries") == [[3, "x"]]


def test_a_stale_append_does_not_truncate_matching_entries():
    node, ctx, writes = follower([[1, "a"], [3, "x"], [3, "y"]], term=3)
    n = len(writes)
    r = append(ctx, node, 0, 0, [[1, "a"]])          # old, reordered: entries agree
    assert r.body["match_index"] == 1 and node.log == [[1, "a"], [3, "x"], [3, "y"]] and len(writes) == n


def test_restart_recovers_term_vote_and_log_and_notes_the_log():
    node, ctx, _ = follower([[1, "a"], [2, "b"]], term=2, voted_for="n3")
    assert (node.term, node.voted_for, node.log, node.commit_index) == (2, "n3", [[1, "a"], [2, "b"]], 0)
    notes = [dict(e.data) for e in ctx.events if e.kind == "note"]
    assert notes[:2] == [{"what": "state", "role": "follower", "term": 2},
                         {"what": "log", "index": 1, "entries": [[1, "a"], [2, "b"]]}]


# ---- §9.6 PreVote --------------------------------------------------------------------------
class PreVoteRaft(Raft):
    PRE_VOTE = True


def test_prevote_asks_before_raising_the_term_and_persists_nothing():
    node, ctx, writes = follower(term=2, cls=PreVoteRaft)
    ctx.advance(400)                                 # the election timer fires
    asks = ctx.outbox("pre_vote")
    assert {m.dst for m in asks} == {"n2", "n3"} and asks[0].body == {"term": 3, "last_log_index": 0,
                                                                      "last_log_term": 0}
    assert (node.term, node.role, ctx.storage[TERM_KEY]) == (2, "follower", [2, None]) and not writes
    assert not ctx.outbox("request_vote")
    ctx.deliver(node, "pre_vote_ok", src="n2", term=2, granted=True)       # with itself: 2 of 3
    assert (node.term, node.role, ctx.storage[TERM_KEY]) == (3, "candidate", [3, "n1"])
    assert ctx.outbox("request_vote")[-1].body["term"] == 3


def test_prevote_refused_keeps_the_term_and_a_stale_yes_does_not_count_after_a_new_term():
    node, ctx, _ = follower(term=2, cls=PreVoteRaft)
    ctx.advance(400)
    ctx.deliver(node, "pre_vote_ok", src="n2", term=2, granted=False)
    ctx.deliver(node, "pre_vote_ok", src="n3", term=2, granted=False)
    assert (node.term, node.role) == (2, "follower")
    ctx.deliver(node, "pre_vote_ok", src="n2", term=5, granted=False)      # a real, higher term
    assert node.term == 5 and node.prevotes is None
    ctx.deliver(node, "pre_vote_ok", src="n3", term=5, granted=True)       # an answer to the old ask
    assert (node.term, node.role) == (5, "follower")


def test_prevote_is_granted_only_to_an_up_to_date_log_when_no_leader_was_heard_lately():
    log = [[1, "a"], [2, "b"]]
    node, ctx, writes = follower(log, term=2, cls=PreVoteRaft)
    n = len(writes)

    def ask(term, last_index, last_term):
        ctx.deliver(node, "pre_vote", src="n2", term=term, last_log_index=last_index, last_log_term=last_term)
        return ctx.sent[-1]
    assert ask(3, 2, 2).body == {"term": 2, "granted": True}
    assert ask(3, 1, 2).body["granted"] is False                           # log behind
    assert ask(2, 5, 2).body["granted"] is False                           # not above our term
    assert (node.term, node.voted_for, len(writes)) == (2, None, n)        # a pre-vote changes nothing
    ctx.deliver(node, "append_entries", src="n3", term=2, prev_index=2, prev_term=2, entries=[], commit=0)
    assert ask(3, 2, 2).body["granted"] is False                           # n3 leads: it is alive
    ctx.advance(PreVoteRaft.ELECTION_TIMEOUT[0] - 1)
    assert ask(3, 2, 2).body["granted"] is False
    ctx.advance(2)
    assert ask(3, 2, 2).body["granted"] is True


def rejoin_disruption(cls: type, seed: int, apart_s: float = 1.5) -> tuple[int, float, bool]:
    """Cut one follower off an idle five-node cluster for ``apart_s``, heal, and measure: how
    far the highest term rose after the heal, how many ms there was no leader, and whether
    the leader of before the heal still leads."""
    with labkit.Cluster(cls, n=5, runtime="sim", seed=seed) as c:
        c.set_link(delay=2, jitter=1)
        c.run_for(1.0)
        leader = current_leader(c)
        lonely = next(n for n in c.ids if n != leader)
        c.isolate(lonely)
        c.run_for(apart_s)
        term = max(e["term"] for e in c.journal.filter(kind="note", node=[n for n in c.ids if n != lonely])
                   if e["what"] == "state")
        t = c.now
        c.heal()
        c.run_for(1.5)
        assert check_raft(c.journal).valid is True
        top = max(e["term"] for e in c.journal.filter(kind="note") if e["what"] == "state")
        return top - term, leaderless_ms(c.journal, since=t, until=c.now), current_leader(c) == leader


def test_prevote_stops_a_rejoining_node_from_deposing_the_leader():
    without = [rejoin_disruption(RaftKV, seed) for seed in range(10)]
    with_pv = [rejoin_disruption(type("PreVoteKV", (RaftKV,), {"PRE_VOTE": True}), seed) for seed in range(10)]
    assert all(bump > 0 and gap > 0 for bump, gap, _ in without), without     # deposed every time
    assert all(r == (0, 0.0, True) for r in with_pv), with_pv                  # never


def test_prevote_still_elects_after_the_leader_dies():
    def scenario(seed: int) -> None:
        with labkit.Cluster(type("PreVoteKV", (RaftKV,), {"PRE_VOTE": True}), n=5, runtime="sim", seed=seed) as c:
            c.nemesis(["partition", "kill", "pause"], every=(0.2, 0.6), duration=(0.2, 0.8), seed=seed)
            history = labkit.workload(c, clients=4, rate=40, duration=2.0, keys=2)
            c.nemesis(None)
            c.heal()
            t = c.now
            c.run_for(2.0)
            assert check_raft(c.journal).valid is True
            assert leader_within(c.journal, after_ms=t, within_ms=1500).valid is True
            assert labkit.check_linearizable(history, model="kv").valid is True
    sweep(scenario, seeds=range(20))


# ---- the leader: batching, backup, §5.4.2 ---------------------------------------------------
def leader(log=(), term=1, cls=RaftKV):
    node, ctx, writes = follower(log, term=term, cls=cls)
    ctx.advance(400)
    ctx.deliver(node, "request_vote_ok", src="n2", term=term + 1, granted=True)
    assert node.role == "leader"
    return node, ctx


def test_a_leader_batches_while_an_append_is_in_flight():
    node, ctx = leader()
    node.MAX_INFLIGHT = 1                                           # no pipelining: pure batching
    first = len(ctx.outbox("append_entries", dst="n2"))
    for k in range(5):
        ctx.deliver(node, "write", src="c1", key=k, value=k)
    assert node.last_index == 1                                     # queued for the round's end
    ctx.advance(0)                                                  # group commit: one append
    log_notes = [e for e in ctx.events if e.kind == "note" and e.get("what") == "log"]
    assert log_notes[-1]["index"] == 2 and len(log_notes[-1]["entries"]) == 5
    assert len(ctx.outbox("append_entries", dst="n2")) == first     # one in flight: nothing new yet
    inflight = ctx.outbox("append_entries", dst="n2")[-1]
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=inflight.id, term=node.term, success=True,
                match_index=1)
    batch = ctx.outbox("append_entries", dst="n2")[-1]
    assert batch.body["prev_index"] == 1 and [e[1]["value"] for e in batch.body["entries"]] == [0, 1, 2, 3, 4]
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=batch.id, term=node.term, success=True, match_index=6)
    assert node.commit_index == 6 and [m.type for m in ctx.outbox(dst="c1")] == ["write_ok"] * 5


def test_a_leader_pipelines_batches_and_a_rejection_resets_the_pipeline():
    node, ctx = leader()                                            # log: the no-op, in flight to n2
    node.MAX_BATCH = 2
    for k in range(6):
        ctx.deliver(node, "write", src="c1", key=k, value=k)
    ctx.advance(0)
    sent = ctx.outbox("append_entries", dst="n2")
    assert [(m.body["prev_index"], len(m.body["entries"])) for m in sent] == [(0, 1), (1, 2), (3, 2), (5, 2)]
    assert node.next_index["n2"] == 8 and len(node.inflight["n2"]) == 4
    # n2 lacks the no-op (its AppendEntries was lost): the second batch is rejected
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=sent[1].id, term=node.term, success=False,
                prev_index=1, conflict_index=1, conflict_term=None)
    again = ctx.outbox("append_entries", dst="n2")[len(sent):]
    assert node.inflight["n2"].keys() == {m.id for m in again}
    assert [(m.body["prev_index"], len(m.body["entries"])) for m in again][0] == (0, 2)
    # a late rejection of a batch the pipeline already dropped changes nothing
    before = (node.next_index["n2"], dict(node.inflight["n2"]))
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=sent[2].id, term=node.term, success=False,
                prev_index=3, conflict_index=1, conflict_term=None)
    assert (node.next_index["n2"], dict(node.inflight["n2"])) == before


def test_commands_queued_when_leadership_is_lost_are_refused_not_lost():
    node, ctx = leader()
    ctx.deliver(node, "write", src="c1", key="x", value=1)
    ctx.deliver(node, "request_vote", src="n3", term=node.term + 1, last_log_index=9, last_log_term=9)
    ctx.advance(0)                                                  # the group commit finds a follower
    assert node.role == "follower" and node.last_index == 1         # only the no-op: never appended
    assert [(m.type, m.body.get("code")) for m in ctx.outbox(dst="c1")] == [("error", 11)]
    assert node.waiting == {}


def test_flow_control_holds_commands_beyond_the_uncommitted_limit():
    node, ctx = leader()
    node.MAX_UNCOMMITTED = 3                                        # the no-op is uncommitted too
    for k in range(5):
        ctx.deliver(node, "write", src="c1", key=k, value=k)
    ctx.advance(0)
    assert node.last_index == 3 and len(node.queued) == 3           # no-op + 2; three wait
    ae = ctx.outbox("append_entries", dst="n2")[-1]
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=ae.id, term=node.term, success=True,
                match_index=node.last_index)
    ctx.advance(0)                                                  # committed: room for three more
    assert node.commit_index == 3 and node.last_index == 6 and not node.queued


def test_fast_backup_skips_a_conflicting_term():
    node, ctx = leader([[1, "a"], [1, "b"], [2, "c"], [2, "d"]], term=2, cls=Raft)   # leader of term 3, log of 5
    ae = ctx.outbox("append_entries", dst="n2")[-1]
    assert ae.body["prev_index"] == 4
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=ae.id, term=3, success=False, prev_index=4,
                conflict_index=2, conflict_term=1)
    resend = ctx.outbox("append_entries", dst="n2")[-1]
    assert resend.body["prev_index"] == 2            # resumes past our last entry of term 1
    assert node.next_index["n2"] == 6                # ... and runs ahead optimistically


def test_old_term_entries_commit_only_with_one_of_the_current_term():
    node, ctx = leader([[1, "a"]], term=1, cls=Raft)           # leader of term 2; its log: a, no-op
    node.match_index["n2"] = 1
    node._advance_commit(ctx)
    assert node.commit_index == 0                    # index 1 is on a majority but of term 1
    node.match_index["n2"] = 2
    node._advance_commit(ctx)
    assert node.commit_index == 2


def test_a_retried_command_is_applied_once():
    node, ctx = leader()
    cmd = {"op": "append", "key": "k", "value": 7, "client": "c1", "seq": 3}
    assert node._apply_entry(ctx, cmd) == ({"type": "append_ok"}, True)
    assert node._apply_entry(ctx, cmd) == ({"type": "append_ok"}, False)     # a copy: the first result
    assert node.store == {"k": [7]} and node.sessions["c1"].results == {3: {"type": "append_ok"}}


def test_requests_of_one_client_run_whatever_their_order_in_the_log():
    """§6.3: seq 2 committed after seq 3 (one forwarded, one sent to the leader) still runs,
    once; only a copy is skipped."""
    node, ctx = leader()
    cmd = {"op": "append", "key": "k", "client": "c1"}
    for seq, value in [(3, "B"), (2, "A"), (3, "B"), (2, "A"), (1, "Z")]:
        node._apply_entry(ctx, {**cmd, "seq": seq, "value": value})
    assert node.store == {"k": "BAZ"}


def test_lowest_awaited_releases_results_and_bounds_the_session():
    node, ctx = leader()
    cmd = {"op": "append", "key": "k", "client": "c1"}
    for seq in range(1, 6):
        node._apply_entry(ctx, {**cmd, "seq": seq, "value": seq})
    assert sorted(node.sessions["c1"].results) == [1, 2, 3, 4, 5]
    node._apply_entry(ctx, {**cmd, "seq": 7, "value": 7, "lowest_awaited": 4})   # 1-3 answered, 6 lost
    s = node.sessions["c1"]
    assert s.floor == 4 and sorted(s.results) == [4, 5, 7]
    result, executed = node._apply_entry(ctx, {**cmd, "seq": 2, "value": 2})     # a late copy of 2
    assert not executed and isinstance(result, Expired) and "seq >= 4" in result.text
    assert node._apply_entry(ctx, {**cmd, "seq": 6, "value": 6}) == ({"type": "append_ok"}, True)
    assert node.store == {"k": [1, 2, 3, 4, 5, 7, 6]}
    node.SESSION_LIMIT = 8                                                        # no lowest_awaited:
    for seq in range(8, 40):                                                      # the limit bounds it
        node._apply_entry(ctx, {**cmd, "seq": seq, "value": seq})
    assert 8 <= len(s.results) <= 16 and s.floor == min(s.results) and max(s.results) == 39


def test_malformed_session_fields_get_a_definite_error_naming_the_field():
    node, ctx = leader()
    for body, word in [({"seq": "x"}, "seq"), ({"seq": -1}, "seq"), ({"seq": 3, "lowest_awaited": 4}, "lowest_awaited"),
                       ({"client": 5}, "client")]:
        ctx.deliver(node, "write", src="c1", key="k", value=1, **body)
        reply = ctx.outbox(dst="c1")[-1]
        assert (reply.type, reply.body["code"]) == ("error", 12) and word in reply.body["text"], (body, reply.body)


def test_a_request_queued_when_leadership_is_lost_is_refused_only_if_no_copy_can_commit():
    node, ctx = leader()
    ctx.deliver(node, "write", src="c1", key="x", value=1, seq=5)
    ctx.advance(0)                                                   # appended (uncommitted)
    ctx.deliver(node, "write", src="c1", key="x", value=1, seq=5)    # a duplicate of the message
    ctx.deliver(node, "write", src="c1", key="y", value=2, seq=6)    # a new request
    ctx.deliver(node, "request_vote", src="n3", term=node.term + 1, last_log_index=9, last_log_term=9)
    ctx.advance(0)
    replies = [(m.type, m.body.get("code")) for m in ctx.outbox(dst="c1")]
    assert replies == [("error", 11)], replies                       # only seq 6: seq 5 may yet commit
    assert ("c1", 5) in node.waiting and ("c1", 6) not in node.waiting
    node._commit(ctx, 2)                                             # the new leader commits the copy
    assert [m.type for m in ctx.outbox(dst="c1")][1:] == ["write_ok", "write_ok"]   # both copies answered


def test_a_request_queued_when_leadership_is_lost_is_answered_if_it_was_executed():
    node, ctx = leader()
    ctx.deliver(node, "write", src="c1", key="x", value=1, seq=5)
    ctx.advance(0)
    ae = ctx.outbox("append_entries", dst="n2")[-1]
    ctx.deliver(node, "append_entries_ok", src="n2", in_reply_to=ae.id, term=node.term, success=True,
                match_index=node.last_index)
    assert [m.type for m in ctx.outbox(dst="c1")] == ["write_ok"]
    ctx.deliver(node, "write", src="c1", key="x", value=1, seq=5)    # a late duplicate
    ctx.deliver(node, "request_vote", src="n3", term=node.term + 1, last_log_index=9, last_log_term=9)
    ctx.advance(0)
    assert [m.type for m in ctx.outbox(dst="c1")] == ["write_ok", "write_ok"]   # not a false error 11


# ---- one client id, several requests in flight ------------------------------------------------
class ConcurrentClient:
    """One client id with up to ``depth`` requests in flight, each to a random node (so some
    are forwarded, some go straight to the leader, and they reach the log in any order).
    Every request is its own Jepsen process in the history, so the linearizability checker
    treats them as concurrent. ``lowest_awaited=True`` makes it a §6.3 client: it numbers its
    requests itself (``seq``), sends the lowest seq it still awaits, and retries a request
    unanswered after ``retry_ms`` -- the same seq, to another random node -- until its
    timeout; otherwise the server numbers the requests from their message ids (no retries:
    a resent message would be a new request)."""

    def __init__(self, cluster, client_id: str, rng: random.Random, *, depth: int = 4, timeout_ms: float = 1000,
                 lowest_awaited: bool = False, retry_ms: float = 300, first_process: int = 10_000) -> None:
        self.c, self.id, self.rng, self.depth, self.timeout = cluster, client_id, rng, depth, timeout_ms
        self.explicit, self.retry_ms = lowest_awaited, retry_ms
        self.ops: list[Op] = []
        self.open: dict[int, dict] = {}                   # process -> the request: invoke, seq, message ids
        self.by_mid: dict[str, int] = {}                  # message id -> process
        self.process = first_process
        self.seq = 0
        self.appended = 0
        self.retries = 0

    def _record(self, process, type, f, value, key, error=None):
        op = Op(process, type, f, value, key, self.c.now, len(self.ops), error)
        self.ops.append(op)
        return op

    def send(self, node: str, f: str, key, value=None) -> None:
        typ, body = KVProtocol().request(f, key, value)
        self.process += 1
        req = {"inv": self._record(self.process, "invoke", f, value, key), "typ": typ, "body": body, "mids": []}
        if self.explicit:
            self.seq += 1
            body.update(seq=self.seq, lowest_awaited=min([r["body"]["seq"] for r in self.open.values()] + [self.seq]))
        self.open[self.process] = req
        self._transmit(self.process, node)
        req["timeout"] = self.c.call_at(self.c.now + self.timeout, self._on_timeout, self.process)

    def _transmit(self, process: int, node: str) -> None:
        req = self.open[process]
        mid = self.c.client_send(node, req["typ"], as_client=self.id, on_reply=self._on_reply, **req["body"])
        req["mids"].append(mid)
        self.by_mid[mid] = process
        if self.explicit:
            req["retry"] = self.c.call_at(self.c.now + self.retry_ms, self._retry, process)

    def _retry(self, process: int) -> None:
        if process in self.open:
            self.retries += 1
            self._transmit(process, self.rng.choice(self.c.ids))

    def _close(self, process: int) -> dict:
        req = self.open.pop(process)
        for mid in req["mids"]:
            self.by_mid.pop(mid, None)
            self.c.forget(mid)
        for handle in ("timeout", "retry"):
            if handle in req:
                self.c.cancel(req[handle])
        return req

    def _on_reply(self, ev) -> None:
        process = self.by_mid.get(ev.get("re"))
        if process is None:
            return
        inv = self.open[process]["inv"]
        type, value, error = KVProtocol().outcome(inv.f, inv.value, ev.get("type"), ev.get("body") or {})
        if type == "fail" and len(self.open[process]["mids"]) > 1:
            return                   # a definite error is about that attempt: another may have got through
        self._close(process)
        self._record(inv.process, type, inv.f, value, inv.key, error)

    def _on_timeout(self, process: int) -> None:
        if process in self.open:
            inv = self._close(process)["inv"]
            self._record(inv.process, "info", inv.f, inv.value, inv.key, "timeout")

    def run(self, until_ms: float, keys, every=(4.0, 30.0)) -> None:
        """Keep ``depth`` requests in flight (appends of unique values, and reads) until
        ``until_ms``; call before running the cluster."""
        def tick():
            if self.c.now >= until_ms:
                return
            if len(self.open) < self.depth:
                node = self.rng.choice(self.c.ids)
                key = self.rng.choice(keys)
                if self.rng.random() < 0.75:
                    self.appended += 1
                    self.send(node, "append", key, f"{self.id}:{self.appended};")
                else:
                    self.send(node, "read", key)
            self.c.call_at(self.c.now + self.rng.uniform(*every), tick)
        self.c.call_at(self.c.now, tick)

    def settle(self) -> History:
        while self.open:
            self.c.run_for(0.05)
        return History(self.ops)


def concurrent_requests_of_one_client(c, seed: int, until_ms: float, *, lowest_awaited: bool) -> ConcurrentClient:
    client = ConcurrentClient(c, "c99", random.Random(f"{seed}/concurrent"), lowest_awaited=lowest_awaited)
    client.run(until_ms, keys=["s0", "s1"])
    return client


def each_append_at_most_once(history: History) -> None:
    """No appended value shows up twice in any read (a request executed twice would)."""
    for op in history:
        if op.type == "ok" and op.f == "read" and op.value:
            parts = [p for p in str(op.value).split(";") if p]
            assert len(parts) == len(set(parts)), f"a value was appended twice: read {op.value!r}"


# ---- simulator sweeps under a nemesis -------------------------------------------------------
def chaos(seed: int, cls: type = RaftKV) -> None:
    """Five nodes, a seeded nemesis (partitions, kills, pauses), lossy reordering duplicating
    links, a workload, and one client id with four requests in flight at once (every other
    seed a §6.3 client that sends lowest_awaited); then heal and let it settle: linearizable,
    and Raft's safety properties, every committed request executed exactly once among them."""
    with labkit.Cluster(cls, n=5, runtime="sim", seed=seed) as c:
        c.set_link(drop=0.05, reorder=0.1, reorder_ms=50, duplicate=0.02)
        c.nemesis(["partition", "kill", "pause", "isolate"], every=(0.2, 0.6), duration=(0.2, 0.8), seed=seed)
        concurrent = concurrent_requests_of_one_client(c, seed, c.now + 2000, lowest_awaited=seed % 2 == 1)
        history = labkit.workload(c, clients=6, rate=60, duration=2.0, keys=3)
        c.nemesis(None)
        c.heal()
        mine = concurrent.settle()
        assert not c.crashes, c.crashes[0].get("traceback")
        v = check_raft(c.journal)
        assert v.valid is True, str(v)
        assert v.details["applied_exactly_once"]["checked"] > 0
        lin = labkit.check_linearizable(history, model="kv")
        assert lin.valid is True, str(lin)
        lin = labkit.check_linearizable(mine, model="kv")
        assert lin.valid is True, f"one client, concurrent requests: {lin}"
        each_append_at_most_once(mine)


def test_sweep_safety_under_chaos():
    result = sweep(chaos, seeds=range(SEEDS))
    assert result.passed


# ---- the example: two requests of one client, one forwarded ----------------------------
def two_requests_one_forwarded(c, delay_ms: float = 5.0):
    """Once a leader is known: ``append A`` to a follower (forwarded), then ``append B`` to the
    leader, from the default client; both must be applied once and answered."""
    c.set_link(delay=delay_ms)
    leader = None
    while leader is None:
        c.run_for(0.05)
        leader = current_leader(c) if c.journal.filter(kind="note") else None
    follower = next(n for n in c.ids if n != leader)
    replies = {}
    c.client_send(follower, "append", key="k", value="A", on_reply=lambda ev: replies.setdefault("A", ev.get("type")))
    c.client_send(leader, "append", key="k", value="B", on_reply=lambda ev: replies.setdefault("B", ev.get("type")))
    c.run_for(3.0)
    value = None
    for _ in range(10):                                  # the leader may have changed meanwhile
        reply = c.request(current_leader(c) or leader, "read", key="k", timeout=1000)
        if reply.type == "read_ok":
            value = reply.body["value"]
            break
        c.run_for(0.3)
    assert replies == {"A": "append_ok", "B": "append_ok"}, f"answers: {replies}"
    assert sorted(value) == ["A", "B"], f"k is {value!r}: each append must be applied exactly once"
    v = applied_exactly_once(c.journal)
    assert v.valid is True and v.details["checked"] > 0, str(v)


def test_two_requests_of_one_client_one_forwarded_are_both_applied_in_the_simulator():
    def scenario(seed: int) -> None:
        with labkit.Cluster(RaftKV, n=3, runtime="sim", seed=seed) as c:
            two_requests_one_forwarded(c)
    sweep(scenario, seeds=range(20))


@pytest.mark.processes
def test_two_requests_of_one_client_one_forwarded_are_both_applied_on_processes():
    with labkit.Cluster(RaftKV, n=3, seed=17) as c:
        two_requests_one_forwarded(c)


@pytest.mark.processes
def test_processes_one_client_with_requests_in_flight_is_linearizable_and_exactly_once():
    with labkit.Cluster(RaftKV, n=3, seed=18) as c:
        c.run_for(0.5)
        c.set_link(delay=3, jitter=2)
        concurrent = concurrent_requests_of_one_client(c, 18, c.now + 2000, lowest_awaited=False)
        c.call_at(c.now + 800, lambda: c.kill(current_leader(c)) if current_leader(c) else None)
        c.run_for(2.0)
        for n in c.ids:
            if c.status()[n].state != "up":
                c.restart(n)
        mine = concurrent.settle()
        c.run_for(0.5)
        assert not c.crashes
        assert sum(op.type == "ok" for op in mine) > 20
        lin = labkit.check_linearizable(mine, model="kv")
        assert lin.valid is True, str(lin)
        each_append_at_most_once(mine)
        v = check_raft(c.journal)
        assert v.valid is True and v.details["applied_exactly_once"]["checked"] > 0, str(v)


# ---- durability -------------------------------------------------------------------------------
def acked_survive_a_full_restart(cluster, seconds: float = 2.0, while_down=None) -> None:
    """A workload of appends, every node killed, ``while_down(cluster)`` (e.g. tear the last
    write of each storage file), every node restarted: each acknowledged append is read back."""
    history = labkit.workload(cluster, clients=4, rate=40, duration=seconds, mix={"append": 1}, keys=3)
    acked = {}
    for p in history.pairs():
        if p.type == "ok":
            acked.setdefault(p.invoke.key, set()).add(p.invoke.value)
    assert acked, "no append was acknowledged"
    for n in cluster.ids:
        cluster.kill(n)
    if while_down is not None:
        while_down(cluster)
    for n in cluster.ids:
        cluster.restart(n)
    rec = labkit.Recorder(cluster, timeout_ms=1000)
    client = rec.client()
    for key, values in sorted(acked.items()):
        for _ in range(10):                          # until a leader is elected and answers
            pair = client.call("read", key=key)
            if pair.type == "ok":
                break
        assert pair.type == "ok", f"no answer to a read of {key!r} after the restart"
        missing = values - set(pair.completion.value or [])
        assert not missing, f"acknowledged appends {sorted(missing)} to key {key!r} were lost"


def test_durability_in_the_simulator():
    def scenario(seed: int) -> None:
        with labkit.Cluster(RaftKV, n=3, runtime="sim", seed=seed) as c:
            c.nemesis(["kill"], every=(0.3, 0.6), duration=(0.1, 0.4), seed=seed)
            acked_survive_a_full_restart(c)
            assert check_raft(c.journal).valid is True
    sweep(scenario, seeds=range(20))


# ---- liveness -----------------------------------------------------------------------------------
def current_leader(cluster) -> str | None:
    states = {}
    for e in cluster.journal.filter(kind="note"):
        if e.get("what") == "state":
            states[e.node] = (e.get("role"), e.get("term"))
    top = max(t for _, t in states.values())
    return next((n for n, s in states.items() if s == ("leader", top)), None)


def test_a_new_leader_soon_after_the_leader_dies_and_progress_after_heal():
    def scenario(seed: int) -> None:
        with labkit.Cluster(RaftKV, n=5, runtime="sim", seed=seed) as c:
            c.run_for(1.0)
            old = current_leader(c)
            assert old is not None, "no leader after 1 s"
            t = c.now
            c.kill(old)
            c.run_for(4.0)
            v = leader_within(c.journal, after_ms=t, within_ms=10 * RaftKV.ELECTION_TIMEOUT[1])
            assert v.valid is True, str(v)
            new = current_leader(c)
            c.partition([new], [n for n in c.ids if n != new])    # the leader in a minority of one
            c.run_for(1.0)
            c.heal()
            t = c.now
            labkit.workload(c, clients=2, rate=20, duration=1.0)
            assert progress(c.journal, after_ms=t, within_ms=3000).valid is True
            assert check_raft(c.journal).valid is True
    sweep(scenario, seeds=range(30))


def test_an_idle_cluster_keeps_to_its_message_budget():
    with labkit.Cluster(RaftKV, n=3, runtime="sim", seed=5) as c:
        c.run_for(3.0)
        # 2 followers x (AppendEntries + reply) every 50 ms = 80/s; MIT allows 60 RPCs/s
        v = message_budget(c.journal, since=1000, until=3000, per_second=100)
        assert v.valid is True, str(v)
        assert v.details["by_type"].keys() == {"append_entries", "append_entries_ok"}
        assert message_budget(c.journal, since=1000, until=3000, per_second=20).failed


# ---- real processes -------------------------------------------------------------------------------
@pytest.mark.processes
def test_processes_workload_with_a_leader_kill_is_linearizable():
    with labkit.Cluster(RaftKV, n=3, seed=11) as c:
        c.run_for(1.0)
        leader_id = current_leader(c)
        assert leader_id is not None
        c.call_at(c.now + 1000, c.kill, leader_id)
        c.call_at(c.now + 2000, c.restart, leader_id)
        history = labkit.workload(c, clients=5, rate=100, duration=3.0)
        assert not c.crashes
        assert sum(p.type == "ok" for p in history.pairs()) > 50
        lin = labkit.check_linearizable(history, model="kv")
        assert lin.valid is True, str(lin)
        v = check_raft(c.journal)
        assert v.valid is True, str(v)


@pytest.mark.processes
def test_processes_durability():
    with labkit.Cluster(RaftKV, n=3, seed=12) as c:
        c.run_for(1.0)
        acked_survive_a_full_restart(c, seconds=1.5)
        assert check_raft(c.journal).valid is True


@pytest.mark.parametrize("seed", range(20))
def test_chunked_log_reloads_exactly_after_any_appends_and_truncations(seed):
    """Random appends and truncations: the log read back from storage (as after a restart) is
    always the log in memory."""
    import random
    rng = random.Random(seed)
    node, ctx, _ = follower()
    for step in range(40):
        index = rng.randint(1, len(node.log) + 1)
        entries = [[step, f"c{step}.{k}"] for k in range(rng.randint(0, 4))]
        before = [list(e) for e in node.log]
        node._write_log(ctx, index, entries)
        assert node.load_log(ctx) == node.log == before[:index - 1] + entries
