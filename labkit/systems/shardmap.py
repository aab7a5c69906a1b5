"""Shard maps: keys to slots, slots to owners, and the plans that move slots (chapter 03).

Keys are hashed into a fixed number of **slots** (Redis Cluster's hash slots; DDIA's "fixed
number of partitions"), and a **shard map** ``{slot: [owner, epoch]}`` says which node owns
each slot and since which *epoch* -- a version that grows by one each time the slot moves, so
two claims on a slot can be ordered. A node joins by taking whole slots from the others
(``plan_join``): about 1/(N+1) of the keys move, and nothing is re-hashed. Pure functions;
``labkit.systems.sharded`` is the store that uses them.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from .partitioning import stable_hash

__all__ = ["SLOTS", "slot_of", "even_map", "plan_join", "plan_leave", "normalize", "to_json"]

#: Slots of a store unless told otherwise (Redis Cluster has 16,384; a small cluster needs few).
SLOTS = 32


def slot_of(key: Any, slots: int = SLOTS) -> int:
    """The slot of ``key``: ``stable_hash(str(key)) % slots``."""
    return stable_hash(str(key)) % slots


def normalize(shard_map: Mapping[Any, Sequence[Any]]) -> dict[int, list]:
    """``{int slot: [owner, epoch]}`` from a map whose slots may be strs (as JSON has them);
    ``ValueError`` naming the first bad entry, or slots that are not exactly 0..n-1."""
    out = {}
    for s, entry in shard_map.items():
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int)):
            raise ValueError(f"a shard map is {{slot: [owner, epoch]}}; slot {s!r} has {entry!r}")
        out[int(s)] = [entry[0], entry[1]]
    if sorted(out) != list(range(len(out))) or not out:
        raise ValueError(f"a shard map must list slots 0..n-1, each once; got {sorted(out)[:8]}...")
    return out


def to_json(m: Mapping[int, list]) -> dict[str, list]:
    """The map with str slots, as a message body carries it."""
    return {str(s): list(v) for s, v in sorted(m.items())}


def even_map(nodes: Sequence[str], slots: int = SLOTS) -> dict[int, list]:
    """Slots dealt round robin over ``nodes``, all at epoch 1."""
    if not nodes or slots < len(nodes):
        raise ValueError(f"even_map needs at least one node and at least as many slots as nodes, "
                         f"got {len(nodes)} node(s) and {slots} slots")
    return {s: [nodes[s % len(nodes)], 1] for s in range(slots)}


def plan_join(shard_map: Mapping[int, Sequence[Any]], node: str) -> dict[int, str]:
    """``{slot: node}``: the fewest moves that give a new ``node`` its share
    (``slots // (N + 1)``), each slot taken from the node that holds the most at that point."""
    m = normalize(shard_map)
    counts = Counter(o for o, _ in m.values())
    if node in counts:
        raise ValueError(f"plan_join: {node!r} already owns slots")
    mine = {o: sorted((s for s, (x, _) in m.items() if x == o), reverse=True) for o in counts}
    moves: dict[int, str] = {}
    for _ in range(len(m) // (len(counts) + 1)):
        donor = max(counts, key=lambda o: (counts[o], o))
        moves[mine[donor].pop(0)] = node
        counts[donor] -= 1
    return moves


def plan_leave(shard_map: Mapping[int, Sequence[Any]], node: str) -> dict[int, str]:
    """``{slot: new owner}`` for every slot of ``node``, each to the least-loaded other node."""
    m = normalize(shard_map)
    counts = Counter(o for o, _ in m.values() if o != node)
    if not counts:
        raise ValueError(f"plan_leave: {node!r} is the only owner; add a node first")
    moves = {}
    for s in sorted(s for s, (o, _) in m.items() if o == node):
        to = min(counts, key=lambda o: (counts[o], o))
        moves[s] = to
        counts[to] += 1
    return moves
