"""The live control panel: see a cluster, and break it, with the mouse.

``panel(cluster)`` returns a ``Panel`` widget (ipywidgets 8): a tile per node (state,
incarnation, the role it reports with ``ctx.report(role=...)``, a few ``ctx.count`` counters,
and kill / restart / pause / resume / slow buttons), a link matrix (click a cell to cut src -> dst,
click again to restore it; a toggle makes clicks two-way), presets (isolate a node, a
minority split, heal all), delay and drop sliders applied to every link, a strip chart of
one metric, and a status line with the last action and its result.

Theory of operation (details in ``panel.py``): the panel is built on the main thread; button
callbacks run there too and call the cluster's fault methods; one daemon thread refreshes the
widgets at ``refresh_hz`` (at most 10 Hz) by setting traits only; one lock keeps a refresh
from reading the cluster in the middle of an action. The panel holds the cluster by weak
reference, and its thread stops when the cluster closes or the panel is closed.

Headless. A widget needs a front end to draw it, and nothing in the kernel can ask whether
one is listening, so ``has_frontend()`` decides by where the code runs:

1. ``LABKIT_PANEL=widget`` or ``LABKIT_PANEL=text`` in the environment decides outright;
2. no IPython kernel (``IPython.get_ipython()`` is None, or a terminal IPython without
   ``.kernel``) -- plain python, pytest -- means text;
3. a kernel started for a front end means widget: Jupyter Server (JupyterLab, Notebook 7,
   Binder) sets ``JPY_SESSION_NAME`` in its kernels' environment, VS Code defines
   ``__vsc_ipynb_file__`` in the namespace, Colab loads ``google.colab``;
4. any other kernel -- one started directly by jupyter_client, as nbval, nbconvert
   --execute and papermill do -- means text.

Headless, ``panel()`` prints ``text_summary(cluster)`` (node states, incarnations, reported
roles, slow factors and ``cluster.net.describe()``; no times, pids or counters, so the same
cluster state prints the same text) and returns None.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

from .panel import MAX_HZ, Panel, check_args

__all__ = ["panel", "Panel", "has_frontend", "text_summary", "MAX_HZ"]


def has_frontend() -> bool:
    """True when a widget would be drawn (the rule is in the module docstring)."""
    forced = os.environ.get("LABKIT_PANEL", "").strip().lower()
    if forced in ("widget", "text"):
        return forced == "widget"
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or "__vsc_ipynb_file__" in shell.user_ns
                or "google.colab" in sys.modules)


def text_summary(cluster: Any) -> str:
    """The panel as short, deterministic text: one line per node, then the network."""
    if cluster.closed:
        return f"labkit panel: Cluster({cluster.runtime}, seed={cluster.seed}) is closed"
    status, counters = cluster.status(), cluster.counters()
    lines = [f"labkit panel: Cluster({cluster.runtime}, {len(status)} nodes, seed={cluster.seed})"]
    for node, s in status.items():
        role = counters[node]["status"].get("role") if s.state in ("up", "paused") else None
        lines.append(f"  {node:<6} {s.state:<8} incarnation {s.incarnation}" + (f"  role {role}" if role else "")
                     + (f"  slow ×{s.slow:g}" if s.slow != 1 else ""))
    lines.append(f"  network: {cluster.net.describe()}")
    return "\n".join(lines)


def panel(cluster: Any, *, metric: Callable[[Any], float] | None = None,
          refresh_hz: float = 4) -> Panel | None:
    """The live control panel of ``cluster``: a widget to display (the last line of a cell
    shows it). With no front end to draw it, print ``text_summary(cluster)`` and return None.

    ``metric(cluster) -> float`` adds a chart series of your own; it runs on the panel's
    thread, so it should only read the cluster (``status``, ``counters``, ``journal``).
    ``refresh_hz`` is in (0, 10]."""
    check_args(metric, refresh_hz)
    if not has_frontend():
        print(text_summary(cluster))
        return None
    return Panel(cluster, metric=metric, refresh_hz=refresh_hz)
