"""labkit Node classes for the lin-kv, txn and kafka workloads (fast tests in the simulator).

The same logic as tests/maelstrom/programs/{lin_kv*,txn*,kafka*}.py, correct and broken:

* ``RaftLinKV``: labkit's reference Raft key-value store (``labkit.systems.raft.RaftKV``,
  which speaks Maelstrom's lin-kv) with timeouts for Maelstrom's 100 ms links; exported as
  a Maelstrom program with ``python -m labkit.maelstrom.export``.
* ``LinKVProxy`` relays read / write / cas to the ``lin-kv`` service (linearizable);
  ``StaleLinKV`` answers reads from a per-node cache it fills on reads and its own writes
  (stale after another node writes -> not linearizable).
* ``TxnStore`` runs each transaction serially on one ``lin-kv`` key holding the whole
  database (read it, apply the txn, cas it back; retry on a lost race): serializable, and
  strict-serializable since it answers after its cas. ``TxnNoIsolation`` runs each micro-op
  as its own ``lin-kv`` read (and read-then-write for a write): no isolation -> anomalies.
  Both serve txn-list-append and txn-rw-register.
* ``KafkaLog`` keeps every log on ``n0`` (other nodes forward to it): correct.
  ``KafkaReuse`` lets each node number its own sends (offsets reused across nodes), storing
  them on ``n0`` by offset (a later send overwrites) -> inconsistent offsets, lost writes.

Imports nothing but labkit, so node processes can unpickle them cheaply.
"""
from __future__ import annotations

import json

import labkit
from labkit.systems.raft import RaftKV

KV = "lin-kv"


class RaftLinKV(RaftKV):
    """Raft lin-kv tuned for links of ~100 ms (Maelstrom's default latency): elections take
    longer than a round trip, clients wait up to Maelstrom's 5 s timeout."""

    ELECTION_TIMEOUT = (1000.0, 2000.0)
    HEARTBEAT_MS = 250.0
    FORWARD_TIMEOUT_MS = 1000.0
    CLIENT_PATIENCE_MS = 4000.0


def _relay_error(ctx, msg, r) -> None:
    ctx.reply(msg, type="error", code=r.body.get("code", 13), text=r.body.get("text", ""))


class LinKVProxy(labkit.Node):
    async def on_message(self, ctx, msg):
        if msg.type not in ("read", "write", "cas"):
            return
        try:
            r = await ctx.rpc(KV, msg.type, timeout=1000, **msg.body)
        except labkit.RpcTimeout:
            return ctx.reply(msg, type="error", code=0, text="lin-kv did not answer")
        if r.type == "error":
            return _relay_error(ctx, msg, r)
        self.saw(msg, r)
        ctx.reply(msg, type=r.type, **r.body)

    def saw(self, msg, r) -> None:
        pass


class StaleLinKV(LinKVProxy):
    def on_start(self, ctx):
        self.cache = {}

    async def on_message(self, ctx, msg):
        if msg.type == "read" and msg.body["key"] in self.cache:
            return ctx.reply(msg, type="read_ok", value=self.cache[msg.body["key"]])
        return await super().on_message(ctx, msg)

    def saw(self, msg, r) -> None:
        k = msg.body["key"]
        if msg.type == "read":
            self.cache[k] = r.body["value"]
        elif msg.type == "write":
            self.cache[k] = msg.body["value"]
        elif msg.type == "cas":
            self.cache[k] = msg.body["to"]


def apply_txn(db: dict, txn: list) -> list:
    """Run ``txn`` on ``db`` (JSON object: str(key) -> list or value) in place; the completed
    micro-ops. Serves both list append (``append``) and registers (``w``)."""
    out = []
    for f, k, v in txn:
        sk = json.dumps(k)
        if f == "r":
            cur = db.get(sk)
            out.append([f, k, list(cur) if isinstance(cur, list) else cur])
        elif f == "append":
            db[sk] = list(db.get(sk) or []) + [v]
            out.append([f, k, v])
        else:
            db[sk] = v
            out.append([f, k, v])
    return out


class TxnStore(labkit.Node):
    ROOT = "db"

    async def on_message(self, ctx, msg):
        if msg.type != "txn":
            return
        try:
            for _ in range(100):
                r = await ctx.rpc(KV, "read", key=self.ROOT, timeout=1000)
                missing = r.type == "error"
                db = {} if missing else dict(r.body["value"])
                old = None if missing else r.body["value"]
                out = apply_txn(db, msg.body["txn"])
                c = await ctx.rpc(KV, "cas", key=self.ROOT, timeout=1000, **{"from": old, "to": db},
                                  create_if_not_exists=missing)
                if c.type == "cas_ok":
                    return ctx.reply(msg, type="txn_ok", txn=out)
            ctx.reply(msg, type="error", code=30, text="gave up after 100 conflicts")
        except labkit.RpcTimeout:
            ctx.reply(msg, type="error", code=0, text="lin-kv did not answer")


class TxnNoIsolation(labkit.Node):
    async def on_message(self, ctx, msg):
        if msg.type != "txn":
            return
        out = []
        try:
            for f, k, v in msg.body["txn"]:
                r = await ctx.rpc(KV, "read", key=json.dumps(k), timeout=1000)
                cur = None if r.type == "error" else r.body["value"]
                if f == "r":
                    out.append([f, k, cur])
                    continue
                new = (list(cur or []) + [v]) if f == "append" else v
                await ctx.rpc(KV, "write", key=json.dumps(k), value=new, timeout=1000)
                out.append([f, k, v])
        except labkit.RpcTimeout:
            return ctx.reply(msg, type="error", code=0, text="lin-kv did not answer")
        ctx.reply(msg, type="txn_ok", txn=out)


class KafkaLog(labkit.Node):
    """Logs on n0; other nodes forward every request to n0 and relay its answer."""

    LEADER = "n0"

    def on_start(self, ctx):
        self.logs = {}        # key -> list of [offset, msg]
        self.committed = {}   # key -> offset

    async def on_message(self, ctx, msg):
        if msg.type not in ("send", "poll", "commit_offsets", "list_committed_offsets"):
            return
        if ctx.id != self.LEADER and not msg.body.get("forwarded"):
            try:
                r = await ctx.rpc(self.LEADER, msg.type, timeout=1000, forwarded=True, **msg.body)
            except labkit.RpcTimeout:
                return ctx.reply(msg, type="error", code=0, text="n0 did not answer")
            return ctx.reply(msg, type=r.type, **r.body)
        ctx.reply(msg, **self.handle(msg.type, msg.body))

    def offset_for(self, ctx_id, key):
        log = self.logs.get(key, [])
        return log[-1][0] + 1 if log else 0

    def handle(self, typ, body):
        if typ == "send":
            k = body["key"]
            o = body["offset"] if "offset" in body else self.offset_for(None, k)
            log = self.logs.setdefault(k, [])
            self.store(log, o, body["msg"])
            return {"type": "send_ok", "offset": o}
        if typ == "poll":
            msgs = {}
            for k, start in body["offsets"].items():
                got = [list(p) for p in self.logs.get(k, []) if p[0] >= start][:10]
                if got:
                    msgs[k] = got
            return {"type": "poll_ok", "msgs": msgs}
        if typ == "commit_offsets":
            for k, o in body["offsets"].items():
                self.committed[k] = max(o, self.committed.get(k, -1))
            return {"type": "commit_offsets_ok"}
        return {"type": "list_committed_offsets_ok",
                "offsets": {k: self.committed[k] for k in body["keys"] if k in self.committed}}

    def store(self, log, o, m):
        log.append([o, m])


class KafkaReuse(KafkaLog):
    """Each node numbers its own sends per key; n0 stores by offset, a later send replacing
    an earlier one at the same offset."""

    def on_start(self, ctx):
        super().on_start(ctx)
        self.mine = {}

    async def on_message(self, ctx, msg):
        if msg.type == "send" and not msg.body.get("forwarded"):
            k = msg.body["key"]
            o = self.mine.get(k, 0)
            self.mine[k] = o + 1
            msg.body["offset"] = o
            if ctx.id == self.LEADER:
                msg.body["forwarded"] = True
        return await super().on_message(ctx, msg)

    def store(self, log, o, m):
        for p in log:
            if p[0] == o:
                p[1] = m
                return
        log.append([o, m])
        log.sort()
