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

from ..history import History, Op

__all__ = ["synthetic_history", "DEFAULT_MIXES"]

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
