"""A leaderless, Dynamo-style key-value store: N replicas per key, read and write quorums.

Theory of operation (DeCandia et al., "Dynamo: Amazon's Highly Available Key-value Store",
SOSP 2007, §4). Every key has a *preference list*: the nodes met walking clockwise from the
key's hash on a consistent-hash ring; its first ``N`` are the key's *home* replicas. Any node
takes a client request; one that is not a home replica forwards it to one that is (§4.5), the
*coordinator*. The coordinator sends the write to all N home replicas and answers ``write_ok``
once ``W`` have stored it (itself included); a read asks all N and answers from the first
``R`` replies. With ``R + W > N`` every read quorum overlaps every write quorum -- as long as
the quorums are taken from the home replicas.

Versions (§4.4): a write is stamped with a version vector, the coordinator's entry raised over
the context the writer saw (the client's ``context``, else what the coordinator holds). A
replica keeps every version nothing else dominates, so concurrent writes survive as
*siblings*; a read returns all of them with their merged vector as ``context``. ``LWW = True``
keeps only the largest ``[timestamp, node]`` instead (Cassandra).

Repairs: **read repair** -- a replica whose answer was behind the merged result is sent it;
**sloppy quorum with hinted handoff** (``SLOPPY = True``, §4.6) -- a home replica that did not
answer within ``SLOPPY_AFTER_MS`` (or is suspected from an earlier timeout) is replaced by the
next node of the preference list, which stores the write as a *hint* for it, counts toward W,
answers reads with it, and hands it off when the home replica answers again -- the store
stays writable during a partition, and R + W > N no longer promises a fresh read;
**anti-entropy** (``ANTI_ENTROPY_MS``, §4.7) -- every so often a node compares a Merkle tree
(``labkit.systems.merkle``) of the keys it shares with a random peer, level by level, and exchanges
only the buckets whose hashes differ.

Messages: ``read {key}`` -> ``read_ok {value, values, context}`` (``value`` is the one value,
or the sorted sibling values) or error 20 (no such key) / 11 (fewer than R answered);
``write {key, value, context?}`` -> ``write_ok {context}`` or error 0 (fewer than W answered:
it may still be stored). Internal: ``put``/``put_ok``, ``get``/``get_ok``, ``repair``,
``handoff``/``handoff_ok``, ``ae``/``ae_keys``. Notes: ``kv {key, digest}`` when a replica's
versions of a key change, ``hints {pending}`` when its hint count changes.
"""
from __future__ import annotations

from typing import Any

from ..errors import RpcTimeout
from .merkle import MerkleTree, bucket_of, digest, tree_of
from .partitioning import HashRing
from ..message import Message
from ..node import Node
from .versionvector import VersionVector, merged_context, reconcile

__all__ = ["Ring", "QuorumKV", "convergence_lag"]

STORE_KEY, HINT_KEY = "q/kv/", "q/hint/"


class Ring(HashRing):
    """Chapter 03's consistent-hash ring (``labkit.systems.partitioning.HashRing``) with
    ``vnodes`` points per node (16 here: Cassandra 4.0's default) and a cache of preference
    lists (a node asks for the same keys again and again)."""

    def __init__(self, nodes: list[str] | tuple[str, ...], vnodes: int = 16) -> None:
        if not nodes:
            raise ValueError("a ring needs at least one node")
        self._cache: dict[str, list[str]] = {}
        super().__init__(sorted(nodes), vnodes)

    def _build(self) -> None:
        super()._build()
        self._cache = {}                # a node joined or left: placements change

    def preference_list(self, key: str) -> list[str]:
        """Every node once, in ring order from ``key``'s point: the first N are its home replicas."""
        key = str(key)
        pref = self._cache.get(key)
        if pref is None:
            pref = super().preference_list(key)
            if len(self._cache) < 100_000:
                self._cache[key] = pref
        return pref


class QuorumKV(Node):
    """A Dynamo-style replica and coordinator; tune with the class attributes."""

    N, R, W = 3, 2, 2
    SLOPPY: bool = False
    READ_REPAIR: bool = True
    LWW: bool = False
    TIMEOUT_MS: float = 250.0          # a coordinator's wait for its quorum
    SLOPPY_AFTER_MS: float = 40.0      # then substitutes take the silent home replicas' place
    SUSPECT_MS: float = 500.0          # a node that timed out is skipped this long (sloppy mode)
    HANDOFF_MS: float = 100.0          # how often hints are offered to their home replica
    ANTI_ENTROPY_MS: tuple[float, float] | None = None
    MERKLE_DEPTH: int = 6
    VNODES: int = 16

    def on_start(self, ctx: Any) -> None:
        self.ring = Ring([ctx.id, *ctx.peers], self.VNODES)
        self.n = min(self.N, 1 + len(ctx.peers))
        self.store: dict[str, list] = {}
        self.hints: dict[str, dict[str, list]] = {}
        for k in ctx.storage.keys():
            if k.startswith(STORE_KEY):
                self.store[k[len(STORE_KEY):]] = ctx.storage[k]
            elif k.startswith(HINT_KEY):
                target, key = k[len(HINT_KEY):].split("/", 1)
                self.hints.setdefault(target, {})[key] = ctx.storage[k]
        for key, versions in sorted(self.store.items()):
            ctx.note("kv", key=key, digest=digest(versions))
        self.ops: dict[str, dict] = {}
        self.suspect: dict[str, float] = {}
        self.trees: dict[str, tuple[int, MerkleTree]] = {}
        self.changes = 0
        self._note_hints(ctx)
        ctx.set_timer("handoff", after=self.HANDOFF_MS)
        if self.ANTI_ENTROPY_MS:
            ctx.set_timer("anti_entropy", between=self.ANTI_ENTROPY_MS)

    # -- the replica's side ---------------------------------------------------------------
    def home(self, key: str) -> list[str]:
        return self.ring.preference_list(key)[:self.n]

    def local(self, key: str, with_hints: bool = False) -> list:
        vs = list(self.store.get(key, []))
        if with_hints:
            for hinted in self.hints.values():
                vs.extend(hinted.get(key, []))
            vs = reconcile(vs, lww=self.LWW)
        return vs

    def put_local(self, ctx: Any, key: str, versions: list, hint: str | None = None) -> None:
        if hint is not None and hint != ctx.id:
            held = self.hints.setdefault(hint, {})
            new = reconcile(held.get(key, []) + list(versions), lww=self.LWW)
            if new != held.get(key):
                held[key] = new
                ctx.storage[f"{HINT_KEY}{hint}/{key}"] = new
                self._note_hints(ctx)
            return
        old = self.store.get(key, [])
        new = reconcile(old + list(versions), lww=self.LWW)
        if new != old:
            self.store[key] = new
            ctx.storage[f"{STORE_KEY}{key}"] = new
            self.changes += 1
            ctx.note("kv", key=key, digest=digest(new))

    def _note_hints(self, ctx: Any) -> None:
        ctx.note("hints", pending=sum(len(h) for h in self.hints.values()))

    # -- messages -------------------------------------------------------------------------
    def on_message(self, ctx: Any, msg: Message) -> Any:
        t = msg.type
        if t in ("read", "write"):
            key = str(msg["key"])
            home = self.home(key)
            if ctx.id not in home:
                return self.forward(ctx, msg, home)
            return self.coordinate(ctx, msg, key)
        if t in ("put", "repair"):
            self.put_local(ctx, msg["key"], msg["versions"], msg.get("hint"))
            if t == "put":
                ctx.reply(msg)
        elif t == "get":
            ctx.reply(msg, versions=self.local(msg["key"], with_hints=self.SLOPPY))
        elif t in ("put_ok", "get_ok"):
            self.suspect.pop(msg.src, None)
            op = self.ops.get(msg.in_reply_to or "")
            if op is not None:
                self.on_reply(ctx, op, msg.src, msg.get("versions"))
        elif t == "handoff":
            for key, versions in msg["kv"].items():
                self.put_local(ctx, key, versions)
            ctx.reply(msg, kv={k: digest(v) for k, v in msg["kv"].items()})
        elif t == "handoff_ok":
            self.suspect.pop(msg.src, None)
            held = self.hints.get(msg.src, {})
            for key, d in msg["kv"].items():
                if key in held and digest(held[key]) == d:        # unchanged since sent: done
                    del held[key]
                    del ctx.storage[f"{HINT_KEY}{msg.src}/{key}"]
            self._note_hints(ctx)
        elif t == "ae":
            self.on_ae(ctx, msg)
        elif t == "ae_keys":
            for key, versions in msg["kv"].items():
                self.put_local(ctx, key, versions)
            if msg["answer"]:                                   # ours of the same buckets, back
                depth, buckets = self.MERKLE_DEPTH, set(msg["buckets"])
                ctx.reply(msg, "ae_keys", answer=False, buckets=msg["buckets"],
                          kv={k: self.store[k] for k in self.shared_with(msg.src) if bucket_of(k, depth) in buckets})
        return None

    async def forward(self, ctx: Any, msg: Message, home: list[str]) -> None:
        """Not a home replica of the key: pass the request to one that is (Dynamo §4.5),
        unsuspected ones first; one that does not answer is suspected and the next one tried
        (a retried write may then exist twice, as two siblings of the same value)."""
        order = sorted(home, key=lambda n: self.suspect.get(n, -1.0) >= ctx.now)
        for target in order:
            try:
                answer = await ctx.rpc(target, msg.type, timeout=self.TIMEOUT_MS + 100, **msg.body)
            except RpcTimeout:
                self.suspect[target] = ctx.now + self.SUSPECT_MS
                continue
            self.suspect.pop(target, None)
            return ctx.reply(msg, answer.type, **answer.body)
        ctx.reply(msg, "error", code=0 if msg.type == "write" else 11,
                  text=f"no home replica of the key answered the forwarded {msg.type} ({', '.join(order)})")

    # -- the coordinator ------------------------------------------------------------------
    def targets(self, ctx: Any, key: str) -> list[tuple[str, str | None]]:
        """``[(node, hint)]`` to ask: the home replicas; in sloppy mode a suspected home replica
        is replaced by the next unsuspected node of the preference list, with a hint."""
        pref = self.ring.preference_list(key)
        home = pref[:self.n]
        if not self.SLOPPY:
            return [(n, None) for n in home]
        spare = [n for n in pref[self.n:] if self.suspect.get(n, -1.0) < ctx.now]
        out = []
        for n in home:
            if self.suspect.get(n, -1.0) >= ctx.now and n != ctx.id and spare:
                out.append((spare.pop(0), n))
            else:
                out.append((n, None))
        return out

    def coordinate(self, ctx: Any, msg: Message, key: str) -> None:
        op = {"msg": msg, "key": key, "acks": set(), "replies": {}, "done": False, "repaired": set(),
              "sent": {}, "need": self.W if msg.type == "write" else self.R}
        if msg.type == "write":
            seen = msg.get("context")
            context = VersionVector(seen) if seen is not None else merged_context(self.store.get(key, []))
            op["versions"] = [{"vv": context.increment(ctx.id).to_json(), "value": msg["value"],
                               "ts": [ctx.now, ctx.id]}]
        self.ops[msg.id] = op
        for node, hint in self.targets(ctx, key):
            self.ask(ctx, op, node, hint)
        if not op["done"]:
            ctx.set_timer(f"t:{msg.id}", after=self.TIMEOUT_MS)
            if self.SLOPPY and msg.type == "write":
                ctx.set_timer(f"s:{msg.id}", after=self.SLOPPY_AFTER_MS)

    def ask(self, ctx: Any, op: dict, node: str, hint: str | None) -> None:
        key, write = op["key"], op["msg"].type == "write"
        if node == ctx.id:                                  # the coordinator's own copy: no message
            if write:
                self.put_local(ctx, key, op["versions"], hint)
            self.on_reply(ctx, op, node, None if write else self.local(key, with_hints=self.SLOPPY))
            return
        if write:
            mid = ctx.send(node, "put", key=key, versions=op["versions"], hint=hint)
        else:
            mid = ctx.send(node, "get", key=key)
        op["sent"][node] = hint
        self.ops[mid] = op

    def on_reply(self, ctx: Any, op: dict, node: str, versions: list | None) -> None:
        msg = op["msg"]
        if msg.type == "write":
            op["acks"].add(node)
            if not op["done"] and len(op["acks"]) >= op["need"]:
                self.finish(ctx, op)
                ctx.reply(msg, context=op["versions"][0]["vv"])
            return
        op["replies"][node] = versions or []
        if not op["done"] and len(op["replies"]) >= op["need"]:
            self.finish(ctx, op)
            merged = self.merged(op)
            if not merged:
                ctx.reply(msg, "error", code=20, text="key does not exist")
            else:
                values = _distinct(v["value"] for v in merged)
                ctx.reply(msg, value=values[0] if len(values) == 1 else values, values=values,
                          context=merged_context(merged).to_json())
        if op["done"] and self.READ_REPAIR:
            self.read_repair(ctx, op)

    def merged(self, op: dict) -> list:
        return reconcile([v for vs in op["replies"].values() for v in vs], lww=self.LWW)

    def read_repair(self, ctx: Any, op: dict) -> None:
        """Send the merged versions to every home replica that answered with less (§4.5)."""
        merged, key = self.merged(op), op["key"]
        if not merged:
            return
        home = self.home(key)
        for node, versions in op["replies"].items():
            if node in home and node not in op["repaired"] and \
                    reconcile(versions + merged, lww=self.LWW) != reconcile(versions, lww=self.LWW):
                op["repaired"].add(node)
                ctx.count("read_repairs")
                if node == ctx.id:
                    self.put_local(ctx, key, merged)
                else:
                    ctx.send(node, "repair", key=key, versions=merged)

    def finish(self, ctx: Any, op: dict) -> None:
        op["done"] = True
        ctx.cancel_timer(f"s:{op['msg'].id}")

    def on_timer(self, ctx: Any, name: str) -> None:
        if name == "handoff":
            for target, held in self.hints.items():
                if held:
                    ctx.send(target, "handoff", kv=held)
            ctx.set_timer("handoff", after=self.HANDOFF_MS)
        elif name == "anti_entropy":
            self.start_anti_entropy(ctx)
            ctx.set_timer("anti_entropy", between=self.ANTI_ENTROPY_MS)
        elif name.startswith("s:"):                         # sloppy: substitutes for the silent
            op = self.ops.get(name[2:])
            if op is None or op["done"]:
                return
            pref = self.ring.preference_list(op["key"])
            used = {ctx.id, *op["sent"]}
            spare = [n for n in pref[self.n:] if n not in used and self.suspect.get(n, -1.0) < ctx.now]
            for node in [n for n in pref[:self.n] if n in op["sent"] and n not in op["acks"]]:
                if spare:
                    self.ask(ctx, op, spare.pop(0), node)
        elif name.startswith("t:"):
            op = self.ops.pop(name[2:], None)
            if op is None:
                return
            for node in op["sent"]:
                if node not in op["acks"] and node not in op["replies"]:
                    self.suspect[node] = ctx.now + self.SUSPECT_MS
            for mid in [m for m, o in self.ops.items() if o is op]:
                del self.ops[mid]
            if not op["done"]:
                msg = op["msg"]
                got = len(op["acks"]) if msg.type == "write" else len(op["replies"])
                text = f"only {got} of the {op['need']} replicas needed answered within {self.TIMEOUT_MS:g} ms"
                ctx.reply(msg, "error", code=0 if msg.type == "write" else 11, text=text)

    # -- anti-entropy with Merkle trees (§4.7) --------------------------------------------
    def shared_with(self, peer: str) -> list[str]:
        return [k for k in self.store if peer in self.home(k)]

    def tree(self, peer: str) -> MerkleTree:
        cached = self.trees.get(peer)
        if cached is None or cached[0] != self.changes:
            cached = (self.changes, tree_of(self.store, self.MERKLE_DEPTH, self.shared_with(peer)))
            self.trees[peer] = cached
        return cached[1]

    def start_anti_entropy(self, ctx: Any) -> None:
        peer = ctx.rng.choice(ctx.peers)
        ctx.send(peer, "ae", level=0, nodes=[[0, self.tree(peer).root]])

    def on_ae(self, ctx: Any, msg: Message) -> None:
        """Compare the sender's hashes at one level with ours; reply with our children of the
        nodes that differ, or at the leaves, our keys of the buckets that differ."""
        tree, level = self.tree(msg.src), msg["level"]
        ctx.count("merkle_comparisons", len(msg["nodes"]))
        differ = [i for i, h in msg["nodes"] if tree.hash_at(level, i) != h]
        if not differ:
            return
        if level == tree.depth:
            kv = {k: self.store[k] for i in differ for k in tree.keys_in(i)}
            ctx.reply(msg, "ae_keys", kv=kv, answer=True, buckets=differ)
            return
        children = [[c, tree.hash_at(level + 1, c)] for i in differ for c in (2 * i, 2 * i + 1)]
        ctx.reply(msg, "ae", level=level + 1, nodes=children)


def _distinct(values: Any) -> list:
    """The sibling values, each once, in a stable order."""
    out: list = []
    for v in sorted(values, key=repr):
        if not out or out[-1] != v:
            out.append(v)
    return out


# ----------------------------------------------------------------------------------------


def convergence_lag(journal: Any, *, nodes: list[str], n: int = 3, since: float = 0.0,
                    vnodes: int = QuorumKV.VNODES) -> float | None:
    """ms from ``since`` until every key's ``n`` home replicas hold the same versions and no
    hint is pending -- and stay so to the end of the journal; ``None`` if they never do.
    Reads the ``kv`` and ``hints`` notes (a killed node's notes count until it restarts)."""
    ring = Ring(nodes, vnodes)
    kv: dict[str, dict[str, int]] = {}
    hints: dict[str, int] = {}
    agreed_at: float | None = None
    for e in journal.filter(kind="note", where=lambda e: e["what"] in ("kv", "hints")):
        if e["what"] == "kv":
            kv.setdefault(e["key"], {})[e.node] = e["digest"]
        else:
            hints[e.node] = e["pending"]
        if e.t < since and agreed_at is None:
            continue
        ok = not any(hints.values()) and all(
            len({held.get(r) for r in ring.preference_list(k)[:n]}) == 1 for k, held in kv.items())
        if ok and agreed_at is None:
            agreed_at = max(e.t, since)
        elif not ok:
            agreed_at = None
    return None if agreed_at is None else agreed_at - since
