"""Maelstrom's ``g-counter`` and ``pn-counter`` workloads: an eventually consistent counter.

``{"type": "add", "delta": d}`` -> ``add_ok``; ``{"type": "read"}`` -> ``read_ok {"value":
n}``. Adds and reads are mixed half and half; deltas are ``rand-int 10 - 5`` (-5..4) for
pn-counter, and the non-negative ones of those (0..4) for g-counter; one final read per node
after the heal. History: ``f="add"`` value the delta; ``f="read"`` ok value the int.

Checker (Maelstrom's pn-counter checker, used by both): every *final* read (invoked after
the final phase began, ``ctx.opts["final_time_ms"]``) must equal the sum of the ``ok``
deltas plus the deltas of some subset of the ``info`` adds (those may or may not have
happened; ``fail`` adds did not). Reads during the run are not checked: an eventually
consistent counter may serve stale values (so labkit's ``counter_bounds``, which bounds every
read by what completed before it, would reject correct CRDTs; it is not used here).
Gossip Glomers challenge #4 runs g-counter with programs storing the count in ``seq-kv``, so
this workload offers the ``seq-kv`` service. Source: Maelstrom
``src/maelstrom/workload/pn_counter.clj`` and ``g_counter.clj``; https://fly.io/dist-sys/4/.
"""
from __future__ import annotations

import random
from typing import Any

from ...checkers.verdict import Verdict
from ...history import History
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["PNCounter", "GCounter", "acceptable_sums", "WORKLOADS"]

#: More distinct reachable sums than this and the checker says unknown (not a guess).
MAX_SUMS = 1_000_000


def acceptable_sums(definite: int, info_deltas: list[int]) -> list[tuple[int, int]]:
    """Closed ``[lo, hi]`` ranges of ``definite + sum(S)`` over subsets ``S`` of
    ``info_deltas`` (Maelstrom's acceptable set). ``OverflowError`` past ``MAX_SUMS`` values."""
    sums = {definite}
    for d in info_deltas:
        if d:
            sums |= {s + d for s in sums}
            if len(sums) > MAX_SUMS:
                raise OverflowError(f"more than {MAX_SUMS} possible counter values")
    out: list[list[int]] = []
    for s in sorted(sums):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [(a, b) for a, b in out]


class PNCounter(Workload):
    """Increments and decrements of -5..4; final reads must be a possible total."""

    name = "pn-counter"
    services: tuple[str, ...] = ()
    lo, hi = -5, 4

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        if rng.random() < 0.5:
            return Invocation("add", rng.randint(self.lo, self.hi))
        return Invocation("read")

    def final(self, node_ids: list[str]) -> list[Invocation]:
        return [Invocation("read") for _ in node_ids]

    def request(self, inv: Invocation) -> dict:
        if inv.f == "read":
            return {"type": "read"}
        return {"type": "add", "delta": inv.value}

    def completion(self, inv: Invocation, reply: dict) -> Any:
        if inv.f == "read":
            expect_type(reply, "read_ok")
            v = reply.get("value")
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"read_ok reply needs an integer 'value', got {v!r}")
            return v
        expect_type(reply, "add_ok")
        return inv.value

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        pairs = history.pairs()
        adds = [p for p in pairs if p.f == "add"]
        definite = sum(p.invoke.value for p in adds if p.type == "ok")
        info = [p.invoke.value for p in adds if p.type == "info"]
        t0 = ctx.opts.get("final_time_ms")
        finals = [p for p in pairs if p.f == "read" and p.type == "ok" and t0 is not None
                  and p.start is not None and p.start >= t0]
        name = self.name
        try:
            ranges = acceptable_sums(definite, info)
        except OverflowError as e:
            return {name: Verdict(None, name, str(e), {"info_adds": len(info)})}
        details: dict[str, Any] = {"definite_sum": definite, "info_adds": len(info),
                                   "acceptable": [list(r) for r in ranges[:50]],
                                   "final_reads": [p.value for p in finals]}
        bad = [p for p in finals if not any(a <= p.value <= b for a, b in ranges)]
        if not finals:
            v = Verdict(None, name, "no ok final reads", details)
        elif bad:
            shown = ", ".join(str(r) for r in ranges[:5]) + (" ..." if len(ranges) > 5 else "")
            v = Verdict(False, name, f"{len(bad)} of {len(finals)} final reads are not a possible total "
                        f"(sum of ok adds {definite}, plus any of {len(info)} info adds: {shown})", details,
                        tuple(f"{p}: read {p.value}" for p in bad))
        else:
            v = Verdict(True, name, f"all {len(finals)} final reads are possible totals "
                        f"(sum of ok adds {definite}, {len(info)} info adds)", details)
        return {name: v}


class GCounter(PNCounter):
    """Grow-only: deltas 0..4. Programs may use the ``seq-kv`` service (Gossip Glomers #4)."""

    name = "g-counter"
    services = ("seq-kv",)
    lo, hi = 0, 4


WORKLOADS = {"pn-counter": PNCounter, "g-counter": GCounter}
