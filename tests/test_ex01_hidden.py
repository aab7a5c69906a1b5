"""Hidden checks of chapter 01's exercises (solutions/01_time.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block: 200 seeds per scenario, with duplicates, drops
and partitions on top of the delay/jitter/reorder faults of the visible checks. A test also
makes sure the checks are not vacuous: a buffer that delivers on arrival must fail them.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "solutions" / "01_time.ipynb"
HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n(.*?)^### END HIDDEN TESTS", re.M | re.S)


def _cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = [c.source for c in code if "check" not in c.metadata.get("tags", [])]
    checks = [c.source for c in code if "check" in c.metadata.get("tags", [])]
    return setup, checks


@pytest.fixture(scope="module")
def namespace():
    setup, _ = _cells()
    ns = {"__name__": "__main__"}
    for i, src in enumerate(setup):
        exec(compile(src, f"{NOTEBOOK.name}[{i}]", "exec"), ns)
    return ns


def test_every_check_cell_has_hidden_tests():
    _, checks = _cells()
    assert len(checks) == 3
    assert all(HIDDEN.search(src) for src in checks)


@pytest.mark.parametrize("exercise", [0, 1, 2], ids=["lamport", "vector_clocks", "causal_buffer"])
def test_hidden(namespace, exercise):
    _, checks = _cells()
    block = HIDDEN.search(checks[exercise]).group(1)
    assert "range(1000, 1200)" in block       # >= 200 seeds per scenario
    exec(compile(block, f"{NOTEBOOK.name}:hidden[{exercise}]", "exec"), namespace)


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
