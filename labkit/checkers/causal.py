"""Causal consistency of a key-value history: no read sees an effect without its cause.

Theory of operation. The history is a set of *sessions* (a session is one client process:
its operations, one at a time, in invocation order) doing ``read`` and ``write`` on keys.
Write values must be unique per key, so each read names the one write it *read from*
(or the initial value, ``None`` by default). Two relations then give **causal order**
(Lamport's happened-before for clients; Ahamad et al. 1995):

* **session order** -- an operation comes before the next one of the same session;
* **reads-from** -- a write comes before every read that returned its value;

and causal order (``->``) is their transitive closure. A history is causally consistent,
in the sense checked here (Bouajjani et al., POPL 2017, "CC"), when

1. ``->`` has no cycle (no read observes a write from its own causal future), every read
   returns the value of a write that was attempted (``ok`` or ``info``) or the initial value;
2. no read ``r`` of key ``k`` returns ``w`` while some other write ``w'`` of ``k`` with
   ``w -> w' -> r`` is in its causal past: ``r`` would see the effect (``w'`` is before ``r``)
   but not that ``w'`` overwrote ``w``. Returning the initial value while any write of ``k``
   is in ``r``'s causal past is the same mistake.

Concurrent writes (neither before the other) may be seen in any order: that is what makes
causal consistency available under partitions. Each violation is classified by the session
guarantee it breaks (Terry et al., "Session Guarantees for Weakly Consistent Replicated
Data", 1994): **read-your-writes** (``w'`` is the reader's own earlier write),
**monotonic reads** (the reader had already read ``w'``, or something after it),
otherwise **writes-follow-reads / causality** (the effect arrived before its cause). The
explanation is the shortest causal chain from the missed write to the read.

Input: ``ok`` reads (``f`` in ``read_fs``) and writes (``f`` in ``write_fs``) that are ``ok``
or ``info`` (an ``info`` write may have happened; ``fail`` writes did not). ``info`` and
``fail`` reads are ignored. An ``info`` write is ordered after its session's earlier
operations but before none of its later ones (it may take effect late, or never): only a
read that returned it places it in anyone's causal past. Causal pasts are bitsets over operations, built in one
topological pass: fine for histories of thousands of operations.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..history import History, OpPair
from .verdict import Verdict

__all__ = ["check_causal", "CausalViolation", "GUARANTEES"]

#: The guarantees a violation can break, in the order they are tried.
GUARANTEES = ("read-your-writes", "monotonic reads", "writes-follow-reads")

_INITIAL = object()


@dataclass(frozen=True)
class CausalViolation:
    """One read that saw too little.

    ``op`` is the read; ``returned`` the write it read from (``None``: the initial value, or
    for a ``phantom``/``cycle`` the problem has no such write); ``missed`` the write in its
    causal past that overwrote ``returned``; ``chain`` the shortest causal path from
    ``missed`` to ``op``, each step ``(op, how)`` with how in ``session`` / ``reads-from``;
    ``guarantee`` which guarantee it breaks (see ``GUARANTEES``), or ``"cycle"`` /
    ``"phantom"`` for the structural problems."""

    guarantee: str
    op: OpPair
    returned: OpPair | None
    missed: OpPair | None
    chain: tuple[tuple[OpPair, str], ...] = ()
    note: str = ""

    @property
    def ops(self) -> tuple[OpPair, ...]:
        """The offending pair: the write that was missed and the read that missed it."""
        return tuple(p for p in (self.missed, self.op) if p is not None)

    def __str__(self) -> str:
        r = self.op
        if self.guarantee in ("phantom", "cycle"):
            return f"{self.guarantee}: {self.note}\n  read: {_short(r)}"
        saw = "the initial value" if self.returned is None else f"the value of {_short(self.returned)}"
        lines = [f"{self.guarantee} violated on key {r.key!r}: process {r.process} read {r.value!r} "
                 f"({saw}),",
                 f"  but {_short(self.missed)} overwrote that and is in the read's causal past:"]
        for i, (p, how) in enumerate(self.chain):
            lines.append(f"    {'   ' if i == 0 else ' -> '}{_short(p)}" + (f"   [{how}]" if i else ""))
        return "\n".join(lines)


def _short(p: OpPair | None) -> str:
    if p is None:
        return "(initial)"
    t = f" @{p.start:.0f} ms" if p.start is not None else ""
    return f"p{p.process} {p.f} {p.key!r}={p.value!r}{t} (op #{p.invoke.index}, {p.type})"


def check_causal(history: History | Iterable, *, read_fs: Sequence[str] = ("read", "get"),
                 write_fs: Sequence[str] = ("write", "put"), initial: Any = None,
                 guarantees: Iterable[str] | None = None, max_explanations: int = 5) -> Verdict:
    """Check that ``history`` is causally consistent (see the module docstring).

    Returns a ``Verdict``: pass; FAIL with ``CausalViolation`` explanations, the one with the
    shortest causal chain first; or unknown when write values are not unique per key (a read
    could not name its write) or there is nothing to check. ``details`` counts violations
    per guarantee. ``guarantees``: check only these (names from ``GUARANTEES``), e.g.
    ``["read-your-writes"]`` for a store that promises sessions no more than that;
    phantom reads and cycles are always reported."""
    if guarantees is not None:
        guarantees = tuple(guarantees)
        unknown = [g for g in guarantees if g not in GUARANTEES]
        if unknown:
            raise ValueError(f"unknown guarantee(s) {unknown}; choose from {GUARANTEES}")
    history = history if isinstance(history, History) else History(history)
    name = "causal"
    pairs = [p for p in history.pairs() if isinstance(p.process, int) and not isinstance(p.process, bool)]
    writes = [p for p in pairs if p.f in write_fs and p.type in ("ok", "info")]
    failed = {(p.key, p.value): p for p in pairs if p.f in write_fs and p.type == "fail"}
    reads = [p for p in pairs if p.f in read_fs and p.type == "ok"]
    if not reads:
        return Verdict(None, name, f"no ok reads to check ({len(writes)} writes)", {"reads": 0, "writes": len(writes)})
    writer: dict[tuple, OpPair] = {}
    for w in writes:
        k = (w.key, w.value)
        if w.value == initial or k in writer:
            why = (f"write values must be unique per key and differ from the initial value {initial!r}: "
                   f"{_short(w)} repeats a value")
            return Verdict(None, name, why, {"reads": len(reads), "writes": len(writes)}, (why,))
        writer[k] = w

    ops: list[OpPair] = sorted(writes + reads, key=lambda p: p.invoke.index)
    idx = {id(p): i for i, p in enumerate(ops)}
    n = len(ops)
    succ: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    pred: list[list[tuple[int, str]]] = [[] for _ in range(n)]

    def edge(a: int, b: int, how: str) -> None:
        succ[a].append((b, how))
        pred[b].append((a, how))

    # session order. An ``info`` write may take effect at any time after its invocation (or
    # never), so it follows its session's earlier ops but precedes none of the later ones:
    # those hang off the last op whose outcome the session knew.
    last: dict[Any, int] = {}
    for i, p in enumerate(ops):
        if p.process in last:
            edge(last[p.process], i, "session")
        if p.type == "ok":
            last[p.process] = i
    problems: list[CausalViolation] = []
    source: dict[int, int | None] = {}                             # read -> the write it read (None: initial)
    for r in reads:
        i = idx[id(r)]
        if r.value == initial:
            source[i] = None
            continue
        w = writer.get((r.key, r.value))
        if w is None:
            what = "a failed write" if (r.key, r.value) in failed else "no write"
            problems.append(CausalViolation("phantom", r, None, None,
                                            note=f"read {r.key!r} = {r.value!r}, which {what} wrote"))
            continue
        source[i] = idx[id(w)]
        edge(idx[id(w)], i, "reads-from")
    if problems:
        return _fail(name, problems, len(reads), len(writes), {"phantom": len(problems)}, max_explanations)

    # one topological pass (Kahn): the causal past of each op as a bitset
    indeg = [len(pred[i]) for i in range(n)]
    ready = deque(i for i in range(n) if indeg[i] == 0)
    past = [0] * n
    done = 0
    while ready:
        a = ready.popleft()
        done += 1
        mine = past[a] | (1 << a)
        for b, _ in succ[a]:
            past[b] |= mine
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    if done < n:
        cyc = _cycle(pred, [i for i in range(n) if indeg[i] > 0])
        r = next((ops[i] for i in cyc if ops[i].f in read_fs), ops[cyc[0]])
        chain = " -> ".join(_short(ops[i]) for i in cyc + cyc[:1])
        return _fail(name, [CausalViolation("cycle", r, None, None,
                                            note=f"a read observed a write from its own causal future: {chain}")],
                     len(reads), len(writes), {"cycle": 1}, max_explanations)

    writes_of: dict[Any, int] = {}
    for i, p in enumerate(ops):
        if p.f in write_fs:
            writes_of[p.key] = writes_of.get(p.key, 0) | (1 << i)
    found: list[tuple[int, int, int | None]] = []                  # (read, missed write, returned write)
    for i, w in source.items():
        r = ops[i]
        cand = past[i] & writes_of.get(r.key, 0)
        if w is not None:
            cand &= ~(1 << w)
        while cand:
            low = cand & -cand
            j = low.bit_length() - 1
            cand ^= low
            if w is None or (past[j] >> w) & 1:
                found.append((i, j, w))
    if not found:
        return Verdict(True, name, f"{len(reads)} reads and {len(writes)} writes in "
                       f"{len({p.process for p in ops})} sessions are causally consistent",
                       {"reads": len(reads), "writes": len(writes), "violations": 0})
    # explain each offending read once: by a missed write of its own session if there is one
    # (read-your-writes), else by its most recent missed write (the nearest cause); the
    # shortest chains come first
    chosen: dict[int, tuple[int, int, int | None]] = {}
    for i, j, w in found:
        own = ops[j].process == ops[i].process
        if i not in chosen:
            chosen[i] = (i, j, w)
            continue
        cur_own = ops[chosen[i][1]].process == ops[i].process
        if (own, j) > (cur_own, chosen[i][1]):
            chosen[i] = (i, j, w)
    out = []
    for i, j, w in sorted(chosen.values()):
        chain = _path(pred, j, i, past)
        out.append(CausalViolation(_classify(ops, chain), ops[i], None if w is None else ops[w], ops[j],
                                   tuple((ops[a], how) for a, how in chain)))
    if guarantees is not None:
        out = [v for v in out if v.guarantee in guarantees]
    by: dict[str, int] = {}
    for v in out:
        by[v.guarantee] = by.get(v.guarantee, 0) + 1
    if not out:
        return Verdict(True, name, f"{len(reads)} reads and {len(writes)} writes: no {' / '.join(guarantees or ())} "
                       f"violations", {"reads": len(reads), "writes": len(writes), "violations": 0})
    out.sort(key=lambda v: (len(v.chain), v.op.invoke.index))
    return _fail(name, out, len(reads), len(writes), by, max_explanations)


def _fail(name: str, problems: list[CausalViolation], reads: int, writes: int, by: dict, k: int) -> Verdict:
    total = len(problems)
    kinds = ", ".join(f"{c} {g}" for g, c in sorted(by.items(), key=lambda kv: -kv[1]))
    first = problems[0]
    pair = f"; smallest: {first.missed and _short(first.missed)} -> {_short(first.op)}" if first.missed else ""
    return Verdict(False, name, f"{total} of {reads} reads violate causal consistency ({kinds}){pair}",
                   {"reads": reads, "writes": writes, "violations": total, "by_guarantee": by},
                   tuple(problems[:k]))


def _path(pred: list[list[tuple[int, str]]], src: int, dst: int, past: list[int]) -> list[tuple[int, str]]:
    """The shortest causal chain src -> ... -> dst, as [(op, how it was reached)], src first."""
    back: dict[int, tuple[int, str] | None] = {dst: None}
    q = deque([dst])
    while q:
        b = q.popleft()
        if b == src:
            break
        for a, how in pred[b]:
            if a not in back and (a == src or (past[a] >> src) & 1):
                back[a] = (b, how)
                q.append(a)
    chain: list[tuple[int, str]] = [(src, "")]
    a = src
    while a != dst:
        b, how = back[a]  # type: ignore[misc]
        chain.append((b, how))
        a = b
    return chain


def _classify(ops: list[OpPair], chain: list[tuple[int, str]]) -> str:
    reader = ops[chain[-1][0]].process
    missed = ops[chain[0][0]]
    if missed.process == reader:
        return "read-your-writes"
    # the chain enters the reader's session by reading the missed write, or a later one
    hops = [ops[a].process for a, _ in chain[1:]]
    if hops and all(p == reader for p in hops):
        return "monotonic reads"
    return "writes-follow-reads"


def _cycle(pred: list[list[tuple[int, str]]], nodes: list[int]) -> list[int]:
    """One cycle among ``nodes``, in causal order. Every node Kahn's pass left behind has a
    predecessor also left behind, so walking predecessors must come round to a node seen."""
    inside = set(nodes)
    seen: dict[int, int] = {}
    path: list[int] = []
    a = nodes[0]
    while a not in seen:
        seen[a] = len(path)
        path.append(a)
        a = next(b for b, _ in pred[a] if b in inside)
    return path[seen[a]:][::-1]
