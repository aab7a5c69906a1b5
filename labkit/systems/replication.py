"""Primary-replica replication: one node takes the writes and ships its log to the others.

Theory of operation. The *primary* appends each write to its log (durable, in ``ctx.storage``),
applies it, and streams log entries to every *replica*, which applies them in log order and
acknowledges how far it got (``applied``) -- PostgreSQL's streaming replication, MySQL's
binlog replication and Redis's replication stream in one shape. New entries go out in a batch
every ``BATCH_MS`` (a WAL sender wakes up, sends what was flushed since, and sleeps again), so
under load an entry waits up to ``BATCH_MS`` on the primary before it is even sent. ``SYNC``
decides when the client hears ``write_ok``:

* ``SYNC = False`` (asynchronous, the default of PostgreSQL, MySQL and Redis): at once, after
  the local append. Fast -- but a write acknowledged inside the *replication lag* exists on
  the primary only, and a failover to a replica loses it.
* ``SYNC = True``: only once ``SYNC_ACKS`` replicas hold it (``None``: every replica in the sync
  set, PostgreSQL's ``synchronous_commit = on`` with ``FIRST n``; ``1``: semi-synchronous, MySQL's
  ``rpl_semi_sync_source_wait_for_replica_count = 1``). Nothing acknowledged is lost when the
  primary dies, and a write waits for the slowest replica it must hear from; with a replica of
  the sync set down, writes wait (and time out) until someone changes the set.

Reads go to any node: the primary answers with its data, a replica with what it has applied
(stale by the lag). Every reply carries ``index``, the log position it reflects -- a
*version token* (PostgreSQL's LSN, MySQL's GTID set). A read that sends ``after=i`` is answered
only once the node has applied ``i`` (waiting up to ``READ_WAIT_MS``, then error 11), which
gives read-your-writes and monotonic reads on replicas.

Failover is done from outside, as orchestrator, Patroni or Redis Sentinel do: ``failover``
asks the reachable nodes how far they got, promotes the most up-to-date one with a new
*epoch*, and tells the others to follow it. A primary that was only cut off, or that
restarts, still believes it is the primary (its role is durable) -- *split brain*: clients
that reach it get their writes acknowledged into a history nobody else will see.
``FENCING = True`` closes that door with the epoch as a *fencing token* (Kleppmann, "How to do
distributed locking", 2016): replicas refuse replication from an older epoch and say which
epoch is current; a primary that hears of a newer epoch steps down, throws its divergent
data away and copies the new primary's log (a full resync, like Redis's or ``pg_rewind``); and
a primary accepts writes only while it holds a *lease* -- a replica acknowledged its epoch
within ``LEASE_MS`` -- so a restarted or cut-off primary refuses writes instead of accepting
them. (The lease assumes the failover manager waits ``LEASE_MS`` before promoting.)

Messages (Maelstrom's lin-kv, plus ``add`` for Jepsen's set workload): ``read {key, after?}``
-> ``read_ok {value, index}``; ``write {key, value}`` -> ``write_ok {index}``; ``add {key,
value}`` (append ``value`` to the list at ``key``) -> ``add_ok {index}``; errors: 11 (not the
primary -- ``primary`` names the one this node knows -- or no lease, or a read that could not
catch up), 0 (a sync write whose fate is unknown because its primary stepped down).
Internal: ``replicate {epoch, start, entries}`` -> ``replicate_ok {epoch, ok, applied,
primary}``; ``position``, ``promote {epoch, replicas}``, ``follow {primary, epoch}``.

Notes for plots and checkers: the primary notes ``append {index}``; a replica notes
``applied {index}`` after each batch; every role change notes ``role {role, epoch}``.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..message import Message
from ..node import Node

__all__ = ["PrimaryReplica", "failover", "replication_lag"]

EPOCH_KEY, LEN_KEY, ENTRY_KEY = "pr/epoch", "pr/len", "pr/log/"


class PrimaryReplica(Node):
    """A primary-replica key-value store; ``PRIMARY`` leads epoch 1. See the module docstring."""

    PRIMARY: str = "n1"
    SYNC: bool = False
    SYNC_ACKS: int | None = None      # replicas a sync write waits for; None: all of the sync set
    FENCING: bool = True
    HEARTBEAT_MS: float = 50.0
    LEASE_MS: float = 300.0
    READ_WAIT_MS: float = 300.0
    MAX_BATCH: int = 512
    BATCH_MS: float = 10.0            # new entries are streamed in batches this often (0: at once)

    # -- start and storage ----------------------------------------------------------------
    def on_start(self, ctx: Any) -> None:
        restarted = EPOCH_KEY in ctx.storage
        self.epoch, self.primary = ctx.storage.get(EPOCH_KEY, [1, self.PRIMARY])
        self.role = "primary" if self.primary == ctx.id else "replica"
        self.log: list[list] = [ctx.storage[f"{ENTRY_KEY}{i}"] for i in range(1, ctx.storage.get(LEN_KEY, 0) + 1)]
        self.kv: dict[str, Any] = {}
        for _, op in self.log:
            self.execute(op)
        self.replicas = [p for p in ctx.peers]
        self.sync_set = list(self.replicas)
        self.next_index = {p: len(self.log) + 1 for p in self.replicas}
        self.match = {p: 0 for p in self.replicas}
        self.stalled = {p: -1 for p in self.replicas}
        self.pending: dict[int, Message] = {}          # sync writes waiting for replicas, by index
        self.waiting: list[Message] = []               # reads waiting for this node to catch up
        # the first primary starts with a lease (the cluster was just configured); a restarted
        # one must hear a replica confirm its epoch before it accepts a write
        self.lease_at = float("-inf") if restarted else ctx.now
        self.save_role(ctx)
        ctx.note("role", role=self.role, epoch=self.epoch)
        ctx.set_timer("heartbeat", after=self.HEARTBEAT_MS)
        self.report(ctx)

    def save_role(self, ctx: Any) -> None:
        ctx.storage[EPOCH_KEY] = [self.epoch, self.primary]

    def append(self, ctx: Any, entry: list) -> int:
        self.log.append(entry)
        i = len(self.log)
        ctx.storage.update({f"{ENTRY_KEY}{i}": entry, LEN_KEY: i})    # durable before anyone hears
        self.execute(entry[1])
        return i

    def truncate(self, ctx: Any) -> None:
        """Throw the local data away (a deposed primary's divergent writes) before a full resync."""
        ctx.storage[LEN_KEY] = 0
        self.log, self.kv = [], {}

    def execute(self, op: dict) -> None:
        key = str(op["key"])
        if op["f"] == "add":
            self.kv[key] = [*self.kv.get(key, []), op["value"]]
        else:
            self.kv[key] = op["value"]

    @property
    def applied(self) -> int:
        return len(self.log)

    def report(self, ctx: Any) -> None:
        ctx.report(role=self.role, epoch=self.epoch, applied=self.applied)

    # -- roles ----------------------------------------------------------------------------
    def become(self, ctx: Any, role: str, epoch: int, primary: str | None) -> None:
        was_primary = self.role == "primary"
        self.role, self.epoch, self.primary = role, epoch, primary
        self.save_role(ctx)
        if role == "replica" and was_primary:
            for i, msg in sorted(self.pending.items()):   # it may or may not be on a replica
                ctx.reply(msg, "error", code=0, text=f"{ctx.id} stepped down before the write was confirmed")
            self.pending.clear()
            if self.FENCING:
                self.truncate(ctx)
        ctx.note("role", role=role, epoch=epoch)
        self.report(ctx)

    # -- messages -------------------------------------------------------------------------
    def on_message(self, ctx: Any, msg: Message) -> None:
        t = msg.type
        if t in ("write", "add"):
            self.client_write(ctx, msg)
        elif t == "read":
            self.waiting.append(msg)
            self.answer_reads(ctx)
            if msg in self.waiting:
                ctx.set_timer(f"read:{msg.id}", after=self.READ_WAIT_MS)
        elif t == "replicate":
            self.on_replicate(ctx, msg)
        elif t == "replicate_ok":
            self.on_replicate_ok(ctx, msg)
        elif t == "position":
            ctx.reply(msg, applied=self.applied, epoch=self.epoch, role=self.role, primary=self.primary)
        elif t == "promote":
            self.become(ctx, "primary", msg["epoch"], ctx.id)
            self.sync_set = [p for p in msg.get("replicas", self.replicas) if p != ctx.id]
            self.next_index = {p: self.applied + 1 for p in self.replicas}
            self.match = {p: 0 for p in self.replicas}
            self.lease_at = ctx.now                       # the manager's word: a fresh lease
            ctx.reply(msg, epoch=self.epoch)
        elif t == "follow":
            if msg["epoch"] >= self.epoch:
                self.become(ctx, "replica", msg["epoch"], msg["primary"])
            ctx.reply(msg, epoch=self.epoch)

    def client_write(self, ctx: Any, msg: Message) -> None:
        if self.role != "primary":
            return ctx.reply(msg, "error", code=11, text=f"{ctx.id} is not the primary", primary=self.primary)
        if self.FENCING and self.replicas and ctx.now - self.lease_at > self.LEASE_MS:
            return ctx.reply(msg, "error", code=11, primary=self.primary,
                             text=f"{ctx.id} holds no lease: no replica confirmed epoch {self.epoch} "
                                  f"in the last {self.LEASE_MS:g} ms")
        i = self.append(ctx, [self.epoch, {"f": msg.type, "key": str(msg["key"]), "value": msg["value"]}])
        ctx.note("append", index=i)
        if not self.BATCH_MS:
            for p in self.replicas:
                self.ship(ctx, p)
        elif "ship" not in ctx.timers:
            ctx.set_timer("ship", after=self.BATCH_MS)
        if self.SYNC and self.sync_set:
            self.pending[i] = msg
            self.release(ctx)
        else:
            ctx.reply(msg, index=i)
        self.report(ctx)

    def ship(self, ctx: Any, peer: str, heartbeat: bool = False) -> None:
        """Send ``peer`` the entries from its ``next_index`` on (or an empty heartbeat)."""
        start = self.next_index[peer]
        entries = self.log[start - 1:start - 1 + self.MAX_BATCH]
        if entries or heartbeat:
            ctx.send(peer, "replicate", epoch=self.epoch, start=start, entries=entries)
            self.next_index[peer] = start + len(entries)

    def on_replicate(self, ctx: Any, msg: Message) -> None:
        epoch = msg["epoch"]
        if self.FENCING:
            if epoch < self.epoch:                        # a deposed primary: fence it off
                return ctx.reply(msg, epoch=self.epoch, ok=False, applied=self.applied, primary=self.primary)
            if epoch > self.epoch or self.role == "primary" or self.primary != msg.src:
                self.become(ctx, "replica", epoch, msg.src)
        elif self.role == "primary" or msg.src != self.primary:
            return                                        # not the stream this node follows
        start, entries = msg["start"], msg["entries"]
        if start > self.applied + 1:                      # a gap: say where we are
            return ctx.reply(msg, epoch=self.epoch, ok=False, applied=self.applied, primary=self.primary)
        new = entries[self.applied + 1 - start:]
        for entry in new:
            self.append(ctx, entry)
        if new:
            ctx.note("applied", index=self.applied)
            self.answer_reads(ctx)
            self.report(ctx)
        ctx.reply(msg, epoch=self.epoch, ok=True, applied=self.applied, primary=self.primary)

    def on_replicate_ok(self, ctx: Any, msg: Message) -> None:
        if self.role != "primary":
            return
        if msg["epoch"] > self.epoch and self.FENCING:    # fenced: a newer primary exists
            return self.become(ctx, "replica", msg["epoch"], msg.get("primary"))
        if msg["epoch"] != self.epoch or msg.src not in self.match:
            return
        if msg["ok"]:
            self.lease_at = max(self.lease_at, ctx.now)
            self.match[msg.src] = max(self.match[msg.src], msg["applied"])
            self.release(ctx)
        else:
            self.match[msg.src] = min(self.match[msg.src], msg["applied"])
            self.next_index[msg.src] = msg["applied"] + 1
            self.ship(ctx, msg.src)

    def release(self, ctx: Any) -> None:
        """Answer the sync writes that enough replicas of the sync set now hold."""
        need = len(self.sync_set) if self.SYNC_ACKS is None else min(self.SYNC_ACKS, len(self.sync_set))
        for i in sorted(self.pending):
            if sum(self.match.get(p, 0) >= i for p in self.sync_set) < need:
                break
            ctx.reply(self.pending.pop(i), index=i)

    def answer_reads(self, ctx: Any) -> None:
        for msg in list(self.waiting):
            after = msg.get("after") or 0
            if self.applied >= after:
                self.waiting.remove(msg)
                ctx.cancel_timer(f"read:{msg.id}")
                value = self.kv.get(str(msg["key"]))
                ctx.reply(msg, value=value, index=self.applied, role=self.role)

    def on_timer(self, ctx: Any, name: str) -> None:
        if name == "heartbeat":
            if self.role == "primary":
                for p in self.replicas:
                    if self.match[p] < self.applied and self.match[p] == self.stalled[p]:
                        self.next_index[p] = self.match[p] + 1   # no progress for a beat: resend
                    self.stalled[p] = self.match[p]
                    self.ship(ctx, p, heartbeat=True)
            ctx.set_timer("heartbeat", after=self.HEARTBEAT_MS)
        elif name == "ship" and self.role == "primary":
            for p in self.replicas:
                self.ship(ctx, p)
        elif name.startswith("read:"):
            msg = next((m for m in self.waiting if m.id == name[5:]), None)
            if msg is not None:
                self.waiting.remove(msg)
                ctx.reply(msg, "error", code=11, text=f"{ctx.id} has applied {self.applied}, the read asked "
                                                      f"for {msg.get('after')}: not caught up in time")


# ----------------------------------------------------------------------------------------
# failover and lag, from outside the cluster


def failover(cluster: Any, *, exclude: Iterable[str] = (), timeout: float = 300.0) -> tuple[str, int]:
    """Promote the most up-to-date reachable replica with a new epoch; tell the others to follow.

    Asks every node that is up (except ``exclude``, e.g. the primary believed dead) for its
    ``position``; nodes that do not answer within ``timeout`` ms are left out. Returns
    ``(new primary, epoch)``. Raises ``RuntimeError`` when no node answered. This is what
    orchestrator (MySQL), Patroni (PostgreSQL) and Redis Sentinel do, minus their own
    consensus on *who* may fail over."""
    from ..errors import RequestTimeout
    excluded = set(exclude)
    up = [n for n, s in cluster.status().items() if s.state == "up" and n not in excluded]
    positions = {}
    for n in up:
        try:
            positions[n] = cluster.request(n, "position", timeout=timeout).body
        except RequestTimeout:
            continue
    if not positions:
        raise RuntimeError(f"failover: no node answered 'position' within {timeout:g} ms (asked {up})")
    best = max(positions, key=lambda n: (positions[n]["applied"], positions[n]["role"] == "primary", n[::-1]))
    epoch = max(p["epoch"] for p in positions.values()) + 1
    cluster.request(best, "promote", epoch=epoch, replicas=sorted(positions), timeout=timeout)
    for n in positions:
        if n != best:
            try:
                cluster.request(n, "follow", primary=best, epoch=epoch, timeout=timeout)
            except RequestTimeout:
                pass
    return best, epoch


def replication_lag(journal: Any) -> dict[str, list[tuple[float, float]]]:
    """``{replica: [(t_ms, lag_ms), ...]}``: at each batch a replica applied, how long ago the
    primary had appended the newest entry of that batch (PostgreSQL's ``replay_lag``).
    Built from the ``append`` and ``applied`` notes; entries appended in an older epoch (or
    before a restart) count from their latest append."""
    appended: dict[int, float] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for e in journal.filter(kind="note", where=lambda e: e["what"] in ("append", "applied")):
        if e["what"] == "append":
            appended[e["index"]] = e.t
        elif e["index"] in appended:
            out.setdefault(e.node, []).append((e.t, e.t - appended[e["index"]]))
    return out
