"""HTTP round trip between two service nodes (processes runtime, no faults) vs raw aiohttp.

labkit: node n1 gets a ``bench`` request from the notebook, then runs ``r = await
ctx.http.get("n2", "/ping")`` and ``await r.read()`` N times in a loop, timing each with
``ctx.now``; n2 is a ``labkit.Service`` whose route answers ``Response(text="pong")``. What is
timed is node to node: labkit's journal (both sides), network model, message ids and the
hand-driven coroutine, on top of a real aiohttp client and server.

Baseline, same run: an aiohttp ``web.Application`` server and an aiohttp ``ClientSession``
client in two plain Python processes (``_raw_http.py``), N sequential GETs of the same route
on a kept-alive connection. Rounds alternate labkit / raw so both see the same noise.

Target: median labkit RTT / median raw RTT <= 1.5.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402

from _common import HERE, PY, emit, info, median, pct, wait_for  # noqa: E402

ROUNDS = 7
N = 1000
WARMUP = 100
TARGET = 1.5


class Pinger(labkit.Node):
    async def on_message(self, ctx, msg):
        if msg.type == "bench":
            samples = []
            for i in range(msg.body["warmup"] + msg.body["n"]):
                t0 = ctx.now
                r = await ctx.http.get("n2", "/ping", timeout=5000)
                await r.read()
                if i >= msg.body["warmup"]:
                    samples.append(round((ctx.now - t0) * 1000.0, 1))   # us
            ctx.reply(msg, samples=samples)


class Ponger(labkit.Service):
    @labkit.get("/ping")
    async def ping(self, ctx, req):
        return labkit.Response(text="pong")


def raw_round(port: int) -> list[float]:
    import json
    out = subprocess.run([PY, os.path.join(HERE, "_raw_http.py"), "client", str(port), str(N), str(WARMUP)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.splitlines()[-1])["samples"]


def main() -> None:
    lab_rounds, raw_rounds, lab_all, raw_all = [], [], [], []
    d = tempfile.mkdtemp(prefix="labkit-bench-http-")
    portfile = os.path.join(d, "port")
    server = subprocess.Popen([PY, os.path.join(HERE, "_raw_http.py"), "server", portfile], stdin=subprocess.PIPE)
    try:
        if not wait_for(lambda: os.path.exists(portfile), 30):
            raise RuntimeError("the raw aiohttp server did not start")
        port = int(open(portfile).read())
        with labkit.Cluster({"n1": Pinger, "n2": Ponger}, seed=1) as cluster:
            cluster.request("n1", "bench", timeout=60_000, n=10, warmup=0)     # n1 loads aiohttp once
            for r in range(ROUNDS):
                raw = raw_round(port)
                lab = cluster.request("n1", "bench", timeout=300_000, n=N, warmup=WARMUP).body["samples"]
                raw_rounds.append(median(raw))
                lab_rounds.append(median(lab))
                raw_all += raw
                lab_all += lab
                info(f"round {r + 1}: labkit {lab_rounds[-1]:.1f} us  raw aiohttp {raw_rounds[-1]:.1f} us  "
                     f"ratio {lab_rounds[-1] / raw_rounds[-1]:.2f}")
            crashes = len(cluster.crashes)
    finally:
        server.stdin.close()
        server.wait(10)
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)
    per_round = [a / b for a, b in zip(lab_rounds, raw_rounds)]
    ratio = median(per_round)
    info(f"labkit HTTP RTT median {median(lab_rounds):.1f} us (p90 {pct(lab_all, 0.9):.1f}); raw aiohttp "
         f"{median(raw_rounds):.1f} us (p90 {pct(raw_all, 0.9):.1f}); ratio {ratio:.2f} (target <= {TARGET})")
    emit({
        "name": "http_rtt",
        "what": "node-to-node ctx.http.get round trip to a labkit.Service, processes runtime, no faults",
        "rounds": ROUNDS, "samples_per_round": N,
        "labkit_rtt_us": median(lab_rounds), "labkit_rtt_p90_us": pct(lab_all, 0.9),
        "baseline_rtt_us": median(raw_rounds), "baseline_rtt_p90_us": pct(raw_all, 0.9),
        "baseline": "aiohttp ClientSession -> aiohttp web.Application in two plain Python processes, keep-alive, "
                    "sequential GETs",
        "per_round_ratio": per_round, "ratio": ratio,
        "ratio_note": "median of per-round ratios of median RTTs", "target": f"<= {TARGET}",
        "pass": ratio <= TARGET, "crashes": crashes,
    })


if __name__ == "__main__":
    main()
