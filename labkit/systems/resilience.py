"""Resilience patterns in one import (chapter 06, and the chapters after it that call services):

* retries -- ``Backoff`` (capped exponential, none/full/equal/decorrelated jitter, Brooker 2015),
  ``RetryPolicy``, ``call_with_retries``, ``RetryBudget`` (Finagle/Envoy ratio),
  ``RetryQuota`` (the AWS SDK's token bucket), ``AdaptiveThrottle`` (Google SRE ch. 21);
  see ``labkit.systems.retry``;
* ``CircuitBreaker`` (resilience4j's count-based state machine) and ``Bulkhead`` (a semaphore
  bulkhead with no wait); see ``labkit.systems.breaker``.

Everything waits with ``await ctx.sleep(ms)`` and reads ``ctx.now``: no real time, so a
handler using them runs in both runtimes and replays from its seed.
"""
from .breaker import CLOSED, HALF_OPEN, OPEN, Bulkhead, BulkheadFull, CallNotPermitted, CircuitBreaker
from .retry import (JITTERS, RETRYABLE_STATUSES, AdaptiveThrottle, Backoff, RetryBudget, RetryPolicy, RetryQuota,
                    call_with_retries, expected_delay, retryable)

__all__ = ["Backoff", "RetryPolicy", "call_with_retries", "RetryBudget", "RetryQuota", "AdaptiveThrottle",
           "retryable", "expected_delay", "JITTERS", "RETRYABLE_STATUSES", "CircuitBreaker", "Bulkhead",
           "CallNotPermitted", "BulkheadFull", "CLOSED", "OPEN", "HALF_OPEN"]
