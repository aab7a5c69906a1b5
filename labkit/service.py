"""``labkit.Service``: a node that also serves HTTP routes, the same in both runtimes.

    class Inventory(labkit.Service):
        def on_start(self, ctx):
            self.stock = {"apple": 3}

        @labkit.get("/stock/{item}")
        async def get_stock(self, ctx, req):
            n = self.stock.get(req.match_info["item"])
            if n is None:
                raise labkit.HTTPNotFound(text="no such item")
            return labkit.json_response({"count": n})

A Service is still a ``Node``: timers, messages, ``ctx.storage`` and ``ctx.note`` work beside
its routes. Patterns are aiohttp's (``/stock/{item}``, ``/files/{name:.+}``); the first route
that matches (in the order the class defines them, base classes first) handles the request,
as aiohttp's router does. Every service also answers ``GET /healthz`` (liveness: 200 "ok"
while the node runs) and ``GET /readyz`` (readiness: 200, or 503 after ``ctx.ready(False)``),
unless the class routes those paths itself; probes take no worker and are never shed.

Theory of operation. A request reaches ``Context._deliver`` as a message whose body says
``"http": "1.1"`` (see ``labkit.http_types``) -- over the simulator's heap, over ZeroMQ from
the notebook, or from the node's real aiohttp server in the processes runtime. The dispatch
below matches the route, asks the context for a worker (``ctx._admit``: the handler starts
now or later, FIFO, or is shed with 503 and ``Retry-After``), and drives the handler as a
coroutine by hand, like every labkit handler (so the simulator stays deterministic). Whatever
the handler returns or raises becomes the response message, answering the request's id:

* a ``Response`` (``json_response``, ...) -> that response;
* ``raise labkit.HTTPNotFound(...)`` (any ``HTTPException``) -> its status;
* ``await req.json()`` on a body that is not JSON -> 400 with the reason;
* any other exception -> 500; the traceback is journaled (event ``handler_error`` with the
  node, request id, method, path and seed) and the node lives on, as aiohttp's does;
  ``SystemExit``/``KeyboardInterrupt`` (``BaseException``) still crash the node;
* no route for the path -> 404; a route for the path but not the method -> 405 with ``Allow``.
"""
from __future__ import annotations

import inspect
import os
import re
import traceback
from functools import partial
from typing import Any, Callable, TypeVar

from .errors import ArgumentError
from .http_errors import HTTPException
from .http_types import _JSON_HRAW, _MISSING, HTTP_VERSION, JSON_TYPE, METHODS, Request, Response, path_views
from .journal import Event
from .node import Node

F = TypeVar("F", bound=Callable[..., Any])
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})+))?\}")
_HEALTHZ, _READYZ = "/healthz", "/readyz"
RETRY_AFTER_S = "1"
_new = object.__new__
#: Files whose frames a handler's traceback leaves out (the dispatch here, and Context._step).
_OWN_FRAMES = frozenset({__file__, os.path.join(os.path.dirname(__file__), "context.py")})


def _compile(pattern: str, where: str) -> tuple[str | None, Any]:
    """An aiohttp path pattern as (literal path, None) or (None, compiled regex)."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ArgumentError(f"{where}: a route's path must be a str starting with '/', like '/stock/{{item}}', "
                            f"got {pattern!r}")
    if "{" not in pattern and "}" not in pattern:
        return pattern, None
    out, pos, names = [], 0, set()
    for m in _PARAM.finditer(pattern):
        lit = pattern[pos:m.start()]
        if "{" in lit or "}" in lit:
            break
        name, rx = m.group(1), m.group(2)
        if name in names:
            raise ArgumentError(f"{where}: route {pattern!r} names {{{name}}} twice")
        names.add(name)
        out.append(re.escape(lit) + f"(?P<{name}>{rx if rx is not None else '[^{}/]+'})")
        pos = m.end()
    else:
        tail = pattern[pos:]
        if "{" not in tail and "}" not in tail:
            try:
                return None, re.compile("".join(out) + re.escape(tail))
            except re.error as e:
                raise ArgumentError(f"{where}: route {pattern!r} has a bad regular expression: {e}") from None
    raise ArgumentError(f"{where}: route {pattern!r} has an unbalanced or malformed {{...}} part; "
                        f"write {{name}} or {{name:regex}} as in aiohttp")


def route(method: str, path: str) -> Callable[[F], F]:
    """Decorate ``async def handler(self, ctx, req)`` to serve ``method`` (GET, POST, ..., or
    "*" for any) on ``path``, an aiohttp pattern such as ``/stock/{item}`` or
    ``/files/{name:.+}``. Stack decorators to serve several routes with one handler."""
    if not isinstance(method, str) or (method.upper() not in METHODS and method != "*"):
        raise ArgumentError(f"route(method, path): method must be one of {sorted(METHODS)} or '*', got {method!r}")
    method = method.upper()
    _compile(path, f"route({method!r}, {path!r})")

    def deco(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"route {method} {path}: {getattr(fn, '__qualname__', fn)!r} must be an "
                            f"`async def handler(self, ctx, req)` (as aiohttp handlers are)")
        fn.__dict__.setdefault("_labkit_routes", []).insert(0, (method, path))
        return fn
    return deco


def get(path: str) -> Callable[[F], F]:
    """``@labkit.get("/stock/{item}")``: serve GET (and HEAD) on ``path``."""
    return route("GET", path)


def post(path: str) -> Callable[[F], F]:
    """``@labkit.post("/orders")``: serve POST on ``path``."""
    return route("POST", path)


def put(path: str) -> Callable[[F], F]:
    """``@labkit.put("/stock/{item}")``: serve PUT on ``path``."""
    return route("PUT", path)


def delete(path: str) -> Callable[[F], F]:
    """``@labkit.delete("/stock/{item}")``: serve DELETE on ``path``."""
    return route("DELETE", path)


class Routes:
    """A service's route table: ``(method, literal, regex, handler name)`` in order."""

    __slots__ = ("entries", "_literal")

    def __init__(self, entries: list[tuple[str, str | None, Any, str]]) -> None:
        self.entries = entries
        # literal path -> (method -> handler name), for the common case of fixed paths only
        self._literal: dict[str, dict[str, str]] | None = None
        if all(lit is not None for _, lit, _, _ in entries):
            table: dict[str, dict[str, str]] = {}
            for m, lit, _, name in entries:
                table.setdefault(lit, {}).setdefault(m, name)  # type: ignore[arg-type]
            self._literal = table

    def resolve(self, method: str, path: str) -> tuple[str | None, dict[str, str] | set[str]]:
        """(handler name, match_info), or (None, the methods allowed on ``path``: empty = 404)."""
        if self._literal is not None:
            by = self._literal.get(path)
            if by is None:
                return None, set()
            name = by.get(method) or by.get("*") or (by.get("GET") if method == "HEAD" else None)
            return (name, {}) if name is not None else (None, set(by))
        allowed: set[str] = set()
        for m, lit, rx, name in self.entries:
            if lit is not None:
                if path != lit:
                    continue
                info: dict[str, str] = {}
            else:
                mo = rx.fullmatch(path)
                if mo is None:
                    continue
                info = mo.groupdict()
            if m == method or m == "*" or (method == "HEAD" and m == "GET"):
                return name, info
            allowed.add(m)
        return None, allowed

    def describe(self) -> list[str]:
        return [f"{m} {lit if lit is not None else rx.pattern} -> {name}" for m, lit, rx, name in self.entries]


def _collect(cls: type) -> Routes:
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        for name in vars(klass):
            names.setdefault(name, None)
    entries: list = []
    seen: dict[tuple[str, str], str] = {}
    for name in names:
        fn = getattr(cls, name, None)
        for method, path in getattr(fn, "_labkit_routes", ()):
            if (method, path) in seen and seen[(method, path)] != name:
                raise ArgumentError(f"{cls.__name__}: route {method} {path} is served by both "
                                    f"{seen[(method, path)]} and {name}; the second would never run")
            seen[(method, path)] = name
            lit, rx = _compile(path, f"{cls.__name__}.{name}")
            entries.append((method, lit, rx, name))
    for path, probe in ((_HEALTHZ, "_probe_healthz"), (_READYZ, "_probe_readyz")):
        if not any(lit == path for _, lit, _, _ in entries):
            entries.append(("GET", path, None, probe))
    return Routes(entries)


class Service(Node):
    """A ``Node`` that also serves HTTP: decorate ``async def handler(self, ctx, req)``
    methods with ``@labkit.get(path)`` (``post``, ``put``, ``delete``, ``route(method, path)``).
    See the module docstring for the answers labkit gives (404, 405, 400, 500, 503).

    Override ``ssl_context(ctx)`` to serve HTTPS in the processes runtime."""

    _labkit_routes: Routes

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._labkit_routes = _collect(cls)

    def ssl_context(self, ctx: Any) -> Any:
        """Return an ``ssl.SSLContext`` (server side) to serve HTTPS, or None for plain HTTP.
        Called once per incarnation in the node's process, before ``on_start``, when the
        server binds its port: a server loads its certificates before it accepts a connection,
        and other nodes' ``on_start`` may already call it (processes runtime only: the
        simulator carries no bytes, so no TLS)."""
        return None


Service._labkit_routes = _collect(Service)


def is_service(factory: Any) -> bool:
    """Does a node factory (a class, or a Cluster template of an instance) make a Service?"""
    cls = factory if isinstance(factory, type) else type(getattr(factory, "node", factory))
    return isinstance(cls, type) and issubclass(cls, Service)


class ServingMixin:
    """The serving half of ``Context`` (mixed in): dispatch, probes, readiness, answers."""

    _routes: Routes | None
    _ready: bool = True
    #: Handler coroutines of admitted requests -> (handler name, request, request message).
    _serving: dict

    def ready(self, flag: bool = True) -> None:
        """Say whether this service is ready for traffic (``GET /readyz`` answers 200 if so,
        503 if not). Starts ready. Also reported as the ``ready`` status field."""
        if not isinstance(flag, bool):
            raise ArgumentError(f"{self.id}: ctx.ready(flag) takes True or False, got {flag!r}")  # type: ignore[attr-defined]
        self._ready = flag
        self.report(ready=flag)  # type: ignore[attr-defined]

    @property
    def is_ready(self) -> bool:
        """What ``ctx.ready(...)`` last said (True at start)."""
        return self._ready

    def _http_request(self, msg: Any) -> None:
        """An HTTP request message reached this service: answer it (see the module docstring)."""
        self._hev = 0
        self._cause = msg
        d = msg.body
        n = len(d)
        if (n == 3 or (n == 4 and "headers" in d)) and "method" in d and "path" in d:
            # {"http", "method", "path"} and maybe "headers": ctx.http's common call, in the simulator and
            # (with the real headers) in the processes runtime (Request._from_message, inline)
            req = _new(Request)
            req.method, req.path, req.query_string, req._qs, req._hraw = d["method"], d["path"], "", "", d.get("headers")
            req.match_info, req.remote, req.id, req._headers, req._query = {}, msg.src, msg.id, None, None
            req._json, req._text, req._b64 = _MISSING, None, None
        else:
            try:
                req = Request._from_message(msg)
            except (KeyError, TypeError, AttributeError) as e:
                self._respond(msg, Response(status=400, text=f"400: Bad Request: malformed HTTP request message "
                                                              f"({type(e).__name__}: {e})"))
                return
        safe = req.path                  # the wire form (percent-encoded: see http_types.wire_target)
        if "%" in safe:                  # an escape: route on aiohttp's path_safe, show the decoded path
            safe, req.path = path_views(safe)
        name, info = self._routes.resolve(req.method, safe)  # type: ignore[union-attr]
        if name is None:
            if info:
                from .http_errors import HTTPMethodNotAllowed
                self._respond(msg, HTTPMethodNotAllowed(req.method, info).response())
            else:
                self._respond(msg, Response(status=404, text="404: Not Found"))
            return
        if info and "%" in safe:         # a part holding an escaped "/" or "%": decoded (aiohttp's
            info = {k: v.replace("%2F", "/").replace("%25", "%") for k, v in info.items()}  # _unquote_path_safe)
        req.match_info = info  # type: ignore[assignment]
        if name[0] == "_":
            if name == "_probe_healthz":
                self._respond(msg, Response(text="ok"))
            else:
                self._respond(msg, Response(text="ready") if self._ready else
                              Response(status=503, text="503: not ready (ctx.ready(False))"))
            return
        if self._cap_on and self._busy < self._workers and not self.dead:  # type: ignore[attr-defined]
            # (_admit with a worker free -- _busy_change(1), _stats_soon -- and _start_handler,
            # inline: the common case)
            now = self._host.now()  # type: ignore[attr-defined]
            self._busy_ms += self._busy * (now - self._busy_t)  # type: ignore[attr-defined]
            self._busy_t = now
            self._busy += 1  # type: ignore[attr-defined]
            if not self._stats_pending:  # type: ignore[attr-defined]
                self._stats_soon()  # type: ignore[attr-defined]
            self._start_handler(name, req, msg)
            return
        if not self._admit(partial(self._start_handler, name, req, msg)):  # type: ignore[attr-defined]
            self.count("http_shed")  # type: ignore[attr-defined]
            self._respond(msg, Response(status=503, text="503: Service Unavailable: every worker is busy and the "
                                        "queue is full; the request was shed", headers={"Retry-After": RETRY_AFTER_S}))

    def _start_handler(self, name: str, req: Request, msg: Any) -> None:
        """An admitted request's worker is free: run its handler. The handler's coroutine is
        driven by ``Context._step`` itself, like any handler's, with no wrapper coroutine
        around it: it is kept in ``_serving`` (with what it answers) and ``_holding`` (it holds a
        worker), and ``_step`` hands its result -- a return, or an exception -- to ``_served``.
        A handler that never awaits is done within this call (the common case)."""
        try:
            coro = getattr(self._node, name)(self, req)  # type: ignore[attr-defined]
        except BaseException as e:
            self._call_failed(name, req, msg, e)
            return
        self._serving[coro] = (name, req, msg)
        self._holding.add(coro)  # type: ignore[attr-defined]
        self._step(coro, None, None, msg)  # type: ignore[attr-defined]

    def _call_failed(self, name: str, req: Request, msg: Any, e: BaseException) -> None:
        """Calling the handler raised ``e`` (a handler with a bad signature): answered as its
        raising would be. Called inside the ``except`` that caught ``e``."""
        try:
            if self._served(None, name, req, msg, None, e):
                return
        except BaseException as e2:     # (the storm guard stopped the node while answering)
            self._raised(e2, msg)  # type: ignore[attr-defined]
            return
        self._raised(e, msg)  # type: ignore[attr-defined]

    def _served(self, coro: Any, name: str, req: Request, msg: Any, resp: Any, exc: BaseException | None) -> bool:
        """The handler of ``req`` returned ``resp`` or raised ``exc``: answer it and free its
        worker. True once answered; False for an ``exc`` that is no ``Exception`` (the caller
        crashes the node over it, as it does for any handler: ``SystemExit``, the guard's stop).
        The answers, as aiohttp's: a ``Response`` as it is; an ``HTTPException`` as its status;
        any other ``Exception`` (or a return that is no response) 500, journaled."""
        if coro is not None:
            self._holding.discard(coro)  # type: ignore[attr-defined]
        try:
            if exc is not None:
                if isinstance(exc, HTTPException):
                    resp = exc.response()
                elif isinstance(exc, Exception):   # the handler's bug: 500, the node lives on
                    resp = self._handler_raised(exc, req, name, exc.__traceback__)
                else:
                    return False
            elif resp.__class__ is not Response and not isinstance(resp, Response):
                if isinstance(resp, HTTPException):
                    resp = resp.response()
                else:
                    err = TypeError(f"handler {name} returned {resp!r}; return labkit.Response(...) or "
                                    f"labkit.json_response(...) (as aiohttp handlers do)")
                    resp = self._handler_raised(err, req, name, None)
            self._respond(msg, resp)
            return True
        finally:
            if self._queue or self._handing or self.dead or self._busy <= 0:  # type: ignore[attr-defined]
                self._release()  # type: ignore[attr-defined]
            else:   # nobody waits: the worker goes idle (_release -> _free_worker, inline: the common case)
                now = self._host.now()  # type: ignore[attr-defined]
                self._busy_ms += self._busy * (now - self._busy_t)  # type: ignore[attr-defined]
                self._busy_t = now
                self._busy -= 1  # type: ignore[attr-defined]
                if not self._stats_pending:  # type: ignore[attr-defined]
                    self._stats_soon()  # type: ignore[attr-defined]

    def _handler_raised(self, e: BaseException, req: Request, name: str, tb: Any) -> Response:
        """Journal a handler's exception (``handler_error``) and answer 500 with its one line."""
        error = f"{type(e).__name__}: {e}"
        while tb is not None and tb.tb_frame.f_code.co_filename in _OWN_FRAMES:   # labkit's own frames
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(e), e, tb)) if tb is not None else error + "\n"
        host = self._host  # type: ignore[attr-defined]
        self.count("http_500")  # type: ignore[attr-defined]
        if not self.dead:  # type: ignore[attr-defined]
            self._produce(f"handler error in {name}")  # type: ignore[attr-defined]
            ev = Event(host.now(), "handler_error", self.id, None, {  # type: ignore[attr-defined]
                "error": error, "traceback": text, "handler": name, "request": req.id, "method": req.method,
                "path": req.path, "remote": req.remote, "status": 500,
                "incarnation": self.incarnation, "seed": self.seed})  # type: ignore[attr-defined]
            host.record(ev)
            host.handler_failed(self, ev)
        return Response(status=500, text=f"500: Internal Server Error: handler {name} raised {error} "
                                         f"(the traceback is in the journal, event 'handler_error')")

    def _respond(self, msg: Any, resp: Response) -> None:
        """Send ``resp`` as the response message to request ``msg`` (nothing if the node is dead)."""
        if self.dead:  # type: ignore[attr-defined]
            return
        if msg.body.get("method") == "HEAD":
            resp = Response(status=resp.status, reason=resp.reason, headers=resp._header_pairs())
            body_json: Any = resp._encode()
        elif resp._flat is None or self._transmit_body is None:  # type: ignore[attr-defined]
            body_json = resp._encode()
        elif resp._headers is None and resp.reason is None and resp._hraw is _JSON_HRAW:
            # a flat JSON response, to a host that takes bodies as dicts (the simulator): see
            # Response._payload
            body_json = {"http": HTTP_VERSION, "status": resp.status, "headers": [["Content-Type", JSON_TYPE]],
                         "json": resp._flat}
        else:
            body_json = resp._encode()
        self._hev += 1  # type: ignore[attr-defined]
        self._wev += 1  # type: ignore[attr-defined]
        if self._hev > self._g_handler or self._wev > self._g_events:  # type: ignore[attr-defined]
            self._over_events(f"HTTP response {resp.status}")  # type: ignore[attr-defined]
        self._seq += 1  # type: ignore[attr-defined]
        mid = f"{self._mid}{self._seq}"  # type: ignore[attr-defined]
        self._host.respond_http(self, mid, msg.src, str(resp.status), msg.id, body_json,  # type: ignore[attr-defined]
                                resp=resp)


def handler_error_report(ev: Event) -> str:
    """How a handler's exception is shown in the notebook (the node goes on)."""
    return (f"labkit: {ev.node} answered 500 to {ev.get('method')} {ev.get('path')} (request {ev.get('request')} "
            f"from {ev.get('remote')}): handler {ev.get('handler')} raised (incarnation {ev.get('incarnation')}, "
            f"seed {ev.get('seed')}, t={ev.t:.1f} ms); the node goes on.\n{ev.get('traceback')}")
