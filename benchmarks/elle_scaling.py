"""Elle checker scaling: is ``labkit.checkers.elle`` roughly linear in history length?

Histories shaped like Maelstrom's txn-list-append and txn-rw-register runs (the workloads'
own generators: 3 live keys, 1-4 micro-ops, 16 writes per key before it rotates), executed
by 10 concurrent clients against an atomic store (each txn takes effect at one instant
between its invocation and completion; 5% time out), checked as strict-serializable.
Figures: seconds for N and 4N transactions (the fastest of 7 runs of each, interleaved: the
machine is shared, and interference only ever adds time), and the ratio of time per txn at
4N to time per txn at N. Target: < 2 (linear would be 1; quadratic 4).
"""
from __future__ import annotations

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from labkit.checkers.elle import check_txn  # noqa: E402
from labkit.history import History, Op  # noqa: E402
from labkit.maelstrom.workloads import get  # noqa: E402

from _common import emit, info  # noqa: E402

N = 2000
TARGET = 2.0


def history(workload: str, n: int, seed: int = 1) -> History:
    rng = random.Random(seed)
    wl = get(workload)
    state: dict = {}
    ops: list[Op] = []
    open_: dict[int, list] = {}
    procs = list(range(10))
    started = 0
    while started < n or open_:
        i = rng.randrange(len(procs))
        p = procs[i]
        if p not in open_:
            if started < n:
                mops = wl.invoke(rng, p).value
                ops.append(Op(p, "invoke", "txn", mops))
                open_[p] = [mops, None]
                started += 1
            continue
        mops, done = open_[p]
        if done is None:
            out = []
            for f, k, v in mops:
                if f == "r":
                    cur = state.get(k)
                    out.append([f, k, list(cur) if isinstance(cur, list) else cur])
                elif f == "append":
                    state[k] = list(state.get(k) or []) + [v]
                    out.append([f, k, v])
                else:
                    state[k] = v
                    out.append([f, k, v])
            open_[p][1] = out
            continue
        del open_[p]
        if rng.random() < 0.05:
            ops.append(Op(p, "info", "txn", mops, error="timeout"))
            procs[i] = max(procs) + 1
        else:
            ops.append(Op(p, "ok", "txn", done))
    return History(ops)


def timed(small: History, big: History, workload: str, reps: int = 7) -> tuple[float, float]:
    """Fastest of ``reps`` runs of each, small and big interleaved so that both see the same
    load from whatever else runs on the machine."""
    ts: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(reps):
        for i, h in ((0, small), (1, big)):
            t0 = time.perf_counter()
            v = check_txn(h, workload, "strict-serializable")
            ts[i].append(time.perf_counter() - t0)
            assert v.valid is True, str(v)
    return min(ts[0]), min(ts[1])


def main() -> None:
    result: dict = {"name": "elle_scaling", "txns": [N, 4 * N]}
    ratios = []
    for wl in ("txn-list-append", "txn-rw-register"):
        small, big = timed(history(wl, N), history(wl, 4 * N), wl)
        ratio = (big / (4 * N)) / (small / N)
        info(f"{wl}: {N} txns {small:.3f} s, {4 * N} txns {big:.3f} s; per-txn ratio {ratio:.2f}")
        result[wl] = {"seconds": [round(small, 4), round(big, 4)], "ratio": round(ratio, 2)}
        ratios.append(ratio)
    result.update(ratio=round(max(ratios), 2), target=TARGET, **{"pass": max(ratios) < TARGET})
    emit(result)


if __name__ == "__main__":
    main()
