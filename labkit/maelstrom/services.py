"""Maelstrom's services as labkit nodes: ``LinKV``, ``SeqKV``, ``LWWKV``, ``LinTSO``.

Source: Maelstrom's ``doc/services.md`` and ``src/maelstrom/service.clj``. A program calls a
service by sending it an RPC, e.g. ``{"type": "read", "key": "x"}`` to ``lin-kv``. The key
value stores answer Maelstrom's API exactly:

- ``read {key}`` -> ``read_ok {value}``, or error 20 (key-does-not-exist);
- ``write {key, value}`` -> ``write_ok``;
- ``cas {key, from, to, create_if_not_exists?}`` -> ``cas_ok``; error 20 when the key is
  missing (unless ``create_if_not_exists`` is true: then the key is created with ``to``),
  error 22 (precondition-failed) when its value is not ``from``;

and ``lin-tso`` answers ``ts`` with ``ts_ok {ts}``, 0, 1, 2, ... Any other type gets error
10 (not-supported); a request without ``key`` error 12 (malformed-request).

Consistency, as in Maelstrom:

- ``LinKV`` (``lin-kv``): one state; every operation applies to it: linearizable.
- ``SeqKV`` (``seq-kv``): sequentially consistent. The service keeps its last ``buffer``
  (32) states. Each client (the sender id) has the index of the newest state it has seen.
  An operation is tried on a state picked at random from the client's index up to (not
  including, unless the client is up to date) the newest: if it changes nothing (a read, a
  failed cas, a write of the value already there) it is answered from that possibly *stale*
  state; otherwise it applies to the newest state, which becomes a new state. The client's
  index moves to the state it used: each client sees a monotonic order, but reads may be
  stale and a read-then-write counter loses updates.
- ``LWWKV`` (``lww-kv``): eventually consistent. ``replicas`` (2) independent replicas, each
  with a Lamport clock stamping its writes; at every request one random replica is merged
  into another (per key the higher timestamp wins; a tie goes to the larger value), then
  the request runs on a random replica. Reads may be stale, writes may be lost to a
  concurrent one.
- ``LinTSO`` (``lin-tso``): a linearizable timestamp oracle.

Keys and values are any JSON; equality is JSON equality (``1`` and ``1.0`` and ``true``
differ, as in Maelstrom's Clojure). Randomness comes from ``ctx.rng``, so a simulated run is
reproducible from its seed. State lives in the node object: a killed or restarted service
starts empty (the harness never faults services).
"""
from __future__ import annotations

import json
from typing import Any

from ..node import Node

__all__ = ["LinKV", "SeqKV", "LWWKV", "LinTSO", "SERVICES"]

_MISSING = object()


def _canon(x: Any) -> str:
    """JSON equality: the canonical JSON text of a value (dict keys sorted)."""
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def _err(ctx: Any, msg: Any, code: int, text: str) -> None:
    ctx.reply(msg, type="error", code=code, text=text)


def _kv_apply(state: dict, msg: Any) -> tuple[dict, str, dict]:
    """One request against a key/value state ``{canon(key): value}``: (new state, reply type,
    reply body). The new state is ``state`` itself when nothing changed."""
    body = msg.body
    if "key" not in body:
        return state, "error", {"code": 12, "text": f"{msg.type} needs a 'key'"}
    k = _canon(body["key"])
    cur = state.get(k, _MISSING)
    if msg.type == "read":
        if cur is _MISSING:
            return state, "error", {"code": 20, "text": "key does not exist"}
        return state, "read_ok", {"value": cur}
    if msg.type == "write":
        if "value" not in body:
            return state, "error", {"code": 12, "text": "write needs a 'value'"}
        if cur is not _MISSING and _canon(cur) == _canon(body["value"]):
            return state, "write_ok", {}
        return {**state, k: body["value"]}, "write_ok", {}
    if msg.type == "cas":
        if "from" not in body or "to" not in body:
            return state, "error", {"code": 12, "text": "cas needs 'from' and 'to'"}
        if cur is _MISSING:
            if body.get("create_if_not_exists") is True:
                return {**state, k: body["to"]}, "cas_ok", {}
            return state, "error", {"code": 20, "text": "key does not exist"}
        if _canon(cur) != _canon(body["from"]):
            return state, "error", {"code": 22, "text": f"current value {_canon(cur)} is not {_canon(body['from'])}"}
        if _canon(cur) == _canon(body["to"]):
            return state, "cas_ok", {}
        return {**state, k: body["to"]}, "cas_ok", {}
    return state, "error", {"code": 10, "text": f"{msg.type!r} is not supported: use read, write or cas"}


class LinKV(Node):
    """Maelstrom's ``lin-kv``: a linearizable key/value store (read, write, cas)."""

    def on_start(self, ctx: Any) -> None:
        self.state: dict = {}

    def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.in_reply_to is not None:
            return                      # a reply sent to a service: nothing to answer
        self.state, t, body = _kv_apply(self.state, msg)
        ctx.reply(msg, type=t, **body)


class SeqKV(Node):
    """Maelstrom's ``seq-kv``: sequentially consistent, possibly stale (see the module doc).
    ``buffer``: how many past states are kept (Maelstrom's 32)."""

    buffer: int = 32

    def on_start(self, ctx: Any) -> None:
        self.states: list[dict] = [{}]     # states[i] is state number first + i
        self.first = 0                     # the number of states[0]
        self.clients: dict[str, int] = {}  # sender -> the newest state number it has used

    def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.in_reply_to is not None:
            return
        last = self.first + len(self.states) - 1
        lo = max(self.clients.get(msg.src, 0), self.first)
        index = lo + ctx.rng.randrange(last - lo) if last > lo else last
        state = self.states[index - self.first]
        new, t, body = _kv_apply(state, msg)
        if new is state:                   # nothing changed: answer from that (old) state
            self.clients[msg.src] = index
        else:                              # an update: it goes on the newest state
            new, t, body = _kv_apply(self.states[-1], msg)
            if new is not self.states[-1]:
                self.states.append(new)
                if len(self.states) > self.buffer:
                    del self.states[0]
                    self.first += 1
            self.clients[msg.src] = self.first + len(self.states) - 1
        ctx.reply(msg, type=t, **body)


class LWWKV(Node):
    """Maelstrom's ``lww-kv``: ``replicas`` last-write-wins replicas merged at random by
    Lamport timestamps (see the module doc). Eventually consistent."""

    replicas: int = 2

    def on_start(self, ctx: Any) -> None:
        # each replica: [clock, {canon(key): (ts, value)}]
        self.reps: list[list] = [[0, {}] for _ in range(self.replicas)]

    @staticmethod
    def _merge(a: list, b: list) -> list:
        m = dict(a[1])
        for k, (ts, v) in b[1].items():
            mine = m.get(k)
            if mine is None or ts > mine[0] or (ts == mine[0] and _canon(v) > _canon(mine[1])):
                m[k] = (ts, v)
        return [max(a[0], b[0]), m]

    def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.in_reply_to is not None:
            return
        n = len(self.reps)
        src, dst = ctx.rng.randrange(n), ctx.rng.randrange(n)
        self.reps[dst] = self._merge(self.reps[dst], self.reps[src])
        i = ctx.rng.randrange(n)
        clock, m = self.reps[i]
        plain = {k: v for k, (_, v) in m.items()}
        new, t, body = _kv_apply(plain, msg)
        if new is not plain:
            changed = {k: (clock, v) for k, v in new.items() if k not in plain or plain[k] is not v}
            self.reps[i] = [clock + 1, {**m, **changed}]
        ctx.reply(msg, type=t, **body)


class LinTSO(Node):
    """Maelstrom's ``lin-tso``: ``ts`` -> ``ts_ok {ts}`` with 0, 1, 2, ... (linearizable)."""

    def on_start(self, ctx: Any) -> None:
        self.ts = 0

    def on_message(self, ctx: Any, msg: Any) -> None:
        if msg.in_reply_to is not None:
            return
        if msg.type != "ts":
            _err(ctx, msg, 10, f"{msg.type!r} is not supported: lin-tso answers 'ts'")
            return
        ctx.reply(msg, type="ts_ok", ts=self.ts)
        self.ts += 1


#: The services by their Maelstrom node id.
SERVICES: dict[str, type[Node]] = {"lin-kv": LinKV, "seq-kv": SeqKV, "lww-kv": LWWKV, "lin-tso": LinTSO}
