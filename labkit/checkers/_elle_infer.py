"""Dependency inference for ``labkit.checkers.elle`` (internal): transactions out of a
history, then the ``ww``/``wr``/``rw`` edges and the non-cycle anomalies of a list-append
or an rw-register history, after Kingsbury & Alvaro, "Elle" (VLDB 2020), sections 3-4."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Hashable

from ..history import History
from ._elle_graph import DepGraph


@dataclass(frozen=True)
class Txn:
    """One transaction: ``id`` is its invocation's op index (shown as ``T<id>``); ``type`` ok /
    info / fail; ``mops`` the micro-ops (the completion's for ok, else the invocation's);
    ``invoked``/``completed`` the op indices (``completed`` None if it never returned)."""

    id: int
    process: Any
    type: str
    mops: tuple
    invoked: int
    completed: int | None

    @property
    def name(self) -> str:
        return f"T{self.id}"

    def __str__(self) -> str:
        return f"T{self.id} = p{self.process} {self.type} {_fmt_mops(self.mops)}"


def _fmt_mops(mops: tuple) -> str:
    def one(m: tuple) -> str:
        v = m[2]
        vs = "nil" if v is None else ("[" + " ".join(map(str, v)) + "]" if isinstance(v, tuple) else str(v))
        return f"[:{m[0]} {m[1]!r} {vs}]"
    return "[" + " ".join(one(m) for m in mops) + "]"


def transactions(history: History, writes: tuple[str, ...]) -> list[Txn]:
    """Transactions of a ``txn`` history; each micro-op ``(f, k, v)`` with f ``"r"`` or one of
    ``writes``. Raises ValueError naming the op for anything else."""
    out = []
    for p in history.pairs():
        if p.f != "txn":
            continue
        c = p.completion
        mops = c.value if (c is not None and c.type == "ok" and c.value is not None) else p.invoke.value
        if not isinstance(mops, tuple):
            raise ValueError(f"op #{p.invoke.index}: a txn's value is a list of micro-ops such as "
                             f"[['r', 'x', None], ['{writes[0]}', 'x', 1]], got {mops!r}")
        for m in mops:
            if not (isinstance(m, tuple) and len(m) == 3 and m[0] in ("r",) + writes):
                raise ValueError(f"op #{p.invoke.index}: micro-op {m!r} is not ['r', k, v] or "
                                 f"[{'/'.join(repr(w) for w in writes)}, k, v]")
        out.append(Txn(p.invoke.index, p.process, p.type, mops, p.invoke.index,
                       c.index if c is not None else None))
    return out


class Found:
    """Anomalies found so far (non-cycle ones as dicts), grouped by type."""

    def __init__(self) -> None:
        self.by_type: dict[str, list[dict]] = defaultdict(list)

    def add(self, kind: str, text: str, txns: tuple[Txn, ...], **extra: Any) -> None:
        self.by_type[kind].append({"type": kind, "text": text, "txns": tuple(t.id for t in txns),
                                   "let": tuple(str(t) for t in txns), **extra})


def _unique_writes(txns: list[Txn], wf: str) -> tuple[dict, dict]:
    """(k, v) -> writer for ok/info txns and for failed ones; ValueError on a value written
    twice to one key (Elle's inference needs unique written values)."""
    seen: dict[tuple, Txn] = {}
    ok: dict[tuple, Txn] = {}
    failed: dict[tuple, Txn] = {}
    for t in txns:
        for f, k, v in t.mops:
            if f != wf:
                continue
            if (k, v) in seen and seen[(k, v)] is not t:
                raise ValueError(f"{wf} of {v!r} to key {k!r} happens in both T{seen[(k, v)].id} and T{t.id}; "
                                 f"Elle-style inference needs every written value unique per key "
                                 f"(Maelstrom's generators guarantee it)")
            seen[(k, v)] = t
            (failed if t.type == "fail" else ok)[(k, v)] = t
    return ok, failed


def list_append(txns: list[Txn], g: DepGraph, found: Found) -> None:
    """Version orders from reads, then edges and G1a / G1b / internal / duplicate-elements /
    incompatible-order / garbage-read."""
    writer, failed = _unique_writes(txns, "append")
    last_append: dict[tuple, Any] = {}  # (txn id, k) -> its final appended element
    for t in txns:
        for f, k, v in t.mops:
            if f == "append" and t.type != "fail":
                last_append[(t.id, k)] = v
    reads: dict[Hashable, list[tuple[Txn, tuple]]] = defaultdict(list)
    ext: list[tuple[Txn, Hashable, tuple]] = []
    for t in txns:
        if t.type != "ok":
            continue
        g.add_node(t.id)
        state: dict[Hashable, list] = {}
        for f, k, v in t.mops:
            if f == "append":
                state.setdefault(k, [None, []])[1].append(v)
                continue
            v = () if v is None else tuple(v) if isinstance(v, (tuple, list)) else v
            if not isinstance(v, tuple):
                raise ValueError(f"T{t.id}: a list-append read returns a list, got {v!r} for key {k!r}")
            reads[k].append((t, v))
            st = state.get(k)
            if st is None:
                ext.append((t, k, v))
            else:
                prefix, suffix = st
                sfx = tuple(suffix)
                if prefix is not None and v != tuple(prefix) + sfx:
                    found.add("internal", f"T{t.id} read key {k!r} = {list(v)} but its earlier reads and appends "
                              f"say {list(tuple(prefix) + sfx)}", (t,), key=k, expected=tuple(prefix) + sfx, read=v)
                elif prefix is None and sfx and v[len(v) - len(sfx):] != sfx:
                    found.add("internal", f"T{t.id} read key {k!r} = {list(v)}, which does not end with its own "
                              f"appends {list(sfx)}", (t,), key=k, expected_suffix=sfx, read=v)
            state[k] = [v, []]
    bad_keys = set()
    for k, rs in reads.items():
        for t, v in rs:
            if len(set(v)) != len(v):
                dups = sorted({e for e in v if v.count(e) > 1}, key=repr)
                found.add("duplicate-elements", f"T{t.id} read key {k!r} = {list(v)}, with {dups} more than once",
                          (t,), key=k, duplicates=tuple(dups))
                bad_keys.add(k)
    orders: dict[Hashable, tuple] = {}
    for k, rs in reads.items():
        if k in bad_keys:
            continue
        longest_t, longest = max(rs, key=lambda r: len(r[1]))
        for t, v in rs:
            if longest[:len(v)] != v:
                found.add("incompatible-order", f"key {k!r}: T{t.id} read {list(v)} and T{longest_t.id} read "
                          f"{list(longest)}; neither is a prefix of the other, so no single order of appends "
                          f"explains both", (t, longest_t), key=k, values=(v, longest))
                bad_keys.add(k)
                break
        else:
            orders[k] = longest
    # reads of aborted, intermediate or never-written elements
    seen_g1a = set()
    for k, rs in reads.items():
        for t, v in rs:
            for e in v:
                if (k, e) in failed and (t.id, k, e) not in seen_g1a:
                    seen_g1a.add((t.id, k, e))
                    w = failed[(k, e)]
                    found.add("G1a", f"T{t.id} read key {k!r} = {list(v)}, including {e!r}, appended by T{w.id} "
                              f"which failed (aborted read)", (t, w), key=k, element=e)
                elif (k, e) not in writer and (k, e) not in failed:
                    found.add("garbage-read", f"T{t.id} read {e!r} in key {k!r}, which no transaction appended",
                              (t,), key=k, element=e)
    for t, k, v in ext:
        if not v:
            continue
        w = writer.get((k, v[-1]))
        if w is None or w is t:
            continue
        g.add(w.id, t.id, "wr", f"T{t.id} read key {k!r} = {list(v)}, ending with {v[-1]!r} which T{w.id} appended")
        fin = last_append.get((w.id, k))
        if fin != v[-1]:
            found.add("G1b", f"T{t.id} read key {k!r} = {list(v)}, ending with {v[-1]!r}, an intermediate state of "
                      f"T{w.id}, which appended {fin!r} to key {k!r} later (intermediate read)", (t, w),
                      key=k, element=v[-1])
    for k, order in orders.items():
        for a, b in zip(order, order[1:]):
            wa, wb = writer.get((k, a)), writer.get((k, b))
            if wa is not None and wb is not None and wa is not wb:
                g.add(wa.id, wb.id, "ww", f"T{wb.id} appended {b!r} after T{wa.id} appended {a!r} to key {k!r}")
    # Elements appended by ok txns but never read come after the longest read (lists only
    # grow): its readers anti-depend on, and its last writer precedes, their appenders.
    unread: dict[Hashable, list[tuple[Any, Txn]]] = defaultdict(list)
    in_order = {k: set(o) for k, o in orders.items()}
    for (k, e), w in writer.items():
        if k in orders and w.type == "ok" and e not in in_order[k]:
            unread[k].append((e, w))
    for k, es in unread.items():
        order = orders[k]
        wl = writer.get((k, order[-1])) if order else None
        for e, w in es:
            if wl is not None and wl is not w:
                g.add(wl.id, w.id, "ww", f"T{w.id} appended {e!r} to key {k!r}, never read, so after the longest "
                      f"read's last element {order[-1]!r} appended by T{wl.id}")
    for t, k, v in ext:
        order = orders.get(k)
        if order is None:
            continue
        if len(v) == len(order):
            for e, w in unread.get(k, ()):
                if w is not t:
                    g.add(t.id, w.id, "rw", f"T{t.id} read key {k!r} = {list(v)}, without {e!r} which T{w.id} "
                          f"appended (never read, so after every read)")
            continue
        w = writer.get((k, order[len(v)]))
        if w is not None and w is not t:
            g.add(t.id, w.id, "rw", f"T{t.id} read key {k!r} = {list(v)}, which did not yet have {order[len(v)]!r} "
                  f"appended by T{w.id}")


def rw_register(txns: list[Txn], g: DepGraph, found: Found, wfr: bool = True) -> None:
    """Edges and G1a / G1b / internal / lost-update / cyclic-versions / garbage-read for
    registers with unique written values. Version order per key: the initial ``None`` before
    every written value and, with ``wfr``, a transaction's external read of k before its own
    write of k (Elle's ``wfr-keys``); nothing else can be inferred from register reads."""
    final: dict[tuple, Txn] = {}
    inter: dict[tuple, Txn] = {}
    failed: dict[tuple, Txn] = {}
    _unique_writes(txns, "w")
    for t in txns:
        last: dict[Hashable, Any] = {}
        for f, k, v in t.mops:
            if f == "w":
                if t.type == "fail":
                    failed[(k, v)] = t
                else:
                    if k in last:
                        inter[(k, last[k])] = t
                    last[k] = v
        for k, v in last.items():
            final[(k, v)] = t
    ext: list[tuple[Txn, Hashable, Any]] = []
    ext_write: dict[tuple, Any] = {}  # (txn id, k) -> its final write of k
    for t in txns:
        if t.type != "ok":
            continue
        g.add_node(t.id)
        state: dict[Hashable, Any] = {}
        for f, k, v in t.mops:
            if f == "w":
                state[k] = v
                ext_write[(t.id, k)] = v
            elif k in state:
                if v != state[k]:
                    found.add("internal", f"T{t.id} read key {k!r} = {v!r} after it read or wrote {state[k]!r}",
                              (t,), key=k, expected=state[k], read=v)
            else:
                state[k] = v
                ext.append((t, k, v))
    succ: dict[Hashable, dict[Any, set]] = defaultdict(lambda: defaultdict(set))
    written: dict[Hashable, list] = defaultdict(list)
    for (k, v), w in final.items():
        written[k].append(v)
    by_read: dict[tuple, list[Txn]] = defaultdict(list)
    for t, k, v in ext:
        if v is not None:
            if (k, v) in failed:
                w = failed[(k, v)]
                found.add("G1a", f"T{t.id} read key {k!r} = {v!r}, written by T{w.id} which failed (aborted read)",
                          (t, w), key=k, value=v)
                continue
            if (k, v) in inter and inter[(k, v)] is not t:
                w = inter[(k, v)]
                found.add("G1b", f"T{t.id} read key {k!r} = {v!r}, an intermediate write of T{w.id}, which wrote "
                          f"{k!r} again later (intermediate read)", (t, w), key=k, value=v)
                continue
            w = final.get((k, v))
            if w is None:
                found.add("garbage-read", f"T{t.id} read key {k!r} = {v!r}, which no transaction wrote", (t,),
                          key=k, value=v)
                continue
            if w is not t:
                g.add(w.id, t.id, "wr", f"T{t.id} read key {k!r} = {v!r}, written by T{w.id}")
        mine = ext_write.get((t.id, k))
        if mine is not None and mine != v:
            by_read[(k, v)].append(t)
            if wfr and v is not None:
                succ[k][v].add(mine)
    for (k, v), ts in by_read.items():
        if len(ts) > 1:
            found.add("lost-update", f"{', '.join('T%d' % t.id for t in ts)} all read key {k!r} = {v!r} and all "
                      f"wrote {k!r}: at most one of their writes can follow that read (lost update)",
                      tuple(ts), key=k, value=v)
    for k, s in succ.items():
        cyc = _version_cycle(s)
        if cyc:
            found.add("cyclic-versions", f"key {k!r}: versions {' < '.join(map(repr, cyc))} form a cycle, "
                      f"inferred from transactions that read one value then wrote the next", (), key=k,
                      versions=tuple(cyc))
        for a, bs in s.items():
            wa = final.get((k, a))
            for b in bs:
                wb = final.get((k, b))
                if wa is not None and wb is not None:
                    g.add(wa.id, wb.id, "ww", f"T{wb.id} wrote key {k!r} = {b!r} after reading T{wa.id}'s {a!r}")
    for t, k, v in ext:
        nxt = written.get(k, []) if v is None else succ.get(k, {}).get(v, ())
        for b in nxt:
            w = final.get((k, b))
            if w is not None and w is not t:
                g.add(t.id, w.id, "rw", f"T{t.id} read key {k!r} = {v!r}, before T{w.id} wrote {b!r}")


def _version_cycle(succ: dict[Any, set]) -> list | None:
    """A cycle in a small version graph (DFS), closed (first value repeated), or None."""
    color: dict[Any, int] = {}
    for root in list(succ):
        if root in color:
            continue
        stack = [(root, iter(succ.get(root, ())))]
        color[root] = 1
        path = [root]
        while stack:
            v, it = stack[-1]
            for w in it:
                if color.get(w) == 1:
                    return path[path.index(w):] + [w]
                if w not in color:
                    color[w] = 1
                    path.append(w)
                    stack.append((w, iter(succ.get(w, ()))))
                    break
            else:
                color[v] = 2
                path.pop()
                stack.pop()
    return None
