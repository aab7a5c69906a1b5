"""Linearizability checker speed: a 1,000-operation kv history, with and without Lowe's cache.

The history comes from a concurrent simulation of a correct key-value store
(``labkit.checkers.synthetic_history``): 10 clients, 10 keys, shaped like Maelstrom's lin-kv
workload -- all clients work on one key for 100 operations, then move to the next (Jepsen's
independent concurrent generator) -- reads, writes and cas (50/40/10 %, the mix of
``labkit.recorder.workload``) over 5 values, latencies of 1-10 ms, and 5% of operations
ending ``info`` (half of them took effect, maybe after the client gave up). It is
linearizable by construction.

Figure: median seconds of ``check_linearizable(history, "kv")`` over 5 runs; target <= 5 s.
Baseline, same run: the same search without the cache (``memo=False``), once, capped at
``NO_CACHE_CAP_S``; if it hits the cap, its time and the speed-up are lower bounds
(``no_cache_timed_out`` says so).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from labkit.checkers import check_linearizable, synthetic_history  # noqa: E402

from _common import emit, info, median  # noqa: E402

TARGET_S = 5.0
RUNS = 5
NO_CACHE_CAP_S = 60.0
HISTORY = dict(ops=1000, clients=10, keys=10, per_key=100, values=5, info=0.05, latency=(1.0, 10.0), gap=2.0,
               seed=0)


def main() -> None:
    h = synthetic_history("kv", **HISTORY)
    info(f"history: {h.summary()}")
    times, verdict = [], None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        verdict = check_linearizable(h, "kv", timeout=60.0)
        times.append(time.perf_counter() - t0)
    assert verdict is not None
    seconds = median(times)
    info(f"with cache: {verdict.outcome}, {verdict.details['configs']:,} configurations, "
         f"median {seconds * 1000:.1f} ms over {RUNS} runs")
    t0 = time.perf_counter()
    slow = check_linearizable(h, "kv", timeout=NO_CACHE_CAP_S, memo=False)
    no_cache = time.perf_counter() - t0
    timed_out = slow.valid is None
    info(f"without cache: {slow.outcome} after {no_cache:.2f} s"
         + (f" (capped at {NO_CACHE_CAP_S:g} s: a lower bound)" if timed_out else
            f", {slow.details['configs']:,} configurations"))
    emit({"name": "linearizability", "seconds": seconds, "target": TARGET_S,
          "pass": verdict.valid is True and seconds <= TARGET_S,
          "no_cache_seconds": no_cache, "speedup": no_cache / seconds if seconds > 0 else None,
          "no_cache_timed_out": timed_out, "ops": len(h.pairs()), "verdict": verdict.outcome,
          "no_cache_verdict": slow.outcome})


if __name__ == "__main__":
    main()
