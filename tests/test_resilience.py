"""labkit.systems.retry, .breaker and .callchain: backoff formulas (Brooker 2015), the retry
budget and the AWS SDK's retry quota, Google SRE's adaptive throttle, resilience4j's breaker
state machine, the bulkhead -- and, in the simulator, retries that wait in virtual time and the
metastable storm that naive retries cause and a budget or a breaker ends."""
from __future__ import annotations

import random
import statistics

import pytest

import labkit
from labkit.systems.breaker import CLOSED, HALF_OPEN, OPEN, Bulkhead, BulkheadFull, CallNotPermitted, CircuitBreaker
from labkit.systems.callchain import OpenLoopClient, storm
from labkit.systems.retry import (AdaptiveThrottle, Backoff, RetryBudget, RetryPolicy, RetryQuota,
                                  call_with_retries, expected_delay)


@pytest.mark.parametrize("jitter, lo, hi", [("none", 1.0, 1.0), ("full", 0.0, 1.0), ("equal", 0.5, 1.0)])
def test_backoff_draws_lie_in_brookers_ranges_and_have_the_right_mean(jitter, lo, hi):
    b = Backoff(base=10, cap=1000, jitter=jitter)
    rng = random.Random(1)
    for n in range(10):
        v = min(1000, 10 * 2 ** n)
        draws = [b.delay(n, rng) for _ in range(2000)]
        assert all(lo * v <= d <= hi * v for d in draws), (jitter, n)
        assert statistics.mean(draws) == pytest.approx(expected_delay(b, n), rel=0.05), (jitter, n)


def test_decorrelated_jitter_stays_between_base_and_three_times_the_previous_and_the_cap():
    b = Backoff(base=10, cap=500, jitter="decorrelated")
    rng = random.Random(2)
    prev = None
    for n in range(200):
        d = b.delay(n, rng, prev)
        assert 10 <= d <= min(500, 3 * (prev or 10)), (n, prev, d)
        prev = d
    with pytest.raises(labkit.ArgumentError, match="decorrelated"):
        expected_delay(b, 1)


def test_backoff_rejects_bad_arguments():
    with pytest.raises(labkit.ArgumentError, match="jitter"):
        Backoff(jitter="fuzzy")
    with pytest.raises(labkit.ArgumentError, match="cap"):
        Backoff(base=100, cap=10)
    with pytest.raises(labkit.ArgumentError, match="base"):
        Backoff(base=0)


def test_retry_budget_allows_ratio_of_requests_plus_the_floor_and_forgets_after_the_window():
    b = RetryBudget(ratio=0.1, min_per_s=0.0, window=1000)
    for i in range(100):
        b.on_request(i)
    allowed = sum(b.try_retry(100) for _ in range(50))
    assert allowed == 10 and b.denied == 40
    assert not b.try_retry(500)
    assert not b.try_retry(1150)            # requests forgotten: nothing to earn retries
    f = RetryBudget(ratio=0.0, min_per_s=2.0, window=1000)
    assert [f.try_retry(0) for _ in range(3)] == [True, True, False]


def test_retry_quota_is_the_aws_sdk_token_bucket():
    q = RetryQuota()
    assert q.tokens == 500
    assert sum(q.try_retry(0) for _ in range(200)) == 100    # 500 / 5
    assert q.tokens == 0 and not q.try_retry(0)
    for _ in range(10):
        q.on_success(0)
    assert q.tokens == 10 and q.try_retry(0, timeout=True) and not q.try_retry(0, timeout=True)
    for _ in range(1000):
        q.on_success(0)
    assert q.tokens == 500


def test_adaptive_throttle_matches_the_sre_formula():
    t = AdaptiveThrottle(k=2, window=10_000)
    rng = random.Random(0)
    for i in range(100):
        t.allow(i, rng)
    for i in range(30):
        t.on_accept(i)
    assert t.reject_probability(200) == pytest.approx((100 - 2 * 30) / 101)
    for i in range(30):
        t.on_accept(i)
    assert t.reject_probability(200) == 0.0


def _breaker(**kw):
    seen = []
    cfg = dict(sliding_window_size=10, minimum_number_of_calls=5, wait_duration_in_open_state=1000,
               permitted_number_of_calls_in_half_open_state=3, on_transition=lambda t, a, b: seen.append((t, a, b)))
    cfg.update(kw)
    return CircuitBreaker(**cfg), seen


def test_breaker_defaults_are_resilience4js():
    b = CircuitBreaker()
    assert (b.failure_rate_threshold, b.sliding_window_size, b.minimum_number_of_calls,
            b.wait_duration_in_open_state, b.permitted_number_of_calls_in_half_open_state,
            b.slow_call_rate_threshold, b.slow_call_duration_threshold) == (50, 100, 100, 60_000, 10, 100, 60_000)


def test_breaker_waits_for_minimum_calls_then_opens_at_the_threshold():
    b, seen = _breaker()
    for t in range(4):
        b.acquire(t)
        b.on_error(t)
    assert b.state == CLOSED, "4 calls < minimum_number_of_calls: must stay closed"
    b.acquire(4)
    b.on_error(4)
    assert b.state == OPEN and seen == [(4, CLOSED, OPEN)]
    with pytest.raises(CallNotPermitted, match="open"):
        b.acquire(500)
    assert b.not_permitted == 1


def test_breaker_half_open_permits_only_the_probes_and_closes_or_reopens_on_their_outcome():
    b, seen = _breaker()
    for t in range(5):
        b.acquire(t); b.on_error(t)
    assert b.state_at(1004) == HALF_OPEN
    assert [b.try_acquire(1004) for _ in range(5)] == [True, True, True, False, False]
    for _ in range(3):
        b.on_success(1010)
    assert b.state == CLOSED
    for t in range(2000, 2005):
        b.acquire(t); b.on_error(t)
    assert b.state_at(3004) == HALF_OPEN
    for _ in range(3):
        b.acquire(3004)
    b.on_success(3005); b.on_error(3005); b.on_error(3005)
    assert b.state == OPEN, "2 of 3 probes failed (67% >= 50%): back to open"
    assert [to for _, _, to in seen] == [OPEN, HALF_OPEN, CLOSED, OPEN, HALF_OPEN, OPEN]


def test_breaker_counts_slow_calls_and_a_sliding_window():
    b, _ = _breaker(slow_call_rate_threshold=50, slow_call_duration_threshold=100)
    for t in range(5):
        b.acquire(t); b.on_success(t, duration=150)
    assert b.state == OPEN, "5 slow calls of 5: slow-call rate 100% >= 50%"
    b, _ = _breaker()
    for t in range(20):                      # alternate: rate 50% only in windows of even length
        b.acquire(t)
        (b.on_error if t % 3 == 0 else b.on_success)(t)
    assert b.state == CLOSED, "one failure in three stays under 50%"


def test_breaker_rejects_bad_configuration():
    with pytest.raises(labkit.ArgumentError, match="failure_rate_threshold"):
        CircuitBreaker(failure_rate_threshold=0)
    with pytest.raises(labkit.ArgumentError, match="sliding_window_size"):
        CircuitBreaker(sliding_window_size=0)


def test_bulkhead_refuses_beyond_its_calls():
    bh = Bulkhead(2, name="pricing")
    with bh:
        with bh:
            with pytest.raises(BulkheadFull, match="pricing"):
                with bh:
                    pass
    assert bh.in_use == 0 and bh.rejected == 1


class Flaky(labkit.Service):
    """Fails the first FAIL requests with 503, then answers 200."""
    FAIL = 3

    def on_start(self, ctx):
        self.seen = 0

    @labkit.get("/x")
    async def x(self, ctx, req):
        self.seen += 1
        ctx.note("served", n=self.seen)
        return labkit.json_response({}, status=503 if self.seen <= self.FAIL else 200)


class Caller(labkit.Node):
    POLICY = RetryPolicy(attempts=5, backoff=Backoff(base=100, cap=1000, jitter="none"))

    async def on_start(self, ctx):
        r = await call_with_retries(ctx, lambda: ctx.http.get("flaky", "/x", timeout=500), self.POLICY, note="try")
        ctx.note("result", status=r.status)


def test_call_with_retries_waits_the_backoff_in_virtual_time():
    with labkit.Cluster({"flaky": Flaky, "caller": Caller}, runtime="sim", seed=1) as cluster:
        cluster.run_for(2.0)
        notes = cluster.journal.filter(kind="note")
        tries = [e for e in notes if e.data["what"] == "try"]
        assert [e.data["attempt"] for e in tries] == [0, 1, 2, 3]
        gaps = [round(b.t - a.t) for a, b in zip(tries, tries[1:])]
        assert gaps == [100, 200, 400], gaps        # no jitter: base * 2**n, plus ~0.2 ms of network
        assert [e.data["status"] for e in notes if e.data["what"] == "result"] == [200]


def test_call_with_retries_gives_up_after_attempts_and_returns_the_last_response():
    class Short(Caller):
        POLICY = RetryPolicy(attempts=2, immediate=True)
    with labkit.Cluster({"flaky": Flaky, "caller": Short}, runtime="sim", seed=1) as cluster:
        cluster.run_for(1.0)
        notes = cluster.journal.filter(kind="note")
        assert [e.data["status"] for e in notes if e.data["what"] == "result"] == [503]
        assert sum(e.data["what"] == "served" for e in notes) == 2


class Naive(OpenLoopClient):
    def policy(self, ctx):
        return RetryPolicy(attempts=4, immediate=True)


class Budgeted(OpenLoopClient):
    def policy(self, ctx):
        return RetryPolicy(attempts=4, backoff=Backoff(100, 2000, "full"), budget=RetryBudget(0.1, 1.0))


class Breaking(OpenLoopClient):
    def policy(self, ctx):
        return RetryPolicy(attempts=4, backoff=Backoff(100, 2000, "full"))

    def breaker(self, ctx):
        return CircuitBreaker(sliding_window_size=50, minimum_number_of_calls=20, wait_duration_in_open_state=2000,
                              permitted_number_of_calls_in_half_open_state=5, slow_call_duration_threshold=1000,
                              slow_call_rate_threshold=50)


@pytest.mark.parametrize("seed", [1, 2])
def test_storm_naive_retries_stay_down_after_the_dip_budget_and_breaker_recover(seed):
    naive, budget, brk = storm(Naive, seed), storm(Budgeted, seed), storm(Breaking, seed)
    g, o = naive.after(12_000)
    assert o > 400 and g < 0.05 * o, f"naive retries should keep goodput near 0 after the dip: {g} of {o}"
    assert naive.amplification > 2.5, naive.amplification
    for r in (budget, brk):
        g, o = r.after(13_000)
        assert g >= 0.9 * o, f"goodput should recover after the dip: {g} of {o}"
    assert budget.amplification <= 1.1, budget.amplification
    assert [to for _, _, to in brk.transitions][:2] == [OPEN, HALF_OPEN], brk.transitions


def test_retry_policy_and_budget_reject_bad_arguments():
    with pytest.raises(labkit.ArgumentError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(labkit.ArgumentError, match="ratio"):
        RetryBudget(ratio=-1)
    with pytest.raises(labkit.ArgumentError, match="capacity"):
        RetryQuota(capacity=float("nan"))


def test_storm_result_counts_per_second_and_finds_the_recovery():
    from labkit.systems.callchain import StormResult, per_second
    assert per_second([0, 10, 999, 1000, 2500, 3100], 3000) == [3.0, 1.0, 1.0]
    r = StormResult(1, (1000.0, 2000.0), 5000.0, offered=[10, 10, 10, 10, 10], goodput=[10, 0, 5, 9, 10],
                    sent=[10] * 5, ops=50, calls=60)
    assert r.recovered_at(0.9) == 3000.0 and r.after(3000) == (19, 20) and r.amplification == 1.2
    r.goodput[4] = 0
    assert r.recovered_at(0.9) is None


@pytest.mark.processes
def test_call_with_retries_on_real_processes_waits_and_succeeds():
    class AtStart(Caller):
        """Calls from its on_start: the flaky service started with it already listens (services
        bind before any node of a start runs on_start), so no attempt is spent on a refusal."""
        POLICY = RetryPolicy(attempts=5, backoff=Backoff(base=50, cap=1000, jitter="none"))

    with labkit.Cluster({"flaky": Flaky, "caller": AtStart}, seed=1) as cluster:
        for _ in range(40):
            notes = cluster.journal.filter(kind="note")
            if any(e.data["what"] == "result" for e in notes):
                break
            cluster.run_for(0.1)
        tries = [e for e in notes if e.data["what"] == "try"]
        assert [e.data["status"] for e in notes if e.data["what"] == "result"] == [200], [e.data for e in notes]
        gaps = [b.t - a.t for a, b in zip(tries, tries[1:])]
        assert len(gaps) == 3 and all(g >= w for g, w in zip(gaps, (50, 100, 200))), gaps   # real waits, never early
