"""The panel's strip chart: inline SVG built as a string (no matplotlib, so safe in any thread)."""
from __future__ import annotations

import html
from typing import Sequence

NO_METRIC = "(no metric)"
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")


def strip_chart(history: Sequence[dict], choice: str, metric_label: str | None, ids: Sequence[str],
                width: int = 560, height: int = 150) -> str:
    """``choice`` over the panel's samples (dicts with ``now`` ms, per-node ``counters`` and a
    ``metric`` value): one line per node for a counter, one line for ``metric_label``."""
    if choice == NO_METRIC or not history:
        return "<small><i>pick a counter (or pass metric=...) to chart it</i></small>"
    if choice == metric_label:
        series = {choice: [(h["now"], h["metric"]) for h in history if h["metric"] is not None]}
    else:
        series = {n: [(h["now"], h["counters"][n][choice]) for h in history if choice in h["counters"][n]]
                  for n in ids}
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f"<small><i>no samples of {html.escape(choice)} yet</i></small>"
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    v0, v1 = min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts)
    tw, vh = max(t1 - t0, 1.0), max(v1 - v0, 1e-9)
    left, right, top, bottom = 48, 100, 8, 20
    pw, ph = width - left - right, height - top - bottom

    def xy(t: float, v: float) -> str:
        return f"{left + (t - t0) / tw * pw:.1f},{top + (1 - (v - v0) / vh) * ph:.1f}"

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"style='font:11px sans-serif'>",
           f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='#fafafa' stroke='#ccc'/>",
           f"<text x='{left - 4}' y='{top + 9}' text-anchor='end'>{v1:g}</text>",
           f"<text x='{left - 4}' y='{height - bottom}' text-anchor='end'>{v0:g}</text>",
           f"<text x='{left}' y='{height - 5}'>{t0 / 1000:.1f} s</text>",
           f"<text x='{left + pw}' y='{height - 5}' text-anchor='end'>{t1 / 1000:.1f} s</text>",
           f"<text x='{left + pw / 2}' y='{height - 5}' text-anchor='middle'>{html.escape(choice)}</text>"]
    for i, (name, s) in enumerate(series.items()):
        if not s:
            continue
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.6' "
                   f"points='{' '.join(xy(t, v) for t, v in s)}'/>")
        out.append(f"<text x='{left + pw + 6}' y='{top + 12 + 13 * i}' fill='{colour}'>"
                   f"{html.escape(name)} {s[-1][1]:g}</text>")
    out.append("</svg>")
    return "".join(out)
