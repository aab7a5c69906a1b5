"""What every plot shares: the figure class, SVG output, fault spans and their shading,
node ordering, and the operations of a history.

Figures are ``matplotlib.figure.Figure`` objects made directly (never through pyplot), so
they can be built from any thread and are never shown twice. ``PlotFigure`` adds
``_repr_svg_`` -- a returned figure displays inline as SVG without any ``%matplotlib`` line --
and a one-line ``repr`` that is the figure's deterministic text summary.
"""
from __future__ import annotations

import io
import math
import re
import threading
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..faults import FaultSpan, _fmt_groups, fault_spans
from ..journal import Journal
from ..runtime.base import is_client_id

OK, FAIL, INFO = "#2ca02c", "#d62728", "#ff7f0e"
#: Colour and legend text of each kind of fault span.
FAULT_STYLE: dict[str, tuple[str, str]] = {
    "down": ("#7f7f7f", "node down (killed)"),
    "crashed": ("#d62728", "node crashed"),
    "paused": ("#1f77b4", "node paused"),
    "partition": ("#9467bd", "partition"),
    "cut": ("#e377c2", "link cut"),
    "link": ("#bcbd22", "link faults"),
    "skew": ("#17becf", "clock skew"),
    "slow": ("#e6550d", "node slow (gray failure)"),
    "nemesis": ("#8c564b", "nemesis running"),
}
_SVG_LOCK = threading.Lock()


#: The widest figure labkit draws, in inches. SVG sizes are in points and browsers show a
#: point as 96/72 px, so 9.5 in is 912 px: it fits JupyterLab's output column at a 1,400-px
#: window with the file browser open (about 950 px), and so does every legend inside it.
MAX_WIDTH_IN = 9.5
#: Browser pixels per inch of figure (CSS: 96 px per inch, 72 points per inch).
PX_PER_IN = 96.0


class PlotFigure(Figure):
    """A matplotlib Figure that shows itself as SVG in Jupyter and has a text summary.

    Shown inline, a figure wider than ``MAX_WIDTH_IN`` (one a chapter built itself) is scaled
    down as a whole to that width, so nothing is cut off at the column's right edge."""

    summary: str = "figure"

    def _repr_svg_(self) -> str:
        return fit_svg(to_svg(self))

    def __repr__(self) -> str:
        return f"<{self.summary}>"

    __str__ = __repr__  # print(fig) in a headless run shows what was drawn


def new_figure(width: float, height: float) -> PlotFigure:
    """A constrained-layout figure ``width`` x ``height`` inches, never wider than ``MAX_WIDTH_IN``."""
    return PlotFigure(figsize=(min(width, MAX_WIDTH_IN), height), layout="constrained")


_SVG_SIZE = re.compile(r'<svg\b[^>]*?\swidth="(?P<w>[\d.]+)pt"\s+height="(?P<h>[\d.]+)pt"')


def fit_svg(svg: str, max_width_in: float = MAX_WIDTH_IN) -> str:
    """``svg`` (matplotlib's, sized in points, with a viewBox) shown at most ``max_width_in``
    wide: a wider one gets its width and height scaled down together; the drawing is kept."""
    m = _SVG_SIZE.search(svg)
    if m is None:
        return svg
    w, h = float(m["w"]), float(m["h"])
    limit = max_width_in * 72.0
    if w <= limit:
        return svg
    start, end = m.span()
    head = svg[start:end].replace(f'width="{m["w"]}pt"', f'width="{limit:.2f}pt"', 1)
    head = head.replace(f'height="{m["h"]}pt"', f'height="{h * limit / w:.2f}pt"', 1)
    return svg[:start] + head + svg[end:]


LEGEND_FONT = 8.0


def add_legend(fig: Figure, handles: Sequence, *, title: str | None = None) -> Any:
    """The figure's legend, below the axes ("outside lower center") in as many columns as fit
    the figure's width -- never to the right of it, where a narrow column would cut it off.
    The figure grows by the legend's height. Returns the Legend (None without handles)."""
    if not handles:
        return None
    width_pt = fig.get_figwidth() * 72.0 - 16.0
    item_pt = max(len(str(h.get_label())) for h in handles) * LEGEND_FONT * 0.56 + 32.0
    ncols = max(1, min(len(handles), int(width_pt // item_pt)))
    rows = math.ceil(len(handles) / ncols) + (1 if title else 0)
    fig.set_figheight(fig.get_figheight() + rows * LEGEND_FONT * 1.5 / 72.0 + 0.1)   # room for it: the axes keep theirs
    return fig.legend(handles=list(handles), loc="outside lower center", ncols=ncols, fontsize=LEGEND_FONT,
                      frameon=False, title=title, title_fontsize=LEGEND_FONT, columnspacing=1.4,
                      handletextpad=0.5)


def to_svg(fig: Figure) -> str:
    """The figure as SVG text (text kept as text, ids stable from run to run)."""
    buf = io.StringIO()
    # rc_context is the only way to reach these two settings. It changes matplotlib's global
    # rcParams for the moment of the call, so labkit's own SVG renders take turns (a figure
    # rendered to SVG elsewhere at that moment may get text as <text>, which is harmless).
    with _SVG_LOCK, matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "labkit"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


# -- fault spans: labkit.faults derives them; shading lives here ------------------------------

def as_spans(faults: Any) -> list[FaultSpan]:
    if faults is None:
        return []
    if isinstance(faults, Journal) or hasattr(faults, "journal"):
        return fault_spans(getattr(faults, "journal", faults))
    return [FaultSpan(*s) for s in faults]


STRIPS = ("link", "skew", "nemesis")
STRIP_PT = 3.5
LABEL_ROOM_PT = 34.0


def shade_faults(ax: Any, spans: Sequence[FaultSpan], *, label_spans: bool = True) -> list:
    """Shade ``spans`` across ``ax`` and label them in up to two rows along its top edge;
    return legend handles. Node and network faults shade the whole height; settings that
    may last the whole run (``STRIPS``: link faults, clock skew, a running nemesis) are thin
    strips along the top. Callers leave ``LABEL_ROOM_PT`` points free at the top."""
    kinds: list[str] = []
    x0, x1 = ax.get_xlim()
    width_pt, height_pt = axes_size_pt(ax)
    pt_per_ms = width_pt / max(x1 - x0, 1e-9)
    visible = [s for s in spans if s.end >= x0 and s.start <= x1]
    strip_kinds = [k for k in STRIPS if any(s.kind == k for s in visible)]
    row_end = [-math.inf, -math.inf]
    for s in visible:
        color = FAULT_STYLE.get(s.kind, ("#999999", s.kind))[0]
        if s.kind in strip_kinds:
            i = strip_kinds.index(s.kind)
            ax.axvspan(s.start, s.end, ymin=1 - (i + 1) * STRIP_PT / height_pt, ymax=1 - i * STRIP_PT / height_pt,
                       color=color, alpha=0.7, lw=0)
        else:
            ax.axvspan(s.start, max(s.end, s.start + 1e-6), color=color, alpha=0.13, lw=0, zorder=0)
        if s.kind not in kinds:
            kinds.append(s.kind)
        if not label_spans or s.kind == "nemesis":
            continue
        text = span_text(s)
        w = 6.5 * 0.6 * len(text) + 6
        xs = (max(s.start, x0) - x0) * pt_per_ms
        xs = min(xs, (x1 - x0) * pt_per_ms - w)   # keep a label near the right edge inside
        for r in (0, 1):
            if xs > row_end[r]:
                ax.annotate(text, xy=(x0 + max(xs, 0) / pt_per_ms, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(3, -3 - STRIP_PT * len(strip_kinds) - 9 * r), textcoords="offset points",
                            fontsize=6.5, color=color, va="top", ha="left", zorder=5, annotation_clip=False)
                row_end[r] = xs + w
                break
    return [Patch(color=FAULT_STYLE.get(k, ("#999", k))[0], alpha=0.35, label=FAULT_STYLE.get(k, ("", k))[1])
            for k in kinds]


def span_text(s: FaultSpan) -> str:
    if s.kind in ("down", "crashed", "paused"):
        return f"{s.detail} {s.kind}"
    return f"{s.kind} {s.detail}"


def headroom(ax: Any) -> None:
    """Raise the top of the y axis so ``LABEL_ROOM_PT`` points stay free for fault labels."""
    frac = max(0.5, 1.0 - LABEL_ROOM_PT / axes_size_pt(ax)[1])
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        llo, lhi = math.log10(lo), math.log10(hi)
        ax.set_ylim(lo, 10 ** (llo + (lhi - llo) / frac))
    else:
        ax.set_ylim(lo, lo + (hi - lo) / frac)


def axes_size_pt(ax: Any) -> tuple[float, float]:
    """The axes' size in points, estimated before layout (tick labels take ~1 in at the left;
    the legend sits below the axes, see ``add_legend``)."""
    fig, pos = ax.figure, ax.get_position()
    return (fig.get_figwidth() - 1.0) * 0.97 * 72.0, fig.get_figheight() * pos.height * 72.0


# -- nodes ------------------------------------------------------------------------------------

def natural_key(s: Any) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(s)))


#: Journal "nodes" that are not nodes: the cluster's own events and the nemesis's.
NOT_NODES = frozenset({"cluster", "nemesis"})


def node_ids(journal: Journal | Iterable) -> list[str]:
    """The node ids that appear in ``journal`` (not clients, not "cluster" or "nemesis"), in natural order."""
    seen = {e.node for e in journal}
    return sorted((n for n in seen if n not in NOT_NODES and not is_client_id(n)), key=natural_key)


# -- histories --------------------------------------------------------------------------------

class Op(NamedTuple):
    """One operation: an invocation paired with its completion (None if it never completed)."""

    process: Any
    f: Any
    value: Any
    key: Any
    type: str           # ok | fail | info
    start: float
    end: float | None
    invoke: Any
    complete: Any

    def label(self) -> str:
        key = "" if self.key is None else f" {self.key}"
        value = "" if self.value is None else f" {_short(self.value)}"
        return f"{self.f}{key}{value}"


def _short(v: Any, n: int = 24) -> str:
    s = str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def field(entry: Any, name: str, default: Any = None) -> Any:
    if isinstance(entry, Mapping):
        v = entry.get(name, entry.get(":" + name, default))
    else:
        v = getattr(entry, name, default)
    if name == "type" and v is not None:
        v = str(getattr(v, "value", v)).lstrip(":")
    return v


def _time(entry: Any) -> float:
    t = field(entry, "time")
    return float(field(entry, "t", 0.0) if t is None else t)


def operations(history: Any) -> list[Op]:
    """Pair a Jepsen-style history (or a Journal's client requests) into operations.

    A history is a sequence of dicts or objects with ``process``, ``type`` (invoke | ok |
    fail | info), ``f``, ``value``, optional ``key`` and ``time`` (ms). Each completion
    closes the open invocation of its process; an invocation never completed counts as info.
    """
    history = getattr(history, "journal", history)    # a Cluster: its journal
    if isinstance(history, Journal):
        return _journal_ops(history)
    ops: list[Op] = []
    pending: dict[Any, Any] = {}
    for entry in history:
        p, ty = field(entry, "process"), field(entry, "type")
        if ty == "invoke":
            if p in pending:
                ops.append(_op(pending.pop(p), None))
            pending[p] = entry
        elif ty in ("ok", "fail", "info") and p in pending:
            ops.append(_op(pending.pop(p), entry))
    ops.extend(_op(inv, None) for inv in pending.values())
    ops.sort(key=lambda o: o.start)
    return ops


def _op(inv: Any, done: Any) -> Op:
    value = field(done, "value") if done is not None else None
    if value is None:
        value = field(inv, "value")
    ty = field(done, "type") if done is not None else "info"
    end = _time(done) if done is not None and ty != "info" else None
    return Op(field(inv, "process"), field(inv, "f"), value, field(inv, "key"), ty, _time(inv), end, inv, done)


def _journal_ops(journal: Journal) -> list[Op]:
    """Client requests in a journal: a client's send is the invocation, the reply delivered
    to it (``re`` = the request id) the completion; a reply of type "error" is a failure, and
    so is an HTTP response (``cluster.http``) with a status of 400 or more."""
    sends, replies = [], {}
    for e in journal:
        if e.kind == "send" and is_client_id(e.node):
            sends.append(e)
        elif e.kind == "deliver" and is_client_id(e.node):
            replies.setdefault(e.get("re"), e)
    ops = []
    for s in sends:
        r = replies.get(s.id)
        value = _body_value(r.get("body")) if r is not None else None
        value = _body_value(s.get("body")) if value is None else value
        ty = "info" if r is None else ("fail" if r.type == "error" or _http_failed(r) else "ok")
        ops.append(Op(s.node, s.type, value, None, ty, s.t, r.t if r is not None else None, s, r))
    return ops


def _http_failed(reply: Any) -> bool:
    """Is ``reply`` an HTTP response (see ``labkit.http_types``) with an error status?"""
    t = reply.type
    return bool(t) and t.isdigit() and int(t) >= 400 and (reply.get("body") or {}).get("http") == "1.1"


def _body_value(body: Any) -> Any:
    """A message body as an operation's value: its ``value`` field if that is all it has."""
    if not body:
        return None
    if isinstance(body, Mapping) and "value" in body and len(body) == 1:
        return body["value"]
    return body
