"""Plots of client operations: the timeline of a history, latency and throughput over time.

Each takes a Jepsen-style history (see ``operations``) or a Journal, whose client requests
are read as operations. Faults from ``faults=journal`` (or a list of fault spans) are shaded.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .. import argcheck
from ..journal import Journal
from ._base import (FAIL, INFO, MAX_WIDTH_IN, OK, Op, PlotFigure, add_legend, as_spans, axes_size_pt, field, headroom,
                    natural_key, new_figure, operations, shade_faults)

_COLOR = {"ok": OK, "fail": FAIL, "info": INFO}
_LEGEND = {"ok": "ok", "fail": "fail (did not happen)", "info": "info (may have happened, any time later)"}


def _faults_of(source: Any, faults: Any) -> list:
    if faults is None and isinstance(getattr(source, "journal", source), Journal):
        faults = source
    return as_spans(faults)


def _window(ops: Sequence[Op], spans: list) -> tuple[float, float]:
    ts = [o.start for o in ops] + [o.end for o in ops if o.end is not None]
    if not ts:
        ts = [s.start for s in spans] + [s.end for s in spans] or [0.0]
    lo, hi = min(ts), max(ts)
    pad = max((hi - lo) * 0.03, 1.0)
    return lo - pad, hi + pad


def _finish(fig: PlotFigure, ax: Any, handles: list, title: str, note: str) -> PlotFigure:
    add_legend(fig, handles)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    ax.set_title(note, fontsize=9, loc="left", color="0.25")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.summary = f"{title}: {note}"
    return fig


def _matches(op: Op, h: Any) -> bool:
    if h is op or h is op.invoke or h is op.complete:
        return True
    if isinstance(h, Op):
        return h.invoke is op.invoke or (h.process == op.process and h.start == op.start)
    try:
        if h == op.invoke or (op.complete is not None and h == op.complete):
            return True
    except Exception:
        pass
    inv = field(h, "invoke")           # a pair of (invoke, completion) entries
    if inv is not None and not isinstance(inv, (str, bool)):
        try:
            if inv is op.invoke or inv == op.invoke:
                return True
        except Exception:
            pass
    p = field(h, "process")
    t = field(h, "time")
    t = field(h, "start") if t is None else t
    return p == op.process and t is not None and float(t) in (op.start, op.end)


def timeline(history: Any, *, highlight: Any = None, faults: Any = None,
             title: str | None = None) -> PlotFigure:
    """One row per client process; a bar per operation from invocation to completion, green
    for ok, red for fail, orange for info (hatched to the end of the plot: it may have taken
    effect any time after it was invoked). Bars are labelled "f key value" where they fit.

    ``highlight``: an operation or a list of them (a history entry -- invoke or completion --,
    an ``Op``, or anything with ``process`` and ``time``) to outline in black; or a checker's
    verdict or violation, to outline the operation(s) it could not place."""
    ops = operations(history)
    spans = _faults_of(history, faults)
    lo, hi = _window(ops, spans)
    procs = sorted({o.process for o in ops}, key=natural_key)
    row = {p: i for i, p in enumerate(procs)}
    fig = new_figure(MAX_WIDTH_IN, min(16.0, max(2.6, 0.42 * len(procs) + 1.8)))
    ax = fig.add_subplot()
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(procs) - 0.4, -0.8)
    ax.set_yticks(range(len(procs)), [f"process {p}" for p in procs])
    ax.set_xlabel("time (ms)")
    handles = shade_faults(ax, spans)

    # a list (or plain tuple) names several operations; anything else, NamedTuples included, is one
    if hasattr(highlight, "explanations"):      # a Verdict: the operations its violations name
        highlight = [getattr(x, "op", x) for x in highlight.explanations or ()]
    elif hasattr(highlight, "op") and hasattr(highlight, "states"):   # a linearizability Violation
        highlight = highlight.op
    hl = [] if highlight is None else list(highlight) if type(highlight) in (list, tuple) else [highlight]
    pt_per_ms = axes_size_pt(ax)[0] / (hi - lo)
    min_w = 2.5 / pt_per_ms    # the shortest bar drawn: 2.5 points, so instant operations show
    labels = len(ops) <= 400
    for ty in ("info", "ok", "fail"):   # info first: its bar runs on under later operations
        bars = [(o.start, (o.end if o.end is not None else hi) - o.start, row[o.process]) for o in ops if o.type == ty]
        for r in sorted({b[2] for b in bars}):
            ax.broken_barh([(s, max(w, min_w)) for s, w, rr in bars if rr == r], (r - 0.3, 0.6),
                           facecolors=_COLOR[ty], alpha=0.35 if ty == "info" else 0.85,
                           hatch="///" if ty == "info" else None, edgecolor=_COLOR[ty] if ty == "info" else "none",
                           lw=0.5, zorder=2 if ty == "info" else 3)
        if bars:
            handles.append(Patch(facecolor=_COLOR[ty], alpha=0.8, label=f"{_LEGEND[ty]} ({len(bars):,})",
                                 hatch="///" if ty == "info" else None))
    n_hl = 0
    for o in ops:
        marked = any(_matches(o, h) for h in hl)
        end = o.end if o.end is not None else hi
        y = row[o.process]
        if marked:
            n_hl += 1
            ax.add_patch(Rectangle((o.start, y - 0.38), max(end - o.start, min_w), 0.76, fill=False,
                                   ec="black", lw=2.5, zorder=6))
        text = o.label()
        fits = (end - o.start) * pt_per_ms >= len(text) * 7.5 * 0.6 + 4
        if (labels and fits) or marked:
            inside = fits or not marked
            x = (o.start + end) / 2.0 if inside else o.start + max(end - o.start, min_w) + 3 / pt_per_ms
            ax.text(x, y, text,
                    fontsize=7.5, ha="center" if inside else "left", va="center", zorder=7, clip_on=True,
                    fontweight="bold" if marked else None,
                    bbox=None if inside else dict(boxstyle="round,pad=0.15", fc="white", ec="black", lw=0.8))
    if n_hl:
        handles.append(Patch(fill=False, ec="black", lw=2.5, label="highlighted"))
    note = f"{len(ops):,} operations by {len(procs)} processes" if ops else "empty history: nothing to draw"
    return _finish(fig, ax, handles, title or "operation timeline", note)


def latency(source: Any, *, faults: Any = None, log: bool | None = None, title: str | None = None) -> PlotFigure:
    """Latency (ms) of each completed operation against its invocation time, with a rolling
    median of the ok ones, and operations that never completed (info) marked along the top."""
    ops = operations(source)
    spans = _faults_of(source, faults)
    lo, hi = _window(ops, spans)
    fig = new_figure(MAX_WIDTH_IN, 4.2)
    ax = fig.add_subplot()
    ax.set_xlim(lo, hi)
    ax.set_xlabel("invocation time (ms)")
    ax.set_ylabel("latency (ms)")
    done = [o for o in ops if o.end is not None]
    lat = np.array([o.end - o.start for o in done]) if done else np.zeros(0)
    if log is None:
        pos = lat[lat > 0]
        log = bool(pos.size) and pos.max() / max(pos.min(), 1e-9) > 100
    if log:
        ax.set_yscale("log")
    handles = shade_faults(ax, spans)
    fs = sorted({str(o.f) for o in done}, key=str)
    markers = dict(zip(fs, "o^sDv<>p*h" * 3))
    for ty in ("ok", "fail"):
        for f in fs:
            pts = [(o.start, o.end - o.start) for o in done if o.type == ty and str(o.f) == f]
            if pts:
                xs, ys = zip(*pts)
                ys = np.maximum(ys, 1e-3) if log else ys
                ax.scatter(xs, ys, s=14, marker=markers[f], c=_COLOR[ty], alpha=0.7, lw=0, zorder=3)
                handles.append(Line2D([], [], ls="", marker=markers[f], color=_COLOR[ty],
                                      label=f"{f} {ty} ({len(pts):,})"))
    ok = sorted((o.start, o.end - o.start) for o in done if o.type == "ok")
    if len(ok) >= 5:
        k = max(5, len(ok) // 25) | 1
        xs = np.array([p[0] for p in ok])
        ys = np.array([p[1] for p in ok])
        med = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(ys, k // 2, mode="edge"), k), axis=1)
        ax.plot(xs, np.maximum(med, 1e-3) if log else med, color="black", lw=1.5, zorder=4)
        handles.append(Line2D([], [], color="black", lw=1.5, label=f"rolling median ({k} ops)"))
    open_ = [o.start for o in ops if o.end is None]
    if open_:
        ax.scatter(open_, [0.0] * len(open_), transform=ax.get_xaxis_transform(), marker="^", s=40,
                   c=INFO, zorder=5, clip_on=False)
        handles.append(Line2D([], [], ls="", marker="^", color=INFO,
                              label=f"never completed / info ({len(open_):,})"))
    if not done:
        ax.set_ylim(0, 1)
    headroom(ax)
    note = (f"{len(done):,} completed, median {np.median(lat):.3g} ms, p99 {np.percentile(lat, 99):.3g} ms"
            if done else "no completed operations")
    return _finish(fig, ax, handles, title or "latency", note)


def rate(source: Any, *, bin_ms: float | None = None, faults: Any = None, title: str | None = None) -> PlotFigure:
    """Operations completed per second over time (by completion time; info operations by
    invocation time), one line per outcome, faults shaded."""
    if bin_ms is not None:
        bin_ms = argcheck.ms(bin_ms, "rate(bin_ms)", positive=True)
    ops = operations(source)
    spans = _faults_of(source, faults)
    lo, hi = _window(ops, spans)
    if bin_ms is None:
        raw = (hi - lo) / 60.0
        mag = 10 ** math.floor(math.log10(max(raw, 1e-3)))
        bin_ms = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    edges = np.arange(lo, hi + bin_ms, bin_ms)
    fig = new_figure(MAX_WIDTH_IN, 3.8)
    ax = fig.add_subplot()
    ax.set_xlim(lo, hi)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("operations / s")
    handles = shade_faults(ax, spans)
    peak = 0.0
    for ty in ("ok", "fail", "info"):
        ts = [o.end if o.end is not None else o.start for o in ops if o.type == ty]
        if not ts:
            continue
        counts, _ = np.histogram(ts, bins=edges)
        per_s = counts * 1000.0 / bin_ms
        peak = max(peak, float(per_s.max()))
        ax.stairs(per_s, edges, color=_COLOR[ty], lw=1.6, fill=(ty == "ok"), alpha=0.35 if ty == "ok" else 1.0,
                  zorder=3)
        if ty == "ok":
            ax.stairs(per_s, edges, color=_COLOR[ty], lw=1.6, zorder=3)
        handles.append(Line2D([], [], color=_COLOR[ty], lw=2, label=f"{ty} ({len(ts):,})"))
    ax.set_ylim(0, max(peak * 1.05, 1.0))
    headroom(ax)
    note = f"{len(ops):,} operations, bins of {bin_ms:g} ms" if ops else "no operations"
    return _finish(fig, ax, handles, title or "throughput", note)
