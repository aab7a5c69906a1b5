"""Run every benchmark in its own subprocess; print their JSON lines, then a short table.

Every ``benchmarks/NAME.py`` whose name does not start with ``_`` is a benchmark: the issue's
five first (rtt with client_rtt beside it, throughput, startup, memory, sim_speed), then any others by name.

    .venv/bin/python benchmarks/run_all.py            # all of them
    .venv/bin/python benchmarks/run_all.py rtt memory # some of them

Each benchmark's stderr (its human-readable detail) passes through to stderr. Exits 0 even
when targets are missed; a benchmark that fails to run gets a JSON line with "error".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: The issue's five benchmarks (client_rtt, rtt's client half, beside rtt), in this order; any
#: other ``benchmarks/NAME.py`` (not starting with ``_``) is found and run after them.
CORE = ["rtt", "client_rtt", "throughput", "startup", "memory", "sim_speed"]


def discover() -> list[str]:
    found = sorted(f[:-3] for f in os.listdir(HERE)
                   if f.endswith(".py") and not f.startswith("_") and f != "run_all.py")
    return [n for n in CORE if n in found] + [n for n in found if n not in CORE]
TIMEOUT_S = 900


def run(name: str) -> dict:
    print(f"== {name}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, os.path.join(HERE, f"{name}.py")], stdout=subprocess.PIPE,
                           stderr=None, text=True, timeout=TIMEOUT_S, cwd=os.path.dirname(HERE))
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {TIMEOUT_S} s", "pass": False}
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    if p.returncode != 0 or not lines:
        return {"name": name, "error": f"exit code {p.returncode}, {len(lines)} JSON lines", "pass": False}
    try:
        out = json.loads(lines[-1])
    except ValueError as e:
        return {"name": name, "error": f"bad JSON: {e}", "pass": False}
    out.setdefault("wall_s", round(time.monotonic() - t0, 1))
    return out


def _f(x, fmt: str = "{:,.1f}") -> str:
    if x is None:
        return ""
    return fmt.format(x) if isinstance(x, (int, float)) else str(x)


def row(r: dict) -> tuple[str, str, str, str, str, str]:
    n = r.get("name", "?")
    ok = "PASS" if r.get("pass") else "MISS"
    if "error" in r:
        return n, "error: " + r["error"], "", "", "", "ERROR"
    if n == "rtt":
        return (n, f"{_f(r['labkit_rtt_us'])} us", f"{_f(r['baseline_rtt_us'])} us",
                _f(r["ratio"], "{:.2f}x"), r["target"], ok + (" (stretch too)" if r.get("stretch_pass") else ""))
    if n == "client_rtt":
        return (n, f"{_f(r['labkit_rtt_us'])} us; client_send {_f(r['client_send_per_s'], '{:,.0f}')} req/s",
                f"{_f(r['baseline_rtt_us'])} us; {_f(r['baseline_pairs_per_s'], '{:,.0f}')} pairs/s",
                _f(r["ratio"], "{:.2f}x") + "; " + _f(r["throughput_ratio"], "{:.1%}"),
                r["target"] + "; throughput reported", ok)
    if n == "throughput":
        return (n, f"{_f(r['labkit_msgs_per_s'], '{:,.0f}')} msg/s", f"{_f(r['baseline_msgs_per_s'], '{:,.0f}')} msg/s",
                _f(r["ratio"], "{:.1%}"), r["target"], ok)
    if n == "startup":
        return (n, f"cold {_f(r['cold_ms'], '{:.0f}')} ms (warm {_f(r['warm_ms'], '{:.0f}')}; "
                   f"20 nodes cold {_f(r['n20_cold_ms'], '{:.0f}')})",
                f"{_f(r['baseline_ms'], '{:.0f}')} ms (20: {_f(r['n20_baseline_ms'], '{:.0f}')})",
                _f(r["ratio"], "{:.2f}x") + " cold", r["target"], ok)
    if n == "memory":
        return (n, f"node RSS {_f(r['node_rss_mb'])} MB; 20 nodes {_f(r['n20_total_rss_mb'], '{:,.0f}')} MB RSS "
                   f"({_f(r['n20_total_pss_mb'], '{:,.0f}')} PSS)",
                f"{_f(r['baseline_rss_mb'])} MB", _f(r["ratio"], "{:.2f}x"), "<= 60 MB; <= 1.5 GB", ok)
    if n == "sim_speed":
        return (n, f"{_f(r['msgs_per_s'], '{:,.0f}')} msg/s; hb minute {_f(r['heartbeat_60s_wall_ms'], '{:.0f}')} ms",
                f"heapq {_f(r['baseline_events_per_s'], '{:,.0f}')} ev/s",
                _f(r["ratio"], "{:.3f}x") + f"; hb {_f(r.get('heartbeat_ratio'), '{:.1f}x')}",
                ">= 0.2x (500k/s); hb <= 5x (60 ms)",
                ok + ("" if r.get("pass") else f" (msgs {'ok' if r.get('pass_msgs') else 'miss'}, "
                                                  f"hb {'ok' if r.get('pass_heartbeat') else 'miss'})"))
    if n == "journal":
        return (n, f"read {_f(r['read_s_per_1m'], '{:.2f}')} s, {_f(r['read_peak_mb_per_1m'], '{:.0f}')} MB "
                   f"per 1M events (load {_f(r['load_s_per_1m'], '{:.2f}')} s, "
                   f"{_f(r['load_peak_mb_per_1m'], '{:.0f}')} MB)",
                f"old reader {_f(r['baseline_s_per_1m'], '{:.1f}')} s, {_f(r['baseline_peak_mb_per_1m'], '{:,.0f}')} MB",
                _f(r["ratio"], "{:.3f}x") + " time, " + _f(r["memory_ratio"], "{:.3f}x") + " memory",
                "<= 3 s (ratio <= 0.31); <= 300 MB", ok)
    skip = {"ratio", "target", "wall_s", "pass"}
    nums = [(k, v) for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip]
    measured = next((f"{k}={_f(v, '{:,.4g}')}" for k, v in nums if not k.startswith("baseline")), "")
    base = next((f"{k}={_f(v, '{:,.4g}')}" for k, v in nums if k.startswith("baseline")), "")
    return n, measured, base, _f(r.get("ratio"), "{:.3g}"), str(r.get("target", "")), ok


def commit() -> str:
    """The labkit commit measured (``+dirty`` when labkit/ has uncommitted changes)."""
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "labkit"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(names: list[str]) -> None:
    rev = commit()
    results = [run(n) for n in names]
    for r in results:
        r.setdefault("labkit_commit", rev)
    for r in results:
        print(json.dumps(r))
    rows = [("benchmark", "labkit", "baseline", "ratio", "target", "result")] + [row(r) for r in results]
    widths = [max(len(x[i]) for x in rows) for i in range(6)]
    print(f"\nlabkit {rev}; cores: {os.cpu_count()}; load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for i, x in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    available = discover()
    chosen = sys.argv[1:] or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {available}")
    main(chosen)
