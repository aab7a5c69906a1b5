"""Key-value nodes for the history and checker tests (Maelstrom lin-kv message shapes).

They live in a small module that imports nothing but labkit, so a node process unpickling a
class by reference imports almost nothing (see procnodes.py).
"""
from __future__ import annotations

import labkit


def apply_kv(store: dict, msg) -> tuple[str, dict]:
    """One kv request against ``store``: the reply's type and body."""
    t, key = msg.type, str(msg.get("key"))
    if t == "read":
        if key not in store:
            return "error", {"code": 20, "text": "key does not exist"}
        return "read_ok", {"value": store[key]}
    if t == "write":
        store[key] = msg["value"]
        return "write_ok", {}
    if t == "cas":
        if key not in store:
            return "error", {"code": 20, "text": "key does not exist"}
        if store[key] != msg["from"]:
            return "error", {"code": 22, "text": f"expected {msg['from']}, had {store[key]}"}
        store[key] = msg["to"]
        return "cas_ok", {}
    if t == "append":
        old = store.get(key, [])
        if not isinstance(old, list):
            return "error", {"code": 12, "text": f"cannot append to {old!r}"}
        store[key] = old + [msg["value"]]
        return "append_ok", {}
    return "error", {"code": 10, "text": f"unsupported {t}"}


class KVStore(labkit.Node):
    """A correct single-copy kv store: every request is applied and answered at once."""

    def on_start(self, ctx):
        self.store = {}

    def on_message(self, ctx, msg):
        typ, body = apply_kv(self.store, msg)
        ctx.reply(msg, typ, **body)


class LeaderKV(labkit.Node):
    """Correct and replicated in name only: n1 holds the data; other nodes forward to it."""

    def on_start(self, ctx):
        self.store = {}

    async def on_message(self, ctx, msg):
        if ctx.id == "n1":
            typ, body = apply_kv(self.store, msg)
            ctx.reply(msg, typ, **body)
            return
        try:
            answer = await ctx.rpc("n1", msg.type, timeout=300, **msg.body)
        except labkit.RpcTimeout:
            ctx.reply(msg, "error", code=0, text="leader unreachable")   # indefinite
            return
        ctx.reply(msg, answer.type, **answer.body)


class AsyncReplicaKV(labkit.Node):
    """Broken on purpose: each replica answers from its own copy and replicates writes
    afterwards, without waiting -- so across a partition, reads are stale."""

    def on_start(self, ctx):
        self.store = {}

    def on_message(self, ctx, msg):
        if msg.type == "replicate":
            self.store[msg["key"]] = msg["value"]
            ctx.report(value=dict(sorted(self.store.items())))
            return
        typ, body = apply_kv(self.store, msg)
        ctx.reply(msg, typ, **body)
        if msg.type in ("write", "cas", "append") and typ != "error":
            key = str(msg["key"])
            ctx.broadcast("replicate", key=key, value=self.store[key])
        ctx.report(value=dict(sorted(self.store.items())))


class SlowKV(KVStore):
    """A correct store that answers ``read`` only after ``delay`` ms (a late reply)."""

    delay = 300.0

    def on_start(self, ctx):
        super().on_start(ctx)
        self.waiting = []

    def on_message(self, ctx, msg):
        if msg.type == "read":
            self.waiting.append(msg)
            ctx.set_timer(f"late-{msg.id}", after=self.delay)
            return
        super().on_message(ctx, msg)

    def on_timer(self, ctx, name):
        msg = next(m for m in self.waiting if name == f"late-{m.id}")
        self.waiting.remove(msg)
        super().on_message(ctx, msg)


class GossipRegister(labkit.Node):
    """One register per node, last writer wins by (time, node), gossiped every 50 ms: replicas
    converge once the network heals. Reports ``value`` for the convergence checker."""

    def on_start(self, ctx):
        self.version, self.value = [0.0, ""], None
        ctx.set_timer("gossip", after=50)

    def on_timer(self, ctx, name):
        ctx.broadcast("sync", version=self.version, value=self.value)
        ctx.set_timer("gossip", after=50)

    def on_message(self, ctx, msg):
        if msg.type == "write":
            self._adopt(ctx, [ctx.now, ctx.id], msg["value"])
            ctx.reply(msg, "write_ok")
        elif msg.type == "read":
            ctx.reply(msg, "read_ok", value=self.value)
        elif msg.type == "sync" and msg["version"] > self.version:
            self._adopt(ctx, msg["version"], msg["value"])

    def _adopt(self, ctx, version, value):
        self.version, self.value = version, value
        ctx.report(value=value)
