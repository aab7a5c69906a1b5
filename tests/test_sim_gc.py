"""The simulator and the garbage collector: while a run lasts, what it keeps (the journal) is
frozen instead of walked again and again; afterwards the collector is as it was, and cycles a
handler made are collected (see SimRuntime._with_interrupts)."""
from __future__ import annotations

import gc
import weakref

import labkit


class Cyclic(labkit.Node):
    """Makes a reference cycle on every message, and remembers one of them weakly."""

    refs: list = []

    def on_start(self, ctx):
        if ctx.id == "n1":
            ctx.send("n2", "ping", k=0)

    def on_message(self, ctx, msg):
        a: dict = {}
        a["self"] = a
        holder = type("Holder", (), {})()
        holder.cycle = a
        holder.me = holder
        Cyclic.refs.append(weakref.ref(holder))
        if msg["k"] < 3_000:
            ctx.send(msg.src, "ping", k=msg["k"] + 1)


def test_a_run_leaves_the_collector_as_it_found_it_and_its_cycles_collectable():
    Cyclic.refs = []
    callbacks, threshold = list(gc.callbacks), gc.get_threshold()
    assert gc.get_freeze_count() == 0
    c = labkit.Cluster(Cyclic, n=2, runtime="sim", seed=1)
    c.run_for(1.0)
    assert len(c.journal.filter(kind="deliver")) == 3_001
    assert gc.callbacks == callbacks and gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert Cyclic.refs and all(r() is None for r in Cyclic.refs)   # every cycle was collected
    c.close()
