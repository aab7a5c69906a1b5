"""Hidden checks of chapter 02's exercises (solutions/02_consistency.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block: 200 seeds per scenario, five nodes, heavier
loss plus duplication and reordering, and (for sessions) a replica with a slow clock. Other
tests make sure the checks are not vacuous: a counter that merges by adding, a store with no
anti-entropy and a store without sessions must each fail them.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "solutions" / "02_consistency.ipynb"
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
    assert all("range(100)" in src for src in checks)          # >= 100 visible seeds each


@pytest.mark.parametrize("exercise", [0, 1, 2], ids=["counters", "anti_entropy", "sessions"])
def test_hidden(namespace, exercise):
    _, checks = _cells()
    block = HIDDEN.search(checks[exercise]).group(1)
    assert "range(1000, 1200)" in block                         # >= 200 seeds per scenario
    exec(compile(block, f"{NOTEBOOK.name}:hidden[{exercise}]", "exec"), namespace)


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
