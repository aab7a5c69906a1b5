"""Node classes for the capacity and bandwidth tests (work, workers, queues, slow nodes,
bandwidth-limited links). A small module that imports only labkit, so node processes that
unpickle these classes by reference import almost nothing (see procnodes.py)."""
from __future__ import annotations

import labkit


class Server(labkit.Node):
    """Answers ``job`` after ``await ctx.work(ms)`` (``ms`` from the body, default 10)."""

    workers = 1
    queue_limit = 64

    async def on_message(self, ctx, msg):
        started = ctx.now
        await ctx.work(msg.body.get("ms", 10.0))
        ctx.reply(msg, served=ctx.now - started)


class MM1Server(labkit.Node):
    """One worker, exponential service of mean ``MEAN_MS``; counts each job's time in the
    system (queueing + service) and sends nothing back (fewer events: faster runs)."""

    MEAN_MS = 10.0
    workers = 1
    queue_limit = 1_000_000

    async def on_message(self, ctx, msg):
        arrived = ctx.now
        await ctx.work(ctx.rng.expovariate(1.0 / self.MEAN_MS))
        ctx.count("sojourn_ms", ctx.now - arrived)
        ctx.count("served")


class Poisson(labkit.Node):
    """Sends ``job`` to ``dst`` at Poisson times of rate ``per_ms`` (exponential gaps)."""

    def __init__(self, per_ms: float = 0.05, dst: str = "server") -> None:
        self.per_ms, self.dst = per_ms, dst

    def on_start(self, ctx):
        ctx.set_timer("arrive", after=ctx.rng.expovariate(self.per_ms))

    def on_timer(self, ctx, name):
        ctx.send(self.dst, "job")
        ctx.set_timer("arrive", after=ctx.rng.expovariate(self.per_ms))


class Burst(labkit.Node):
    """On a client's ``burst``: sends ``n`` messages of ``pad`` characters to ``dst`` at once
    (a bandwidth-limited link then sends them one after another), and answers."""

    def on_message(self, ctx, msg):
        if msg.type == "burst":
            for i in range(msg.body["n"]):
                ctx.send(msg.body["dst"], "blob", i=i, pad="x" * msg.body["pad"])
            ctx.reply(msg)
