"""Maelstrom's ``lin-kv`` workload: a linearizable key-value store of registers.

Requests (Maelstrom's ``maelstrom.workload.lin-kv``): ``{"type": "read", "key": k}`` ->
``read_ok {"value": v}``; ``{"type": "write", "key": k, "value": v}`` -> ``write_ok``;
``{"type": "cas", "key": k, "from": a, "to": b}`` -> ``cas_ok``; errors 20
(key-does-not-exist) and 22 (precondition-failed) are definite, so those ops ``fail``.

Generator (Jepsen's ``linearizable-register`` test, as Maelstrom runs it): ``key_count``
keys are live at once; an op picks one at random and is a read, a write of ``rand-int
max_value`` or a cas ``[rand-int max_value, rand-int max_value]`` with equal odds; after
``per_key_limit`` ops a key retires and a fresh one replaces it (keys 0, 1, 2, ...), which
keeps every key's history small enough to check. History: ``f`` read / write / cas with
``key`` set; read ok value the value read, write value the value, cas value ``[from, to]``.

Checker: ``labkit.checkers.check_linearizable(history, "cas-register")``, per key (Wing &
Gong with Lowe's cache), under ``check_timeout`` seconds; running out gives unknown.
"""
from __future__ import annotations

import random
from typing import Any

from ...checkers.linearizable import check_linearizable
from ...checkers.verdict import Verdict
from ...history import History
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["LinKV", "WORKLOADS"]


class LinKV(Workload):
    """Reads, writes and compare-and-sets on a few rotating integer keys."""

    name = "lin-kv"
    idempotent: frozenset[str] = frozenset()   # Maelstrom's client: every timeout is :info
    #: Maelstrom always runs its services; a program may keep its data in lin-kv (a proxy).
    services = ("lin-kv",)
    defaults = {"key_count": 3, "per_key_limit": 60, "max_value": 5, "check_timeout": 30.0}

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        for k in ("key_count", "per_key_limit", "max_value"):
            v = self.opts[k]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"lin-kv option {k} must be a positive int, got {v!r}")
        self._live = list(range(self.opts["key_count"]))
        self._used = {k: 0 for k in self._live}
        self._next_key = self.opts["key_count"]

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        i = rng.randrange(len(self._live))
        k = self._live[i]
        self._used[k] += 1
        if self._used[k] >= self.opts["per_key_limit"]:
            self._live[i] = self._next_key
            self._used[self._next_key] = 0
            self._next_key += 1
        n = self.opts["max_value"]
        f = rng.choice(("read", "write", "cas"))
        if f == "read":
            return Invocation("read", None, k)
        if f == "write":
            return Invocation("write", rng.randrange(n), k)
        return Invocation("cas", [rng.randrange(n), rng.randrange(n)], k)

    def request(self, inv: Invocation) -> dict:
        if inv.f == "read":
            return {"type": "read", "key": inv.key}
        if inv.f == "write":
            return {"type": "write", "key": inv.key, "value": inv.value}
        a, b = inv.value
        return {"type": "cas", "key": inv.key, "from": a, "to": b}

    def completion(self, inv: Invocation, reply: dict) -> Any:
        expect_type(reply, inv.f + "_ok")
        if inv.f == "read":
            if "value" not in reply:
                raise ValueError("read_ok reply has no 'value'")
            return reply["value"]
        return inv.value

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        ops = [o for o in history if o.is_client and o.f in ("read", "write", "cas")]
        v = check_linearizable(History(ops), "cas-register", timeout=self.opts["check_timeout"], progress=False)
        return {"linearizable": v}


WORKLOADS = {"lin-kv": LinKV}
