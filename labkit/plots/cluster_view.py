"""A picture of the cluster at one instant: nodes on a circle coloured by state, the role
each reports, cut links, and the groups of a partition."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch, Polygon

from ..journal import Journal
from ._base import PlotFigure, add_legend, fault_spans, new_figure, node_ids

STATE_COLORS = {"up": "#2ca02c", "paused": "#1f77b4", "down": "#7f7f7f", "crashed": "#d62728"}
_GROUP_COLORS = ["#9467bd", "#ff7f0e", "#17becf", "#bcbd22", "#8c564b", "#e377c2"]


def cluster_view(cluster_or_journal: Any, at: float | None = None, *, title: str | None = None) -> PlotFigure:
    """The nodes on a circle at time ``at`` (ms; default: the end of the journal), coloured by
    state (up / paused / down / crashed), labelled with the ``role`` they last reported
    (``ctx.report(role=...)``, from ``stats`` events of the current incarnation), cut links
    dashed red (arrow = one-way), and partition groups as shaded hulls."""
    journal: Journal = getattr(cluster_or_journal, "journal", cluster_or_journal)
    events = sorted(journal, key=lambda e: e.t)
    ids = list(getattr(cluster_or_journal, "ids", ()) or node_ids(events))
    t_end = events[-1].t if events else 0.0
    at = t_end if at is None else float(at)
    active = [s for s in fault_spans(events) if s.covers(at)]

    state = {n: "up" for n in ids}
    groups: list[list[str]] = []
    cuts: set[tuple[str, str]] = set()
    notes = []
    for s in active:
        if s.kind in ("down", "crashed", "paused") and s.detail in state:
            state[s.detail] = s.kind
        elif s.kind == "partition":
            groups = [g.split(",") for g in s.detail.split(" | ")]
        elif s.kind == "cut":
            notes.append(f"cut: {s.detail}")
            one_way = "→" in s.detail
            a, b = s.detail.split("→" if one_way else "↔")
            for x in (ids if a == "*" else [a]):
                for y in (ids if b == "*" else [b]):
                    if x != y:
                        cuts.add((x, y))
                        if not one_way:
                            cuts.add((y, x))
        elif s.kind in ("link", "skew", "slow", "nemesis"):
            notes.append(f"{s.kind}: {s.detail}" if s.kind != "nemesis" else s.detail)
    role: dict[str, str] = {}
    for e in events:
        if e.t > at:
            break
        if e.kind in ("start", "restart") and e.node in state:
            role.pop(e.node, None)
        elif e.kind == "stats" and e.node in state:
            st = e.get("status") or {}
            if st:
                role[e.node] = str(st.get("role", next(iter(st.values())) if len(st) == 1 else ""))

    n = max(len(ids), 1)
    fig = new_figure(7.5, 6.2)
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_xlim(-1.55, 1.55)
    ax.set_ylim(-1.45, 1.5)
    pos = {nid: (math.cos(math.pi / 2 - 2 * math.pi * i / n), math.sin(math.pi / 2 - 2 * math.pi * i / n))
           for i, nid in enumerate(ids)}
    r = min(0.16, 0.9 * math.pi / n) if n > 1 else 0.2
    handles: list = []

    for gi, g in enumerate(groups):
        pts = [pos[x] for x in g if x in pos]
        if not pts:
            continue
        color = _GROUP_COLORS[gi % len(_GROUP_COLORS)]
        ax.add_patch(Polygon(_rounded_hull(pts, r * 1.7), closed=True, fc=color, ec=color, alpha=0.18, lw=1.5,
                             zorder=0))
        handles.append(Patch(fc=color, alpha=0.35, label=f"group {gi + 1}: {', '.join(g)}"))

    group_of = {x: i for i, g in enumerate(groups) for x in g}
    drew_cut = False
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            (xa, ya), (xb, yb) = pos[a], pos[b]
            ab, ba = (a, b) in cuts, (b, a) in cuts
            split = a in group_of and b in group_of and group_of[a] != group_of[b]
            if ab or ba or split:
                drew_cut = True
                ax.plot([xa, xb], [ya, yb], color="#d62728", ls="--", lw=1.6 if (ab or ba) else 1.0,
                        alpha=0.9 if (ab or ba) else 0.5, zorder=1)
                if ab != ba:  # one-way: an arrow head on the direction that is cut
                    (sx, sy), (dx, dy) = (pos[a], pos[b]) if ab else (pos[b], pos[a])
                    ux, uy = (dx - sx) / math.dist((sx, sy), (dx, dy)), (dy - sy) / math.dist((sx, sy), (dx, dy))
                    tip = (dx - ux * r * 1.15, dy - uy * r * 1.15)
                    ax.annotate("", xy=tip, xytext=(tip[0] - ux * 0.12, tip[1] - uy * 0.12),
                                arrowprops=dict(arrowstyle="-|>,head_length=0.8,head_width=0.4", color="#d62728",
                                                lw=1.6, shrinkA=0, shrinkB=0))
            elif n <= 16:
                ax.plot([xa, xb], [ya, yb], color="0.8", lw=0.8, zorder=1)
    if drew_cut:
        handles.append(Line2D([], [], color="#d62728", ls="--", label="link cut / partitioned"))

    for nid in ids:
        x, y = pos[nid]
        st = state[nid]
        ax.add_patch(Circle((x, y), r, fc=STATE_COLORS[st], ec="black", lw=1.2, zorder=3,
                            alpha=1.0))
        ax.text(x, y, nid, ha="center", va="center", fontsize=max(6, min(11, 60 / n + 4)), color="white",
                fontweight="bold", zorder=4)
        text = role.get(nid, "") if st == "up" else st if not role.get(nid) else f"{role[nid]} ({st})"
        if text:
            ux, uy = x * (1 + (r + 0.1) / 1.0), y * (1 + (r + 0.1) / 1.0)
            ax.text(ux, uy, text, ha="center" if abs(x) < 0.3 else ("left" if x > 0 else "right"),
                    va="center" if abs(y) > 0.3 or abs(x) >= 0.3 else ("bottom" if y > 0 else "top"),
                    fontsize=9, zorder=4, fontweight="bold" if text.startswith("leader") else None)
    present = [s for s in STATE_COLORS if s in state.values()]
    handles = [Patch(fc=STATE_COLORS[s], ec="black", label=s) for s in present] + handles
    if notes:
        ax.text(-1.55, -1.45, "\n".join(notes), fontsize=8, va="bottom", ha="left",
                color="0.3")
    add_legend(fig, handles)
    fig.suptitle(title or f"cluster at t = {at:,.0f} ms", fontsize=11, fontweight="bold")
    counts = ", ".join(f"{sum(1 for v in state.values() if v == s)} {s}" for s in present) or "no nodes"
    part = f"; partition {' | '.join(','.join(g) for g in groups)}" if groups else ""
    fig.summary = f"cluster_view at {at:.0f} ms: {counts}{part}"
    return fig


def _rounded_hull(points: list[tuple[float, float]], pad: float) -> np.ndarray:
    """The convex hull of discs of radius ``pad`` around ``points`` (monotone chain)."""
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    cloud = sorted({(round(px + pad * math.cos(a), 9), round(py + pad * math.sin(a), 9))
                    for px, py in points for a in ang})

    def half(pts):
        h: list = []
        for p in pts:
            while len(h) >= 2 and ((h[-1][0] - h[-2][0]) * (p[1] - h[-2][1])
                                   - (h[-1][1] - h[-2][1]) * (p[0] - h[-2][0])) <= 0:
                h.pop()
            h.append(p)
        return h
    lower, upper = half(cloud), half(cloud[::-1])
    return np.array(lower[:-1] + upper[:-1])
