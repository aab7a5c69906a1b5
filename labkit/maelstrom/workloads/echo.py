"""Maelstrom's ``echo`` workload: clients send a string, the node echoes it back.

Request ``{"type": "echo", "echo": s}`` -> reply ``{"type": "echo_ok", "echo": s}``.
History: ``f="echo"``, invoke value ``s``, ok value the echoed string. Valid when every
request got back exactly what it sent: as in Maelstrom's checker, which compares every
completion with its invocation, a request answered with an error or never answered (``fail``
/ ``info``) counts against the run too. Timeouts are ``info`` (Maelstrom's client uses
``with-errors op #{}``: no idempotent fs). Source: Maelstrom
``src/maelstrom/workload/echo.clj`` (generator ``"Please echo " + rand-int 128``).
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
        pairs = [p for p in history.pairs() if p.f == "echo" and p.invoke.is_client]
        oks = [p for p in pairs if p.type == "ok"]
        bad = [f"{p}: sent {p.invoke.value!r}, got back {p.completion.value!r}"
               for p in oks if p.completion is not None and p.completion.value != p.invoke.value]
        unanswered = [f"{p}: no echo ({p.completion.error if p.completion is not None else 'no completion'})"
                      for p in pairs if p.type != "ok"]
        details = {"ok": len(oks), "mismatched": len(bad), "unanswered": len(unanswered)}
        if not pairs:
            return {"echo": Verdict(None, "echo", "no echo operations", details)}
        if bad or unanswered:
            parts = ([f"{len(bad)} replies did not echo the request"] if bad else []) + \
                    ([f"{len(unanswered)} requests got no echo back"] if unanswered else [])
            return {"echo": Verdict(False, "echo", f"{'; '.join(parts)} (of {len(pairs)})", details,
                                    tuple((bad + unanswered)[:20]))}
        return {"echo": Verdict(True, "echo", f"all {len(oks)} requests echoed", details)}


WORKLOADS = {"echo": Echo}
