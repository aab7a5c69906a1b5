"""Checks for the numbers given to labkit's public calls: times, rates, probabilities, counts.

Every public call checks its numeric arguments here, once, before anything happens: finite
(no NaN, no infinity), of a number type (``bool`` is not a number here) and inside the
allowed range. A NaN slips through ordinary comparisons (``nan < 0`` is False), and an
infinity turns a deadline into a wait forever; both are refused with an ``ArgumentError``
that names the argument, its value and the range. The runtimes then trust what they get,
so the simulator and the processes runtime refuse exactly the same inputs.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .errors import ArgumentError

#: The longest time any call takes or waits for, in ms (about 11.6 days). Longer times are a
#: typo or a unit mix-up (seconds given as ms), and would overflow the node processes' timers.
MAX_MS = 1e9
#: The same limit in seconds, for calls that take seconds (``run_for``, nemesis intervals).
MAX_S = MAX_MS / 1000.0


_INFS = (float("inf"), float("-inf"))


def _fmt(x: float) -> str:
    return f"{x:g}"


def number(value: Any, name: "str | Callable[[], str]", *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, unit: str = "") -> float:
    """``value`` as a float, if it is a finite real number in the range; else ``ArgumentError``.

    ``lo``/``hi`` bound the range (inclusive; ``lo_open`` excludes ``lo``); ``name`` is how the
    error names the argument (e.g. ``"run_for(seconds)"``), or a function that returns it --
    handlers call this on every timer and send, so the name is built only for an error;
    ``unit`` is said in the error."""
    t = type(value)
    if (t is int or t is float) and value == value and (lo is None or value > lo or (value == lo and not lo_open)) \
            and (hi is None or value <= hi) and value not in _INFS:
        return float(value)                  # the common case, with nothing formatted
    if callable(name):
        name = name()
    low = "(" if lo_open else "["
    rng = ("" if lo is None and hi is None else
           f" in {low}{_fmt(lo) if lo is not None else '-inf'}, {_fmt(hi) if hi is not None else 'inf'}]")
    what = f"{name} must be a finite number{rng}" + (f" ({unit})" if unit else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as _np  # numpy scalars are numbers too (a slider's value, an array's item)
            ok = isinstance(value, (_np.integer, _np.floating)) and not isinstance(value, _np.bool_)
        except ImportError:
            ok = False
        if not ok:
            raise ArgumentError(f"{what}, got {value!r} of type {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ArgumentError(f"{what}, got {value!r}")
    if lo is not None and (x < lo or (lo_open and x == lo)):
        raise ArgumentError(f"{what}, got {value!r}")
    if hi is not None and x > hi:
        raise ArgumentError(f"{what}, got {value!r}")
    return x


def whole(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in ``[lo, hi]``; else ``ArgumentError``."""
    rng = ("" if lo is None and hi is None
           else f" in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]")
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        try:
            import numpy as _np
            ok = isinstance(value, _np.integer)
        except ImportError:
            pass
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ArgumentError(f"{name} must be a whole number{rng}, got {value!r}")
    return int(value)


def ms(value: Any, name: "str | Callable[[], str]", *, positive: bool = False) -> float:
    """A duration in ms: finite, >= 0 (> 0 if ``positive``), at most ``MAX_MS``."""
    return number(value, name, lo=0.0, hi=MAX_MS, lo_open=positive, unit="ms")


def seconds(value: Any, name: str, *, positive: bool = False, lo: float = 0.0) -> float:
    """A duration in seconds: finite, >= ``lo`` (> if ``positive``), at most ``MAX_S``."""
    return number(value, name, lo=lo, hi=MAX_S, lo_open=positive, unit="seconds")


def probability(value: Any, name: str) -> float:
    """A probability: finite, in [0, 1]."""
    return number(value, name, lo=0.0, hi=1.0)
