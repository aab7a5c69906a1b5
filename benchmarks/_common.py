"""Shared helpers for the benchmark scripts (not a benchmark itself).

Every benchmark prints exactly one JSON line on stdout -- ``{"name", ..., "ratio", "target",
"pass"}`` -- and human-readable detail on stderr. Figures are ratios against a baseline
measured in the same run, with medians over repetitions, because the machines are shared
and noisy.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Iterable[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[i]


def info(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def rnd(x: Any, nd: int = 3) -> Any:
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: rnd(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rnd(v, nd) for v in x]
    return x


def emit(result: dict) -> None:
    """Print the one JSON line of a benchmark on stdout."""
    sys.stdout.write(json.dumps(rnd(result), sort_keys=False) + "\n")
    sys.stdout.flush()


def run_helper(args: list[str], timeout: float = 120.0) -> dict:
    """Run ``python benchmarks/_raw.py ARGS`` (or any helper) and parse its last stdout line as JSON."""
    p = subprocess.run([PY, *args], capture_output=True, text=True, timeout=timeout, cwd=HERE)
    if p.returncode != 0:
        raise RuntimeError(f"helper {args} failed ({p.returncode}): {p.stderr[-2000:]}")
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1])


def wait_for(pred, timeout: float, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    try:
        import psutil
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except ImportError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_children(procs: list) -> None:
    """Close each child's stdin (its signal to leave), then wait; kill any still there after 10 s."""
    for p in procs:
        try:
            p.stdin.close()
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()
