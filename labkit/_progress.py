"""Progress of labkit calls that may take more than a few seconds: seed sweeps
(``labkit.sweep.sweep``) and long linearizability checks (``check_linearizable``).

One helper, ``Progress``, shown only where somebody watches and only once the call has run
``after`` seconds (a quick call shows nothing):

* a notebook that draws widgets (JupyterLab, Notebook 7, Binder, VS Code, Colab -- the rule of
  ``labkit.widgets.has_frontend``): an ipywidgets progress bar with a line of text, removed
  when the call ends, so the cell keeps only the report the call prints;
* a terminal (no IPython kernel, stderr is a TTY): one line on stderr, rewritten in place
  (``\\r``) and cleared at the end (or left as the final line when the caller gives one);
* nowhere under CI (``$CI`` set), in kernels without a front end (nbval, nbconvert
  --execute, papermill), under pytest's capture, or into pipes and files.

``mode`` overrides the rule: ``False`` never, ``True`` always (a text display in a headless
kernel), a callable receives a dict per update instead of anything being drawn. The
environment variable ``LABKIT_PROGRESS=off`` (or ``0``) turns the automatic display off.
At most four updates a second reach the screen, so ``update`` is cheap to call often.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

#: Seconds between two redraws (a widget or a terminal line); callables get every update
#: that passes the same limit.
MIN_INTERVAL_S = 0.25


def in_kernel() -> bool:
    """True inside a Jupyter (ZeroMQ) IPython kernel, with or without a front end."""
    ip = sys.modules.get("IPython")
    try:
        return ip is not None and type(ip.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:   # noqa: BLE001 -- any IPython oddity means "not a notebook"
        return False


def wanted(mode: Any = None) -> bool:
    """Should progress be shown? ``mode``: None = automatic (the module docstring's rule),
    True/False, or a callable (always: it asked)."""
    if mode is None:
        if os.environ.get("CI") or os.environ.get("LABKIT_PROGRESS", "").strip().lower() in ("0", "off", "no"):
            return False
        if in_kernel():
            from .widgets import has_frontend
            return has_frontend()
        return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return bool(mode)


class Progress:
    """Progress of one long call: ``done`` out of ``total`` (None when unknown) ``unit``
    (e.g. ``"seeds"``), with a short ``detail`` text.

    ``update(done, detail, **info)`` as work completes; ``close(final=None)`` when the call
    ends, also on errors (``with Progress(...) as p:`` does it). Nothing is drawn before
    ``after`` seconds (default 1.0). A callable ``mode`` receives
    ``{"done", "total", "unit", "label", "seconds", **info}``."""

    def __init__(self, label: str, total: int | None, *, unit: str = "", mode: Any = None,
                 after: float = 1.0) -> None:
        self.label, self.total, self.unit, self.after = label, total, unit, after
        self.active = wanted(mode)
        self.fn: Callable[[dict], Any] | None = mode if callable(mode) else None
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.kind = ""                  # "fn", "widget", "display", "line": decided at first show
        self._view: Any = None
        self._width = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def text(self, done: int, detail: str = "") -> str:
        of = f"/{self.total}" if self.total is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.label}: {done}{of}{unit}" + (f", {detail}" if detail else "") + \
            f" ({time.monotonic() - self.t0:.0f} s)"

    def update(self, done: int, detail: str = "", *, force: bool = False, **info: Any) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if not force and (now - self.t0 < self.after or now - self.last < MIN_INTERVAL_S):
            return
        self.last = now
        if not self.shown:
            self._open()
        self.shown = True
        if self.kind == "fn":
            self.fn({"done": done, "total": self.total, "unit": self.unit, "label": self.label,   # type: ignore[misc]
                     "seconds": round(now - self.t0, 1), **info})
        elif self.kind == "widget":
            bar, label = self._view.children
            if self.total is not None:
                bar.value = min(done, self.total)
            label.value = self.text(done, detail)
        elif self.kind == "display":
            self._view.update({"text/plain": self.text(done, detail)}, raw=True)
        else:
            line = self.text(done, detail)
            self._width = max(self._width, len(line))
            sys.stderr.write("\r" + line.ljust(self._width))
            sys.stderr.flush()

    def _open(self) -> None:
        if self.fn is not None:
            self.kind = "fn"
            return
        if in_kernel():
            from IPython.display import display
            from .widgets import has_frontend
            if has_frontend():
                import ipywidgets as W
                bar = W.IntProgress(value=0, min=0, max=max(self.total or 0, 1),
                                    bar_style="info", layout=W.Layout(width="40%"))
                if self.total is None:
                    bar.layout.display = "none"
                self._view = W.HBox([bar, W.Label(value="")])
                display(self._view)
                self.kind = "widget"
            else:
                self._view = display({"text/plain": ""}, raw=True, display_id=True)
                self.kind = "display"
        else:
            self.kind = "line"

    def close(self, final: str | None = None) -> None:
        """Take the display down (a notebook widget is removed, a terminal line cleared), or
        leave ``final`` as its last text. Safe to call more than once."""
        if not self.shown:
            return
        self.shown = False
        if self.kind == "fn":
            return
        if self.kind == "widget":
            self._view.close()
        elif self.kind == "display":
            self._view.update({"text/plain": final or ""}, raw=True)
        else:
            sys.stderr.write("\r" + (final.ljust(self._width) + "\n" if final else " " * self._width + "\r"))
            sys.stderr.flush()
