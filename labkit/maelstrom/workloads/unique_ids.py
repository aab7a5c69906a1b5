"""Maelstrom's ``unique-ids`` workload: every ``generate`` returns a globally unique id.

Request ``{"type": "generate"}`` -> reply ``{"type": "generate_ok", "id": <any JSON>}``.
History: ``f="generate"``, invoke value ``None``, ok value the id. Checker: Jepsen's
``checker/unique-ids`` -- attempted, acknowledged and duplicated counts; valid when no id was
returned twice. Ids compare as JSON (``[1, 2]`` and ``(1, 2)`` are the same id). Source:
Maelstrom ``src/maelstrom/workload/unique_ids.clj``; Jepsen ``jepsen.checker/unique-ids``.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from ...checkers.verdict import Verdict
from ...history import History, _thaw
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["UniqueIds", "WORKLOADS"]


def _canon(x: Any) -> str:
    return json.dumps(_thaw(x), sort_keys=True, separators=(",", ":"))


class UniqueIds(Workload):
    """Clients ask any node to ``generate``; every id must be distinct across the cluster."""

    name = "unique-ids"

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        return Invocation("generate")

    def request(self, inv: Invocation) -> dict:
        return {"type": "generate"}

    def completion(self, inv: Invocation, reply: dict) -> Any:
        expect_type(reply, "generate_ok")
        if "id" not in reply:
            raise ValueError("generate_ok reply has no 'id' field")
        return reply["id"]

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        pairs = [p for p in history.pairs() if p.f == "generate"]
        oks = [p for p in pairs if p.type == "ok" and p.completion is not None]
        counts = Counter(_canon(p.completion.value) for p in oks)
        dups = {k: c for k, c in counts.items() if c > 1}
        worst = sorted(dups.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        details = {"attempted_count": len(pairs), "acknowledged_count": len(oks),
                   "duplicated_count": len(dups), "duplicated": {k: c for k, c in worst}}
        name = "unique-ids"
        if not oks:
            return {name: Verdict(None, name, f"no ok generate operations among {len(pairs)} attempted", details)}
        if dups:
            expl = tuple(f"id {k} was returned {c} times" for k, c in worst)
            return {name: Verdict(False, name, f"{len(dups)} ids returned more than once (of {len(oks)} "
                                  f"acknowledged)", details, expl)}
        return {name: Verdict(True, name, f"all {len(oks)} acknowledged ids distinct", details)}


WORKLOADS = {"unique-ids": UniqueIds}
