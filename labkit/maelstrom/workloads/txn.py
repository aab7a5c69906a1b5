"""Maelstrom's transactional workloads ``txn-list-append`` and ``txn-rw-register``.

Request ``{"type": "txn", "txn": [[f, k, v], ...]}`` -> ``{"type": "txn_ok", "txn": [...]}``
with reads filled in (Maelstrom's ``maelstrom.workload.txn-list-append`` /
``txn-rw-register``); error 30 (txn-conflict) is definite, so the txn ``fail``s.

* list append: micro-ops ``["r", k, None]`` -> ``["r", k, [1, 2]]`` (``None`` for a missing
  key) and ``["append", k, v]``;
* rw register: ``["r", k, None]`` -> ``["r", k, v]`` and ``["w", k, v]``.

Generator (Elle's ``list-append/gen`` and ``rw-register/gen``): ``key_count`` keys are live
at once; a txn has ``min_txn_length``..``max_txn_length`` micro-ops, each on a random live
key, a read or a write with equal odds; written values are 1, 2, 3, ... per key (unique,
as Elle needs); a key that got ``max_writes_per_key`` writes retires and a fresh key
replaces it. History: ``f="txn"``, the value the micro-ops (the ok value with reads filled).

Checker: ``labkit.checkers.elle`` against ``consistency_models`` (Maelstrom's
``--consistency-models``, default ``strict-serializable``; e.g. ``read-uncommitted`` for
Gossip Glomers 6b, ``read-committed`` for 6c).
"""
from __future__ import annotations

import random
from typing import Any

from ...checkers.elle import CONSISTENCY_MODELS, check_txn
from ...checkers.verdict import Verdict
from ...history import History
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["TxnListAppend", "TxnRwRegister", "WORKLOADS"]


class _Txn(Workload):
    write_f = ""
    idempotent = frozenset()
    services = ("lin-kv",)
    defaults = {"key_count": 3, "min_txn_length": 1, "max_txn_length": 4, "max_writes_per_key": 16,
                "consistency_models": "strict-serializable"}

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        for k in ("key_count", "min_txn_length", "max_txn_length", "max_writes_per_key"):
            v = self.opts[k]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{self.name} option {k} must be a positive int, got {v!r}")
        if self.opts["min_txn_length"] > self.opts["max_txn_length"]:
            raise ValueError(f"{self.name}: min_txn_length {self.opts['min_txn_length']} exceeds "
                             f"max_txn_length {self.opts['max_txn_length']}")
        cm = self.opts["consistency_models"]
        models = [m.strip() for m in cm.split(",")] if isinstance(cm, str) else list(cm)
        bad = [m for m in models if m not in CONSISTENCY_MODELS]
        if bad:
            raise ValueError(f"{self.name}: unknown consistency model(s) {bad}; known: {', '.join(CONSISTENCY_MODELS)}")
        self._models = models
        self._live = list(range(self.opts["key_count"]))
        self._writes = {k: 0 for k in self._live}
        self._next_key = self.opts["key_count"]

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        n = rng.randint(self.opts["min_txn_length"], self.opts["max_txn_length"])
        mops = []
        for _ in range(n):
            i = rng.randrange(len(self._live))
            k = self._live[i]
            if rng.random() < 0.5:
                mops.append(["r", k, None])
                continue
            self._writes[k] += 1
            mops.append([self.write_f, k, self._writes[k]])
            if self._writes[k] >= self.opts["max_writes_per_key"]:
                self._live[i] = self._next_key
                self._writes[self._next_key] = 0
                self._next_key += 1
        return Invocation("txn", mops)

    def request(self, inv: Invocation) -> dict:
        return {"type": "txn", "txn": [list(m) for m in inv.value]}

    def completion(self, inv: Invocation, reply: dict) -> Any:
        expect_type(reply, "txn_ok")
        txn = reply.get("txn")
        sent = list(inv.value)
        if not isinstance(txn, list) or len(txn) != len(sent):
            raise ValueError(f"txn_ok needs 'txn', the {len(sent)} micro-ops completed, got {txn!r}")
        out = []
        for want, got in zip(sent, txn):
            if not (isinstance(got, list) and len(got) == 3 and got[0] == want[0] and got[1] == want[1]):
                raise ValueError(f"txn_ok micro-op {got!r} does not complete {list(want)!r}")
            if want[0] != "r" and got[2] != want[2]:
                raise ValueError(f"txn_ok micro-op {got!r} changed the written value of {list(want)!r}")
            out.append(list(got))
        return out

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        txns = History(o for o in history if o.is_client and o.f == "txn")
        return {"elle": check_txn(txns, self.name, self._models)}


class TxnListAppend(_Txn):
    """Transactions of reads and appends on lists."""

    name = "txn-list-append"
    write_f = "append"


class TxnRwRegister(_Txn):
    """Transactions of reads and writes on registers."""

    name = "txn-rw-register"
    write_f = "w"


WORKLOADS = {"txn-list-append": TxnListAppend, "txn-rw-register": TxnRwRegister}
