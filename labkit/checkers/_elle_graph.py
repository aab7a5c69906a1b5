"""The transaction dependency graph behind ``labkit.checkers.elle``: edges labelled with
their kinds (``ww``, ``wr``, ``rw``, ``rt``), Tarjan's strongly connected components, and a
breadth-first cycle search per anomaly class (Kingsbury & Alvaro, "Elle", VLDB 2020, 4.3:
"we find strongly connected components ... then search each for the shortest cycle of each
kind"). Internal; the public API is ``labkit.checkers.elle``.

Cost: building and SCCs are linear in edges; each cycle search is one BFS restricted to one
component, started from the head of an edge of the kind the class needs, under a shared
budget of visited edges per component (``budget``) so that a huge component cannot stall the
checker; running out is reported (``truncated``), never silently.
"""
from __future__ import annotations

from collections import deque
from typing import Hashable, Iterable

KINDS = ("ww", "wr", "rw", "rt")
#: the kind shown for an edge that has several, weakest (most telling) first
_PREFER = {"ww": 0, "wr": 1, "rt": 2, "rw": 3}


class DepGraph:
    """Directed graph over transaction ids with a set of kinds on each edge."""

    def __init__(self) -> None:
        self.out: dict[Hashable, dict[Hashable, set[str]]] = {}
        self.why: dict[tuple, str] = {}  # (a, b, kind) -> the first reason given for that edge

    def add_node(self, a: Hashable) -> None:
        self.out.setdefault(a, {})

    def add(self, a: Hashable, b: Hashable, kind: str, why: str | None = None) -> None:
        if a == b:
            return  # a transaction never depends on itself (Adya's DSG has no self-loops)
        self.out.setdefault(b, {})
        self.out.setdefault(a, {}).setdefault(b, set()).add(kind)
        if why is not None:
            self.why.setdefault((a, b, kind), why)

    def edges(self, kinds: Iterable[str] | None = None) -> Iterable[tuple[Hashable, Hashable, set[str]]]:
        ks = None if kinds is None else set(kinds)
        for a, nbrs in self.out.items():
            for b, k in nbrs.items():
                if ks is None or k & ks:
                    yield a, b, k

    def edge_count(self) -> int:
        return sum(len(n) for n in self.out.values())


def sccs(graph: DepGraph, kinds: Iterable[str] | None = None, singletons: bool = False) -> list[list[Hashable]]:
    """Tarjan's strongly connected components with more than one vertex (all of them with
    ``singletons``), over edges having one of ``kinds``; iterative, so deep graphs do not hit
    Python's recursion limit. Tarjan emits them in reverse topological order: if component
    i reaches component j != i, then i > j."""
    ks = None if kinds is None else frozenset(kinds)
    index: dict[Hashable, int] = {}
    low: dict[Hashable, int] = {}
    on_stack: set[Hashable] = set()
    stack: list[Hashable] = []
    out: list[list[Hashable]] = []
    counter = 0

    def succ(v: Hashable) -> list[Hashable]:
        return [w for w, k in graph.out.get(v, {}).items() if ks is None or k & ks]

    for root in graph.out:
        if root in index:
            continue
        work = [(root, iter(succ(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ(w))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if singletons or len(comp) > 1:
                    out.append(comp)
    return out


class Budget:
    """Edges a component's searches may still visit."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.truncated = False

    def spend(self) -> bool:
        self.left -= 1
        if self.left < 0:
            self.truncated = True
            return False
        return True


def path(graph: DepGraph, src: Hashable, dst: Hashable, within: set, kinds: frozenset[str],
         budget: Budget, max_rw: int | None = None, min_rw: int = 0,
         nonadjacent: bool = False, start_rw: bool = False) -> list[Hashable] | None:
    """Shortest path src -> dst inside ``within`` over edges with a kind in ``kinds`` that uses
    at most ``max_rw`` (``None``: any number) and at least ``min_rw`` edges usable *only* as
    ``rw``. With ``nonadjacent``, no two such edges follow each other, counting the cycle's
    closing edge dst -> src (an rw edge when ``start_rw``) before the first edge and after the
    last (Elle's G-nonadjacent). Vertices of the path, src first; ``None`` if there is none or
    the budget ran out."""
    cap = max_rw if max_rw is not None else min_rw

    def rw_cost(k: set[str]) -> int:
        return 0 if (k & kinds) - {"rw"} else 1

    start = (src, 0, nonadjacent and start_rw)      # (vertex, rw edges used, the last was rw)
    prev: dict[tuple, tuple | None] = {start: None}
    q = deque([start])
    while q:
        state0 = q.popleft()
        v, used, last_rw = state0
        for w, k in graph.out.get(v, {}).items():
            if w not in within or not (k & kinds):
                continue
            if not budget.spend():
                return None
            c = rw_cost(k)
            if c and nonadjacent and (last_rw or (w == dst and start_rw)):
                continue  # two rw edges in a row (around the cycle, too)
            u = used + c
            if max_rw is not None and u > max_rw:
                continue
            if w == src or (w == dst and u < min_rw):
                continue  # the path must not pass through its ends
            state = (w, min(u, cap), nonadjacent and c == 1)
            if state in prev:
                continue
            prev[state] = state0
            if w == dst and u >= min_rw:
                out = [w]
                s = prev[state]
                while s is not None:
                    out.append(s[0])
                    s = prev[s]
                return out[::-1]
            q.append(state)
    return None


def label(graph: DepGraph, cycle: list[Hashable], kinds: frozenset[str]) -> list[str]:
    """The kind shown for each edge of ``cycle`` (closed: last vertex == first): of the kinds
    in ``kinds`` it has, the most telling (ww, then wr, then rt; rw only if nothing else)."""
    out = []
    for a, b in zip(cycle, cycle[1:]):
        ks = graph.out[a][b] & kinds
        non_rw = ks - {"rw"}
        out.append(min(non_rw, key=_PREFER.__getitem__) if non_rw else "rw")
    return out
