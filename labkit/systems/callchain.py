"""A call chain under an open-loop workload: the bench of chapter 06 (fault tolerance).

    load --GET /price--> backend           (or load -> frontend -> catalog -> pricing)

``OpenLoopClient`` is a node that sends requests at Poisson arrival times (``RATE`` per
second) whatever happened to the earlier ones -- *open loop*, as real user traffic is (a
closed-loop client waits for each answer and so slows down with the system, hiding
overload; Schroeder et al., "Open Versus Closed: A Cautionary Tale", NSDI 2006). Each
request is one logical *operation*: it calls ``TARGET`` under the client's retry policy
(``policy(ctx)``) and optional breaker (``breaker(ctx)``), and journals
``ctx.note("op", t0=..., ok=..., latency=...)`` when it ends, so goodput is read from the
journal. A breaker's transitions are journaled as ``ctx.note("breaker", frm=, to=)``.

``Backend`` is a service with ``workers`` serving ``WORK`` ms each (capacity = workers x
1000 / WORK requests a second) and a bounded queue; ``Tier`` is a service that calls the
next hop under its own retry policy, for chains of layers.

``storm(client, seed)`` runs the chapter's metastable-failure scenario in the simulator and
returns its ``StormResult``: offered 80/s against capacity 100/s, a 5 s dip to 40/s
(``cluster.slow(backend, 2.5)``), a 1 s client timeout, then measures goodput per second
and the load amplification (calls sent / operations) from the journal.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import LabkitError
from ..http_errors import ClientError
from ..node import Node
from ..http_types import json_response
from ..service import Service, get
from .retry import RetryPolicy, call_with_retries


class Backend(Service):
    """``GET /price``: ``WORK`` ms of service time, ``workers`` at once, ``queue_limit`` waiting."""
    workers = 10
    queue_limit = 120
    WORK = 100.0

    @get("/price")
    async def price(self, ctx: Any, req: Any) -> Any:
        await ctx.work(self.WORK)
        return json_response({"price": 42})


class Tier(Service):
    """A middle layer: ``GET /price`` calls ``DOWNSTREAM`` under ``policy(ctx)`` (one retry
    policy per node, so a budget is shared by its calls); answers 200 with the price, or 503
    when the downstream call failed after its retries."""
    workers = 64
    queue_limit = 256
    DOWNSTREAM = "backend"
    TIMEOUT = 1000.0

    def policy(self, ctx: Any) -> RetryPolicy:
        return RetryPolicy(attempts=1)

    def on_start(self, ctx: Any) -> None:
        self._policy = self.policy(ctx)

    @get("/price")
    async def price(self, ctx: Any, req: Any) -> Any:
        try:
            r = await call_with_retries(ctx, lambda: ctx.http.get(self.DOWNSTREAM, "/price", timeout=self.TIMEOUT),
                                        self._policy)
        except ClientError:
            return json_response({"error": "downstream"}, status=503)
        return json_response(await r.json() if r.status == 200 else {"error": r.status},
                             status=200 if r.status == 200 else 503)


class OpenLoopClient(Node):
    """Poisson arrivals at ``RATE`` per second, from ``START`` ms until ``STOP`` ms (node clock),
    drawn from their own generator (seeded from ``ctx.rng`` at start), so the arrival times of one
    seed are the same whatever the client's retries draw: clients that differ only in policy see
    the same offered load. Each operation calls ``TARGET`` ``PATH`` with ``TIMEOUT`` ms per attempt under
    ``policy(ctx)`` and ``breaker(ctx)`` (override them), and journals ``op``."""
    TARGET = "backend"
    PATH = "/price"
    RATE = 80.0
    TIMEOUT = 1000.0
    START = 0.0
    STOP = 1e12

    def policy(self, ctx: Any) -> RetryPolicy:
        return RetryPolicy(attempts=1)

    def breaker(self, ctx: Any) -> Any:
        return None

    def on_start(self, ctx: Any) -> None:
        self._arrivals = random.Random(ctx.rng.getrandbits(64))   # first draw: the same for every policy
        self._policy = self.policy(ctx)
        self._breaker = self.breaker(ctx)
        if self._breaker is not None:
            self._breaker.on_transition = lambda t, a, b: ctx.note("breaker", frm=a, to=b)
        ctx.set_timer("arrive", after=max(self.START - ctx.now, 0.0) + self._arrivals.expovariate(self.RATE / 1000.0))

    async def call(self, ctx: Any) -> Any:
        """One operation's call (override to call differently); returns the response."""
        return await call_with_retries(ctx, lambda: ctx.http.get(self.TARGET, self.PATH, timeout=self.TIMEOUT),
                                       self._policy, breaker=self._breaker)

    async def on_timer(self, ctx: Any, name: str) -> None:
        nxt = ctx.now + self._arrivals.expovariate(self.RATE / 1000.0)
        if nxt < self.STOP:
            ctx.set_timer("arrive", after=nxt - ctx.now)
        t0 = ctx.now
        try:
            r = await self.call(ctx)
            ok = getattr(r, "status", None) == 200
        except (ClientError, LabkitError):
            ok = False
        ctx.note("op", t0=round(t0, 3), ok=ok, latency=round(ctx.now - t0, 3))


def ops(journal: Any, node: str = "load") -> list[dict]:
    """The ``op`` notes of ``node``: ``[{"t0": ms, "t1": ms, "ok": bool, "latency": ms}]``."""
    return [{"t0": e.data["t0"], "t1": e.t, "ok": e.data["ok"], "latency": e.data["latency"]}
            for e in journal.filter(kind="note", node=node) if e.data.get("what") == "op"]


def calls(journal: Any, src: str, dst: str) -> list[float]:
    """Times (ms) of the HTTP requests ``src`` sent to ``dst``, from the journal's sends."""
    out = []
    for e in journal.filter(kind="send", node=src):
        d = e.data
        if d.get("dst") == dst and " /" in d.get("type", ""):
            out.append(e.t)
    return out


def per_second(times: list[float], until_ms: float, bucket: float = 1000.0) -> list[float]:
    """Counts per second of ``times`` in buckets of ``bucket`` ms from 0 to ``until_ms``."""
    n = int(until_ms // bucket)
    out = [0.0] * n
    for t in times:
        i = int(t // bucket)
        if 0 <= i < n:
            out[i] += 1000.0 / bucket
    return out


@dataclass
class StormResult:
    """What ``storm`` measured; rates are per second, by second of arrival (``t0``)."""
    seed: int
    dip: tuple[float, float]            # ms
    until: float                        # ms
    offered: list[float]                # operations started per second
    goodput: list[float]                # of those, the ones that succeeded
    sent: list[float]                   # HTTP calls the client sent per second
    ops: int = 0
    calls: int = 0
    transitions: list = field(default_factory=list)   # breaker (t, from, to)
    call_times: list = field(default_factory=list)    # ms of every call the client sent

    @property
    def amplification(self) -> float:
        """Calls sent per operation over the whole run."""
        return self.calls / max(self.ops, 1)

    def after(self, start_ms: float, end_ms: float | None = None) -> tuple[float, float]:
        """(goodput, offered) summed over the whole seconds in [start_ms, end_ms)."""
        a, b = int(start_ms // 1000), int((end_ms if end_ms is not None else self.until) // 1000)
        return sum(self.goodput[a:b]), sum(self.offered[a:b])

    def recovered_at(self, fraction: float = 0.9) -> float | None:
        """The first second (ms) after the dip from which every second's goodput is at least
        ``fraction`` of its offered load; None if it never recovers."""
        start = int(self.dip[1] // 1000)
        for s in range(start, len(self.goodput)):
            if all(self.goodput[i] >= fraction * self.offered[i] for i in range(s, len(self.goodput))):
                return s * 1000.0
        return None


def storm(client: type, seed: int, *, backend: type = Backend, dip: tuple[float, float] = (5000.0, 10000.0),
          factor: float = 2.5, until: float = 20000.0, cluster_kw: dict | None = None) -> StormResult:
    """The metastable-failure scenario in the simulator: ``client`` (an ``OpenLoopClient``
    subclass) as node ``load`` against ``backend`` as node ``backend``; between ``dip`` ms the
    backend is ``slow``ed by ``factor``; arrivals stop 1 s before ``until`` so every operation
    ends. Returns a ``StormResult`` (counted from the journal)."""
    from ..cluster import Cluster
    stop = until - 1100.0
    c_cls = type(client.__name__, (client,), {"STOP": min(getattr(client, "STOP", stop), stop)})
    with Cluster({"backend": backend, "load": c_cls}, runtime="sim", seed=seed, **(cluster_kw or {})) as cluster:
        cluster.run_for(dip[0] / 1000.0)
        cluster.slow("backend", factor)
        cluster.run_for((dip[1] - dip[0]) / 1000.0)
        cluster.unslow("backend")
        cluster.run_for((until - dip[1]) / 1000.0)
        j = cluster.journal
        done = ops(j, "load")
        sent = calls(j, "load", "backend")
        trans = [(e.t, e.data["frm"], e.data["to"]) for e in j.filter(kind="note", node="load")
                 if e.data.get("what") == "breaker"]
    horizon = stop
    return StormResult(seed, dip, horizon, per_second([o["t0"] for o in done], horizon),
                       per_second([o["t0"] for o in done if o["ok"]], horizon), per_second(sent, horizon),
                       len(done), len(sent), trans, sent)


__all__ = ["Backend", "Tier", "OpenLoopClient", "ops", "calls", "per_second", "StormResult", "storm"]
