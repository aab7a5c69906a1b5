"""A circuit breaker and a bulkhead, configured like resilience4j's.

Theory of operation. A circuit breaker (Nygard, *Release It!*, 2007) stands in front of a
dependency and watches the outcomes of calls to it::

    CLOSED --(failure or slow-call rate >= threshold over the window,
              once minimum_number_of_calls were recorded)--> OPEN
    OPEN   --(wait_duration_in_open_state elapsed)--> HALF_OPEN
    HALF_OPEN --(permitted_number_of_calls_in_half_open_state recorded, rates below
                 the thresholds)--> CLOSED
    HALF_OPEN --(those calls' rate at or above a threshold)--> OPEN

While OPEN every call is refused at once (``CallNotPermitted``), so a sick dependency gets
no load but the probes, and callers fail fast instead of tying up their workers. The
parameters and defaults are resilience4j's ``CircuitBreakerConfig`` (count-based sliding
window): failure-rate threshold 50%, window 100 calls, minimum 100 calls, 60 s open,
10 calls permitted half-open, slow-call threshold 100% of calls slower than 60 s.
(pybreaker, by contrast, opens after ``fail_max`` *consecutive* failures and lets one trial
call through when half-open.)

``Bulkhead`` is resilience4j's semaphore bulkhead with no wait: at most ``max_concurrent_calls``
at once; one more is refused with ``BulkheadFull``. One per dependency keeps a slow
dependency from taking every worker of the caller.

Times are ms on the caller's clock (``ctx.now``); nothing here sleeps or reads a clock.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

from .. import argcheck
from ..errors import LabkitError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CallNotPermitted(LabkitError):
    """The breaker is open (or half-open with its probes taken): the call was not made."""


class BulkheadFull(LabkitError):
    """The bulkhead's calls are all taken: the call was not made."""


class CircuitBreaker:
    """A count-based circuit breaker (resilience4j's state machine; see the module docstring).

    ``acquire(now)`` before a call (raises ``CallNotPermitted`` while open, or half-open with
    every probe taken); ``on_success(now, duration_ms)`` / ``on_error(now, duration_ms)``
    after it. ``state_at(now)`` is the state (OPEN turns HALF_OPEN when the wait is over, as
    resilience4j's ``automaticTransitionFromOpenToHalfOpenEnabled``). ``transitions`` lists
    ``(time, from, to)``; ``on_transition(time, from, to)`` is called on each (e.g. to
    ``ctx.note`` it). ``ArgumentError`` for a bad configuration."""

    def __init__(self, *, failure_rate_threshold: float = 50.0, sliding_window_size: int = 100,
                 minimum_number_of_calls: int = 100, wait_duration_in_open_state: float = 60_000.0,
                 permitted_number_of_calls_in_half_open_state: int = 10,
                 slow_call_rate_threshold: float = 100.0, slow_call_duration_threshold: float = 60_000.0,
                 on_transition: Callable[[float, str, str], None] | None = None) -> None:
        self.failure_rate_threshold = argcheck.number(failure_rate_threshold, "failure_rate_threshold (%)",
                                                      lo=0.0, hi=100.0, lo_open=True)
        self.sliding_window_size = argcheck.whole(sliding_window_size, "sliding_window_size", lo=1, hi=1_000_000)
        self.minimum_number_of_calls = argcheck.whole(minimum_number_of_calls, "minimum_number_of_calls",
                                                      lo=1, hi=1_000_000)
        self.wait_duration_in_open_state = argcheck.ms(wait_duration_in_open_state, "wait_duration_in_open_state")
        self.permitted_number_of_calls_in_half_open_state = argcheck.whole(
            permitted_number_of_calls_in_half_open_state, "permitted_number_of_calls_in_half_open_state",
            lo=1, hi=1_000_000)
        self.slow_call_rate_threshold = argcheck.number(slow_call_rate_threshold, "slow_call_rate_threshold (%)",
                                                        lo=0.0, hi=100.0, lo_open=True)
        self.slow_call_duration_threshold = argcheck.ms(slow_call_duration_threshold, "slow_call_duration_threshold")
        self.on_transition = on_transition
        self._state = CLOSED
        self._opened_at = 0.0
        self._window: deque[tuple[bool, bool]] = deque()      # (failed, slow) of the last calls
        self._probes_out = 0                                   # half-open calls permitted so far
        self._probes: list[tuple[bool, bool]] = []             # their outcomes
        self.transitions: list[tuple[float, str, str]] = []
        self.not_permitted = 0

    # -- state -------------------------------------------------------------------------------
    def _go(self, now: float, to: str) -> None:
        was, self._state = self._state, to
        self.transitions.append((now, was, to))
        if to == OPEN:
            self._opened_at = now
        if to == HALF_OPEN:
            self._probes_out, self._probes = 0, []
        if to == CLOSED:
            self._window.clear()
        if self.on_transition is not None:
            self.on_transition(now, was, to)

    def state_at(self, now: float) -> str:
        if self._state == OPEN and now - self._opened_at >= self.wait_duration_in_open_state:
            self._go(now, HALF_OPEN)
        return self._state

    @property
    def state(self) -> str:
        """The state as of the last call (``state_at(now)`` also applies the open wait)."""
        return self._state

    def _rates(self, calls: Any) -> tuple[float, float]:
        n = len(calls)
        if n == 0:
            return 0.0, 0.0
        return (100.0 * sum(1 for f, _ in calls if f) / n, 100.0 * sum(1 for _, s in calls if s) / n)

    def _tripped(self, calls: Any) -> bool:
        fail, slow = self._rates(calls)
        return fail >= self.failure_rate_threshold or slow >= self.slow_call_rate_threshold

    # -- calls -------------------------------------------------------------------------------
    def acquire(self, now: float) -> None:
        """Permit a call now, or raise ``CallNotPermitted``."""
        state = self.state_at(now)
        if state == CLOSED:
            return
        if state == HALF_OPEN and self._probes_out < self.permitted_number_of_calls_in_half_open_state:
            self._probes_out += 1
            return
        self.not_permitted += 1
        raise CallNotPermitted(f"circuit breaker is {state}: call not permitted "
                               f"(opened at {self._opened_at:g} ms, waits {self.wait_duration_in_open_state:g} ms)")

    def try_acquire(self, now: float) -> bool:
        """``acquire`` as a bool."""
        try:
            self.acquire(now)
        except CallNotPermitted:
            return False
        return True

    def _record(self, now: float, failed: bool, duration: float) -> None:
        slow = duration >= self.slow_call_duration_threshold
        if self._state == HALF_OPEN:
            self._probes.append((failed, slow))
            if len(self._probes) >= self.permitted_number_of_calls_in_half_open_state:
                self._go(now, OPEN if self._tripped(self._probes) else CLOSED)
            return
        if self._state == OPEN:
            return                      # a call permitted before the breaker opened: ignored
        w = self._window
        w.append((failed, slow))
        if len(w) > self.sliding_window_size:
            w.popleft()
        if len(w) >= self.minimum_number_of_calls and self._tripped(w):
            self._go(now, OPEN)

    def on_success(self, now: float, duration: float = 0.0) -> None:
        self._record(now, False, duration)

    def on_error(self, now: float, duration: float = 0.0) -> None:
        self._record(now, True, duration)

    def __repr__(self) -> str:
        return (f"CircuitBreaker({self._state}, failure_rate_threshold={self.failure_rate_threshold:g}%, "
                f"window={self.sliding_window_size}, min_calls={self.minimum_number_of_calls}, "
                f"open={self.wait_duration_in_open_state:g} ms, "
                f"half_open_calls={self.permitted_number_of_calls_in_half_open_state})")


class Bulkhead:
    """At most ``max_concurrent_calls`` at once (resilience4j's ``SemaphoreBulkhead`` with
    ``maxWaitDuration`` 0). Use ``with bulkhead:`` around the awaited call; a call beyond the
    limit raises ``BulkheadFull`` at once. ``rejected`` counts them."""

    def __init__(self, max_concurrent_calls: int = 25, name: str = "bulkhead") -> None:
        self.max_concurrent_calls = argcheck.whole(max_concurrent_calls, "Bulkhead(max_concurrent_calls)",
                                                   lo=1, hi=1_000_000)
        self.name = name
        self.in_use = 0
        self.rejected = 0

    def __enter__(self) -> "Bulkhead":
        if self.in_use >= self.max_concurrent_calls:
            self.rejected += 1
            raise BulkheadFull(f"{self.name}: all {self.max_concurrent_calls} calls are in use")
        self.in_use += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.in_use -= 1

    def __repr__(self) -> str:
        return f"Bulkhead({self.name!r}, {self.in_use}/{self.max_concurrent_calls})"


__all__ = ["CircuitBreaker", "Bulkhead", "CallNotPermitted", "BulkheadFull", "CLOSED", "OPEN", "HALF_OPEN"]
