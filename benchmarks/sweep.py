"""A Raft stage check swept serially and on every core, in the same run (issue 20).

The check is chapter 05's: the setup cells of ``solutions/05_raft.ipynb`` run in this script's
``__main__``, as a notebook's cells do (so the node classes and the scenario travel to the
workers by value, as they do from a notebook), then ``sweep(<stage>_scenario, seeds=SEEDS)``
runs ``ROUNDS`` times with ``executor="inline"`` (serial) and ``ROUNDS`` times with the
default executor (this process first, then a pool of the usable cores), alternating. The
first parallel round also starts the pool's forkserver (once per session); it is reported
apart. Every round must give the same failures.

Baseline, same run: the machine's parallelism right now -- a fixed pure-Python loop run in
CORES processes at once against one, before each round -- since the machine is shared and a
speedup can only be judged against what the cores gave at the time. The ratio is the median
of per-round ratios (each parallel sweep beside its serial one).

    python benchmarks/sweep.py [election|replication|persistence|kv] [ROUNDS]

Target (issue 20): >= 1.8x on 2 cores for a 200-seed stage check.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import emit, info, median  # noqa: E402

NOTEBOOK = os.path.join(HERE, os.pardir, "solutions", "05_raft.ipynb")
STAGES = ("election", "replication", "persistence", "kv")
TARGET = 1.8


def load_notebook() -> None:
    """Run the notebook's setup cells (not those tagged ``check``) in ``__main__``."""
    with open(NOTEBOOK) as f:
        nb = json.load(f)
    ns = sys.modules["__main__"].__dict__
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "check" not in c["metadata"].get("tags", [])]
    with contextlib.redirect_stdout(io.StringIO()):
        for i, c in enumerate(cells):
            exec(compile("".join(c["source"]), f"05_raft.ipynb[{i}]", "exec"), ns)


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def machine_parallelism(cores: int, n: int = 3_000_000) -> float:
    """Speedup of ``cores`` processes each running ``_spin(n)`` against one running it."""
    ctx = mp.get_context("fork")
    t = time.perf_counter()
    _spin(n)
    one = time.perf_counter() - t
    procs = [ctx.Process(target=_spin, args=(n,)) for _ in range(cores)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return cores * one / (time.perf_counter() - t)


def main() -> None:
    stage = sys.argv[1] if len(sys.argv) > 1 else "election"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    if stage not in STAGES:
        sys.exit(f"stage is one of {STAGES}, not {stage!r}")
    load_notebook()
    from labkit import _parallel
    from labkit.sweep import SweepFailed, sweep
    ns = sys.modules["__main__"].__dict__
    scenario, seeds = ns[f"{stage}_scenario"], ns["SEEDS"]
    cores = _parallel.usable_cores()

    def once(executor):
        t = time.perf_counter()
        try:
            r = sweep(scenario, seeds=seeds, executor=executor, quiet=True, progress=False)
        except SweepFailed as e:
            r = e.result
        return time.perf_counter() - t, r

    serial, parallel, outcomes, ran_on = [], [], set(), set()
    machine = []
    for i in range(rounds):
        machine.append(machine_parallelism(cores))
        for executor, times in (("inline", serial), (None, parallel)):
            s, r = once(executor)
            times.append(s)
            outcomes.add((tuple(r.seeds), tuple(r.failures.items())))
            ran_on.add(r.ran_on) if executor is None else None
            info(f"round {i + 1}: {executor or 'default'}: {s:.2f} s ({r.ran_on}; {len(r.failures)} failures)")
    per_round = [a / b for a, b in zip(serial, parallel)]
    ratio = median(per_round)
    result = {"name": "sweep", "check": f"{stage}_scenario over {len(seeds)} seeds (solutions/05_raft.ipynb)",
              "cores": cores, "serial_s": median(serial), "parallel_s": median(parallel),
              "first_parallel_s": parallel[0], "per_round_ratio": per_round, "ratio": ratio,
              "ratio_note": "median of per-round serial/parallel ratios (each parallel run beside its serial one)",
              "best_ratio": max(per_round), "machine_parallelism": median(machine),
              "machine_per_round": machine, "ran_on": sorted(ran_on),
              "identical": len(outcomes) == 1, "target": TARGET,
              "pass": ratio >= TARGET and len(outcomes) == 1}
    emit(result)


if __name__ == "__main__":
    main()
