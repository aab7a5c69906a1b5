"""Messages: what nodes send each other.

A message has a source, a destination, a ``type``, a cluster-unique ``id``, the id it answers
(``in_reply_to``) and a JSON body. On the wire -- in both runtimes -- a message is one JSON
object ``{"src", "dst", "type", "id", "re", "at", "body"}``; ``at`` is the cluster time (ms)
at which it was sent. Encoding at send time is what makes the two runtimes agree: the body is
copied (the sender can't mutate what the receiver sees), tuples arrive as lists, and a body
that could not cross a real network fails in the simulator too.
"""
from __future__ import annotations

import json
import json.scanner
from typing import Any, Callable

from .errors import MessageError

def _not_json(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def make_dumps(allow_nan: bool = False) -> Callable[[Any], str]:
    """A compact JSON encoder (``ensure_ascii=False``), built once; strict about NaN and
    infinities unless ``allow_nan``.

    ``json.dumps`` builds a new C encoder on every call, which is most of its cost for the
    small bodies messages carry; here the C encoder is built once and reused."""
    from json import encoder as _enc
    make = getattr(_enc, "c_make_encoder", None)
    if make is None:  # pure-Python json: correct, slower
        return json.JSONEncoder(ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":")).encode
    fast = make(None, _not_json, _enc.encode_basestring, None, ":", ",", False, False, allow_nan)
    join = "".join

    def dumps(o: Any) -> str:
        try:
            return join(fast(o, 0))
        except RecursionError:
            raise ValueError("Circular reference detected") from None
    return dumps


#: The strict compact encoder for everything that crosses a process or reaches a file:
#: message bodies, storage values, control frames.
dumps = make_dumps()
_dumps = dumps
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def loads_trusted(s: str) -> Any:
    """Parse JSON that labkit itself wrote (bodies, storage values): no surrounding space."""
    return _scan(s, 0)[0]


class Message:
    """One message, as a handler receives it: ``src``, ``dst``, ``type``, ``id``, ``body``
    (a fresh dict, yours to keep), ``in_reply_to`` and ``sent_at`` (cluster ms).

    Treat it as read-only. (It is a plain slotted class rather than a frozen dataclass
    because building one is on the simulator's hottest path: 3x cheaper this way.)"""

    __slots__ = ("src", "dst", "type", "id", "body", "in_reply_to", "sent_at")

    def __init__(self, src: str, dst: str, type: str, id: str, body: dict,
                 in_reply_to: str | None = None, sent_at: float = 0.0) -> None:
        self.src = src
        self.dst = dst
        self.type = type
        self.id = id
        self.body = body
        self.in_reply_to = in_reply_to
        self.sent_at = sent_at

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)

    def _key(self) -> tuple:
        return (self.src, self.dst, self.type, self.id, self.body, self.in_reply_to, self.sent_at)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        re = f", in_reply_to={self.in_reply_to!r}" if self.in_reply_to else ""
        return (f"Message(src={self.src!r}, dst={self.dst!r}, type={self.type!r}, id={self.id!r}, "
                f"body={self.body!r}{re}, sent_at={self.sent_at!r})")


def encode_body(src: str, dst: str, type: str, body: dict) -> str:
    """The body's JSON. Raises MessageError naming the field that cannot be serialised."""
    try:
        return _dumps(body)
    except (TypeError, ValueError) as e:
        bad = _first_bad_field(body)
        where = f"field {bad!r}" if bad is not None else "the body"
        raise MessageError(
            f"{src}: cannot send message type {type!r} to {dst}: {where} is not JSON-serialisable "
            f"({e}). Send only dicts, lists, str, int, float, bool and None; convert sets to lists "
            f"and objects to dicts."
        ) from None


_quoted: dict[str, str] = {}


def quote(s: str) -> str:
    """``s`` as a JSON string literal (memoised: ids and types repeat)."""
    q = _quoted.get(s)
    if q is None:
        q = _dumps(s)
        if len(_quoted) < 100_000:
            _quoted[s] = q
    return q


def wire(src: str, dst: str, type: str, id: str, re: str | None, at: float, body_json: str) -> str:
    """The wire form: one JSON object, built without re-encoding the body.

    Node and client ids, and so message ids, are restricted to characters JSON never escapes
    (see ``ID_CHARS``), so they are written as they are; the message type is quoted."""
    re_s = f'"{re}"' if re is not None else "null"
    return (f'{{"src":"{src}","dst":"{dst}","type":{quote(type)},"id":"{id}",'
            f'"re":{re_s},"at":{round(at, 3)!r},"body":{body_json}}}')


#: Characters allowed in node ids: letters, digits and ``_ - .`` (never escaped in JSON).
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def encode(src: str, dst: str, type: str, id: str, re: str | None, at: float, body: dict) -> str:
    """The wire form of a message. Raises MessageError naming a field that cannot be serialised."""
    return wire(src, dst, type, id, re, at, encode_body(src, dst, type, body))


def _first_bad_field(body: dict) -> str | None:
    for key, value in body.items():
        try:
            _dumps({key: value})
        except (TypeError, ValueError):
            return key
    return None


def decode(wire: str) -> Message:
    """Parse the wire form. Raises ValueError on anything that is not a well-formed message."""
    try:
        d, end = _scan(wire, 0)
    except StopIteration:
        raise ValueError("frame is not JSON") from None
    if end != len(wire):
        raise ValueError("frame has bytes after its JSON object")
    if type(d) is not dict:
        raise ValueError("frame is not a JSON object")
    src, dst, typ, mid, body = d.get("src"), d.get("dst"), d.get("type"), d.get("id"), d.get("body")
    if not (type(src) is str and type(dst) is str and type(typ) is str and type(mid) is str
            and type(body) is dict):
        raise ValueError("frame lacks src/dst/type/id/body")
    re = d.get("re")
    at = d.get("at", 0.0)
    if re is not None and type(re) is not str or type(at) not in (int, float):
        raise ValueError("frame has a bad re/at field")
    return Message(src, dst, typ, mid, body, re, float(at))


def check_body(sender: str, type: str, body: dict) -> None:
    """Reject a missing or non-string message type before anything is sent."""
    if not isinstance(type, str) or not type:
        raise MessageError(f"{sender}: a message needs a non-empty string type, got {type!r}")
