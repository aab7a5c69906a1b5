"""The Maelstrom harness's nemesis: Maelstrom's ``partition`` plus labkit faults it lacks.

Maelstrom's only fault is ``partition`` (Jepsen's partition package: a random split,
started and healed every ``--nemesis-interval`` seconds on average). labkit adds ``kill``,
``pause``, ``restart``, ``skew``, ``drop``, ``duplicate`` and the rest of
``labkit.nemesis.FAULTS``. One fault at a time: it starts after ``U(0.5, 1.5) * interval``
seconds, lasts ``U(0.5, 1.5) * interval`` seconds, and is undone (heal, restart, resume,
skew back, link settings back to the test's latency). The plan is seeded, so a run replays.

What each fault means here (the fault ops are labkit's, ``labkit.nemesis``):

* ``partition``: a random minority / majority split of the program nodes. Maelstrom's
  services (``lin-kv``, ...) are never partitioned: when the cluster has services the split
  is made of ``cut``s between the two sides, so every node still reaches every service.
* ``isolate``: one node cut off from the other program nodes (services still reachable).
* ``kill`` (SIGKILL, restarted at the fault's end), ``pause`` (SIGSTOP .. SIGCONT),
  ``restart`` (a kill immediately followed by a fresh start, which re-runs ``init`` for a
  program), ``skew`` (a node's clock off by 100..1000 ms), ``slow``: on program nodes only.
  ``skew`` and ``slow`` act through a labkit node's ``ctx`` (``ctx.now``, ``ctx.work``): they
  change nothing for a ``labkit.Program``, which reads the operating system's clock.
* ``drop`` (20%), ``duplicate`` (20%), ``delay`` (+50 ± 10 ms), ``reorder``: on every link
  between cluster members, services included (the test's latency stays in force beneath).
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from ..errors import ArgumentError
from ..nemesis import FAULTS, _fault_ops

__all__ = ["NEMESES", "MaelstromNemesis", "parse_nemesis"]

#: Fault name -> what it does, in the harness.
NEMESES: dict[str, str] = {**FAULTS, "restart": "kill a random node and start it again at once (init runs again)"}


def parse_nemesis(nemesis: Any) -> tuple[str, ...]:
    """``nemesis`` as a tuple of fault names: ``None``/``""``/``[]`` -> none, a string ->
    comma-separated names (Maelstrom's ``--nemesis partition,kill``), a list of names.
    ``ValueError`` naming the unknown ones and the known ones."""
    if nemesis is None:
        return ()
    if isinstance(nemesis, str):
        names = [x.strip() for x in nemesis.split(",") if x.strip()]
    elif isinstance(nemesis, (list, tuple, set, frozenset)):
        names = list(nemesis)
    else:
        raise ArgumentError(f"nemesis is a list of fault names or a comma-separated string, got {nemesis!r}")
    bad = [x for x in names if x not in NEMESES]
    if bad:
        raise ArgumentError(f"unknown nemesis fault(s) {bad}; choose from {', '.join(sorted(NEMESES))}")
    return tuple(dict.fromkeys(names))


class MaelstromNemesis:
    """Drives the faults ``faults`` on ``cluster`` from ``start()`` until ``stop()``.

    ``nodes``: the program nodes (victims); ``services``: service node ids (never
    partitioned, never killed); ``interval_s``: Maelstrom's ``--nemesis-interval``;
    ``baseline``: the test's link settings (``{"delay": ms, "distribution": ...}`` or
    ``None``), restored after a link fault."""

    def __init__(self, cluster: Any, faults: Sequence[str], nodes: Sequence[str], services: Sequence[str],
                 interval_s: float, seed: int, baseline: dict | None) -> None:
        self.cluster = cluster
        self.faults = tuple(faults)
        self.nodes = list(nodes)
        self.services = list(services)
        self.interval_s = interval_s
        self.baseline = baseline
        self.rng = random.Random(f"{seed}/maelstrom-nemesis")
        self.handle: Any = None
        self.undo: dict | None = None
        self.stopped = False
        #: ``(t_ms, op)`` for every fault operation applied, in order.
        self.log: list[tuple[float, dict]] = []

    def start(self) -> None:
        if self.faults:
            self._arm_start()

    def _span(self) -> float:
        return self.rng.uniform(0.5, 1.5) * self.interval_s * 1000.0

    def _arm_start(self) -> None:
        self.handle = self.cluster.call_at(self.cluster.now + self._span(), self._begin)

    def _begin(self) -> None:
        if self.stopped:
            return
        fault = self.rng.choice(self.faults)
        if fault == "restart":
            op, undo = {"op": "restart", "node": self.rng.choice(self.nodes)}, None
        else:
            op, undo = _fault_ops(fault, self.nodes, self.rng)
        self.apply({"fault": fault, **op})
        self.undo = undo
        self.handle = self.cluster.call_at(self.cluster.now + self._span(), self._end)

    def _end(self) -> None:
        if self.stopped:
            return
        if self.undo is not None:
            self.apply(self.undo)
            self.undo = None
        self._arm_start()

    def stop(self) -> None:
        """Stop injecting and undo the fault in force (heal before the final reads)."""
        self.stopped = True
        if self.handle is not None:
            self.cluster.cancel(self.handle)
            self.handle = None
        if self.undo is not None:
            self.apply(self.undo)
            self.undo = None

    def apply(self, op: dict) -> None:
        c = self.cluster
        self.log.append((c.now, dict(op)))
        kind = op["op"]
        state = (lambda n: c.status()[n].state)
        if kind == "partition":
            groups = op["groups"]
            if self.services:
                for a in groups[0]:
                    for g in groups[1:]:
                        for b in g:
                            c.cut(a, b)
            else:
                c.partition(*groups)
        elif kind == "heal":
            c.heal()
        elif kind == "kill":
            c.kill(op["node"])
        elif kind == "restart":
            c.restart(op["node"])
        elif kind == "pause":
            if state(op["node"]) == "up":
                c.pause(op["node"])
        elif kind == "resume":
            c.resume(op["node"])
        elif kind == "skew":
            c.skew(op["node"], op["offset_ms"])
        elif kind == "slow":
            c.slow(op["node"], op["factor"])
        elif kind == "set_link":
            args = {k: v for k, v in op.items() if k not in ("op", "fault")}
            if args.get("jitter"):          # over the test's constant latency: delay ± jitter needs uniform
                args.setdefault("distribution", "uniform")
            c.set_link(**args)
        elif kind == "clear_links":
            c.clear_links()
            if self.baseline:
                c.set_link("*", "*", **self.baseline)
        else:  # pragma: no cover - _fault_ops only makes the ops above
            raise ValueError(f"unknown nemesis op {op!r}")
