"""Hidden checks of chapter 02's exercises (solutions/02_consistency.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block: 200 seeds per scenario, five nodes, heavier
loss plus duplication and reordering, and (for sessions) a replica with a slow clock. Other
tests make sure the checks are not vacuous: a counter that merges by adding, a store with no
anti-entropy and a store without sessions must each fail them.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook

NB = SolutionNotebook("02_consistency.ipynb")


@pytest.fixture(scope="module")
def namespace():
    return NB.run_setup()


def test_every_check_cell_has_hidden_tests():
    checks = NB.checks
    assert len(checks) == 3
    assert all(HIDDEN.search(src) for src in checks)
    assert all("range(100)" in src for src in checks)          # >= 100 visible seeds each


@pytest.mark.parametrize("exercise", [0, 1, 2], ids=["counters", "anti_entropy", "sessions"])
def test_hidden(namespace, exercise):
    block = NB.hidden(exercise)
    assert "range(1000, 1200)" in block                         # >= 200 seeds per scenario
    NB.run_hidden(exercise, namespace)


def _fails(namespace, name, scenario, replacement, seeds=range(50)):
    good = namespace[name]
    namespace[name] = replacement
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace[scenario], seeds=seeds, quiet=True, stop_after=1)
    finally:
        namespace[name] = good


def test_a_counter_that_merges_by_adding_fails(namespace):
    class Adding(namespace["GCounter"]):
        def merge(self, other):
            for r, c in other.counts.items():
                if r != "self":
                    self.counts[r] = self.counts.get(r, 0) + c

    _fails(namespace, "GCounter", "counter_scenario", Adding)


def test_a_counter_that_forgets_decrements_fails(namespace):
    class NoMinus(namespace["PNCounter"]):
        def add(self, replica, delta):
            self.p.increment(replica, abs(delta))

    _fails(namespace, "PNCounter", "counter_scenario", NoMinus)


def test_no_anti_entropy_fails(namespace):
    class Lazy(namespace["PushOnlyKV"]):
        pass

    _fails(namespace, "AntiEntropyKV", "anti_entropy_scenario", Lazy)


def test_anti_entropy_that_overwrites_without_comparing_versions_fails(namespace):
    """Replicas that take whatever a peer syncs converge -- on an older write than the newest."""
    class Blind(namespace["PushOnlyKV"]):
        def on_timer(self, ctx, name):
            ctx.send(ctx.rng.choice(ctx.peers), "sync", store=self.store)
            ctx.set_timer("gossip", between=self.GOSSIP)

        def on_message(self, ctx, msg):
            if msg.type != "sync":
                return super().on_message(ctx, msg)
            for key, version in msg["store"].items():
                self.store[key] = list(version)
                ctx.note("state", value=sorted([k, v[2]] for k, v in self.store.items()))

    _fails(namespace, "AntiEntropyKV", "anti_entropy_scenario", Blind)


def test_sessions_without_tokens_fail(namespace):
    class Forgetful(namespace["Session"]):
        def fields(self, f, key):
            return {}

    _fails(namespace, "Session", "session_scenario", Forgetful, seeds=range(100))


def test_sessions_that_refuse_everything_fail(namespace):
    base = namespace["SessionKV"]

    class Refuser(base):
        def on_message(self, ctx, msg):
            if msg.type == "read":
                return ctx.reply(msg, "error", code=11, text="no")
            super().on_message(ctx, msg)

    namespace["SessionKV"] = Refuser
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace["session_scenario"], seeds=range(5), quiet=True, stop_after=1)
    finally:
        namespace["SessionKV"] = base
