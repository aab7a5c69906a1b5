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

What each fault means for a call is in the table in ``labkit/_child_async.py`` and the README.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import argcheck
from .context import _Await
from .errors import ArgumentError, MessageError
from .http_types import METHODS, ClientResponse, encode_request, header_list, query_string, request_payload
from .message import too_large

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
        msg = yield self
        return ClientResponse._from_message(msg)

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
        method = method.upper() if isinstance(method, str) else method
        where = f"{ctx.id}: ctx.http.{str(method).lower()}({node!r}, {path!r})"
        if method not in METHODS:
            raise ArgumentError(f"{where}: method must be one of {sorted(METHODS)}, got {method!r}")
        timeout = argcheck.ms(timeout, lambda: f"{where} timeout", positive=True)
        if ssl is not None and ssl is not False:
            import ssl as _ssl
            if not isinstance(ssl, _ssl.SSLContext):
                raise TypeError(f"{where}: ssl= must be an ssl.SSLContext (or None), got {ssl!r}")
        p, qs = query_string(path, params, where)
        hl = header_list(headers, where)
        payload = request_payload(json, data, hl, where)
        body_json = encode_request(method, p, qs, hl, payload)
        type = f"{method} {p}"
        big = too_large(type, body_json)
        if big is not None:
            raise MessageError(f"{where}: the request is {big[len('too large: '):]}; send less at a time")
        mid = ctx._send_http(node, type, body_json, HttpCall(method, p, qs, hl, payload, ssl or None))
        return _HttpAwait("http", mid, node, type, timeout)

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
