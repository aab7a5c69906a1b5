"""Hidden checks of chapter 01's exercises (solutions/01_time.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block: 200 seeds per scenario, with duplicates, drops
and partitions on top of the delay/jitter/reorder faults of the visible checks. A test also
makes sure the checks are not vacuous: a buffer that delivers on arrival must fail them.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook

NB = SolutionNotebook("01_time.ipynb")


@pytest.fixture(scope="module")
def namespace():
    return NB.run_setup()


def test_every_check_cell_has_hidden_tests():
    checks = NB.checks
    assert len(checks) == 3
    assert all(HIDDEN.search(src) for src in checks)


@pytest.mark.parametrize("exercise", [0, 1, 2], ids=["lamport", "vector_clocks", "causal_buffer"])
def test_hidden(namespace, exercise):
    block = NB.hidden(exercise)
    assert "range(1000, 1200)" in block       # >= 200 seeds per scenario
    NB.run_hidden(exercise, namespace)


def test_checks_catch_wrong_buffers(namespace):
    """A buffer that delivers everything on arrival, and one that forgets duplicates, both fail."""
    sweep, good = namespace["sweep"], namespace["CausalBuffer"]

    class Eager(good):
        def receive(self, sender, vc, payload):
            self.vc = namespace["merge"](self.vc, vc)
            return [payload]

    class NoDedupe(good):
        def receive(self, sender, vc, payload):
            if vc[sender] <= self.vc[sender]:
                self.vc[sender] = vc[sender] - 1       # forget: deliver the copy again
            return super().receive(sender, vc, payload)

    labkit = namespace["labkit"]

    def with_duplicates(seed):
        with labkit.Cluster(namespace["BufferedChat"], n=3, runtime="sim", seed=seed) as cluster:
            cluster.set_link("*", "*", delay=10, jitter=10, reorder=0.6, duplicate=0.4)
            namespace["check_causal"](cluster, seconds=3.0)

    try:
        for bad, scenario in ((Eager, namespace["causal_scenario"]), (NoDedupe, with_duplicates)):
            namespace["CausalBuffer"] = bad
            with pytest.raises(AssertionError):
                sweep(scenario, seeds=range(2000, 2050), quiet=True, stop_after=1)
    finally:
        namespace["CausalBuffer"] = good


def test_checks_catch_a_lamport_clock_without_the_plus_one(namespace):
    good = namespace["LamportNode"]

    class NoTick(good):
        def receive(self, ctx, msg):
            self.clock = max(self.clock, msg["ts"])
            self.events.append(["receive", self.clock, msg.id])

    namespace["LamportNode"] = NoTick
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace["lamport_scenario"], seeds=range(20), quiet=True, stop_after=1)
    finally:
        namespace["LamportNode"] = good
