"""Synthetic histories: a correct object under concurrent clients, simulated in a few lines.

Each client runs operations one after another; an operation occupies an interval of time
and takes effect at one random instant inside it (its linearization point). Applying the
effects in the order of those instants to a sequential object gives each operation its
result -- so the history is linearizable by construction. ``info`` operations (the client
gave up) take effect at a random instant that may lie after the client gave up, or never;
``fail`` operations never take effect. Used by the property tests and the benchmark, and
handy in a notebook to see what a passing history looks like.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

from ..history import History, Op, OpPair

__all__ = ["synthetic_history", "contended_kv_history", "etcd_register_history", "DEFAULT_MIXES"]

#: Default operation mix per model.
DEFAULT_MIXES: dict[str, dict[str, float]] = {
    "register": {"read": 0.5, "write": 0.5},
    "cas-register": {"read": 0.4, "write": 0.3, "cas": 0.3},
    "kv": {"read": 0.5, "write": 0.4, "cas": 0.1},
    "counter": {"add": 0.5, "read": 0.5},
    "set": {"add": 0.6, "read": 0.4},
    "fifo-queue": {"enqueue": 0.5, "dequeue": 0.5},
    "mutex": {"acquire": 0.5, "release": 0.5},
}
_INIT: dict[str, Any] = {"counter": 0, "set": frozenset(), "fifo-queue": (), "mutex": False}


def _apply(model: str, s: Any, f: str, arg: Any) -> tuple[Any, bool, Any]:
    """(new state, ok?, result) of a correct sequential object; not ok = a definite failure."""
    if f == "read" or f == "get":
        if model == "set":
            return s, True, tuple(sorted(s, key=repr))
        return s, True, s
    if model == "counter":
        return s + arg, True, arg
    if model == "set":
        return s | {arg}, True, arg
    if model == "fifo-queue":
        if f == "enqueue":
            return s + (arg,), True, arg
        return (s[1:], True, s[0]) if s else (s, True, None)
    if model == "mutex":
        if f == "acquire":
            return (True, True, None) if not s else (s, False, None)
        return (False, True, None) if s else (s, False, None)
    if f in ("write", "put"):
        return arg, True, arg
    if f == "cas":
        cur = s if s not in ("", ()) else None
        return (arg[1], True, arg) if cur == arg[0] else (s, False, arg)
    if f == "append":
        if s is None or s == ():
            return (arg,), True, arg
        return (s + (arg,), True, arg) if isinstance(s, tuple) else (s, False, arg)
    raise ValueError(f"synthetic histories know no {f!r} for model {model!r}")


def synthetic_history(model: str = "kv", *, ops: int = 100, clients: int = 5, keys: int | None = None,
                      mix: Mapping[str, float] | None = None, values: int = 5, info: float = 0.0,
                      fail: float = 0.0, seed: int = 0, latency: tuple[float, float] = (1.0, 10.0),
                      gap: float = 2.0, per_key: int | None = None) -> History:
    """A linearizable history of ``ops`` operations by ``clients`` concurrent clients.

    ``model``: one of ``DEFAULT_MIXES`` (``mix`` overrides its operation mix). ``keys``:
    ``None`` for one object, or a count of independent keys ``0..keys-1``. Arguments are
    drawn from ``0..values-1`` (appends, set adds and enqueues use unique values). Each op
    ends ``info`` with probability ``info`` (then it takes effect with probability 1/2, maybe
    after the client gave up) and, if not, is a ``fail`` that never took effect with
    probability ``fail``; a cas whose precondition does not hold, or an ``acquire`` of a
    held lock, also ends ``fail``. Latencies are uniform in ``latency`` ms, think times in
    ``[0, gap]`` ms. ``per_key``: instead of a random key per operation, all clients work on one key
    for ``per_key`` consecutive operations, then on the next (Jepsen's independent concurrent
    generator; Maelstrom's lin-kv uses 100 per key). Same arguments, same history."""
    if model not in DEFAULT_MIXES:
        raise ValueError(f"synthetic histories support {sorted(DEFAULT_MIXES)}, not {model!r}")
    rng = random.Random(seed)
    mix = dict(mix or DEFAULT_MIXES[model])
    fs, weights = list(mix), list(mix.values())
    key_list: list[Any] = [None] if keys is None else list(range(keys))
    unique = iter(range(1, 10**9))
    free = [0.0] * clients
    process = list(range(clients))
    next_process = clients
    planned = []   # (invoke time, end time, effect time or None, process, f, arg, key, kind)
    for n_op in range(ops):
        c = min(range(clients), key=lambda j: (free[j], j))
        t = free[c] + rng.uniform(0.0, gap)
        d = rng.uniform(*latency)
        f = rng.choices(fs, weights)[0]
        key = key_list[(n_op // per_key) % len(key_list)] if per_key else rng.choice(key_list)
        if f in ("read", "get", "dequeue", "acquire", "release"):
            arg = None
        elif f == "cas":
            arg = (rng.randrange(values), rng.randrange(values))
        elif f in ("append", "enqueue") or (model == "set" and f == "add"):
            arg = next(unique)
        elif model == "counter":
            arg = rng.randrange(1, values + 1)
        else:
            arg = rng.randrange(values)
        r = rng.random()
        if r < info:
            kind = "info"
            effect = rng.uniform(t, t + 3 * d) if rng.random() < 0.5 else None
        elif r < info + fail and f not in ("read", "get"):
            kind, effect = "fail", None
        else:
            kind, effect = "ok", rng.uniform(t, t + d)
        planned.append([t, t + d, effect, process[c], f, arg, key, kind])
        free[c] = t + d
        if kind == "info":
            process[c] = next_process
            next_process += 1
    states: dict[Any, Any] = {k: _INIT.get(model) for k in key_list}
    results: dict[int, tuple[bool, Any]] = {}
    for i in sorted((i for i, p in enumerate(planned) if p[2] is not None), key=lambda i: planned[i][2]):
        p = planned[i]
        states[p[6]], ok, res = _apply(model, states[p[6]], p[4], p[5])
        results[i] = (ok, res)
    events: list[tuple[float, int, Op]] = []
    for i, (t, end, effect, proc, f, arg, key, kind) in enumerate(planned):
        if kind == "ok" and not results[i][0]:
            kind = "fail"
        if kind == "ok":
            value = results[i][1]
        else:
            value = arg
        events.append((t, 1, Op(proc, "invoke", f, arg, key, t)))
        events.append((end, 0, Op(proc, kind, f, value, key, end, error=None if kind == "ok" else
                                  ("timeout" if kind == "info" else "definite"))))
    events.sort(key=lambda e: (e[0], e[1]))
    return History(e[2] for e in events)


def contended_kv_history(*, clients: int = 50, keys: int = 10, ops: int = 2000, style: str = "porcupine",
                         slow: float = 0.05, latency: tuple[float, float] = (1.0, 10.0),
                         slow_latency: tuple[float, float] = (50.0, 400.0), gap: float = 2.0,
                         mix: Mapping[str, float] | None = None, violation: bool = False,
                         seed: int = 0) -> History:
    """A key-value history under heavy contention, like MIT 6.824's kvraft tests (which
    Porcupine's ``kv`` test data comes from): ``clients`` clients, each running one operation
    after another on a random one of ``keys`` keys, with ``get``/``put``/``append``
    (50/10/40 %). Latencies are uniform in ``latency`` ms, except that a fraction ``slow`` of
    operations take ``slow_latency`` ms (a retry across a partition or a leader change), so
    that a few operations stay open while many others come and go.

    ``style``: ``"porcupine"`` -- string values, ``append`` concatenates (``"x 3 7 y"``, client
    3's 7th op), a ``get`` returns the whole string, as in Porcupine's kv model; or
    ``"list-append"`` -- unique integers appended to lists, reads return the list (Jepsen's
    list-append workload, one key per op), ``put`` replaces the list with ``[v]``.

    The store is correct (each op takes effect at a random instant inside its interval), so the
    history is linearizable -- unless ``violation``: then one ``get`` in the second half misses
    an append that certainly came before it (the append was invoked after the put that started
    the value it read had completed, and completed before the get was invoked), a stale read
    no linearization can explain. Same arguments, same history. Raises ValueError for an
    unknown ``style`` or a history too small to hold a violation."""
    if style not in ("porcupine", "list-append"):
        raise ValueError(f"style is 'porcupine' or 'list-append', not {style!r}")
    rng = random.Random(seed)
    mix = dict(mix or {"get": 0.5, "put": 0.1, "append": 0.4})
    fs, weights = list(mix), list(mix.values())
    free = [0.0] * clients
    counter = [0] * clients
    planned = []   # [invoke, end, effect, client, f, arg, key]
    for _ in range(ops):
        c = min(range(clients), key=lambda j: (free[j], j))
        t = free[c] + rng.uniform(0.0, gap)
        d = rng.uniform(*slow_latency) if rng.random() < slow else rng.uniform(*latency)
        f = rng.choices(fs, weights)[0]
        key = str(rng.randrange(keys)) if style == "porcupine" else rng.randrange(keys)
        if f == "get":
            arg = None
        elif style == "porcupine":
            arg = f"x {c} {counter[c]} y"
        else:
            arg = clients * counter[c] + c + 1
            arg = (arg,) if f == "put" else arg
        counter[c] += 1
        planned.append([t, t + d, rng.uniform(t, t + d), c, f, arg, key])
        free[c] = t + d
    empty: Any = "" if style == "porcupine" else ()
    state: dict[Any, Any] = {}
    # Per key, the value as a list of the ops that built it: [put or None, append, append, ...].
    parts: dict[Any, list[int | None]] = {}
    result: dict[int, Any] = {}
    built: dict[int, list[int | None]] = {}
    for i in sorted(range(ops), key=lambda i: planned[i][2]):
        _, _, _, _, f, arg, key = planned[i]
        cur = state.get(key, empty)
        if f == "get":
            result[i] = cur
            built[i] = list(parts.get(key, [None]))
        elif f == "put":
            state[key] = arg
            parts[key] = [i]
            result[i] = arg
        else:
            state[key] = cur + arg if style == "porcupine" else cur + (arg,)
            parts.setdefault(key, [None]).append(i)
            result[i] = arg
    if violation:
        _inject_stale_read(planned, result, built, style, rng)
    events: list[tuple[float, int, Op]] = []
    for i, (t, end, _, c, f, arg, key) in enumerate(planned):
        events.append((t, 1, Op(c, "invoke", f, arg, key, t)))
        events.append((end, 0, Op(c, "ok", f, result[i], key, end)))
    events.sort(key=lambda e: (e[0], e[1]))
    return History(e[2] for e in events)


def _inject_stale_read(planned: list, result: dict, built: dict, style: str, rng: random.Random) -> None:
    """Make one get in the second half miss an append that surely preceded it (see above)."""
    n = len(planned)
    candidates = []
    for g in range(n // 2, n):
        if planned[g][4] != "get":
            continue
        start = planned[g][0]
        put = built[g][0]
        after = planned[put][1] if put is not None else -_INF_T
        sure = [a for a in built[g][1:] if a is not None and planned[a][1] < start and planned[a][0] > after]
        if sure:
            candidates.append((g, sure))
    if not candidates:
        raise ValueError("no get in the second half surely follows an append: use more ops or fewer keys")
    g, sure = candidates[rng.randrange(min(len(candidates), 20))]
    drop = rng.choice(sure)
    keep = [i for i in built[g] if i != drop]
    if style == "porcupine":
        result[g] = "".join(planned[i][5] for i in keep if i is not None)
    else:
        result[g] = (() if keep[0] is None else planned[keep[0]][5]) + tuple(planned[i][5] for i in keep[1:])


_INF_T = float("inf")


def etcd_register_history(*, clients: int = 10, ops: int = 300, values: int = 10, info: float = 0.05,
                          violation: bool = False, seed: int = 0) -> History:
    """A single cas-register history shaped like Jepsen's etcd test: ``clients`` clients doing
    reads, writes and cas (40/30/30 %) over ``values`` values, latencies of 1-10 ms, a fraction
    ``info`` of ops timing out (the client moves on as a new process), cas failures as
    ``fail``. Linearizable by construction -- unless ``violation``: then one read in the
    second half returns a stale value v, one that was overwritten before the read began and
    that no write or cas that could still come after the overwrite sets again. Raises
    ValueError when no read qualifies (try another seed or more values)."""
    h = synthetic_history("cas-register", ops=ops, clients=clients, values=values, info=info, seed=seed)
    if not violation:
        return h
    pairs = h.pairs()
    setters = [p for p in pairs if p.type != "fail" and p.f in ("write", "cas")]

    def sets(p: OpPair) -> Any:
        return p.value[1] if p.f == "cas" else p.value

    def end(p: OpPair) -> float:
        return p.completion.index if p.type == "ok" else _INF_T   # type: ignore[union-attr]

    reads = [p for p in pairs[len(pairs) // 2:] if p.f == "read" and p.type == "ok"]
    for r in reads:
        before = [w for w in setters if end(w) < r.invoke.index]
        for w2 in sorted(before, key=end, reverse=True):
            for w in before:
                v = sets(w)
                if end(w) < w2.invoke.index and v != sets(w2) and v != r.value and not any(
                        sets(x) == v and end(x) > w2.invoke.index for x in setters):
                    target = r.completion
                    return History(Op(o.process, o.type, o.f, v, o.key, o.time, o.index, o.error)
                                   if o is target else o for o in h)
    raise ValueError("no read in the second half can be made stale for sure: try another seed or more values")
