"""Partitioners: which node owns a key (chapter 03's reference algorithms).

Theory of operation. A *partitioner* maps every key to exactly one node and can change its
set of nodes. Each one here has the same small interface -- ``owner(key)``, ``add(node)``,
``remove(node)``, ``nodes`` -- so a store, a router or a measurement can take any of them:

* ``ModN`` -- ``hash(key) mod N``: even, simple, and when N changes almost every key moves
  (N/(N+1) of them on an add; Kleppmann, *DDIA* ch. 6, "how not to do it").
* ``RangePartitioner`` -- contiguous key ranges cut at *split points* (Bigtable, HBase,
  Spanner, CockroachDB): a range scan touches one node; sequential keys all land on the
  last range; a node joins by *splitting* a range.
* ``ListPartitioner`` -- an explicit map from an attribute of the key (a region, a tenant) to
  a node (PostgreSQL's ``PARTITION BY LIST``): placement you choose, e.g. for data residency.
* ``HashRing`` -- consistent hashing (Karger et al., STOC 1997) with *virtual nodes*: each
  node owns ``vnodes`` points on a 64-bit ring and a key belongs to the first point at or
  after its hash, clockwise. Adding a node moves only the keys it takes over (about
  1/(N+1)); more points per node even out the arcs (the spread falls roughly as 1/sqrt(v)).
* ``JumpHash`` -- Lamping & Veach, *A Fast, Minimal Memory, Consistent Hash Algorithm*
  (arXiv 1406.2294, 2014): no table at all, perfectly even, moves the minimum -- but only the
  *last* bucket can be removed.
* ``Rendezvous`` -- highest random weight (Thaler & Ravishankar, 1998): every node scores the
  key; the highest score wins. O(N) per lookup, minimal movement, any node can leave.
* ``BoundedLoadRing`` -- consistent hashing with bounded loads (Mirrokni, Thorup &
  Zadimoghaddam, SODA 2018; HAProxy's ``hash-balance-factor``): ``assign`` walks clockwise
  past nodes already holding ``ceil(c * average)`` units of load, so no node exceeds about
  ``c`` times the mean -- for caches and balancers, where any node *may* serve a key.

Hashes are *stable*: ``stable_hash`` is BLAKE2b over the key's UTF-8 text, the same in every
process, on every machine, in every run. Python's own ``hash()`` of a str is salted per
process (``PYTHONHASHSEED``), so two processes placing keys with it disagree -- the trap
chapter 03 shows live. Keys are ``str``, ``bytes`` or ``int``; an int hashes like its decimal
text (so ``7`` and ``"7"`` are one key, as they are in labkit's JSON key-value stores).
"""
from __future__ import annotations

import bisect
import hashlib
import math
from collections import Counter
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

__all__ = ["stable_hash", "Partitioner", "ModN", "RangePartitioner", "ListPartitioner", "HashRing",
           "JumpHash", "Rendezvous", "BoundedLoadRing", "jump_hash", "placement", "moved_fraction",
           "load", "spread"]

_M64 = (1 << 64) - 1


def _key_bytes(key: Any) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return str(key).encode("utf-8")
    raise TypeError(f"a partitioning key is a str, bytes or int, got {key!r} of type {type(key).__name__}; "
                    f"turn it into a string first (e.g. f'{{user}}:{{item}}')")


def stable_hash(key: str | bytes | int) -> int:
    """A 64-bit unsigned hash of ``key`` that every process agrees on (BLAKE2b, 8 bytes).

    Unlike ``hash()``, it does not depend on ``PYTHONHASHSEED``. Raises ``TypeError`` for a
    key that is not str, bytes or int."""
    return int.from_bytes(hashlib.blake2b(_key_bytes(key), digest_size=8).digest(), "big")


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit ints that scrambles every bit."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def jump_hash(key_hash: int, buckets: int) -> int:
    """Lamping & Veach's jump consistent hash: the bucket in ``range(buckets)`` of a 64-bit
    ``key_hash``. Going from n to n+1 buckets moves exactly the keys that land in bucket n."""
    if buckets < 1:
        raise ValueError(f"jump_hash needs at least one bucket, got {buckets}")
    b, j, k = -1, 0, key_hash & _M64
    while j < buckets:
        b = j
        k = (k * 2862933555777941757 + 1) & _M64
        j = int((b + 1) * (float(1 << 31) / float((k >> 33) + 1)))
    return b


def _check_node(node: Any, where: str) -> str:
    if not isinstance(node, str) or not node:
        raise TypeError(f"{where}: a node is a non-empty str such as 'n1', got {node!r}")
    return node


class Partitioner:
    """The common interface. Subclasses set ``_nodes`` and implement ``owner``."""

    def __init__(self, nodes: Iterable[str] = ()) -> None:
        self._nodes: list[str] = []
        for n in nodes:
            self._add_name(n)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._nodes)

    def owner(self, key: str | bytes | int) -> str:
        """The one node that owns ``key``. ``LookupError`` if there are no nodes."""
        raise NotImplementedError

    def add(self, node: str) -> None:
        """Add ``node``; ``ValueError`` if it is already there."""
        self._add_name(node)

    def remove(self, node: str) -> None:
        """Remove ``node``; ``KeyError`` naming the nodes if it is not there."""
        self._remove_name(node)

    def _add_name(self, node: str) -> None:
        _check_node(node, f"{type(self).__name__}.add")
        if node in self._nodes:
            raise ValueError(f"{type(self).__name__}: node {node!r} is already one of {self._nodes}")
        self._nodes.append(node)

    def _remove_name(self, node: str) -> None:
        if node not in self._nodes:
            raise KeyError(f"{type(self).__name__}: no node {node!r}; nodes are {self._nodes}")
        self._nodes.remove(node)

    def _need_nodes(self) -> None:
        if not self._nodes:
            raise LookupError(f"{type(self).__name__} has no nodes: add one before placing keys")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._nodes})"


class ModN(Partitioner):
    """``nodes[stable_hash(key) % N]``: even, but a change of N moves almost every key."""

    def owner(self, key: str | bytes | int) -> str:
        self._need_nodes()
        return self._nodes[stable_hash(key) % len(self._nodes)]


class RangePartitioner(Partitioner):
    """Contiguous key ranges: range ``i`` is ``[splits[i-1], splits[i])`` and belongs to
    ``owners[i]``; the first range is open below, the last open above. Keys are compared as
    they are (strs with strs, ints with ints): ``RangePartitioner(["g", "n"], ["n1", "n2",
    "n3"])`` gives n1 the keys before "g", n2 those from "g" to before "n", n3 the rest. A node
    may own several ranges. ``split(at, node)`` cuts the range holding ``at`` and gives its
    upper part to ``node``; ``add(node, at=...)`` is that split for a new node;
    ``remove(node)`` hands each of its ranges to the range just below (or above) it."""

    def __init__(self, splits: Sequence[Any], owners: Sequence[str]) -> None:
        splits, owners = list(splits), list(owners)
        if len(owners) != len(splits) + 1:
            raise ValueError(f"RangePartitioner: {len(splits)} split point(s) make {len(splits) + 1} ranges, "
                             f"so give {len(splits) + 1} owners, got {len(owners)}")
        if any(not a < b for a, b in zip(splits, splits[1:])):
            raise ValueError(f"RangePartitioner: split points must be strictly increasing, got {splits}")
        for o in owners:
            _check_node(o, "RangePartitioner owners")
        super().__init__(dict.fromkeys(owners))
        self.splits, self.owners = splits, owners

    def range_of(self, key: Any) -> int:
        """The index of the range that holds ``key``."""
        try:
            return bisect.bisect_right(self.splits, key)
        except TypeError:
            raise TypeError(f"RangePartitioner: cannot compare key {key!r} with the split points "
                            f"{self.splits[:3]}...; use keys of one type") from None

    def owner(self, key: Any) -> str:
        return self.owners[self.range_of(key)]

    def split(self, at: Any, node: str | None = None) -> None:
        """Cut the range holding ``at`` at ``at``; its upper part goes to ``node`` (default:
        the same owner -- a split without a move, as HBase does before it rebalances)."""
        i = self.range_of(at)
        if i > 0 and self.splits[i - 1] == at:
            raise ValueError(f"RangePartitioner: {at!r} is already a split point")
        node = self.owners[i] if node is None else _check_node(node, "RangePartitioner.split")
        self.splits.insert(i, at)
        self.owners.insert(i + 1, node)
        if node not in self._nodes:
            self._nodes.append(node)

    def add(self, node: str, at: Any = None) -> None:
        """A new node takes the upper part of the range holding ``at`` (required: only you know
        where the data is; split a busy range at its median key)."""
        if at is None:
            raise TypeError("RangePartitioner.add(node, at=key): say where to split -- e.g. the median key "
                            "of the fullest range; a range partitioner cannot guess where the data is")
        self._add_name(node)
        self._nodes.remove(node)
        self.split(at, node)

    def remove(self, node: str) -> None:
        self._remove_name(node)
        if not self._nodes:
            raise ValueError("RangePartitioner: cannot remove the last node")
        for i, o in enumerate(self.owners):
            if o == node:   # to the neighbour below, or above for the first ranges
                below = [x for x in self.owners[:i] if x != node]
                self.owners[i] = below[-1] if below else next(x for x in self.owners[i:] if x != node)
        merged_s, merged_o = [], [self.owners[0]]      # merge neighbours with the same owner
        for s, o in zip(self.splits, self.owners[1:]):
            if o != merged_o[-1]:
                merged_s.append(s)
                merged_o.append(o)
        self.splits, self.owners = merged_s, merged_o

    def __repr__(self) -> str:
        return f"RangePartitioner(splits={self.splits}, owners={self.owners})"


class ListPartitioner(Partitioner):
    """An explicit map from a *list value* of the key to a node, e.g. ``{"eu": "n1", "us":
    "n2"}``. ``value_of(key)`` extracts the value (default: the text before the first ':',
    so ``"eu:alice"`` is in list ``"eu"``). A key whose value is not mapped raises
    ``KeyError`` naming the lists, unless ``default`` names a node for them. ``assign(value,
    node)`` (re)maps one value; ``add`` only makes a node available; ``remove`` refuses a
    node that still owns a list."""

    def __init__(self, mapping: Mapping[str, str], *, value_of: Callable[[Any], str] | None = None,
                 default: str | None = None) -> None:
        self.mapping: dict[str, str] = {}
        super().__init__()
        for value, node in mapping.items():
            self.assign(value, node)
        self.default = default
        if default is not None and default not in self._nodes:
            self._add_name(default)
        self.value_of = value_of or (lambda key: str(key).split(":", 1)[0])

    def assign(self, value: str, node: str) -> None:
        """Map list value ``value`` to ``node`` (which becomes one of the nodes)."""
        _check_node(node, "ListPartitioner.assign")
        self.mapping[value] = node
        if node not in self._nodes:
            self._nodes.append(node)

    def owner(self, key: Any) -> str:
        value = self.value_of(key)
        node = self.mapping.get(value, self.default)
        if node is None:
            raise KeyError(f"ListPartitioner: key {key!r} is in list {value!r}, which no node holds "
                           f"(lists: {sorted(self.mapping)}); assign it, or give a default node")
        return node

    def remove(self, node: str) -> None:
        held = sorted(v for v, n in self.mapping.items() if n == node)
        if held or node == self.default:
            raise ValueError(f"ListPartitioner: {node!r} still holds list(s) {held or ['(the default)']}; "
                             f"assign them to another node first")
        self._remove_name(node)


class HashRing(Partitioner):
    """Consistent hashing with ``vnodes`` virtual nodes (points) per node. Point ``i`` of node
    ``n`` sits at ``stable_hash(f"{n}#{i}")``; ``key`` belongs to the first point at or after
    ``stable_hash(key)``, wrapping past the top. Lookups are a binary search (O(log(N*v)))."""

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 100) -> None:
        if not isinstance(vnodes, int) or isinstance(vnodes, bool) or not 1 <= vnodes <= 100_000:
            raise ValueError(f"HashRing: vnodes must be a whole number from 1 to 100000, got {vnodes!r}")
        self.vnodes = vnodes
        super().__init__(nodes)
        self._build()

    def _build(self) -> None:
        pts = sorted((stable_hash(f"{n}#{i}"), n) for n in self._nodes for i in range(self.vnodes))
        self._hashes = [h for h, _ in pts]
        self._owners = [n for _, n in pts]

    def add(self, node: str) -> None:
        self._add_name(node)
        self._build()

    def remove(self, node: str) -> None:
        self._remove_name(node)
        self._build()

    def _index(self, key: Any) -> int:
        self._need_nodes()
        i = bisect.bisect_left(self._hashes, stable_hash(key))
        return 0 if i == len(self._hashes) else i

    def owner(self, key: str | bytes | int) -> str:
        return self._owners[self._index(key)]

    def preference_list(self, key: str | bytes | int) -> list[str]:
        """Every node once, in the order met walking clockwise from ``key``'s point: the
        first N are the key's home replicas, the rest its stand-ins (Dynamo, SOSP 2007, §4.3:
        virtual nodes of a node already listed are skipped). Raises LookupError with no nodes."""
        i = self._index(key)
        owners, want = self._owners, len(self._nodes)
        out: list[str] = []
        for j in range(len(owners)):
            n = owners[(i + j) % len(owners)]
            if n not in out:
                out.append(n)
                if len(out) == want:
                    break
        return out

    def arcs(self) -> dict[str, float]:
        """The fraction of the ring each node owns (its share of uniformly hashed keys)."""
        out = dict.fromkeys(self._nodes, 0.0)
        prev = self._hashes[-1] - (1 << 64) if self._hashes else 0
        for h, n in zip(self._hashes, self._owners):
            out[n] += (h - prev) / (1 << 64)
            prev = h
        return out


class JumpHash(Partitioner):
    """Jump consistent hash over ``nodes`` (bucket i is ``nodes[i]``). ``add`` appends a
    bucket; ``remove`` can only take the *last* one: the algorithm numbers buckets 0..n-1,
    and removing one in the middle would renumber the rest (the paper's §3 limitation)."""

    def owner(self, key: str | bytes | int) -> str:
        self._need_nodes()
        return self._nodes[jump_hash(stable_hash(key), len(self._nodes))]

    def remove(self, node: str) -> None:
        if self._nodes and node in self._nodes and node != self._nodes[-1]:
            raise ValueError(f"JumpHash can only remove its last bucket ({self._nodes[-1]!r}), not {node!r}: "
                             f"jump hash numbers buckets 0..n-1. Use a HashRing or Rendezvous for arbitrary "
                             f"removals, or keep a bucket -> node table and re-point the bucket")
        self._remove_name(node)


class Rendezvous(Partitioner):
    """Highest random weight: node ``n`` scores ``key`` with a mix of both hashes and the top
    score wins. When a node leaves, only its keys move (each to its second choice)."""

    def __init__(self, nodes: Iterable[str] = ()) -> None:
        super().__init__(nodes)
        self._ids = {n: stable_hash(n) for n in self._nodes}

    def add(self, node: str) -> None:
        self._add_name(node)
        self._ids[node] = stable_hash(node)

    def remove(self, node: str) -> None:
        self._remove_name(node)
        del self._ids[node]

    def owner(self, key: str | bytes | int) -> str:
        self._need_nodes()
        kh = stable_hash(key)
        return max(self._nodes, key=lambda n: (_mix64(kh ^ self._ids[n]), n))


class BoundedLoadRing(HashRing):
    """Consistent hashing with bounded loads. ``assign(key)`` gives one unit of load (a
    request, a connection) to the first node clockwise from the key whose load is below the
    capacity ``ceil(c * (total + 1) / N)``; ``release(node)`` takes one unit back. So no node
    ever holds more than about ``c`` times the average, and a key moves off its first choice
    only when that node is full. ``owner(key)`` is the plain ring's answer. ``c`` > 1
    (HAProxy's ``hash-balance-factor 125`` is ``c = 1.25``)."""

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 100, c: float = 1.25) -> None:
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not 1.0 < c <= 100.0:
            raise ValueError(f"BoundedLoadRing: c must be a number in (1, 100], got {c!r}; 1.25 is usual")
        self.c = float(c)
        self.loads: Counter[str] = Counter()
        self._total = 0
        super().__init__(nodes, vnodes)

    def _build(self) -> None:
        super()._build()
        self._walks: dict[int, list[str]] = {}      # point index -> distinct nodes clockwise from it

    def _walk(self, i: int) -> list[str]:
        w = self._walks.get(i)
        if w is None:
            seen: dict[str, None] = {}
            n = len(self._owners)
            for step in range(n):
                seen.setdefault(self._owners[(i + step) % n], None)
                if len(seen) == len(self._nodes):
                    break
            w = self._walks[i] = list(seen)
        return w

    def capacity(self) -> int:
        """The most load any node may hold after the next ``assign``."""
        return math.ceil(self.c * (self._total + 1) / max(1, len(self._nodes)))

    def assign(self, key: str | bytes | int) -> str:
        """The node that takes one more unit of load for ``key`` (and count it)."""
        cap = self.capacity()
        for node in self._walk(self._index(key)):
            if self.loads[node] < cap:
                self.loads[node] += 1
                self._total += 1
                return node
        raise AssertionError("unreachable: some node is always below the capacity")

    def release(self, node: str) -> None:
        """One unit of ``node``'s load is done."""
        if self.loads[node] <= 0:
            raise ValueError(f"BoundedLoadRing.release: {node!r} holds no load")
        self.loads[node] -= 1
        self._total -= 1

    def remove(self, node: str) -> None:
        super().remove(node)
        self._total -= self.loads.pop(node, 0)


# -- measuring ----------------------------------------------------------------------------------
def placement(p: Partitioner, keys: Iterable[Any]) -> list[str]:
    """``[p.owner(k) for k in keys]``."""
    return [p.owner(k) for k in keys]


def moved_fraction(before: Sequence[Hashable], after: Sequence[Hashable]) -> float:
    """The fraction of keys whose owner differs between two placements of the same keys."""
    if len(before) != len(after) or not before:
        raise ValueError(f"moved_fraction needs two placements of the same (non-empty) keys, "
                         f"got {len(before)} and {len(after)}")
    return sum(a != b for a, b in zip(before, after)) / len(before)


def load(owners: Iterable[str], nodes: Iterable[str] = ()) -> dict[str, int]:
    """Keys per node (nodes in ``nodes`` that own nothing count 0)."""
    out = dict.fromkeys(nodes, 0)
    for n in owners:
        out[n] = out.get(n, 0) + 1
    return out


def spread(loads: Mapping[str, float]) -> dict[str, float]:
    """``{"max_over_mean", "std_over_mean"}`` of per-node loads (population std; 0 = even)."""
    xs = list(loads.values())
    if not xs or sum(xs) <= 0:
        raise ValueError(f"spread needs some load on some node, got {dict(loads)}")
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return {"max_over_mean": max(xs) / mean, "std_over_mean": std / mean}
