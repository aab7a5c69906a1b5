"""The node process's asyncio loop: a real aiohttp server and client (processes runtime).

Theory of operation. A ``labkit.Service`` runs this loop from the start; a plain ``Node``
switches to it at the end of the round of its first ``ctx.http`` call (before, it runs
``_child``'s poll loop; plain nodes that never call HTTP keep that loop and its speed). The
node object, its sockets, scheduler and context are the same; only the loop differs:

* ZeroMQ sockets are watched with ``loop.add_reader`` on their ``zmq.FD``. That descriptor is
  *edge*-triggered: it signals a change, not a level, so each reader drains while the socket's
  ``EVENTS`` says POLLIN, re-checking after every ``recv`` and after every ``send`` on the same
  socket (the control socket answers each command), and the readers run once at start for
  what came before they were registered;
* labkit's timers (``Scheduler``) are driven by one asyncio ``TimerHandle`` at the earliest due
  time, re-armed at the end of every round;
* every callback that runs node code (a frame from the inbox, a control command, a timer, an
  HTTP request or response) ends its round with ``_flush``: the round's journal lines are
  appended to the journal file (``labkit.runtime.journal_file``) *before* anything the round
  sent -- ZeroMQ frames, HTTP responses (handed to the aiohttp handlers waiting on them: a
  future's result, or, when the round that answered is the request's own, the value its
  ``_handle`` returns) and HTTP calls (tasks started; a call started by the round that ends
  another call runs on in that call's task, see ``_calls``) -- so the journal never shows a
  delivery whose send it lacks.

The server listens on an ephemeral loopback TCP port (``127.0.0.1:0``) and writes it to
``<id>.port`` in the cluster's private 0700 directory (atomically; removed when the node
dies), where callers and ``cluster.url`` find it; a restarted node writes its new port. It
binds before its hello (``_Node._listen``), so every node's ``on_start`` may call it. TCP
rather than a unix socket: one listener serves peers and outside tools (curl, a browser),
and TLS works node to node (aiohttp's ``UnixConnector`` cannot do TLS: it passes no ``ssl``
to ``create_unix_connection``). Calls carry ``X-Labkit-From/Id/At`` headers so the server
journals the same message id and send time the caller did; requests without them come from
outside (sender "client") and sit outside the network model, like the notebook's.

Faults (the same meaning as in the simulator, ``labkit.runtime.sim_http``; the *receiver* applies
the ``NetworkModel``, per direction, as for messages):

=========================  ===============================  ==============================
fault                      request (caller -> server)       response (server -> caller)
=========================  ===============================  ==============================
partition / cut link       black hole: the caller checks    the caller drops it on arrival
                           the link before connecting;      -> ServerTimeoutError
                           the server drops it on arrival
                           -> ServerTimeoutError
one-way cut                only that direction is lost      only that direction is lost
delay / jitter / reorder   the server delays the handler    the caller delays the resumption
drop (probability)         the server never answers         the caller ignores the response
duplicate                  none (TCP delivers once)         none
kill / crash               refused: ClientConnectorError    open requests are reset:
                           (the port is closed)             ServerDisconnectedError
pause (SIGSTOP)            the kernel accepts, nobody       (the caller waits) -> timeout
                           answers -> ServerTimeoutError
skew                       the node's clock: its timeouts and ctx.now run on it
a plain Node as server     refused: ClientConnectorError (it has no server)
=========================  ===============================  ==============================
"""
from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from .child import MAX_BATCH, _Node
from .http_bodies import _finish, split_request_headers, split_response_headers
from ..http_errors import ClientConnectorError, ClientSSLError, ServerDisconnectedError, reason_of
from ..http_types import _MISSING, encode_request, encode_response, payload_and_value, payload_bytes
from ..message import ID_CHARS, Message, dumps as _dumps, loads

URL: Any = None   # yarl.URL, imported with aiohttp when the loop starts
web: Any = None   # aiohttp.web, likewise
#: Headers of labkit's own that a response carries (set here, in place of any the handler set).
_OWN_RESPONSE_HEADERS = frozenset({"x-labkit-id", "x-labkit-at"})
#: A message id a caller may send in X-Labkit-Id: 1 to 100 of ``ID_CHARS``.
_ID_RE = re.compile("[" + re.escape("".join(sorted(ID_CHARS))) + "]{1,100}")

def run_async(node: _Node, started: bool) -> None:
    """Run ``node`` on the asyncio loop until it ends (the process exits from inside)."""
    node.__class__ = AsyncNode
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(node._amain(started))  # type: ignore[attr-defined]


class AsyncNode(_Node):
    """``_Node`` on asyncio, with the HTTP side of the Host interface."""

    async def _amain(self, started: bool) -> None:
        import aiohttp
        import zmq
        global URL, web
        from aiohttp import web
        from yarl import URL
        self.aiohttp = aiohttp
        self.loop = loop = asyncio.get_running_loop()
        # request id -> [future or None, outside?, web.Response or None]: the handler's response
        # (set once the round's journal is written) goes to the future its _handle awaits -- or,
        # when the round that answered was _handle's own, straight back to it (no future, no await)
        self.serving: dict[str, list] = {}
        self.http_resp: list[tuple] = []      # (serving entry, web.Response, wire, dst) after the write
        self.calls: dict[str, asyncio.Task] = {}
        self.adopter: Any = None               # the task of a call whose round is ending (_calls)
        self.adopted: tuple | None = None
        self.ports: dict[str, tuple] = {}
        self.port_paths: dict[str, str] = {}
        self.urls: dict[tuple, Any] = {}       # (scheme, port, path, query) -> yarl.URL
        self.ext_seq = 0
        self.timer_handle: Any = None
        self.timer_due: float | None = None
        self.port_path = os.path.join(self.spec["dir"], f"{self.id}.port")
        self.services = frozenset(self.spec.get("services", ()))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False, skip_auto_headers=("Content-Type",))
        # aiohttp retries an idempotent request once on a new connection when a pooled one was
        # closed under it; a server killed mid-request must look reset (as in the simulator),
        # not refused by the retry. (A private flag, the one aiohttp's own test client sets.)
        if hasattr(self.session, "_retry_connection"):
            self.session._retry_connection = False
        self.EVENTS, self.POLLIN, self.NOBLOCK = zmq.EVENTS, zmq.POLLIN, zmq.NOBLOCK
        if not started:
            self.gc_setup()
            self.ctx._start()
            if self.spec.get("service") and not self.has_crashed:
                await self._serve()
            self._flush()
            if self.has_crashed:
                return
            self.control.send(_dumps({"op": "started"}).encode())
        loop.add_reader(self.control.getsockopt(zmq.FD), self._on_control)
        loop.add_reader(self.inbox.getsockopt(zmq.FD), self._on_inbox)
        loop.add_reader(self.watch.fileno(), self._parent_gone)
        self._on_control()            # what came before the readers were registered
        self._on_inbox()
        self._end_round()
        await loop.create_future()    # forever: the process ends with os._exit

    async def _serve(self) -> None:
        """Serve on the socket ``_listen`` bound (and published in ``<id>.port``) before hello."""
        from aiohttp import web
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        await self.loop.create_server(server, sock=self.listen_sock, ssl=self.ssl_ctx, backlog=512)

    # -- rounds -------------------------------------------------------------------------------------
    def _end_round(self) -> None:
        if self.has_crashed:
            return
        self._flush()
        due = self.timers.next_time()
        if due == self.timer_due and self.timer_handle is not None:
            return
        if self.timer_handle is not None:
            self.timer_handle.cancel()
            self.timer_handle = None
        self.timer_due = due
        if due is not None:
            self.timer_handle = self.loop.call_at(self.t0 + due / 1000.0, self._on_timer)

    def _on_timer(self) -> None:
        self.timer_handle = None
        self.timer_due = None
        timers = self.timers
        now = self.now()
        while not self.has_crashed:
            entry = timers.pop_due(now)
            if entry is None:
                break
            entry[2](*entry[3])
        self._end_round()
        if self.survivors[0]:
            self.survivors[0] = False
            import gc
            gc.freeze()

    def _on_control(self) -> None:
        control = self.control
        while control.getsockopt(self.EVENTS) & self.POLLIN:   # re-checked after each ack sent
            self._control(control.recv(self.NOBLOCK))
        self._end_round()

    def _on_inbox(self) -> None:
        inbox = self.inbox
        n = 0
        while not self.has_crashed and inbox.getsockopt(self.EVENTS) & self.POLLIN:
            self._take(inbox.recv(self.NOBLOCK))
            n += 1
            if n >= MAX_BATCH:                   # let the rest of the loop run; come back
                self.loop.call_soon(self._on_inbox)
                break
        self._end_round()

    def _flush(self) -> None:
        _Node._flush(self)
        if self.http_resp:
            resp, self.http_resp = self.http_resp, []
            for entry, web_resp, w, dst in resp:
                fut = entry[0]
                if fut is None:                  # its _handle is running still: it returns it
                    entry[2] = web_resp
                elif fut.done():                 # the caller went away meanwhile
                    self._journal_drop(dst, w, "connection closed")
                    continue
                else:
                    fut.set_result(web_resp)
                if entry[1]:                    # nobody else can journal an outside client's receipt
                    self.jbuf.append(f'{{"t":{self.now():.3f},"kind":"deliver","node":"{dst}",{w[1:]}\n')
        if self.http_out:
            out, self.http_out = self.http_out, []
            for job in out:
                if self.adopter is not None:     # a call task that just finished takes it on
                    self.calls[job[0]] = self.adopter
                    self.adopted, self.adopter = job, None
                else:
                    self.calls[job[0]] = self.loop.create_task(self._calls(job))
        if self.jbuf:
            _Node._flush(self)

    def crashed(self, ctx: Any, ev: Any) -> None:
        try:
            os.unlink(self.port_path)          # callers are refused at once, never sent elsewhere
        except (OSError, AttributeError):
            pass
        _Node.crashed(self, ctx, ev)

    def _journal_drop(self, node: str, wire: str, rule: str) -> None:
        self.jbuf.append(f'{{"t":{self.now():.3f},"kind":"drop","node":{_dumps(node)},{wire[1:-1]},'
                         f'"rule":{_dumps(rule)}}}\n')

    # -- the caller's side ---------------------------------------------------------------------------
    def _port_of(self, dst: str) -> tuple[str, int] | None:
        path = self.port_paths.get(dst)
        if path is None:
            path = self.port_paths[dst] = os.path.join(self.spec["dir"], f"{dst}.port")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns)
        cached = self.ports.get(dst)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with open(path) as f:
                scheme, port, _ = f.read().split()
        except (OSError, ValueError):
            return None
        found = (scheme, int(port))
        self.ports[dst] = (key, found)
        return found

    def cancel_http(self, ctx: Any, mid: str) -> None:
        task = self.calls.pop(mid, None)
        if task is not None:
            task.cancel()                      # closes the connection: the server sees the caller go

    def _fail(self, mid: str, dst: str, w: str, rule: str, exc: BaseException) -> None:
        self._journal_drop(dst, w, rule)
        self.ctx._http_failed(mid, exc)

    async def _calls(self, job: tuple) -> None:
        """Make the call ``job`` (mid, dst, call, wire, at), then each call the rounds it ends
        start first, in this same task: a caller that awaits one call after another (the
        common case) gets each request sent at once, without one more turn of the loop to
        start a new task. ``calls[mid]`` is this task while it makes call ``mid``, so
        ``cancel_http`` (a timeout) cancels that call; a task ends once a round starts none.
        (One coroutine for them all: each await of a call resumes through one frame less.)"""
        aiohttp = self.aiohttp
        me = asyncio.current_task()
        while job is not None:
            self.adopted = None
            mid, dst, call, w, at = job
            cancelled: BaseException | None = None
            try:
                cm = self._request(mid, dst, call, w, at)
                if cm is None:                 # refused or a black hole: _request said so
                    continue
                async with cm as resp:
                    body = await resp.read()
            except asyncio.CancelledError as e:
                cancelled = e                  # the call timed out (cancel_http): the task ends
            except aiohttp.ClientSSLError as e:
                self._fail(mid, dst, w, "TLS failed", ClientSSLError(f"{self._what(mid, dst, call)}: TLS "
                                                                     f"handshake failed: {e}"))
            except aiohttp.ClientConnectorError as e:
                self._fail(mid, dst, w, "node down", ClientConnectorError(
                    f"{self._what(mid, dst, call)}: connection refused ({e})"))
            except (aiohttp.ClientError, OSError) as e:
                self._fail(mid, dst, w, "connection reset", ServerDisconnectedError(
                    f"{self.id}: {dst} went down while request {mid} ({call.method} {call.path}) was open: "
                    f"server disconnected ({type(e).__name__}: {e})"))
            else:
                self._response(mid, dst, resp, body)
            finally:
                self.calls.pop(mid, None)
                self.adopter = me if cancelled is None else None     # a cancelled task takes on nothing
                try:
                    self._end_round()
                finally:
                    self.adopter = None
                job, self.adopted = self.adopted, None

    def _url(self, scheme: str, port: int, path: str, query: str) -> Any:
        """The ``yarl.URL`` of a call (made once per scheme, port, path and query: paths repeat)."""
        key = (scheme, port, path, query)
        url = self.urls.get(key)
        if url is None:
            url = URL(f"{scheme}://127.0.0.1:{port}{path}" + (f"?{query}" if query else ""), encoded=True)
            if len(self.urls) >= 1024:
                self.urls.clear()
            self.urls[key] = url
        return url

    def _what(self, mid: str, dst: str, call: Any) -> str:
        """How a failed call's error starts -- in the simulator's words (``runtime.sim_http``)."""
        return f"{self.id}: cannot connect to {dst} for {call.method} {call.path} (request {mid})"

    def _request(self, mid: str, dst: str, call: Any, w: str, at: float) -> Any:
        """The aiohttp request (a context manager) of call ``mid`` -- or None, the call ended
        here: a black hole (journaled; the caller's timeout ends it) or refused (failed)."""
        src = self.id
        rule = self.net.blocked(src, dst)
        if rule is not None:               # a black hole: the caller's timeout ends it
            self._journal_drop(dst, w, rule)
            return None
        if dst not in self.services:
            self._fail(mid, dst, w, "not serving HTTP", ClientConnectorError(
                f"{self._what(mid, dst, call)}: connection refused; {dst} is a plain labkit.Node, not a "
                f"labkit.Service: it serves no HTTP"))
            return None
        found = self._port_of(dst)
        if found is None:
            self._fail(mid, dst, w, "node down", ClientConnectorError(
                f"{self._what(mid, dst, call)}: connection refused; {dst} is down (killed or crashed): "
                f"nothing listens"))
            return None
        scheme, port = found
        ssl = call.ssl
        if (scheme == "https") != (ssl is not None):
            self._fail(mid, dst, w, "TLS mismatch", ClientSSLError(
                f"{self._what(mid, dst, call)}: {dst} serves {scheme.upper()}; " +
                ("pass ssl=<an ssl.SSLContext that trusts its certificate>" if scheme == "https" else
                 "call it without ssl=")))
            return None
        headers = [(k, v) for k, v in call.headers] if call.headers else []
        headers += [("X-Labkit-From", src), ("X-Labkit-Id", mid), ("X-Labkit-At", repr(round(at, 3)))]
        url = self._url(scheme, port, call.path, call.query)
        data = (payload_bytes(call.payload) or None) if call.payload is not None else None
        if ssl is None:
            return self.session.request(call.method, url, headers=headers, data=data)
        return self.session.request(call.method, url, headers=headers, data=data, ssl=ssl, server_hostname=dst)

    def _response(self, mid: str, dst: str, resp: Any, body: bytes) -> None:
        h = resp.headers
        rid = h.get("X-Labkit-Id") or f"{dst}.0.{mid}"
        try:
            rat = float(h.get("X-Labkit-At", ""))
        except ValueError:
            rat = self.now()
        shown, jh = split_response_headers(h)
        payload, value = payload_and_value(body, h.get("Content-Type")) if body else (None, _MISSING)
        status, reason = resp.status, resp.reason
        body_json = encode_response(status, reason, jh, payload)
        type = str(status)
        w = self.wire(dst, self.id, type, rid, mid, rat, body_json)
        delays, rule = self.net.route(dst, self.id, self.net_rng)
        if rule is not None:
            self._journal_drop(self.id, w, rule)
            return
        d: dict[str, Any] = {"http": "1.1", "status": status}
        if reason and reason != reason_of(status):
            d["reason"] = reason
        msg = Message(dst, self.id, type, rid, _finish(d, jh, payload, value, shown), mid, rat)
        if delays[0] <= 0:                     # (_response_arrives, inline: the common case)
            if mid not in self.ctx._rpcs:      # it timed out meanwhile
                self._journal_drop(self.id, w, "connection closed")
                return
            self._journal_msg("deliver", w)
            self.ctx._deliver(msg)
        else:
            self.call_at(self.now() + delays[0], self._response_later, w, msg)

    def _response_later(self, w: str, msg: Message) -> None:
        rule = self.net.blocked(msg.src, self.id)
        if rule is not None:
            self._journal_drop(self.id, w, rule)
            return
        self._response_arrives(w, msg)

    def _response_arrives(self, w: str, msg: Message) -> None:
        if msg.in_reply_to not in self.ctx._rpcs:   # it timed out meanwhile
            self._journal_drop(self.id, w, "connection closed")
            return
        self._journal_msg("deliver", w)
        self.ctx._deliver(msg)

    # -- the server's side ---------------------------------------------------------------------------
    async def _handle(self, request: Any) -> Any:
        body = await request.read() if request.body_exists else b""
        h = request.headers
        src = h.get("X-Labkit-From")
        outside = src is None
        if outside:                           # curl, a browser, requests: outside the network model
            self.ext_seq += 1
            src, mid, at = "client", f"{self.id}.{self.spec['incarnation']}.x{self.ext_seq}", self.now()
        else:
            mid = h.get("X-Labkit-Id", "")
            try:
                at = float(h.get("X-Labkit-At", ""))
            except ValueError:
                at = -1.0
            if src not in self._node_set or _ID_RE.fullmatch(mid) is None or at < 0:
                return web.Response(status=400, text="400: Bad Request: malformed X-Labkit-* headers")
        shown, jh = split_request_headers(h)
        payload, value = payload_and_value(body, h.get("Content-Type")) if body else (None, _MISSING)
        # The target as it came on the wire (percent-encoded), as the caller journaled it; the
        # handler sees it decoded, as in the simulator (labkit.service, http_types.path_views).
        url = request.rel_url
        method, path, qs = request.method, url.raw_path, url.raw_query_string
        body_json = encode_request(method, path, qs, jh, payload)
        type = f"{method} {path}"
        w = self.wire(src, self.id, type, mid, None, at, body_json)
        entry = self.serving[mid] = [None, outside, None]
        d: dict[str, Any] = {"http": "1.1", "method": method, "path": path}
        if qs:
            d["query"] = qs
        msg = Message(src, self.id, type, mid, _finish(d, jh, payload, value, shown), None, at)
        try:
            if outside:
                self._request_arrives(w, msg)
            else:
                delays, rule = self.net.route(src, self.id, self.net_rng)
                if rule is not None:
                    self._journal_drop(self.id, w, rule)     # a black hole: never answered
                elif delays[0] > 0:
                    self.call_at(self.now() + delays[0], self._request_later, w, msg)
                else:                             # (_request_arrives, inline: the common case)
                    self._journal_msg("deliver", w)
                    self.ctx._deliver(msg)
            self._end_round()
            if entry[2] is not None:          # answered in this round (the common case)
                return entry[2]
            fut = entry[0] = self.loop.create_future()
            return await fut
        finally:
            self.serving.pop(mid, None)

    def _request_later(self, w: str, msg: Message) -> None:
        rule = self.net.blocked(msg.src, self.id)
        if rule is not None:
            self._journal_drop(self.id, w, rule)
            return
        self._request_arrives(w, msg)

    def _request_arrives(self, w: str, msg: Message) -> None:
        self._journal_msg("deliver", w)
        self.ctx._deliver(msg)

    def respond_http(self, ctx: Any, mid: str, dst: str, type: str, re: str, body_json: str,
                     resp: Any = None) -> None:
        now = self.now()
        w = self.wire(self.id, dst, type, mid, re, now, body_json)
        self.jbuf.append(f'{{"t":{now:.3f},"kind":"send","node":{self.jid},{w[1:]}\n')
        entry = self.serving.pop(re, None)
        if entry is None:
            if self.is_client_id(dst):         # the notebook's request came over ZeroMQ
                self.out.append((dst, w))
            else:
                self._journal_drop(dst, w, "connection closed")
            return
        if resp is not None:                   # the labkit.Response itself: nothing to parse back
            status, pl = resp.status, resp._payload
            reason = resp.reason if resp.reason and resp.reason != reason_of(status) else None
            pairs = resp._header_pairs()
        else:
            d = loads(body_json)
            status, reason = d["status"], d.get("reason")
            pairs = d.get("headers") or ()
            pl = next(((k, d[k] if k != "json" else _dumps(d[k])) for k in ("json", "body", "body64") if k in d),
                      None)
        # labkit's own two headers last, in place of any the handler set (web.Response makes the
        # multidict from these pairs)
        headers = [(k, v) for k, v in pairs if k.lower() not in _OWN_RESPONSE_HEADERS] \
            if len(pairs) != 1 or pairs[0][0] != "Content-Type" else [(pairs[0][0], pairs[0][1])]
        headers += [("X-Labkit-Id", mid), ("X-Labkit-At", repr(round(now, 3)))]
        web_resp = web.Response(status=status, reason=reason, body=payload_bytes(pl), headers=headers)
        self.http_resp.append((entry, web_resp, w, dst))

    def handler_failed(self, ctx: Any, ev: Any) -> None:
        pass   # journaled; the notebook prints it when it reads the journal

