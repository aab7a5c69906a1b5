"""What both runtimes share: node records, client ids, crash reports."""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from collections import deque

from ..errors import LabkitError, MessageError, NodeCrashed, NodeDown, RequestTimeout
from ..guard import DEFAULTS as GUARD_DEFAULTS, Guard
from ..journal import Event
from ..context import crash_report
from ..message import encode_body, too_large
from .network import NetworkModel

#: Set by ``labkit.sweep.sweep`` while a scenario runs: crash events are appended to the last
#: list instead of being printed, so that a sweep over 100 seeds shows one crash's traceback,
#: not one per seed.
CRASH_SINKS: list[list[Event]] = []


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
    slow: float = 1.0              # cluster.slow: ctx.work takes this many times as long
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
        #: Held by every cluster call that changes or reads node state, so a panel's thread
        #: never sees a node half-way through a kill, restart or close.
        self.lock = threading.RLock()
        self.crashes: list[Event] = []
        self.handler_errors: list[Event] = []   # handler_error events (HTTP 500s), as reported
        self.crashed_ids: set[str] = set()
        self._client_seq = 0
        self._awaiting: dict[str, Callable[[Event], None] | None] = {}  # client msg id -> callback
        self._replies: dict[str, Event] = {}                              # replies for request()
        #: Reply callbacks due to run, with their reply: run only by ``run_callbacks``, on the
        #: thread that drives the cluster (``run_for``/``request``), never by ``sync``.
        self._due: deque[tuple[Callable[[Event], None], Event]] = deque()
        self.echo_crashes = True
        #: Storm-guard limits handed to every node's context (``Cluster(guard=...)``).
        self.guard: Guard | None = GUARD_DEFAULTS.get(self.name)

    def record(self, ev: Event) -> None:
        """A journal event from the cluster itself (faults, client operations)."""
        self.events.append(ev)

    def sync(self) -> None:
        """Bring ``events`` and node states up to date (the processes runtime reads files)."""

    def poll_states(self) -> None:
        """Bring node states up to date without reading the journal (for ``status()``)."""

    def peers_of(self, node: str) -> tuple[str, ...]:
        return tuple(n for n in self.node_ids if n != node)

    def is_destination(self, name: str) -> bool:
        return name in self._node_set or is_client_id(name)

    # -- clients ---------------------------------------------------------------------------
    def client_send(self, client: str, node: str, type: str, body: dict,
                    on_reply: Callable[[Event], None] | None = None) -> str:
        """Send a client request without waiting; ``on_reply(deliver_event)`` runs when the
        reply reaches the client (during ``run_for``/``request``). Returns the message id."""
        body_json = encode_body(client, node, type, body)
        big = too_large(type, body_json)
        if big is not None:
            raise MessageError(f"{client}: cannot send message type {type!r} to {node}: it is {big[len('too large: '):]}; "
                               f"send less at a time (split it into several requests)")
        self._client_seq += 1
        mid = f"{client}.1.{self._client_seq}"
        self._awaiting[mid] = on_reply
        self._transmit_client(client, node, type, mid, body_json)
        return mid

    def forget(self, mid: str) -> None:
        """Stop waiting for the reply to ``mid`` (it timed out); a late reply is only journaled."""
        self._awaiting.pop(mid, None)
        self._replies.pop(mid, None)

    def _client_reply(self, ev: Event) -> None:
        """A message reached a client: hand it to whoever waits for it. A reply callback is
        only queued here; ``run_callbacks`` runs it (the event is in the journal already)."""
        re = ev.data.get("re")
        if re in self._awaiting:
            handler = self._awaiting.pop(re)
            if handler is None:
                self._replies[re] = ev
            else:
                self._due.append((handler, ev))

    def run_callbacks(self) -> None:
        """Run the reply callbacks that are due, in arrival order, on this thread.

        A callback that raises stops the others: its exception goes up to the cell that runs
        the cluster (``run_for``/``request`` raises it, with its traceback); the callbacks
        after it stay queued and run at the next ``run_for``/``request``. Nothing is lost
        from the journal: the replies were recorded before any callback ran."""
        due = self._due
        while due:
            handler, ev = due.popleft()
            handler(ev)

    def node_down(self, node: str) -> bool:
        """Is ``node`` known to be down or crashed (the processes runtime looks first)?"""
        return self.records[node].state in ("down", "crashed")

    def request(self, node: str, type: str, timeout: float, body: dict, client: str) -> Event:
        if self.node_down(node):
            # Refused at once, as a connection to a dead host is: journaled as sent and dropped
            # (rule "node down") so histories and plots show the attempt, but never sent, so no
            # later incarnation of the node can handle it.
            rec = self.records[node]
            body_json = encode_body(client, node, type, body)
            self._client_seq += 1
            mid = f"{client}.1.{self._client_seq}"
            self._refuse_client(client, node, type, mid, body_json)
            raise NodeDown(f"{node} is {rec.state} (incarnation {rec.incarnation}): request {type!r} ({mid}) was "
                           f"refused at once (journaled as dropped, rule 'node down'). "
                           f"cluster.restart({node!r}) brings it back")
        mid = self.client_send(client, node, type, body)
        try:
            self._wait_for_reply(mid, timeout, node)
            reply = self._replies.pop(mid, None)
        finally:
            self.forget(mid)
        return self.finish_request(reply, mid, node, type, timeout)

    def _transmit_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        raise NotImplementedError

    def _refuse_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        """Journal a request to a down node as sent and dropped ("node down"); send nothing."""
        raise NotImplementedError

    def _wait_for_reply(self, mid: str, timeout: float, node: str) -> None:
        """Run the cluster until the reply to ``mid`` is in, ``node`` crashes handling it or
        goes down, or ``timeout`` ms pass."""
        raise NotImplementedError

    def report_crash(self, ev: Event) -> None:
        self.crashes.append(ev)
        if ev.id:
            self.crashed_ids.add(ev.id)
        if CRASH_SINKS:                 # a sweep is running: it reports the crash once, itself
            CRASH_SINKS[-1].append(ev)
        elif self.echo_crashes:
            print(crash_report(ev), file=sys.stderr)

    def url(self, node: str) -> str:
        """The node's HTTP address (processes runtime only)."""
        raise LabkitError(f"cluster.url({node!r}): the simulator has no sockets, so there is no URL to open: its "
                          f"HTTP exchanges are messages in virtual time. Use cluster.http({node!r}).get(path) here, "
                          f"or Cluster(..., runtime='processes') for a real address that curl and a browser reach")

    def report_handler_error(self, ev: Event) -> None:
        """A service's handler raised (answered 500; the node goes on): show it like a crash."""
        self.handler_errors.append(ev)
        if self.echo_crashes:
            from ..service import handler_error_report
            print(handler_error_report(ev), file=sys.stderr)

    def finish_request(self, reply: Event | None, mid: str, node: str, type: str, timeout: float) -> Event:
        if reply is not None:
            return reply
        if mid in self.crashed_ids:
            ev = next(e for e in self.crashes if e.id == mid)
            raise NodeCrashed(f"{node} crashed while handling request {mid} ({type!r}): {ev.get('error')} "
                              f"-- see its crash report for the traceback; cluster.restart({node!r}) brings it back")
        rec = self.records[node]
        if rec.state in ("down", "crashed"):
            raise NodeDown(f"{node} went {rec.state} while request {mid} ({type!r}) waited for its reply; "
                              f"cluster.restart({node!r}) brings it back")
        raise RequestTimeout(
            f"no reply from {node} to request {type!r} (id {mid}) within {timeout:g} ms; "
            + _why_no_reply(node, self.records[node].state))


def _why_no_reply(node: str, state: str) -> str:
    """The likely reason a request to ``node`` (in ``state``) got no reply: what labkit knows
    (down, paused, crashed) before guessing at the handler."""
    if state == "down":
        return f"{node} is down (killed), so nothing handled it: cluster.restart({node!r}) brings it back."
    if state == "crashed":
        return f"{node} has crashed (its traceback was printed): cluster.restart({node!r}) brings it back."
    if state == "paused":
        return f"{node} is paused and handles nothing until cluster.resume({node!r})."
    return f"{node} is {state}. Does its on_message reply with ctx.reply(msg, ...)?"
