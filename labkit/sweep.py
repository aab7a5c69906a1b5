"""Checks for exercises: run a scenario over many seeds and say exactly what went wrong.

An exercise's check cell calls ``sweep(scenario, seeds=...)``. ``scenario(seed)`` builds a
cluster (usually in the simulator), runs it and asserts what must hold; ``sweep`` runs it
once per seed and prints one line when everything passed, or the failure rate, the first
failing seed, its message and how to replay it:

    failed on 3 of 200 seeds (1.5%); first failing seed 117:
      n2 delivered 'reply' before 'question'
      replay: scenario(117)

A scenario that raises something other than ``AssertionError`` is a failure too (with its
traceback's last line): a crash is never a pass. ``sweep`` raises ``SweepFailed`` (an
``AssertionError`` carrying the ``result``) when any seed failed, so a check cell fails the
way a test does and code can still read ``err.result.first_failing_seed``.

One report per check: in a notebook the printed report is the whole story. A ``SweepResult``
left as the value of the cell whose ``sweep`` printed it does not show itself again (in a later
cell it shows the report; its ``repr`` is one line, never the list of seeds); a ``SweepFailed``
shown by IPython is one line pointing at the report above instead of a traceback repeating it. Outside IPython (pytest,
``str(err)``) the exception still carries the full report.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


@dataclass
class SweepResult:
    """What ``sweep`` found: the seeds run, the failures ``{seed: message}`` in order, time."""

    name: str
    seeds: list[int]
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: The IPython cell (execution count) in which ``sweep`` printed this result, if any.
    printed_in: int | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return bool(self.seeds) and not self.failures

    @property
    def first_failing_seed(self) -> int | None:
        return next(iter(self.failures), None)

    def __str__(self) -> str:
        n = len(self.seeds)
        if self.passed:
            return f"✓ {self.name}: passed on all {n} seeds ({self.seconds:.1f} s)"
        if not n:
            return f"✗ {self.name}: no seeds were run"
        seed = self.first_failing_seed
        k = len(self.failures)
        msg = "\n  ".join(self.failures[seed].splitlines()) or "(no message)"
        return (f"✗ {self.name}: failed on {k} of {n} seeds ({k / n:.1%}); first failing seed {seed}:\n"
                f"  {msg}\n  replay: {self.name}({seed})")

    def __repr__(self) -> str:
        n = len(self.seeds)
        seeds = f"{self.seeds[0]}..{self.seeds[-1]}" if n > 1 else ",".join(map(str, self.seeds))
        return (f"<SweepResult {self.name}: {'passed' if self.passed else 'FAILED'}, {len(self.failures)} of {n} "
                f"seeds failed (seeds {seeds or 'none'}), {self.seconds:.1f} s>")

    def _ipython_display_(self) -> None:
        """As the value of the cell whose ``sweep`` printed the report: nothing more (the
        report is right above); in any later cell: the report."""
        if self.printed_in is not None and self.printed_in == _ipython_cell():
            return
        print(self)


class SweepFailed(AssertionError):
    """Raised by ``sweep`` when a seed failed; ``result`` is the ``SweepResult``."""

    def __init__(self, result: SweepResult, *, reported: bool = False) -> None:
        super().__init__(str(result))
        self.result = result
        self.reported = reported          # the report was printed just before this was raised

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for this error: one line when ``sweep`` printed the report above
        (the traceback into labkit would only repeat it), else the report itself."""
        if self.reported:
            r = self.result
            return [f"\x1b[0;31mSweepFailed\x1b[0m: {len(r.failures)} of {len(r.seeds)} seeds failed (first: seed "
                    f"{r.first_failing_seed}) -- the report is printed above"]
        return [f"\x1b[0;31mSweepFailed\x1b[0m: {self.result}"]


def sweep(scenario: Callable[[int], Any], seeds: Iterable[int] = range(100), *, name: str | None = None,
          stop_after: int | None = None, quiet: bool = False) -> SweepResult:
    """Run ``scenario(seed)`` for every seed; print and return the result; raise
    ``SweepFailed`` (an ``AssertionError`` with the same explanation and the result) if any
    seed failed.

    ``stop_after``: stop once that many seeds have failed (the rate is then over the seeds run).
    """
    result = SweepResult(name or getattr(scenario, "__name__", "scenario"), [])
    t0 = time.perf_counter()
    for seed in seeds:
        result.seeds.append(seed)
        try:
            scenario(seed)
        except AssertionError as e:
            result.failures[seed] = str(e) or "an assertion failed (give your assert a message)"
        except Exception as e:  # a crash is a failure, with where it happened
            where = traceback.extract_tb(e.__traceback__)[-1]
            result.failures[seed] = (f"{type(e).__name__}: {e} "
                                     f"(at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
        if stop_after is not None and len(result.failures) >= stop_after:
            break
    result.seconds = time.perf_counter() - t0
    if not quiet:
        print(result)
    if not result.passed:
        raise SweepFailed(result, reported=not quiet)
    result.printed_in = None if quiet else _ipython_cell()
    return result


def _ipython_cell() -> int | None:
    """The execution count of the IPython cell running now (None outside IPython)."""
    import sys
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "execution_count", None) if shell is not None else None
