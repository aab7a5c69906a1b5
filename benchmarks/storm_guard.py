"""The storm guard: memory of runaway nodes, and what the guard costs the simulator.

1. Processes: a node whose timer handler sends in a loop and never returns (130 MB/s without
   the guard). Measured: its peak RSS until the guard crashes it, and its journal file;
   baseline, same cluster: the peak RSS of a quiet node beside it. Ratio: runaway / quiet.
2. Simulator, exponential broadcast storm (every gossip answered by a broadcast) in 5 and 20
   node clusters: peak RSS (VmHWM) of a fresh Python process that runs the storm until the
   guard stops it; baseline, same run: the 5-node storm without the guard, stopped by a
   Ctrl-C after three times the guarded runs' wall time (an idle simulation is reported too).
3. Simulator speed with the guard on and off (5 nodes flooding each other), alternating,
   median of 5 rounds: ratio on / off.

Targets: (1) runaway peak RSS <= 4x the quiet node's, and crashed within 10 s; (2) guarded
storm peak RSS <= 0.7x the unguarded one's; (3) guard on / off >= 0.85 (the guard's counts are a few
integer operations per event; this machine's noise is about 10%).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402

from _common import PY, emit, info, median  # noqa: E402

MB = 1024 * 1024


class SendLoop(labkit.Node):
    def on_start(self, ctx):
        ctx.set_timer("go", after=50)

    def on_timer(self, ctx, name):
        while True:
            ctx.send(ctx.peers[0], "spam")


class Quiet(labkit.Node):
    pass


class Gossip(labkit.Node):
    def on_message(self, ctx, msg):
        if msg.type in ("go", "gossip"):
            ctx.broadcast("gossip", hop=1)


class Beat(labkit.Node):
    def on_start(self, ctx):
        ctx.set_timer("beat", after=50)

    def on_timer(self, ctx, name):
        ctx.broadcast("beat")
        ctx.set_timer("beat", after=50)


class Flood(labkit.Node):
    def on_start(self, ctx):
        self.left = 20_000
        for p in ctx.peers:
            for _ in range(4):
                ctx.send(p, "m")

    def on_message(self, ctx, msg):
        if self.left > 0:
            self.left -= 1
            ctx.send(msg.src, "m")


def runaway_node() -> dict:
    import psutil
    with labkit.Cluster({"n1": SendLoop(), "n2": Quiet()}, runtime="processes", seed=1) as c:
        c._rt.echo_crashes = False
        st = c.status()
        p1, p2 = psutil.Process(st["n1"].pid), psutil.Process(st["n2"].pid)
        peak1 = peak2 = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            try:
                if p1.status() == psutil.STATUS_ZOMBIE:
                    break
                peak1 = max(peak1, p1.memory_info().rss)
                peak2 = max(peak2, p2.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.005)
        took = time.monotonic() - t0
        c.run_for(0.3)
        crashed = c.status()["n1"].state == "crashed"
        journal = sum(os.path.getsize(os.path.join(c._rt.dir, f)) for f in os.listdir(c._rt.dir)
                      if f.startswith("j-n1-"))
        reason = c.crashes[0].get("guard") if c.crashes else None
    return {"runaway_peak_mb": peak1 / MB, "quiet_peak_mb": peak2 / MB, "crashed_after_s": took,
            "crashed": crashed, "guard": reason, "journal_mb": journal / MB}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def storm_child(n: int, unguarded_s: float = 0.0) -> dict:
    """The storm with the guard, or (``unguarded_s`` > 0) without it, stopped by a Ctrl-C
    after that many wall seconds."""
    import _thread
    import threading
    c = labkit.Cluster(Gossip, n=n, runtime="sim", seed=1, guard=None if unguarded_s else "default")
    c._rt.echo_crashes = False
    c.client_send("n1", "go")
    if unguarded_s:
        threading.Timer(unguarded_s, _thread.interrupt_main).start()
    t0 = time.perf_counter()
    try:
        c.run_for(10)
        stopped = None
    except (labkit.StormError, KeyboardInterrupt) as e:
        stopped = f"{type(e).__name__}: {e}"[:120]
    return {"wall_s": time.perf_counter() - t0, "virtual_ms": c.now, "events": len(c.journal),
            "maxrss_mb": peak_rss_mb(), "stopped": stopped}


def baseline_child() -> dict:
    c = labkit.Cluster(Beat, n=5, runtime="sim", seed=1)
    c.run_for(1)
    return {"maxrss_mb": peak_rss_mb(), "events": len(c.journal)}


def child(*args: str) -> dict:
    p = subprocess.run([PY, os.path.abspath(__file__), *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def sim_speed(guard) -> float:
    c = labkit.Cluster(Flood, n=5, runtime="sim", seed=1, guard=guard)
    t = time.perf_counter()
    c.run_for(100)
    dt = time.perf_counter() - t
    n = len(c.journal.filter(kind="deliver"))
    c.close()
    return n / dt


def main() -> None:
    r1 = runaway_node()
    info(f"runaway processes node: peak RSS {r1['runaway_peak_mb']:.1f} MB (quiet node {r1['quiet_peak_mb']:.1f} MB), "
         f"crashed after {r1['crashed_after_s']:.2f} s by guard {r1['guard']}, journal {r1['journal_mb']:.1f} MB")
    base = child("--baseline")
    storms = {n: child("--storm", str(n)) for n in (5, 20)}
    for n, s in storms.items():
        info(f"sim storm, {n} nodes: stopped after {s['virtual_ms']:.2f} virtual ms, {s['wall_s']:.2f} s wall, "
             f"{s['events']:,} events, peak RSS {s['maxrss_mb']:.0f} MB (an idle simulation: "
             f"{base['maxrss_mb']:.0f} MB): {s['stopped']}")
    wall = max(s["wall_s"] for s in storms.values())
    loose = child("--storm", "5", str(round(3 * wall, 2)))
    info(f"the same storm without the guard, stopped by Ctrl-C after {loose['wall_s']:.1f} s: {loose['events']:,} "
         f"events, peak RSS {loose['maxrss_mb']:.0f} MB (and growing)")
    on, off = [], []
    for i in range(5):
        for g in ((None, "default") if i % 2 else ("default", None)):
            (on if g == "default" else off).append(sim_speed(g))
    speed_ratio = median(on) / median(off)
    info(f"sim speed, guard on {median(on):,.0f} / off {median(off):,.0f} delivered msgs/s = {speed_ratio:.3f}")
    node_ratio = r1["runaway_peak_mb"] / r1["quiet_peak_mb"]
    storm_ratio = max(s["maxrss_mb"] for s in storms.values()) / loose["maxrss_mb"]
    ok = (node_ratio <= 4 and r1["crashed"] and r1["crashed_after_s"] <= 10 and storm_ratio <= 0.7
          and all(s["stopped"] for s in storms.values()) and speed_ratio >= 0.85)
    emit({"name": "storm_guard",
          "what": "peak RSS of a processes node sending in a loop until the guard stops it; peak RSS of a "
                  "simulator broadcast storm until the guard stops it; simulator speed with the guard on/off",
          "runaway_peak_mb": r1["runaway_peak_mb"], "quiet_peak_mb": r1["quiet_peak_mb"],
          "runaway_crashed_after_s": r1["crashed_after_s"], "runaway_journal_mb": r1["journal_mb"],
          "storm_peak_mb": {str(n): s["maxrss_mb"] for n, s in storms.items()},
          "storm_idle_sim_mb": base["maxrss_mb"], "storm_unguarded_mb": loose["maxrss_mb"],
          "storm_unguarded_s": loose["wall_s"], "speed_on": median(on), "speed_off": median(off),
          "baseline": "a quiet node in the same cluster; the storm with guard=None for 3x the wall time "
                      "(Ctrl-C); the simulator with guard=None",
          "ratio": node_ratio, "storm_ratio": storm_ratio, "speed_ratio": speed_ratio,
          "target": "runaway/quiet RSS <= 4 and crashed within 10 s; guarded/unguarded storm RSS <= 0.7; "
                    "guard on/off speed >= 0.85",
          "pass": ok})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--storm"]:
        print(json.dumps(storm_child(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)))
    elif sys.argv[1:2] == ["--baseline"]:
        print(json.dumps(baseline_child()))
    else:
        main()
