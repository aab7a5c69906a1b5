"""Requests and responses: what a handler receives and returns, what a caller gets back, and
how an HTTP exchange travels as two labkit messages.

Names follow aiohttp (``aiohttp.web.Request``, ``aiohttp.web.Response``,
``aiohttp.web.json_response``, ``aiohttp.ClientResponse``). Where labkit's types differ:

* ``Request.remote`` is the *sender's node id* ("n1", or "client" for the notebook and outside
  tools), not an IP address: in a lab the node is what you want to know.
* ``await req.json()`` on a body that is not JSON raises ``HTTPBadRequest`` (answered 400 with
  the reason) where aiohttp lets ``json.JSONDecodeError`` become a 500: a malformed request is
  the caller's fault, and the reader should see which.
* ``json_response`` encodes with labkit's strict encoder: NaN, sets and non-``str`` keys are
  refused with an error naming the path (aiohttp's ``json.dumps`` would write ``NaN``, which no
  JSON parser accepts, or turn ``1`` into ``"1"``).
* ``await r.json()`` on a response body that is not JSON raises ``ContentTypeError`` (a
  ``ClientResponseError``) saying so, where aiohttp raises ``json.JSONDecodeError``.
* ``req.json()``, ``req.text()``, ``r.json()`` ... are coroutines that never suspend: the body
  has always arrived whole when the handler runs (no streaming).

On the wire (in both runtimes, and in the journal) an exchange is two messages. The request's
type is ``"GET /stock/apple"`` and its body ``{"http": "1.1", "method", "path", "query"?,
"headers"?: [[name, value], ...], and one of "json" (the value), "body" (text) or "body64"
(base64 bytes)}``; the response's type is the status (``"200"``) and its body ``{"http": "1.1",
"status", "reason"?, "headers"?, and the same payload keys}``. A JSON payload is carried as the
value itself (so the journal shows it readably); its bytes are labkit's compact encoding of it.
"""
from __future__ import annotations

import base64
import json as _json
from json.encoder import encode_basestring as _encode_str   # (what labkit's dumps writes a str with)
from functools import lru_cache
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode

from .errors import ArgumentError
from .http_errors import _PHRASES, ContentTypeError, ClientResponseError, HTTPBadRequest, reason_of
from .message import (EncodeError, MAX_NESTING, is_flat,
                      dumps as _dumps, quote)

HTTP_VERSION = "1.1"
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
# The one header most responses carry, and its encoding in a message body (encode_response).
_COMMON_HEADERS = [["Content-Type", JSON_TYPE], ["Content-Type", TEXT_TYPE]]
_COMMON_HEADERS_JSON = [f',"headers":[{_dumps(h)}]' for h in _COMMON_HEADERS]
#: Content-Type value -> the JSON of the headers ``[["Content-Type", value]]`` (the two above)
_COMMON_CTYPE_JSON = {h[1]: j for h, j in zip(_COMMON_HEADERS, _COMMON_HEADERS_JSON)}
_MISSING: Any = object()
#: The raw headers of a flat ``json_response`` (one list, shared: see ``Response._payload``).
_JSON_HRAW = [["Content-Type", JSON_TYPE]]
_new = object.__new__


# -- headers ------------------------------------------------------------------------------------------
def header_list(headers: Any, where: str) -> list[list[str]]:
    """``headers`` (a mapping, a multidict or pairs) as ``[[name, value], ...]`` of str; raises
    ArgumentError naming ``where`` for anything else."""
    if headers is None:
        return []
    try:
        pairs = headers.items() if hasattr(headers, "items") else headers
        out = [[k, v] for k, v in pairs]
    except (TypeError, ValueError):
        raise ArgumentError(f"{where}: headers must be a dict of str -> str (or (name, value) pairs), "
                            f"got {headers!r}") from None
    for k, v in out:
        if not isinstance(k, str) or not isinstance(v, str) or not k or "\n" in k + v or "\r" in k + v:
            raise ArgumentError(f"{where}: header {k!r}: {v!r} must be a non-empty str name and a str value "
                                f"without line breaks")
    return out


def _find(raw: list | None, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive) in a raw list, without a multidict."""
    if raw:
        low = name.lower()
        for k, v in raw:
            if k.lower() == low:
                return v
    return None


def _cimulti(raw: list | None) -> Any:
    from multidict import CIMultiDict, CIMultiDictProxy
    return CIMultiDictProxy(CIMultiDict(raw or ()))


_MIMES: dict[str, str] = {}


def _mime(ctype: str | None) -> str:
    if ctype is None:
        return ""
    m = _MIMES.get(ctype)           # (the same few Content-Types, again and again)
    if m is None:
        m = ctype.split(";", 1)[0].strip().lower()
        if len(_MIMES) < 256:
            _MIMES[ctype] = m
    return m


def _is_json_type(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


# -- payloads: ("json", text) | ("body", text) | ("body64", base64 text) | None -------------------------
def payload_of_bytes(data: bytes, ctype: str | None) -> tuple[str, str] | None:
    """How real bytes travel in a message: a JSON value when they are exactly labkit's encoding
    of one (so the journal and the simulator agree byte for byte), else text, else base64."""
    return payload_and_value(data, ctype)[0]


def payload_and_value(data: bytes, ctype: str | None) -> tuple[tuple[str, str] | None, Any]:
    """``payload_of_bytes``, and the JSON value of a ``"json"`` payload (parsed once, here:
    checking that the bytes are labkit's encoding of a value parses them anyway), else
    ``_MISSING``."""
    if not data:
        return None, _MISSING
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ("body64", base64.b64encode(data).decode("ascii")), _MISSING
    if _is_json_type(_mime(ctype)):
        try:
            value = _json.loads(text)
            if _dumps(value) == text:
                return ("json", text), value
        except (ValueError, TypeError, RecursionError):
            pass
    return ("body", text), _MISSING


def payload_bytes(payload: tuple[str, str] | None) -> bytes:
    if payload is None:
        return b""
    kind, s = payload
    return base64.b64decode(s) if kind == "body64" else s.encode("utf-8")


def _payload_json(payload: tuple[str, str] | None) -> str:
    if payload is None:
        return ""
    kind, s = payload
    # (a str's JSON, as labkit's encoder writes it -- its own string encoder, called directly)
    return f',"json":{s}' if kind == "json" else f',"{kind}":{_encode_str(s)}'


def _payload_from_body(d: Mapping[str, Any]) -> tuple[Any, str | None, str | None]:
    """(json value or _MISSING, text or None, base64 or None) of a message body."""
    return d.get("json", _MISSING), d.get("body"), d.get("body64")


def encode_request(method: str, path: str, query: str, headers: list | None,
                   payload: tuple[str, str] | None) -> str:
    """The message body (JSON text) of an HTTP request."""
    q = f',"query":{_dumps(query)}' if query else ""
    h = f',"headers":{_dumps(headers)}' if headers else ""
    return f'{{"http":"1.1","method":"{method}","path":{quote(path)}{q}{h}{_payload_json(payload)}}}'


def encode_response(status: int, reason: str | None, headers: list | None,
                    payload: tuple[str, str] | None) -> str:
    """The message body (JSON text) of an HTTP response."""
    r = f',"reason":{_dumps(reason)}' if reason and reason != reason_of(status) else ""
    if not headers:
        h = ""
    elif (len(headers) == 1 and len(headers[0]) == 2 and headers[0][0] == "Content-Type"
          and headers[0][1].__class__ is str and headers[0][1] in _COMMON_CTYPE_JSON):
        h = _COMMON_CTYPE_JSON[headers[0][1]]           # json_response's, Response(text=)'s
    else:
        h = f',"headers":{_dumps(headers)}'
    return f'{{"http":"1.1","status":{status}{r}{h}{_payload_json(payload)}}}'


def check_method(method: Any, where: str) -> str:
    """``method`` in upper case if it is one of ``METHODS``; ArgumentError naming ``where`` else."""
    up = method.upper() if isinstance(method, str) else method
    if up not in METHODS:
        raise ArgumentError(f"{where}: method must be one of {sorted(METHODS)}, got {method!r}")
    return up


def encode_json(data: Any, where: str, root: str = "data") -> str:
    """``data`` as JSON; ArgumentError naming ``where``, and the part that cannot be sent as a
    path from ``root`` (the argument's name: ``json['a'][1]``)."""
    try:
        return _dumps(data)
    except EncodeError as e:
        raise ArgumentError(f"{where}: cannot encode {root}= as JSON: {e.at(root)}. Send only dicts with str "
                            f"keys, lists, str, int, float, bool and None, nested at most {MAX_NESTING} "
                            f"levels.") from None


def request_payload(json: Any, data: Any, headers: list, where: str) -> tuple[str, str] | None:
    """The payload of a call's ``json=`` or ``data=`` (str, bytes, or a dict sent as a form), and
    the Content-Type it implies, added to ``headers`` unless the caller set one."""
    if json is not None and data is not None:
        raise ArgumentError(f"{where}: give json= or data=, not both (as aiohttp)")
    if json is not None:
        ctype, payload = "application/json", ("json", encode_json(json, where, "json"))
    elif data is None:
        return None
    elif isinstance(data, str):
        ctype, payload = TEXT_TYPE, ("body", data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        ctype, payload = "application/octet-stream", payload_of_bytes(bytes(data), None)
    elif isinstance(data, Mapping):
        ctype, payload = "application/x-www-form-urlencoded", ("body", urlencode(list(data.items())))
    else:
        raise ArgumentError(f"{where}: data= must be str, bytes or a dict (a form), got {type(data).__name__}; "
                            f"for JSON use json=")
    if _find(headers, "Content-Type") is None:
        headers.append(["Content-Type", ctype])
    return payload


def query_string(path: str, params: Any, where: str) -> tuple[str, str]:
    """Split ``path`` at "?" and add ``params`` (a dict or pairs): (path, query string)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ArgumentError(f"{where}: path must be a str starting with '/', like '/stock/apple', got {path!r}")
    path, _, qs = path.partition("?")
    if params:
        try:
            pairs = list(params.items()) if hasattr(params, "items") else list(params)
            extra = urlencode([(str(k), str(v)) for k, v in pairs])
        except (TypeError, ValueError):
            raise ArgumentError(f"{where}: params must be a dict or (name, value) pairs, got {params!r}") from None
        qs = f"{qs}&{extra}" if qs else extra
    return wire_target(path, qs)


@lru_cache(maxsize=4096)                  # (paths repeat: yarl parses each once)
def wire_target(path: str, qs: str = "") -> tuple[str, str]:
    """(path, query string) as an aiohttp client puts them on the wire (RFC 3986, section 2):
    ``yarl.URL``'s quoting -- non-ASCII and unsafe characters percent-encoded, valid escapes
    kept (upper-cased), dot segments resolved, a fragment dropped. Both runtimes send, journal
    and route this form; a handler sees the decoded views (``path_views``)."""
    from yarl import URL
    u = URL("http://h" + (f"{path}?{qs}" if qs else path))
    return u.raw_path, u.raw_query_string


@lru_cache(maxsize=4096)
def path_views(raw: str) -> tuple[str, str]:
    """(path_safe, path) of a wire path, as aiohttp's request has them: routes match
    ``path_safe`` (decoded but for ``%2F`` and ``%25``, so an escaped "/" stays inside one
    route part); ``req.path`` is fully decoded. (yarl's ``URL.path_safe`` and ``URL.path``.)"""
    from yarl import URL
    u = URL.build(path=raw, encoded=True)
    return u.path_safe, u.path


def query_view(raw: str) -> str:
    """The decoded query string a handler sees (aiohttp's ``request.query_string``, yarl's
    ``URL.query_string``: "+" and escapes decoded but for ``%26``, ``%3D``, ... that would
    change how it splits); ``req.query`` is parsed from the wire form itself."""
    if "%" not in raw and "+" not in raw:
        return raw
    from yarl import URL
    return URL.build(query_string=raw, encoded=True).query_string


# -- what requests and responses share: headers and a body read lazily -----------------------------------
class _Body:
    """Headers (raw pairs, a multidict on first use) and a body kept as the message carried
    it: parsed JSON, text, or base64 bytes; read in any of the three forms."""

    __slots__ = ("_hraw", "_headers", "_json", "_text", "_b64")

    def _set_body(self, headers: list | None, json: Any, text: str | None, body64: str | None) -> None:
        self._hraw = headers
        self._headers = None
        self._json, self._text, self._b64 = json, text, body64

    @property
    def headers(self) -> Any:
        """The headers: a case-insensitive ``CIMultiDictProxy``."""
        if self._headers is None:
            self._headers = _cimulti(self._hraw)
        return self._headers

    @property
    def content_type(self) -> str:
        """The media type of the body ("application/json"), without parameters."""
        return _mime(_find(self._hraw, "Content-Type")) or "application/octet-stream"

    def _read(self) -> bytes:
        if self._b64 is not None:
            return base64.b64decode(self._b64)
        if self._text is not None:
            return self._text.encode("utf-8")
        if self._json is not _MISSING:
            return _dumps(self._json).encode("utf-8")
        return b""

    def _get_text(self) -> str:
        if self._text is None:
            self._text = _dumps(self._json) if self._json is not _MISSING else self._read().decode("utf-8", "replace")
        return self._text


# -- the server side -----------------------------------------------------------------------------------
class Request(_Body):
    """What a handler receives (``aiohttp.web.Request``'s names).

    ``method``, ``path``, ``query_string``, ``query`` (a ``MultiDictProxy``), ``headers`` (a
    case-insensitive ``CIMultiDictProxy``), ``match_info`` (dict of the route's ``{name}``
    parts), ``remote`` (the sender's node id, or "client"), ``id`` (the request message's
    id), ``content_type``; ``await req.read()`` (bytes), ``await req.text()``,
    ``await req.json()`` (``HTTPBadRequest`` -> 400 if the body is not JSON)."""

    __slots__ = ("method", "path", "query_string", "match_info", "remote", "id", "_query", "_qs")

    def __init__(self, method: str, path: str, query_string: str = "", headers: list | None = None, *,
                 remote: str = "client", id: str = "", json: Any = _MISSING, text: str | None = None,
                 body64: str | None = None) -> None:
        self.method = method
        self.path = path
        self._qs = query_string                  # the wire form (what ``query`` is parsed from)
        self.query_string = query_view(query_string)
        self.match_info: dict[str, str] = {}
        self.remote = remote
        self.id = id
        self._query = None
        self._set_body(headers, json, text, body64)

    @classmethod
    def _from_message(cls, msg: Any) -> "Request":
        d = msg.body
        r = _new(cls)          # (what __init__ does, without its call: every request comes this way)
        r.match_info, r.remote, r.id, r._headers, r._query = {}, msg.src, msg.id, None, None
        if len(d) == 3 and "http" in d:     # {"http", "method", "path"}: ctx.http's common call
            r.method, r.path, r.query_string, r._qs, r._hraw = d["method"], d["path"], "", "", None
            r._json, r._text, r._b64 = _MISSING, None, None
            return r
        qs = d.get("query", "")
        r.method, r.path, r._qs, r._hraw = d["method"], d["path"], qs, d.get("headers")
        r.query_string = query_view(qs)
        r._json, r._text, r._b64 = d.get("json", _MISSING), d.get("body"), d.get("body64")
        return r

    @property
    def query(self) -> Any:
        if self._query is None:
            from multidict import MultiDict, MultiDictProxy
            self._query = MultiDictProxy(MultiDict(parse_qsl(self._qs, keep_blank_values=True)))
        return self._query

    @property
    def path_qs(self) -> str:
        return f"{self.path}?{self.query_string}" if self.query_string else self.path

    @property
    def body_exists(self) -> bool:
        return self._json is not _MISSING or bool(self._text) or bool(self._b64)

    can_read_body = body_exists

    async def read(self) -> bytes:
        return self._read()

    async def text(self) -> str:
        return self._get_text()

    async def json(self, *, loads: Any = None) -> Any:
        if self._json is not _MISSING and loads is None:
            return self._json
        text = await self.text()
        try:
            return (loads or _json.loads)(text)
        except (ValueError, RecursionError) as e:
            what = "the body is empty" if not text else f"{type(e).__name__}: {e}"
            raise HTTPBadRequest(text=f"400: Bad Request: the request body is not JSON ({what})") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path_qs} from {self.remote}>"


class Response:
    """What a handler returns (``aiohttp.web.Response``'s arguments, keyword-only):
    ``Response(text="hi")``, ``Response(body=b"...", content_type="image/png")``,
    ``Response(status=204)``. ``status`` is an int in 100..599; ``headers`` a dict or pairs."""

    __slots__ = ("status", "reason", "_hraw", "_headers", "_pl", "_flat")

    def __init__(self, *, body: bytes | str | None = None, status: int = 200, reason: str | None = None,
                 text: str | None = None, headers: Any = None, content_type: str | None = None,
                 charset: str | None = None) -> None:
        if (text.__class__ is str and body is None and headers is None and content_type is None
                and status.__class__ is int and 100 <= status <= 599):     # Response(text=...): the common case
            self.status, self.reason, self._headers = status, reason, None
            self._hraw = [["Content-Type", TEXT_TYPE]]
            self._pl, self._flat = ("body", text) if text else None, None
            return
        if status.__class__ is not int and (not isinstance(status, int) or isinstance(status, bool)):
            raise ArgumentError(f"Response(status=...) must be an int HTTP status, got {status!r}")
        if not 100 <= status <= 599:
            raise ArgumentError(f"Response(status={status}) must be in 100..599")
        if body is not None and text is not None:
            raise ArgumentError("Response: give body= or text=, not both (as aiohttp)")
        self.status = status
        self.reason = reason
        raw = header_list(headers, "Response") if headers else []
        if text is not None:
            if not isinstance(text, str):
                raise ArgumentError(f"Response(text=...) must be a str, got {type(text).__name__}; bytes go in body=")
            payload: tuple[str, str] | None = ("body", text) if text else None
            default = TEXT_TYPE
        elif body is not None:
            if isinstance(body, str):
                payload, default = (("body", body) if body else None), TEXT_TYPE
            elif isinstance(body, (bytes, bytearray, memoryview)):
                payload, default = payload_of_bytes(bytes(body), None), "application/octet-stream"
            else:
                raise ArgumentError(f"Response(body=...) must be bytes or str, got {type(body).__name__}; "
                                    f"for JSON use labkit.json_response(data)")
        else:
            payload, default = None, None
        if content_type is not None:
            default = content_type + (f"; charset={charset}" if charset else "")
        if default is not None and _find(raw, "Content-Type") is None:
            raw.append(["Content-Type", default])
        self._hraw = raw
        self._headers = None
        self._pl, self._flat = payload, None

    @property
    def _payload(self) -> tuple[str, str] | None:
        """The payload as a message carries it: ("json", text), ("body", text), ("body64", b64)
        or None. A flat JSON body (``json_response``'s common case) is encoded on first use.

        ``_flat``: that flat dict (the response's own copy, never changed), else None. While the
        response is as ``json_response`` made it (``_hraw is _JSON_HRAW``, no ``reason``, no
        multidict made), a host that takes bodies as dicts (the simulator) gets the response
        message's body as the dict ``{"http", "status", "headers", "json": _flat}``
        (``ServingMixin._respond``) -- which encodes to the very text ``_encode`` writes; the
        receiver copies it (``labkit.runtime.sim_http``)."""
        pl = self._pl
        if pl is None and self._flat is not None:
            pl = self._pl = ("json", _dumps(self._flat))
        return pl

    @_payload.setter
    def _payload(self, payload: tuple[str, str] | None) -> None:
        self._pl, self._flat = payload, None

    @property
    def headers(self) -> Any:
        """The response headers (a case-insensitive multidict; changes go out with the response)."""
        if self._headers is None:
            from multidict import CIMultiDict
            self._headers = CIMultiDict(self._hraw)
        return self._headers

    @property
    def text(self) -> str | None:
        return payload_bytes(self._payload).decode("utf-8", "replace") if self._payload else None

    @property
    def body(self) -> bytes:
        return payload_bytes(self._payload)

    @property
    def content_type(self) -> str:
        return _mime(_find(self._header_pairs(), "Content-Type"))

    def _header_pairs(self) -> list:
        return [[k, v] for k, v in self._headers.items()] if self._headers is not None else self._hraw

    def _encode(self) -> str:
        """The response message's body (JSON text)."""
        return encode_response(self.status, self.reason, self._header_pairs(), self._payload)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason or reason_of(self.status)}>"


def json_response(data: Any = _MISSING, *, text: str | None = None, body: bytes | None = None, status: int = 200,
                  reason: str | None = None, headers: Any = None,
                  content_type: str = "application/json") -> Response:
    """A JSON response (``aiohttp.web.json_response``): ``json_response({"count": 3})``. The
    data is encoded with labkit's strict JSON (raises ``ArgumentError`` naming the path to a
    value JSON cannot carry: NaN, a set, a non-str key)."""
    if (headers is None and text is None and body is None and data is not _MISSING and status.__class__ is int
            and 100 <= status <= 599 and content_type == "application/json"):      # the common case, quickly
        r = _new(Response)
        r.status, r.reason, r._headers = status, reason, None
        if is_flat(data):       # JSON carries it unchanged: a copy of it now (as encoding it now would)
            r._hraw, r._pl, r._flat = _JSON_HRAW, None, data.copy()
            return r
        r._hraw = [["Content-Type", JSON_TYPE]]
        r._pl, r._flat = ("json", encode_json(data, "json_response(data)")), None
        return r
    if data is not _MISSING and (text is not None or body is not None):
        raise ArgumentError("json_response: give data, or text= / body=, not both (as aiohttp)")
    r = Response(text=text if data is _MISSING else None, body=body, status=status, reason=reason,
                 headers=headers, content_type=content_type, charset="utf-8")
    if data is not _MISSING:
        r._payload = ("json", encode_json(data, "json_response(data)"))
    return r


# -- the caller's side ---------------------------------------------------------------------------------
class _ResponseData(_Body):
    __slots__ = ("status", "reason", "id", "remote")

    def __init__(self, status: int, reason: str | None, headers: list | None, *, id: str = "", remote: str = "",
                 json: Any = _MISSING, text: str | None = None, body64: str | None = None) -> None:
        self.status = status
        self.reason = reason or reason_of(status)
        self.id = id
        self.remote = remote
        self._set_body(headers, json, text, body64)

    @classmethod
    def _from_message(cls, msg: Any) -> Any:
        d = msg.body
        if cls is not ClientResponse:           # (HttpResponse: its own __init__)
            return cls(d["status"], d.get("reason"), d.get("headers"), id=msg.id, remote=msg.src,
                       json=d.get("json", _MISSING), text=d.get("body"), body64=d.get("body64"))
        r = _new(cls)          # (what __init__ does, without its call: every response in a node comes this way)
        r.status = status = d["status"]
        r.id, r.remote, r._headers = msg.id, msg.src, None
        if len(d) == 4 and "headers" in d:
            if "json" in d:                     # {"http", "status", "headers", "json"}
                r.reason = _PHRASES.get(status) or reason_of(status)
                r._hraw, r._json, r._text, r._b64 = d["headers"], d["json"], None, None
                return r
            if "body" in d:                     # {"http", "status", "headers", "body"}: a text response
                r.reason = _PHRASES.get(status) or reason_of(status)
                r._hraw, r._json, r._text, r._b64 = d["headers"], _MISSING, d["body"], None
                return r
        r.reason = d.get("reason") or reason_of(status)
        r._hraw = d.get("headers")
        r._json, r._text, r._b64 = d.get("json", _MISSING), d.get("body"), d.get("body64")
        return r

    @property
    def ok(self) -> bool:
        """True for a status below 400 (as aiohttp)."""
        return self.status < 400

    def raise_for_status(self) -> None:
        """Raise ``ClientResponseError`` (``status``, ``message``) for a status >= 400."""
        if self.status >= 400:
            raise ClientResponseError(self.status, self.reason, headers=self._hraw)

    def _get_json(self, content_type: str | None) -> Any:
        h = self._hraw
        if h is not None and len(h) == 1 and h[0][0] == "Content-Type" and (h[0][1] == JSON_TYPE
                                                                          or h[0][1] == "application/json"):
            mime = "application/json"      # (json_response's header: the common case, without parsing)
        elif content_type is not None:
            mime = self.content_type
        if content_type is not None:
            if not (mime == content_type or (content_type == "application/json" and _is_json_type(mime))):
                raise ContentTypeError(self.status, f"attempt to decode JSON with unexpected mimetype: {mime} "
                                       f"(pass content_type=None to skip the check)", headers=self._hraw)
        if self._json is not _MISSING:
            return self._json
        text = self._get_text()
        try:
            return _json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ContentTypeError(self.status, f"the response body is not JSON ({type(e).__name__}: {e})",
                                   headers=self._hraw) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status} {self.reason} from {self.remote or '?'}>"


class ClientResponse(_ResponseData):
    """What ``await ctx.http.get(...)`` returns inside a node (``aiohttp.ClientResponse``'s
    names): ``status``, ``reason``, ``headers``, ``ok``, ``raise_for_status()``, and the
    coroutines ``await r.json()``, ``await r.text()``, ``await r.read()``. Usable as
    ``async with ctx.http.get(...) as r:`` too; ``release()`` is a no-op (the body is read)."""

    __slots__ = ()

    async def read(self) -> bytes:
        return self._read()

    async def text(self) -> str:
        return self._get_text()

    async def json(self, *, content_type: str | None = "application/json") -> Any:
        h = self._hraw
        if (h is not None and len(h) == 1 and h[0][1] == JSON_TYPE and h[0][0] == "Content-Type"
                and content_type == "application/json" and self._json is not _MISSING):
            return self._json           # (_get_json's common case, inline: json_response's body)
        return self._get_json(content_type)

    def release(self) -> None:
        pass

    async def __aenter__(self) -> "ClientResponse":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


def headers_for_journal(pairs: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[list[str]]:
    """Headers minus those a real HTTP stack adds by itself (``drop``, lower-case names), so a
    message body journaled from real HTTP equals the one the sender journaled."""
    return [[k, v] for k, v in pairs if k.lower() not in drop and not k.lower().startswith("x-labkit-")]


class HttpResponse(_ResponseData):
    """What the notebook's blocking HTTP client returns (``cluster.http(node).get(...)``, and
    ``FakeContext.fetch``): the same fields as ``ClientResponse``, but ``json()``, ``text()``
    and ``read()`` are plain methods (there is no event loop to await in), as in ``requests``.
    ``event`` is the response's ``deliver`` event in the journal (None in ``FakeContext``)."""

    __slots__ = ("event",)

    def __init__(self, *args: Any, event: Any = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.event = event

    def read(self) -> bytes:
        return self._read()

    def text(self) -> str:
        return self._get_text()

    def json(self, *, content_type: str | None = "application/json") -> Any:
        return self._get_json(content_type)
