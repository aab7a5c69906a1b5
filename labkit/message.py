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
from typing import Any

from .encoding import (MAX_NESTING, EncodeError, _on_fresh_stack, find_unencodable,  # noqa: F401 (re-exported)
                       format_path, make_dumps)
from .errors import MessageError

#: The strict compact encoder for everything that crosses a process or reaches a file:
#: message bodies, storage values, control frames.
dumps = make_dumps()
_dumps = dumps
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def loads(s: str | bytes) -> Any:
    """``json.loads`` that works from any stack depth: labkit's JSON nests at most
    ``MAX_NESTING`` levels, but a reader deep in recursion could still run out of stack;
    then the parse is repeated on a fresh stack instead of failing (or losing events)."""
    try:
        return json.loads(s)
    except RecursionError:
        return _on_fresh_stack(lambda: json.loads(s))


def loads_trusted(s: str) -> Any:
    """Parse JSON that labkit itself wrote (bodies, storage values): no surrounding space."""
    try:
        return _scan(s, 0)[0]
    except RecursionError:
        return _on_fresh_stack(lambda: _scan(s, 0)[0])


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
    """The body's JSON. Raises MessageError naming the path to the part that cannot be sent,
    e.g. ``body['a'][1]`` (see ``find_unencodable`` for what is refused)."""
    try:
        return _dumps(body, True)
    except EncodeError as e:
        raise MessageError(
            f"{src}: cannot send message type {type!r} to {dst}: {e.at('body')}. Send only "
            f"dicts with str keys, lists, str, int, float, bool and None, nested at most "
            f"{MAX_NESTING} levels."
        ) from None


#: Bounds of a *flat* body, one the simulator hands over without JSON (see
#: ``labkit.runtime.sim``): at most this many keys, each an exact ``str`` of at most
#: ``FLAT_MAX_KEY`` characters, each value ``None``, a ``bool``, an ``int`` within
#: +-``FLAT_MAX_INT``, a finite ``float`` or a ``str`` of at most ``FLAT_MAX_STR`` characters
#: (exact types: a subclass goes through JSON, which makes it its base type). Such a body
#: crosses JSON unchanged, and is surely within ``MAX_MESSAGE_BYTES``.
FLAT_MAX_KEYS = 16
FLAT_MAX_KEY = 256
FLAT_MAX_STR = 4096
FLAT_MAX_INT = 1 << 63


def is_flat(body: Any) -> bool:
    """Is ``body`` a flat dict (the bounds above)? JSON carries such a dict unchanged, so the
    simulator sends it, and ``json_response`` keeps it, as the dict itself."""
    if body.__class__ is not dict or len(body) > FLAT_MAX_KEYS:
        return False
    for k, v in body.items():
        if k.__class__ is not str or len(k) > FLAT_MAX_KEY:
            return False
        c = v.__class__
        if c is str:
            if len(v) > FLAT_MAX_STR:
                return False
        elif c is int:
            if not -FLAT_MAX_INT <= v <= FLAT_MAX_INT:
                return False
        elif c is float:
            if v - v != 0.0:            # NaN or an infinity: JSON refuses it
                return False
        elif v is not None and c is not bool:
            return False
    return True


def body_json(body: "str | dict") -> str:
    """A simulator wire's body as JSON: the text itself, or a flat body's encoding."""
    return body if body.__class__ is str else _dumps(body, True)


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


#: The largest message labkit carries, in bytes of its wire form (UTF-8 JSON). A node's
#: larger message is not sent: the journal shows its ``send`` and a ``drop`` whose rule says
#: "too large" (with the body left out); a larger client request raises MessageError.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The largest frame a node socket accepts (ZeroMQ's MAXMSGSIZE): a frame holds one round's
#: messages to one destination, split so that no frame is larger. A bigger frame -- which
#: only a foreign sender can make -- is refused by ZeroMQ before it is read into memory
#: (the connection that sent it is closed), so no frame can blow up a node's memory.
MAX_FRAME_BYTES = 2 * MAX_MESSAGE_BYTES
_SURELY_SMALL = (MAX_MESSAGE_BYTES - 1024) // 6     # characters: a JSON escape takes <= 6 bytes


def too_large(type: str, body_json: str) -> str | None:
    """The drop rule for a message over ``MAX_MESSAGE_BYTES``, or None (cheap when small).
    The size counted is the body's and the quoted type's bytes; the other wire fields take
    under 1 KB (ids are short), which the limit leaves room for."""
    if len(body_json) + len(type) < _SURELY_SMALL:
        return None
    n = len(body_json.encode()) + len(quote(type).encode())
    if n + 1024 <= MAX_MESSAGE_BYTES:
        return None
    return (f"too large: {n:,} bytes of body and type, over labkit's limit of "
            f"{MAX_MESSAGE_BYTES - 1024:,} per message (MAX_MESSAGE_BYTES)")


def split_frames(wires: list[str]) -> list[tuple[bytes, list[str]]]:
    """Wire-form messages (each within ``MAX_MESSAGE_BYTES``) joined by newlines into frames
    of at most ``MAX_FRAME_BYTES``; each frame with the messages it holds."""
    out: list[tuple[bytes, list[str]]] = []
    parts: list[bytes] = []
    held: list[str] = []
    size = 0
    for w in wires:
        b = w.encode()
        if parts and size + len(b) + 1 > MAX_FRAME_BYTES:
            out.append((b"\n".join(parts), held))
            parts, held, size = [], [], 0
        parts.append(b)
        held.append(w)
        size += len(b) + 1
    if parts:
        out.append((b"\n".join(parts), held))
    return out


#: Characters allowed in node ids: letters, digits and ``_ - .`` (never escaped in JSON).
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def encode(src: str, dst: str, type: str, id: str, re: str | None, at: float, body: dict) -> str:
    """The wire form of a message. Raises MessageError naming a field that cannot be serialised."""
    return wire(src, dst, type, id, re, at, encode_body(src, dst, type, body))


def decode(wire: str) -> Message:
    """Parse the wire form. Raises ValueError on anything that is not a well-formed message."""
    try:
        try:
            d, end = _scan(wire, 0)
        except RecursionError:          # the caller's stack is nearly full (or the frame is absurd)
            d, end = _on_fresh_stack(lambda: _scan(wire, 0))
    except StopIteration:
        raise ValueError("frame is not JSON") from None
    except RecursionError:
        raise ValueError(f"frame nests deeper than JSON readers allow (labkit's limit is {MAX_NESTING})") from None
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
