"""Node classes for the robustness tests (tests/test_robust_hangs.py).

A module of its own that imports only labkit and the standard library, so a node process
unpickling a class by reference imports almost nothing (see procnodes.py).
"""
from __future__ import annotations

import sys
import time

import labkit


class Misbehaving(labkit.Node):
    """Does, on request, what a careless handler does."""

    def on_start(self, ctx):
        self.hellos = 0

    def on_message(self, ctx, msg):
        t = msg.type
        if t == "echo":
            ctx.reply(msg, me=ctx.id, hellos=self.hellos)
        elif t == "exit":
            sys.exit(3)
        elif t == "kbi":
            raise KeyboardInterrupt
        elif t == "genexit":
            raise GeneratorExit
        elif t == "sleep":                 # stuck in a handler for a while (no events)
            time.sleep(msg["s"])
            ctx.reply(msg)
        elif t == "to_self":
            ctx.send(ctx.id, "hello", n=msg["n"])
            ctx.reply(msg)
        elif t == "hello":
            self.hellos += 1
            ctx.log("hello", msg["n"], "from", msg.src)
        elif t == "bad_timer":
            ctx.set_timer("t", after=float(msg["after"]))
        elif t == "crash_later":
            ctx.set_timer("die", after=msg["ms"])
        elif t == "now":
            ctx.reply(msg, now=ctx.now)

    def on_timer(self, ctx, name):
        if name == "die":
            raise RuntimeError("crashed by its own timer")


class SendLoop(labkit.Node):
    """A timer handler that sends without end and never returns."""

    def on_start(self, ctx):
        ctx.set_timer("go", after=20)

    def on_timer(self, ctx, name):
        i = 0
        while True:
            try:
                ctx.send(ctx.peers[0], "spam", i=i)
            except Exception:      # a careless handler swallowing errors must not escape the guard
                pass
            i += 1

    def on_message(self, ctx, msg):
        if msg.type == "echo":
            ctx.reply(msg)


class SwallowingLoop(labkit.Node):
    """Sends without end and swallows everything, BaseException included."""

    def on_start(self, ctx):
        ctx.set_timer("go", after=20)

    def on_timer(self, ctx, name):
        while True:
            try:
                ctx.send(ctx.peers[0], "spam")
            except BaseException:
                pass

    def on_message(self, ctx, msg):
        if msg.type == "echo":
            ctx.reply(msg)


class ZeroTimer(labkit.Node):
    """Re-arms a 0 ms timer from its own handler, without end."""

    def on_start(self, ctx):
        ctx.set_timer("spin", after=0)

    def on_timer(self, ctx, name):
        ctx.set_timer("spin", after=0)

    def on_message(self, ctx, msg):
        if msg.type == "echo":
            ctx.reply(msg)


class Quiet(labkit.Node):
    """Answers echo; nothing else."""

    def on_message(self, ctx, msg):
        if msg.type == "echo":
            ctx.reply(msg, me=ctx.id)
        elif msg.type == "poke":
            ctx.send(msg["to"], "ping")
            ctx.reply(msg)
        elif msg.type == "ping":
            ctx.count("pings")
