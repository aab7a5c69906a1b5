"""Version vectors and sibling sets: how replicas that accept writes independently tell
"newer" from "concurrent" (Parker et al., "Detection of Mutual Inconsistency in Distributed
Systems", IEEE TSE 1983; Dynamo, SOSP 2007, §4.4; Riak's siblings).

Theory of operation. A *version vector* maps a replica id to the number of writes that
replica coordinated which the version has seen (missing entries are 0). A replica that
coordinates a write takes the context the writer saw (a vector), adds one to its own entry
and stamps the new value with it. Then for two versions ``a`` and ``b``:

* ``a <= b`` (``a`` happened before or is ``b``) when every entry of ``a`` is at most ``b``'s;
* they are **concurrent** when neither is ``<=`` the other: two writers each missed the other.

``merge`` is the entry-wise maximum: the least vector that dominates both. It is
commutative, associative and idempotent, so replicas may merge in any order, any number of
times (a join-semilattice, like chapter 02's CRDT merges). A store keeps every version no
other version dominates -- its *siblings* -- and a reader who writes back with the merged
vector as context replaces all of them (``reconcile``).

A version in a message or in storage is a plain dict ``{"vv": {node: count}, "value": v,
"ts": [ms, node]}``; ``ts`` (the coordinator's clock and id) is what last-write-wins
compares instead (``reconcile(..., lww=True)``), which is exactly what loses a write when
clocks are skewed.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

__all__ = ["VersionVector", "reconcile", "merged_context", "Version"]

#: ``{"vv": {node: count}, "value": Any, "ts": [ms, node]}`` -- one stored version.
Version = dict


class VersionVector(Mapping[str, int]):
    """An immutable version vector ``{replica: count}``; zero entries are dropped.

    Raises ``ValueError`` for a count that is not a whole number >= 0."""

    __slots__ = ("_c", "_h")

    def __init__(self, counts: Mapping[str, int] | Iterable[tuple[str, int]] | None = None) -> None:
        items = dict(counts or {})
        for k, v in items.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"a version vector maps replica ids (str) to counts (int >= 0); got {k!r}: {v!r}")
        self._c = {k: v for k, v in sorted(items.items()) if v}
        self._h: int | None = None

    # -- Mapping ---------------------------------------------------------------------------
    def __getitem__(self, node: str) -> int:
        return self._c.get(node, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._c)

    def __len__(self) -> int:
        return len(self._c)

    def __contains__(self, node: object) -> bool:
        return node in self._c

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._c == other._c
        if isinstance(other, Mapping):
            return self._c == {k: v for k, v in other.items() if v}
        return NotImplemented

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(tuple(self._c.items()))
        return self._h

    def __repr__(self) -> str:
        return "VV(" + ", ".join(f"{k}={v}" for k, v in self._c.items()) + ")"

    # -- the partial order -----------------------------------------------------------------
    def __le__(self, other: "VersionVector") -> bool:
        """``self`` happened before ``other`` or equals it."""
        return all(v <= other[k] for k, v in self._c.items())

    def __lt__(self, other: "VersionVector") -> bool:
        return self <= other and self != other

    def __ge__(self, other: "VersionVector") -> bool:
        return other <= self

    def __gt__(self, other: "VersionVector") -> bool:
        return other < self

    def concurrent(self, other: "VersionVector") -> bool:
        """Neither saw the other: two independent writes."""
        return not self <= other and not other <= self

    def compare(self, other: "VersionVector") -> str:
        """``"equal"``, ``"before"``, ``"after"`` or ``"concurrent"`` (self relative to other)."""
        le, ge = self <= other, other <= self
        return "equal" if le and ge else "before" if le else "after" if ge else "concurrent"

    # -- building --------------------------------------------------------------------------
    def increment(self, node: str) -> "VersionVector":
        """A new vector with ``node``'s entry one higher: ``node`` coordinated a write."""
        c = dict(self._c)
        c[node] = c.get(node, 0) + 1
        return VersionVector(c)

    def merge(self, other: Mapping[str, int]) -> "VersionVector":
        """The entry-wise maximum (the least vector that dominates both)."""
        c = dict(self._c)
        for k, v in other.items():
            if v > c.get(k, 0):
                c[k] = v
        return VersionVector(c)

    def to_json(self) -> dict[str, int]:
        return dict(self._c)


def _vv(v: Version) -> VersionVector:
    vv = v["vv"]
    return vv if isinstance(vv, VersionVector) else VersionVector(vv)


def _ts(v: Version) -> tuple:
    ts = v.get("ts") or [0.0, ""]
    return (ts[0], ts[1])


def reconcile(versions: Iterable[Version], *, lww: bool = False) -> list[Version]:
    """The versions a replica keeps of one key, given everything it holds and received.

    Default (Dynamo, Riak ``allow_mult``): every version that no other version strictly
    dominates, one per vector (identical vectors are the same write), sorted by vector so
    that replicas holding the same set compare equal. ``lww=True`` (Cassandra): only the
    version with the largest ``ts`` (``[ms, node]``) -- concurrent writes are dropped, silently."""
    vs = list(versions)
    if not vs:
        return []
    if lww:
        return [max(vs, key=_ts)]
    unique: dict[VersionVector, Version] = {}
    for v in vs:
        vv = _vv(v)
        if vv not in unique or _ts(v) > _ts(unique[vv]):
            unique[vv] = v
    keep = [v for vv, v in unique.items() if not any(vv < other for other in unique)]
    return sorted(({**v, "vv": _vv(v).to_json()} for v in keep), key=lambda v: sorted(v["vv"].items()))


def merged_context(versions: Iterable[Version]) -> VersionVector:
    """The merge of the versions' vectors: the context a client writes back with to replace
    all of them (resolve its siblings)."""
    out = VersionVector()
    for v in versions:
        out = out.merge(_vv(v))
    return out
