"""Capacity over time: how busy each node's workers were, how long its queue was, and what
it shed -- the USE method's utilization, saturation and errors (Gregg), read from the
``stats`` events of nodes that serve work with ``ctx.work`` (see ``labkit.capacity``)."""
from __future__ import annotations

from typing import Any, Sequence

from matplotlib.lines import Line2D

from ..context import STATS_INTERVAL_MS
from ..journal import Journal
from ._base import MAX_WIDTH_IN, PlotFigure, add_legend, as_spans, headroom, natural_key, new_figure, shade_faults

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _samples(journal: Journal, nodes: Sequence[str] | None) -> dict[str, list[tuple[float, int, dict]]]:
    """``{node: [(t, incarnation, counters), ...]}`` of the stats events with capacity metrics."""
    out: dict[str, list[tuple[float, int, dict]]] = {}
    for e in journal.filter(kind="stats"):
        if nodes is not None and e.node not in nodes:
            continue
        c = e.get("counters") or {}
        if "utilization" in c:
            out.setdefault(e.node, []).append((e.t, e.get("incarnation", 1), c))
    return out


def _incarnations(rows: list[tuple[float, int, dict]]) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` index ranges of ``rows`` with one incarnation each."""
    cuts = [i for i in range(1, len(rows)) if rows[i][1] != rows[i - 1][1]]
    bounds = [0] + cuts + [len(rows)]
    return list(zip(bounds[:-1], bounds[1:]))


def capacity(source: Any, *, nodes: Sequence[str] | None = None, faults: Any = None,
             title: str | None = None) -> PlotFigure:
    """Two panels over time (ms), one line per node that serves ``ctx.work``: top, worker
    utilization in [0, 1] (the share of worker-time busy, averaged over each 200-ms stats
    window); bottom, the queue length when the stats were taken, with an x where requests
    were shed (the count since the previous stats). ``source`` is a Cluster or a Journal;
    faults (a slow node, a kill, ...) are shaded from it, or from ``faults=`` (a journal or
    fault spans). ``nodes`` picks nodes (default: every node with capacity stats)."""
    journal: Journal = getattr(source, "journal", source)
    if not isinstance(journal, Journal):
        raise TypeError(f"capacity(source): give a Cluster or a Journal, got {type(source).__name__}")
    data = _samples(journal, set(nodes) if nodes is not None else None)
    spans = as_spans(journal if faults is None else faults)
    ids = sorted(data, key=natural_key)
    ts = [s[0] for v in data.values() for s in v] or [0.0, 1.0]
    lo, hi = min(ts + [s.start for s in spans]), max(ts)
    pad = max((hi - lo) * 0.02, 1.0)
    fig = new_figure(MAX_WIDTH_IN, 5.6)
    util_ax, queue_ax = fig.subplots(2, 1, sharex=True)
    for ax in (util_ax, queue_ax):
        ax.set_xlim(lo - pad, hi + pad)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    util_ax.set_ylim(0, 1.05)
    util_ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"])
    util_ax.set_ylabel("utilization")
    queue_ax.set_ylabel("queue length")
    queue_ax.set_xlabel("time (ms)")
    handles: list = []
    notes, peak, shed_total = [], 0.0, 0
    for i, n in enumerate(ids):
        colour = _COLOURS[i % len(_COLOURS)]
        rows = data[n]
        t = [r[0] for r in rows]
        util = [float(r[2].get("utilization", 0.0)) for r in rows]
        queued = [float(r[2].get("queued", 0)) for r in rows]
        for a, b in _incarnations(rows):    # one line per incarnation: none across a restart
            util_ax.step(t[a:b], util[a:b], where="pre", color=colour, lw=1.5, zorder=3)  # a window's mean, up to t
            queue_ax.step(t[a:b], queued[a:b], where="post", color=colour, lw=1.5, zorder=3)
        peak = max(peak, max(queued))
        shed_t, shed_y, last, node_shed = [], [], {}, 0
        for (tt, inc, c), q in zip(rows, queued):
            s = int(c.get("shed", 0))
            new = s - last.get(inc, 0)     # counters start again at each incarnation
            last[inc] = s
            if new > 0:
                shed_t.append(tt)
                shed_y.append(q)
                node_shed += new
        if shed_t:
            queue_ax.scatter(shed_t, shed_y, marker="x", s=40, color=colour, linewidths=1.8, zorder=4)
        shed_total += node_shed
        span = [b - a for a, b in zip([t[0] - STATS_INTERVAL_MS] + t[:-1], t)]     # each sample's window (ms)
        mean = sum(u * w for u, w in zip(util, span)) / max(sum(span), 1e-9)
        handles.append(Line2D([], [], color=colour, lw=2, label=f"{n}"))
        notes.append(f"{n} util {mean:.0%} max queue {max(queued):g} shed {node_shed}")
    queue_ax.set_ylim(0, max(peak * 1.1, 1.0))
    handles += shade_faults(util_ax, spans)
    shade_faults(queue_ax, spans, label_spans=False)
    headroom(util_ax)
    if shed_total:
        handles.append(Line2D([], [], ls="", marker="x", color="black", label=f"shed ({shed_total:,})"))
    add_legend(fig, handles)
    fig.suptitle(title or "capacity: utilization and queue", fontsize=11, fontweight="bold")
    note = "; ".join(notes) if notes else "no node served ctx.work: nothing to draw"
    util_ax.set_title(note if len(note) < 110 else note[:108] + "…", fontsize=9, loc="left", color="0.25")
    fig.summary = f"capacity: {note}"
    return fig
