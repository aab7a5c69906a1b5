"""Request/reply round trip between two nodes (processes runtime, no faults) vs raw pyzmq.

labkit: node n1 gets a ``bench`` request from the notebook, then runs ``await ctx.rpc("n2",
"ping")`` N times in a loop, timing each with ``ctx.now``, and replies with the samples. The
notebook only triggers a round and collects the samples; what is timed is node to node.
The client round trip (``cluster.request`` to a node and back) is shown here too, and judged
against its own raw baseline in ``client_rtt.py``.

Baseline, same run, same message size: two plain Python processes with PAIR sockets over
ipc, blocking send/recv. Rounds alternate labkit / raw so both see the same noise.

Target: median labkit RTT / median raw RTT <= 2.0 (stretch 1.5).
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402
from labkit.message import encode  # noqa: E402

import _raw  # noqa: E402
from _common import cpu_seconds, emit, info, median, pct  # noqa: E402

ROUNDS = 9
N = 2000
WARMUP = 200
TARGET = 2.0
STRETCH = 1.5


class Pinger(labkit.Node):
    """n1: on a ``bench`` request, ping n2 with ``await ctx.rpc`` N times and reply with the times."""

    async def on_message(self, ctx, msg):
        if msg.type == "bench":
            n, warmup = msg.body["n"], msg.body["warmup"]
            samples = []
            for i in range(warmup + n):
                t0 = ctx.now
                await ctx.rpc("n2", "ping", timeout=5000, i=i)
                if i >= warmup:
                    samples.append(round((ctx.now - t0) * 1000.0, 1))   # us
            ctx.reply(msg, samples=samples)


class Ponger(labkit.Node):
    """n2: answer every ping (and the notebook's echo requests)."""

    def on_message(self, ctx, msg):
        if msg.type == "ping":
            ctx.reply(msg, "pong", i=msg.body["i"])
        else:
            ctx.reply(msg)


NODES = {"n1": Pinger, "n2": Ponger}


def wire_size() -> int:
    """Bytes of a typical labkit ping on the wire (what the raw baseline sends)."""
    return len(encode("n1", "n2", "ping", "n1.1.1234", None, 12345.678, {"i": 1234}).encode())


def labkit_round(cluster: labkit.Cluster) -> tuple[list[float], float, float]:
    """Samples (us), node CPU per round trip (us, both node processes) and the notebook
    process's CPU per round trip (us: its journal reading while it waits)."""
    pids = [s.pid for s in cluster.status().values()]
    cpu0 = sum(cpu_seconds(p) for p in pids)
    pcpu0 = time.process_time()
    reply = cluster.request("n1", "bench", timeout=120_000, n=N, warmup=WARMUP)
    pcpu = time.process_time() - pcpu0
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    return reply.body["samples"], cpu * 1e6 / (N + WARMUP), pcpu * 1e6 / (N + WARMUP)


def client_rtts(cluster: labkit.Cluster, n: int = 300) -> list[float]:
    out = []
    for i in range(n + 30):
        t0 = time.perf_counter()
        cluster.request("n2", "echo")
        if i >= 30:
            out.append((time.perf_counter() - t0) * 1e6)
    return out


def main() -> None:
    size = wire_size()
    lab_rounds: list[float] = []
    raw_rounds: list[float] = []
    lab_all: list[float] = []
    raw_all: list[float] = []
    lab_cpu: list[float] = []
    raw_cpu: list[float] = []
    parent_cpu: list[float] = []
    with labkit.Cluster(NODES, seed=1) as cluster:
        for r in range(ROUNDS):
            raw, rc = _raw.rtt(N, size, WARMUP)
            lab, lc, pc = labkit_round(cluster)
            raw_cpu.append(rc)
            lab_cpu.append(lc)
            parent_cpu.append(pc)
            raw_rounds.append(median(raw))
            lab_rounds.append(median(lab))
            raw_all += raw
            lab_all += lab
            info(f"round {r + 1}: labkit {lab_rounds[-1]:.1f} us  raw {raw_rounds[-1]:.1f} us  "
                 f"ratio {lab_rounds[-1] / raw_rounds[-1]:.2f}  | CPU/round trip: labkit nodes {lc:.0f} us "
                 f"(+ notebook, mostly reading the journal after the round, {pc:.0f} us), raw {rc:.0f} us")
        client = client_rtts(cluster)
        crashes = len(cluster.crashes) if hasattr(cluster, "crashes") else 0
    lab_med, raw_med = median(lab_rounds), median(raw_rounds)
    per_round = [a / b for a, b in zip(lab_rounds, raw_rounds)]
    ratio = median(per_round)   # paired: each labkit round beside its own raw round
    info(f"labkit node-to-node RTT median {lab_med:.1f} us (p90 {pct(lab_all, 0.9):.1f}); "
         f"raw pyzmq {raw_med:.1f} us (p90 {pct(raw_all, 0.9):.1f}); ratio {ratio:.2f} "
         f"(target <= {TARGET}, stretch {STRETCH}); client round trip {median(client):.1f} us")
    emit({
        "name": "rtt",
        "what": "node-to-node ctx.rpc round trip, processes runtime, no faults (median of per-round medians)",
        "message_bytes": size, "rounds": ROUNDS, "samples_per_round": N,
        "labkit_rtt_us": lab_med, "labkit_rtt_p90_us": pct(lab_all, 0.9),
        "baseline_rtt_us": raw_med, "baseline_rtt_p90_us": pct(raw_all, 0.9),
        "baseline": "raw pyzmq PAIR over ipc between two Python processes, blocking send/recv, same size",
        "per_round_ratio": per_round,
        "ratio": ratio, "ratio_of_medians": lab_med / raw_med,
        "ratio_note": "median of per-round ratios of median RTTs (each labkit round beside its raw round)", "target": f"<= {TARGET}", "stretch": f"<= {STRETCH}",
        "pass": ratio <= TARGET, "stretch_pass": ratio <= STRETCH,
        "labkit_cpu_us_per_rtt": median(lab_cpu), "baseline_cpu_us_per_rtt": median(raw_cpu),
        "notebook_cpu_us_per_rtt": median(parent_cpu),
        "cpu_note": "CPU (user+sys, all threads) of both node processes per round trip; notebook CPU is "
                    "mostly spent after each round, when request() reads the round's journal lines",
        "client_rtt_us": median(client),
        "client_rtt_note": "cluster.request from the notebook process to n2 and back (judged in client_rtt.py)",
        "crashes": crashes,
    })


if __name__ == "__main__":
    main()
