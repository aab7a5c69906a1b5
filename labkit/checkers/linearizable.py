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
are split and checked one key at a time (Herlihy & Wing's locality / P-compositionality;
Horn & Kroening 2015, as in Porcupine).

Refinements over that search (``algorithm="reference"`` keeps it as it was, as the baseline
and the referee of the property tests):

* The read reduction. A pure read that the current state satisfies, and whose call is
  among the next candidates, can be linearized now without loss: it changes nothing, so any
  linearization that places it later can place it here instead. It is placed without leaving
  a choice point, and when its subtree fails the search backs up past it at once.
* Twins. Two open ops with the same ``f`` and value act the same; of two that could both go
  next, only the one that must return first is tried (swap them in any linearization).
* Lookahead (models with ``may_read``: register, cas-register, kv). After each placement,
  every read that could go next must still be able to see its value through the writes it
  overlaps that are not placed yet (for kv: the value starts with the state and then with
  one of those appends, or with a pending put); if not, the configuration is dead. This is
  what decides the contended kv histories: without it a slow append linearized too early is
  refuted only by a read much later, after every interleaving in between has been tried.
  A read that no write invoked before its return could satisfy fails at once, unsearched;
  so does, in registers, a read every setter of whose value is surely overwritten before it
  was invoked (a classic stale read) -- after the search has had 100,000 configurations to
  find the fuller explanation (the states it could have seen).
* Info ops. A cached config with the same ok ops and state but a subset of the info ops
  placed dominates (an info op never has to be placed), so the cache maps (ok ops, state) to
  info sets and prunes supersets. In register-like models (``blind_writes``) an info op is
  placed only where an op that could go next observes what it left.
* A compact cache key: every ok op whose return has been passed is linearized, so the bitset
  is kept as (watermark, bits above it) over the ok ops in invocation order, plus a bitset
  of info ops; a cache entry costs about the concurrency in bits, not the history's length.

Tried and measured, not kept: Lowe's just-in-time linearization (place an op only when its
return forces it; configurations (event, placed open ops, state)) decided the contended kv
histories correctly but explored ~1.4 M configurations on the hardest key against ~1.3 M for
the plain search, slower per step; trying candidates earliest-return-first cut
configurations by a quarter but cost more per step than it saved. Still hard for the search
itself: a violation in a register history with many (~20) info ops that the stale-read
check above does not recognise, where every subset of info ops placed before it must be
refuted. Sources: Wing & Gong,
"Testing and verifying concurrent objects" (JPDC 1993); Lowe, "Testing for
linearizability" (CCPE 2017); Horn & Kroening, "Faster linearizability checking via
P-compositionality" (FORTE 2015); Porcupine's ``checkSingle`` (A. Athalye) for the list
layout and per-key partition.

Budgets: a timeout and a memory budget (the cache's entries are counted and their bytes
estimated; the process's RSS growth is checked too). Reaching either gives "unknown" with
the reason, never a crash or a pass. Progress (keys done, configurations) is shown for long
checks in a notebook or on a terminal.

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

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

from ..history import History, Op, OpPair
from .models import Model, Register, _s, model as _model
from .._progress import Progress, wanted
from .verdict import Verdict

__all__ = ["check_linearizable", "Violation", "ModelValueError", "default_memory_budget", "parse_size"]

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
                 f"  The states it could have seen: {states}{more}." if self.n_states else
                 "  No state it could read: every op that leaves that value came after it, or was "
                 "surely overwritten before it was invoked."]
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


class _OutOfMemory(Exception):
    pass


#: Bytes of one cache entry besides its bitset and state: the set slot (hash + pointer, at a
#: load factor of 3/5) and the key tuple with its small ints. An estimate, checked against RSS.
_ENTRY_BYTES = 130
#: Configurations the search may spend to explain a read already known to be stale.
_EXPLAIN_CONFIGS = 100_000
_GB = 1 << 30


def default_memory_budget() -> int:
    """Bytes a check may use by default: 1 GiB, or half the memory available now if that is
    less (Binder gives 2 GB in all). Linux reads ``/proc/meminfo``; elsewhere 1 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return max(64 << 20, min(_GB, int(line.split()[1]) * 1024 // 2))
    except (OSError, ValueError, IndexError):
        pass
    return _GB


def parse_size(size: "int | float | str") -> int:
    """A byte count from ``1073741824``, ``"1G"``, ``"512M"``, ``"64k"`` or ``"2GB"`` (binary
    units: K = 1024). Raises ValueError for anything else, or a size that is not positive."""
    if isinstance(size, bool):
        raise ValueError(f"a memory size is a number of bytes or e.g. '1G', not {size!r}")
    if isinstance(size, (int, float)):
        n = int(size)
    else:
        s = str(size).strip().upper().removesuffix("B").removesuffix("I")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(s[-1:], 1)
        try:
            n = int(float(s[:-1] if mult > 1 else s) * mult)
        except ValueError:
            raise ValueError(f"a memory size is a number of bytes or e.g. '1G', '512M'; got {size!r}") from None
    if n <= 0:
        raise ValueError(f"a memory budget must be > 0 bytes, got {size!r}")
    return n


def _fmt_bytes(n: float) -> str:
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{int(n)} bytes"


def _rss() -> int | None:
    """Resident set size in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


try:
    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE = 4096


#: Seconds a check runs before its progress is shown (see ``labkit._progress``).
PROGRESS_AFTER_S = 2.0


def _progress_bar(mode: Any, keys: int) -> Progress | None:
    """The check's progress display (keys done / total, configurations), or None."""
    if not wanted(mode):
        return None
    return Progress("linearizability", keys, unit="keys", mode=mode, after=PROGRESS_AFTER_S)


class _Limits:
    """The time and memory budgets of one check, shared by its keys, and its progress."""

    every = 4096   # configurations between checks

    def __init__(self, deadline: float, budget: int, progress: Progress | None) -> None:
        self.deadline, self.budget, self.progress = deadline, budget, progress
        self.rss0 = _rss()
        self.ticks = 0
        self.configs_before = 0     # configurations of the keys already done
        self.keys_done = 0
        self.key: Any = None
        self.reason = ""

    def check(self, configs: int, entries: int, nbytes: int) -> None:
        if time.process_time() > self.deadline:
            raise _Timeout
        self.ticks += 1
        if nbytes > self.budget:
            self.reason = (f"memory budget of {_fmt_bytes(self.budget)} reached after "
                           f"{self.configs_before + configs:,} configurations ({entries:,} cache entries, "
                           f"about {_fmt_bytes(nbytes)}, on key {self.key!r})")
            raise _OutOfMemory
        if not self.ticks % 8 and self.rss0 is not None:
            rss = _rss()
            if rss is not None and rss - self.rss0 > self.budget:
                self.reason = (f"memory budget of {_fmt_bytes(self.budget)} reached after "
                               f"{self.configs_before + configs:,} configurations (the process grew by "
                               f"{_fmt_bytes(rss - self.rss0)}, on key {self.key!r})")
                raise _OutOfMemory
        if self.progress is not None:
            self.show(self.configs_before + configs)

    def show(self, configs: int, force: bool = False) -> None:
        self.progress.update(self.keys_done, f"{configs:,} configurations" + ("" if force else f" (key {self.key!r})"),
                             force=force, keys_done=self.keys_done, keys=self.progress.total, configs=configs,
                             key=None if force else self.key)

def _prepare(m: Model, pairs: list[OpPair]) -> list[tuple[OpPair, bool, str, Any]]:
    """(pair, is_info, f, value) of the ops the search places: fail and info reads dropped."""
    ops = []
    for p in pairs:
        t = p.type
        if t == "fail" or (t == "info" and m.is_read(p.f)):
            continue
        ops.append((p, t == "info", p.f, p.value))
    return ops


def _event_list(ops: list[tuple[OpPair, bool, str, Any]]) -> tuple[int, list, list, list, list, list]:
    """Wing & Gong's doubly linked list of call and return events, in history order (an info
    op's return after everything, in invocation order): slots 1..n, slot 0 the head, the
    next of the last is 0. Returns (n, nxt, prv, is_call, op_of, match) -- ``match`` maps a
    call's slot to its return's."""
    big = max(max(p.invoke.index for p, *_ in ops), max((p.completion.index for p, i, *_ in ops
                                                          if not i), default=0)) + 1
    evs = []
    for i, (p, is_info, _, _) in enumerate(ops):
        evs.append((p.invoke.index, i, True))
        evs.append((big + i if is_info else p.completion.index, i, False))  # type: ignore[union-attr]
    evs.sort()
    n = len(evs)
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
    return n, nxt, prv, is_call, op_of, match


def _search(m: Model, pairs: list[OpPair], limits: "_Limits") -> tuple[bool, dict]:
    """Search one key's operations with Wing & Gong's walk, Lowe's cache, a compact cache key
    and the read reduction (see the module docstring). Returns (linearizable, info); raises
    _Timeout or _OutOfMemory."""
    ops = _prepare(m, pairs)
    n_ok = sum(1 for o in ops if not o[1])
    if n_ok == 0:
        return True, {"configs": 0, "cache": 0}
    n, nxt, prv, is_call, op_of, match = _event_list(ops)
    steps = [m.step_info if o[1] else m.step for o in ops]
    fs = [o[2] for o in ops]
    vals = [o[3] for o in ops]
    infos = [o[1] for o in ops]
    reads = [not o[1] and m.is_read(o[2]) for o in ops]
    # Bit positions: ok ops count 0..n_ok-1 in invocation order (the watermark ``w`` moves past
    # the prefix that is all linearized); info ops have their own small bitset.
    pos = [0] * len(ops)
    k_ok = k_info = 0
    for i, o in enumerate(ops):
        if o[1]:
            pos[i] = 1 << k_info
            k_info += 1
        else:
            pos[i] = k_ok
            k_ok += 1

    # Twins: ops with the same f and value act the same, so of two that can both go next, only
    # the one that must return first needs trying (an exchange argument; info ops never
    # return). twins[c]: the same-acting ops invoked before c, returning no later, still open
    # at c's call.
    ret_at = [0] * len(ops)
    call_at = [0] * len(ops)
    for slot in range(1, n + 1):
        if is_call[slot]:
            call_at[op_of[slot]] = slot
        else:
            ret_at[op_of[slot]] = slot
    twins: list[tuple[int, ...]] = [()] * len(ops)
    by_act: dict = {}
    for i in sorted(range(len(ops)), key=call_at.__getitem__):
        try:
            act = (fs[i], vals[i], infos[i])
            same = by_act.setdefault(act, [])
        except TypeError:
            continue
        same[:] = [t for t in same if ret_at[t] > call_at[i]]
        twins[i] = tuple(t for t in same if ret_at[t] <= ret_at[i])
        same.append(i)

    blind = getattr(m, "blind_writes", frozenset())

    # Lookahead (models with ``may_read``): the writes each read overlaps, i.e. the only ops
    # that can still be placed before it once it can be placed itself.
    may_read = getattr(m, "may_read", None)
    writers: dict[int, tuple[int, ...]] = {}
    stale_verdict = None
    if may_read is not None:
        open_w: set[int] = set()
        open_r: dict[int, list[int]] = {}
        for i, c in zip(op_of[1:], is_call[1:]):   # the events in history order
            if reads[i]:
                if c:
                    open_r[i] = list(open_w)
                else:
                    writers[i] = tuple(open_r.pop(i))
            elif c:
                open_w.add(i)
                for lst in open_r.values():
                    lst.append(i)
            else:
                open_w.discard(i)

        # A read that no write invoked before its return could ever satisfy is a violation
        # whatever the order (e.g. a value never written): say so without a search. Cheap only
        # while few distinct writes exist, as in registers over a few values.
        stale = _overwritten_read(m, ops)
        if stale is not None:
            # Certainly not linearizable. The search gives the better explanation (the
            # states the read could have seen); let it try for a while.
            stale_verdict = (False, {"configs": 0, "cache": 0, "bytes": 0, "op": ops[stale][0],
                                     "states": set(), "linearized": []})
        init = m.init()
        seen_w: dict = {}
        for i, c in zip(op_of[1:], is_call[1:]):   # the events in history order
            if len(seen_w) > 64:
                break
            if c and not reads[i]:
                seen_w.setdefault((fs[i], vals[i]), None)
            elif not c and reads[i] and not may_read(init, vals[i], list(seen_w)):
                return False, {"configs": 0, "cache": 0, "bytes": 0, "op": ops[i][0], "states": set(),
                               "linearized": []}

    state: Hashable = m.init()
    w, win, inf = 0, 0, 0
    remaining = n_ok
    stack: list[tuple] = []
    # Lowe's cache, keyed by (watermark, window, state) -> the info-op sets seen with it. A
    # config whose info set contains one seen before is dominated (an info op never has to be
    # placed, so the config with fewer placed can do all this one can): pruned like a hit.
    cache: dict = {}
    entries = 0
    best = -1
    best_states: set = set()
    best_path: tuple | None = None
    path: tuple | None = None      # the ops placed, as a linked list (op, rest): O(1) to keep
    configs = 0
    nbytes = 0
    sizeof = sys.getsizeof
    check_every = limits.every
    entry = nxt[0]
    while True:
        configs += 1
        if not configs % check_every:
            limits.check(configs, entries, nbytes)
            if stale_verdict is not None and configs >= _EXPLAIN_CONFIGS:
                stale_verdict[1]["configs"] = configs
                return stale_verdict
        if is_call[entry]:
            i = op_of[entry]
            if twins[i]:
                for t in twins[i]:
                    if not (inf & pos[t] if infos[t] else pos[t] < w or (win >> (pos[t] - w)) & 1):
                        break               # an open twin that returns no later goes first
                else:
                    t = -1
                if t >= 0:
                    entry = nxt[entry]
                    continue
            new = steps[i](state, fs[i], vals[i])
            if new is not None and infos[i] and blind:
                # Register-like models: an info op placed where nothing reads what it left
                # could as well not have happened (the next op overwrites it): place it only
                # when some op that could go next observes the new state.
                e = nxt[0]
                while is_call[e]:
                    r = op_of[e]
                    if r != i and fs[r] not in blind and steps[r](new, fs[r], vals[r]) is not None:
                        break
                    e = nxt[e]
                else:
                    new = None
            if new is not None:
                if infos[i]:
                    nw, nwin, ninf = w, win, inf | pos[i]
                else:
                    b = pos[i] - w
                    nwin = win | (1 << b)
                    nw, ninf = w, inf
                    if not b:
                        t = (~nwin & (nwin + 1)).bit_length() - 1
                        nwin >>= t
                        nw += t
                key = (nw, nwin, new)
                forced = reads[i] and new == state
                seen = cache.get(key)
                if seen is None:
                    cache[key] = [ninf]
                    fresh = True
                    nbytes += _ENTRY_BYTES + sizeof(nwin) + sizeof(new)
                elif ninf:
                    fresh = True
                    for x in seen:
                        if not x & ~ninf:
                            fresh = False
                            break
                else:
                    fresh = 0 not in seen
                if fresh and seen is not None:
                    seen.append(ninf)
                    nbytes += 8 + sizeof(ninf)
                if fresh:
                    entries += 1
                    stack.append((entry, state, w, win, inf, forced, path))
                    path = (i, path)
                    state, w, win, inf = new, nw, nwin, ninf
                    if not infos[i]:
                        remaining -= 1
                        if remaining == 0:
                            return True, {"configs": configs, "cache": entries, "bytes": nbytes}
                    ret = match[entry]
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    nxt[prv[ret]] = nxt[ret]
                    prv[nxt[ret]] = prv[ret]
                    entry = nxt[0]
                    if may_read is not None and not forced:     # a placed read changes nothing
                        # Can every read that could go next still see its value, given the
                        # writes it overlaps that are not placed yet? If not, this config is
                        # dead: treat it as stuck at that read's return.
                        e = entry
                        while is_call[e]:
                            r = op_of[e]
                            if reads[r]:
                                ws = []
                                for j in writers[r]:
                                    if infos[j]:
                                        if not inf & pos[j]:
                                            ws.append((fs[j], vals[j]))
                                    elif pos[j] >= w and not (win >> (pos[j] - w)) & 1:
                                        ws.append((fs[j], vals[j]))
                                if not may_read(state, vals[r], ws):
                                    entry = match[e]
                                    if entry >= best and len(best_states) < 1000:
                                        # The states it could have seen: these writes placed
                                        # in any order before it (as the full search would).
                                        seen = _closure(state, [j for j in writers[r] if (
                                            not inf & pos[j] if infos[j] else
                                            pos[j] >= w and not (win >> (pos[j] - w)) & 1)], steps, fs, vals)
                                        if entry > best:
                                            best, best_states = entry, seen
                                            best_path = path
                                        else:
                                            best_states |= seen
                                        entry = 0       # recorded: just back up
                                    break
                            e = nxt[e]
                    continue
                if not forced:
                    entry = nxt[entry]
                    continue
                # A read that fits the state and leads to a known dead end: so is this config.
            else:
                entry = nxt[entry]
                continue
        elif entry > best:
            best, best_states, best_path = entry, {state}, path
        elif entry == best and 0 < entry and len(best_states) < 1000:
            best_states.add(state)
        # Backtrack; a read that fitted the state was no real choice: keep going back past it.
        while True:
            if not stack:
                bad = ops[op_of[best]][0]
                return False, {"configs": configs, "cache": entries, "bytes": nbytes, "op": bad,
                               "states": best_states, "linearized": _unlink(best_path, ops)}
            entry, state, w, win, inf, forced, path = stack.pop()
            i = op_of[entry]
            if not infos[i]:
                remaining += 1
            ret = match[entry]
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            if not forced:
                break
        entry = nxt[entry]


def _overwritten_read(m: Model, ops: list) -> int | None:
    """Registers only: the first read (by return) whose value every op that sets it cannot be
    the last setter before it -- each is surely overwritten (an ok write or cas of another
    value was invoked after it returned and returned before the read was invoked), or it was
    invoked after the read returned. Such a read is stale whatever the order. None if there
    is none (or too many distinct values to look cheaply)."""
    if not isinstance(m, Register):
        return None
    init = m.init()
    evs = []
    for i, (p, is_info, f, v) in enumerate(ops):
        if f == "read" and not is_info:
            evs.append((p.invoke.index, 0, i))
            evs.append((p.completion.index, 1, i))
        elif f in ("write", "cas"):
            evs.append((p.invoke.index, 2, i))
            if not is_info:
                evs.append((p.completion.index, 3, i))
    evs.sort()

    def sets(i: int) -> Any:
        v = ops[i][3]
        return _s(v[1] if ops[i][2] == "cas" else v)

    last_inv: dict = {}      # value -> latest invocation of an ok setter of it that has returned
    max_ret: dict = {}       # value -> latest return of a setter of it invoked so far (info: inf)
    kill: dict[int, float] = {}
    for _, kind, i in evs:
        if kind == 0:
            v = _s(ops[i][3])
            kill[i] = max((t for u, t in last_inv.items() if u != v), default=-_INF)
        elif kind == 2:
            u = sets(i)
            c = ops[i][0].completion
            r = _INF if ops[i][1] else c.index
            if r > max_ret.get(u, -_INF):
                max_ret[u] = r
        elif kind == 3:
            u = sets(i)
            if ops[i][0].invoke.index > last_inv.get(u, -_INF):
                last_inv[u] = ops[i][0].invoke.index
            if len(last_inv) > 64:
                return None
        else:
            v = _s(ops[i][3])
            k = kill.pop(i)
            if not (max_ret.get(v, -_INF) > k or (v == init and k == -_INF)):
                return i
    return None


def _unlink(path: tuple | None, ops: list) -> list[OpPair]:
    out = []
    while path is not None:
        out.append(ops[path[0]][0])
        path = path[1]
    return out[::-1]


def _closure(state: Hashable, js: list[int], steps: list, fs: list, vals: list, cap: int = 300) -> set:
    """States reachable from ``state`` by applying some of the ops ``js`` in some order (at most
    ``cap`` steps): what a read could have seen when these writes were still open."""
    seen = {state}
    todo = [(state, 0)]
    n = 0
    while todo and n < cap:
        st, used = todo.pop()
        for k, j in enumerate(js):
            if used >> k & 1:
                continue
            n += 1
            new = steps[j](st, fs[j], vals[j])
            if new is not None:
                if new not in seen:
                    seen.add(new)
                todo.append((new, used | 1 << k))
    return seen


def _search_reference(m: Model, pairs: list[OpPair], limits: "_Limits", memo: bool = True) -> tuple[bool, dict]:
    """The search as it was before the read reduction and the compact cache key (``algorithm=
    "reference"``): kept as the baseline of the benchmark and the referee of the property tests.
    Returns (linearizable, info); raises _Timeout or _OutOfMemory."""
    ops = _prepare(m, pairs)
    n_ok = sum(1 for o in ops if not o[1])
    if n_ok == 0:
        return True, {"configs": 0}
    n, nxt, prv, is_call, op_of, match = _event_list(ops)
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
    nbytes = 0
    entry = nxt[0]
    while True:
        configs += 1
        if not configs % limits.every:
            limits.check(configs, len(cache), nbytes)
        if is_call[entry]:
            i = op_of[entry]
            new = steps[i](state, fs[i], vals[i])
            if new is not None:
                newlin = lin | (1 << i)
                k = (newlin, new)
                if not memo or k not in cache:
                    if memo:
                        cache.add(k)
                        nbytes += _ENTRY_BYTES + sys.getsizeof(newlin) + sys.getsizeof(new)
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
    return False, {"configs": configs, "cache": len(cache), "op": bad, "states": best_states,
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


class ModelValueError(ValueError):
    """An operation whose value the model cannot use (a cas value that is not a pair, a map
    where a value must be hashable, NaN, ...). ``op`` is the OpPair, ``expected`` says what the
    model wanted."""

    def __init__(self, op: OpPair, model: str, expected: str, value: Any) -> None:
        self.op, self.model, self.expected, self.value = op, model, expected, value
        at = op.completion if op.completion is not None and op.type == "ok" else op.invoke
        self.index = at.index
        super().__init__(f"op #{at.index} (process {op.process} {at.type} {op.f}): model {model!r} expects "
                         f"{expected}, got {value!r}")


def _has_nan(x: Any) -> bool:
    if isinstance(x, float):
        return math.isnan(x)
    if isinstance(x, (tuple, frozenset, list)):
        return any(_has_nan(v) for v in x)
    return False


def _validate(m: Model, pairs: list[OpPair]) -> None:
    """Raise ModelValueError for the first op whose value ``m`` cannot use."""
    check = getattr(m, "check_value", None)
    for p in pairs:
        if p.type == "fail" or (p.type == "info" and m.is_read(p.f)):   # dropped before the search
            continue
        v = p.value
        try:
            hash(v)
        except TypeError:
            raise ModelValueError(p, m.name, "a value that can be compared (a number, string, keyword, nil or "
                                  f"a vector of those), not a {type(v).__name__}", v) from None
        if _has_nan(v):
            raise ModelValueError(p, m.name, "a value that equals itself (NaN equals nothing)", v)
        if check is not None:
            want = check(p.f, v, p.type == "info")
            if want:
                raise ModelValueError(p, m.name, want, v)


def check_linearizable(history: History | Iterable[Op], model: str | Model = "kv", *,
                       timeout: float | None = 10.0, memory: "int | str | None" = None,
                       progress: Any = None, memo: bool = True, algorithm: str = "fast") -> Verdict:
    """Is ``history`` linearizable with respect to ``model`` (a name in ``MODELS`` or a Model)?

    Client operations are grouped by ``key`` and each group is checked on its own copy of
    the model. Budgets, shared by all keys; running out of either gives an unknown verdict
    (``valid=None``) whose summary says which and after how many configurations -- never a
    pass, never a crash:

    * ``timeout``: seconds of CPU time the search spends (``None`` = no limit). CPU, not wall
      time, so that the verdict on a history does not depend on what else the machine runs: on
      a loaded machine the check takes longer, and says the same;
    * ``memory``: bytes (or ``"1G"``, ``"512M"``) for the search's cache, also checked against
      the process's growth in RSS; ``None`` = ``default_memory_budget()`` (1 GiB, or half the
      available memory if less).

    ``progress``: ``None`` shows progress (keys done / total, configurations) once a check has
    run 2 s, where somebody watches -- a bar in a notebook, a line on a terminal -- and never
    under CI (``$CI`` set), nbval or into a pipe (the rule is ``labkit._progress``'s); ``True``
    always after 2 s, ``False`` never; a callable gets a dict instead. ``algorithm``: ``"fast"`` (the
    default: read reduction, lookahead, compact cache keys) or ``"reference"`` (the search as
    it was). ``memo=False`` runs the reference search without Lowe's cache (exponentially
    slower; for benchmarks and property tests).

    Raises HistoryError for a malformed history, ValueError for an op ``f`` the model does
    not know, ModelValueError (a ValueError) for a value it cannot use."""
    h = history if isinstance(history, History) else History(history)
    m = _model(model)
    if algorithm not in ("fast", "reference"):
        raise ValueError(f"algorithm is 'fast' or 'reference', not {algorithm!r}")
    budget = default_memory_budget() if memory is None else parse_size(memory)
    name = f"linearizable({m.name})"
    pairs = h.pairs()
    unknown_fs = sorted({p.f for p in pairs} - set(m.fs))
    if unknown_fs:
        raise ValueError(f"model {m.name!r} has no operation(s) {unknown_fs}; it knows {sorted(m.fs)}")
    _validate(m, pairs)
    groups: dict[Any, list[OpPair]] = {}
    for p in pairs:
        groups.setdefault(p.key, []).append(p)
    t0 = time.monotonic()
    deadline = _INF if timeout is None else time.process_time() + timeout
    bar = _progress_bar(progress, len(groups))
    limits = _Limits(deadline, budget, bar)
    violations: list[Violation] = []
    unchecked: list[Any] = []
    stopped = ""
    configs = 0
    peak_entries = 0
    try:
        for key in sorted(groups, key=repr):
            ps = groups[key]
            if stopped:
                unchecked.append(key)
                continue
            limits.key = key
            try:
                if algorithm == "fast" and memo:
                    ok, info = _search(m, ps, limits)
                else:
                    ok, info = _search_reference(m, ps, limits, memo)
            except _Timeout:
                unchecked.append(key)
                stopped = f"timed out after {timeout:g} s (of CPU time)"
                continue
            except (_OutOfMemory, MemoryError):
                unchecked.append(key)
                stopped = limits.reason or (f"ran out of memory after {limits.configs_before:,} configurations "
                                            f"(on key {key!r})")
                continue
            configs += info["configs"]
            peak_entries = max(peak_entries, info.get("cache", 0))
            limits.configs_before = configs
            limits.keys_done += 1
            if not ok:
                op = info["op"]
                states = sorted(info["states"], key=repr)
                violations.append(Violation(key, op, tuple(states[:20]), len(states), _concurrent(op, ps),
                                            tuple(info["linearized"]), m.name))
    finally:
        if bar is not None:
            if bar.shown:
                limits.show(configs, force=True)
            bar.close(final=bar.text(limits.keys_done, f"{configs:,} configurations"))
    details = {"model": m.name, "ops": len(pairs), "keys": len(groups), "configs": configs,
               "cache_entries": peak_entries, "seconds": round(time.monotonic() - t0, 4), "memo": memo,
               "algorithm": algorithm, "memory_budget": budget,
               "failed_keys": [v.key for v in violations], "unchecked_keys": unchecked}
    if violations:
        v = violations[0]
        what = f"key {v.key!r}: " if v.key is not None else ""
        summary = (f"{what}{v.op.f} {v.op.value!r} by process {v.op.process} (op #{v.op.invoke.index}) "
                   f"cannot be linearized" + (f"; {len(violations)} keys fail" if len(violations) > 1 else ""))
        return Verdict(False, name, summary, details, tuple(violations))
    if unchecked:
        summary = (f"{stopped}: {len(groups) - len(unchecked)} of {len(groups)} "
                   f"key(s) linearizable, {len(unchecked)} unchecked (first: {unchecked[0]!r})")
        return Verdict(None, name, summary, details, (summary,))
    return Verdict(True, name, f"{len(pairs)} operations on {len(groups)} key(s) are linearizable", details)
