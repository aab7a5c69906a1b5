"""Maelstrom's ``kafka`` workload: append-only logs per key, consumed from offsets.

Requests (Maelstrom's ``maelstrom.workload.kafka``): ``send {key, msg}`` -> ``send_ok
{offset}``; ``poll {offsets: {k: o}}`` -> ``poll_ok {msgs: {k: [[o, msg], ...]}}``;
``commit_offsets {offsets: {k: o}}`` -> ``commit_offsets_ok``; ``list_committed_offsets
{keys: [k]}`` -> ``list_committed_offsets_ok {offsets: {k: o}}``. Keys are strings
(``"0"``, ``"1"``, ...), messages unique ints.

Client, as Maelstrom's: each client process keeps its assigned keys and the next offset to
poll for each. A process first *assigns* keys (``list_committed_offsets`` of a random
non-empty subset; each new key starts at its committed offset, else 0; an already assigned
key keeps its position); then sends to a random key, or polls its assigned keys from its
positions (advancing each to the highest offset returned + 1). After a poll that returned
messages, the process's next op commits the highest offsets it polled (Maelstrom commits
after every poll, in the same client operation; here it is its own ``commit_offsets`` op).
Now and then (``reassign_prob``) a process reassigns. A process whose op ended ``info``
is replaced by a fresh one with no assignment (Jepsen's crashed client). Final phase: on each
node, ``list_committed_offsets`` of every key, then one poll of every key from offset 0
(what a server returns to that one poll; lost writes beyond it are found by the run's polls).

History (``labkit.checkers.kafka`` documents it): ``f="send"`` ``[["send", k, msg]]`` -> ok
``[["send", k, [offset, msg]]]``; ``f="poll"`` invoke ``[["poll", {k: offset}]]`` (the offsets
asked for; Jepsen records just ``[["poll"]]``) -> ok ``[["poll", {k: [[o, msg], ...]}]]``;
``f="commit_offsets"`` ``{k: offset}``; ``f="list_committed_offsets"`` ``[k, ...]`` -> ok
``{k: offset}``. Checker: ``labkit.checkers.kafka.check_kafka``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...checkers.kafka import check_kafka
from ...checkers.verdict import Verdict
from ...history import History
from .base import CheckContext, Invocation, Workload, expect_type

__all__ = ["Kafka", "KafkaInvocation", "WORKLOADS"]


@dataclass(frozen=True)
class KafkaInvocation(Invocation):
    """An ``Invocation`` that remembers its client process, so that its completion can move
    that process's poll positions (the harness hands the same object to ``completion``)."""

    process: Any = field(default=None, compare=False)


class Kafka(Workload):
    """Sends, polls, offset commits and assignments on ``key_count`` logs."""

    name = "kafka"
    idempotent: frozenset[str] = frozenset()   # Maelstrom's client: every timeout is :info
    services = ("lin-kv", "seq-kv")
    defaults = {"key_count": 4, "send_prob": 0.5, "reassign_prob": 0.05, "committed_monotonic": True}

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        n = self.opts["key_count"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"kafka option key_count must be a positive int, got {n!r}")
        for k in ("send_prob", "reassign_prob"):
            p = self.opts[k]
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError(f"kafka option {k} must be a probability in [0, 1], got {p!r}")
        self.keys = [str(i) for i in range(n)]
        self._msg = 0
        self._pos: dict[Any, dict[str, int]] = {}        # process -> key -> next offset to poll
        self._commit: dict[Any, dict[str, int]] = {}     # process -> offsets to commit next

    def invoke(self, rng: random.Random, process: int) -> Invocation:
        if process in self._commit:
            return KafkaInvocation("commit_offsets", self._commit.pop(process), process=process)
        if process not in self._pos or rng.random() < self.opts["reassign_prob"]:
            keys = sorted(rng.sample(self.keys, rng.randint(1, len(self.keys))), key=int)
            return KafkaInvocation("list_committed_offsets", keys, process=process)
        if rng.random() < self.opts["send_prob"]:
            self._msg += 1
            return KafkaInvocation("send", [["send", rng.choice(self.keys), self._msg]], process=process)
        return KafkaInvocation("poll", [["poll", dict(self._pos[process])]], process=process)

    def final(self, node_ids: list[str]) -> list[Invocation]:
        # invocation i runs on node i % len(node_ids): all the listings, then all the polls,
        # so that each node's final client lists (an assign) before it polls from 0
        return ([Invocation("list_committed_offsets", list(self.keys)) for _ in node_ids]
                + [Invocation("poll", [["poll", {k: 0 for k in self.keys}]]) for _ in node_ids])

    def request(self, inv: Invocation) -> dict:
        if inv.f == "send":
            _, k, msg = inv.value[0]
            return {"type": "send", "key": k, "msg": msg}
        if inv.f == "poll":
            return {"type": "poll", "offsets": dict(inv.value[0][1])}
        if inv.f == "commit_offsets":
            return {"type": "commit_offsets", "offsets": dict(inv.value)}
        return {"type": "list_committed_offsets", "keys": list(inv.value)}

    def completion(self, inv: Invocation, reply: dict) -> Any:
        proc = getattr(inv, "process", None)
        expect_type(reply, inv.f + "_ok")
        if inv.f == "send":
            o = reply.get("offset")
            if not isinstance(o, int) or isinstance(o, bool):
                raise ValueError(f"send_ok needs an integer 'offset', got {o!r}")
            _, k, msg = inv.value[0]
            return [["send", k, [o, msg]]]
        if inv.f == "poll":
            msgs = reply.get("msgs", {})
            if not isinstance(msgs, Mapping):
                raise ValueError(f"poll_ok needs 'msgs', a map of key -> [[offset, msg], ...], got {msgs!r}")
            top: dict[str, int] = {}
            for k, pairs in msgs.items():
                if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2
                                                          and isinstance(p[0], int) for p in pairs):
                    raise ValueError(f"poll_ok msgs[{k!r}] must be a list of [offset, msg] pairs, got {pairs!r}")
                if pairs:
                    top[k] = max(p[0] for p in pairs)
            if proc is not None and proc in self._pos:
                pos = self._pos[proc]
                for k, o in top.items():
                    if k in pos:
                        pos[k] = max(pos[k], o + 1)
                if top:
                    self._commit[proc] = top
            return [["poll", {k: [list(p) for p in v] for k, v in msgs.items()}]]
        if inv.f == "commit_offsets":
            return dict(inv.value)
        offs = reply.get("offsets", {})
        if not isinstance(offs, Mapping) or not all(isinstance(o, int) for o in offs.values()):
            raise ValueError(f"list_committed_offsets_ok needs 'offsets', a map of key -> int, got {offs!r}")
        if proc is not None:
            old = self._pos.get(proc, {})
            self._pos[proc] = {k: old.get(k, offs.get(k, 0)) for k in inv.value}
        return dict(offs)

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        ops = History(o for o in history if o.is_client)
        return {"kafka": check_kafka(ops, committed_monotonic=self.opts["committed_monotonic"])}


WORKLOADS = {"kafka": Kafka}
