"""The notebook as an HTTP client: ``cluster.http(node)`` and ``cluster.url(node)``.

    r = cluster.http("inventory").get("/stock/apple")          # blocks, like cluster.request
    r.status, r.headers["Content-Type"], r.json()

    def done(r): cluster.record_op(1, "ok", "read", r.json()["count"])
    cluster.http("inventory", as_client="c1").send("GET", "/stock/apple", on_response=done,
                                                  on_error=lambda e: ..., timeout=500)

The notebook's requests travel like ``cluster.request``'s (as client messages, outside the
network model, journaled as the client's ``send`` and ``deliver``), and the service handles
them exactly as it handles its peers' calls. So a history can be built from them with
``cluster.record_op`` in the callbacks, and ``labkit.plots`` see them as client operations.
Errors are the same three as a node's (``labkit.http_errors``): refused at once when the
node is known to be down (``ClientConnectorError``, journaled as a dropped request, rule
"node down"), reset when it goes down while the request waits (``ServerDisconnectedError``),
and ``ServerTimeoutError`` when no response comes in ``timeout`` ms.

``cluster.url(node)`` (processes runtime) is the node's real address,
``http://127.0.0.1:PORT`` (``https://`` when the service serves TLS), for ``curl``, a
browser, ``requests`` or ``aiohttp``; the simulator has no sockets, so it raises, saying so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from . import argcheck
from .errors import ArgumentError, NodeCrashed, NodeDown, RequestTimeout
from .http_errors import ClientConnectorError, ServerDisconnectedError, ServerTimeoutError
from .http_types import HttpResponse, check_method, encode_request, header_list, query_string, request_payload
from .message import Message, loads
from .runtime.base import is_client_id
from .service import is_service

if TYPE_CHECKING:
    from .cluster import Cluster


def _response(ev: Any) -> HttpResponse:
    d = ev.data
    msg = Message(d["src"], d["dst"], d["type"], d["id"], d["body"], d.get("re"), d.get("at", 0.0))
    r = HttpResponse._from_message(msg)
    r.event = ev
    return r


class ClusterHttp:
    """An HTTP client of one node, from the notebook (``cluster.http(node, as_client=...)``)."""

    def __init__(self, cluster: "Cluster", node: str, as_client: str = "client") -> None:
        rec = cluster._rec(node)
        if not is_client_id(as_client):
            raise ArgumentError(f"cluster.http(as_client=...): client ids are 'client' or c0, c1, ...; "
                                f"got {as_client!r}")
        self._cluster = cluster
        self.node = node
        self.as_client = as_client
        self._service = is_service(cluster._rt.factories[rec.id])

    def _build(self, method: str, path: str, json: Any, data: Any, headers: Any, params: Any) -> tuple[str, dict]:
        method = check_method(method, f"cluster.http({self.node!r}).{str(method).lower()}({path!r})")
        where = f"cluster.http({self.node!r}).{method.lower()}({path!r})"
        if not self._service:
            raise ClientConnectorError(f"{where}: connection refused: {self.node} is a plain labkit.Node, not a "
                                       f"labkit.Service; it serves no HTTP")
        p, qs = query_string(path, params, where)
        hl = header_list(headers, where)
        body = loads(encode_request(method, p, qs, hl, request_payload(json, data, hl, where)))
        return f"{method} {p}", body

    def _refused(self, type: str, what: str) -> ClientConnectorError:
        rt = self._cluster._rt
        rec = rt.records[self.node]
        return ClientConnectorError(f"{self.as_client}: cannot connect to {self.node} for {type}: connection refused; "
                                    f"{self.node} is {rec.state} ({what}). cluster.restart({self.node!r}) brings it back")

    def request(self, method: str, path: str, *, json: Any = None, data: Any = None, headers: Any = None,
                params: Any = None, timeout: float = 1000.0) -> HttpResponse:
        """Send an HTTP request and wait (running the cluster) for the response, at most
        ``timeout`` ms. Returns an ``HttpResponse`` (``status``, ``headers``, ``json()``,
        ``text()``, ``event``); raises ``ClientConnectorError`` (refused: the node is down, or
        serves no HTTP), ``ServerDisconnectedError`` (it went down or crashed meanwhile) or
        ``ServerTimeoutError``; ``ArgumentError`` for a bad argument."""
        timeout = argcheck.ms(timeout, "cluster.http(...) timeout", positive=True)
        type, body = self._build(method, path, json, data, headers, params)
        rt = self._cluster._live()
        if rt.node_down(self.node):
            try:
                rt.request(self.node, type, timeout, body, self.as_client)   # journals the refused attempt
            except NodeDown:
                pass
            raise self._refused(type, "nothing was sent; journaled as dropped, rule 'node down'")
        try:
            ev = rt.request(self.node, type, timeout, body, self.as_client)
        except NodeDown as e:
            raise ServerDisconnectedError(f"{self.as_client}: {type} to {self.node}: server disconnected: {e}") from None
        except NodeCrashed as e:
            raise ServerDisconnectedError(f"{self.as_client}: {type} to {self.node}: server disconnected: {e}") from None
        except RequestTimeout as e:
            raise ServerTimeoutError(f"{self.as_client}: no response to {type} from {self.node} within "
                                     f"{timeout:g} ms: {e}") from None
        return _response(ev)

    def get(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("DELETE", path, **kw)

    def patch(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("PATCH", path, **kw)

    def head(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("HEAD", path, **kw)

    def send(self, method: str, path: str, *, json: Any = None, data: Any = None, headers: Any = None,
             params: Any = None, timeout: float = 1000.0,
             on_response: Callable[[HttpResponse], None] | None = None,
             on_error: Callable[[Exception], None] | None = None) -> str:
        """Send without waiting (for workloads); returns the request's message id.

        ``on_response(response)`` runs when the response arrives, ``on_error(exc)`` when none
        came within ``timeout`` ms (``ServerTimeoutError``; a late response is only journaled)
        -- both inside ``run_for``/``request``, on the thread that called them, like
        ``client_send``'s callbacks. A node known to be down refuses at once: ``on_error``
        gets ``ClientConnectorError`` before ``send`` returns (raised if there is no
        ``on_error``), and the attempt is journaled as dropped."""
        timeout = argcheck.ms(timeout, "cluster.http(...).send timeout", positive=True)
        for name, fn in (("on_response", on_response), ("on_error", on_error)):
            if fn is not None and not callable(fn):
                raise ArgumentError(f"cluster.http(...).send({name}={fn!r}): give a function, or None")
        type, body = self._build(method, path, json, data, headers, params)
        cluster = self._cluster
        rt = cluster._live()
        if rt.node_down(self.node):
            try:
                rt.request(self.node, type, timeout, body, self.as_client)
            except NodeDown:
                pass
            err = self._refused(type, "journaled as dropped, rule 'node down'")
            if on_error is None:
                raise err
            on_error(err)
            return ""
        state: dict[str, Any] = {}

        def arrived(ev: Any) -> None:
            h = state.pop("timer", None)
            if h is not None:
                cluster.cancel(h)
            if on_response is not None:
                on_response(_response(ev))

        def expired() -> None:
            if state.pop("timer", None) is None:
                return
            cluster.forget(mid)
            if on_error is not None:
                on_error(ServerTimeoutError(f"{self.as_client}: no response to {type} (request {mid}) from "
                                            f"{self.node} within {timeout:g} ms"))

        mid = rt.client_send(self.as_client, self.node, type, body, arrived)
        state["timer"] = cluster.call_at(cluster.now + timeout, expired)
        return mid

    def __repr__(self) -> str:
        return f"<HTTP client of {self.node} as {self.as_client}>"
