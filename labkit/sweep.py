"""Seed sweeps: run a scenario over many seeds -- on every core, or on a Dask cluster -- and
say exactly what went wrong.

An exercise's check cell calls ``sweep(scenario, seeds=...)``. ``scenario(seed)`` builds a
cluster (usually in the simulator), runs it and asserts what must hold; ``sweep`` runs it
once per seed and prints one line when everything passed, or the failure rate, the first
failing seed, its message and how to replay it:

    failed on 3 of 200 seeds (1.5%); first failing seed 117:
      n2 delivered 'reply' before 'question'
      replay: scenario(117)

A scenario that raises something other than ``AssertionError`` is a failure too (with its
traceback's last line, and the exception that caused it, if any): a crash is never a pass. A node
that crashes while a scenario runs does not print its traceback once per seed: the report names
the crash and shows its traceback once, for the first failing seed. A ``NotImplementedError``
(an exercise stub not written yet), raised by the scenario or by a node, stops the sweep at once:
every other seed would say the same. ``sweep`` raises ``SweepFailed`` (an
``AssertionError`` carrying the ``result``) when any seed failed, so a check cell fails the
way a test does and code can still read ``err.result.first_failing_seed``.

Where the seeds run (``executor=``). The result is the same whatever runs them -- the same
seeds run, the same failures with the same messages, the same first failing seed, the same
stop under ``stop_after`` -- because each seed's run is deterministic and the results are
merged in seed order:

* ``None`` (default): in this process first; once the seeds left would take more than about
  a second (judged from the seeds run so far) and the machine has several usable cores,
  the rest go to a pool of processes, one per core, made for this sweep and closed after it
  (one core -- Binder -- or a CPU quota of one: everything runs here);
* ``"inline"``: one after another in this process, as ``sweep`` always did;
* any ``concurrent.futures.Executor``: e.g. ``ProcessPoolExecutor(8)``, or a Dask cluster's
  ``distributed.Client(...).get_executor()``. The executor is used, not shut down.

In another process the scenario is a copy: it is sent pickled with dill (like node classes,
so functions and classes defined in notebook cells work), and what it changes in the
notebook's variables stays in the worker -- assert instead. What a seed prints is captured and
printed here in seed order. A scenario that cannot be pickled (it holds an open cluster, a
lock, a file) runs in this process under ``None``, and is an error with an explicit executor.

On a Dask cluster (an instructor grading a class): start a scheduler and workers where
labkit and the course's modules are installed (``pip install labkit distributed``, same
Python version), then ``from distributed import Client; client = Client("tcp://HOST:8786")``
and ``sweep(scenario, seeds=range(10_000), executor=client.get_executor())``. Seeds go out
in chunks of consecutive seeds; cancelling (Ctrl-C) cancels the cluster's tasks.

Progress: a sweep running longer than a second shows how many seeds are done (and failed) --
a bar in a notebook, a line on a terminal, nothing under CI or nbval (``labkit._progress``)
-- and the bar is removed when the one-line report is printed.

One report per check: in a notebook the printed report is the whole story. A ``SweepResult``
left as the value of the cell whose ``sweep`` printed it does not show itself again (in a later
cell it shows the report; its ``repr`` is one line, never the list of seeds); a ``SweepFailed``
shown by IPython is one line pointing at the report above instead of a traceback repeating it. Outside IPython (pytest,
``str(err)``) the exception still carries the full report.
"""
from __future__ import annotations

import concurrent.futures as cf
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import _parallel
from ._parallel import SweepError
from ._progress import Progress
from .errors import ArgumentError

__all__ = ["sweep", "SweepResult", "SweepFailed", "SweepError"]

#: ``executor=None`` hands the seeds left to a process pool when they would take longer than
#: this (seconds), judged from the seeds run so far (a pool costs a fraction of a second to
#: start; the first one of a session about a second, while its forkserver imports labkit).
POOL_WORTH_S = 1.0
#: Seconds a sweep runs before its progress is shown.
PROGRESS_AFTER_S = 1.0


@dataclass
class SweepResult:
    """What ``sweep`` found: the seeds run, the failures ``{seed: message}`` in order, time."""

    name: str
    seeds: list[int]
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: The traceback of the node crash behind the first failure ("" if no node crashed).
    crash: str = field(default="", repr=False)
    #: Why the sweep stopped before its last seed ("" if it did not stop early).
    stopped: str = field(default="", repr=False)
    #: The IPython cell (execution count) in which ``sweep`` printed this result, if any.
    printed_in: int | None = field(default=None, repr=False, compare=False)
    #: Where the seeds ran: ``"inline"``, ``"inline, then 2 processes"``, an executor's class name.
    ran_on: str = field(default="inline", repr=False, compare=False)

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
        text = (f"✗ {self.name}: failed on {k} of {n} seeds ({k / n:.1%}); first failing seed {seed}:\n"
                f"  {msg}\n  replay: {self.name}({seed})")
        if self.stopped:
            text += f"\n  {self.stopped}"
        if self.crash:
            text += "\n\nThe node's crash, once (seed {}):\n{}".format(seed, self.crash.rstrip())
        return text

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


def sweep(scenario: Callable[[Any], Any], seeds: Iterable[Any] = range(100), *, name: str | None = None,
          stop_after: int | None = None, quiet: bool = False, executor: cf.Executor | str | None = None,
          progress: Any = None) -> SweepResult:
    """Run ``scenario(seed)`` for every seed; print and return the result; raise
    ``SweepFailed`` (an ``AssertionError`` with the same explanation and the result) if any
    seed failed.

    ``stop_after``: stop once that many seeds have failed, in seed order (the rate is then
    over the seeds run). ``executor``: where the seeds run -- ``None`` (this process, then all
    cores once that pays), ``"inline"`` or a ``concurrent.futures.Executor`` (the module
    docstring has the details; the result does not depend on it). ``progress``: ``None`` shows
    progress where somebody watches after a second, ``False`` never, ``True`` always, a
    callable gets a dict per update (``labkit._progress``). ``quiet``: print nothing.

    Raises ArgumentError for a ``scenario`` that is not callable, ``seeds`` that are not an
    iterable (or are a str), a bad ``stop_after`` or ``executor``; SweepError (a RuntimeError)
    when the executor itself fails -- a worker died, the scenario cannot be sent to it --
    never for a failing scenario; KeyboardInterrupt on Ctrl-C, after stopping the workers."""
    if not callable(scenario):
        raise ArgumentError(f"sweep(scenario={scenario!r}): give a function of one seed, e.g. "
                            f"def scenario(seed): ... that raises (an assert, say) when the seed fails")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ArgumentError(f"sweep(seeds={seeds!r}): give the seeds as an iterable, e.g. range(200) or "
                            f"[3, 7, 11]")
    if stop_after is not None and (type(stop_after) is not int or stop_after < 1):
        raise ArgumentError(f"sweep(stop_after={stop_after!r}): give a positive int (failures to stop after) or None")
    if not (executor is None or executor == "inline" or isinstance(executor, cf.Executor)
            or callable(getattr(executor, "submit", None))):
        raise ArgumentError(f"sweep(executor={executor!r}): give None (automatic), 'inline' or a "
                            f"concurrent.futures.Executor such as distributed.Client(...).get_executor()")
    result = SweepResult(name or getattr(scenario, "__name__", "scenario"), [])
    try:
        total: int | None = len(seeds)  # type: ignore[arg-type]
    except TypeError:
        total = None
    bar = Progress(f"sweep {result.name}", total, unit="seeds",
                   mode=False if quiet and progress is None else progress, after=PROGRESS_AFTER_S)

    def take(seed: Any, msg: str | None, out: str = "", crash: str = "", stop: str = "") -> bool:
        if out:
            sys.stdout.write(out)
        result.seeds.append(seed)
        if msg is not None:
            result.failures[seed] = msg
            if crash and len(result.failures) == 1:
                result.crash = crash
            if stop:
                result.stopped = stop
                return False
        return stop_after is None or len(result.failures) < stop_after

    def tick(done: int) -> None:
        bar.update(done, f"{len(result.failures)} failed" if result.failures else "")

    t0 = time.perf_counter()
    pool: _parallel.ProcessPool | None = None
    finished = False
    try:
        it = iter(seeds)
        if executor is not None and executor != "inline":
            result.ran_on = type(executor).__name__
            _parallel.run_parallel(executor.submit, _blob(scenario, strict=True), it, total,
                                   _parallel.executor_width(executor), stop_after, take, tick)
        else:
            cores = 1 if executor == "inline" or _parallel.in_task() else _parallel.usable_cores()
            for seed in it:
                msg, crash, stop = _parallel.run_one(scenario, seed)
                if not take(seed, msg, "", crash, stop):
                    break
                tick(len(result.seeds))
                left = None if total is None else total - len(result.seeds)
                if cores < 2 or left == 0 or not _worth_a_pool(time.perf_counter() - t0, len(result.seeds), left):
                    continue
                blob = _blob(scenario, strict=False)
                if blob is None:
                    cores = 1                                      # cannot travel: stay here
                    continue
                width = cores if left is None else min(cores, left)
                pool = _parallel.ProcessPool.start(width)
                if pool is None:                                   # no processes here: stay here
                    cores = 1
                    continue
                result.ran_on = f"inline, then {width} processes"
                budget = None if stop_after is None else stop_after - len(result.failures)
                _parallel.run_parallel(pool.submit, blob, it, left, width, budget, take, tick)
                break
        finished = True
    finally:
        if pool is not None:
            pool.close(kill=not finished or (stop_after is not None and len(result.failures) >= stop_after))
        bar.close()
    result.seconds = time.perf_counter() - t0
    if not quiet:
        print(result)
    if not result.passed:
        raise SweepFailed(result, reported=not quiet)
    result.printed_in = None if quiet else _ipython_cell()
    return result


def _worth_a_pool(elapsed: float, done: int, left: int | None) -> bool:
    """Would the seeds left (None: unknown) take longer than ``POOL_WORTH_S`` here?"""
    if left is None:
        return elapsed > POOL_WORTH_S
    return elapsed / done * left > POOL_WORTH_S


def _blob(scenario: Callable[[Any], Any], strict: bool) -> bytes | None:
    """``scenario`` pickled for other processes; if it cannot be: None, or (``strict``)
    SweepError saying what to do."""
    from .runtime.pickling import dumps
    try:
        return dumps(scenario)
    except Exception as e:   # noqa: BLE001 -- dill raises many kinds (PicklingError, TypeError, ...)
        if not strict:
            return None
        raise SweepError(f"sweep: {getattr(scenario, '__name__', scenario)!r} cannot be sent to the executor's "
                         f"workers: {type(e).__name__}: {e}. A scenario must build what it uses (clusters, files, "
                         f"locks) inside itself; or run it with executor='inline'") from e


def _ipython_cell() -> int | None:
    """The execution count of the IPython cell running now (None outside IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "execution_count", None) if shell is not None else None
