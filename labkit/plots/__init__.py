"""Plots of a journal or a history, all matplotlib, all pure functions returning a Figure.

    spacetime(journal, nodes=, types=, since=, until=, max_messages=)  space-time diagram
    timeline(history, highlight=)            operations per client process, ok/fail/info
    latency(history_or_journal, faults=)     latency over time, rolling median
    rate(history_or_journal, faults=)        operations per second over time
    cluster_view(cluster_or_journal, at=)    nodes, states, roles, cuts, partitions
    capacity(cluster_or_journal, nodes=)     worker utilization, queue length and shed work per node
    fault_spans(journal)                     [(start_ms, end_ms, kind, detail)], shaded on every time axis
    to_svg(fig)                              SVG text

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot, so they are
safe to build from a background thread and are never displayed twice. Returned figures are
``PlotFigure``s: in Jupyter they display inline as SVG with no ``%matplotlib`` line (if the
inline backend is also active it adds a PNG copy; ``%config InlineBackend.figure_formats =
['svg']`` avoids that), and their ``repr`` is a one-line text summary for headless runs.

Every figure fits a notebook column: at most ``MAX_WIDTH_IN`` (9.5 in, 912 px) wide, with its
legend below the axes, inside the figure. A ``PlotFigure`` a chapter makes wider is shown
scaled down to that width.
"""
from ._base import MAX_WIDTH_IN, FaultSpan, Op, PlotFigure, fault_spans, operations, to_svg
from .capacity import capacity
from .cluster_view import cluster_view
from .ops import latency, rate, timeline
from .spacetime import spacetime

__all__ = ["spacetime", "timeline", "latency", "rate", "cluster_view", "capacity", "fault_spans", "to_svg",
           "operations", "FaultSpan", "Op", "PlotFigure", "MAX_WIDTH_IN"]
