"""The context an explored node is handed: labkit's ``Context``, with what exploring changes.

* ``ExploreContext.now`` is frozen at 0.0 and its reads are flagged (the search explores
  orders, not delays);
* ``ctx.rng`` is seeded per (seed, node, incarnation, event), lazily (most handlers never
  draw); ``set_timer(between=(lo, hi))`` draws the midpoint (``Midpoint``) and keeps
  ``(lo, hi)`` for the ``"ordered"`` timer mode;
* ``reply`` and delivery skip the RPC bookkeeping (async handlers are refused: ``_step``);
* ``ctx.count``/``ctx.report`` are checked as in a cluster but are not part of the state
  (they feed the journal's ``stats``; ``ctx.counters`` reads only this step's counts);
* ``TrackedMessage`` notes reads of ``msg.id``/``msg.in_reply_to`` (ids are not in the state
  until a handler reads them).
"""
from __future__ import annotations

import os
import random
import re
from typing import Any

from ..context import Context
from ..errors import MessageError
from ..message import Message


class Refused(Exception):
    """What the explorer cannot model (async handlers, ctx on self, unpicklable state, ...)."""


class InterruptedInHandler(KeyboardInterrupt):
    """Ctrl-C came while a node's handler ran (the search stops, as on any Ctrl-C); ``where``
    names the node, what it was handling and the last line of node code it was at -- for a
    handler that never returns, the line it loops on."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def _last_frame(traceback: str | None) -> str:
    """``", at FILE line N in F, from FILE line M in G"``: the innermost two frames of node code
    (labkit's own frames left out) of a traceback; "" without any."""
    frames = []
    for ln in (traceback or "").splitlines():
        m = re.match(r'  File "(.*)", line (\d+), in (.*)', ln)
        if m and f"{os.sep}labkit{os.sep}" not in m.group(1):
            frames.append(f"{m.group(1)} line {m.group(2)} in {m.group(3)}")
    return "".join(f", {'at' if i == 0 else 'from'} {f}" for i, f in enumerate(frames[::-1][:2]))


class HandlerCrashed(Exception):
    """A handler raised: ``event`` is the labkit crash event (with the traceback)."""

    def __init__(self, event: Any) -> None:
        super().__init__(event.get("error"))
        self.event = event


class _Flags:
    __slots__ = ("ids", "now", "where_ids", "where_now")

    def __init__(self) -> None:
        self.ids = self.now = False
        self.where_ids = self.where_now = ""


class TrackedMessage(Message):
    """A ``Message`` whose ``id``/``in_reply_to`` reads are noted (ids are not in the state)."""

    __slots__ = ("_mid", "_re", "_flags")

    def __init__(self, src: str, dst: str, type: str, mid: str, body: dict, re: str | None,
                 flags: _Flags) -> None:
        self.src, self.dst, self.type, self.body, self.sent_at = src, dst, type, body, 0.0
        self._mid, self._re, self._flags = mid, re, flags

    @property  # type: ignore[override]
    def id(self) -> str:
        self._flags.ids = True
        self._flags.where_ids = f"msg.id of a {self.type!r} message"
        return self._mid

    @id.setter
    def id(self, v: str) -> None:
        self._mid = v

    @property  # type: ignore[override]
    def in_reply_to(self) -> str | None:
        self._flags.ids = True
        self._flags.where_ids = f"msg.in_reply_to of a {self.type!r} message"
        return self._re

    @in_reply_to.setter
    def in_reply_to(self, v: str | None) -> None:
        self._re = v

    def __reduce__(self) -> tuple:       # kept on self: a plain Message, its id in the state
        return (Message, (self.src, self.dst, self.type, self._mid, self.body, self._re, 0.0))


class Midpoint:
    """The timer generator of an explored node: ``set_timer(between=(lo, hi))`` draws the
    midpoint. The draw does not decide when a timer may fire (any armed timer may, or the
    ``(lo, hi)`` order rules); a fixed value keeps one successor per step. Replay uses it too."""

    def uniform(self, lo: float, hi: float) -> float:
        return (lo + hi) / 2


MIDPOINT = Midpoint()


class ExploreContext(Context):
    """labkit's ``Context`` with frozen time, per-event randomness and timer ranges kept."""

    @property  # type: ignore[override]
    def now(self) -> float:
        f = self._host.flags
        if not f.now:
            f.now, f.where_now = True, f"{self.id} read ctx.now"
        return 0.0

    def _get_rng(self) -> random.Random:
        r = self._rng_obj
        if r is None:
            r = self._rng_obj = random.Random(f"{self.seed}/{self.id}/{self.incarnation}/{self._event}")
        return r

    def _set_rng(self, r: random.Random) -> None:
        self._rng_obj = None

    def _get_trng(self) -> "Midpoint":
        return MIDPOINT

    def _set_trng(self, r: random.Random) -> None:
        pass

    rng = property(_get_rng, _set_rng)            # type: ignore[assignment]
    _timer_rng = property(_get_trng, _set_trng)   # type: ignore[assignment]
    _rng_obj: random.Random | None = None
    _event = "start"
    _lohi: tuple[float, float] = (0.0, 0.0)

    def set_timer(self, name: str, after: float | None = None,
                  between: tuple[float, float] | None = None) -> float:
        if between is not None and isinstance(between, (tuple, list)) and len(between) == 2:
            self._lohi = (between[0], between[1])
        else:
            self._lohi = (after, after)     # type: ignore[assignment]
        return super().set_timer(name, after, between)

    def reply(self, msg: Message, /, type: str | None = None, **body: Any) -> str:
        if not isinstance(msg, Message):
            raise MessageError(f"{self.id}: reply() needs the Message you are answering, got {msg!r}")
        mid = msg._mid if msg.__class__ is TrackedMessage else msg.id
        return self._send(msg.src, type or msg.type + "_ok", mid, body)

    def _deliver(self, msg: Message) -> None:     # no RPCs awaited (async refused), no HTTP
        self._run(self._node.on_message, (self, msg), msg)

    def _step(self, coro: Any, value: Any, exc: Any, cause: Any) -> None:
        coro.close()
        raise Refused(
            f"{self.id}'s handler for {cause} is a coroutine (async def): labkit.explore cannot copy a "
            f"handler suspended in `await ctx.rpc(...)`/`ctx.sleep`/`ctx.work`, so it refuses async nodes. "
            f"Write the handler as a plain `def` that sends with ctx.send and handles the reply in "
            f"on_message (replay-based exploration of async handlers is not part of this version)")

    def __reduce__(self) -> tuple:
        raise Refused(f"node {self.id} keeps its ctx (or something holding it) in its state; the context "
                      f"is handed to every handler anew: use the `ctx` argument, never `self.ctx = ctx`")
