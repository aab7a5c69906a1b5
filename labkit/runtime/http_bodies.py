"""How a real HTTP exchange becomes labkit messages in the processes runtime: which of the real
headers a message body shows and which its journal line holds, and the bodies themselves.

A request or response that crossed a real aiohttp connection is carried inside the node as a
labkit message whose body is what ``labkit.http_types`` encodes (``encode_request`` /
``encode_response``) -- with two differences, so that each side journals what the other did
and the handler or caller still sees every real header:

* the *journaled* body leaves out the headers an HTTP stack adds by itself (``Host``,
  ``Date``, ``Content-Length``, ...: ``*_STACK_HEADERS``) and labkit's own ``X-Labkit-*``, so
  the caller's ``send`` and the server's ``deliver`` of one exchange hold the same body;
* the *message* body's ``headers`` are all the real ones but labkit's own.

Built directly (``_finish``), not by parsing back the JSON just written; a JSON payload's value
is the one ``payload_and_value`` parsed when it checked the bytes.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable

from ..http_errors import reason_of
from ..http_types import _MISSING
from ..message import loads

_first = itemgetter(0)

#: Headers the HTTP stacks add by themselves: kept from the journaled message bodies, so the
#: caller's ``send`` and the server's ``deliver`` of one exchange hold the same body.
REQUEST_STACK_HEADERS = frozenset({"host", "user-agent", "accept", "accept-encoding", "content-length",
                                   "connection", "keep-alive", "transfer-encoding"})
RESPONSE_STACK_HEADERS = frozenset({"date", "server", "content-length", "connection", "keep-alive",
                                    "transfer-encoding"})


def _finish_body(d: dict, journal_headers: list, payload: tuple[str, str] | None, real: list) -> dict:
    return _finish(d, journal_headers, payload, _MISSING, [[k, v] for k, v in real
                                                           if not k.lower().startswith("x-labkit-")])


def _finish(d: dict, journal_headers: list, payload: tuple[str, str] | None, value: Any, shown: list) -> dict:
    """``d`` completed as ``loads(encode_*(..., journal_headers, payload))`` would be, with
    ``headers`` the ``shown`` ones; ``value``: the JSON payload's value if already parsed."""
    if journal_headers:
        d["headers"] = None                    # its place in the key order; the value is set below
    if payload is not None:                    # as http_types._payload_json writes it
        kind, s = payload
        d[kind] = s if kind != "json" else value if value is not _MISSING else loads(s)
    d["headers"] = shown
    return d


def header_splitter(stack: frozenset[str]) -> Callable[[Any], tuple[list, list]]:
    """A function of a message's real headers (a multidict) -> (shown, journaled): ``shown``
    all but labkit's own (``X-Labkit-*``), for the handler or caller; ``journaled`` also
    without the ``stack`` headers (lower-case names) the HTTP stacks add by themselves --
    what ``headers_for_journal(pairs, stack)`` gives. The plan for a sequence of header names
    (which positions go where) is made once and remembered: the same few sequences come
    again and again, so a message's headers cost one look-up and two short list builds."""
    plans: dict[tuple, tuple] = {}

    def plan(names: tuple) -> tuple:
        shown, journaled = [], []
        for i, k in enumerate(names):
            low = k.lower()
            if not low.startswith("x-labkit-"):
                if low not in stack:
                    journaled.append(len(shown))
                shown.append(i)
        p = (shown, journaled)
        if len(plans) < 512:
            plans[names] = p
        return p

    def split(headers: Any) -> tuple[list, list]:
        items = list(headers.items())
        names = tuple(map(_first, items))     # (not headers.keys(): it gives each name once)
        p = plans.get(names) or plan(names)
        shown = [list(items[i]) for i in p[0]]
        return shown, [shown[j] for j in p[1]] if p[1] else []
    return split


split_request_headers = header_splitter(REQUEST_STACK_HEADERS)
split_response_headers = header_splitter(RESPONSE_STACK_HEADERS)


def request_body(method: str, path: str, query: str, journal_headers: list,
                 payload: tuple[str, str] | None, real: list) -> dict:
    """The body a handler's request message carries: ``loads(encode_request(method, path,
    query, journal_headers, payload))`` (same keys, same order), with ``headers`` the real
    ones but labkit's own -- built directly rather than by parsing back the JSON just written."""
    d: dict[str, Any] = {"http": "1.1", "method": method, "path": path}
    if query:
        d["query"] = query
    return _finish_body(d, journal_headers, payload, real)


def response_body(status: int, reason: str | None, journal_headers: list,
                  payload: tuple[str, str] | None, real: list) -> dict:
    """The same for a response: ``loads(encode_response(...))`` with the real headers."""
    d: dict[str, Any] = {"http": "1.1", "status": status}
    if reason and reason != reason_of(status):
        d["reason"] = reason
    return _finish_body(d, journal_headers, payload, real)
