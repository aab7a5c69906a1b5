"""A sharded key-value store: shards, routers and a config service (chapter 03's reference system).

Theory of operation. Keys are hashed into a fixed number of **slots**, and the **shard map**
says which node owns each slot, at which **epoch**: ``{slot: [owner, epoch]}`` (see
``labkit.systems.shardmap``). Moving a slot moves all its keys at once.

* ``Shard`` -- a shard server. It serves Maelstrom's lin-kv requests (``read``/``write``/``cas``
  with ``key``) for the slots it owns, ``scan`` for a scatter-gather, and moves slots:
  ``hand_off {slots: {slot: epoch}, to}`` (from the config) and ``install`` (from the old owner).
  It is **fenced**: it serves a slot only while it owns it, and says who does otherwise
  (``error`` code 11 -- definite -- with ``moved: [owner, epoch]``, Redis's ``MOVED``); the old
  owner stops serving a slot in the same step in which it snapshots the slot for the new
  owner; the new owner adopts a slot only at an epoch newer than any it has seen for it, so a
  duplicated or late ``install`` never overwrites writes made since. Exactly one node serves a
  slot at any time, so the store is linearizable per key (each key lives in one slot).
* ``UnfencedShard`` -- the naive mover: copy the slot to the new owner, drop the local copy,
  but keep answering whatever it is asked. Routers still using the old map write to the old
  owner after the copy: those writes are acknowledged and lost, and reads miss them.
* ``Router`` -- what clients talk to (MongoDB's mongos, Vitess's vtgate): forwards each request
  to the slot's owner, follows ``moved`` answers (adopting a newer epoch), retries definite
  refusals until ``DEADLINE_MS``, and polls the config for the map every ``POLL_MS``. A write
  or cas whose attempt timed out is answered error 0 (*indefinite*: it may have happened) and
  never retried -- a retry could apply it twice. ``query {deadline_ms, prefix}`` is a
  **scatter-gather** over every owner; what has not answered by the deadline is reported, not
  hidden: ``query_ok {items, count, partial, missing, missing_slots}``.
* ``Config`` -- the authority on the map (MongoDB's config servers, TiKV's placement driver):
  answers ``map``; ``join {node}`` / ``leave {node}`` / ``move {slots, to}`` plan the moves,
  bump each moved slot's epoch, send ``hand_off`` to the old owner (retried until
  acknowledged), then update the map.

Shard data lives in memory (``self``): a killed shard loses it -- replication is chapter 04.
``store_nodes`` builds the ``{id: node}`` dict for ``labkit.Cluster``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import RpcTimeout
from ..node import Node
from .shardmap import SLOTS, even_map, normalize, plan_join, plan_leave, slot_of, to_json

__all__ = ["SLOTS", "slot_of", "even_map", "plan_join", "plan_leave", "Shard", "UnfencedShard", "Router",
           "Config", "store_nodes"]

class Shard(Node):
    """A fenced shard server (see the module docstring for the protocol)."""

    INSTALL_RETRY_MS = 100.0      # resend an unacknowledged install this often
    #: Service time of each read/write/cas in ms (``await ctx.work``: one worker, a FIFO
    #: queue -- see ``labkit.capacity``); 0 = instantaneous. A hot shard shows as queueing delay.
    SERVICE_MS = 0.0

    def __init__(self, shard_map: Mapping[Any, Sequence[Any]], slots: int | None = None) -> None:
        self.initial = normalize(shard_map)
        self.slots = slots or len(self.initial)

    def on_start(self, ctx: Any) -> None:
        self.data: dict[str, Any] = {}              # key -> value, for the slots held here
        self.owned: dict[int, int] = {}             # slot -> epoch, for the slots served here
        self.known: dict[int, list] = {}            # slot -> [owner, epoch]: the newest placement heard of
        self.snapshots: dict[str, dict] = {}        # "slot/epoch" -> the items handed off then
        self.answered: dict[str, None] = {}         # request ids already handled (duplicates dropped)
        for s, (owner, epoch) in self.initial.items():
            self.known[s] = [owner, epoch]
            if owner == ctx.id:
                self.owned[s] = epoch
        self.report(ctx)

    def report(self, ctx: Any) -> None:
        ctx.report(slots=len(self.owned), keys=len(self.data))

    async def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.type in ("read", "write", "cas"):
            if msg.id in self.answered:             # a copy the network duplicated: answered already
                ctx.count("duplicates")
                return
            self.answered[msg.id] = None
            if len(self.answered) > 20_000:
                del self.answered[next(iter(self.answered))]
            if self.SERVICE_MS:
                await ctx.work(self.SERVICE_MS)     # ownership is checked after the work, in serve
            self.serve(ctx, msg)
        elif msg.type == "scan":
            self.scan(ctx, msg)
        elif msg.type == "hand_off":
            await self.hand_off(ctx, msg)
        elif msg.type == "install":
            self.install(ctx, msg)
        elif msg.type == "owned":
            ctx.reply(msg, slots={str(s): e for s, e in sorted(self.owned.items())})

    # -- requests --------------------------------------------------------------------------
    def serve(self, ctx: Any, msg: Any) -> None:
        """Fenced: answer only for a slot owned here, else refuse, naming the owner."""
        s = slot_of(msg["key"], self.slots)
        if s not in self.owned:
            ctx.count("refused")
            ctx.reply(msg, "error", code=11, text=f"{ctx.id} does not own slot {s}", slot=s,
                      moved=self.known.get(s))
            return
        self.execute(ctx, msg)

    def execute(self, ctx: Any, msg: Any) -> None:
        """Run a read / write / cas on ``self.data`` and reply (Maelstrom lin-kv)."""
        ctx.count("handled")
        key = str(msg["key"])
        if msg.type == "read":
            if key in self.data:
                ctx.reply(msg, value=self.data[key])
            else:
                ctx.reply(msg, "error", code=20, text="key does not exist")
        elif msg.type == "write":
            self.data[key] = msg["value"]
            ctx.reply(msg)
        elif key not in self.data:
            ctx.reply(msg, "error", code=20, text="key does not exist")
        elif self.data[key] != msg["from"]:
            ctx.reply(msg, "error", code=22, text=f"expected {msg['from']!r}, found {self.data[key]!r}")
        else:
            self.data[key] = msg["to"]
            ctx.reply(msg)

    def items_of(self, slot: int) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if slot_of(k, self.slots) == slot}

    def scan(self, ctx: Any, msg: Any) -> None:
        """``scan {slots, prefix}`` -> ``scan_ok {items, slots}``: the items of the asked slots
        served here (fenced: only owned ones), keys starting with ``prefix``."""
        asked = {int(s) for s in msg["slots"]}
        served = sorted(asked & set(self.owned))
        prefix = msg.get("prefix") or ""
        items = {k: v for k, v in self.data.items() if k.startswith(prefix) and slot_of(k, self.slots) in served}
        ctx.count("scans")
        ctx.reply(msg, items=items, slots=served)

    # -- moving slots ----------------------------------------------------------------------
    async def hand_off(self, ctx: Any, msg: Any) -> None:
        """Stop serving each slot *and* snapshot it in one step (nothing can slip in
        between), then send the snapshot until the new owner acknowledges it."""
        to, batch = msg["to"], {}
        for s, epoch in ((int(s), e) for s, e in msg["slots"].items()):
            if s in self.owned and self.owned[s] < epoch:       # the fence goes up here
                del self.owned[s]
                self.known[s] = [to, epoch]
                items = self.items_of(s)
                for k in items:
                    del self.data[k]
                self.snapshots[f"{s}/{epoch}"] = items
                ctx.note("hand_off", slot=s, epoch=epoch, to=to, keys=len(items))
            if f"{s}/{epoch}" in self.snapshots:                # new, or a retried hand_off
                batch[str(s)] = [epoch, self.snapshots[f"{s}/{epoch}"]]
        self.report(ctx)
        await self.send_install(ctx, to, batch)
        ctx.reply(msg, slots=sorted(batch, key=int))

    async def send_install(self, ctx: Any, to: str, batch: dict) -> None:
        while batch:                                # the slot is unavailable until this lands
            try:
                await ctx.rpc(to, "install", timeout=self.INSTALL_RETRY_MS, slots=batch)
                return
            except RpcTimeout:
                ctx.count("install_retries")

    def install(self, ctx: Any, msg: Any) -> None:
        """Adopt each slot only at an epoch newer than any seen for it: a duplicated or late
        install is acknowledged and ignored (it would overwrite writes made since)."""
        for s, (epoch, items) in ((int(s), v) for s, v in msg["slots"].items()):
            if epoch > self.known.get(s, ["", 0])[1]:
                self.owned[s] = epoch
                self.known[s] = [ctx.id, epoch]
                self.data.update(items)
                ctx.note("install", slot=s, epoch=epoch, keys=len(items))
        self.report(ctx)
        ctx.reply(msg)


class UnfencedShard(Shard):
    """The naive mover: serves every request it gets; copies a slot out and forgets it."""

    def serve(self, ctx: Any, msg: Any) -> None:
        self.execute(ctx, msg)

    def scan(self, ctx: Any, msg: Any) -> None:
        asked = {int(s) for s in msg["slots"]}
        prefix = msg.get("prefix") or ""
        items = {k: v for k, v in self.data.items() if k.startswith(prefix) and slot_of(k, self.slots) in asked}
        ctx.reply(msg, items=items, slots=sorted(asked))

    async def hand_off(self, ctx: Any, msg: Any) -> None:
        to, batch = msg["to"], {}
        for s, epoch in ((int(s), e) for s, e in msg["slots"].items()):
            if f"{s}/{epoch}" not in self.snapshots:
                items = self.items_of(s)
                for k in items:
                    del self.data[k]
                self.owned.pop(s, None)
                self.snapshots[f"{s}/{epoch}"] = items
                ctx.note("hand_off", slot=s, epoch=epoch, to=to, keys=len(items))
            batch[str(s)] = [epoch, self.snapshots[f"{s}/{epoch}"]]
        self.report(ctx)
        await self.send_install(ctx, to, batch)
        ctx.reply(msg, slots=sorted(batch, key=int))

    def install(self, ctx: Any, msg: Any) -> None:
        for s, (epoch, items) in ((int(s), v) for s, v in msg["slots"].items()):
            self.owned[s] = epoch
            self.data.update(items)
            ctx.note("install", slot=s, epoch=epoch, keys=len(items))
        self.report(ctx)
        ctx.reply(msg)


class Router(Node):
    """Routes client requests to the owner of their slot; runs scatter-gather queries."""

    ATTEMPT_MS = 250.0            # wait this long for one shard's answer
    DEADLINE_MS = 1000.0          # keep retrying refusals (a slot in transit) this long
    RETRY_MS = 20.0               # pause between retries
    POLL_MS = (80.0, 120.0)       # ask the config for the map this often
    QUERY_DEADLINE_MS = 200.0     # a query answers by then, partial if need be

    def __init__(self, shard_map: Mapping[Any, Sequence[Any]], config: str = "cfg",
                 slots: int | None = None) -> None:
        self.initial = normalize(shard_map)
        self.slots = slots or len(self.initial)
        self.config = config

    def on_start(self, ctx: Any) -> None:
        self.map = {s: list(v) for s, v in self.initial.items()}
        self.queries: dict[str, dict] = {}          # query id -> its state
        self.scans: dict[str, str] = {}             # scan message id -> query id
        if self.config in ctx.peers:
            ctx.set_timer("poll", between=self.POLL_MS)

    def learn(self, s: int, entry: Sequence[Any] | None) -> bool:
        """Adopt ``[owner, epoch]`` for slot ``s`` if it is newer; True if it was."""
        if entry and entry[1] > self.map[s][1]:
            self.map[s] = [entry[0], entry[1]]
            return True
        return False

    def on_timer(self, ctx: Any, name: str) -> None:
        if name == "poll":
            ctx.send(self.config, "map")
            ctx.set_timer("poll", between=self.POLL_MS)
        elif name.startswith("query/"):
            self.finish(ctx, name[len("query/"):])

    async def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.type in ("read", "write", "cas"):
            await self.route(ctx, msg)
        elif msg.type == "map_ok":
            for s, entry in msg["map"].items():
                self.learn(int(s), entry)
        elif msg.type == "query":
            self.scatter(ctx, msg)
        elif msg.type == "scan_ok":
            self.gather(ctx, msg)

    async def route(self, ctx: Any, msg: Any) -> None:
        s, t0 = slot_of(msg["key"], self.slots), ctx.now
        while True:
            owner = self.map[s][0]
            try:
                r = await ctx.rpc(owner, msg.type, timeout=self.ATTEMPT_MS, **msg.body)
            except RpcTimeout:
                if msg.type != "read":              # it may have happened: never apply it twice
                    ctx.reply(msg, "error", code=0, text=f"no answer from {owner} (slot {s}); the {msg.type} "
                                                         f"may have happened")
                    return
            else:
                if not (r.type == "error" and r.get("code") == 11 and "moved" in r.body):
                    ctx.reply(msg, r.type, **r.body)
                    return
                ctx.count("redirects")
                if self.learn(s, r["moved"]):
                    continue                        # a newer owner: try it at once
            if ctx.now - t0 >= self.DEADLINE_MS:
                ctx.reply(msg, "error", code=11, text=f"slot {s} unavailable for {self.DEADLINE_MS:g} ms "
                                                      f"(in transit or unreachable)")
                return
            await ctx.sleep(self.RETRY_MS)

    # -- scatter-gather --------------------------------------------------------------------
    def scatter(self, ctx: Any, msg: Any) -> None:
        by_owner: dict[str, list] = {}
        for s, (owner, _) in sorted(self.map.items()):
            by_owner.setdefault(owner, []).append(s)
        q = {"msg": msg, "waiting": {}, "items": {}, "served": set()}
        for owner, slots in by_owner.items():
            mid = ctx.send(owner, "scan", slots=slots, prefix=msg.get("prefix"))
            q["waiting"][mid] = owner
            self.scans[mid] = msg.id
        self.queries[msg.id] = q
        ctx.set_timer(f"query/{msg.id}", after=msg.get("deadline_ms") or self.QUERY_DEADLINE_MS)

    def gather(self, ctx: Any, msg: Any) -> None:
        q = self.queries.get(self.scans.pop(msg.in_reply_to, ""))
        if q is None or msg.in_reply_to not in q["waiting"]:
            return                                  # after the deadline, or a duplicate
        del q["waiting"][msg.in_reply_to]
        q["items"].update(msg["items"])
        q["served"].update(msg["slots"])
        if not q["waiting"]:
            self.finish(ctx, q["msg"].id)

    def finish(self, ctx: Any, qid: str) -> None:
        q = self.queries.pop(qid, None)
        if q is None:
            return
        ctx.cancel_timer(f"query/{qid}")
        for mid in q["waiting"]:
            self.scans.pop(mid, None)
        missing_slots = sorted(set(range(self.slots)) - q["served"])
        ctx.reply(q["msg"], items=q["items"], count=len(q["items"]), partial=bool(missing_slots),
                  missing=sorted(set(q["waiting"].values())), missing_slots=missing_slots)


class Config(Node):
    """The authority on the shard map; plans and drives slot moves one at a time."""

    HAND_OFF_MS = 400.0           # resend an unacknowledged hand_off after this long

    def __init__(self, shard_map: Mapping[Any, Sequence[Any]]) -> None:
        self.initial = normalize(shard_map)

    def on_start(self, ctx: Any) -> None:
        self.map = {s: list(v) for s, v in self.initial.items()}
        self.busy = False

    async def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.type == "map":
            ctx.reply(msg, map=to_json(self.map))
            return
        if msg.type not in ("join", "leave", "move"):
            return
        if self.busy:
            ctx.reply(msg, "error", code=11, text="a rebalance is already running; try again when it ends")
            return
        try:
            if msg.type == "join":
                moves = plan_join(self.map, msg["node"])
            elif msg.type == "leave":
                moves = plan_leave(self.map, msg["node"])
            else:
                moves = {int(s): msg["to"] for s in msg["slots"]}
        except (ValueError, KeyError) as e:
            ctx.reply(msg, "error", code=12, text=str(e))
            return
        self.busy = True
        try:
            await self.move(ctx, moves)
        finally:
            self.busy = False
        ctx.reply(msg, moved=sorted(moves), map=to_json(self.map))

    async def move(self, ctx: Any, moves: Mapping[int, str]) -> None:
        """For each (old owner, new owner) pair: bump the epochs, hand off, update the map."""
        groups: dict[tuple[str, str], list[int]] = {}
        for s, to in sorted(moves.items()):
            if self.map[s][0] != to:
                groups.setdefault((self.map[s][0], to), []).append(s)
        for (src, dst), slots in groups.items():
            epochs = {str(s): self.map[s][1] + 1 for s in slots}
            while True:
                try:
                    await ctx.rpc(src, "hand_off", timeout=self.HAND_OFF_MS, slots=epochs, to=dst)
                    break
                except RpcTimeout:
                    ctx.count("hand_off_retries")
            for s in slots:
                self.map[s] = [dst, epochs[str(s)]]
            ctx.note("moved", slots=slots, src=src, dst=dst)


def store_nodes(shards: Sequence[str], *, spares: Sequence[str] = (), routers: Sequence[str] = ("r1", "r2"),
                config: str | None = "cfg", slots: int = SLOTS, shard: type = Shard,
                router: type = Router) -> dict[str, Node]:
    """``{id: node}`` for ``labkit.Cluster``: ``shards`` own the slots (dealt round robin),
    ``spares`` are shards that own nothing yet (to join later), then the routers and the
    config service (``config=None``: none; routers then learn only from ``moved`` answers)."""
    m = even_map(list(shards), slots)
    nodes: dict[str, Node] = {n: shard(m, slots) for n in [*shards, *spares]}
    nodes.update({r: router(m, config=config or "", slots=slots) for r in routers})
    if config:
        nodes[config] = Config(m)
    return nodes
