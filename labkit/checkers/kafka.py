"""The checker of Maelstrom's ``kafka`` workload (after ``jepsen.tests.kafka`` and
``maelstrom.workload.kafka``): append-only logs per key, each offset holding one message.

History form (labkit ``History``, the kafka workload's; micro-ops as in jepsen.tests.kafka):

* ``f="send"``: invoke value ``[["send", k, v]]``; ok value ``[["send", k, [offset, v]]]``.
* ``f="poll"``: invoke value ``[["poll"]]``; ok value ``[["poll", {k: [[offset, v], ...]}]]``
  (the ``poll_ok`` reply's ``msgs``; a key with nothing new may be absent).
* ``f="commit_offsets"``: value ``{k: offset}`` (invoke and ok): the client processed every
  message of k up to and including ``offset``.
* ``f="list_committed_offsets"``: invoke value ``[k, ...]``; ok value ``{k: offset}``. Like
  Jepsen's ``assign``, it (re)starts the process's consumption of those keys, so poll
  order is not compared across it. ``f="assign"`` (value ``[k, ...]``) is read the same way.

Keys are strings in Maelstrom (JSON maps), messages unique per key (ints). ``fail`` ops did
not happen; ``info`` sends may have (their messages may appear in polls).

Anomalies (each a list of dicts in ``details["anomalies"]``):

* ``inconsistent-offsets``: one offset of a key seen holding two different messages.
* ``duplicate``: one message of a key at two offsets.
* ``lost-write``: an acknowledged send's offset is below the highest offset ever polled for
  its key, yet no poll ever returned it (Maelstrom: "If a client observes offset 10 but not
  offset 5, and we know 5 exists, we call that a lost write").
* ``poll-skip`` / ``int-poll-skip``: consecutive polls of a key by one process (resp. one
  poll's list) jump over an offset known to exist.
* ``nonmonotonic-poll`` / ``int-nonmonotonic-poll``: a poll's offsets do not increase after
  the process's previous poll of the key (resp. within one poll).
* ``nonmonotonic-send``: a process's acknowledged sends to a key get non-increasing offsets.
* ``aborted-read``: a poll returned a message whose send failed (Jepsen's G1a).
* ``committed-offset-regression``: ``list_committed_offsets`` returned, for a key, less than
  an offset already committed (by an ok ``commit_offsets``) or listed before it was invoked
  ("clients can request that this offset be *advanced*"); pass ``committed_monotonic=False``
  for a server that may keep a lower commit.

Also reported, not errors: ``unseen`` (acknowledged sends above every polled offset: no
recency requirement, Maelstrom's "unobserved") and counts.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from ..history import History, Op
from .verdict import Verdict

__all__ = ["check_kafka", "KAFKA_ANOMALIES"]

#: The anomalies that make a kafka history invalid.
KAFKA_ANOMALIES = ("inconsistent-offsets", "duplicate", "lost-write", "poll-skip", "int-poll-skip",
                   "nonmonotonic-poll", "int-nonmonotonic-poll", "nonmonotonic-send", "aborted-read",
                   "committed-offset-regression")

_SHOW = 8  # anomalies of each kind kept in full in details and explanations


def _mops(op: Op) -> tuple:
    v = op.value
    if not isinstance(v, tuple):
        raise ValueError(f"op #{op.index}: a {op.f} value is a list of micro-ops such as "
                         f"[['send', 'k', 1]] or [['poll']], got {v!r}")
    return v


def _pairs_of(msgs: Any, where: str) -> dict:
    if not isinstance(msgs, Mapping):
        raise ValueError(f"{where}: a poll result is a map of key -> [[offset, msg], ...], got {msgs!r}")
    out = {}
    for k, pairs in msgs.items():
        lst = []
        for pr in pairs:
            if not (isinstance(pr, (list, tuple)) and len(pr) == 2 and isinstance(pr[0], int)):
                raise ValueError(f"{where}: key {k!r}: expected [offset, msg] pairs, got {pr!r}")
            lst.append((pr[0], pr[1] if not isinstance(pr[1], list) else tuple(pr[1])))
        out[k] = lst
    return out


def check_kafka(history: History | Iterable[Op], *, committed_monotonic: bool = True) -> Verdict:
    """Check a kafka history (form in the module docstring). ``valid`` False if any of
    ``KAFKA_ANOMALIES`` occurs, None if nothing was sent or polled, else True. ``details``:
    ``anomaly_types``, ``anomalies`` (kind -> first few cases), ``counts`` (kind -> number),
    ``unseen`` (key -> count), ``sends_ok``, ``polls_ok``, ``keys``. Raises ValueError naming
    the op for a malformed value."""
    h = history if isinstance(history, History) else History(history)
    found: dict[str, list[dict]] = defaultdict(list)
    log: dict[Any, dict[int, set]] = defaultdict(lambda: defaultdict(set))   # k -> offset -> msgs
    acked: dict[Any, dict[Any, int]] = defaultdict(dict)                     # k -> msg -> offset
    failed: dict[Any, set] = defaultdict(set)
    polled: dict[Any, set] = defaultdict(set)                                # k -> msgs polled
    max_polled: dict[Any, int] = {}
    pairs = [p for p in h.pairs() if p.f in ("send", "poll", "txn", "commit_offsets",
                                             "list_committed_offsets", "assign")]
    polls = []
    n_send = n_poll = 0
    for p in pairs:
        if p.f not in ("send", "poll", "txn"):
            continue
        for m in _mops(p.invoke if p.type != "ok" else p.completion):
            if m[0] == "send":
                k, v = m[1], m[2]
                if p.type == "ok":
                    if not (isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], int)):
                        raise ValueError(f"op #{p.completion.index}: an ok send is ['send', k, [offset, msg]], "
                                         f"got {list(m)!r}")
                    o, msg = v
                    acked[k][msg] = o
                    log[k][o].add(msg)
                    n_send += 1
                elif p.type == "fail":
                    failed[k].add(v)
            elif m[0] == "poll" and p.type == "ok":
                msgs = _pairs_of(m[1] if len(m) > 1 else {}, f"op #{p.completion.index}")
                polls.append((p, msgs))
                n_poll += 1
                for k, prs in msgs.items():
                    for o, msg in prs:
                        log[k][o].add(msg)
                        polled[k].add(msg)
                        if msg in failed[k]:
                            found["aborted-read"].append({"key": k, "offset": o, "msg": msg,
                                                          "op": p.completion.index})
                    if prs:
                        max_polled[k] = max(max_polled.get(k, -1), max(o for o, _ in prs))
    offsets_of: dict[Any, dict[Any, set]] = defaultdict(lambda: defaultdict(set))
    for k, offs in log.items():
        for o, msgs in offs.items():
            if len(msgs) > 1:
                found["inconsistent-offsets"].append({"key": k, "offset": o, "msgs": sorted(msgs, key=repr)})
            for msg in msgs:
                offsets_of[k][msg].add(o)
    for k, by_msg in offsets_of.items():
        for msg, offs in by_msg.items():
            if len(offs) > 1:
                found["duplicate"].append({"key": k, "msg": msg, "offsets": sorted(offs)})
    known = {k: sorted(offs) for k, offs in log.items()}
    rank = {k: {o: i for i, o in enumerate(offs)} for k, offs in known.items()}
    unseen: dict[Any, int] = {}
    for k, by_msg in acked.items():
        top = max_polled.get(k, -1)
        for msg, o in by_msg.items():
            if msg in polled[k]:
                continue
            if o < top:
                found["lost-write"].append({"key": k, "offset": o, "msg": msg, "max_polled_offset": top})
            else:
                unseen[k] = unseen.get(k, 0) + 1
    _per_process(pairs, rank, found)
    if committed_monotonic:
        _committed(pairs, found)
    types = [t for t in KAFKA_ANOMALIES if found.get(t)]
    counts = {t: len(found[t]) for t in types}
    details = {"anomaly_types": types, "anomalies": {t: found[t][:_SHOW] for t in types}, "counts": counts,
               "unseen": unseen, "sends_ok": n_send, "polls_ok": n_poll, "keys": len(log)}
    expl = tuple(f"{t}: {c}" for t in types for c in found[t][:_SHOW])
    if types:
        return Verdict(False, "kafka", ", ".join(f"{t} x{counts[t]}" for t in types), details, expl)
    if n_send == 0 and n_poll == 0:
        return Verdict(None, "kafka", "no send or poll succeeded: nothing to check", details)
    total_unseen = sum(unseen.values())
    return Verdict(True, "kafka", f"{n_send} sends and {n_poll} polls ok; no lost, skipped, reordered or "
                   f"duplicated messages" + (f" ({total_unseen} acknowledged sends not polled yet)"
                                             if total_unseen else ""), details)


def _per_process(pairs: list, rank: dict, found: dict) -> None:
    """Poll order per process and key (reset by assign / list_committed_offsets), and send
    order per process and key."""
    last_poll: dict[tuple, int] = {}   # (process, k) -> last polled offset
    last_send: dict[tuple, int] = {}
    for p in pairs:
        if p.type != "ok":
            continue
        if p.f in ("list_committed_offsets", "assign"):
            keys = p.invoke.value if isinstance(p.invoke.value, tuple) else tuple(p.invoke.value or ())
            for k in keys:
                last_poll.pop((p.process, k), None)
            continue
        if p.f not in ("send", "poll", "txn"):
            continue
        idx = p.completion.index
        for m in p.completion.value:
            if m[0] == "send":
                k, (o, _) = m[1], m[2]
                prev = last_send.get((p.process, k))
                if prev is not None and o <= prev:
                    found["nonmonotonic-send"].append({"key": k, "process": p.process, "offsets": [prev, o],
                                                       "op": idx})
                last_send[(p.process, k)] = o
            elif m[0] == "poll":
                for k, prs in _pairs_of(m[1] if len(m) > 1 else {}, f"op #{idx}").items():
                    if not prs:
                        continue
                    offs = [o for o, _ in prs]
                    r = rank[k]
                    for a, b in zip(offs, offs[1:]):
                        if b <= a:
                            found["int-nonmonotonic-poll"].append({"key": k, "process": p.process,
                                                                   "offsets": [a, b], "op": idx})
                        elif r[b] - r[a] > 1:
                            found["int-poll-skip"].append({"key": k, "process": p.process, "offsets": [a, b],
                                                           "skipped": _between(r, a, b), "op": idx})
                    prev = last_poll.get((p.process, k))
                    if prev is not None:
                        first = offs[0]
                        if first <= prev:
                            found["nonmonotonic-poll"].append({"key": k, "process": p.process,
                                                               "offsets": [prev, first], "op": idx})
                        elif r[first] - r[prev] > 1:
                            found["poll-skip"].append({"key": k, "process": p.process, "offsets": [prev, first],
                                                       "skipped": _between(r, prev, first), "op": idx})
                    last_poll[(p.process, k)] = max(offs[-1], prev if prev is not None else -1)


def _between(rank: dict, a: int, b: int) -> list[int]:
    """Known offsets strictly between a and b (first few)."""
    return sorted(o for o in rank if a < o < b)[:5]


def _committed(pairs: list, found: dict) -> None:
    """list_committed_offsets results never below an offset committed or listed (ok) before
    the listing was invoked (real-time order = history order)."""
    events = []
    for p in pairs:
        if p.type != "ok" or p.f not in ("commit_offsets", "list_committed_offsets"):
            continue
        val = p.completion.value if p.f == "list_committed_offsets" else p.invoke.value
        if not isinstance(val, Mapping):
            raise ValueError(f"op #{p.completion.index}: {p.f} value is a map of key -> offset, got {val!r}")
        events.append((p.completion.index, 1, p, val))
        if p.f == "list_committed_offsets":
            events.append((p.invoke.index, 0, p, val))
    events.sort(key=lambda e: (e[0], e[1]))
    floor: dict[Any, tuple[int, int]] = {}  # k -> (offset, op index that established it)
    for _, kind, p, val in events:
        if kind == 0:
            keys = p.invoke.value if isinstance(p.invoke.value, tuple) else ()
            for k in keys:
                f = floor.get(k)
                got = val.get(k)
                if f is not None and (got is None or got < f[0]):
                    found["committed-offset-regression"].append(
                        {"key": k, "listed": got, "committed_before": f[0], "by_op": f[1],
                         "op": p.completion.index})
        else:
            for k, o in val.items():
                if isinstance(o, int) and (k not in floor or o > floor[k][0]):
                    floor[k] = (o, p.completion.index)
