"""Elle-style transactional consistency checking for ``txn-list-append`` and
``txn-rw-register`` histories (Maelstrom's transactional workloads).

Sources: Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
Observations" (VLDB 2020); Adya, "Weak Consistency" (MIT PhD thesis, 1999) for G0, G1a,
G1b, G1c, G-single and G2; Cerone & Gotsman, "Analysing Snapshot Isolation" (PODC 2016)
for G-nonadjacent; the anomaly and model tables of jepsen-io/elle
(``elle.consistency-model``). This is labkit's own implementation, not a port.

History form (labkit ``History``; Maelstrom's): ``f="txn"``, the value a list of micro-ops.
List append: ``["append", k, v]`` and ``["r", k, None]``; the ok completion has each read
filled in: ``["r", k, [1, 2]]`` (``None`` = empty list). Registers: ``["w", k, v]`` and
``["r", k, None]`` -> ``["r", k, v]`` (``None`` = never written). Every written value must be
unique per key (ValueError otherwise). ``fail`` txns did not happen; ``info`` txns may have:
their writes count, their reads are unknown.

How (Elle, sections 3-4). Each ok transaction is a vertex; edges are inferred:

* ``T1 -ww-> T2``: T2 wrote the version right after T1's; ``T1 -wr-> T2``: T2 read T1's write;
  ``T1 -rw-> T2``: T1 read a version that T2's write came after (anti-dependency);
  ``T1 -rt-> T2`` (strict-serializable only): T1 completed before T2 was invoked.
* List append recovers each key's whole version order: every read is a prefix of the longest
  read (else ``incompatible-order``), so ww, wr and rw edges are all known. An element an ok
  txn appended that no read shows came after the longest read (lists only grow): readers
  of that read rw-precede its txn, and the writer of the read's last element ww-precedes it.
* Registers reveal far less: only that the initial ``None`` precedes every write, and (``wfr``,
  on by default, Elle's ``wfr-keys``) that a transaction's read of k precedes its own write
  of k. So wr edges are exact, but ww and rw edges exist only where those facts give them:
  G0, G1c, G-single and G2-item are found when such edges close a cycle, and missed when the
  order of two blind writes is what would close it. ``incompatible-order`` and
  ``duplicate-elements`` do not exist for registers; ``lost-update`` (two transactions read
  one version of k and both wrote k) and ``cyclic-versions`` are found directly.
  ``INFERABLE`` lists what each workload can report; a verdict's ``details["not_inferable"]``
  names the anomalies its model forbids that the workload could never show.

Cycles: Tarjan's strongly connected components, then in each a breadth-first search for a
short cycle of each class, started from an edge of the kind the class needs:
``G0`` (ww only), ``G1c`` (ww and wr, at least one wr), ``G-single`` (exactly one rw),
``G-nonadjacent`` (two or more rw, never two in a row around the cycle: the long fork that
snapshot isolation forbids; Elle's class, after Cerone & Gotsman's characterisation of SI),
``G2-item`` (two or more rw, two of them in a row); with realtime edges, the same classes with ``-realtime``
appended when the cycle needs an rt edge. Roughly linear in the history; each component's
searches share a budget of ``search_budget`` visited edges -- exhausting it is reported
(``details["truncated"]``) and, if nothing forbidden was found, the verdict is unknown.

Models (``CONSISTENCY_MODELS``, after Elle's table): ``read-uncommitted`` forbids G0 (and
duplicate-elements, cyclic-versions, garbage-read); ``read-committed`` adds G1a, G1b, G1c,
incompatible-order; ``repeatable-read`` adds G-single, G-nonadjacent, G2-item, lost-update;
``snapshot-isolation`` is read-committed plus internal, G-single, G-nonadjacent, lost-update
(G2-item is allowed: write skew, whose rw edges are in a row); ``serializable`` forbids all of those; ``strict-serializable`` (the
default of Maelstrom's ``--consistency-models``) adds the ``-realtime`` cycles.

Non-cycle anomalies: ``G1a`` (aborted read: a read saw a failed txn's write), ``G1b``
(intermediate read), ``internal`` (a txn's read disagrees with its own earlier reads and
writes), ``duplicate-elements``, ``incompatible-order``, ``lost-update``, ``cyclic-versions``
and ``garbage-read`` (a read of a value nobody wrote; labkit's name).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..history import History, Op
from . import _elle_graph as eg
from ._elle_infer import Found, Txn, list_append, rw_register, transactions
from .verdict import Verdict

__all__ = ["check_list_append", "check_rw_register", "check_txn", "Anomaly", "CONSISTENCY_MODELS",
           "ANOMALIES", "INFERABLE", "forbidden_anomalies"]

_RC = ("G0", "duplicate-elements", "cyclic-versions", "garbage-read")
_RC2 = _RC + ("G1a", "G1b", "G1c", "incompatible-order")
_REALTIME = ("G0-realtime", "G1c-realtime", "G-single-realtime", "G-nonadjacent-realtime", "G2-item-realtime")

#: Consistency model -> the anomalies it forbids (after ``elle.consistency-model``: each
#: model's directly proscribed anomalies, those of the weaker models it implies, and the
#: anomalies implying them -- e.g. incompatible-order implies G1a, G0 implies G1c).
CONSISTENCY_MODELS: dict[str, frozenset[str]] = {
    "read-uncommitted": frozenset(_RC),
    "read-committed": frozenset(_RC2),
    "repeatable-read": frozenset(_RC2 + ("G-single", "G-nonadjacent", "G2-item", "lost-update")),
    "snapshot-isolation": frozenset(_RC2 + ("internal", "G-single", "G-nonadjacent", "lost-update")),
    "serializable": frozenset(_RC2 + ("internal", "G-single", "G-nonadjacent", "G2-item", "lost-update")),
    "strict-serializable": frozenset(_RC2 + ("internal", "G-single", "G-nonadjacent", "G2-item", "lost-update")
                                     + _REALTIME),
}

#: Every anomaly this checker can report, with a one-line meaning.
ANOMALIES: dict[str, str] = {
    "G0": "write cycle: transactions whose writes interleave (ww edges only)",
    "G1a": "aborted read: a committed txn read a write of a failed txn",
    "G1b": "intermediate read: a txn read a state another txn later overwrote within itself",
    "G1c": "circular information flow: a cycle of ww and wr edges with at least one wr",
    "G-single": "read skew: a dependency cycle with exactly one anti-dependency (rw) edge",
    "G-nonadjacent": ("a dependency cycle with two or more rw edges, no two of them in a row (e.g. a "
                      "long fork); snapshot isolation forbids it"),
    "G2-item": "write skew: a dependency cycle with two or more rw edges, two of them in a row",
    "lost-update": "two txns read the same version of a key and both wrote it",
    "internal": "a txn's read disagrees with its own earlier reads and writes",
    "duplicate-elements": "a list read holds an element twice (list append)",
    "incompatible-order": "two reads of a list are not prefixes of one order (list append)",
    "cyclic-versions": "the inferred version order of a register is cyclic",
    "garbage-read": "a read returned a value that no transaction wrote",
    **{a: f"{a.removesuffix('-realtime')} once real-time order (rt edges) is counted" for a in _REALTIME},
}


_CYCLES = ("G0", "G1c", "G-single", "G-nonadjacent", "G2-item") + _REALTIME
#: What each workload's inference can report. Registers: cycles only where the inferred
#: (partial) version order provides the edges -- see the module docstring.
INFERABLE: dict[str, frozenset[str]] = {
    "list-append": frozenset(_CYCLES + ("G1a", "G1b", "internal", "duplicate-elements", "incompatible-order",
                                        "garbage-read")),
    "rw-register": frozenset(_CYCLES + ("G1a", "G1b", "internal", "lost-update", "cyclic-versions",
                                        "garbage-read")),
}


def forbidden_anomalies(consistency_model: str | Iterable[str]) -> frozenset[str]:
    """The anomalies a model (or every model of a collection) forbids. ValueError names the
    known models for an unknown one."""
    ms = [consistency_model] if isinstance(consistency_model, str) else list(consistency_model)
    out: set[str] = set()
    for m in ms:
        if m not in CONSISTENCY_MODELS:
            raise ValueError(f"unknown consistency model {m!r}; known: {', '.join(CONSISTENCY_MODELS)}")
        out |= CONSISTENCY_MODELS[m]
    return frozenset(out)


@dataclass(frozen=True)
class Anomaly:
    """One anomaly. ``type`` as in ``ANOMALIES``; ``txns`` the ``T<op index>`` ids involved;
    ``cycle`` for cycle anomalies, Elle's notation (``"T1 < ww T2 < rw T1"``: T1 precedes T2
    by a ww edge, ...); ``steps`` why each edge holds; ``let`` each transaction written out."""

    type: str
    text: str
    txns: tuple[int, ...]
    let: tuple[str, ...] = ()
    cycle: str | None = None
    steps: tuple[str, ...] = ()
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"type": self.type, "text": self.text, "txns": list(self.txns), "let": list(self.let)}
        if self.cycle is not None:
            d["cycle"] = self.cycle
            d["steps"] = list(self.steps)
        d.update({k: v for k, v in self.data.items()})
        return d

    def __str__(self) -> str:
        lines = [f"{self.type}: {self.cycle if self.cycle else self.text}"]
        if self.let:
            lines.append("  Let: " + "; ".join(self.let))
        for s in self.steps:
            lines.append("  because " + s)
        return "\n".join(lines)


def check_list_append(history: History | Iterable[Op], consistency_model: str | Iterable[str] = "serializable",
                      *, search_budget: int = 1_000_000) -> Verdict:
    """Check a ``txn-list-append`` history against ``consistency_model`` (a key of
    ``CONSISTENCY_MODELS``, or several). Returns a Verdict: ``valid`` False if an anomaly the
    model forbids was found, None if the history has no ok txn or a cycle search ran out of
    budget before finding anything forbidden, else True. ``details``: ``consistency_model``,
    ``anomaly_types`` (all found), ``forbidden_found``, ``anomalies`` (type -> list of
    ``Anomaly.to_dict()``), ``not`` (models ruled out), ``txn_count``, ``edge_count``,
    ``truncated``. ``explanations``: the Anomaly objects, forbidden ones first.
    Raises ValueError for malformed micro-ops, non-unique appends or an unknown model."""
    return check_txn(history, "list-append", consistency_model, search_budget=search_budget)


def check_rw_register(history: History | Iterable[Op], consistency_model: str | Iterable[str] = "serializable",
                      *, wfr: bool = True, search_budget: int = 1_000_000) -> Verdict:
    """Check a ``txn-rw-register`` history (unique written values per key); as
    ``check_list_append`` (same details), with the weaker inference described in the module
    docstring. ``wfr``: assume a txn's write of k follows its own read of k (Elle's
    ``wfr-keys``)."""
    return check_txn(history, "rw-register", consistency_model, wfr=wfr, search_budget=search_budget)


def check_txn(history: History | Iterable[Op], workload: str = "list-append",
              consistency_model: str | Iterable[str] = "serializable", *, wfr: bool = True,
              search_budget: int = 1_000_000) -> Verdict:
    """``check_list_append`` or ``check_rw_register`` by ``workload`` (``"list-append"`` /
    ``"txn-list-append"`` or ``"rw-register"`` / ``"txn-rw-register"``)."""
    forbidden = forbidden_anomalies(consistency_model)
    h = history if isinstance(history, History) else History(history)
    wl = workload.removeprefix("txn-")
    if wl not in ("list-append", "rw-register"):
        raise ValueError(f"workload must be 'list-append' or 'rw-register', got {workload!r}")
    txns = transactions(h, ("append",) if wl == "list-append" else ("w",))
    by_id = {t.id: t for t in txns}
    g = eg.DepGraph()
    found = Found()
    if wl == "list-append":
        list_append(txns, g, found)
    else:
        rw_register(txns, g, found, wfr=wfr)
    realtime = any(a.endswith("-realtime") for a in forbidden)
    if realtime:
        _realtime_edges(txns, g)
    anomalies: list[Anomaly] = [Anomaly(d["type"], d["text"], d["txns"], d["let"],
                                        data={k: v for k, v in d.items() if k not in ("type", "text", "txns", "let")})
                                for ds in found.by_type.values() for d in ds]
    truncated = _cycles(g, by_id, realtime, search_budget, anomalies)
    name = "elle " + ("list-append" if wl == "list-append" else "rw-register")
    model = consistency_model if isinstance(consistency_model, str) else "+".join(consistency_model)
    types = sorted({a.type for a in anomalies})
    bad = [t for t in types if t in forbidden]
    ruled_out = [m for m, fs in CONSISTENCY_MODELS.items() if fs & set(types)]
    by_type: dict[str, list] = {}
    for a in anomalies:
        by_type.setdefault(a.type, []).append(a.to_dict())
    ok_count = sum(1 for t in txns if t.type == "ok")
    details = {"consistency_model": model, "anomaly_types": types, "forbidden_found": bad,
               "anomalies": by_type, "not": ruled_out, "txn_count": len(txns), "ok_count": ok_count,
               "edge_count": g.edge_count(), "truncated": truncated,
               "not_inferable": sorted(forbidden - INFERABLE[wl])}
    expl = sorted(anomalies, key=lambda a: (a.type not in forbidden, a.type))
    if bad:
        counts = ", ".join(f"{t} x{len(by_type[t])}" for t in bad)
        return Verdict(False, name, f"not {model}: {counts} in {ok_count} ok txns", details, expl)
    if ok_count == 0:
        return Verdict(None, name, "no ok transactions: nothing to check", details, ())
    if truncated:
        return Verdict(None, name, f"cycle search ran out of its budget ({search_budget} edges per component) "
                       f"before finding a forbidden anomaly; raise search_budget", details, expl)
    extra = f" (allowed by {model}: {', '.join(types)})" if types else ""
    return Verdict(True, name, f"{model}: no forbidden anomaly in {ok_count} ok txns, "
                   f"{g.edge_count()} dependencies{extra}", details, expl)


def _realtime_edges(txns: list[Txn], g: eg.DepGraph) -> None:
    """``T1 -rt-> T2`` when ok T1 completed before T2 was invoked, transitively reduced the
    way Elle does: each invocation links from the frontier of completed txns not yet
    succeeded by a completed txn that links from them."""
    events = []
    for t in txns:
        if t.type == "fail":
            continue
        events.append((t.invoked, 0, t))
        if t.type == "ok" and t.completed is not None:
            events.append((t.completed, 1, t))
    events.sort(key=lambda e: (e[0], e[1]))
    frontier: dict[int, Txn] = {}
    preds: dict[int, list[Txn]] = {}
    for _, kind, t in events:
        if kind == 0:
            preds[t.id] = list(frontier.values())
            for p in preds[t.id]:
                if t.id in g.out:  # only txns that are graph vertices
                    g.add(p.id, t.id, "rt", f"T{p.id} completed before T{t.id} was invoked")
        else:
            for p in preds.get(t.id, ()):
                frontier.pop(p.id, None)
            frontier[t.id] = t


_NON_RT = frozenset({"ww", "wr", "rw"})
_ALL = frozenset({"ww", "wr", "rw", "rt"})


def classify(labels: list[str]) -> str:
    """Cycle class from its edge labels (Adya; Elle's -realtime suffix when rt is needed)."""
    n_rw = labels.count("rw")
    if n_rw >= 2:
        in_a_row = any(a == b == "rw" for a, b in zip(labels, labels[1:] + labels[:1]))
        base = "G2-item" if in_a_row else "G-nonadjacent"
    else:
        base = "G-single" if n_rw == 1 else "G1c" if "wr" in labels else "G0"
    return base + ("-realtime" if "rt" in labels else "")


def _cycles(g: eg.DepGraph, by_id: dict[int, Txn], realtime: bool, budget_n: int,
            out: list[Anomaly]) -> bool:
    """Append cycle anomalies to ``out``; True if some search ran out of budget."""
    truncated = False
    searches = [  # (start-edge kind, kinds allowed, max_rw, min_rw, rw never in a row) counting the start edge
        ("ww", frozenset({"ww"}), 0, 0, False),
        ("wr", frozenset({"ww", "wr"}), 0, 0, False),
        ("rw", _NON_RT, 1, 1, False),
        ("rw", _NON_RT, None, 2, True),      # G-nonadjacent, before G2-item: the shortest cycle
        ("rw", _NON_RT, None, 2, False),     # with two rw may have them in a row, and SI allows that
    ]
    phases = [(_NON_RT, searches)]
    if realtime:
        phases.append((_ALL, [("rt", frozenset({"ww", "wr", "rt"}), 0, 0, False), ("rt", _ALL, 1, 1, False),
                              ("rt", _ALL, None, 2, True), ("rt", _ALL, None, 2, False)]))
    sub: dict[frozenset, dict] = {}  # kinds without rw -> vertex -> its SCC number there
    for _, specs in phases:
        for _, allowed, _, _, _ in specs:
            if "rw" not in allowed and allowed not in sub:
                sub[allowed] = {v: i for i, c in enumerate(eg.sccs(g, allowed)) for v in c}
    topo = {v: i for i, c in enumerate(eg.sccs(g, ("ww", "wr"), singletons=True)) for v in c}
    for kinds, specs in phases:
        for comp in eg.sccs(g, kinds):
            within = set(comp)
            budget = eg.Budget(budget_n)
            seen_types: set[str] = set()
            for start_kind, allowed, max_rw, min_rw, nonadjacent in specs:
                same = sub.get(allowed)
                # a G-single closes through ww/wr edges: b must reach a there, which needs
                # b's ww/wr component to come no earlier than a's in Tarjan's order
                order = topo if allowed is _NON_RT and max_rw == 1 else None
                for a, b, ks in _start_edges(g, within, start_kind, allowed):
                    if same is not None and (same.get(a) is None or same.get(a) != same.get(b)):
                        continue  # no cycle of these kinds through this edge
                    if order is not None and order[b] < order[a]:
                        continue  # b cannot reach a through ww/wr edges
                    cost = 1 if start_kind == "rw" else 0
                    p = eg.path(g, b, a, within, allowed, budget,
                                None if max_rw is None else max_rw - cost, max(0, min_rw - cost),
                                nonadjacent, start_kind == "rw")
                    if budget.truncated:
                        truncated = True
                        break
                    if p is None or len(set(p)) != len(p) or a in p[1:-1]:
                        continue  # none, or not a simple cycle (it would not be of this class)
                    cyc = [a] + p
                    labels = eg.label(g, cyc, allowed)
                    kind = classify(labels)
                    if kind in seen_types or (kinds is _ALL and "rt" not in labels):
                        continue
                    seen_types.add(kind)
                    out.append(_cycle_anomaly(g, by_id, cyc, labels, kind))
                    break
    return truncated


def _start_edges(g: eg.DepGraph, within: set, kind: str, allowed: frozenset[str]):
    """Edges inside ``within`` that a cycle of the class must use as ``kind`` (an edge that
    also has a weaker allowed kind would be shown as that one, so it is skipped)."""
    weaker = {"ww": set(), "wr": {"ww"}, "rt": {"ww", "wr"}, "rw": {"ww", "wr", "rt"}}[kind] & allowed
    for a in within:
        for b, ks in g.out.get(a, {}).items():
            if b in within and kind in ks and not (ks & weaker):
                yield a, b, ks


def _cycle_anomaly(g: eg.DepGraph, by_id: dict[int, Txn], cyc: list, labels: list[str], kind: str) -> Anomaly:
    text = f"T{cyc[0]}" + "".join(f" < {lab} T{b}" for lab, b in zip(labels, cyc[1:]))
    steps = tuple(g.why.get((a, b, lab), f"T{a} -{lab}-> T{b}") for a, b, lab in zip(cyc, cyc[1:], labels))
    ids = tuple(cyc[:-1])
    return Anomaly(kind, f"cycle {text}", ids, tuple(str(by_id[i]) for i in ids if i in by_id), text, steps,
                   {"edges": [[a, lab, b] for a, b, lab in zip(cyc, cyc[1:], labels)]})
