"""Multi-master replication: every node accepts writes and streams them to the others.

Theory of operation. A write is applied where it lands, acknowledged at once, and pushed to
every other master; every ``GOSSIP_MS`` a master also sends its whole store to a random peer,
so a push lost to a partition is repaired later (MySQL group replication in multi-primary
mode, PostgreSQL BDR, CouchDB, and Dynamo's "always writeable" goal all accept writes on
several nodes). Two masters can therefore accept *concurrent* writes to one key -- neither
saw the other -- and must resolve the conflict when the writes meet:

* ``LWW = True``: keep the write with the larger ``[timestamp, node]``. The timestamp is the
  accepting master's clock (``ctx.now``), so a master whose clock runs ahead wins even
  against a write made later in real time; the loser is dropped silently, though its client
  got ``write_ok`` (Cassandra's and Riak's ``last_write_wins``; Jepsen's Riak analysis).
* ``LWW = False``: version vectors (``labkit.systems.versionvector``). Concurrent writes are both kept
  as *siblings*; a read returns all of them with their merged ``context``, and a client that
  writes back with that context (after merging the values -- by hand, or with a CRDT, chapter
  02) replaces them.

Messages: ``read {key}`` -> ``read_ok {value, values, context}`` (``value``: the one value, or
the sorted sibling values); ``write {key, value, context?}`` -> ``write_ok {context}``;
internal ``push {key, versions}`` and ``sync {store}``. Notes: ``state {value}`` -- the sorted
``[key, values]`` pairs this master would answer, for ``labkit.checkers.convergence``.
"""
from __future__ import annotations

from typing import Any

from ..message import Message
from ..node import Node
from .versionvector import VersionVector, merged_context, reconcile

__all__ = ["MultiMaster"]


class MultiMaster(Node):
    """A master that accepts reads and writes locally; see the module docstring."""

    LWW: bool = False
    GOSSIP_MS: tuple[float, float] = (50.0, 100.0)

    def on_start(self, ctx: Any) -> None:
        self.store: dict[str, list] = {}
        ctx.set_timer("gossip", between=self.GOSSIP_MS)

    def values(self, key: str) -> list:
        return sorted((v["value"] for v in self.store.get(key, [])), key=repr)

    def apply(self, ctx: Any, key: str, versions: list) -> None:
        old = self.store.get(key, [])
        new = reconcile(old + list(versions), lww=self.LWW)
        if new != old:
            self.store[key] = new
            ctx.note("state", value=sorted([k, self.values(k)] for k in self.store))

    def on_message(self, ctx: Any, msg: Message) -> None:
        if msg.type == "write":
            key = str(msg["key"])
            seen = msg.get("context")
            context = VersionVector(seen) if seen is not None else merged_context(self.store.get(key, []))
            version = {"vv": context.increment(ctx.id).to_json(), "value": msg["value"], "ts": [ctx.now, ctx.id]}
            self.apply(ctx, key, [version])
            ctx.broadcast("push", key=key, versions=[version])
            ctx.reply(msg, context=version["vv"])
        elif msg.type == "read":
            key = str(msg["key"])
            values = self.values(key)
            if not values:
                return ctx.reply(msg, "error", code=20, text="key does not exist")
            ctx.reply(msg, value=values[0] if len(values) == 1 else values, values=values,
                      context=merged_context(self.store[key]).to_json())
        elif msg.type == "push":
            self.apply(ctx, msg["key"], msg["versions"])
        elif msg.type == "sync":
            for key, versions in msg["store"].items():
                self.apply(ctx, key, versions)

    def on_timer(self, ctx: Any, name: str) -> None:
        if self.store:
            ctx.send(ctx.rng.choice(ctx.peers), "sync", store=self.store)
        ctx.set_timer("gossip", between=self.GOSSIP_MS)
