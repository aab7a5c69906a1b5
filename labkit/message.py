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
from dataclasses import dataclass
from typing import Any

from .errors import MessageError

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_loads = json.loads

@dataclass(frozen=True, slots=True)
class Message:
    """One message, as a handler receives it. ``msg.body`` is a fresh dict, yours to keep."""

    src: str
    dst: str
    type: str
    id: str
    body: dict
    in_reply_to: str | None = None
    sent_at: float = 0.0

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)


def encode(src: str, dst: str, type: str, id: str, re: str | None, at: float, body: dict) -> str:
    """The wire form. Raises MessageError naming the field that cannot be serialised."""
    try:
        return _dumps({"src": src, "dst": dst, "type": type, "id": id, "re": re,
                       "at": round(at, 3), "body": body})
    except (TypeError, ValueError) as e:
        bad = _first_bad_field(body)
        where = f"field {bad!r}" if bad is not None else "the body"
        raise MessageError(
            f"{src}: cannot send message type {type!r} to {dst}: {where} is not JSON-serialisable "
            f"({e}). Send only dicts, lists, str, int, float, bool and None; convert sets to lists "
            f"and objects to dicts."
        ) from None


def _first_bad_field(body: dict) -> str | None:
    for key, value in body.items():
        try:
            _dumps({key: value})
        except (TypeError, ValueError):
            return key
    return None


def decode(wire: str | bytes) -> Message:
    """Parse the wire form. Raises ValueError on anything that is not a well-formed message."""
    d = _loads(wire)
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
