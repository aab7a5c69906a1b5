"""Linearizability: Wing & Gong's search with Lowe's cache, split per key.

Theory of operation. A history is linearizable if every operation can be given one instant
between its invocation and its completion such that, in the order of those instants, the
model (a sequential specification) accepts every result. We search for that order the way
Wing & Gong (1993) did, on a doubly linked list of call and return events in history order:

* Walk the list from the front. At a *call*, try to linearize the operation now: if the
  model accepts it, push (call, old state) on a stack, remove the call and its return from
  the list ("lift") and start again from the front.
* At a *return*, the operation it belongs to had to be linearized by now and was not: undo
  the last choice (pop, put the events back) and try the next call after it.
* When every ``ok`` operation is linearized, the history is linearizable; when the stack
  is empty at a return, it is not.

Lowe (2017) made this practical: the rest of the search depends only on *which* operations
are linearized and the model state, so each pair (bitset of operations, state) is explored
once (``memo=False`` turns that cache off, for the benchmark). Histories on independent keys
are split and checked one key at a time (Herlihy & Wing's locality / P-compositionality).

Jepsen's semantics: ``fail`` operations did not happen and are dropped. ``info`` operations
may have happened at any time after their invocation, or never: their return is put after
every other event, and the search may leave them out. ``info`` reads are dropped (they
change nothing and their result is unknown). A search that runs out of time answers
"unknown", never "linearizable".

On a violation, the explanation comes from the furthest point the search reached: the
operation whose completion it could never get past, the model states it could have seen
there, the operations concurrent with it, and one order of the operations placed before it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from ..history import History, Op, OpPair
from .models import Model, model as _model
from .verdict import Verdict

__all__ = ["check_linearizable", "Violation"]

_INF = float("inf")


@dataclass(frozen=True)
class Violation:
    """Why a history is not linearizable (for one key).

    ``op`` could not be placed: no order of the operations before its completion lets the
    model accept it. ``states`` are the model states it could have seen just before it (up to
    20; ``n_states`` counts them all); ``concurrent`` are the operations whose intervals
    overlap it; ``linearized`` is one order of operations the search had placed by then."""

    key: Any
    op: OpPair
    states: tuple
    n_states: int
    concurrent: tuple[OpPair, ...]
    linearized: tuple[OpPair, ...]
    model: str

    @property
    def window(self) -> tuple[OpPair, ...]:
        """The smallest failing window: the op and those concurrent with it, by invocation."""
        return tuple(sorted((self.op, *self.concurrent), key=lambda p: p.invoke.index))

    def __str__(self) -> str:
        key = f" on key {self.key!r}" if self.key is not None else ""
        states = ", ".join(repr(s) for s in self.states)
        more = f" (and {self.n_states - len(self.states)} more)" if self.n_states > len(self.states) else ""
        lines = [f"Not linearizable{key} ({self.model}): {self.op} cannot be placed.",
                 f"  The states it could have seen: {states}{more}."]
        if self.concurrent:
            lines.append("  Concurrent with it:")
            lines += [f"    {p}" for p in self.concurrent[:10]]
            if len(self.concurrent) > 10:
                lines.append(f"    ... and {len(self.concurrent) - 10} more")
        else:
            lines.append("  Nothing was concurrent with it.")
        if self.linearized:
            tail = self.linearized[-5:]
            lines.append(f"  Last of {len(self.linearized)} ops placed before it: "
                         + "; ".join(f"{p.f} {p.value!r}" for p in tail))
        return "\n".join(lines)


class _Timeout(Exception):
    pass


def _search(m: Model, pairs: list[OpPair], deadline: float, memo: bool) -> tuple[bool, dict]:
    """Search one key's operations. Returns (linearizable, info); raises _Timeout."""
    ops: list[tuple[OpPair, bool, str, Any]] = []   # (pair, is_info, f, value)
    for p in pairs:
        t = p.type
        if t == "fail" or (t == "info" and m.is_read(p.f)):
            continue
        ops.append((p, t == "info", p.f, p.value))
    n_ok = sum(1 for o in ops if not o[1])
    if n_ok == 0:
        return True, {"configs": 0}
    # Events in history order; info returns after everything, in invocation order.
    big = max(max(p.invoke.index for p, *_ in ops), max((p.completion.index for p, i, *_ in ops
                                                          if not i), default=0)) + 1
    evs = []
    for i, (p, is_info, _, _) in enumerate(ops):
        evs.append((p.invoke.index, i, True))
        evs.append((big + i if is_info else p.completion.index, i, False))  # type: ignore[union-attr]
    evs.sort()
    n = len(evs)
    # Linked list over event slots 1..n; slot 0 is the head, next of the last is 0 (end).
    nxt = list(range(1, n + 2))
    nxt[n] = 0
    prv = list(range(-1, n))
    is_call = [False] * (n + 1)
    op_of = [0] * (n + 1)
    match = [0] * (n + 1)
    call_slot = [0] * len(ops)
    for slot, (_, i, c) in enumerate(evs, 1):
        is_call[slot], op_of[slot] = c, i
        if c:
            call_slot[i] = slot
        else:
            match[call_slot[i]] = slot
    steps = [m.step_info if o[1] else m.step for o in ops]
    fs = [o[2] for o in ops]
    vals = [o[3] for o in ops]
    infos = [o[1] for o in ops]

    state: Hashable = m.init()
    lin = 0
    remaining = n_ok
    stack: list[tuple[int, Hashable]] = []
    cache: set = set()
    best = -1
    best_states: set = set()
    best_stack: list[int] = []
    configs = 0
    entry = nxt[0]
    while True:
        configs += 1
        if not configs & 4095 and time.monotonic() > deadline:
            raise _Timeout
        if is_call[entry]:
            i = op_of[entry]
            new = steps[i](state, fs[i], vals[i])
            if new is not None:
                newlin = lin | (1 << i)
                k = (newlin, new)
                if not memo or k not in cache:
                    if memo:
                        cache.add(k)
                    stack.append((entry, state))
                    state, lin = new, newlin
                    if not infos[i]:
                        remaining -= 1
                        if remaining == 0:
                            return True, {"configs": configs}
                    ret = match[entry]                      # lift the call and its return
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    nxt[prv[ret]] = nxt[ret]
                    prv[nxt[ret]] = prv[ret]
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            if entry > best:
                best, best_states, best_stack = entry, {state}, [op_of[s] for s, _ in stack]
            elif entry == best and len(best_states) < 1000:
                best_states.add(state)
            if not stack:
                break
            entry, state = stack.pop()
            i = op_of[entry]
            lin &= ~(1 << i)
            if not infos[i]:
                remaining += 1
            ret = match[entry]                              # put them back, in reverse
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    bad = ops[op_of[best]][0]
    return False, {"configs": configs, "op": bad, "states": best_states,
                   "linearized": [ops[i][0] for i in best_stack]}


def _concurrent(op: OpPair, pairs: list[OpPair]) -> tuple[OpPair, ...]:
    a, b = op.invoke.index, op.completion.index if op.completion is not None else _INF
    out = []
    for p in pairs:
        if p is op or p.type == "fail":
            continue
        end = p.completion.index if p.completion is not None and p.type != "info" else _INF
        if p.invoke.index < b and end > a:
            out.append(p)
    return tuple(out)


def check_linearizable(history: History | Iterable[Op], model: str | Model = "kv", *,
                       timeout: float | None = 10.0, memo: bool = True) -> Verdict:
    """Is ``history`` linearizable with respect to ``model`` (a name in ``MODELS`` or a Model)?

    Client operations are grouped by ``key`` and each group is checked on its own copy of
    the model. ``timeout`` (seconds, shared by all keys; ``None`` = no limit) bounds the
    search: when it runs out and no key has failed, the verdict is unknown (``valid=None``).
    ``memo=False`` disables Lowe's cache (exponentially slower; for benchmarks).

    Raises HistoryError for a malformed history, ValueError for an op ``f`` the model does
    not know."""
    h = history if isinstance(history, History) else History(history)
    m = _model(model)
    name = f"linearizable({m.name})"
    pairs = h.pairs()
    unknown_fs = sorted({p.f for p in pairs} - set(m.fs))
    if unknown_fs:
        raise ValueError(f"model {m.name!r} has no operation(s) {unknown_fs}; it knows {sorted(m.fs)}")
    groups: dict[Any, list[OpPair]] = {}
    for p in pairs:
        groups.setdefault(p.key, []).append(p)
    t0 = time.monotonic()
    deadline = _INF if timeout is None else t0 + timeout
    violations: list[Violation] = []
    timed_out: list[Any] = []
    configs = 0
    for key in sorted(groups, key=repr):
        ps = groups[key]
        try:
            ok, info = _search(m, ps, deadline, memo)
        except _Timeout:
            timed_out.append(key)
            deadline = -_INF  # the rest can't be checked either: record them as unchecked
            continue
        configs += info["configs"]
        if not ok:
            op = info["op"]
            states = sorted(info["states"], key=repr)
            violations.append(Violation(key, op, tuple(states[:20]), len(states), _concurrent(op, ps),
                                        tuple(info["linearized"]), m.name))
    details = {"model": m.name, "ops": len(pairs), "keys": len(groups), "configs": configs,
               "seconds": round(time.monotonic() - t0, 4), "memo": memo,
               "failed_keys": [v.key for v in violations], "unchecked_keys": timed_out}
    if violations:
        v = violations[0]
        what = f"key {v.key!r}: " if v.key is not None else ""
        summary = (f"{what}{v.op.f} {v.op.value!r} by process {v.op.process} (op #{v.op.invoke.index}) "
                   f"cannot be linearized" + (f"; {len(violations)} keys fail" if len(violations) > 1 else ""))
        return Verdict(False, name, summary, details, tuple(violations))
    if timed_out:
        summary = (f"timed out after {timeout:g} s: {len(groups) - len(timed_out)} of {len(groups)} "
                   f"key(s) linearizable, {len(timed_out)} unchecked (first: {timed_out[0]!r})")
        return Verdict(None, name, summary, details, (summary,))
    return Verdict(True, name, f"{len(pairs)} operations on {len(groups)} key(s) are linearizable", details)
