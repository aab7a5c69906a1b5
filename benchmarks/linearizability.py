"""Linearizability checker speed and memory on a mixed corpus, against the previous search.

Corpus (all from ``labkit.checkers.synthetic``, deterministic by seed):

* etcd-style single cas-registers (``etcd_register_history``): 5, 10 and 15 clients, 300 ops
  over 10 values, 5% info, seeds 0 and 1, valid and with one stale read; plus one read of a
  value never written;
* kv histories like MIT 6.824's kvraft tests (Porcupine's kv data), 2,000 ops on 10 keys,
  get/put/append with 5% slow ops (50-400 ms), 1, 10 and 50 clients, Porcupine's string
  style and Jepsen's list-append style, valid and with one stale get (``violation=True``);
* the 1,000-op Maelstrom lin-kv shaped history this benchmark used before.

For each history: seconds, verdict and configurations of ``check_linearizable`` (the default
search) and of ``algorithm="reference"`` (the search before this change), each capped at
``CAP_S``; then the peak memory of each in a second run under tracemalloc (which slows Python
several times, so it is not timed; its cap is ``TRACED_CAP_S``). Figures: total seconds of each (an unknown counts
its cap), the ratio, the slowest 50-client kv history (target < 2 s), and whether every
history was decided with the right verdict.
"""
from __future__ import annotations

import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from labkit.checkers import check_linearizable, synthetic_history  # noqa: E402
from labkit.checkers.synthetic import contended_kv_history, etcd_register_history  # noqa: E402
from labkit.history import History, Op  # noqa: E402

from _common import emit, info  # noqa: E402

CAP_S = 10.0
TRACED_CAP_S = 10.0
TARGET_50_S = 2.0


def _never_written(h: History) -> History:
    reads = [o for o in h if o.type == "ok" and o.f == "read"]
    target = reads[len(reads) // 2]
    return History(Op(o.process, o.type, o.f, 99, o.key, o.time) if o is target else o for o in h)


def corpus() -> list[tuple[str, str, History, bool]]:
    out = []
    for c in (5, 10, 15):
        for seed in (0, 1):
            out.append((f"etcd-register c{c} s{seed}", "cas-register", etcd_register_history(clients=c, seed=seed), True))
            out.append((f"etcd-register c{c} s{seed} stale", "cas-register",
                        etcd_register_history(clients=c, seed=seed, violation=True), False))
    out.append(("etcd-register c15 never-written", "cas-register",
                _never_written(etcd_register_history(clients=15, seed=2)), False))
    for style in ("porcupine", "list-append"):
        for c in (1, 10, 50):
            for bad in (False, True):
                h = contended_kv_history(clients=c, style=style, violation=bad, seed=1)
                out.append((f"kv-{style} c{c}{' bad' if bad else ''}", "kv", h, not bad))
    out.append(("lin-kv 1000", "kv", synthetic_history("kv", ops=1000, clients=10, keys=10, per_key=100, values=5,
                                                        info=0.05, seed=0), True))
    return out


def run(h: History, model: str, algorithm: str) -> tuple[float, object, float]:
    t0 = time.perf_counter()
    v = check_linearizable(h, model, timeout=CAP_S, algorithm=algorithm, progress=False)
    dt = time.perf_counter() - t0
    tracemalloc.start()
    check_linearizable(h, model, timeout=TRACED_CAP_S, algorithm=algorithm, progress=False)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return dt, v, peak


def main() -> None:
    rows = []
    totals = {"fast": 0.0, "reference": 0.0}
    right = True
    slowest50 = 0.0
    for name, model, h, want in corpus():
        row = {"name": name}
        for alg in ("fast", "reference"):
            dt, v, peak = run(h, model, alg)
            totals[alg] += dt
            row[alg] = (dt, v.outcome, v.details["configs"], peak)
            if alg == "fast":
                right &= v.valid is want
                if "c50" in name:
                    slowest50 = max(slowest50, dt)
        f, r = row["fast"], row["reference"]
        info(f"{name:34s} new {f[0]:6.2f} s {f[1]:7s} {f[2]:>9,} cfg {f[3]:6.1f} MB | "
             f"old {r[0]:6.2f} s {r[1]:7s} {r[2]:>9,} cfg {r[3]:6.1f} MB")
        rows.append(row)
    info(f"total: new {totals['fast']:.2f} s, old {totals['reference']:.2f} s "
         f"(ratio old/new {totals['reference'] / totals['fast']:.2f}); slowest 50-client kv {slowest50:.2f} s")
    emit({"name": "linearizability", "seconds": totals["fast"], "reference_seconds": totals["reference"],
          "speedup": totals["reference"] / totals["fast"], "slowest_50_client_s": slowest50,
          "target_50_client_s": TARGET_50_S, "all_decided_right": right,
          "pass": right and slowest50 <= TARGET_50_S,
          "histories": [{"name": r["name"], "new": r["fast"], "old": r["reference"]} for r in rows]})


if __name__ == "__main__":
    main()
