"""The notebook's client path (processes runtime, no faults) vs raw pyzmq, in the same run.

Round trip: the notebook calls ``cluster.request("n1", "echo")`` -- the very call a user
makes, with its checks, its journal events (the client's ``send``, the reply's ``deliver``)
and its wait -- N times, timing each with ``time.perf_counter``; n1 replies at once.
Baseline: two plain Python processes with PAIR sockets over ipc, blocking send/recv, a frame
the size of the request's wire form (``_raw.rtt``). Rounds alternate labkit / raw so both see
the same noise; the figure is the median of the per-round ratios of median round trips.
Target (issue 20): ratio <= 2.0.

Throughput: a ``client_send`` workload with its replies collected -- W requests in flight,
each reply's ``on_reply`` callback sends the next -- driven by ``cluster.run_for``; requests
per second whose reply came within the timed window. Baseline: ``_raw.mesh`` with two
processes and the same W messages in flight, each echoing every message it receives over
PUSH/PULL (a request and its reply are two deliveries). Reported, not judged (the issue asks
for the figure, with no target).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402
from labkit.message import encode_body, wire  # noqa: E402

import _raw  # noqa: E402
from _common import emit, info, median, pct  # noqa: E402

ROUNDS = 9
N = 2000
WARMUP = 200
TARGET = 2.0
WINDOW = 64             # client_send requests in flight
SECONDS = 1.0           # timed window of each throughput round
WARM_S = 0.2
TP_ROUNDS = 3


class Echo(labkit.Node):
    """Reply to every request at once, with nothing in the body."""

    def on_message(self, ctx, msg):
        ctx.reply(msg)


def wire_size() -> int:
    """Bytes of the request ``cluster.request("n1", "echo")`` puts on the wire."""
    return len(wire("client", "n1", "echo", "client.1.1234", None, 12345.678,
                    encode_body("client", "n1", "echo", {})).encode())


def client_round(cluster: labkit.Cluster, n: int, warmup: int) -> tuple[list[float], float]:
    """Round-trip samples (us) of ``n`` ``cluster.request`` calls, and the notebook process's
    CPU (us, all its threads) per request."""
    req = cluster.request
    clock = time.perf_counter
    for _ in range(warmup):
        req("n1", "echo")
    out = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = clock()
        req("n1", "echo")
        out.append((clock() - t0) * 1e6)
    return out, (time.process_time() - cpu0) * 1e6 / n


def client_send_rate(cluster: labkit.Cluster, window: int, seconds: float, warm: float) -> float:
    """Requests per second, replies collected, of a ``client_send`` workload keeping
    ``window`` requests in flight (each reply's callback sends the next)."""
    clock = time.monotonic
    start = clock()
    t_from, t_to = start + warm, start + warm + seconds
    count = [0]

    def on_reply(ev) -> None:
        t = clock()
        if t_from <= t <= t_to:
            count[0] += 1
        if t < t_to:
            cluster.client_send("n1", "echo", on_reply=on_reply)

    for _ in range(window):
        cluster.client_send("n1", "echo", on_reply=on_reply)
    cluster.run_for(warm + seconds + 0.05)
    cluster.run_for(0.2)          # the last replies in flight: collected, not counted
    return count[0] / seconds


def main() -> None:
    size = wire_size()
    lab_rounds: list[float] = []
    raw_rounds: list[float] = []
    lab_all: list[float] = []
    raw_all: list[float] = []
    nb_cpu: list[float] = []
    loads: list[float] = []
    tp_lab: list[float] = []
    tp_raw: list[float] = []
    with labkit.Cluster({"n1": Echo}, seed=1) as cluster:
        for r in range(ROUNDS):
            raw, _ = _raw.rtt(N, size, WARMUP)
            lab, cpu = client_round(cluster, N, WARMUP)
            raw_rounds.append(median(raw))
            lab_rounds.append(median(lab))
            raw_all += raw
            lab_all += lab
            nb_cpu.append(cpu)
            loads.append(os.getloadavg()[0])
            info(f"round {r + 1}: cluster.request {lab_rounds[-1]:.1f} us  raw {raw_rounds[-1]:.1f} us  "
                 f"ratio {lab_rounds[-1] / raw_rounds[-1]:.2f}  (notebook CPU {cpu:.0f} us/request; "
                 f"load {loads[-1]:.2f})")
        for r in range(TP_ROUNDS):
            raw_rate = _raw.mesh(2, WINDOW // 2, size, SECONDS, WARM_S) / 2   # two deliveries a pair
            lab_rate = client_send_rate(cluster, WINDOW, SECONDS, WARM_S)
            tp_raw.append(raw_rate)
            tp_lab.append(lab_rate)
            info(f"throughput round {r + 1}: client_send {lab_rate:,.0f} requests/s  raw {raw_rate:,.0f} "
                 f"request/reply pairs/s  ratio {lab_rate / raw_rate:.1%}")
        journal = cluster.journal
        sends = len(journal.filter(kind="send", node="client"))
        delivers = len(journal.filter(kind="deliver", node="client"))
    per_round = [a / b for a, b in zip(lab_rounds, raw_rounds)]
    ratio = median(per_round)
    tp_ratio = median([a / b for a, b in zip(tp_lab, tp_raw)])
    info(f"cluster.request RTT median {median(lab_rounds):.1f} us (p90 {pct(lab_all, 0.9):.1f}); raw pyzmq "
         f"{median(raw_rounds):.1f} us (p90 {pct(raw_all, 0.9):.1f}); ratio {ratio:.2f} (target <= {TARGET}); "
         f"client_send {median(tp_lab):,.0f} requests/s vs raw {median(tp_raw):,.0f} ({tp_ratio:.1%}); "
         f"journal: {sends:,} client sends, {delivers:,} client delivers")
    emit({
        "name": "client_rtt",
        "what": "cluster.request round trip (notebook -> node -> notebook), processes runtime, no faults "
                "(median of per-round medians)",
        "message_bytes": size, "rounds": ROUNDS, "samples_per_round": N,
        "labkit_rtt_us": median(lab_rounds), "labkit_rtt_p90_us": pct(lab_all, 0.9),
        "baseline_rtt_us": median(raw_rounds), "baseline_rtt_p90_us": pct(raw_all, 0.9),
        "baseline": "raw pyzmq PAIR over ipc between two Python processes, blocking send/recv, same size",
        "per_round_ratio": per_round, "ratio": ratio,
        "ratio_note": "median of per-round ratios of median RTTs (each labkit round beside its raw round)",
        "target": f"<= {TARGET}", "pass": ratio <= TARGET,
        "notebook_cpu_us_per_request": median(nb_cpu),
        "load_avg_1m": loads,
        "client_send_per_s": median(tp_lab), "baseline_pairs_per_s": median(tp_raw),
        "throughput_ratio": tp_ratio, "throughput_window": WINDOW,
        "throughput_note": "client_send with on_reply sending the next, W in flight, replies collected, vs "
                           "raw pyzmq PUSH/PULL echo between two processes with W in flight (not judged)",
        "journal_client_sends": sends, "journal_client_delivers": delivers,
    })


if __name__ == "__main__":
    main()
