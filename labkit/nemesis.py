"""Nemesis schedules: seeded, replayable fault plans (Jepsen's idea).

A ``Schedule`` says which faults to inject, how long each lasts and how long the cluster
gets to recover between them. ``plan(schedule, nodes, seed)`` turns it into an endless,
deterministic sequence of timed operations -- ``(seconds after the nemesis started, op)`` --
that both runtimes apply with the same cluster calls a reader would make by hand. The same
seed gives the same plan, so a failing fault run can be replayed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

from . import argcheck
from .errors import ArgumentError

FAULTS = {
    "partition": "split the cluster into a random majority and minority",
    "isolate": "cut one random node off from all others",
    "kill": "kill a random node (SIGKILL), restart it when the fault ends",
    "pause": "pause a random node (SIGSTOP), resume it when the fault ends",
    "drop": "drop 20% of messages on every link",
    "delay": "delay every link 50 ms ± 10 ms",
    "duplicate": "duplicate 20% of messages",
    "reorder": "hold back 20% of messages up to 200 ms",
    "skew": "skew a random node's clock by ±100..1000 ms",
    "slow": "make a random node 10x slower (gray failure: up and answering, its ctx.work 10x longer)",
}


#: How much slower the nemesis's "slow" fault makes a node (``cluster.slow``).
SLOW_FACTOR = 10.0

#: The shortest fault cycle, ``every`` + ``duration`` (seconds, the low ends of their ranges):
#: a schedule must let time move on, or it would apply faults without end at one instant and
#: ``run_for`` would never return. Either alone may be 0 (a fault undone at once, or faults
#: back to back).
MIN_CYCLE_S = 0.001


def _span(x: float | tuple[float, float], what: str) -> tuple[float, float]:
    """``x`` (seconds, or a ``(lo, hi)`` range) as ``(lo, hi)``, each finite, in
    [0, MAX_S], with lo <= hi; else ``ArgumentError`` naming ``what``."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        lo, hi = x
    elif isinstance(x, (tuple, list)):
        raise ArgumentError(f"nemesis {what} must be seconds or a (lo, hi) range of two numbers, got {x!r}")
    else:
        lo = hi = x
    name = f"nemesis {what}"
    lo = argcheck.seconds(lo, name)
    hi = argcheck.seconds(hi, name)
    if lo > hi:
        raise ArgumentError(f"{name} range (lo, hi) needs lo <= hi, got {x!r}")
    return lo, hi


def _spans(every: float | tuple[float, float], duration: float | tuple[float, float]
           ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Both spans, checked, and checked to make a cycle of at least ``MIN_CYCLE_S``."""
    e, d = _span(every, "every"), _span(duration, "duration")
    if e[0] + d[0] < MIN_CYCLE_S:
        raise ArgumentError(f"nemesis every + duration must be at least {MIN_CYCLE_S:g} s (their low ends), or "
                            f"faults would repeat without end at one instant; got every={every!r}, "
                            f"duration={duration!r}")
    return e, d


@dataclass(frozen=True)
class Schedule:
    """Inject one fault from ``faults`` at a time: it lasts ``duration`` seconds, then the
    cluster is healed and left alone for ``every`` seconds. Ranges ``(lo, hi)`` are drawn."""

    faults: tuple[str, ...] = ("partition", "kill")
    every: float | tuple[float, float] = (1.0, 3.0)
    duration: float | tuple[float, float] = (1.0, 3.0)

    def __post_init__(self) -> None:
        faults = (self.faults,) if isinstance(self.faults, str) else tuple(self.faults)
        unknown = [f for f in faults if f not in FAULTS]
        if unknown or not faults:
            raise ValueError(f"unknown nemesis fault(s) {unknown}; choose from {sorted(FAULTS)}")
        object.__setattr__(self, "faults", faults)
        _spans(self.every, self.duration)


def plan(schedule: Schedule, nodes: Sequence[str], seed: int) -> Iterator[tuple[float, dict]]:
    """The endless, seeded sequence of ``(t_seconds, op)`` for ``schedule`` on ``nodes``."""
    rng = random.Random(f"{seed}/nemesis")
    every, duration = _spans(schedule.every, schedule.duration)
    nodes = list(nodes)
    t = 0.0
    while True:
        t += rng.uniform(*every)
        fault = rng.choice(schedule.faults)
        start, end = _fault_ops(fault, nodes, rng)
        yield t, {"fault": fault, **start}
        t += rng.uniform(*duration)
        yield t, {"fault": fault, **end}


def _fault_ops(fault: str, nodes: list[str], rng: random.Random) -> tuple[dict, dict]:
    victim = rng.choice(nodes)
    if fault == "partition":
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        k = rng.randint(1, max(1, (len(nodes) - 1) // 2))
        return {"op": "partition", "groups": [sorted(shuffled[:k]), sorted(shuffled[k:])]}, {"op": "heal"}
    if fault == "isolate":
        return {"op": "partition", "groups": [[victim], [n for n in nodes if n != victim]]}, {"op": "heal"}
    if fault == "kill":
        return {"op": "kill", "node": victim}, {"op": "restart", "node": victim}
    if fault == "pause":
        return {"op": "pause", "node": victim}, {"op": "resume", "node": victim}
    if fault == "slow":
        return ({"op": "slow", "node": victim, "factor": SLOW_FACTOR},
                {"op": "slow", "node": victim, "factor": 1.0})
    if fault == "skew":
        off = rng.choice((-1, 1)) * rng.uniform(100, 1000)
        return ({"op": "skew", "node": victim, "offset_ms": round(off, 1)},
                {"op": "skew", "node": victim, "offset_ms": 0.0})
    settings = {"drop": {"drop": 0.2}, "delay": {"delay": 50.0, "jitter": 10.0},
                "duplicate": {"duplicate": 0.2}, "reorder": {"reorder": 0.2, "reorder_ms": 200.0}}[fault]
    return {"op": "set_link", "src": "*", "dst": "*", **settings}, {"op": "clear_links"}
