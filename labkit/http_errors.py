"""The errors of labkit's HTTP: what a caller sees (``ClientError`` ...) and what a handler
may raise to answer (``HTTPException`` ...).

Names and the hierarchy follow aiohttp's (``aiohttp.client_exceptions`` and
``aiohttp.web_exceptions``), so a reader who learns them here can use aiohttp itself:

    ClientError                              (a LabkitError)
    ├── ClientConnectionError
    │   ├── ClientConnectorError             refused: nothing listens there  (also ConnectionRefusedError)
    │   │   └── ClientSSLError               TLS handshake or certificate failed (processes only)
    │   └── ServerConnectionError
    │       ├── ServerDisconnectedError      reset: the server went away mid-request (also ConnectionResetError)
    │       └── ServerTimeoutError           no answer within ``timeout`` ms (also TimeoutError)
    └── ClientResponseError                  ``raise_for_status()`` on a 4xx/5xx (``status``, ``message``)
        └── ContentTypeError                 ``await r.json()`` on a body that is not JSON

Where labkit differs: these classes do not subclass aiohttp's (a plain node never imports
aiohttp), but each also subclasses the builtin error of its kind, so ``except TimeoutError``
/ ``except ConnectionError`` work as they do with aiohttp.

A handler may ``raise labkit.HTTPNotFound(text="no such item")`` to answer with that status,
as in aiohttp; labkit's ``HTTPException`` is an exception that *carries* a response (aiohttp's
3.x one *is* a response too -- a double role aiohttp 4 drops).
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any, Iterable, Mapping

from .errors import LabkitError


# -- what a caller sees ----------------------------------------------------------------------------
class ClientError(LabkitError):
    """Base class of every error a ``ctx.http`` or ``cluster.http`` call raises."""


class ClientConnectionError(ClientError):
    """The connection failed: refused, reset, or no answer in time."""


class ClientConnectorError(ClientConnectionError, ConnectionRefusedError):
    """Refused: the node is down (killed or crashed) or serves no HTTP (a plain ``labkit.Node``).
    Raised at once, as a connection to a closed port is refused by the kernel."""

    def __init__(self, message: str) -> None:
        ConnectionRefusedError.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "connection refused"


class ClientSSLError(ClientConnectorError):
    """The TLS handshake failed (certificate not trusted, wrong host name, no TLS on the other
    side). Processes runtime only: the simulator carries no bytes and so has no TLS."""


class ServerConnectionError(ClientConnectionError):
    """The server was reached but the exchange did not complete."""


class ServerDisconnectedError(ServerConnectionError, ConnectionResetError):
    """Reset: the server went away (killed or crashed) while the request was open."""

    def __init__(self, message: str) -> None:
        ConnectionResetError.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "server disconnected"


class ServerTimeoutError(ServerConnectionError, TimeoutError):
    """No response within the call's ``timeout`` ms (the caller's clock): a partitioned or cut
    link, a lost request or response, or a paused or overloaded server."""

    def __init__(self, message: str) -> None:
        TimeoutError.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "timeout"


class ClientResponseError(ClientError):
    """An error status, raised by ``raise_for_status()``: ``status`` (int), ``message`` (reason)."""

    def __init__(self, status: int, message: str, *, headers: Any = None) -> None:
        super().__init__(f"{status}, message={message!r}")
        self.status = status
        self.message = message
        self.headers = headers


class ContentTypeError(ClientResponseError):
    """``await r.json()`` on a response whose Content-Type is not JSON (as aiohttp)."""


# -- what a handler raises to answer -----------------------------------------------------------------
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


def reason_of(status: int) -> str:
    """The standard reason phrase of ``status`` ("Not Found"), or "" for an unknown code
    (``http.HTTPStatus``'s phrases, from a table: every response asks)."""
    try:
        return _PHRASES.get(status, "")
    except TypeError:       # unhashable: no status
        return ""


class HTTPException(LabkitError):
    """Raise it (a subclass) in a handler to answer with its status: ``raise
    labkit.HTTPNotFound(text="no such item")``. ``text`` defaults to "404: Not Found", as
    aiohttp's. Not journaled as a handler error: it is an answer, not a failure."""

    status_code: int = 500

    def __init__(self, *, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                 reason: str | None = None, text: str | None = None, content_type: str | None = None) -> None:
        self.status = self.status_code
        self.reason = reason or reason_of(self.status_code)
        self.text = text if text is not None else f"{self.status}: {self.reason}"
        self.headers = headers
        self.content_type = content_type
        super().__init__(self.text)

    def response(self) -> Any:
        """The ``labkit.Response`` this exception answers with."""
        from .http_types import Response
        return Response(status=self.status, reason=self.reason, text=self.text, headers=self.headers,
                        content_type=self.content_type)


def _status(code: int, name: str, doc: str) -> type[HTTPException]:
    return type(name, (HTTPException,), {"status_code": code, "__doc__": doc, "__module__": __name__})


HTTPBadRequest = _status(400, "HTTPBadRequest", "400 Bad Request (e.g. a body that is not JSON).")
HTTPUnauthorized = _status(401, "HTTPUnauthorized", "401 Unauthorized: no or bad credentials.")
HTTPForbidden = _status(403, "HTTPForbidden", "403 Forbidden: known caller, not allowed.")
HTTPNotFound = _status(404, "HTTPNotFound", "404 Not Found.")
HTTPConflict = _status(409, "HTTPConflict", "409 Conflict (e.g. a version mismatch).")
HTTPPreconditionFailed = _status(412, "HTTPPreconditionFailed", "412 Precondition Failed.")
HTTPUnprocessableEntity = _status(422, "HTTPUnprocessableEntity", "422 Unprocessable Entity.")
HTTPTooManyRequests = _status(429, "HTTPTooManyRequests", "429 Too Many Requests (rate limited).")
HTTPInternalServerError = _status(500, "HTTPInternalServerError", "500 Internal Server Error.")
HTTPBadGateway = _status(502, "HTTPBadGateway", "502 Bad Gateway: an upstream call failed.")
HTTPServiceUnavailable = _status(503, "HTTPServiceUnavailable", "503 Service Unavailable (shed, not ready).")
HTTPGatewayTimeout = _status(504, "HTTPGatewayTimeout", "504 Gateway Timeout: an upstream call timed out.")


class HTTPMethodNotAllowed(HTTPException):
    """405 Method Not Allowed, with the ``Allow`` header listing ``allowed_methods``."""

    status_code = 405

    def __init__(self, method: str, allowed_methods: Iterable[str], **kw: Any) -> None:
        allowed = sorted(set(allowed_methods))
        headers = list(dict(kw.pop("headers", None) or {}).items()) + [("Allow", ",".join(allowed))]
        super().__init__(headers=headers, **kw)
        self.method = method
        self.allowed_methods = set(allowed)


STATUS_EXCEPTIONS = (HTTPBadRequest, HTTPUnauthorized, HTTPForbidden, HTTPNotFound, HTTPMethodNotAllowed,
                     HTTPConflict, HTTPPreconditionFailed, HTTPUnprocessableEntity, HTTPTooManyRequests,
                     HTTPInternalServerError, HTTPBadGateway, HTTPServiceUnavailable, HTTPGatewayTimeout)
