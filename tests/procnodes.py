"""Node classes for the real-process tests.

They live in this small module (it imports nothing but labkit, which node processes have
preloaded) so that a node process unpickling its class by reference imports almost nothing;
a test module would drag pytest and psutil into every node process.
"""
from __future__ import annotations

import labkit


class Lab(labkit.Node):
    """Does what a client request asks, so one class serves most tests."""

    def on_start(self, ctx):
        self.volatile = "fresh"
        self.handled = 0

    def on_message(self, ctx, msg):
        self.handled += 1
        t = msg.type
        if t == "echo":
            ctx.reply(msg, echo=msg.get("x"), me=ctx.id)
        elif t == "put":
            self.volatile = msg["value"]
            ctx.storage["k"] = msg["value"]
            ctx.reply(msg)
        elif t == "get":
            ctx.reply(msg, volatile=self.volatile, durable=ctx.storage.get("k"),
                      incarnation=ctx.incarnation, handled=self.handled)
        elif t == "now":
            ctx.reply(msg, now=ctx.now)
        elif t == "boom":
            raise RuntimeError("boom in on_message")
        elif t == "blast":
            for i in range(msg["n"]):
                ctx.send(msg["to"], "ping", i=i)
            ctx.reply(msg)
        elif t == "relay":
            return self._relay(ctx, msg)
        elif t == "ping":
            ctx.count("pings")

    async def _relay(self, ctx, msg):
        answer = await ctx.rpc(msg["to"], "echo", timeout=5000, x=msg["x"])
        ctx.reply(msg, echo=answer["echo"], via=answer.src)


class Pinger(Lab):
    """Pings every peer every 20 ms."""

    def on_start(self, ctx):
        super().on_start(ctx)
        ctx.set_timer("tick", after=20)

    def on_timer(self, ctx, name):
        ctx.broadcast("ping")
        ctx.set_timer("tick", after=20)


class Counter(labkit.Node):
    """For the parity tests: counts pings, echoes, stores, fans out, logs, sets timers."""

    def on_start(self, ctx):
        self.pings = 0
        ctx.set_timer("hello", between=(5, 15))

    def on_timer(self, ctx, name):
        ctx.log("timer", name, "fired")

    def on_message(self, ctx, msg):
        t = msg.type
        if t == "ping":
            self.pings += 1
            ctx.count("pings")
            ctx.reply(msg, pings=self.pings, echo=msg.get("echo"))
        elif t == "put":
            ctx.storage[msg["key"]] = msg["value"]
            ctx.reply(msg)
        elif t == "get":
            ctx.reply(msg, value=ctx.storage.get(msg["key"]), pings=self.pings, incarnation=ctx.incarnation)
        elif t == "fanout":
            for p in ctx.peers:
                ctx.send(p, "note", n=msg["n"])
            ctx.reply(msg)
        elif t == "note":
            ctx.log("note", msg["n"], "from", msg.src)
        elif t == "rand":
            ctx.reply(msg, r=[ctx.rng.random() for _ in range(3)])
        elif t == "boom":
            raise ValueError("boom: " + ctx.id)
