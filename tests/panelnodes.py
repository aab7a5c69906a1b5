"""Node classes for the panel tests (a module importing only labkit, like procnodes.py, so
node processes that unpickle a class by reference import almost nothing)."""
from __future__ import annotations

import labkit


class Reporter(labkit.Node):
    """n1 reports itself leader, the others followers; each counts ticks and received pings."""

    def on_start(self, ctx):
        ctx.report(role="leader" if ctx.id == "n1" else "follower")
        ctx.set_timer("tick", after=20)

    def on_timer(self, ctx, name):
        ctx.count("ticks")
        ctx.broadcast("ping")
        ctx.set_timer("tick", after=20)

    def on_message(self, ctx, msg):
        if msg.type == "ping":
            ctx.count("pings")
        elif msg.type == "echo":
            ctx.reply(msg, echo=msg.get("x"))
