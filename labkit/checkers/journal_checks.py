"""Checkers over the journal: invariants, convergence, fault windows, availability, cost.

All are pure functions of a ``Journal`` (or any list of events) and, where operations are
involved, a ``History`` recorded on the same clock (cluster ms). Each returns a ``Verdict``;
one that cannot decide from the data (the journal ends too early, no operations) says
unknown.

Replica state for ``convergence`` comes from the journal: by default the ``status`` a node
publishes with ``ctx.report(value=...)`` (journaled as ``stats`` events, batched every 200 ms,
so allow for that lag), or whatever a function you pass reads from any event.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..history import History
from ..journal import Event
from ..runtime.base import is_client_id
from ..faults import FaultSpan, fault_spans
from .verdict import Verdict

__all__ = ["FaultWindow", "fault_windows", "always", "eventually", "convergence", "availability",
           "messages_per_op", "ClusterView"]


def _events(journal: Any) -> list[Event]:
    return journal.events if hasattr(journal, "events") else list(journal)


#: A fault's period in force (see ``labkit.faults``): the checkers and the plots share one
#: derivation, so "during faults" means the same thing on a plot and in a verdict.
FaultWindow = FaultSpan


def fault_windows(journal: Any) -> list[FaultSpan]:
    """Fault spans from the journal (``labkit.faults.fault_spans``), sorted by start."""
    return fault_spans(_events(journal))


class ClusterView:
    """What an invariant may look at besides the event: the latest ``status`` each node
    reported (``status[node]``), and which nodes are up (``up``)."""

    def __init__(self) -> None:
        self.status: dict[str, dict] = {}
        self.up: set[str] = set()

    def _see(self, e: Event) -> None:
        if e.kind == "stats":
            self.status[e.node] = dict(e.get("status") or {})
        elif e.kind in ("start", "resume"):
            self.up.add(e.node)
        elif e.kind in ("kill", "crash", "pause"):
            self.up.discard(e.node)
            if e.kind != "pause":
                self.status.pop(e.node, None)


def _arity(fn: Callable) -> int:
    try:
        ps = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return 2 if len(ps) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in
                                         inspect.signature(fn).parameters.values()) else 1
    except (TypeError, ValueError):
        return 1


def always(journal: Any, predicate: Callable[..., bool], *, name: str = "always") -> Verdict:
    """``predicate`` holds at every event. It is called as ``predicate(event)`` or, if it takes
    two arguments, ``predicate(event, view)`` with a ``ClusterView`` updated *after* the event
    (e.g. ``lambda e, v: sum(s.get("role") == "leader" for s in v.status.values()) <= 1``).
    A failure names the first event at which it did not hold."""
    two = _arity(predicate) == 2
    view = ClusterView()
    evs = _events(journal)
    for i, e in enumerate(evs):
        view._see(e)
        if not (predicate(e, view) if two else predicate(e)):
            why = f"does not hold at event {i} (t={e.t:.1f} ms): {e!r}"
            return Verdict(False, name, why, {"events": len(evs), "event_index": i, "t": e.t}, (e,))
    return Verdict(True, name, f"holds at all {len(evs)} events", {"events": len(evs)})


def eventually(journal: Any, predicate: Callable[[Event], bool], *, within: float,
               since: float | None = None, name: str = "eventually") -> Verdict:
    """Some event at or after ``since`` (default: the first event's time) satisfies
    ``predicate`` no later than ``since + within`` ms. Unknown if the journal ends before the
    deadline without one. A failure names the first event after the deadline."""
    evs = _events(journal)
    start = since if since is not None else (evs[0].t if evs else 0.0)
    deadline = start + within
    for e in evs:
        if e.t < start:
            continue
        if predicate(e):
            if e.t <= deadline:
                return Verdict(True, name, f"held at t={e.t:.1f} ms, {e.t - start:.1f} ms after the start",
                               {"t": e.t, "after_ms": e.t - start}, (e,))
            return Verdict(False, name, f"held only at t={e.t:.1f} ms, {e.t - deadline:.1f} ms after the "
                           f"deadline ({deadline:.1f} ms)", {"t": e.t, "after_ms": e.t - start},
                           tuple(x for x in (_first_after(evs, deadline), e) if x is not None))
    last = evs[-1].t if evs else start
    if last >= deadline:
        return Verdict(False, name, f"never held within {within:g} ms of t={start:.1f} ms",
                       {"deadline": deadline}, tuple(x for x in (_first_after(evs, deadline),) if x is not None))
    return Verdict(None, name, f"the journal ends at t={last:.1f} ms, before the deadline "
                   f"{deadline:.1f} ms, and it has not held yet", {"deadline": deadline, "last": last})


def _first_after(evs: list[Event], t: float) -> Event | None:
    return next((e for e in evs if e.t > t), None)


def convergence(journal: Any, *, within: float = 1000.0, field: str = "value",
                state: Callable[[Event], Any] | None = None, end: float | None = None) -> Verdict:
    """All live replicas hold equal state within ``within`` ms after the last fault ends.

    State: by default ``status[field]`` from ``stats`` events (``ctx.report(value=...)``);
    with ``state``, ``state(event)`` for every event, where ``None`` means "this event says
    nothing" (the event's node is the replica). A node's state is forgotten when it is
    killed or crashes (volatile state is lost) until it reports again; nodes down at the end
    are not live. ``end``: when the run ended (default: the last event), e.g. ``cluster.now``.

    The last fault's end is the latest end of any fault window; link settings still in force
    at the end (a standing delay) do not stop replicas converging and are not waited for.
    Unknown when a partition or pause is still active at the end, or when the replicas
    disagree but the journal ends less than ``within`` ms after the last fault."""
    evs = _events(journal)
    windows = fault_windows(evs)
    active = [w for w in windows if w.open and w.kind in ("partition", "cut", "paused")]
    t_end = end if end is not None else (evs[-1].t if evs else 0.0)
    name = "convergence"
    if active:
        return Verdict(None, name, f"faults still active at the end: {', '.join(map(str, active))}",
                       {"active": [str(w) for w in active]})
    ended = [w.end for w in windows if not w.open]
    t0 = max(ended) if ended else (evs[0].t if evs else 0.0)
    latest: dict[str, Any] = {}
    alive: set[str] = set()
    agree_since: float | None = None

    def agreed() -> bool:
        vals = [latest.get(n, _MISSING) for n in alive]
        return bool(vals) and _MISSING not in vals and all(v == vals[0] for v in vals)

    for e in evs:
        changed = False
        if e.kind == "start":
            alive.add(e.node)
            latest.pop(e.node, None)
            changed = True
        elif e.kind in ("kill", "crash"):
            alive.discard(e.node)
            latest.pop(e.node, None)
            changed = True
        if state is not None:
            v = state(e)
        elif e.kind == "stats":
            v = (e.get("status") or {}).get(field, None)
        else:
            v = None
        if v is not None:
            latest[e.node] = v
            changed = True
        if not changed:
            continue
        now_agree = agreed()
        if now_agree and agree_since is None:
            agree_since = e.t
        elif not now_agree:
            agree_since = None
    details = {"last_fault_end": t0, "live": sorted(alive), "states": {n: latest.get(n) for n in sorted(alive)}}
    if agree_since is not None:
        lag = max(0.0, agree_since - t0)
        details["converged_at"] = agree_since
        details["lag_ms"] = lag
        ok = lag <= within
        return Verdict(ok, name, f"{len(alive)} live replicas agree {lag:.1f} ms after the last fault ended"
                       + ("" if ok else f" (allowed: {within:g} ms)"), details)
    states = "; ".join(f"{n}: {latest.get(n, '(no state reported)')!r}" for n in sorted(alive))
    if t_end - t0 < within:
        return Verdict(None, name, f"replicas disagree, but the run ended only {t_end - t0:.1f} ms after "
                       f"the last fault (allowed: {within:g} ms)", details, (states,))
    return Verdict(False, name, f"live replicas still disagree {t_end - t0:.1f} ms after the last fault "
                   f"ended (allowed: {within:g} ms)", details, (f"states at the end: {states}",))


_MISSING = object()


def availability(history: History, journal: Any = None, *, min_ok: float | None = None) -> Verdict:
    """Fraction of operations that completed ``ok``: overall, and (with the journal) for
    operations invoked during a fault window and outside any. ``min_ok`` sets a target for
    the overall fraction; without it the verdict is a measurement (valid unless no ops)."""
    pairs = history.pairs()
    name = "availability"
    if not pairs:
        return Verdict(None, name, "no operations", {})
    overall = sum(p.type == "ok" for p in pairs) / len(pairs)
    details: dict[str, Any] = {"ops": len(pairs), "ok_fraction": overall}
    text = f"{overall:.1%} of {len(pairs)} ops ok"
    if journal is not None:
        windows = fault_windows(journal)
        inside = [p for p in pairs if p.start is not None and any(w.covers(p.start) for w in windows)]
        outside = [p for p in pairs if p.start is not None and not any(w.covers(p.start) for w in windows)]
        for label, group in (("during_faults", inside), ("outside_faults", outside)):
            details[label] = {"ops": len(group),
                              "ok_fraction": (sum(p.type == "ok" for p in group) / len(group)) if group else None}
        details["fault_windows"] = [str(w) for w in windows]
        parts = []
        if inside:
            parts.append(f"{details['during_faults']['ok_fraction']:.1%} of the {len(inside)} invoked "
                         f"during a fault")
        if outside and inside:
            parts.append(f"{details['outside_faults']['ok_fraction']:.1%} of the {len(outside)} invoked "
                         f"with no fault active")
        if parts:
            text += " (" + ", ".join(parts) + ")"
    valid = True if min_ok is None else overall >= min_ok
    if min_ok is not None:
        text += f" (target {min_ok:.1%})"
    return Verdict(valid, name, text, details)


def messages_per_op(journal: Any, history: History | None = None, *,
                    max_per_op: float | None = None) -> Verdict:
    """Node-to-node messages sent per completed client operation (Maelstrom's msgs-per-op).

    Completed ops are the history's ``ok`` and ``fail`` pairs, or without a history the
    replies delivered to clients in the journal. ``max_per_op`` sets a target."""
    evs = _events(journal)
    sends = sum(1 for e in evs if e.kind == "send" and not is_client_id(e.node)
                and not is_client_id(e.dst or ""))
    if history is not None:
        ops = sum(1 for p in history.pairs() if p.type in ("ok", "fail"))
    else:
        ops = sum(1 for e in evs if e.kind == "deliver" and is_client_id(e.node))
    name = "messages_per_op"
    if not ops:
        return Verdict(None, name, f"{sends} node-to-node messages but no completed operations",
                       {"messages": sends, "ops": 0})
    per = sends / ops
    valid = True if max_per_op is None else per <= max_per_op
    target = f" (target <= {max_per_op:g})" if max_per_op is not None else ""
    return Verdict(valid, name, f"{per:.2f} node-to-node messages per completed op{target}",
                   {"messages": sends, "ops": ops, "per_op": per})
