"""Small protocols to explore, with their invariants: two-phase commit and single-decree Paxos.

They are plain ``labkit.Node`` classes (they run in a ``Cluster`` as well) and serve the
tests, the benchmark (``benchmarks/explore.py``) and the course.

* ``TwoPhaseCommit`` (Gray 1978; Bernstein, Hadzilacos & Goodman 1987, ch. 7): ``n1``
  coordinates, every other node is a participant whose vote is set by ``NO_VOTERS``. The
  coordinator commits when every participant voted yes and aborts on a no or when its
  ``timeout`` timer fires first. ``COMMIT_ON_FIRST_YES`` is the classic bug.
  ``atomic_decision``: no two participants decide differently. ``blocked``: the goal state
  in which the coordinator is down while a participant voted yes and waits, with no decision
  on its way -- 2PC's known blocking (why 3PC and Paxos Commit exist).
* ``Paxos`` (Lamport, "Paxos Made Simple", 2001): single decree; every node is an acceptor,
  the nodes in ``PROPOSERS`` propose their own id as the value with ballot ``(1, id)``.
  ``IGNORE_ACCEPTED`` makes a proposer ignore the values reported in promises (the bug
  phase 2 exists to prevent). ``agreement``: at most one value is ever chosen.
"""
from __future__ import annotations

from typing import Any

from ..node import Node


class TwoPhaseCommit(Node):
    """Two-phase commit; see the module docstring. Messages: ``prepare``, ``vote {yes}``,
    ``decide {decision}``; timer ``timeout`` at the coordinator."""

    NO_VOTERS: frozenset = frozenset()
    COMMIT_ON_FIRST_YES = False
    TIMEOUT_MS = 100

    def on_start(self, ctx: Any) -> None:
        self.decision: str | None = None
        self.vote: bool | None = None
        self.yes: set[str] = set()
        if ctx.id == "n1":
            for p in ctx.peers:
                ctx.send(p, "prepare")
            ctx.set_timer("timeout", after=self.TIMEOUT_MS)

    def decide(self, ctx: Any, decision: str) -> None:
        if self.decision is None:
            self.decision = decision
            ctx.cancel_timer("timeout")
            for p in ctx.peers:
                ctx.send(p, "decide", decision=decision)

    def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.type == "prepare":
            self.vote = ctx.id not in self.NO_VOTERS
            if not self.vote:
                self.decision = "abort"           # a no voter may abort unilaterally
            ctx.send(msg.src, "vote", yes=self.vote)
        elif msg.type == "vote":
            if not msg["yes"]:
                self.decide(ctx, "abort")
            else:
                self.yes.add(msg.src)
                if self.COMMIT_ON_FIRST_YES or len(self.yes) == len(ctx.peers):
                    self.decide(ctx, "commit")
        elif msg.type == "decide":
            self.decision = msg["decision"]

    def on_timer(self, ctx: Any, name: str) -> None:
        self.decide(ctx, "abort")


def atomic_decision(s: Any) -> Any:
    """No two participants decide differently (and none commits without every yes vote)."""
    parts = {n: s.nodes[n] for n in s.ids if n != "n1" and s.status[n] == "up"}
    decided = {n: p.decision for n, p in parts.items() if p.decision is not None}
    if len(set(decided.values())) > 1:
        return f"participants decided differently: {decided}"
    return True


def blocked(s: Any) -> Any:
    """The coordinator is down; a participant voted yes and has no decision, none on its way."""
    if s.status["n1"] != "down" or any(m.type == "decide" for m in s.network):
        return False
    waiting = [n for n in s.ids if n != "n1" and s.nodes[n].vote and s.nodes[n].decision is None]
    return f"coordinator down, {waiting} voted yes and wait forever" if waiting else False


class Paxos(Node):
    """Single-decree Paxos; see the module docstring. Messages: ``prepare {b}``, ``promise {b,
    accepted}``, ``accept {b, v}``, ``accepted {b, v}``; a ballot is ``[round, node id]``."""

    PROPOSERS = ("n1", "n2")
    IGNORE_ACCEPTED = False

    def on_start(self, ctx: Any) -> None:
        self.promised: list | None = None      # acceptor: highest ballot promised
        self.accepted: list | None = None      # acceptor: [ballot, value] accepted last
        self.promises: dict[str, Any] = {}     # proposer: acceptor -> its accepted [b, v] or None
        self.accepts: set[str] = set()
        self.value: Any = None
        self.chosen: Any = None
        self.ballot: list | None = None
        self.majority = (len(ctx.peers) + 1) // 2 + 1
        if ctx.id in self.PROPOSERS:
            self.ballot = [1, ctx.id]
            self.to_all(ctx, "prepare", b=self.ballot)

    def to_all(self, ctx: Any, type: str, **body: Any) -> None:
        """Send to every peer; the proposer's own acceptor handles it at once (a local step)."""
        for p in ctx.peers:
            ctx.send(p, type, **body)
        self.handle(ctx, ctx.id, type, body)

    def on_message(self, ctx: Any, msg: Any) -> None:
        self.handle(ctx, msg.src, msg.type, msg.body)

    def answer(self, ctx: Any, dst: str, type: str, **body: Any) -> None:
        if dst == ctx.id:
            self.handle(ctx, dst, type, body)
        else:
            ctx.send(dst, type, **body)

    def handle(self, ctx: Any, src: str, t: str, body: dict) -> None:
        b = body.get("b")
        if t == "prepare":
            if self.promised is None or b > self.promised:
                self.promised = b
                self.answer(ctx, src, "promise", b=b, accepted=self.accepted)
        elif t == "promise" and b == self.ballot and self.value is None:
            self.promises[src] = body["accepted"]
            if len(self.promises) >= self.majority:
                prior = [a for a in self.promises.values() if a is not None]
                self.value = ctx.id if (self.IGNORE_ACCEPTED or not prior) else max(prior)[1]
                self.to_all(ctx, "accept", b=b, v=self.value)
        elif t == "accept":
            if self.promised is None or b >= self.promised:
                self.promised = b
                self.accepted = [b, body["v"]]
                self.answer(ctx, src, "accepted", b=b, v=body["v"])
        elif t == "accepted" and b == self.ballot:
            self.accepts.add(src)
            if len(self.accepts) >= self.majority:
                self.chosen = body["v"]


def agreement(s: Any) -> Any:
    """At most one value is chosen (by any proposer)."""
    chosen = {n: p.chosen for n, p in s.up().items() if p.chosen is not None}
    if len(set(chosen.values())) > 1:
        return f"two values chosen: {chosen}"
    return True
