"""Merkle trees for anti-entropy: find the keys two replicas disagree on by comparing a few
hashes, not every key (Merkle 1987; Dynamo, SOSP 2007, §4.7; Cassandra's repair).

Theory of operation. Keys are placed in ``2**depth`` leaf *buckets* by their hash (top bits
of a 64-bit BLAKE2b), so both replicas put a key in the same bucket whatever else they
hold. A leaf's hash covers the sorted ``(key, digest of its versions)`` pairs in its bucket
(0 for an empty bucket); an inner node's hash covers its two children. Two replicas compare
roots; only where hashes differ do they descend, so with ``d`` differing keys among ``K`` the
comparison costs about ``2 * d * depth`` hashes instead of ``K`` key comparisons -- and one
(the root) when they agree. ``diff`` does this walk on two trees and counts the comparisons;
``labkit.systems.quorum`` runs the same walk between nodes, one message per level.

Paths name tree nodes: ``(level, index)``, level 0 the root, level ``depth`` the leaves.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

__all__ = ["MerkleTree", "diff", "bucket_of", "digest"]


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def digest(value: Any) -> int:
    """A stable 64-bit digest of any JSON value (the same in every process; never ``hash()``,
    which Python salts per process)."""
    return _h(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def bucket_of(key: str, depth: int) -> int:
    """The leaf bucket of ``key`` in a tree of ``depth`` levels below the root."""
    return _h(str(key).encode()) >> (64 - depth) if depth else 0


class MerkleTree:
    """A binary hash tree over ``{key: digest}``.

    ``depth`` in 0..24 (``2**depth`` leaves). Raises ``ValueError`` for a depth outside that."""

    def __init__(self, digests: Mapping[str, int], depth: int = 10) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 24:
            raise ValueError(f"a Merkle tree's depth is a whole number in 0..24 (2**depth leaves), got {depth!r}")
        self.depth = depth
        self.buckets: list[list[tuple[str, int]]] = [[] for _ in range(1 << depth)]
        for key, d in digests.items():
            self.buckets[bucket_of(key, depth)].append((str(key), d))
        leaves = []
        for b in self.buckets:
            b.sort()
            leaves.append(_h(json.dumps(b).encode()) if b else 0)
        self.levels: list[list[int]] = [leaves]
        while len(self.levels[0]) > 1:
            below = self.levels[0]
            self.levels.insert(0, [_h(f"{below[i]}:{below[i + 1]}".encode()) if below[i] or below[i + 1] else 0
                                   for i in range(0, len(below), 2)])

    @property
    def root(self) -> int:
        return self.levels[0][0]

    def hash_at(self, level: int, index: int) -> int:
        return self.levels[level][index]

    def keys_in(self, index: int) -> list[str]:
        """The keys of leaf bucket ``index``."""
        return [k for k, _ in self.buckets[index]]


def diff(a: MerkleTree, b: MerkleTree) -> tuple[list[str], int]:
    """``(keys whose digests differ or exist on one side only, hash comparisons made)``:
    a top-down walk that descends only where the two trees' hashes differ."""
    if a.depth != b.depth:
        raise ValueError(f"trees of different depth ({a.depth} and {b.depth}) cannot be compared")
    comparisons = 0
    frontier = [0]
    for level in range(a.depth + 1):
        nxt = []
        for i in frontier:
            comparisons += 1
            if a.hash_at(level, i) != b.hash_at(level, i):
                nxt.append(i)
        if level < a.depth:
            frontier = [c for i in nxt for c in (2 * i, 2 * i + 1)]
        else:
            frontier = nxt
    keys: list[str] = []
    for i in frontier:
        da, db = dict(a.buckets[i]), dict(b.buckets[i])
        keys.extend(k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k))
    return keys, comparisons


def tree_of(store: Mapping[str, Any], depth: int = 10, keys: Iterable[str] | None = None) -> MerkleTree:
    """A tree over ``store`` (``{key: versions}``), optionally only over ``keys``."""
    chosen = store if keys is None else {k: store[k] for k in keys if k in store}
    return MerkleTree({k: digest(v) for k, v in chosen.items()}, depth)
