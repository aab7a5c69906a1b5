"""Unit-testing a node without a cluster: a context whose effects you can inspect.

    ctx = FakeContext("n1", peers=["n2", "n3"])
    node = MyNode()
    node.on_start(ctx)
    ctx.deliver(node, "ping", src="n2", at=5)     # calls on_message with a real Message
    assert ctx.sent[-1].type == "pong"
    ctx.advance(100)                              # fires due timers through node.on_timer

``await ctx.work(ms)`` works here as in a cluster: the node's ``workers`` and ``queue_limit``
apply, ``advance`` ends the work, ``in_flight`` / ``queued`` / ``counters["shed"]`` show the
load, and ``slow(factor)`` plays ``cluster.slow``.

It is the real ``Context`` on a tiny host that records instead of sending, with a clock you
move by hand -- so what passes here behaves the same in a cluster.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from . import argcheck
from .capacity import MAX_SLOW, MIN_SLOW, check_capacity
from .context import Context
from .journal import Event
from .message import Message, decode, encode, wire
from .node import Node
from .runtime import is_client_id
from .scheduler import Scheduler
from .storage import Storage


class _FakeHost:
    def __init__(self, seed: int, nodes: frozenset[str]) -> None:
        self.seed = seed
        self.t = 0.0
        self.timers = Scheduler()
        self.sent: list[Message] = []
        self.events: list[Event] = []
        self.crash: Event | None = None
        self.nodes = nodes

    def now(self) -> float:
        return self.t

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> list:
        return self.timers.call_at(t, fn, *args)

    def cancel(self, entry: list) -> None:
        self.timers.cancel(entry)

    def transmit(self, ctx: Context, mid: str, dst: str, type: str, re: str | None, body_json: str) -> None:
        w = wire(ctx.id, dst, type, mid, re, self.t, body_json)
        self.sent.append(decode(w))
        self.events.append(Event(self.t, "send", ctx.id, mid, wire=w))

    def record(self, ev: Event) -> None:
        self.events.append(ev)

    def is_destination(self, name: str) -> bool:
        return name in self.nodes or is_client_id(name)

    def crashed(self, ctx: Context, ev: Event) -> None:
        self.crash = ev


class FakeContext(Context):
    """A real Context for one node, with a hand-driven clock and a record of what it sent.

    * ``sent``: every Message the node sent, in order; ``outbox(type=...)`` filters them.
    * ``deliver(node, type, src=..., **body)``: hand the node a message (returns the Message).
    * ``advance(ms)``: move the clock, firing timers, sleeps and RPC timeouts that fall due.
    * A handler that raises fails the test straight away with its traceback (an
      ``AssertionError``). With ``raise_on_crash=False`` it behaves as in a cluster instead:
      the node is dead and ``crash`` holds the crash event.
    """

    def __init__(self, node_id: str = "n1", peers: Iterable[str] = ("n2", "n3"), *, seed: int = 0,
                 incarnation: int = 1, storage: dict[str, Any] | None = None,
                 node: Node | None = None, raise_on_crash: bool = True) -> None:
        peers = tuple(peers)
        host = _FakeHost(seed, frozenset((node_id, *peers)))
        store = Storage(node_id)
        for k, v in (storage or {}).items():
            store[k] = v
        super().__init__(host, node_id, node or Node(), peers, incarnation=incarnation, storage=store)
        self._fake = host
        self._raise = raise_on_crash
        self._n = 0

    @property
    def sent(self) -> list[Message]:
        return self._fake.sent

    @property
    def events(self) -> list[Event]:
        return self._fake.events

    @property
    def crash(self) -> Event | None:
        return self._fake.crash

    def outbox(self, type: str | None = None, dst: str | None = None) -> list[Message]:
        return [m for m in self.sent if (type is None or m.type == type) and (dst is None or m.dst == dst)]

    def _use(self, node: Node) -> None:
        if node is not self._node:
            self._node = node
            self._workers, self._queue_limit = check_capacity(node, self.id)

    def slow(self, factor: float) -> None:
        """Make this node's ``ctx.work`` take ``factor`` (in [1, 1000]) times as long from now
        on, as ``cluster.slow(node, factor)`` does; ``slow(1)`` is normal speed."""
        self._set_slow(argcheck.number(factor, "FakeContext.slow(factor)", lo=MIN_SLOW, hi=MAX_SLOW))

    def start(self, node: Node) -> None:
        """Run ``node.on_start`` through the context (coroutines are driven)."""
        self._use(node)
        self._start()
        self._reraise()

    def deliver(self, node: Node, type: str, src: str = "n2", in_reply_to: str | None = None,
                **body: Any) -> Message:
        """Deliver a message from ``src`` to ``node`` and run its handler."""
        self._use(node)
        self._n += 1
        msg = decode(encode(src, self.id, type, f"{src}.0.{self._n}", in_reply_to, self.now, body))
        self._deliver(msg)
        self._reraise()
        return msg

    def advance(self, ms: float) -> None:
        """Move the clock ``ms`` (finite, >= 0) forward, running everything that falls due, in order."""
        ms = argcheck.ms(ms, "FakeContext.advance(ms)")
        host = self._fake
        end = host.t + ms
        while (entry := host.timers.pop_due(end)) is not None:
            host.t = entry[0]
            entry[2](*entry[3])
            self._reraise()
        host.t = end

    def _reraise(self) -> None:
        if self._raise and self._fake.crash is not None:
            ev = self._fake.crash
            raise AssertionError(f"the handler raised ({ev.get('cause')}):\n{ev.get('traceback')}")
