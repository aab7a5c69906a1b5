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
