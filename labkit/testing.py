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

A ``labkit.Service`` is tested through its routes, and its own HTTP calls answered by hand:

    r = ctx.fetch(node, "GET", "/stock/apple")    # runs the handler; returns an HttpResponse
    assert r.status == 200 and r.json() == {"count": 3}
    call = ctx.http_requests()[-1]                # a ctx.http call the node made (a Message)
    ctx.respond(call, status=200, json={"ok": True})   # or ctx.refuse(call) / ctx.reset(call)

It is the real ``Context`` on a tiny host that records instead of sending, with a clock you
move by hand -- so what passes here behaves the same in a cluster.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from . import argcheck
from .capacity import MAX_SLOW, MIN_SLOW, check_capacity
from .context import Context
from .journal import Event
from .message import Message, check_body, decode, encode, wire
from .node import Node
from .runtime.base import is_client_id
from .runtime.scheduler import Scheduler
from .runtime.storage import Storage


class _FakeHost:
    def __init__(self, seed: int, nodes: frozenset[str]) -> None:
        self.seed = seed
        self.t = 0.0
        self.timers = Scheduler()
        self.sent: list[Message] = []
        self.events: list[Event] = []
        self.crash: Event | None = None
        self.nodes = nodes
        self.responses: dict[str, Message] = {}     # request id -> the service's response
        self.handler_errors: list[Event] = []

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

    def transmit_http(self, ctx: Context, mid: str, dst: str, type: str, body_json: str, call: Any) -> None:
        self.transmit(ctx, mid, dst, type, None, body_json)

    def respond_http(self, ctx: Context, mid: str, dst: str, type: str, re: str, body_json: str,
                     resp: Any = None) -> None:
        w = wire(ctx.id, dst, type, mid, re, self.t, body_json)
        msg = decode(w)
        self.sent.append(msg)
        self.responses[re] = msg
        self.events.append(Event(self.t, "send", ctx.id, mid, wire=w))

    def cancel_http(self, ctx: Context, mid: str) -> None:
        pass

    def handler_failed(self, ctx: Context, ev: Event) -> None:
        self.handler_errors.append(ev)


class FakeContext(Context):
    """A real Context for one node, with a hand-driven clock and a record of what it sent.

    * ``sent``: every Message the node sent, in order; ``outbox(type=...)`` filters them.
    * ``deliver(node, type, src=..., **body)``: hand the node a message (returns the Message).
    * ``advance(ms)``: move the clock, firing timers, sleeps and RPC timeouts that fall due.
    * A handler that raises fails the test straight away with its traceback (an
      ``AssertionError``; a ``NotImplementedError``, an unwritten exercise stub, stays one). With ``raise_on_crash=False`` it behaves as in a cluster instead:
      the node is dead and ``crash`` holds the crash event.
    """

    def __init__(self, node_id: str = "n1", peers: Iterable[str] = ("n2", "n3"), *, seed: int = 0,
                 incarnation: int = 1, storage: dict[str, Any] | None = None,
                 node: Node | None = None, raise_on_crash: bool = True) -> None:
        from .cluster import check_node_id
        peers = (peers,) if isinstance(peers, str) else tuple(peers)     # one peer, not its characters
        for k in (node_id, *peers):
            check_node_id(k)
        if node_id in peers or len(set(peers)) != len(peers):
            raise ValueError(f"FakeContext({node_id!r}, peers={list(peers)!r}): peers are the other nodes, each once")
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
        """Run ``node`` from now on: its capacity (``workers``, ``queue_limit``) and, for a
        ``labkit.Service``, its routes."""
        if node is not self._node:
            self._node = node
            self._workers, self._queue_limit = check_capacity(node, self.id)
        self._routes = getattr(type(node), "_labkit_routes", None)

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
        """Deliver a message from ``src`` (a peer, the node itself or a client id) to ``node``; run its
        handler. Raises ValueError for another ``src`` (a real node hears from no one else) and
        MessageError for a ``type`` that is not a non-empty str."""
        self._check_src(src, f"FakeContext.deliver(src={src!r})")
        check_body(src, type, body)
        self._use(node)
        self._n += 1
        msg = decode(encode(src, self.id, type, f"{src}.0.{self._n}", in_reply_to, self.now, body))
        self._deliver(msg)
        self._reraise()
        return msg

    def _check_src(self, src: str, where: str) -> None:
        """ValueError unless ``src`` could send to this node: itself, a peer or a client."""
        if src != self.id and src not in self.peers and not is_client_id(src):
            raise ValueError(f"{where}: {src!r} is not {self.id}, one of its peers "
                             f"({', '.join(self.peers) or 'none'}) or a client id ('client', 'c0', ...)")

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

    # -- services (labkit.Service) -------------------------------------------------------------
    @property
    def handler_errors(self) -> list[Event]:
        """``handler_error`` events: handlers that raised (answered 500), with tracebacks."""
        return self._fake.handler_errors

    def fetch(self, node: Node, method: str, path: str, *, json: Any = None, data: Any = None,
              headers: Any = None, params: Any = None, src: str = "client", timeout: float = 1000.0) -> Any:
        """Send an HTTP request from ``src`` to the service ``node`` and return its
        ``labkit.HttpResponse`` (``status``, ``headers``, ``json()``, ``text()``). While the
        handler waits (``ctx.sleep``, ``ctx.work``, its own HTTP calls), the clock moves to
        each due timer in turn, for at most ``timeout`` ms; no response by then raises
        AssertionError (answer the node's own calls first with ``respond``)."""
        from .http_types import (HttpResponse, check_method, encode_request, header_list, query_string,
                                 request_payload)
        self._use(node)
        if self._routes is None:
            raise TypeError(f"FakeContext.fetch: {type(node).__name__} is not a labkit.Service; it serves no HTTP")
        where = f"FakeContext.fetch({method!r}, {path!r})"
        method = check_method(method, where)
        self._check_src(src, where)
        timeout = argcheck.ms(timeout, f"{where} timeout", positive=True)
        p, qs = query_string(path, params, where)
        hl = header_list(headers, where)
        body_json = encode_request(method, p, qs, hl, request_payload(json, data, hl, where))
        self._n += 1
        mid = f"{src}.0.{self._n}"
        msg = decode(wire(src, self.id, f"{method} {p}", mid, None, self.now, body_json))
        self._deliver(msg)
        self._reraise()
        host = self._fake
        end = host.t + timeout
        while mid not in host.responses:
            entry = host.timers.pop_due(end)
            if entry is None:
                raise AssertionError(f"{where}: no response within {timeout:g} ms of fake time; is the handler "
                                     f"waiting for one of its own HTTP calls? (ctx.http_requests(), ctx.respond)")
            host.t = entry[0]
            entry[2](*entry[3])
            self._reraise()
        r = host.responses.pop(mid)
        return HttpResponse._from_message(r)

    def http_requests(self, dst: str | None = None) -> list[Message]:
        """The HTTP requests this node made with ``ctx.http`` (as Messages: ``type`` is
        "GET /path", the body holds method, path, query, headers and payload)."""
        return [m for m in self.sent if m.body.get("http") == "1.1" and "method" in m.body
                and (dst is None or m.dst == dst)]

    def respond(self, request: Message, status: int = 200, *, json: Any = None, text: str | None = None,
                headers: Any = None) -> None:
        """Answer the node's HTTP call ``request`` (from ``http_requests()``) as its server would."""
        from .http_types import Response, json_response
        from .message import loads
        resp = json_response(json, status=status, headers=headers) if json is not None else             Response(status=status, text=text, headers=headers)
        self._n += 1
        reply = Message(request.dst, self.id, str(status), f"{request.dst}.0.{self._n}",
                        loads(resp._encode()), request.id, self.now)
        self._deliver(reply)
        self._reraise()

    def refuse(self, request: Message) -> None:
        """Make the node's HTTP call ``request`` fail as refused (``ClientConnectorError``)."""
        from .http_errors import ClientConnectorError
        self._http_failed(request.id, ClientConnectorError(f"{request.dst}: connection refused (FakeContext.refuse)"))
        self._reraise()

    def reset(self, request: Message) -> None:
        """Make the node's HTTP call ``request`` fail as reset (``ServerDisconnectedError``)."""
        from .http_errors import ServerDisconnectedError
        self._http_failed(request.id, ServerDisconnectedError(f"{request.dst}: server disconnected (FakeContext.reset)"))
        self._reraise()

    def _reraise(self) -> None:
        if self._raise and self._fake.crash is not None:
            ev = self._fake.crash
            text = f"the handler raised ({ev.get('cause')}):\n{ev.get('traceback')}"
            if str(ev.get("error") or "").startswith("NotImplementedError"):
                raise NotImplementedError(text)      # an unwritten stub stays what it is (sweep stops on it)
            raise AssertionError(text)
