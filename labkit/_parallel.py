"""Running a sweep's seeds on other processes: labkit's own process pool, or any
``concurrent.futures.Executor`` (a Dask ``client.get_executor()`` included).

The scenario travels once per task as bytes pickled by ``labkit.runtime.pickling`` (dill: functions
and node classes defined in a notebook cell go by value, importable modules by name), with a
*chunk* of consecutive seeds; a worker unpickles it once (cached by digest) and returns, for
each seed it ran, ``(seed, failure message or None, what the seed printed)``. The caller
merges chunks in seed order, so the result does not depend on which worker finished first.

Chunks shrink as the sweep nears its end (guided scheduling: a third of what is left per
worker, at most ``MAX_CHUNK``), so a task's fixed cost -- a few hundred microseconds of
pickling and a round trip -- stays small beside its seeds, and no worker is left with a long
chunk at the end while the others idle.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import io
import math
import os
import signal
import sys
import threading
import traceback
from collections import deque
from typing import Any, Callable, Iterator

#: Largest number of seeds in one task.
MAX_CHUNK = 64
#: Tasks submitted ahead per worker (more are submitted as these finish).
AHEAD = 4
#: Seconds a new pool's first worker has to answer before the sweep runs inline instead.
START_TIMEOUT_S = 60.0

_task = threading.local()               # .active: this thread runs a sweep task (nested sweeps run inline)
_in_pool = False                        # this process is a worker of labkit's pool
_loaded: dict[bytes, Callable[[Any], Any]] = {}


#: Why a sweep stops at a seed whose failure is an unwritten exercise.
UNWRITTEN = ("stopped after this seed: NotImplementedError means an exercise is not written yet "
             "(every seed would fail the same way) -- write the code where it raises")


def describe(e: BaseException) -> str:
    """``Type: message (at file:line)`` for an exception and the innermost frame it came from."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def root_cause(e: BaseException) -> BaseException:
    """The first exception of ``e``'s chain (``raise ... from``, or raised while handling another)."""
    seen = {id(e)}
    while True:
        nxt = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
        if nxt is None or id(nxt) in seen:
            return e
        seen.add(id(nxt))
        e = nxt


def run_one(scenario: Callable[[Any], Any], seed: Any) -> tuple[str | None, str, str]:
    """Run one seed: ``(failure message or None, crash, stop)``.

    A crash is never a pass: a scenario that raises anything but ``AssertionError`` fails with
    its type, message, place and root cause. Node crashes during a failing seed are named in
    its message, and the first one's report (traceback included) is ``crash`` -- shown once by
    the sweep, not printed per seed (a seed that passes despite a crash prints it as usual).
    ``stop`` says why the sweep must stop here (an exercise stub's NotImplementedError), or "".
    """
    from .context import crash_report
    from .runtime.base import CRASH_SINKS
    crashes: list = []
    CRASH_SINKS.append(crashes)
    root: BaseException | None = None
    msg: str | None = None
    try:
        scenario(seed)
    except AssertionError as e:
        msg = str(e) or "an assertion failed (give your assert a message)"
    except Exception as e:   # noqa: BLE001 -- a crash is a failure, with where it happened and why
        root = root_cause(e)
        msg = describe(e) + (f"\n  caused by {describe(root)}" if root is not e else "")
    finally:
        CRASH_SINKS.remove(crashes)
    if msg is None:
        for ev in crashes:                      # a crash the scenario tolerated: shown as before
            print(crash_report(ev), file=sys.stderr)
        return None, "", ""
    crash = ""
    if crashes:
        ev = crashes[0]
        msg += (f"\n  a node crashed: {ev.node}, while {ev.get('cause')}: {ev.get('error')}"
                + (f" ({len(crashes)} crashes in this seed)" if len(crashes) > 1 else ""))
        crash = crash_report(ev)
    unwritten = isinstance(root, NotImplementedError) or any(
        str(ev.get("error") or "").startswith("NotImplementedError") for ev in crashes)
    return msg, crash, UNWRITTEN if unwritten else ""
def run_chunk(blob: bytes, seeds: list, stop_after: int | None) -> list[tuple[Any, str | None, str]]:
    """The task a worker runs: ``seeds`` in order, each one's output captured; stops once
    ``stop_after`` of them failed (a serial sweep would not run the rest either)."""
    key = hashlib.blake2b(blob, digest_size=16).digest()
    scenario = _loaded.get(key)
    if scenario is None:
        from .runtime.pickling import loads
        scenario = loads(blob)
        if len(_loaded) >= 8:
            _loaded.clear()
        _loaded[key] = scenario
    outer = getattr(_task, "active", False)
    _task.active = True
    try:
        return _run_seeds(scenario, seeds, stop_after)
    finally:
        _task.active = outer


def in_task() -> bool:
    """True inside a sweep's task (a worker of labkit's pool, or any executor's thread)."""
    return _in_pool or getattr(_task, "active", False)


def _run_seeds(scenario: Callable[[Any], Any], seeds: list, stop_after: int | None) -> list:
    rows = []
    failed = 0
    # A pool process runs tasks on its main thread: what a seed prints is captured and printed
    # by the sweep in seed order. Threads (a ThreadPoolExecutor, Dask's worker threads) share
    # sys.stdout, which cannot be swapped per thread: their output goes where it goes.
    capture = threading.current_thread() is threading.main_thread()
    for seed in seeds:
        if capture:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                msg, crash, stop = run_one(scenario, seed)
            rows.append((seed, msg, out.getvalue(), crash, stop))
        else:
            msg, crash, stop = run_one(scenario, seed)
            rows.append((seed, msg, "", crash, stop))
        if msg is not None:
            failed += 1
            if stop or (stop_after is not None and failed >= stop_after):
                break
    return rows


def usable_cores() -> int:
    """CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota (a
    container's or Binder's ``cpu.max`` / ``cpu.cfs_quota_us``), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    for path, period_path in (("/sys/fs/cgroup/cpu.max", None),
                              ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            with open(path) as f:
                parts = f.read().split()
            if period_path is not None:
                with open(period_path) as f:
                    parts.append(f.read().strip())
            quota, period = parts[0], parts[1]
            if quota not in ("max", "-1"):
                n = min(n, max(1, int(quota) // int(period)))
            break
        except (OSError, ValueError, IndexError):
            continue
    return max(1, n)


def executor_width(executor: cf.Executor) -> int:
    """How many tasks ``executor`` runs at once (for chunk sizes): a stdlib pool's
    ``_max_workers``, a Dask executor's total worker threads, else this machine's cores."""
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int) and n > 0:
        return n
    client = getattr(executor, "_client", None)          # distributed.cfexecutor.ClientExecutor
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:   # noqa: BLE001 -- a client that cannot answer: fall back
            pass
    return usable_cores()


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group (a terminal's, or Jupyter's interrupt): the
    # sweep in the notebook stops the pool itself, workers must not print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _in_pool
    _in_pool = True


class ProcessPool:
    """labkit's own pool for one sweep: ``workers`` processes started from a forkserver that
    has labkit imported (spawn where there is no forkserver), closed at the end of the sweep.
    ``__main__`` is hidden while workers start, so a script is not run again in each of them
    (the scenario travels by value instead)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["labkit.sweep", "labkit.checkers"])
        self.executor = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)

    @classmethod
    def start(cls, workers: int) -> "ProcessPool | None":
        """A pool whose first worker answered, or None where processes cannot start (a
        sandbox without semaphores or forkserver sockets): the sweep then stays inline."""
        pool = None
        try:
            pool = cls(workers)
            pool.submit(int).result(timeout=START_TIMEOUT_S)
            return pool
        except Exception:   # noqa: BLE001 -- whatever stops processes here, the seeds still run
            if pool is not None:
                pool.close(kill=True)
            return None

    def submit(self, fn: Callable, *args: Any) -> cf.Future:
        from ._interrupts import held_interrupts
        from .runtime.processes import _MainHidden
        with held_interrupts(), _MainHidden():   # workers start during submit: never half-started
            return self.executor.submit(fn, *args)

    def close(self, kill: bool = False) -> None:
        """Wait for the workers to exit; ``kill``: stop them at once (an interrupt, an error)."""
        from ._interrupts import held_interrupts
        with held_interrupts():               # a second Ctrl-C must not leave processes behind
            if kill:
                for p in list(getattr(self.executor, "_processes", {}).values()):
                    with contextlib.suppress(Exception):
                        p.terminate()
            self.executor.shutdown(wait=True, cancel_futures=True)


class SweepError(RuntimeError):
    """The executor failed (not the scenario): a worker died, a task could not be sent."""


def chunks(seeds: Iterator, remaining: int | None, width: int) -> Iterator[list]:
    """Consecutive seeds in chunks of guided size (see the module docstring)."""
    while True:
        if remaining is None:
            size = 4
        else:
            size = max(1, min(MAX_CHUNK, math.ceil(remaining / (3 * width))))
        chunk = [s for _, s in zip(range(size), seeds)]
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def broken(chunk: list, e: BaseException) -> SweepError:
    return SweepError(
        f"the executor failed (at seeds {chunk[0]!r}..{chunk[-1]!r}): {type(e).__name__}: {e}. "
        f"(A scenario that ends its process -- os._exit, a crash in C code, running out of memory -- "
        f"takes the worker with it; run sweep(..., executor='inline') on those seeds to see it.)")


def run_parallel(submit: Callable[..., cf.Future], blob: bytes, seeds: Iterator, remaining: int | None,
                 width: int, stop_after: int | None, take: Callable[..., bool],
                 tick: Callable[[int], None]) -> None:
    """Run ``seeds`` as chunks through ``submit`` and hand each seed's row to ``take`` in seed
    order; ``take`` returns False to stop (then nothing more is taken and the rest is
    cancelled). ``tick(n)`` reports seeds finished so far, in any order, for progress.
    ``stop_after`` goes to the workers (a chunk stops at that many failures of its own).

    On an interrupt or an executor failure every pending task is cancelled before the
    exception (SweepError for the executor's own) propagates."""
    pending: deque[tuple[list, cf.Future]] = deque()
    source = chunks(seeds, remaining, width)
    taken = 0

    def fill() -> None:
        while len(pending) < AHEAD * width:
            chunk = next(source, None)
            if chunk is None:
                return
            try:
                pending.append((chunk, submit(run_chunk, blob, chunk, stop_after)))
            except Exception as e:   # noqa: BLE001 -- e.g. BrokenProcessPool: a worker died
                raise broken(chunk, e) from e

    try:
        fill()
        while pending:
            chunk, fut = pending[0]
            try:
                rows = fut.result(timeout=0.25)
            except cf.TimeoutError:
                tick(taken + sum(len(c) for c, f in pending if f.done()))
                continue
            except (cf.CancelledError, Exception) as e:
                raise broken(chunk, e) from e
            pending.popleft()
            for row in rows:
                taken += 1
                if not take(*row):
                    return
            tick(taken)
            fill()
    finally:
        for _, fut in pending:
            fut.cancel()
