"""Maelstrom's wire protocol, and how its messages map onto labkit messages.

Source: Maelstrom's protocol documentation (jepsen-io/maelstrom, ``doc/protocol.md``). A
Maelstrom message is one JSON object per line::

    {"src": "c1", "dest": "n0", "body": {"type": "echo", "msg_id": 1, "echo": "hi"}}

``body.type`` is required; ``msg_id`` is an integer unique per sender; a reply carries the
request's ``msg_id`` as ``in_reply_to``. Errors are bodies ``{"type": "error", "code",
"text"}`` with the standard codes in ``ERRORS``.

The mapping onto labkit (the contract every part of ``labkit.maelstrom`` shares): a labkit
message has ``src``, ``dst``, ``type = body["type"]`` and ``body`` = the Maelstrom body
*without* ``type``, ``msg_id`` and ``in_reply_to``; ``in_reply_to`` travels as labkit's own
``in_reply_to`` (a labkit message id). So a plain ``labkit.Node`` that does
``ctx.reply(msg, type="echo_ok", echo=msg.body["echo"])`` is a Maelstrom echo server. The
program bridge (``labkit.maelstrom.program``) turns labkit message ids into the integers a
program sees, and back, per node.

This module is stdlib-only and cheap to import.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ErrorCode", "ERRORS", "error_code", "is_definite", "error_body", "SERVICE_IDS",
           "EnvelopeError", "parse_envelope", "split_body", "join_body", "envelope_line",
           "MAX_LINE_SHOWN"]


@dataclass(frozen=True)
class ErrorCode:
    """One of Maelstrom's error codes. ``definite``: the operation certainly did not happen
    (a client records it as ``fail``); indefinite: it may or may not have (``info``)."""

    code: int
    name: str
    definite: bool
    meaning: str = ""


#: Maelstrom's standard error codes (doc/protocol.md, "Errors"), by code.
ERRORS: dict[int, ErrorCode] = {e.code: e for e in (
    ErrorCode(0, "timeout", False, "the request timed out; it may or may not have happened"),
    ErrorCode(1, "node-not-found", True, "the destination node does not exist"),
    ErrorCode(10, "not-supported", True, "the request type is not supported"),
    ErrorCode(11, "temporarily-unavailable", True, "the operation cannot be done now; try again"),
    ErrorCode(12, "malformed-request", True, "the request was malformed"),
    ErrorCode(13, "crash", False, "an indefinite error: the node crashed while handling it"),
    ErrorCode(14, "abort", True, "the operation was aborted (e.g. a transaction)"),
    ErrorCode(20, "key-does-not-exist", True, "the key does not exist"),
    ErrorCode(21, "key-already-exists", True, "the key already exists"),
    ErrorCode(22, "precondition-failed", True, "a precondition (e.g. a cas's from value) did not hold"),
    ErrorCode(30, "txn-conflict", True, "the transaction conflicted with another and was aborted"),
)}

#: Maelstrom's service node ids: never a node under test.
SERVICE_IDS = ("lin-kv", "seq-kv", "lww-kv", "lin-tso")

#: How much of an offending line an error message shows (characters).
MAX_LINE_SHOWN = 300


def error_code(code: int) -> ErrorCode:
    """The ``ErrorCode`` for ``code``. Codes Maelstrom does not define (custom codes are >=
    1000) are indefinite, as Maelstrom treats them. Raises TypeError for a non-integer."""
    if type(code) is not int:
        raise TypeError(f"a Maelstrom error code is an integer, got {code!r}")
    e = ERRORS.get(code)
    if e is not None:
        return e
    return ErrorCode(code, "custom" if code >= 1000 else "unknown", False, "not a standard code: indefinite")


def is_definite(code: Any) -> bool:
    """Does error ``code`` mean the operation certainly did not happen? (False for anything
    that is not a known definite code, so a malformed code is treated as indefinite.)"""
    e = ERRORS.get(code) if type(code) is int else None
    return e is not None and e.definite


def error_body(code: int, text: str = "") -> dict:
    """A labkit error body ``{"code", "text"}`` (the labkit message type is ``"error"``)."""
    return {"code": code, "text": text or error_code(code).meaning}


class EnvelopeError(ValueError):
    """A line that is not a valid Maelstrom message. ``node``: whose program wrote it;
    ``line``: the offending line (as text); ``reason``: what is wrong with it."""

    def __init__(self, node: str, line: str, reason: str) -> None:
        self.node, self.line, self.reason = node, line, reason
        shown = line if len(line) <= MAX_LINE_SHOWN else line[:MAX_LINE_SHOWN] + f"... ({len(line):,} chars)"
        super().__init__(
            f"{node}: its program wrote a line that is not a Maelstrom message ({reason}): {shown!r}. "
            f"Every stdout line must be one JSON object {{\"src\", \"dest\", \"body\": {{\"type\", ...}}}}; "
            f"write logging to stderr instead. The line was skipped; the node goes on.")


def _is_int(x: Any) -> bool:
    return type(x) is int


def parse_envelope(line: str | bytes, *, node: str) -> dict:
    """Parse and validate one stdout line of node ``node``'s program; returns the envelope
    dict. Raises ``EnvelopeError`` naming the node, the line and what is wrong: not UTF-8,
    not JSON, not an object, ``src``/``dest`` not strings, ``body`` not an object,
    ``body.type`` missing or not a non-empty string, ``msg_id``/``in_reply_to`` present but
    not integers."""
    if isinstance(line, bytes):
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise EnvelopeError(node, line.decode(errors="replace"), "not UTF-8") from None
    else:
        text = line
    try:
        env = json.loads(text)
    except ValueError as e:
        raise EnvelopeError(node, text, f"not JSON: {e}") from None
    except RecursionError:
        raise EnvelopeError(node, text, "nested too deeply") from None
    if type(env) is not dict:
        raise EnvelopeError(node, text, f"a JSON {type(env).__name__}, not an object")
    for field in ("src", "dest"):
        if type(env.get(field)) is not str or not env[field]:
            raise EnvelopeError(node, text, f"{field!r} must be a non-empty string, got {env.get(field)!r}")
    body = env.get("body")
    if type(body) is not dict:
        raise EnvelopeError(node, text, f"'body' must be an object, got {body!r}")
    t = body.get("type")
    if type(t) is not str or not t:
        raise EnvelopeError(node, text, f"'body.type' must be a non-empty string, got {t!r}")
    for field in ("msg_id", "in_reply_to"):
        if field in body and body[field] is not None and not _is_int(body[field]):
            raise EnvelopeError(node, text, f"'body.{field}' must be an integer, got {body[field]!r}")
    return env


def split_body(body: dict) -> tuple[str, int | None, int | None, dict]:
    """A Maelstrom body -> (type, msg_id, in_reply_to, the rest): the labkit ``type`` and
    ``body``, and the two ids the bridge maps to labkit ids. ``body`` must be valid (see
    ``parse_envelope``); it is not modified."""
    rest = {k: v for k, v in body.items() if k not in ("type", "msg_id", "in_reply_to")}
    return body["type"], body.get("msg_id"), body.get("in_reply_to"), rest


def join_body(type: str, body: dict, msg_id: int | None = None, in_reply_to: int | None = None) -> dict:
    """A labkit message's type and body -> a Maelstrom body (``type`` first; ``msg_id`` and
    ``in_reply_to`` only when given). Keys of ``body`` named like the three are overwritten."""
    out: dict = {"type": type}
    for k, v in body.items():
        if k not in ("type", "msg_id", "in_reply_to"):
            out[k] = v
    if msg_id is not None:
        out["msg_id"] = msg_id
    if in_reply_to is not None:
        out["in_reply_to"] = in_reply_to
    return out


_compact = json.JSONEncoder(separators=(",", ":")).encode    # one encoder: json.dumps makes one a call


def envelope_line(src: str, dest: str, body: dict) -> str:
    """One Maelstrom message as a line of compact JSON, newline included."""
    return _compact({"src": src, "dest": dest, "body": body}) + "\n"
