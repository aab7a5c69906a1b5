"""labkit.explore on the course's own node classes (the solution notebooks' cells, unchanged).

* Chapter 01's causal buffer (exercise 3, ``CausalBuffer`` in the chapter's ``BufferedChat``):
  proved for 3 nodes asking one question each; a FIFO-only buffer fails at depth 3.
* Chapter 05's Raft election (``RaftBase`` + stage 1 ``Election``), 3 nodes, terms <= 2:
  bounded at depth 8; a voter without the up-to-date check (§5.4.1) elects a leader that
  lacks a committed entry.
Golden counts are pinned from this implementation.
"""
from __future__ import annotations

import pytest
from nbcells import cells

import labkit


@pytest.fixture(scope="module")
def chat():
    ns = cells("01_time.ipynb", "CausalBuffer", "BufferedChat", "causal_violations", FAULTS={})

    class OneQuestion(ns["BufferedChat"]):
        QUESTIONS = 1

    class Fifo(ns["CausalBuffer"]):
        def _deliverable(self, sender, vc):          # FIFO per sender, blind to the others
            return vc[sender] == self.vc[sender] + 1

    class FifoChat(OneQuestion):
        def on_start(self, ctx):
            super().on_start(ctx)
            self.buffer = Fifo(ctx.id, self.members)

    def causal(s):
        bad = ns["causal_violations"]({n: s.nodes[n].log for n in s.ids})
        return True if not bad else f"causal violations: {bad}"

    return OneQuestion, FifoChat, causal


def test_causal_buffer_is_proved_for_three_nodes_one_question_each(chat):
    OneQuestion, _, causal = chat
    res = labkit.explore(OneQuestion, n=3, invariants=[causal])
    assert (res.outcome, res.states, res.depth) == ("exhausted", 36435, 15), res


def test_fifo_buffer_fails_at_depth_3(chat):
    _, FifoChat, causal = chat
    res = labkit.explore(FifoChat, n=3, invariants=[causal])
    assert res.outcome == "violation" and len(res.path) == 3
    assert [s.kind for s in res.trace] == ["timer", "deliver", "deliver"]
    assert res.message == "causal violations: [('n3', 'n2.1', 'n1.0')]"
    rep = res.replay()
    assert rep.reproduced and len(rep.journal.filter(kind="deliver")) == 2


@pytest.fixture(scope="module")
def raft():
    Election = cells("05_raft.ipynb", "RaftBase", "Election")["Election"]

    class Logged(Election):
        """n1 and n2 hold entry 1 (term 1), committed on their majority; n3's log is empty."""

        def load(self, ctx):
            return (1, None, [[1, "x"]]) if ctx.id in ("n1", "n2") else (0, None, [])

    class NoUpToDateCheck(Logged):
        def on_request_vote(self, ctx, msg):
            msg.body["last_log_term"] = msg.body["last_log_index"] = 1 << 30    # every log looks fine
            super().on_request_vote(ctx, msg)

    return Election, Logged, NoUpToDateCheck


def election_safety(s):
    """At most one leader per term (Raft's Figure 3)."""
    leaders = {}
    for n, node in s.up().items():
        if node.role == "leader":
            if node.term in leaders:
                return f"two leaders in term {node.term}: {leaders[node.term]} and {n}"
            leaders[node.term] = n
    return True


def leader_completeness(s):
    """Every leader holds the committed entry 1 (Figure 3; only for the Logged start)."""
    for n, node in s.up().items():
        if node.role == "leader" and [1, "x"] not in node.log:
            return f"{n} leads term {node.term} without the committed entry 1"
    return True


def terms_at_most_2(s):
    return any(node.term > 2 for node in s.up().values())


def test_raft_election_is_bounded_at_depth_8(raft):
    Election = raft[0]
    res = labkit.explore(Election, n=3, invariants=[election_safety], prunes=[terms_at_most_2], max_depth=8)
    assert (res.outcome, res.states, res.depth) == ("bounded", 56067, 8), res


def test_raft_election_sleep_sets_with_the_prune_keep_counts(raft):
    Election = raft[0]
    kw = dict(invariants=[election_safety], prunes=[terms_at_most_2], max_depth=8)
    on = labkit.explore(Election, n=3, sleep_sets=True, **kw)
    off = labkit.explore(Election, n=3, sleep_sets=False, **kw)
    assert (on.outcome, on.states, on.fingerprint) == (off.outcome, off.states, off.fingerprint)
    assert on.states == 56067 and on.transitions < off.transitions


def test_raft_vote_without_up_to_date_check_is_caught(raft):
    _, Logged, NoCheck = raft
    invs = [election_safety, leader_completeness]
    assert labkit.explore(Logged, n=3, invariants=invs, prunes=[terms_at_most_2], max_depth=6).outcome == "bounded"
    res = labkit.explore(NoCheck, n=3, invariants=invs, prunes=[terms_at_most_2], max_depth=6)
    assert res.outcome == "violation" and len(res.path) <= 6
    assert res.message == "n3 leads term 1 without the committed entry 1"
    assert [str(s) for s in res.trace] == [
        "timer 'election' fires at n3",
        'deliver request_vote n3->n1 {"term":1,"candidate":"n3","last_log_index":0,"last_log_term":0}',
        'deliver request_vote_ok n1->n3 {"term":1,"granted":true}']
    assert res.replay().reproduced


def test_raft_sleep_sets_keep_counts(raft):
    Election = raft[0]
    on = labkit.explore(Election, n=3, invariants=[election_safety], max_depth=6)
    off = labkit.explore(Election, n=3, invariants=[election_safety], max_depth=6, sleep_sets=False)
    assert (on.outcome, on.states, on.fingerprint) == (off.outcome, off.states, off.fingerprint) == \
        ("bounded", 6065, on.fingerprint)
    assert on.transitions < off.transitions


# -- Figure 8 (§5.4.2), found by a staged search ---------------------------------------------
@pytest.fixture(scope="module")
def durable():
    Durable = cells("05_raft.ipynb", "RaftBase", "Election", "Replication", "Durable")["Durable"]

    class CountsOldTerms(Durable):
        def advance_commit(self, ctx):         # counts replicas of any term: Figure 8's mistake
            for n in range(self.last_index(), self.commit_index, -1):
                if 1 + sum(self.match_index[p] >= n for p in ctx.peers) >= self.majority:
                    self.set_commit(ctx, n)
                    break

    return Durable, CountsOldTerms


def _log_len(s, n):
    return s.storage[n].get("log_len", 0)


#: Figure 8 with three servers, one stage per panel: (goal, faults). Each stage starts from the
#: last one's goal state with the messages between nodes dropped; the client requests stay.
FIGURE_8 = [
    # (a) n1 leads, appends "a" in its term, tells nobody, crashes
    (lambda s: s.status["n1"] == "down" and _log_len(s, "n1") == 1 and not _log_len(s, "n2") and not _log_len(s, "n3"),
     {"crash": 1}),
    # (b) n3 leads a later term (n2's vote), appends "b", tells nobody, crashes
    (lambda s: s.status["n3"] == "down" and _log_len(s, "n3") == 1 and not _log_len(s, "n2"), {"crash": 1}),
    # (c) n1 restarts and leads again
    (lambda s: s.status["n1"] == "up" and s.nodes["n1"].role == "leader", {"restart": True}),
    # (c') n1 replicates its old-term "a" to n2 and -- counting replicas -- commits it; n2 learns; n1 crashes
    (lambda s: s.status["n1"] == "down" and s.nodes["n2"].commit_index == 1, {"crash": 1}),
    # (d) n3 restarts and leads (its last term beats n2's)
    (lambda s: s.status["n3"] == "up" and s.nodes["n3"].role == "leader", {"restart": True}),
    # (e) n3 overwrites the committed entry on n2: the skeleton's set_log_from refuses (an exception)
    (None, {}),
]
REQUESTS = [("n1", "propose", {"command": "a"}), ("n3", "propose", {"command": "b"})]


def staged(node_class):
    start, res = None, None
    for goal, faults in FIGURE_8:
        res = labkit.explore(node_class, n=3, requests=REQUESTS, faults=faults, start=start, max_depth=8,
                             goals=[goal] if goal else [])
        if goal is None or res.outcome != "goal":
            return res
        start = res.stage(drop_messages=True)
    return res


def test_figure_8_is_found_by_a_staged_search(durable):
    res = staged(durable[1])
    assert res.outcome == "exception"
    assert res.message == "AssertionError: n2: set_log_from(1) would change or drop committed entry 1"
    assert [(s.kind, s.node) for s in res.trace if s.kind in ("crash", "restart")] == [
        ("crash", "n1"), ("crash", "n3"), ("restart", "n1"), ("crash", "n1"), ("restart", "n3")]
    assert res.replay().reproduced


def test_the_current_term_rule_prevents_figure_8(durable):
    res = staged(durable[0])
    assert res.outcome in ("bounded", "exhausted")          # stage (c') never gets there
    assert "n2" not in res.message
