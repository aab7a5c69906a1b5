"""Retries: capped exponential backoff with jitter, retry budgets, client-side throttling.

Theory of operation. A retry is a bet that the failure was transient. The bet is cheap when
one client loses it and ruinous when every client loses it at once: retries add load exactly
when the dependency has least capacity to spare, and a short overload can become a lasting
one (a *metastable failure*, Bronson et al., HotOS 2021). So a retry policy has three parts:

* **when** to retry: after a wait that grows exponentially, capped, and *jittered* so that
  clients that failed together do not retry together. ``Backoff`` computes the waits of
  Brooker, "Exponential Backoff and Jitter" (AWS Architecture Blog, 2015)::

      none:          min(cap, base * 2**n)
      full:          U(0, min(cap, base * 2**n))          (tenacity's wait_random_exponential)
      equal:         v/2 + U(0, v/2),  v = min(cap, base * 2**n)
      decorrelated:  min(cap, U(base, 3 * previous))      (previous starts at base)

* **how often**: at most ``attempts`` tries per call (Google SRE book ch. 22: 3), and
* **how much in total**: a *retry budget* shared by every call of a client, so retries can
  never be more than a fraction of the traffic. ``RetryBudget`` is the ratio form (Finagle's
  and Envoy's: retries <= ``ratio`` x requests over a window, plus a small floor);
  ``RetryQuota`` is the AWS SDK's token bucket (500 tokens; a retry costs 5, 10 after a
  timeout; a success refunds 1); ``AdaptiveThrottle`` is Google SRE's client-side throttling
  (reject locally with p = max(0, (requests - K * accepts) / (requests + 1)), K = 2).

``call_with_retries`` puts them together inside a coroutine handler. It waits with
``await ctx.sleep(ms)`` -- never real time -- so it runs in both runtimes and the simulator
replays it from a seed. All times are ms on the node's clock (``ctx.now``).
"""
from __future__ import annotations

import random
from collections import deque
from typing import Any, Awaitable, Callable

from .. import argcheck
from ..errors import ArgumentError
from ..http_errors import ClientError

JITTERS = ("none", "full", "equal", "decorrelated")

#: Response statuses worth retrying: throttled, and the server-side failures a later try may
#: not meet (gRPC's and the AWS SDKs' lists are alike). 500 is included; 501 is not.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class Backoff:
    """Capped exponential backoff, optionally jittered (Brooker 2015; see the module docstring).

    ``base`` and ``cap`` in ms; ``jitter`` one of ``"none"``, ``"full"``, ``"equal"``,
    ``"decorrelated"``. ``delay(n, rng, previous)`` is the wait before retry ``n`` (0 for the
    first retry); ``previous`` is the last wait (decorrelated jitter needs it). Raises
    ``ArgumentError`` for a bad argument."""

    __slots__ = ("base", "cap", "jitter")

    def __init__(self, base: float = 100.0, cap: float = 10_000.0, jitter: str = "full") -> None:
        self.base = argcheck.ms(base, "Backoff(base)", positive=True)
        self.cap = argcheck.ms(cap, "Backoff(cap)", positive=True)
        if self.cap < self.base:
            raise ArgumentError(f"Backoff(cap={cap!r}) must be >= base={base!r} (ms)")
        if jitter not in JITTERS:
            raise ArgumentError(f"Backoff(jitter=...) must be one of {JITTERS}, got {jitter!r}")
        self.jitter = jitter

    def delay(self, n: int, rng: random.Random, previous: float | None = None) -> float:
        """The wait in ms before retry ``n`` (n >= 0), drawn from ``rng`` (pass ``ctx.rng``)."""
        if self.jitter == "decorrelated":
            prev = self.base if previous is None else previous
            return min(self.cap, rng.uniform(self.base, 3.0 * prev))
        v = self.cap if n >= 64 else min(self.cap, self.base * (2.0 ** n))
        if self.jitter == "none":
            return v
        if self.jitter == "full":
            return rng.uniform(0.0, v)
        return v / 2.0 + rng.uniform(0.0, v / 2.0)

    def __repr__(self) -> str:
        return f"Backoff(base={self.base:g}, cap={self.cap:g}, jitter={self.jitter!r})"


class RetryBudget:
    """Retries may be at most ``ratio`` of the requests sent over the last ``window`` ms, plus
    ``min_per_s`` retries a second so a quiet client can still retry (Finagle's
    ``RetryBudget``, Envoy's ``retry_budget``: budget_percent 20%, min_retry_concurrency 3;
    the Google SRE book's per-client budget is 10%).

    ``on_request(now)`` for each first try; ``try_retry(now)`` before each retry (True and
    counted, or False: do not retry); ``on_success(now)`` is accepted for symmetry with
    ``RetryQuota`` and does nothing."""

    def __init__(self, ratio: float = 0.1, min_per_s: float = 1.0, window: float = 10_000.0) -> None:
        self.ratio = argcheck.number(ratio, "RetryBudget(ratio)", lo=0.0, hi=100.0)
        self.min_per_s = argcheck.number(min_per_s, "RetryBudget(min_per_s)", lo=0.0, hi=1e6)
        self.window = argcheck.ms(window, "RetryBudget(window)", positive=True)
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()
        self.denied = 0

    def _trim(self, now: float) -> None:
        edge = now - self.window
        for q in (self._requests, self._retries):
            while q and q[0] <= edge:
                q.popleft()

    def on_request(self, now: float) -> None:
        self._requests.append(now)

    def try_retry(self, now: float, timeout: bool = False) -> bool:
        self._trim(now)
        allowed = self.ratio * len(self._requests) + self.min_per_s * self.window / 1000.0
        if len(self._retries) + 1 > allowed:
            self.denied += 1
            return False
        self._retries.append(now)
        return True

    def on_success(self, now: float) -> None:
        return None

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio:g}, min_per_s={self.min_per_s:g}, window={self.window:g})"


class RetryQuota:
    """The AWS SDKs' retry quota (the "standard" retry mode): a bucket of ``capacity`` tokens;
    a retry takes ``retry_cost`` (``timeout_cost`` after a timeout) or is not made when the
    bucket has too few; every success puts back ``refund`` (never above capacity).
    Defaults are the SDKs': 500, 5, 10, 1."""

    def __init__(self, capacity: float = 500, retry_cost: float = 5, timeout_cost: float = 10,
                 refund: float = 1) -> None:
        self.capacity = argcheck.number(capacity, "RetryQuota(capacity)", lo=0.0, hi=1e9)
        self.retry_cost = argcheck.number(retry_cost, "RetryQuota(retry_cost)", lo=0.0, hi=1e9)
        self.timeout_cost = argcheck.number(timeout_cost, "RetryQuota(timeout_cost)", lo=0.0, hi=1e9)
        self.refund = argcheck.number(refund, "RetryQuota(refund)", lo=0.0, hi=1e9)
        self.tokens = self.capacity
        self.denied = 0

    def on_request(self, now: float) -> None:
        return None

    def try_retry(self, now: float, timeout: bool = False) -> bool:
        cost = self.timeout_cost if timeout else self.retry_cost
        if self.tokens < cost:
            self.denied += 1
            return False
        self.tokens -= cost
        return True

    def on_success(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + self.refund)

    def __repr__(self) -> str:
        return f"RetryQuota(tokens={self.tokens:g}/{self.capacity:g})"


class AdaptiveThrottle:
    """Google SRE book ch. 21, client-side throttling: over the last ``window`` ms the client
    counts ``requests`` and ``accepts`` (answers that were not overload rejections) and
    rejects a new request locally with probability max(0, (requests - k * accepts) /
    (requests + 1)). ``allow(now, rng)`` decides (the request is counted either way);
    ``on_accept(now)`` after a non-overload answer."""

    def __init__(self, k: float = 2.0, window: float = 120_000.0) -> None:
        self.k = argcheck.number(k, "AdaptiveThrottle(k)", lo=1.0, hi=100.0)
        self.window = argcheck.ms(window, "AdaptiveThrottle(window)", positive=True)
        self._requests: deque[float] = deque()
        self._accepts: deque[float] = deque()

    def reject_probability(self, now: float) -> float:
        edge = now - self.window
        for q in (self._requests, self._accepts):
            while q and q[0] <= edge:
                q.popleft()
        return max(0.0, (len(self._requests) - self.k * len(self._accepts)) / (len(self._requests) + 1))

    def allow(self, now: float, rng: random.Random) -> bool:
        p = self.reject_probability(now)
        self._requests.append(now)
        return rng.random() >= p

    def on_accept(self, now: float) -> None:
        self._accepts.append(now)


def retryable(outcome: Any) -> bool:
    """The default test: a ``labkit.ClientError`` (timeout, refused, reset) or a response whose
    status is in ``RETRYABLE_STATUSES``."""
    if isinstance(outcome, BaseException):
        return isinstance(outcome, ClientError)
    return getattr(outcome, "status", 200) in RETRYABLE_STATUSES


class RetryPolicy:
    """``attempts`` tries at most (the first included), waiting ``backoff`` between them;
    ``budget`` (a ``RetryBudget`` or ``RetryQuota``, shared by the calls of one client) may
    refuse a retry. ``Backoff(jitter="none", base=..)`` with ``immediate=True`` retries at
    once (the naive policy)."""

    def __init__(self, attempts: int = 3, backoff: Backoff | None = None, budget: Any = None,
                 immediate: bool = False, is_retryable: Callable[[Any], bool] = retryable) -> None:
        self.attempts = argcheck.whole(attempts, "RetryPolicy(attempts)", lo=1, hi=1000)
        self.backoff = backoff if backoff is not None else Backoff()
        self.budget = budget
        self.immediate = bool(immediate)
        self.is_retryable = is_retryable

    def __repr__(self) -> str:
        how = "immediate" if self.immediate else repr(self.backoff)
        return f"RetryPolicy(attempts={self.attempts}, {how}, budget={self.budget!r})"


async def call_with_retries(ctx: Any, attempt: Callable[[], Awaitable[Any]], policy: RetryPolicy,
                            *, breaker: Any = None, note: str | None = None) -> Any:
    """Run ``attempt()`` (a function returning an awaitable, e.g. ``lambda:
    ctx.http.get("pricing", "/price", timeout=1000)``) under ``policy``, inside a coroutine
    handler; return the last outcome (a response) or raise the last exception.

    Between tries it waits ``policy.backoff`` with ``await ctx.sleep(ms)``, drawing jitter from
    ``ctx.rng``. With a ``breaker`` (``labkit.systems.breaker.CircuitBreaker``) each try asks
    it first; a refused try raises ``CallNotPermitted`` at once, which is not retried. With
    ``note`` each try is journaled as ``ctx.note(note, attempt=i, waited=ms)``."""
    budget = policy.budget
    if budget is not None:
        budget.on_request(ctx.now)
    previous: float | None = None
    for i in range(policy.attempts):
        if note is not None:
            ctx.note(note, attempt=i, waited=round(previous or 0.0, 3))
        t0 = ctx.now
        if breaker is not None:
            breaker.acquire(t0)               # raises CallNotPermitted while open
        try:
            outcome: Any = await attempt()
            failed = policy.is_retryable(outcome)
        except ClientError as e:
            outcome, failed = e, True
        if breaker is not None:
            (breaker.on_error if failed else breaker.on_success)(ctx.now, ctx.now - t0)
        if not failed:
            if budget is not None:
                budget.on_success(ctx.now)
            return outcome
        if not policy.is_retryable(outcome) or i + 1 == policy.attempts:
            break
        timeout = isinstance(outcome, TimeoutError)
        if budget is not None and not budget.try_retry(ctx.now, timeout=timeout):
            break
        if not policy.immediate:
            previous = policy.backoff.delay(i, ctx.rng, previous)
            if previous > 0:
                await ctx.sleep(previous)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def expected_delay(backoff: Backoff, n: int) -> float:
    """The mean wait before retry ``n`` (ms) for the memoryless jitters: for checking draws
    against the formula (decorrelated depends on the previous draw; ``ArgumentError``)."""
    v = min(backoff.cap, backoff.base * 2.0 ** min(n, 64))
    if backoff.jitter == "none":
        return v
    if backoff.jitter == "full":
        return v / 2.0
    if backoff.jitter == "equal":
        return 0.75 * v
    raise ArgumentError("expected_delay: decorrelated jitter depends on the previous wait; sample it instead")


__all__ = ["Backoff", "RetryBudget", "RetryQuota", "AdaptiveThrottle", "RetryPolicy", "call_with_retries",
           "retryable", "expected_delay", "RETRYABLE_STATUSES", "JITTERS"]
