"""Maelstrom's ``broadcast`` workload: gossip every broadcast value to every node.

Before the run each node gets ``{"type": "topology", "topology": {node: [neighbours]}}``
(-> ``topology_ok``). Clients then mix ``{"type": "broadcast", "message": x}`` (-> 
``broadcast_ok``; ``x`` = 0, 1, 2, ... across all clients) and ``{"type": "read"}`` (->
``read_ok {"messages": [...]}``), half each; after the heal and quiet period every node gets
one final read. History: ``f="broadcast"`` value ``x``; ``f="read"`` ok value the list read.

Checker: Jepsen's set-full with ``:add`` mapped to ``:broadcast`` (labkit's ``set_full``):
an element is *lost* if the last read after it was known missed it, *stale* if some read
after it was known missed it but later ones saw it. ``stable_latency_ms`` is Jepsen's
stable latency, what the Gossip Glomers efficiency targets ("median latency", "maximum
latency") measure: from the time the element was *known* (its add acknowledged, or a read
saw it) to the invocation of the last read, begun after that, that still missed it (0 when
none did) -- ``jepsen.checker/set-full-element-results``. (labkit's ``set_full`` measures
to the first read of the final run that saw it, which includes the wait for that read; it is
kept as ``first_stable_read_latency_ms``.)

Topologies (Maelstrom's ``--topology``): ``grid`` (default; roughly square, up to 4
neighbours), ``line``, ``total`` (everyone), ``tree2``/``tree3``/``tree4`` (nodes in order
form a tree of that fan-out; neighbours are parent and children). Source: Maelstrom
``src/maelstrom/workload/broadcast.clj`` and ``doc/workloads.md``.
"""
from __future__ import annotations

import math
import random
from typing import Any

from dataclasses import replace

from ...checkers.history_checks import quantiles, set_full
from ...checkers.verdict import Verdict
from ...history import History
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["Broadcast", "TOPOLOGIES", "topology", "WORKLOADS"]

TOPOLOGIES = ("grid", "line", "total", "tree2", "tree3", "tree4")


def _grid(nodes: list[str]) -> dict[str, list[str]]:
    n = len(nodes)
    side = math.ceil(math.sqrt(n))

    def at(i: int, j: int) -> str | None:
        if 0 <= i and 0 <= j < side and i * side + j < n:
            return nodes[i * side + j]
        return None

    out = {}
    for idx, node in enumerate(nodes):
        i, j = divmod(idx, side)
        out[node] = [x for x in (at(i + 1, j), at(i - 1, j), at(i, j + 1), at(i, j - 1)) if x is not None]
    return out


def _tree(nodes: list[str], k: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for i in range(1, len(nodes)):
        parent = nodes[(i - 1) // k]
        out[nodes[i]].append(parent)
        out[parent].append(nodes[i])
    return out


def topology(name: str, nodes: list[str]) -> dict[str, list[str]]:
    """The topology ``name`` (one of ``TOPOLOGIES``) over ``nodes``: node -> neighbours.
    ``ValueError`` naming the known topologies for any other name."""
    nodes = list(nodes)
    if name == "grid":
        return _grid(nodes)
    if name == "line":
        return {n: [m for m in (nodes[i - 1] if i else None, nodes[i + 1] if i + 1 < len(nodes) else None)
                    if m is not None] for i, n in enumerate(nodes)}
    if name == "total":
        return {n: [m for m in nodes if m != n] for n in nodes}
    if name in ("tree2", "tree3", "tree4"):
        return _tree(nodes, int(name[-1]))
    raise ValueError(f"unknown topology {name!r}; choose from {', '.join(TOPOLOGIES)}")


class SetWorkload(Workload):
    """Shared by broadcast and g-set: unique int adds, reads of the whole set, set-full."""

    add_f = "add"
    read_field = "value"

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self._next = 0

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        if rng.random() < 0.5:
            x = self._next
            self._next += 1
            return Invocation(self.add_f, x)
        return Invocation("read")

    def final(self, node_ids: list[str]) -> list[Invocation]:
        return [Invocation("read") for _ in node_ids]

    def completion(self, inv: Invocation, reply: dict) -> Any:
        if inv.f == "read":
            expect_type(reply, "read_ok")
            v = reply.get(self.read_field)
            if not isinstance(v, list):
                raise ValueError(f"read_ok reply needs a list in {self.read_field!r}, got {v!r}")
            return v
        expect_type(reply, self.add_f + "_ok")
        return inv.value

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        v = set_full(history, add_f=self.add_f, read_f="read")
        lat = jepsen_stable_latencies(history, self.add_f)
        details = dict(v.details)
        details["first_stable_read_latency_ms"] = details.pop("stable_latency_ms", {})
        q = quantiles(lat)
        details["stable_latency_ms"] = {str(k): x for k, x in q.items()}
        summary = v.summary
        if v.valid is True and q:
            summary = summary.split("; median stable latency")[0] + \
                f"; stable latency median {q[0.5]:.0f} ms, max {q[1.0]:.0f} ms"
        return {"set-full": replace(v, summary=summary, details=details)}


def jepsen_stable_latencies(history: History, add_f: str) -> list[float]:
    """Jepsen's set-full stable latency (ms) of every stable element: from when it was known
    (add ok, or first seen by a read: that op's completion time) to the invocation of the
    last read begun after that which missed it, or 0."""
    pairs = history.pairs()
    reads = sorted((p for p in pairs if p.f == "read" and p.type == "ok" and p.completion is not None),
                   key=lambda p: p.invoke.index)
    seen = [set(p.value or ()) for p in reads]
    out = []
    for add in pairs:
        if add.f != add_f:
            continue
        x = add.invoke.value
        known = add.completion if add.type == "ok" else None
        for r, s in zip(reads, seen):
            if x in s and (known is None or r.completion.index < known.index):
                known = r.completion
                break
        if known is None or known.time is None:
            continue
        last_present = last_absent = None
        for r, s in zip(reads, seen):
            if r.invoke.index > known.index:
                if x in s:
                    last_present = r
                else:
                    last_absent = r
        if last_present is None or (last_absent is not None and last_absent.invoke.index > last_present.invoke.index):
            continue
        t = last_absent.invoke.time if last_absent is not None and last_absent.invoke.time is not None else known.time
        out.append(max(0.0, t - known.time))
    return out


class Broadcast(SetWorkload):
    """Options: ``topology`` (one of ``TOPOLOGIES``, default ``"grid"``)."""

    name = "broadcast"
    add_f = "broadcast"
    read_field = "messages"
    defaults = {"topology": "grid"}

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        if self.opts["topology"] not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.opts['topology']!r}; choose from {', '.join(TOPOLOGIES)}")

    def setup(self, node_ids: list[str]) -> list[tuple[str, dict]]:
        topo = topology(self.opts["topology"], node_ids)
        return [(n, {"type": "topology", "topology": topo}) for n in node_ids]

    def request(self, inv: Invocation) -> dict:
        if inv.f == "read":
            return {"type": "read"}
        return {"type": "broadcast", "message": inv.value}


WORKLOADS = {"broadcast": Broadcast}
