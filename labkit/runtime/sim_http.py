"""HTTP in the simulator: each exchange is two labkit messages on the event heap.

Theory of operation. A call (``ctx.http``) is a request message and the answer a response
message (see ``labkit.http_types``), journaled as ``send``/``deliver``/``drop`` like any
message, so the space-time diagram, plots and checkers see them unchanged. What TCP adds to
a message is modelled with a *connection* per request, open from the moment the request
leaves until the server sends its response:

* the caller checks the link first: a partitioned or cut link is a black hole (the request
  is dropped, the caller times out), exactly as the processes runtime's caller does;
* a server that is down, or a plain ``Node`` (no HTTP server), *refuses*: the caller gets
  ``ClientConnectorError`` one hop later (``HOP_MS``), and the request is journaled as
  dropped (rule "node down" / "not serving HTTP");
* otherwise the connection is open and the request travels with the link's delay, jitter,
  drop and reorder (one copy: TCP does not duplicate); a link cut while it travels drops it;
* a server killed or crashed with connections open *resets* them: each caller still
  waiting gets ``ServerDisconnectedError`` one hop later (journaled as a drop of its request,
  rule "connection reset");
* the response travels back through the link the other way; if the caller stopped waiting
  (timed out, or restarted) it is dropped with rule "connection closed", as a real server
  writes into a closed connection;
* a paused node's arrivals wait until it resumes, as for messages.
"""
from __future__ import annotations

import heapq
from typing import Any

from ..context import Context
from ..capacity import _Resumed
from ..http_errors import _PHRASES, reason_of
from ..http_types import JSON_TYPE, ClientResponse
from ..journal import Event
from ..message import Message, encode_body, loads_trusted as _loads
from ..service import is_service

HOP_MS = 0.1   # the same as labkit.runtime.sim.HOP_MS (kept here to avoid an import cycle)
_PERFECT = ((0.0,), None)
_new = object.__new__   # what NetworkModel.route answers on a network without faults


class SimHttpMixin:
    """The HTTP transport of ``SimRuntime`` (mixed in)."""

    def _http_setup(self) -> None:
        #: server id -> {request id: (caller context, request wire tuple)}: open connections
        self._conns: dict[str, dict[str, tuple[Context, tuple]]] = {}
        self._services = frozenset(n for n, f in self.factories.items() if is_service(f))  # type: ignore[attr-defined]

    def _transmit_http(self, ctx: Context, mid: str, dst: str, type: str, body_json: Any, call: Any = None) -> None:
        """``Host.transmit_http`` (``call``, what a real request needs, is not needed here).
        ``body_json``: the request body's JSON text, or (from ``ctx.http``'s common call) the
        flat dict ``{"http", "method", "path"}``, which travels as it is when its path is
        short (as flat bodies do: see ``SimRuntime._transmit``), else as JSON."""
        t = self.t  # type: ignore[attr-defined]
        src = ctx.id
        if body_json.__class__ is dict and len(body_json["path"]) > 4096:
            body_json = encode_body(src, dst, type, body_json)
        if t != self._at_t:  # type: ignore[attr-defined]     # ``at``, rounded once per instant (as _transmit)
            self._at_t, self._at = t, round(t, 3)
        w = (src, dst, type, mid, None, self._at, body_json)  # type: ignore[attr-defined]
        events = self.events  # type: ignore[attr-defined]
        events.append((t, "send", src, mid, None, w))
        net = self.net  # type: ignore[attr-defined]
        faulty = net._faulty
        rule = net.blocked(src, dst) if faulty else None
        if rule is not None:                          # a black hole: no connection is made
            events.append(Event(t, "drop", dst, mid, wire=w, extra={"rule": rule}))
            return
        if dst not in self._services or self.records[dst].state in ("down", "crashed"):  # type: ignore[attr-defined]
            ctx._host.call_at(t + HOP_MS, self._http_refused, ctx, w)
            return
        delays, rule = net.route(src, dst, self._net_rng) if faulty else _PERFECT  # type: ignore[attr-defined]
        if rule is not None:
            events.append(Event(t, "drop", dst, mid, wire=w, extra={"rule": rule}))
            return
        conns = self._conns.get(dst)
        if conns is None:
            conns = self._conns[dst] = {}
        conns[mid] = (ctx, w)
        # Its arrival: in the FIFO beside the heap on a perfect network (one hop after now, so in
        # order: see labkit.runtime.sim), else on the heap.
        sched = self._sched  # type: ignore[attr-defined]
        sched._seq += 1
        if faulty:
            heapq.heappush(sched.heap, [t + HOP_MS + delays[0], sched._seq, self._arrive_http, (w,)])
        else:
            self._fifo.append([t + HOP_MS, sched._seq, self._arrive_http, (w,)])  # type: ignore[attr-defined]

    def _http_refused(self, ctx: Context, w: tuple) -> None:
        from ..http_errors import ClientConnectorError
        src, dst, type, mid = w[0], w[1], w[2], w[3]
        down = dst in self._services
        rule = "node down" if down else "not serving HTTP"
        self.events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": rule}))  # type: ignore[attr-defined]
        why = (f"{dst} is down (killed or crashed): nothing listens" if down else
               f"{dst} is a plain labkit.Node, not a labkit.Service: it serves no HTTP")
        ctx._http_failed(mid, ClientConnectorError(f"{src}: cannot connect to {dst} for {type} "
                                                   f"(request {mid}): connection refused; {why}"))

    def _arrive_http(self, w: tuple) -> None:
        src, dst, type, mid, re, at, body_json = w
        rec = self.records[dst]  # type: ignore[attr-defined]
        events = self.events  # type: ignore[attr-defined]
        conns = self._conns.get(dst)
        if conns is None or mid not in conns or rec.state in ("down", "crashed"):
            # the server went down while the request travelled: its caller was reset already
            events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": "node down"}))  # type: ignore[attr-defined]
            return
        rule = self.net.blocked(src, dst) if self.net._faulty else None  # type: ignore[attr-defined]
        if rule is not None:
            del conns[mid]
            events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": rule}))  # type: ignore[attr-defined]
            return
        if rec.state == "paused":
            rec.deferred.append((self._arrive_http, (w,)))
            return
        events.append((self.t, "deliver", dst, mid, None, w))  # type: ignore[attr-defined]
        m = _new(Message)       # (Message(...) without a Python __init__ call, as SimRuntime._arrive)
        m.src, m.dst, m.type, m.id, m.in_reply_to, m.sent_at = src, dst, type, mid, None, at
        m.body = body_json.copy() if body_json.__class__ is dict else _loads(body_json)
        ctx = rec.ctx       # (ctx._deliver's way for an HTTP request to a Service, inline)
        if not ctx.dead:
            ctx._http_request(m)

    def _respond_http(self, ctx: Context, mid: str, dst: str, type: str, re: str, body_json: str,
                      resp: Any = None) -> None:
        """``Host.respond_http`` (``resp``, the ``labkit.Response``, is not needed here)."""
        t = self.t  # type: ignore[attr-defined]
        src = ctx.id
        conns = self._conns.get(src)
        if conns is not None:
            conns.pop(re, None)
        if t != self._at_t:  # type: ignore[attr-defined]
            self._at_t, self._at = t, round(t, 3)
        w = (src, dst, type, mid, re, self._at, body_json)  # type: ignore[attr-defined]
        events = self.events  # type: ignore[attr-defined]
        events.append((t, "send", src, mid, None, w))
        if dst not in self.records:  # type: ignore[attr-defined]
            self._push(t + HOP_MS, self._arrive, (w,))  # type: ignore[attr-defined]   # a client: perfect link
            return
        net = self.net  # type: ignore[attr-defined]
        faulty = net._faulty
        delays, rule = net.route(src, dst, self._net_rng) if faulty else _PERFECT  # type: ignore[attr-defined]
        if rule is not None:
            events.append(Event(t, "drop", dst, mid, wire=w, extra={"rule": rule}))
            return
        sched = self._sched  # type: ignore[attr-defined]      # (its arrival, as a request's)
        sched._seq += 1
        if faulty:
            heapq.heappush(sched.heap, [t + HOP_MS + delays[0], sched._seq, self._arrive_http_response, (w,)])
        else:
            self._fifo.append([t + HOP_MS, sched._seq, self._arrive_http_response, (w,)])  # type: ignore[attr-defined]

    def _arrive_http_response(self, w: tuple) -> None:
        src, dst, type, mid, re, at, body_json = w
        rec = self.records[dst]  # type: ignore[attr-defined]
        events = self.events  # type: ignore[attr-defined]
        if rec.state in ("down", "crashed"):
            events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": "node down"}))  # type: ignore[attr-defined]
            return
        rule = self.net.blocked(src, dst) if self.net._faulty else None  # type: ignore[attr-defined]
        if rule is not None:
            events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": rule}))  # type: ignore[attr-defined]
            return
        if rec.state == "paused":
            rec.deferred.append((self._arrive_http_response, (w,)))
            return
        ctx = rec.ctx
        if ctx is None or re not in ctx._rpcs:
            events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": "connection closed"}))  # type: ignore[attr-defined]
            return
        events.append((self.t, "deliver", dst, mid, None, w))  # type: ignore[attr-defined]
        if body_json.__class__ is dict:
            # A flat JSON response (Response._payload): resumes its caller with the response
            # itself, the caller's own copy -- ctx._deliver's answered-RPC branch, inline (the
            # caller waits for it: checked above; so the context is alive), without a Message.
            coro, handle, cause = ctx._rpcs.pop(re)
            ctx._host.cancel(handle)
            ctx._answered.add(re)
            r = _new(ClientResponse)
            r.status = status = body_json["status"]
            r.reason = _PHRASES.get(status) or reason_of(status)
            r.id, r.remote, r._headers, r._text, r._b64 = mid, src, None, None, None
            r._hraw, r._json = [["Content-Type", JSON_TYPE]], body_json["json"].copy()
            resumed = _new(_Resumed)
            resumed.origin = cause.origin if cause.__class__ is _Resumed else cause
            resumed.reply_id, resumed.rpc_id = mid, re
            ctx._step(coro, r, None, resumed)
            return
        body = _loads(body_json)
        m = _new(Message)
        m.src, m.dst, m.type, m.id, m.in_reply_to, m.sent_at, m.body = src, dst, type, mid, re, at, body
        ctx._deliver(m)

    def _reset_http(self, server: str) -> None:
        """``server`` went down: reset every connection open to it."""
        conns = self._conns.pop(server, None)
        if not conns:
            return
        for mid, (caller, w) in conns.items():
            if not caller.dead:
                caller._host.call_at(self.t + HOP_MS, self._http_reset, caller, w)  # type: ignore[attr-defined]

    def _http_reset(self, ctx: Context, w: tuple) -> None:
        from ..http_errors import ServerDisconnectedError
        src, dst, type, mid = w[0], w[1], w[2], w[3]
        if mid not in ctx._rpcs:          # it stopped waiting (timed out): its connection was closed
            return
        self.events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": "connection reset"}))  # type: ignore[attr-defined]
        ctx._http_failed(mid, ServerDisconnectedError(
            f"{src}: {dst} went down while request {mid} ({type}) was open: server disconnected "
            f"(connection reset)"))

    def _deferred_http_lost(self, fn: Any, args: tuple) -> bool:
        """A killed paused node's backlog entry that was an HTTP arrival: journal it as lost."""
        if fn == self._arrive_http or fn == self._arrive_http_response:
            w = args[0]
            self.events.append(Event(self.t, "drop", w[1], w[3], wire=w, extra={"rule": "node down"}))  # type: ignore[attr-defined]
            return True
        return False
