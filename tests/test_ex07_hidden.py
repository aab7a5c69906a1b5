"""Hidden checks of chapter 07's exercises (solutions/07_load_balancing.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each check
cell's ``### BEGIN HIDDEN TESTS`` block, which defines ``<exercise>_hidden(seed)``: other cluster
sizes, slow factors, thresholds, probe intervals and loss rates; this module sweeps each over 60-100
seeds. The other tests make sure the checks are not vacuous: each requirement of a statement, broken
alone, must fail the visible check.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook
from visiblecheck import visible_report

NB = SolutionNotebook("07_load_balancing.ipynb")


@pytest.fixture(scope="module")
def namespace():
    ns = NB.run_setup()
    for i in range(3):
        NB.run_hidden(i, ns)
    return ns


def test_every_check_cell_has_hidden_tests_and_enough_seeds():
    assert len(NB.checks) == 3
    assert all(HIDDEN.search(src) for src in NB.checks)
    assert "range(30)" in NB.checks[0] and "range(50)" in NB.checks[1] and "range(50)" in NB.checks[2]


@pytest.mark.parametrize("name, seeds", [("two_choices_hidden", range(1000, 1060)),
                                         ("health_hidden", range(1000, 1080)),
                                         ("affinity_hidden", range(1000, 1100))])
def test_hidden(namespace, name, seeds):
    namespace["sweep"](namespace[name], seeds=seeds)


# -- every requirement of a statement is exercised by the visible check --------------------------

def _policy(pick):
    return lambda ns: {"TwoChoices": type("Wrong", (ns["Policy"],), {"name": "wrong", "pick": pick})}


def _random_pick(self, candidates, view, rng, key=None):              # ignores load
    return candidates[rng.randrange(len(candidates))]


def _with_replacement(self, candidates, view, rng, key=None):         # the same one may be drawn twice
    a, b = rng.choice(list(candidates)), rng.choice(list(candidates))
    return a if view.in_flight(a) <= view.in_flight(b) else b


def _more_loaded(self, candidates, view, rng, key=None):
    if len(candidates) == 1:
        return candidates[0]
    a, b = rng.sample(list(candidates), 2)
    return a if view.in_flight(a) > view.in_flight(b) else b


def _two_crashes_on_one(self, candidates, view, rng, key=None):        # rng.sample(..., 2) of one
    a, b = rng.sample(list(candidates), 2)
    return a if view.in_flight(a) <= view.in_flight(b) else b


def _least_connections(self, candidates, view, rng, key=None):       # looks at every candidate
    return min(candidates, key=view.in_flight)


def _global_random(self, candidates, view, rng, key=None):            # breaks replay
    import random
    if len(candidates) == 1:
        return candidates[0]
    a, b = random.sample(list(candidates), 2)
    return a if view.in_flight(a) <= view.in_flight(b) else b


def _by_latency(self, candidates, view, rng, key=None):               # the wrong signal
    if len(candidates) == 1:
        return candidates[0]
    a, b = rng.sample(list(candidates), 2)
    return a if view.ewma_ms(a) <= view.ewma_ms(b) else b


def _health(**methods):
    return lambda ns: {"Checked": type("Wrong", (ns["Checked"],), methods)}


def _eject_on_first_failure(self, ctx, b, ok):                        # no hysteresis down
    self.streak[b] = self.streak[b] + 1 if ok and self.streak[b] > 0 else (1 if ok else -1)
    if not ok and self.up[b]:
        self.up[b] = False
    elif ok and not self.up[b] and self.streak[b] >= self.healthy_threshold:
        self.up[b] = True


def _counts_total_failures(self, ctx, b, ok):                         # K failures ever, not in a row
    self.__dict__.setdefault("fails", {}).setdefault(b, 0)
    if not ok:
        self.fails[b] += 1
    if self.up[b] and not ok and self.fails[b] >= self.unhealthy_threshold:
        self.up[b] = False
    elif ok and not self.up[b]:
        self.up[b], self.fails[b] = True, 0


def _never_readmits(self, ctx, b, ok):
    s = self.streak[b]
    self.streak[b] = (s + 1 if s > 0 else 1) if ok else (s - 1 if s < 0 else -1)
    if self.up[b] and self.streak[b] <= -self.unhealthy_threshold:
        self.up[b] = False


def _readmits_on_one(self, ctx, b, ok):
    s = self.streak[b]
    self.streak[b] = (s + 1 if s > 0 else 1) if ok else (s - 1 if s < 0 else -1)
    if self.up[b] and self.streak[b] <= -self.unhealthy_threshold:
        self.up[b] = False
    elif ok and not self.up[b]:
        self.up[b] = True


def _never_marks_down(self, ctx, b, ok):
    pass


def _no_panic(self, ctx):
    return [b for b in self.pool if self.up[b]]


def _panic_only_when_empty(self, ctx):
    ok = [b for b in self.pool if self.up[b]]
    return ok or list(self.pool)


def _ignores_health(self, ctx):
    return list(self.pool)


def _crashes_in_the_cluster(self, ctx):                               # fine by hand, raises once running
    if ctx.id == "lb" and getattr(ctx, "now", 0) > 100:
        raise NotImplementedError("Exercise: write it")
    ok = [b for b in self.pool if self.up[b]]
    return list(self.pool) if len(ok) * 100 < self.panic_threshold * len(self.pool) or not ok else ok


def _sticky(fn):
    return lambda ns: {"sticky_backend": fn}


def _mod_n(session, backends):
    from labkit.systems.partitioning import stable_hash
    return sorted(backends)[stable_hash(session) % len(backends)]


def _one_vnode(session, backends):
    from labkit.systems.partitioning import HashRing
    return HashRing(sorted(backends), vnodes=1).owner(session)


def _order_dependent(session, backends):
    from labkit.systems.partitioning import HashRing
    names = [f"{i}:{b}" for i, b in enumerate(backends)]
    return HashRing(names, vnodes=400).owner(session).split(":", 1)[1]


def _ring_per_size(session, backends):                               # a cache keyed on the count
    from labkit.systems.partitioning import HashRing
    cache = _ring_per_size.__dict__.setdefault("rings", {})
    if len(backends) not in cache:
        cache[len(backends)] = HashRing(sorted(backends), vnodes=400)
    return cache[len(backends)].owner(session)


WRONG = {   # requirement -> (check cell, wrong answer, what the report must say)
    "two choices looks at load": (0, _policy(_random_pick), "failed on"),
    "two distinct draws": (0, _policy(_with_replacement), "distinct"),
    "the less loaded of the two": (0, _policy(_more_loaded), "failed on"),
    "one candidate is returned": (0, _policy(_two_crashes_on_one), "failed on"),
    "two draws, not least connections": (0, _policy(_least_connections), "2/5"),
    "draws from rng, not the global random": (0, _policy(_global_random), "global random"),
    "compares in_flight, not latency": (0, _policy(_by_latency), "fewer view.in_flight of two distinct draws"),
    "K in a row, not at the first failure": (1, _health(health_result=_eject_on_first_failure), "must not mark"),
    "K in a row, not K ever": (1, _health(health_result=_counts_total_failures), "must not"),
    "readmitted after M": (1, _health(health_result=_never_readmits), "readmit"),
    "not readmitted before M": (1, _health(health_result=_readmits_on_one), "must not readmit"),
    "a dead backend is marked down": (1, _health(health_result=_never_marks_down), "must mark"),
    "panic below the threshold": (1, _health(candidates=_panic_only_when_empty), "candidates returned"),
    "never eject everything": (1, _health(candidates=_no_panic), "candidates returned"),
    "candidates honour health": (1, _health(candidates=_ignores_health), "candidates returned"),
    "a crash is named, not blamed on the policy": (1, _health(candidates=_crashes_in_the_cluster),
                                                  "crashed"),
    "mod-N moves most sessions": (2, _sticky(_mod_n), "moved"),
    "the answer ignores list order": (2, _sticky(_order_dependent), "reordered"),
    "an even ring": (2, _sticky(_one_vnode), "failed on"),
    "rings cached per backend set, not per count": (2, _sticky(_ring_per_size), "stale"),
}


@pytest.mark.parametrize("requirement", list(WRONG))
def test_visible_check_catches(requirement):
    check, wrong, says = WRONG[requirement]
    assert says in visible_report(NB, check, wrong)


def test_hidden_health_check_catches_a_checker_without_hysteresis(namespace):
    wrong = type("Wrong", (namespace["Checked"],), {"health_result": _eject_on_first_failure})
    with pytest.raises(AssertionError):
        namespace["sweep"](lambda seed: namespace["health_scenario"](seed, wrong), seeds=range(1000, 1010),
                           quiet=True, stop_after=1)


def test_exercise_2_has_no_health_logic_to_borrow_through_super(namespace):
    """``Checked`` subclasses ``BalancerBase``: an answer that hands both methods to ``super()``
    (labkit's own ``Balancer`` has them) raises instead of passing the check."""
    from labkit.systems.balancer import BalancerBase
    assert namespace["Checked"].__bases__ == (BalancerBase,)
    attrs = {k: v for k, v in vars(namespace["Checked"]).items() if not callable(v) and not k.startswith("__")}

    def health_result(self, ctx, b, ok):
        return super(Borrowing, self).health_result(ctx, b, ok)

    def candidates(self, ctx):
        return super(Borrowing, self).candidates(ctx)

    Borrowing = type("Borrowing", (BalancerBase,), {**attrs, "health_result": health_result,
                                                    "candidates": candidates})
    with pytest.raises(NotImplementedError, match="left to you"):
        namespace["health_scenario"](0, Borrowing)
