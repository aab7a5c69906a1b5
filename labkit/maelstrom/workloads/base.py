"""The shape every Maelstrom workload takes in labkit: a generator, a wire format, a checker.

A workload (Maelstrom's ``maelstrom.workload.*`` namespaces) says

* what clients do: ``invoke(rng, process)`` draws the next operation of a client process
  (Jepsen's generator, one op at a time; ``None`` skips this arrival), ``setup`` lists the
  messages sent to nodes before the run (broadcast's ``topology``), ``final`` the reads made
  after the nemesis healed and the cluster was quiet;
* how an operation travels: ``request(inv)`` is the Maelstrom request body (with ``type``,
  without ``msg_id``), ``completion(inv, reply)`` the ``ok`` op's value read from a non-error
  reply body (with ``type``);
* what is right: ``check(history, ctx)`` returns named ``Verdict``s over the recorded history
  (forms in ``/work/notes/maelstrom_contract.md`` and each workload's docstring).

The harness (``labkit.maelstrom.harness``), not the workload, turns an error reply into
``fail`` (definite code) or ``info`` (indefinite), and a timeout into ``info`` -- or ``fail``
when ``inv.f in workload.idempotent`` (Maelstrom's rule: an idempotent op that timed out may
be treated as not having happened). It also adds the generic checks (availability, latency
quantiles, msgs-per-op). Source: Maelstrom's ``doc/workloads.md`` and ``src/maelstrom/workload/``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from ...checkers.verdict import Verdict
from ...history import History

__all__ = ["Invocation", "CheckContext", "Workload"]


@dataclass(frozen=True)
class Invocation:
    """One operation a client is about to invoke.

    ``f``: the history op's f (``"read"``, ``"broadcast"``, ``"txn"``, ``"send"``, ...);
    ``value``: the invoke value in Jepsen's form; ``key``: the independent key (lin-kv), else
    ``None``."""

    f: str
    value: Any = None
    key: Any = None


@dataclass
class CheckContext:
    """What a workload's checker may look at besides the history.

    ``journal``: the run's labkit ``Journal`` (messages, faults); ``node_ids``: the program
    nodes ``["n0", ...]``; ``opts``: the test's options (``rate`` ops/s, ``time_limit`` s,
    ``latency`` ms, ``node_count``, ``seed``, ..., and the workload's own options), plus
    ``final_time_ms``: the cluster time at which the final phase began (operations invoked
    at or after it are the workload's ``final`` invocations)."""

    journal: Any
    node_ids: list[str]
    opts: dict


class Workload:
    """Base class of Maelstrom workloads. Subclasses set ``name``, ``defaults`` (their
    Maelstrom options and default values), and override the methods below.

    ``Workload(**opts)``: options are checked against ``defaults``; an unknown option raises
    ``ValueError`` naming it and the known ones. The merged options are ``self.opts``."""

    name: ClassVar[str] = ""
    #: fs whose timeouts are ``fail`` (certainly did not happen, or harmless to assume so), not ``info``.
    idempotent: ClassVar[frozenset[str]] = frozenset()
    #: Maelstrom services the programs may call, e.g. ``("lin-kv",)``.
    services: ClassVar[tuple[str, ...]] = ()
    #: The workload's options (Maelstrom's names with ``_`` for ``-``) and their defaults.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **opts: Any) -> None:
        unknown = sorted(k for k in opts if k not in self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for workload {self.name!r}; "
                             f"its options are: {known}")
        self.opts: dict[str, Any] = {**self.defaults, **opts}

    def setup(self, node_ids: list[str]) -> list[tuple[str, dict]]:
        """Messages sent before the run, as ``(dest, Maelstrom body with "type")`` pairs
        (e.g. broadcast's ``topology``). The harness waits for their replies."""
        return []

    def invoke(self, rng: random.Random, process: int) -> Invocation | None:
        """The next operation for client ``process`` (``None``: skip this arrival)."""
        raise NotImplementedError(f"workload {self.name!r} does not define invoke()")

    def final(self, node_ids: list[str]) -> list[Invocation]:
        """Reads made after the heal and quiet period, one client per invocation (in order,
        invocation i on node ``node_ids[i % len(node_ids)]``)."""
        return []

    def request(self, inv: Invocation) -> dict:
        """The Maelstrom request body for ``inv`` (with ``"type"``, without ``msg_id``)."""
        raise NotImplementedError(f"workload {self.name!r} does not define request()")

    def completion(self, inv: Invocation, reply: dict) -> Any:
        """The ``ok`` op's value from a non-error ``reply`` body (with ``"type"``). Raise
        ``ValueError`` for a reply of the wrong type or shape; the harness records ``info``
        with that message."""
        raise NotImplementedError(f"workload {self.name!r} does not define completion()")

    def check(self, history: History, ctx: CheckContext) -> dict[str, Verdict]:
        """Named verdicts of this workload's checker(s) over ``history``."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.opts.items())
        return f"{type(self).__name__}({opts})"


def expect_type(reply: dict, *types: str) -> None:
    """Raise ``ValueError`` unless ``reply["type"]`` is one of ``types``."""
    if reply.get("type") not in types:
        raise ValueError(f"expected a {' or '.join(map(repr, types))} reply, got {reply.get('type')!r}")
