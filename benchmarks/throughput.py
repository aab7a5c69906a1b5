"""Delivered-message throughput: 5 nodes sending to each other, pipelined (processes runtime).

labkit: each node, shortly after it starts, sends a window of W messages round-robin to its
peers, and sends one new message for every message it receives; the notebook lets the
cluster run for a fixed wall time, closes it, and counts ``deliver`` events in the journal
inside a measuring window (after a warm-up), per second.

Baseline, same run, same message size, same pattern: 5 plain Python processes, each with a
PULL inbox over ipc and a PUSH socket to every peer, blocking recv, the same window. Also
reported for context (not judged): one PUSH process streaming to one PULL process.
Rounds alternate labkit / raw so both see the same noise.

Target: labkit delivered/s >= 10% of the raw mesh's.
"""
from __future__ import annotations

import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402
from labkit.message import encode  # noqa: E402

import _raw  # noqa: E402
from _common import cpu_seconds, emit, info, median  # noqa: E402

NODES = 5
WINDOW = 100           # messages in flight per node
ROUNDS = 5
WARM_S = 0.5           # after the first delivery, before measuring
MEASURE_S = 1.5
START_DELAY_MS = 200   # nodes start sending this long after they start
TARGET = 0.10


class Flood(labkit.Node):
    """Keep ``window`` messages in flight from this node, round-robin over the peers."""

    def __init__(self, window: int = WINDOW, run_ms: float = 1000.0) -> None:
        self.window = window
        self.run_ms = run_ms
        self.stop_at = float("inf")
        self.next = 0

    def on_start(self, ctx):
        ctx.set_timer("go", after=START_DELAY_MS)

    def on_timer(self, ctx, name):
        # Stop by ourselves: a cluster still flooding while the notebook reads the journal
        # (or closes the cluster, which reads it first) makes the journal grow as it is read.
        self.stop_at = ctx.now + self.run_ms
        peers = ctx.peers
        for k in range(self.window):
            ctx.send(peers[k % len(peers)], "m", k=k)

    def on_message(self, ctx, msg):
        if ctx.now < self.stop_at:
            peers = ctx.peers
            self.next = (self.next + 1) % len(peers)
            ctx.send(peers[self.next], "m", k=msg.body["k"])


def wire_size() -> int:
    return len(encode("n1", "n2", "m", "n1.1.123456", None, 12345.678, {"k": 42}).encode())


def labkit_round() -> dict:
    run_ms = (WARM_S + MEASURE_S + 0.25) * 1000
    with labkit.Cluster(Flood(WINDOW, run_ms), n=NODES, seed=7) as cluster:
        pids = [s.pid for s in cluster.status().values()]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        cluster.run_for(START_DELAY_MS / 1000 + run_ms / 1000 + 0.5)   # the flood is over by then
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        t0 = time.perf_counter()
        events = cluster.journal.events                    # reads the nodes' journal files
        read_s = time.perf_counter() - t0
    deliver = [e.t for e in events if e.kind == "deliver"]
    kinds = [e.kind for e in events]
    del events, cluster
    gc.collect()   # a closed cluster's journal is freed only by the cycle collector
    drops = sum(1 for k in kinds if k == "drop")
    crashes = sum(1 for k in kinds if k == "crash")
    n_events = len(kinds)
    if not deliver:
        return {"rate": 0.0, "drops": drops, "crashes": crashes, "cpu_us_per_msg": float("nan"),
                "read_us_per_event": float("nan"), "events": n_events}
    t_from = min(deliver) + WARM_S * 1000
    t_to = t_from + MEASURE_S * 1000
    n = sum(1 for t in deliver if t_from <= t < t_to)
    if max(deliver) < t_to:
        info(f"warning: labkit deliveries ended at {max(deliver):.0f} ms, before the window's end {t_to:.0f} ms")
    return {"rate": n / MEASURE_S, "drops": drops, "crashes": crashes,
            "cpu_us_per_msg": cpu * 1e6 / max(1, len(deliver)),
            "read_us_per_event": read_s * 1e6 / max(1, n_events), "events": n_events}


def main() -> None:
    size = wire_size()
    lab, raw, stream, cpu, read = [], [], [], [], []
    drops = crashes = 0
    for r in range(ROUNDS):
        raw.append(_raw.mesh(NODES, WINDOW, size, MEASURE_S, warm=WARM_S))
        res = labkit_round()
        lab.append(res["rate"])
        cpu.append(res["cpu_us_per_msg"])
        read.append(res["read_us_per_event"])
        drops += res["drops"]
        crashes += res["crashes"]
        stream.append(_raw.stream(size, MEASURE_S, warm=WARM_S))
        info(f"round {r + 1}: labkit {lab[-1]:,.0f} msg/s  raw mesh {raw[-1]:,.0f} msg/s  "
             f"ratio {lab[-1] / raw[-1]:.3f}  | raw 1->1 stream {stream[-1]:,.0f} msg/s  "
             f"| labkit node CPU {res['cpu_us_per_msg']:.0f} us/delivered msg "
             f"| reading the journal: {res['events']:,} events, {res['read_us_per_event']:.1f} us each")
    lab_med, raw_med, stream_med = median(lab), median(raw), median(stream)
    per_round = [a / b for a, b in zip(lab, raw)]
    ratio = median(per_round)   # paired: each labkit round beside its own raw round
    info(f"labkit {lab_med:,.0f} delivered/s vs raw pyzmq mesh {raw_med:,.0f}/s: median round ratio {ratio:.1%} "
         f"(target >= {TARGET:.0%}); vs raw 1->1 stream {stream_med:,.0f}/s: {lab_med / stream_med:.1%}")
    emit({
        "name": "throughput",
        "what": f"deliver events per second in the journal, {NODES} nodes sending to each other "
                f"pipelined (window {WINDOW} per node), processes runtime",
        "message_bytes": size, "rounds": ROUNDS, "measure_s": MEASURE_S,
        "labkit_msgs_per_s": lab_med, "baseline_msgs_per_s": raw_med,
        "baseline": f"raw pyzmq, {NODES} Python processes, PULL inbox + PUSH to each peer over ipc, "
                    f"same window and size, blocking recv",
        "per_round_ratio": per_round,
        "ratio": ratio, "ratio_of_medians": lab_med / raw_med,
        "ratio_note": "median of per-round ratios (each labkit round measured beside its raw round)", "target": f">= {TARGET}", "pass": ratio >= TARGET,
        "stream_msgs_per_s": stream_med, "ratio_vs_stream": lab_med / stream_med,
        "stream_note": "one PUSH process -> one PULL process over ipc (context, not judged)",
        "labkit_node_cpu_us_per_msg": median(cpu),
        "labkit_node_cpu_note": "user+sys CPU of the 5 node processes (all threads) per delivered message",
        "journal_read_us_per_event": median(read),
        "journal_read_note": "notebook-side cost of cluster.journal reading the node journal files",
        "labkit_drops": drops, "labkit_crashes": crashes,
    })


if __name__ == "__main__":
    main()
