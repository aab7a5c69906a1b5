"""Checkers over histories that need no search: set-full, counter bounds, latency.

Real-time order is the history's order (``index``): "read B began after add A completed"
means B's invocation comes after A's completion in the history. Times (ms) are used only
for latencies.
"""
from __future__ import annotations

import math
from collections import Counter as _Counter
from typing import Any, Iterable, Mapping, Sequence

from ..history import History, OpPair
from .verdict import Verdict

__all__ = ["set_full", "counter_bounds", "latency", "quantiles"]

DEFAULT_QUANTILES = (0.0, 0.5, 0.95, 0.99, 1.0)


def quantiles(xs: Iterable[float], qs: Sequence[float] = DEFAULT_QUANTILES) -> dict[float, float]:
    """Nearest-rank quantiles of ``xs`` (``{}`` if empty)."""
    v = sorted(xs)
    if not v:
        return {}
    return {q: v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))] for q in qs}


def _elements(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (tuple, list, frozenset, set)):
        return list(value)
    return [value]


def set_full(history: History, *, add_f: str = "add", read_f: str = "read",
             linearizable: bool = False) -> Verdict:
    """Jepsen's set-full checker, for sets and broadcast.

    Adds are ``add_f`` ops whose value is the element; reads are ``ok`` ``read_f`` ops whose
    value is the collection seen. An element is *known* once its add completed ``ok`` or a
    read saw it. Among the reads that began after it was known, it is:

    * **stable** if the last of them saw it (``stable_latency``: from the add's invocation to
      the first read of the final unbroken run that saw it);
    * **stale** if it is stable but some earlier of those reads missed it;
    * **lost** if the last of them missed it;
    * **never read** if no read began after it was known.

    Also reported: **duplicated** (a read saw it more than once) and **unexpected** (a read
    saw an element never added, or whose add failed). Valid when nothing is lost,
    duplicated or unexpected -- and, with ``linearizable=True``, nothing is stale. Unknown
    when there are no reads."""
    pairs = history.pairs()
    adds: dict[Any, OpPair] = {}
    for p in pairs:
        if p.f == add_f:
            adds.setdefault(p.invoke.value, p)
    reads = sorted((p for p in pairs if p.f == read_f and p.type == "ok"), key=lambda p: p.invoke.index)
    name = "set_full"
    if not reads:
        return Verdict(None, name, f"no ok {read_f!r} operations to check {len(adds)} adds against",
                       {"adds": len(adds), "reads": 0})
    seen_sets = [set(_elements(r.value)) for r in reads]
    duplicated = sorted({x for r in reads for x, c in _Counter(_elements(r.value)).items() if c > 1}, key=repr)
    all_seen = set().union(*seen_sets)
    unexpected = sorted((x for x in all_seen if x not in adds or adds[x].type == "fail"), key=repr)
    lost, stale, never_read, stable = [], [], [], []
    latencies: list[float] = []
    for x, add in adds.items():
        known: float = add.completion.index if add.type == "ok" and add.completion else math.inf
        first_seen = next((r.completion.index for r, s in zip(reads, seen_sets) if x in s), math.inf)
        known = min(known, first_seen)  # type: ignore[arg-type]
        if known == math.inf:
            continue  # never known to exist: an info/fail add nobody saw
        after = [(r, x in s) for r, s in zip(reads, seen_sets) if r.invoke.index > known]
        if not after:
            never_read.append(x)
            continue
        if not after[-1][1]:
            lost.append(x)
            continue
        k = len(after) - 1
        while k > 0 and after[k - 1][1]:
            k -= 1
        stable.append(x)
        if k > 0:
            stale.append(x)
        first = after[k][0]
        if first.start is not None and add.start is not None:
            latencies.append(max(0.0, first.start - add.start))
    lat = quantiles(latencies)
    details = {"adds": len(adds), "reads": len(reads), "stable": len(stable), "lost": sorted(lost, key=repr),
               "stale": sorted(stale, key=repr), "never_read": sorted(never_read, key=repr),
               "duplicated": duplicated, "unexpected": unexpected,
               "stable_latency_ms": {str(q): v for q, v in lat.items()}}
    problems = []
    if lost:
        problems.append(f"{len(lost)} lost (e.g. {sorted(lost, key=repr)[:5]})")
    if duplicated:
        problems.append(f"{len(duplicated)} duplicated (e.g. {duplicated[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
    if linearizable and stale:
        problems.append(f"{len(stale)} stale (e.g. {sorted(stale, key=repr)[:5]})")
    med = f"; median stable latency {lat[0.5]:.1f} ms" if lat else ""
    if problems:
        return Verdict(False, name, "; ".join(problems), details, tuple(problems))
    return Verdict(True, name, f"{len(stable)} of {len(adds)} elements stable, {len(stale)} stale, "
                   f"{len(never_read)} never read{med}", details)


def counter_bounds(history: History, *, add_fs: Sequence[str] = ("add", "increment"),
                   read_f: str = "read") -> Verdict:
    """Every ``ok`` read of a counter lies between what must and what may have been added.

    For a read R: *certain* adds completed ``ok`` before R began; *possible* adds are ``ok``
    or ``info`` adds invoked before R completed (``fail`` adds never happened). Then
    ``certain + negative possible deltas <= value <= certain + positive possible deltas``.
    With only increments this is Jepsen's rule for the final read: between the sum of ok
    increments and the sum of ok + info increments. Unknown when there are no reads."""
    pairs = history.pairs()
    adds = [p for p in pairs if p.f in add_fs and p.type != "fail"]
    reads = [p for p in pairs if p.f == read_f and p.type == "ok"]
    name = "counter_bounds"
    if not reads:
        return Verdict(None, name, "no ok reads", {"adds": len(adds), "reads": 0})
    bad = []
    last = None
    for r in reads:
        lo = hi = 0
        end = r.completion.index if r.completion is not None else math.inf
        for a in adds:
            d = 1 if a.invoke.value is None else a.invoke.value
            if a.type == "ok" and a.completion is not None and a.completion.index < r.invoke.index:
                lo += d
                hi += d
            elif a.invoke.index < end:
                lo += min(d, 0)
                hi += max(d, 0)
        last = (r, lo, hi)
        if not isinstance(r.value, (int, float)) or not lo <= r.value <= hi:
            bad.append(f"{r}: read {r.value!r}, but the counter must have been in [{lo}, {hi}]")
    r, lo, hi = last  # type: ignore[misc]
    details = {"adds": len(adds), "reads": len(reads), "final_read": r.value, "final_bounds": [lo, hi],
               "violations": len(bad)}
    if bad:
        return Verdict(False, name, f"{len(bad)} of {len(reads)} reads out of bounds",   # listed below, once
                       details, tuple(bad))
    return Verdict(True, name, f"all {len(reads)} reads within bounds; final read {r.value!r} in "
                   f"[{lo}, {hi}]", details)


def latency(history: History, *, qs: Sequence[float] = DEFAULT_QUANTILES,
            targets: Mapping[float, float] | None = None) -> Verdict:
    """Latency quantiles (ms) of ``ok`` operations, overall and per ``f``.

    ``targets`` maps a quantile to a limit (``{0.5: 400}``: median <= 400 ms); without
    targets the verdict is a measurement (valid unless there are no timed ok ops)."""
    pairs = [p for p in history.pairs() if p.type == "ok" and p.latency is not None]
    name = "latency"
    if not pairs:
        return Verdict(None, name, "no completed ok operations with times", {})
    qs = sorted(set(qs) | set(targets or {}))
    overall = quantiles((p.latency for p in pairs), qs)  # type: ignore[misc]
    per_f = {f: {str(q): v for q, v in quantiles((p.latency for p in pairs if p.f == f), qs).items()}  # type: ignore[misc]
             for f in sorted({p.f for p in pairs})}
    details = {"ops": len(pairs), "quantiles_ms": {str(q): v for q, v in overall.items()}, "by_f": per_f}
    text = ", ".join(f"p{q * 100:g} {overall[q]:.1f} ms" for q in qs)
    misses = [f"p{q * 100:g} = {overall[q]:.1f} ms > {lim:g} ms" for q, lim in (targets or {}).items()
              if overall[q] > lim]
    if misses:
        return Verdict(False, name, "; ".join(misses), details, tuple(misses))
    return Verdict(True, name, f"{len(pairs)} ok ops: {text}", details)
