"""The storm guard: how much one node may do before labkit stops it.

Theory of operation. A bug in a node can make it produce work without end: a handler that
sends in a loop and never returns, a timer re-armed with ``after=0`` from its own handler, a
broadcast answered by broadcasts (an exponential storm). Without a limit such a node fills
memory and the journal until the kernel dies (~70-130 MB/s) and, in the simulator, a cell
cannot even be interrupted. So each node's ``Context`` counts what the node produces --
journal events (sends, timers set, log lines, notes) and wake-ups (timer fires, the end of
``ctx.sleep``) -- against the limits below, on the node's cluster clock (virtual time in the
simulator, real time in the processes runtime):

* ``per_handler`` events in one call of a handler (before it returns or awaits);
* ``events`` events, or ``wakeups`` wake-ups, within ``window_ms`` of cluster time;
* ``queue`` (simulator only): entries waiting on the event heap, all nodes together;
* ``handler_s`` (simulator only): wall seconds one call of a handler may run without
  returning -- an endless loop that produces nothing, which the other limits cannot see
  and which would hang the cell (or a grading sweep) until someone interrupts it. It is
  stopped where it is, like a Ctrl-C after ``INTERRUPT_GRACE_S``; only a run on the main
  thread can be stopped this way (signals reach no other), and a loop inside one C call
  (``sum(itertools.count())``) cannot be stopped by anything short of killing the process.

A node over a per-node limit is crashed, like a handler that raised; its crash event names the
limit, the node and the message type (or timer) it was producing, with the traceback of the
line it was at. The simulator also stops the running ``run_for``/``request`` with a
``StormError`` saying the same, and stops on a full queue naming the node and message type
with the most messages waiting. A node's process in the processes runtime is thus bounded in
memory and journal (its queues to other nodes already are, by ZeroMQ's high-water mark).

The limits are generous for correct protocols (a busy processes node produces ~30 events per
ms; a 1 ms timer wakes up 1000 times a second) and can be changed per cluster:
``Cluster(..., guard=labkit.Guard(events=10**6))``, or switched off with ``guard=None``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from . import argcheck
from .errors import LabkitError


class StormError(LabkitError):
    """The simulator stopped a run: a node went over a storm-guard limit, or too many events
    were waiting. The message names the node, what it produced and the limit."""


class GuardTripped(BaseException):
    """Raised inside a node's handler when the node goes over a storm-guard limit.

    Not an ``Exception``, so ``except Exception`` in node code cannot swallow it and go on
    looping; the context turns it into the node's crash."""


#: What ``Guard`` fields mean, for error messages and the docs.
_FIELDS = ("per_handler", "events", "wakeups", "window_ms", "queue", "handler_s")


@dataclass(frozen=True)
class Guard:
    """Storm-guard limits (see ``labkit.guard``). ``None`` fields take the runtime's default:

    ========================  ==================  =======================
    field                     simulator           processes
    ========================  ==================  =======================
    ``per_handler`` (events)  40,000              50,000
    ``events`` per window     50,000              1,000,000
    ``wakeups`` per window    10,000              10,000
    ``window_ms``             1 (virtual ms)      1000 (real ms)
    ``queue`` (heap entries)  300,000             -- (ZeroMQ bounds it)
    ``handler_s`` (wall s)    10                  -- (a stuck node only
                                                  stops itself)
    ========================  ==================  =======================
    """

    per_handler: int | None = None
    events: int | None = None
    wakeups: int | None = None
    window_ms: float | None = None
    queue: int | None = None
    handler_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("per_handler", "events", "wakeups", "queue"):
            v = getattr(self, name)
            if v is not None:
                argcheck.whole(v, f"Guard({name})", lo=1)
        if self.window_ms is not None:
            argcheck.ms(self.window_ms, "Guard(window_ms)", positive=True)
        if self.handler_s is not None:
            argcheck.seconds(self.handler_s, "Guard(handler_s)", positive=True)

    def resolved(self, runtime: str) -> "Guard":
        """This guard with every ``None`` replaced by ``runtime``'s default."""
        base = DEFAULTS[runtime]
        return replace(base, **{f: getattr(self, f) for f in _FIELDS if getattr(self, f) is not None})

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _FIELDS}


DEFAULTS = {
    "sim": Guard(per_handler=40_000, events=50_000, wakeups=10_000, window_ms=1.0, queue=300_000, handler_s=10.0),
    "processes": Guard(per_handler=50_000, events=1_000_000, wakeups=10_000, window_ms=1000.0, queue=None),
}


def resolve(guard: Any, runtime: str) -> Guard | None:
    """The ``guard=`` argument of ``Cluster``: "default", a ``Guard``, a dict of its fields, or None."""
    if guard is None:
        return None
    if isinstance(guard, str) and guard == "default":
        return DEFAULTS[runtime]
    if isinstance(guard, dict):
        bad = set(guard) - set(_FIELDS)
        if bad:
            raise TypeError(f"unknown guard limit(s) {sorted(bad)}; known: {list(_FIELDS)}")
        guard = Guard(**guard)
    if not isinstance(guard, Guard):
        raise TypeError(f"guard must be a labkit.Guard, a dict of its fields, 'default' or None; got {guard!r}")
    return guard.resolved(runtime)
