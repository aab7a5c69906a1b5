"""Simulator speed for HTTP: completed HTTP exchanges (request + handler + response) per wall
second.

Eight client nodes each keep a few ``await ctx.http.get("svc", "/stock/{item}")`` calls in
flight against one ``labkit.Service`` whose handler reads ``match_info`` and answers with
``json_response``; each client reads ``await r.json()``. Perfect network. The wall time of
``run_for`` is divided into the exchanges completed (responses delivered, counted from the
journal). Also reported, for context: the same clients doing ``await ctx.rpc`` message
exchanges with a plain node, in the same run (the ratio says what HTTP costs over a bare RPC).

Target (issue 10): >= 50,000 simulated HTTP exchanges per wall second, judged -- like
``sim_speed``'s targets -- against a bare heapq event loop timed in the same run: the issue's
figure assumes the ~2.5M events/s such a loop runs on a quiet core, so the target is >= 0.02
exchanges per loop event (50,000 / 2.5M). The absolute figure is printed too.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402

from _common import emit, info, median  # noqa: E402
from sim_speed import heapq_loop  # noqa: E402

CLIENTS = 8
IN_FLIGHT = 4
CALLS = 4000            # per client
REPS = 5
TARGET = 50_000          # exchanges/s at a bare heapq loop of ~2.5M events/s ...
TARGET_RATIO = 0.02      # ... judged as exchanges/s over the loop's events/s, same run


class Stock(labkit.Service):
    def on_start(self, ctx):
        self.stock = {"apple": 3, "pear": 5}

    @labkit.get("/stock/{item}")
    async def get_stock(self, ctx, req):
        return labkit.json_response({"count": self.stock.get(req.match_info["item"], 0)})

    def on_message(self, ctx, msg):         # the RPC baseline
        ctx.reply(msg, count=self.stock.get(msg.body["item"], 0))


class HttpShopper(labkit.Node):
    def on_start(self, ctx):
        self.left = CALLS
        for _ in range(IN_FLIGHT):
            ctx.set_timer(f"w{_}", after=0)

    async def on_timer(self, ctx, name):
        while self.left > 0:
            self.left -= 1
            r = await ctx.http.get("svc", "/stock/apple", timeout=1000)
            (await r.json())["count"]


class RpcShopper(labkit.Node):
    def on_start(self, ctx):
        self.left = CALLS
        for _ in range(IN_FLIGHT):
            ctx.set_timer(f"w{_}", after=0)

    async def on_timer(self, ctx, name):
        while self.left > 0:
            self.left -= 1
            r = await ctx.rpc("svc", "get", timeout=1000, item="apple")
            r.body["count"]


def measure(shopper: type) -> tuple[float, int]:
    nodes = {"svc": Stock, **{f"shop{i}": shopper for i in range(CLIENTS)}}
    with labkit.Cluster(nodes, runtime="sim", seed=1) as c:
        t0 = time.perf_counter()
        c.run_for(60)
        wall = time.perf_counter() - t0
        done = sum(1 for e in c.journal.filter(kind="deliver") if e.node != "svc")
    return wall, done


def main() -> None:
    http_rates, rpc_rates, base_rates = [], [], []
    for r in range(REPS):
        wall, n = measure(HttpShopper)
        assert n == CLIENTS * CALLS, f"only {n} of {CLIENTS * CALLS} exchanges completed"
        http_rates.append(n / wall)
        wall_r, m = measure(RpcShopper)
        rpc_rates.append(m / wall_r)
        base_rates.append(CLIENTS * CALLS * 4 / heapq_loop(CLIENTS * CALLS * 4))
        info(f"rep {r + 1}: HTTP {http_rates[-1]:,.0f} exchanges/s ({n:,} in {wall:.2f} s)   "
             f"RPC {rpc_rates[-1]:,.0f} exchanges/s")
    rate, base = median(http_rates), median(base_rates)
    info(f"median: HTTP {rate:,.0f} exchanges/s, {rate / base:.4f} per bare heapq loop event "
         f"({base:,.0f} events/s; target >= {TARGET:,}/s, judged as >= {TARGET_RATIO}); "
         f"RPC {median(rpc_rates):,.0f}/s; HTTP/RPC {rate / median(rpc_rates):.2f}")
    emit({
        "name": "sim_http",
        "what": "simulated HTTP exchanges (ctx.http.get -> route -> json_response -> r.json()) per wall second",
        "clients": CLIENTS, "in_flight_per_client": IN_FLIGHT, "exchanges_per_rep": CLIENTS * CALLS, "reps": REPS,
        "http_exchanges_per_s": rate, "rpc_exchanges_per_s": median(rpc_rates),
        "baseline_events_per_s": base,
        "baseline": "bare heapq event loop (sim_speed.heapq_loop), same run; RPC exchanges for context",
        "ratio": rate / base, "ratio_note": "HTTP exchanges/s over the bare loop's events/s (judged: >= TARGET_RATIO)",
        "http_over_rpc": rate / median(rpc_rates),
        "target": f">= {TARGET:,} exchanges/s (judged as ratio >= {TARGET_RATIO})", "pass": rate / base >= TARGET_RATIO,
    })


if __name__ == "__main__":
    main()
