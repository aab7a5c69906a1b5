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
