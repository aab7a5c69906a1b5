"""Progress of long labkit calls (issue 20): a bar in a notebook with a front end, a line on a
terminal, nothing under CI, nbval or into a pipe; a sweep ends with its one-line report."""
from __future__ import annotations

import io
import sys

import pytest

import labkit._progress as progress
from labkit._progress import Progress, wanted
from labkit.sweep import sweep


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("LABKIT_PROGRESS", raising=False)


def test_who_sees_progress(monkeypatch, fast):
    monkeypatch.setattr(sys, "stderr", TTY())
    assert wanted(None) is True                                  # a terminal
    monkeypatch.setenv("CI", "true")
    assert wanted(None) is False and wanted(True) is True       # CI: only when asked
    monkeypatch.delenv("CI")
    monkeypatch.setenv("LABKIT_PROGRESS", "off")
    assert wanted(None) is False
    monkeypatch.delenv("LABKIT_PROGRESS")
    monkeypatch.setattr(sys, "stderr", io.StringIO())            # a pipe, pytest's capture
    assert wanted(None) is False and wanted(print) is True
    monkeypatch.setattr(progress, "in_kernel", lambda: True)     # a kernel: only with a front end
    monkeypatch.setenv("LABKIT_PANEL", "text")                   # nbval, nbconvert, papermill
    assert wanted(None) is False
    monkeypatch.setenv("LABKIT_PANEL", "widget")                 # JupyterLab
    assert wanted(None) is True


def test_a_terminal_line_is_rewritten_then_cleared_or_left_as_the_final_line(monkeypatch, fast):
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    p = Progress("sweep s", 10, unit="seeds", after=0.0)
    p.update(3)
    p.update(7, "1 failed")
    p.close()
    text = err.getvalue()
    assert "\rsweep s: 3/10 seeds (0 s)" in text and "\rsweep s: 7/10 seeds, 1 failed (0 s)" in text
    assert text.endswith("\r") and text.rsplit("\r", 2)[-2].strip() == ""      # cleared
    err.truncate(0)
    err.seek(0)
    with Progress("linearizability", 2, unit="keys", after=0.0) as p:
        p.update(1)
        p.close(final="linearizability: 2/2 keys, done")
    assert err.getvalue().endswith("linearizability: 2/2 keys, done\n")


def test_nothing_is_shown_before_after_seconds_or_when_not_wanted(monkeypatch, fast):
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    p = Progress("quick", 5, after=60.0)
    p.update(5)
    p.close()
    assert err.getvalue() == "" and not p.shown
    p = Progress("off", 5, mode=False, after=0.0)
    p.update(5)
    p.close()
    assert err.getvalue() == ""


def test_a_notebook_bar_counts_and_is_removed_at_the_end(monkeypatch, fast):
    import ipywidgets
    import IPython.display
    shown = []
    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.setenv("LABKIT_PANEL", "widget")
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    p = Progress("sweep s", 200, unit="seeds", after=0.0)
    p.update(50, "2 failed")
    (box,) = shown
    bar, label = box.children
    assert isinstance(bar, ipywidgets.IntProgress) and bar.max == 200 and bar.value == 50
    assert label.value.startswith("sweep s: 50/200 seeds, 2 failed")
    closed = []
    box.close = lambda: closed.append(True)
    p.close()
    assert closed == [True]


def test_a_sweep_reports_progress_and_ends_with_its_one_line_report(monkeypatch, fast, capsys):
    import labkit.sweep
    monkeypatch.setattr(labkit.sweep, "PROGRESS_AFTER_S", 0.0)
    seen: list = []
    with pytest.raises(AssertionError):
        sweep(_odd_fails, seeds=range(6), executor="inline", progress=seen.append)
    assert [d["done"] for d in seen] == [1, 2, 3, 4, 5, 6] and seen[-1]["total"] == 6
    assert seen[-1]["label"] == "sweep _odd_fails" and seen[-1]["unit"] == "seeds"
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "✗ _odd_fails: failed on 3 of 6 seeds (50.0%); first failing seed 1:"
    err = TTY()                                           # a terminal: the line is gone before the report
    monkeypatch.setattr(sys, "stderr", err)
    sweep(_even, seeds=range(4), executor="inline")
    assert "sweep _even: 4/4 seeds" in err.getvalue() and err.getvalue().endswith("\r")
    assert capsys.readouterr().out == "✓ _even: passed on all 4 seeds (0.0 s)\n"


def _odd_fails(seed):
    assert seed % 2 == 0, f"seed {seed} is odd"


def _even(seed):
    assert seed >= 0
