"""Deprecated: seed sweeps moved to ``labkit.sweep`` (``from labkit.sweep import sweep``).

``labkit.check`` (the command line), ``labkit.checks`` (seed sweeps) and ``labkit.checkers``
(verdicts) read as one word, so the sweeps have their own module name now. This alias keeps
old notebooks working for one release, with a DeprecationWarning naming the new import; it
will then be removed.
"""
from __future__ import annotations

import sys
import warnings

from .sweep import SweepFailed, SweepResult, _ipython_cell, sweep  # noqa: F401

__all__ = ["sweep", "SweepResult", "SweepFailed"]


def _caller_stacklevel() -> int:
    """The stack level of the code that imported this module, past importlib and labkit's lazy
    ``labkit.checks`` attribute, so the warning names the reader's line. (``warnings.warn``
    skips importlib's bootstrap frames itself: they are not counted.)"""
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        file = frame.f_code.co_filename
        if "importlib" in file and "_bootstrap" in file:
            frame = frame.f_back
            continue
        if frame.f_globals.get("__name__", "") not in ("importlib", "labkit", __name__):
            return level
        frame, level = frame.f_back, level + 1
    return 1


warnings.warn("labkit.checks was renamed labkit.sweep: write `from labkit.sweep import sweep` "
              "(or `labkit.sweep.sweep(...)`); the old name goes away in the next release",
              DeprecationWarning, stacklevel=_caller_stacklevel())
