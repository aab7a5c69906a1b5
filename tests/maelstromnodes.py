"""labkit Node classes speaking Maelstrom's workloads, for the harness tests (fast, in sim).

The same logic as the programs in tests/maelstrom/programs/, correct and broken:

* ``Echo``; ``UniqueIds`` (node id, incarnation, counter) and ``RestartingIds`` (node id and
  a counter that restarts at 0 when the node does -> duplicates after a restart);
* ``Gossip`` (broadcast: batched, acknowledged gossip to the topology's neighbours every
  ``interval`` ms; volatile: a killed node comes back empty and without its topology, so
  kill/restart faults make it lose values), ``DurableGossip`` (the same, kept in
  ``ctx.storage``: survives kill and restart), ``FlatGossip`` (ignores the topology:
  each node sends its clients' values straight to every other node, no relaying),
  ``LazyFlatGossip`` (the same, batched every second), ``NoGossip`` (never gossips -> lost);
* ``GSet`` and ``PNCounter``: state-based CRDTs gossiping their whole state;
* ``KVCounter`` (a g-counter on seq-kv, one key per node, synced reads) and
  ``ReadThenWriteCounter`` (read-then-write of one seq-kv key -> lost updates).

Imports nothing but labkit, so node processes unpickle them cheaply (see procnodes.py).
"""
from __future__ import annotations

import labkit


def program_peers(ctx) -> list[str]:
    """The other program nodes (``n0``, ``n1``, ...), not the services."""
    return [p for p in ctx.peers if p[:1] == "n" and p[1:].isdigit()]


class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        if msg.type == "echo":
            ctx.reply(msg, type="echo_ok", echo=msg.body["echo"])


class UniqueIds(labkit.Node):
    """Ids ``[node, incarnation, counter]``: unique across nodes and restarts."""

    def on_start(self, ctx):
        self.n = 0

    def on_message(self, ctx, msg):
        if msg.type == "generate":
            self.n += 1
            ctx.reply(msg, type="generate_ok", id=f"{ctx.id}-{ctx.incarnation}-{self.n}")


class RestartingIds(UniqueIds):
    """Broken: ``node-counter``, the counter restarting at 0 when the node restarts."""

    def on_message(self, ctx, msg):
        if msg.type == "generate":
            self.n += 1
            ctx.reply(msg, type="generate_ok", id=f"{ctx.id}-{self.n}")


class Gossip(labkit.Node):
    """Broadcast by acknowledged, batched gossip along the topology (fault tolerant: a
    value stays pending for a neighbour until it acknowledges it, and is sent again when
    unacknowledged for ``retry`` ms)."""

    interval = 200.0   # ms between gossip rounds; 0: send as soon as a value arrives
    retry = 1000.0     # ms before an unacknowledged value is sent again
    relay = True       # pass values learned from peers on to the other neighbours

    def on_start(self, ctx):
        self.values: set[int] = set()
        self.neighbours = self.initial_neighbours(ctx)
        self.pending: dict[str, dict[int, float]] = {n: {} for n in self.neighbours}   # value -> last sent
        ctx.set_timer("gossip", after=self.interval or self.retry)

    def initial_neighbours(self, ctx) -> list[str]:
        return []

    def learn(self, ctx, values, source=None):
        new = [v for v in values if v not in self.values]
        self.values.update(new)
        if not new or not (source is None or self.relay):
            return
        for n in self.neighbours:
            if n != source:
                if self.interval:
                    self.pending[n].update({v: float("-inf") for v in new})
                else:   # eager: send now, remember for retries
                    self.pending[n].update({v: ctx.now for v in new})
                    ctx.send(n, "gossip", messages=new)

    def on_timer(self, ctx, name):
        for n, vals in self.pending.items():
            due = sorted(v for v, t in vals.items() if t <= ctx.now - self.retry)
            if due:
                ctx.send(n, "gossip", messages=due)
                for v in due:
                    vals[v] = ctx.now
        ctx.set_timer("gossip", after=self.interval or self.retry)

    def on_message(self, ctx, msg):
        t = msg.type
        if t == "topology":
            self.set_topology(ctx, msg.body["topology"])
            ctx.reply(msg, type="topology_ok")
        elif t == "broadcast":
            self.learn(ctx, [msg.body["message"]])
            ctx.reply(msg, type="broadcast_ok")
        elif t == "read":
            ctx.reply(msg, type="read_ok", messages=sorted(self.values))
        elif t == "gossip":
            self.learn(ctx, msg.body["messages"], source=msg.src)
            ctx.send(msg.src, "gossip_ok", messages=msg.body["messages"])
        elif t == "gossip_ok":
            vals = self.pending.get(msg.src, {})
            for v in msg.body["messages"]:
                vals.pop(v, None)

    def set_topology(self, ctx, topology):
        self.neighbours = list(topology.get(ctx.id, []))
        self.pending = {n: self.pending.get(n, {}) for n in self.neighbours}


class DurableGossip(Gossip):
    """Gossip that survives kill and restart: its values and neighbours are kept in
    ctx.storage, and a restarted node offers every value to every neighbour again."""

    def on_start(self, ctx):
        super().on_start(ctx)
        self.values = set(ctx.storage.get("values", []))
        self.neighbours = list(ctx.storage.get("neighbours", self.neighbours))
        self.pending = {n: {v: float("-inf") for v in self.values} for n in self.neighbours}

    def learn(self, ctx, values, source=None):
        before = len(self.values)
        super().learn(ctx, values, source)
        if len(self.values) != before:
            ctx.storage["values"] = sorted(self.values)

    def set_topology(self, ctx, topology):
        super().set_topology(ctx, topology)
        ctx.storage["neighbours"] = self.neighbours


class FlatGossip(Gossip):
    """Ignores the topology: each value goes from the node a client gave it to straight to
    every other node (one hop), acknowledged; nothing is relayed."""

    interval = 0.0
    relay = False

    def initial_neighbours(self, ctx):
        return program_peers(ctx)

    def set_topology(self, ctx, topology):
        pass


class LazyFlatGossip(FlatGossip):
    """FlatGossip batched: one message per peer per second, carrying every pending value."""

    interval = 1000.0


class NoGossip(Gossip):
    """Broken: keeps what its clients broadcast to itself, tells nobody."""

    def learn(self, ctx, values, source=None):
        self.values.update(values)


class GSet(labkit.Node):
    """State-based grow-only set: every 200 ms each node sends its whole set to the others."""

    def on_start(self, ctx):
        self.elements: set = set()
        ctx.set_timer("sync", after=200.0)

    def on_timer(self, ctx, name):
        for p in program_peers(ctx):
            ctx.send(p, "replicate", value=sorted(self.elements))
        ctx.set_timer("sync", after=200.0)

    def on_message(self, ctx, msg):
        if msg.type == "add":
            self.elements.add(msg.body["element"])
            ctx.reply(msg, type="add_ok")
        elif msg.type == "read":
            ctx.reply(msg, type="read_ok", value=sorted(self.elements))
        elif msg.type == "replicate":
            self.elements.update(msg.body["value"])


class PNCounter(labkit.Node):
    """State-based PN-counter: per-node increment and decrement totals, merged by max."""

    def on_start(self, ctx):
        self.p: dict[str, int] = {}
        self.n: dict[str, int] = {}
        ctx.set_timer("sync", after=200.0)

    def on_timer(self, ctx, name):
        for peer in program_peers(ctx):
            ctx.send(peer, "replicate", p=self.p, n=self.n)
        ctx.set_timer("sync", after=200.0)

    def on_message(self, ctx, msg):
        if msg.type == "add":
            d = msg.body["delta"]
            side = self.p if d >= 0 else self.n
            side[ctx.id] = side.get(ctx.id, 0) + abs(d)
            ctx.reply(msg, type="add_ok")
        elif msg.type == "read":
            ctx.reply(msg, type="read_ok", value=sum(self.p.values()) - sum(self.n.values()))
        elif msg.type == "replicate":
            for mine, theirs in ((self.p, msg.body["p"]), (self.n, msg.body["n"])):
                for k, v in theirs.items():
                    mine[k] = max(mine.get(k, 0), v)


class KVCounter(labkit.Node):
    """A g-counter on seq-kv: each node owns key ``<node id>`` and writes its own running
    total there (kept in ctx.storage across restarts). A read first writes a fresh value
    to a sync key (a write brings this node's seq-kv session up to date), then sums all keys."""

    async def on_message(self, ctx, msg):
        try:
            await self.handle(ctx, msg)
        except labkit.RpcTimeout:
            ctx.reply(msg, type="error", code=0, text="seq-kv did not answer")

    async def handle(self, ctx, msg):
        if msg.type == "add":
            total = (ctx.storage.get("total") or 0) + msg.body["delta"]
            ctx.storage["total"] = total
            r = await ctx.rpc("seq-kv", "write", key=ctx.id, value=total)
            if r.type == "write_ok":
                ctx.reply(msg, type="add_ok")
            else:
                ctx.reply(msg, type="error", code=13, text=f"seq-kv write: {r.body}")
        elif msg.type == "read":
            self.sync = getattr(self, "sync", 0) + 1
            await ctx.rpc("seq-kv", "write", key=f"sync-{ctx.id}", value=f"{ctx.incarnation}-{self.sync}")
            total = 0
            for n in sorted(program_peers(ctx) + [ctx.id]):
                r = await ctx.rpc("seq-kv", "read", key=n)
                if r.type == "read_ok":
                    total += r.body["value"]
            ctx.reply(msg, type="read_ok", value=total)


class ReadThenWriteCounter(labkit.Node):
    """Broken: add = read key "counter" from seq-kv, then write back value + delta. Two
    concurrent adds read the same value and one of them is lost."""

    async def on_message(self, ctx, msg):
        try:
            await self.handle(ctx, msg)
        except labkit.RpcTimeout:
            ctx.reply(msg, type="error", code=0, text="seq-kv did not answer")

    async def handle(self, ctx, msg):
        if msg.type == "add":
            r = await ctx.rpc("seq-kv", "read", key="counter")
            value = r.body["value"] if r.type == "read_ok" else 0
            await ctx.rpc("seq-kv", "write", key="counter", value=value + msg.body["delta"])
            ctx.reply(msg, type="add_ok")
        elif msg.type == "read":
            r = await ctx.rpc("seq-kv", "read", key="counter")
            ctx.reply(msg, type="read_ok", value=r.body["value"] if r.type == "read_ok" else 0)
