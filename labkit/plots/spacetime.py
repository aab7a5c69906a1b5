"""Space-time (Lamport) diagrams of a journal.

Theory of operation. One pass over the journal groups message events by message id: a
message has at most one ``send``, any number of ``deliver`` events (duplicates) and ``drop``
events. Each delivery is an arrow from (send time, sender's lifeline) to (delivery time,
receiver's lifeline); a drop is a red cross on the receiver's lifeline when the message was
dropped on arrival, or on its way out of the sender when it never left (dropped at send time),
with a dashed red line from where it was sent. Arrows
are drawn as one quiver and drops as one scatter per rule, so thousands of messages render
in well under a second. When more than ``max_messages`` messages fall in the window an
evenly spaced sample is drawn, and the figure says so.
"""
from __future__ import annotations

import math
import textwrap
from typing import Iterable

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import argcheck
from ..journal import Journal
from ..runtime.base import is_client_id
from ._base import (FAULT_STYLE, MAX_WIDTH_IN, NOT_NODES, PlotFigure, add_legend, axes_size_pt, fault_spans,
                    natural_key, new_figure, shade_faults)

_TYPE_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2",
                "#ff7f0e", "#7f7f7f"]
_DROP_COLORS = ["#d62728", "#8b0000", "#ff4500", "#c71585", "#b22222"]
_MSG = ("send", "deliver", "drop")
LABEL_LIMIT = 150
LABEL_DENSITY = 0.5   # label message types only while there are at most this many messages per point of width
CLIENTS = "clients"


def spacetime(journal: Journal, *, nodes: Iterable[str] | None = None, types: Iterable[str] | None = None,
              since: float | None = None, until: float | None = None, max_messages: int = 2000,
              title: str | None = None) -> PlotFigure:
    """Draw the journal as a space-time diagram: one lifeline per node (and one for clients),
    an arrow per delivered message, a red cross per drop, down/paused bands, crash and
    restart marks, and partitions shaded behind everything.

    ``nodes``: lifelines to show (messages between two shown lifelines are drawn; name a
    client id to include the clients' lifeline). ``types``: message types to draw.
    ``since``/``until``: the time window in ms. At most ``max_messages`` messages are drawn;
    beyond that an evenly spaced sample is drawn and the subtitle says which."""
    if not isinstance(max_messages, int) or max_messages < 1:
        raise ValueError(f"max_messages must be a whole number >= 1, got {max_messages!r}")
    if isinstance(nodes, str):
        nodes = [nodes]                 # one node, not its characters
    if isinstance(types, str):
        types = [types]
    if since is not None:
        since = argcheck.number(since, "spacetime(since)", unit="ms")
    if until is not None:
        until = argcheck.number(until, "spacetime(until)", unit="ms")
    events = sorted(getattr(journal, "journal", journal), key=lambda e: e.t)   # a Cluster works too
    t_first = events[0].t if events else 0.0
    t_last = events[-1].t if events else 1.0
    x0 = t_first if since is None else since
    x1 = max(t_last, x0 + 1.0) if until is None else until
    if x1 <= x0:
        x1 = x0 + 1.0

    # -- lifelines --------------------------------------------------------------------------
    msgs: dict[str, list] = {}        # id -> [send, delivers, drops]
    seen: set[str] = set()
    for e in events:
        if e.kind in _MSG:
            m = msgs.get(e.id)
            if m is None:
                m = msgs[e.id] = [None, [], []]
            if e.kind == "send":
                m[0] = e
            else:
                m[1 if e.kind == "deliver" else 2].append(e)
        if e.node not in NOT_NODES:
            seen.add(e.node)
    clients = any(is_client_id(n) for n in seen)
    all_nodes = sorted((n for n in seen if not is_client_id(n)), key=natural_key)
    if nodes is not None:
        wanted = [str(n) for n in nodes]
        unknown = [n for n in wanted if n not in seen and not is_client_id(n) and n != CLIENTS]
        if unknown and events:
            raise ValueError(f"spacetime(nodes=...): {unknown} has no events in this journal; its nodes are "
                             f"{all_nodes}")
        clients = clients and any(is_client_id(n) or n == CLIENTS for n in wanted)
        all_nodes = [n for n in wanted if not is_client_id(n) and n != CLIENTS]
    lanes = ([CLIENTS] if clients else []) + all_nodes
    y_of = {n: i for i, n in enumerate(lanes)}

    def lane(n: str | None) -> int | None:
        if n is None:
            return None
        return y_of.get(CLIENTS) if is_client_id(n) else y_of.get(n)

    # -- messages in the window -------------------------------------------------------------
    type_set = None if types is None else set(types)
    chosen = []
    for send, dels, drops in msgs.values():
        first = send or (dels[0] if dels else drops[0])
        d = first.data
        ys, yd = lane(d.get("src")), lane(d.get("dst"))
        if ys is None or yd is None or (type_set is not None and d.get("type") not in type_set):
            continue
        ts = send.t if send is not None else float(d.get("at", first.t))
        t_end = max([e.t for e in dels + drops], default=ts)
        if t_end < x0 or ts > x1:
            continue
        chosen.append((ts, ys, yd, d.get("type"), send, dels, drops))
    chosen.sort(key=lambda m: m[0])
    total = len(chosen)
    step = max(1, math.ceil(total / max_messages))
    shown = chosen[::step] if step > 1 else chosen

    # -- figure -----------------------------------------------------------------------------
    n_lanes = max(len(lanes), 1)
    fig = new_figure(MAX_WIDTH_IN, min(16.0, max(3.0, 0.5 * n_lanes + 1.9)))
    ax = fig.add_subplot()
    ax.set_xlim(x0, x1)
    ax.set_ylim(n_lanes - 0.4, -1.0)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_xlabel("time (ms)")
    ax.hlines(range(len(lanes)), x0, x1, color="0.55", lw=0.8, zorder=1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)

    spans = fault_spans(events)
    net_spans = [s for s in spans if s.kind in ("partition", "cut", "link", "nemesis", "skew")]
    handles: list = shade_faults(ax, net_spans)
    node_kinds = []
    for s in spans:
        y = y_of.get(s.detail.split()[0]) if s.kind in ("down", "crashed", "paused", "slow") else None
        if y is None or s.end < x0 or s.start > x1:
            continue
        ax.broken_barh([(s.start, max(s.end - s.start, 1e-6))], (y - 0.22, 0.44),
                       color=FAULT_STYLE[s.kind][0], alpha=0.3, lw=0, zorder=1.5)
        if s.kind not in node_kinds:
            node_kinds.append(s.kind)
    handles += [Patch(color=FAULT_STYLE[k][0], alpha=0.4, label=FAULT_STYLE[k][1]) for k in node_kinds]
    marks = {"kill": ("X", "black", "kill"), "crash": ("X", "#d62728", "crash"),
             "restart": (">", "#2ca02c", "restart"), "pause": ("|", "#1f77b4", None),
             "resume": ("|", "#1f77b4", None)}
    for kind, (marker, color, label) in marks.items():
        pts = [(e.t, y_of[e.node]) for e in events if e.kind == kind and e.node in y_of and x0 <= e.t <= x1]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, marker=marker, s=110 if marker != "|" else 220, c=color, zorder=10,
                       linewidths=1.5 if marker == "|" else 0.5, edgecolors="white" if marker != "|" else None)
            if label:
                handles.append(Line2D([], [], ls="", marker=marker, color=color, ms=8, label=label))

    # -- arrows, drops, labels --------------------------------------------------------------
    type_counts: dict[str, int] = {}
    for m in shown:
        type_counts[m[3]] = type_counts.get(m[3], 0) + 1
    top = sorted(type_counts, key=lambda t: (-type_counts[t], str(t)))
    color_of = {t: _TYPE_COLORS[i] for i, t in enumerate(top[: len(_TYPE_COLORS) - 1])}
    other = "#aaaaaa"
    ax_x, ay, au, av, acol = [], [], [], [], []
    drops: dict[str, list] = {}
    drop_lines = []
    n_drop_total = sum(len(m[6]) for m in chosen)
    unmatched = 0
    flight_lines: list = []
    flight_cols: list = []
    for ts, ys, yd, mtype, send, dels, drps in shown:
        col = color_of.get(mtype, other)
        for d in dels:
            ax_x.append(ts), ay.append(ys), au.append(d.t - ts), av.append(yd - ys), acol.append(col)
        for d in drps:
            px, py = d.t, _drop_y(d, ts, send, ys, yd)
            drops.setdefault(str(d.get("rule")), []).append((px, py))
            drop_lines.append([(ts, ys), (px, py)])
        if not dels and not drps:       # in flight at the end: dotted, towards its receiver
            unmatched += 1
            flight_lines.append([(ts, ys), (max(x1, ts), yd)])
            flight_cols.append(col)
    if ax_x:
        ax.quiver(ax_x, ay, au, av, color=acol, angles="xy", scale_units="xy", scale=1, units="inches",
                  width=0.008, headwidth=4.5, headlength=6, headaxislength=5, minlength=0, zorder=3)
    if flight_lines:
        ax.add_collection(LineCollection(flight_lines, colors=flight_cols, linestyles="dotted", lw=1.2,
                                         alpha=0.8, zorder=3))
        handles.append(Line2D([], [], color="0.35", ls="dotted", lw=1.5,
                              label=f"not delivered by the end: in flight, or lost with a node ({unmatched:,})"))
    if drop_lines:
        ax.add_collection(LineCollection(drop_lines, colors="#d62728", linestyles="dashed", lw=0.8,
                                         alpha=0.6, zorder=3))
    n_drops_shown = sum(len(p) for p in drops.values())
    for i, (rule, pts) in enumerate(sorted(drops.items(), key=lambda kv: -len(kv[1]))):
        xs, ys = zip(*pts)
        color = _DROP_COLORS[i % len(_DROP_COLORS)]
        ax.scatter(xs, ys, marker="x", s=60 if n_drops_shown <= 300 else 25, c=color,
                   linewidths=2 if n_drops_shown <= 300 else 1.2, zorder=9)
        handles.append(Line2D([], [], ls="", marker="x", color=color, mew=2, ms=7,
                              label=f"dropped: {rule} ({len(pts):,})"))
    if len(shown) <= axes_size_pt(ax)[0] * LABEL_DENSITY:
        _label_messages(ax, shown, x0, x1)

    type_handles = [Line2D([], [], color=color_of[t], lw=2, label=str(t)) for t in color_of]
    if len(top) > len(color_of):
        type_handles.append(Line2D([], [], color=other, lw=2, label=f"{len(top) - len(color_of)} other types"))
    add_legend(fig, type_handles + handles)

    # -- titles and summary -------------------------------------------------------------------
    note = f"{x0:,.0f}–{x1:,.0f} ms, {total:,} messages"
    if step > 1:
        note = (f"showing {len(shown):,} of {total:,} messages (every {_ordinal(step)}); "
                f"zoom in with since=/until= or types=")
    if n_drop_total:
        note += f"; {n_drop_total:,} drop{'s' if n_drop_total > 1 else ''} in window"
        note += f" ({n_drops_shown:,} shown)" if step > 1 else ""
    if unmatched:
        note += f"; {unmatched:,} neither delivered nor dropped (in flight, or lost with a node)"
    if not lanes:
        note = "empty journal: nothing to draw"
    fig.suptitle(title or "space-time diagram", fontsize=11, fontweight="bold")
    ax.set_title(textwrap.fill(note, int(axes_size_pt(ax)[0] / 5.2)), fontsize=9, loc="left", color="0.25")
    fig.summary = f"spacetime: {len(lanes)} lifelines, {note}"
    return fig


def _drop_y(drop, ts: float, send, ys: int, yd: int) -> float:
    """Where a drop's cross goes: on the receiver's lifeline if the message travelled and was
    dropped on arrival; 0.4 lanes from the sender toward the receiver if it never left (never on
    a third node's lifeline, which half-way could be)."""
    if drop.t > ts or send is None:
        return float(yd)
    return ys + (0.4 if yd > ys else -0.4 if yd < ys else -0.25)


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _label_messages(ax, shown: list, x0: float, x1: float) -> None:
    """Label arrows with their message type where the label fits: a greedy sweep in time that
    keeps labels in the same half-lane from overlapping, up to ``LABEL_LIMIT`` labels."""
    pt_per_ms = axes_size_pt(ax)[0] / (x1 - x0)
    busy: dict[int, float] = {}
    placed = 0
    for ts, ys, yd, mtype, send, dels, drps in shown:
        if placed >= LABEL_LIMIT:
            return
        if mtype is None or not (dels or drps):
            continue
        half = (len(str(mtype)) * 6.5 * 0.6 + 4) / 2.0 / pt_per_ms
        if dels:   # at the middle of the arrow
            xm, ym, dx = (ts + dels[0].t) / 2.0, (ys + yd) / 2.0 - (0.25 if ys == yd else 0), 0.0
        else:      # just right of the drop's cross
            xm, ym, dx = drps[0].t, _drop_y(drps[0], ts, send, ys, yd), 6.0
            xm += half + dx / pt_per_ms
        if not x0 <= xm <= x1:
            continue
        row = int(round(ym * 2))
        if any(busy.get(r, -np.inf) > xm - half for r in (row - 1, row, row + 1)):
            continue
        busy[row] = xm + half
        ax.text(xm, ym, str(mtype), fontsize=6.5, ha="center", va="center", zorder=8, clip_on=True,
                color="#8b0000" if not dels else "black",
                bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.8))
        placed += 1
