"""Hidden checks of Chapter 00's exercises, run against the reference solutions.

The test imports nothing from the notebook and re-implements nothing: it executes the code
cells of ``solutions/00_welcome.ipynb`` in order (the solution cells define ``Counter`` and
``Detector``; the check cells define the scenarios and run the visible checks), with
``HIDDEN_SEEDS`` set to 300 seeds, so the hidden block of each check cell (between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``) sweeps more seeds and more faults
than the notebook does. The cells run in the simulator, apart from one short real-process
run in the first check.
"""
from __future__ import annotations

import pathlib

import nbformat
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "solutions" / "00_welcome.ipynb"
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def _code_cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_check_cell_has_hidden_tests():
    checks = [c for c in _code_cells() if "check" in c.metadata.get("tags", [])]
    assert len(checks) == 2
    for c in checks:
        assert HIDDEN[0] in c.source and HIDDEN[1] in c.source
        assert "HIDDEN_SEEDS" in c.source.split(HIDDEN[0], 1)[1]


@pytest.mark.processes
def test_ex00_hidden_checks_pass_on_300_seeds(capsys):
    ns: dict = {"__name__": "ex00", "HIDDEN_SEEDS": range(300)}
    for i, cell in enumerate(_code_cells()):
        exec(compile(cell.source, f"{NOTEBOOK.name}[code cell {i}]", "exec"), ns)
    out = capsys.readouterr().out
    for name in ("hidden_counter", "hidden_detector", "hidden_detector_pause"):
        assert f"✓ {name}: passed on all 300 seeds" in out, out


# -- every requirement of a statement is exercised by the visible check (issue 19, item 5) ------

from solutionnb import SolutionNotebook  # noqa: E402
from visiblecheck import visible_report  # noqa: E402

NB = SolutionNotebook("00_welcome.ipynb")


def _detector(**attrs):
    return lambda ns: {"Detector": type("Wrong", (ns["Detector"],), attrs)}


def _unsorted(ns):
    class Unsorted(ns["Detector"]):
        def on_message(self, ctx, msg):
            if msg.type == "peers_seen":
                return ctx.reply(msg, peers=[p for p, t in self.last_ping.items() if ctx.now - t < self.WINDOW_MS])
            super().on_message(ctx, msg)
    return {"Detector": Unsorted}


def _volatile_counter(ns):
    class Volatile(ns["labkit"].Node):                 # the count on self: lost with every restart
        def on_message(self, ctx, msg):
            self.count = getattr(self, "count", 0) + 1
            ctx.reply(msg, count=self.count)
    return {"Counter": Volatile}


WRONG = {   # requirement of the statement -> (check cell, wrong answer, what the report must say)
    "count survives kill/restart": (0, _volatile_counter, "expected"),
    "ping every 100 ms": (1, _detector(PERIOD_MS=250), "150 ms after"),
    "window of 300 ms, not longer": (1, _detector(WINDOW_MS=900), "450 ms after"),
    "window of 300 ms, not shorter": (1, _detector(WINDOW_MS=120), "150 ms after"),
    "sorted list": (1, _unsorted, "sorted"),
}


@pytest.mark.parametrize("requirement", list(WRONG))
def test_visible_check_catches(requirement):
    check, wrong, says = WRONG[requirement]
    assert says in visible_report(NB, check, wrong)
