"""What both runtimes share: node records, client ids, crash reports."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import NodeCrashed, RequestTimeout
from .journal import Event
from .context import crash_report
from .network import NetworkModel

#: Ids the notebook may use as clients: "client", "c0", "c1", ...
def is_client_id(name: str) -> bool:
    return name == "client" or (len(name) > 1 and name[0] == "c" and name[1:].isdigit())


@dataclass
class NodeRecord:
    """The cluster's view of one node."""

    id: str
    state: str = "down"            # up | down | paused | crashed
    incarnation: int = 1
    offset_ms: float = 0.0
    rate: float = 1.0
    ctx: Any = None                # sim: the live Context
    deferred: list = field(default_factory=list)
    proc: Any = None               # processes: the OS process
    pid: int | None = None


class RuntimeBase:
    name = "?"

    def __init__(self, factories: dict[str, Callable[[], Any]], seed: int, net: NetworkModel,
                 events: list[Event]) -> None:
        self.factories = factories
        self.node_ids: tuple[str, ...] = tuple(factories)
        self._node_set = frozenset(self.node_ids)
        self.seed = seed
        self.net = net
        self.events = events
        self.records: dict[str, NodeRecord] = {n: NodeRecord(n) for n in self.node_ids}
        self.crashes: list[Event] = []
        self.crashed_ids: set[str] = set()
        self._client_seq = 0
        self.echo_crashes = True

    def record(self, ev: Event) -> None:
        """A journal event from the cluster itself (faults, client operations)."""
        self.events.append(ev)

    def sync(self) -> None:
        """Bring ``events`` and node states up to date (the processes runtime reads files)."""

    def peers_of(self, node: str) -> tuple[str, ...]:
        return tuple(n for n in self.node_ids if n != node)

    def is_destination(self, name: str) -> bool:
        return name in self._node_set or is_client_id(name)

    def next_client_id(self, client: str) -> str:
        self._client_seq += 1
        return f"{client}.1.{self._client_seq}"

    def report_crash(self, ev: Event) -> None:
        self.crashes.append(ev)
        if ev.id:
            self.crashed_ids.add(ev.id)
        if self.echo_crashes:
            print(crash_report(ev), file=sys.stderr)

    def finish_request(self, reply: Event | None, mid: str, node: str, type: str, timeout: float) -> Event:
        if reply is not None:
            return reply
        if mid in self.crashed_ids:
            ev = next(e for e in self.crashes if e.id == mid)
            raise NodeCrashed(f"{node} crashed while handling request {mid} ({type!r}): {ev.get('error')} "
                              f"-- the traceback was printed above; cluster.restart({node!r}) brings it back")
        raise RequestTimeout(
            f"no reply from {node} to request {type!r} (id {mid}) within {timeout:g} ms; "
            f"{node} is {self.records[node].state}. Does its on_message reply with ctx.reply(msg, ...)?")
