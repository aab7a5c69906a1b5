"""Hidden checks of chapter 06's exercises (solutions/06_fault_tolerance.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each check
cell's ``### BEGIN HIDDEN TESTS`` block: a deeper, longer storm; two outages over a lossy link; more
shops, more loss, duplication and reordering. Other tests make sure the checks are not vacuous:
naive retries (and backoff without a budget) must fail exercise 1's check, and each requirement
of every statement, broken alone, must fail the visible check cell.
"""
from __future__ import annotations

import labkit
import pytest
from solutionnb import HIDDEN, SolutionNotebook
from visiblecheck import visible_fails as _visible_fails

import labkit.sweep

NB = SolutionNotebook("06_fault_tolerance.ipynb")


@pytest.fixture(scope="module")
def namespace():
    ns = NB.run_setup()
    for i in range(3):
        NB.run_hidden(i, ns)
    return ns


def test_every_check_cell_has_hidden_tests_and_enough_seeds():
    assert len(NB.checks) == 3
    assert all(HIDDEN.search(src) for src in NB.checks)
    assert "range(50)" in NB.checks[0] and "range(100)" in NB.checks[1] and "range(100)" in NB.checks[2]


@pytest.mark.parametrize("name, seeds", [("storm_hidden", range(1000, 1060)), ("breaker_hidden", range(1000, 1200)),
                                         ("idempotency_hidden", range(1000, 1200))])
def test_hidden(namespace, name, seeds):
    namespace["sweep"](namespace[name], seeds=seeds)


def visible_fails(check: int, wrong, match: str, seeds=range(10)) -> str:
    return _visible_fails(NB, check, wrong, match, seeds)


# -- exercise 1: naive retries must fail; so must each requirement broken alone -----------------

def _client(ns, call):
    return {"StormProofClient": type("Wrong", (ns["StormProofClient"],), {"call": call})}


async def _naive(self, ctx):
    for n in range(4):
        try:
            r = await ctx.http.get("backend", "/price", timeout=self.TIMEOUT)
            if r.status == 200:
                return r
        except labkit.ClientError:
            pass
    return None


def _backoff_no_budget(ns):
    async def call(self, ctx):
        for n in range(4):
            try:
                r = await ctx.http.get("backend", "/price", timeout=self.TIMEOUT)
                if r.status == 200:
                    return r
            except labkit.ClientError:
                pass
            await ctx.sleep(ns["full_jitter"](n, ctx.rng))
        return None
    return call


def test_naive_retries_fail_the_storm_check(namespace):
    naive = type("Naive", (namespace["StormProofClient"],), {"call": _naive})
    with pytest.raises(AssertionError, match="goodput"):
        namespace["sweep"](lambda seed: namespace["storm_scenario"](seed, naive), seeds=range(1000, 1050),
                           quiet=True, stop_after=1)
    with pytest.raises(AssertionError, match="goodput"):
        namespace["sweep"](lambda seed: namespace["storm_hidden"](seed, naive), seeds=range(1000, 1050),
                           quiet=True, stop_after=1)


def test_naive_retries_fail_the_visible_check():
    visible_fails(0, lambda ns: _client(ns, _naive), "goodput|calls for|told the budget of 0")


def test_backoff_without_a_budget_fails_the_visible_check():
    visible_fails(0, lambda ns: _client(ns, _backoff_no_budget(ns)), "goodput|calls for|told the budget of 0")


def test_no_retries_fail_the_visible_check():
    async def once(self, ctx):
        return await ctx.http.get("backend", "/price", timeout=self.TIMEOUT)
    visible_fails(0, lambda ns: _client(ns, once), "ATTEMPTS = 4 times")


def test_retrying_at_once_under_a_budget_fails_the_visible_check():
    async def at_once(self, ctx):
        self.budget.on_request(ctx.now)
        for n in range(4):
            try:
                r = await ctx.http.get("backend", "/price", timeout=self.TIMEOUT)
                if r.status == 200:
                    return r
            except labkit.ClientError:
                pass
            if not self.budget.try_retry(ctx.now):
                break
        return None
    visible_fails(0, lambda ns: _client(ns, at_once), "full-jitter draws|goodput|asked the budget 4 times")


@pytest.mark.parametrize("jitter, match", [
    (lambda n, rng: min(2000.0, 100.0 * 2 ** n), "uniform"),                      # no jitter
    (lambda n, rng: rng.uniform(0, 100.0 * 2 ** n), r"must lie in"),              # no cap
    (lambda n, rng: rng.uniform(0, 100.0), "uniform"),                            # not exponential
])
def test_wrong_backoff_fails_the_visible_check(jitter, match):
    visible_fails(0, lambda ns: {"full_jitter": jitter}, match)


def test_a_budget_that_never_forgets_or_has_no_floor_fails_the_visible_check():
    def never_forgets(ns):
        class B(ns["Budget"]):
            def try_retry(self, now):
                if len(self.retries) < self.ratio * len(self.requests) + self.min_retries:
                    self.retries.append(now)
                    return True
                return False
        return {"Budget": B}

    def no_floor(ns):
        class B(ns["Budget"]):
            def __init__(self, ratio=0.1, window=10_000.0, min_retries=10):
                super().__init__(ratio, window, 0)
        return {"Budget": B}
    visible_fails(0, never_forgets, "forgotten")
    visible_fails(0, no_floor, "allow")


# -- exercise 2 ------------------------------------------------------------------------------------

def _breaker(**methods):
    return lambda ns: {"Breaker": type("Wrong", (ns["Breaker"],), methods)}


def _never_half_opens(self, now):
    return self.state == "closed"


def _no_minimum(self, now, ok):
    if self.state == "closed" and not ok:
        self.state, self.opened_at = "open", now
        return
    type(self).__mro__[1].record(self, now, ok)


def _half_open_lets_all_through(self, now):
    allowed = type(self).__mro__[1].allow(self, now)
    return allowed or self.state == "half_open"


def _closes_on_first_probe(self, now, ok):
    if self.state == "half_open" and ok:
        self.state, self.outcomes = "closed", []
        return
    type(self).__mro__[1].record(self, now, ok)


def _no_wait(self, now):
    if self.state == "open":
        self.state, self.let_through, self.probe_outcomes = "half_open", 0, []
    return type(self).__mro__[1].allow(self, now)


@pytest.mark.parametrize("wrong, match", [
    (_breaker(allow=_never_half_opens), "at the end"),
    (_breaker(record=_no_minimum), "had not reached|9 failures"),
    (_breaker(allow=_half_open_lets_all_through), "probes are permitted|still half-open"),
    (_breaker(record=_closes_on_first_probe), "closed"),
    (_breaker(allow=_no_wait), "after opening"),
])
def test_each_breaker_requirement_broken_alone_fails_the_visible_check(wrong, match):
    visible_fails(1, wrong, match, seeds=range(20))


def test_a_breaker_that_never_opens_fails_the_visible_check():
    def record(self, now, ok):
        pass
    visible_fails(1, _breaker(record=record), "still closed|should have opened|must open", seeds=range(20))


# -- exercise 3 ------------------------------------------------------------------------------------

def test_payments_without_keys_fail_the_visible_check():
    async def on_charge(self, ctx, msg):
        await self.apply(ctx, msg["key"], msg["amount"])
        ctx.reply(msg, "charge_ok", charged=msg["amount"])
    visible_fails(2, lambda ns: {"Payments": type("Wrong", (ns["PaymentsBase"],), {"on_charge": on_charge})},
                  "applied more than once", seeds=range(20))


def test_payments_that_remember_only_after_applying_fail_the_visible_check():
    async def on_charge(self, ctx, msg):                  # a duplicate during the work applies again
        key = msg["key"]
        if key in self.results:
            return ctx.reply(msg, "charge_ok", charged=self.results[key])
        await self.apply(ctx, key, msg["amount"])
        self.results[key] = msg["amount"]
        ctx.reply(msg, "charge_ok", charged=msg["amount"])
    visible_fails(2, lambda ns: {"Payments": type("Wrong", (ns["PaymentsBase"],), {"on_charge": on_charge})},
                  "applied more than once", seeds=range(50))


# -- wrong answers a cold reader tried (issue: checks that blamed the wrong thing or passed) ----------

def _tries(budget_each_try=False, tell_budget=True, ask_after_last=False):
    """A retry loop with one mistake: the budget counts every try, or never hears of requests, or is
    asked (and slept on) after the last try too."""
    def build(ns):
        async def call(self, ctx):
            if tell_budget and not budget_each_try:
                self.budget.on_request(ctx.now)
            for n in range(self.ATTEMPTS):
                if budget_each_try:
                    self.budget.on_request(ctx.now)
                try:
                    r = await ctx.http.get("backend", "/price", timeout=self.TIMEOUT)
                    if r.status == 200:
                        return r
                except labkit.ClientError:
                    pass
                if ask_after_last:
                    if self.budget.try_retry(ctx.now):
                        await ctx.sleep(ns["full_jitter"](n, ctx.rng))
                    else:
                        break
                elif n + 1 < self.ATTEMPTS and self.budget.try_retry(ctx.now):
                    await ctx.sleep(ns["full_jitter"](n, ctx.rng))
                else:
                    break
            return None
        return _client(ns, call)
    return build


def _fixed_backoff(ns):
    async def call(self, ctx):
        self.budget.on_request(ctx.now)
        for n in range(self.ATTEMPTS):
            try:
                r = await ctx.http.get("backend", "/price", timeout=self.TIMEOUT)
                if r.status == 200:
                    return r
            except labkit.ClientError:
                pass
            if n + 1 == self.ATTEMPTS or not self.budget.try_retry(ctx.now):
                break
            await ctx.sleep(min(2000.0, 100.0 * 2 ** n))           # no jitter, not via full_jitter
        return None
    return _client(ns, call)


def _breaker_record(strict=False, no_min=False, full_window=False):
    def record(self, now, ok):
        if self.state != "closed":
            return type(self).__mro__[1].record(self, now, ok)
        self.outcomes = (self.outcomes + [ok])[-self.window:]
        rate = 100.0 * self.outcomes.count(False) / len(self.outcomes)
        enough = True if no_min else len(self.outcomes) >= (self.window if full_window else self.min_calls)
        if enough and (rate > self.threshold if strict else rate >= self.threshold):
            self.state, self.opened_at = "open", now
    return _breaker(record=record)


def _stub(self, *args):
    raise NotImplementedError("Exercise: write it")


def _payments(on_charge):
    return lambda ns: {"Payments": type("Wrong", (ns["PaymentsBase"],), {"on_charge": on_charge})}


async def _charged_total(self, ctx, msg):
    key = msg["key"]
    if key in self.results:
        return ctx.reply(msg, "charge_ok", charged=self.total)
    if key in self.waiting:
        self.waiting[key].append(msg)
        return
    self.waiting[key] = [msg]
    await self.apply(ctx, key, msg["amount"])
    self.results[key] = msg["amount"]
    for m in self.waiting.pop(key):
        ctx.reply(m, "charge_ok", charged=self.total)


async def _in_flight_answered_none(self, ctx, msg):
    key = msg["key"]
    if key in self.results:
        return ctx.reply(msg, "charge_ok", charged=self.results[key])
    if key in self.waiting:
        return ctx.reply(msg, "charge_ok", charged=None)
    self.waiting[key] = [msg]
    await self.apply(ctx, key, msg["amount"])
    self.results[key] = msg["amount"]
    ctx.reply(self.waiting.pop(key)[0], "charge_ok", charged=msg["amount"])


async def _in_flight_dropped(self, ctx, msg):
    key = msg["key"]
    if key in self.results:
        return ctx.reply(msg, "charge_ok", charged=self.results[key])
    if key in self.waiting:
        return                                                   # never answered
    self.waiting[key] = [msg]
    await self.apply(ctx, key, msg["amount"])
    self.results[key] = msg["amount"]
    ctx.reply(self.waiting.pop(key)[0], "charge_ok", charged=msg["amount"])


WRONG = {   # what the reader did -> (check cell, wrong answer, what the report must say, seeds)
    "budget told of every try": (0, _tries(budget_each_try=True), "told the budget of 4 requests", range(3)),
    "budget never told of requests": (0, _tries(tell_budget=False), "told the budget of 0 requests", range(3)),
    "budget asked and slept after the last try": (0, _tries(ask_after_last=True), "asked the budget 4 times",
                                                  range(3)),
    "breaker without min_calls": (1, _breaker_record(no_min=True), "9 failures", range(3)),
    "breaker opens only above the threshold": (1, _breaker_record(strict=True), "exactly 50%", range(3)),
    "breaker waits for a full window": (1, _breaker_record(full_window=True), "10 failures", range(3)),
    "breaker stub crashes the client": (1, _breaker(allow=_stub), "crashed.*NotImplementedError", range(3)),
    "charged is the running total": (2, _payments(_charged_total), "charged is the order's amount", range(20)),
    "in-flight duplicate answered None": (2, _payments(_in_flight_answered_none), "charged=\\[None",
                                          range(50)),
    "in-flight duplicate never answered": (2, _payments(_in_flight_dropped), "answer every try", range(50)),
    "payments stub crashes": (2, _payments(_stub), "crashed.*NotImplementedError", range(3)),
}


@pytest.mark.parametrize("mistake", list(WRONG))
def test_visible_check_catches(mistake):
    check, wrong, says, seeds = WRONG[mistake]
    visible_fails(check, wrong, says, seeds=seeds)


def test_the_jitter_check_does_not_depend_on_earlier_runs_or_where_the_sweep_ran():
    """The waits the jitter check judges are collected by the check itself (not left in a global
    by the sweep's seeds, which may run in other processes, or by an earlier run of the cell): a
    fixed-backoff answer fails even after a correct answer's operations ran."""
    ns = NB.run_setup()
    for seed in range(10):
        ns["one_operation"](seed)                    # a correct answer's operations, as from an earlier run
    ns.update(_fixed_backoff(ns))
    real = labkit.sweep.sweep
    ns["sweep"] = lambda scenario, seeds_=None, **kw: real(scenario, seeds=range(10), quiet=True, stop_after=1)
    with pytest.raises(AssertionError, match="full-jitter draws"):
        exec(compile(HIDDEN.sub("", NB.checks[0]), "visible[0]", "exec"), ns)
