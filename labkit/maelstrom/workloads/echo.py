"""Maelstrom's ``echo`` workload: clients send a string, the node echoes it back.

Request ``{"type": "echo", "echo": s}`` -> reply ``{"type": "echo_ok", "echo": s}``.
History: ``f="echo"``, invoke value ``s``, ok value the echoed string. Valid when every ok
reply echoed exactly what was sent. Source: Maelstrom ``src/maelstrom/workload/echo.clj``
(generator ``"Please echo " + rand-int 128``; checker: every ok echo equals its request).
"""
from __future__ import annotations

import random
from typing import Any

from ...checkers.verdict import Verdict
from ...history import History
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["Echo", "WORKLOADS"]


class Echo(Workload):
    """Clients send ``"Please echo <0..127>"``; nodes answer ``echo_ok`` with the same string."""

    name = "echo"
    idempotent = frozenset({"echo"})

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        return Invocation("echo", f"Please echo {rng.randrange(128)}")

    def request(self, inv: Invocation) -> dict:
        return {"type": "echo", "echo": inv.value}

    def completion(self, inv: Invocation, reply: dict) -> Any:
        expect_type(reply, "echo_ok")
        if "echo" not in reply:
            raise ValueError("echo_ok reply has no 'echo' field")
        return reply["echo"]

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        oks = [p for p in history.pairs() if p.f == "echo" and p.type == "ok"]
        bad = [f"{p}: sent {p.invoke.value!r}, got back {p.completion.value!r}"
               for p in oks if p.completion is not None and p.completion.value != p.invoke.value]
        details = {"ok": len(oks), "mismatched": len(bad)}
        if not oks:
            return {"echo": Verdict(None, "echo", "no ok echo operations", details)}
        if bad:
            return {"echo": Verdict(False, "echo", f"{len(bad)} of {len(oks)} replies did not echo the request",
                                    details, tuple(bad[:20]))}
        return {"echo": Verdict(True, "echo", f"all {len(oks)} ok replies echoed their request", details)}


WORKLOADS = {"echo": Echo}
