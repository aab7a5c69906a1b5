"""``ctx.http``: HTTP calls from a node to another node, the same in both runtimes.

    r = await ctx.http.get("inventory", "/stock/apple", timeout=200)     # ms, the caller's clock
    if r.status == 200:
        n = (await r.json())["count"]

``get/post/put/delete/patch/head(node, path, *, json=, data=, headers=, params=, timeout=,
ssl=)`` -- aiohttp's argument names, with the node id where aiohttp takes a URL. Any node may
call (a plain ``labkit.Node`` is a client-only node); only a ``labkit.Service`` answers.

A call is one awaitable of the hand-driven kind ``labkit.context`` steps (like ``ctx.rpc``):
the request leaves when the call is made, and the coroutine resumes with a
``labkit.ClientResponse`` -- or with one of three distinct errors (``labkit.http_errors``):

=============================  ==========================================================
``ServerTimeoutError``         no response within ``timeout`` ms (black hole, lost, paused)
``ClientConnectorError``       refused: the node is down, or serves no HTTP
``ServerDisconnectedError``    reset: the server went down while the request was open
=============================  ==========================================================

What each fault means for a call is in the table in ``labkit/runtime/child_async.py`` and the README.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import argcheck
from .context import _Await
from .errors import ArgumentError, MessageError
from .http_types import (METHODS, ClientResponse, encode_request, header_list, query_string, request_payload,
                         wire_target)
from .message import quote, too_large

_new = object.__new__

if TYPE_CHECKING:
    from .context import Context


class HttpCall:
    """What the processes runtime needs to make the real request (the simulator ignores it)."""

    __slots__ = ("method", "path", "query", "headers", "payload", "ssl")

    def __init__(self, method: str, path: str, query: str, headers: list, payload: Any, ssl: Any) -> None:
        self.method, self.path, self.query, self.headers, self.payload, self.ssl = \
            method, path, query, headers, payload, ssl


class _HttpAwait(_Await):
    """``await ctx.http.get(...)``: resumes with a ``ClientResponse`` (also ``async with``)."""

    __slots__ = ()

    def __await__(self):
        msg = yield self            # the response message -- or, from the simulator, the response
        return msg if msg.__class__ is ClientResponse else ClientResponse._from_message(msg)

    async def __aenter__(self) -> ClientResponse:
        return await self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<HTTP {self.type} to {self.dst} id={self.msg_id} timeout={self.ms}ms>"


class HttpClient:
    """The ``ctx.http`` of one node incarnation."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def request(self, method: str, node: str, path: str, *, json: Any = None, data: Any = None,
                headers: Any = None, params: Any = None, timeout: float = 1000.0, ssl: Any = None) -> _HttpAwait:
        """Send an HTTP request to ``node`` now; ``await`` it for a ``ClientResponse``.

        ``path`` starts with "/" and may carry a query ("/items?limit=5"); ``params`` (a dict)
        adds to it. ``json=`` (a JSON value) or ``data=`` (str, bytes, or a dict sent as a
        form) is the body. ``timeout`` (ms, on this node's clock) bounds the whole exchange.
        ``ssl``: an ``ssl.SSLContext`` to call over HTTPS, verifying the server's certificate
        for the host name ``node`` (processes runtime; the simulator has no TLS and ignores it).

        Raises ``ArgumentError`` for a bad argument and ``UnknownNode`` for an unknown node, at
        once; the awaited call raises ``ServerTimeoutError``, ``ClientConnectorError`` or
        ``ServerDisconnectedError`` (see the module docstring)."""
        ctx = self._ctx
        if method not in METHODS:
            method = method.upper() if isinstance(method, str) else method
            if method not in METHODS:
                raise ArgumentError(f"{self._where(method, node, path)}: method must be one of {sorted(METHODS)}, "
                                    f"got {method!r}")
        if (timeout.__class__ is not float and timeout.__class__ is not int) or not 0 < timeout <= argcheck.MAX_MS:
            timeout = argcheck.ms(timeout, lambda: f"{self._where(method, node, path)} timeout", positive=True)
        else:
            timeout = float(timeout)
        if ssl is not None and ssl is not False:
            import ssl as _ssl
            if not isinstance(ssl, _ssl.SSLContext):
                raise TypeError(f"{self._where(method, node, path)}: ssl= must be an ssl.SSLContext (or None), "
                                f"got {ssl!r}")
        if (headers is None and params is None and json is None and data is None and path.__class__ is str
                and path[:1] == "/" and "?" not in path):          # the common call: nothing to build
            path = wire_target(path)[0]          # (a dict lookup, once a path has been seen)
            type = f"{method} {path}"
            if node in ctx._dests and not ctx.dead:
                # ctx._send_http's common case, inline: a live node calling a node.
                ctx._hev += 1
                ctx._wev += 1
                if ctx._hev > ctx._g_handler or ctx._wev > ctx._g_events:
                    ctx._over_events(f"HTTP request {type!r} (to {node})")
                ctx._seq += 1
                mid = f"{ctx._mid}{ctx._seq}"
                if ctx._transmit_body is not None:
                    # A host that takes bodies (the simulator): no JSON, no HttpCall (it makes no real request)
                    ctx._host.transmit_http(ctx, mid, node, type, {"http": "1.1", "method": method, "path": path},
                                            None)
                else:
                    ctx._host.transmit_http(ctx, mid, node, type,
                                            f'{{"http":"1.1","method":"{method}","path":{quote(path)}}}',
                                            HttpCall(method, path, "", (), None, ssl or None))
            elif ctx._transmit_body is not None:
                mid = ctx._send_http(node, type, {"http": "1.1", "method": method, "path": path}, None)
            else:
                mid = ctx._send_http(node, type, f'{{"http":"1.1","method":"{method}","path":{quote(path)}}}',
                                     HttpCall(method, path, "", (), None, ssl or None))
            aw = _new(_HttpAwait)                  # (_HttpAwait(...) without an __init__ call)
            aw.kind, aw.msg_id, aw.dst, aw.type, aw.ms = "http", mid, node, type, timeout
            return aw
        where = self._where(method, node, path)
        p, qs = query_string(path, params, where)
        hl = header_list(headers, where)
        payload = request_payload(json, data, hl, where)
        body_json = encode_request(method, p, qs, hl, payload)
        big = too_large(p, body_json)
        if big is not None:
            raise MessageError(f"{where}: the request is {big[len('too large: '):]}; send less at a time")
        type = f"{method} {p}"
        mid = ctx._send_http(node, type, body_json, HttpCall(method, p, qs, hl, payload, ssl or None))
        return _HttpAwait("http", mid, node, type, timeout)

    def _where(self, method: Any, node: Any, path: Any) -> str:
        return f"{self._ctx.id}: ctx.http.{str(method).lower()}({node!r}, {path!r})"

    def get(self, node: str, path: str, **kw: Any) -> _HttpAwait:
        """``await ctx.http.get(node, path, params=, headers=, timeout=ms)``."""
        return self.request("GET", node, path, **kw)

    def post(self, node: str, path: str, **kw: Any) -> _HttpAwait:
        """``await ctx.http.post(node, path, json=..., timeout=ms)``."""
        return self.request("POST", node, path, **kw)

    def put(self, node: str, path: str, **kw: Any) -> _HttpAwait:
        """``await ctx.http.put(node, path, json=..., timeout=ms)``."""
        return self.request("PUT", node, path, **kw)

    def delete(self, node: str, path: str, **kw: Any) -> _HttpAwait:
        """``await ctx.http.delete(node, path, timeout=ms)``."""
        return self.request("DELETE", node, path, **kw)

    def patch(self, node: str, path: str, **kw: Any) -> _HttpAwait:
        return self.request("PATCH", node, path, **kw)

    def head(self, node: str, path: str, **kw: Any) -> _HttpAwait:
        return self.request("HEAD", node, path, **kw)
