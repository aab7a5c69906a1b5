"""The context: everything a node may do, the same in both runtimes.

Theory of operation. A ``Context`` wraps one incarnation of one node. The runtime hands it
inputs (``_start``, ``_deliver``, ``_fire``) and gives it a *host* for effects: the clock
(``now``), a scheduler (``call_at``/``cancel``), the network (``transmit``), the journal
(``record``) and crash reporting (``crashed``). The simulator's host is an event heap in
virtual time; the processes runtime's host is a poll loop in a node process. Everything
else -- ids, timers, RPC bookkeeping, coroutine stepping, counters, crash capture, the storm
guard's counts (``labkit.guard``) -- lives here once, so the two runtimes cannot drift apart.

Whatever a handler raises is that node's crash -- ``SystemExit``, ``KeyboardInterrupt`` and
``GeneratorExit`` included -- and never reaches the runtime's loop. The one exception that goes
on up, after crashing the node, is ``labkit.Interrupted``: the reader's own Ctrl-C, which the
simulator raises inside a handler that would not return (see ``labkit.runtime.sim``).

Coroutine handlers are driven by hand, not by asyncio: a handler coroutine may await only
``ctx.rpc``, ``ctx.sleep``, ``ctx.work`` and ``ctx.http`` calls (and coroutines that never suspend,
such as ``req.json()``); each await yields a small request object (``_Await``), and the
context resumes the coroutine when the reply arrives, the timeout fires, the sleep ends or
the work is done. That keeps the simulator deterministic and needs no event loop in a plain
node's process. An HTTP call is an RPC whose reply is the response message and which may
also end as refused or reset (``_http_failed``). Work, workers, the queue and shedding are
``labkit.capacity``'s; serving HTTP is ``labkit.service.ServingMixin``'s (both mixed in here).
"""
from __future__ import annotations

import random
import traceback
from functools import cached_property
from types import CoroutineType as _CoroutineType
from typing import TYPE_CHECKING, Any, Callable, Protocol

from . import argcheck
from .argcheck import MAX_MS
from .capacity import CapacityMixin, _Resumed
from .errors import ArgumentError, Interrupted, MessageError, Overloaded, RpcTimeout, UnknownNode
from .guard import GuardTripped
from .journal import Event, _dumps as _journal_dumps
from .message import EncodeError, Message, check_body, dumps as _dumps, encode_body, quote
from .service import ServingMixin
from .runtime.storage import Storage

if TYPE_CHECKING:
    from .node import Node

STATS_INTERVAL_MS = 200.0
#: The context's methods that call a handler (a crash report's traceback starts below them).
_HANDLER_RUNNERS = frozenset({"_run", "_step", "_deliver", "_fire"})
_NOTE_RESERVED = frozenset({"what", "t", "kind", "node", "id"})
_NO_LIMIT = 1 << 62
_new = object.__new__


class Host(Protocol):
    """What a runtime provides to a context."""

    seed: int

    def now(self) -> float: ...                                          # cluster time, ms
    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> Any: ...
    def cancel(self, handle: Any) -> None: ...
    def transmit(self, ctx: "Context", msg_id: str, dst: str, type: str, re: str | None,
                 body_json: str) -> None: ...
    def record(self, event: Event) -> None: ...
    # Optional, for a host that keeps objects rather than text (the simulator): where present
    # they are used instead of ``transmit`` / ``record``. ``transmit_body`` takes the body
    # dict (the host encodes it, or proves it need not: see labkit.runtime.sim), and
    # ``record_row`` a journal row, the tuple of ``Event``'s arguments (labkit.journal_store).
    # transmit_body(ctx, msg_id, dst, type, re, body: dict) -> None
    # record_row(row: tuple) -> None
    def is_destination(self, name: str) -> bool: ...
    def crashed(self, ctx: "Context", event: Event) -> None: ...
    # HTTP (labkit.service, labkit.http_client): a request leaves, a response answers request
    # ``re``, a caller gives up on ``msg_id`` (timeout), a handler raised (answered 500).
    def transmit_http(self, ctx: "Context", msg_id: str, dst: str, type: str, body_json: str,
                      call: Any) -> None: ...
    def respond_http(self, ctx: "Context", msg_id: str, dst: str, type: str, re: str,
                     body_json: str, resp: Any = None) -> None: ...   # resp: the labkit.Response
    def cancel_http(self, ctx: "Context", msg_id: str) -> None: ...
    def handler_failed(self, ctx: "Context", event: Event) -> None: ...


class _Await:
    """What a coroutine handler yields: an RPC waiting for its reply, a sleep, or work."""

    __slots__ = ("kind", "msg_id", "dst", "type", "ms")

    def __init__(self, kind: str, msg_id: str | None, dst: str | None, type: str | None, ms: float):
        self.kind, self.msg_id, self.dst, self.type, self.ms = kind, msg_id, dst, type, ms

    def __await__(self):
        return (yield self)

    def __repr__(self) -> str:
        if self.kind == "rpc":
            return f"<rpc {self.type!r} to {self.dst} id={self.msg_id} timeout={self.ms}ms>"
        return f"<{self.kind} {self.ms}ms>"


def node_rng(seed: int, node: str, incarnation: int, purpose: str = "node") -> random.Random:
    """The seeded generator for one node incarnation (stable across runs and machines)."""
    return random.Random(f"{seed}/{node}/{incarnation}/{purpose}")


class RecentIds:
    """The ids of recently answered (or timed-out) RPCs, to tell a late or duplicated reply
    from an unknown one: at least the last ``keep`` ids added, at most ``2 * keep``.

    Two generations of sets: when the young one is full it becomes the old one (and the old
    one is dropped), so adding and looking up are O(1). (A dict evicting its oldest key with
    ``next(iter(d))`` is O(n) once many keys were deleted from its front: 3-4 us per answered
    RPC in a long-running node, measured.)"""

    __slots__ = ("young", "old", "keep")

    def __init__(self, keep: int = 10_000) -> None:
        self.young: set[str] = set()
        self.old: set[str] = set()
        self.keep = keep

    def add(self, msg_id: str) -> None:
        young = self.young
        young.add(msg_id)
        if len(young) >= self.keep:
            self.old = young
            self.young = set()

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self.young or msg_id in self.old

    def __len__(self) -> int:
        return len(self.young) + len(self.old)      # (an id is answered once: never in both)


class Context(ServingMixin, CapacityMixin):
    """The ``ctx`` handed to every handler. Times are milliseconds."""

    def __init__(self, host: Host, node_id: str, node: "Node", peers: tuple[str, ...], *,
                 incarnation: int, storage: Storage, offset_ms: float = 0.0, rate: float = 1.0,
                 guard: Any = None, slow: float = 1.0) -> None:
        self._host = host
        self._transmit_body = getattr(host, "transmit_body", None)
        self._fast_send = self._transmit_body      # (for send's common case: None once dead)
        self._row = getattr(host, "record_row", None)
        self._node = node
        self._seq = 0
        self._timers: dict[str, Any] = {}
        self._timer_causes: dict[str, str] = {}      # timer name -> "timer 'name'" (crash reports)
        self._rpcs: dict[str, tuple[Any, Any, Any]] = {}   # msg id -> (coroutine, timeout handle, cause)
        self._answered = RecentIds()                   # rpc ids answered or timed out (recent ones)
        self._counters: dict[str, float] = {}
        self._status: dict[str, Any] = {}
        self._stats_pending = False
        self._offset = offset_ms
        self._rate = rate
        self.dead = False
        # The storm guard (see labkit.guard): events in this handler call, and events and
        # wake-ups in the current window; a ``guard`` of None sets no limits.
        self._g_handler = guard.per_handler if guard is not None else _NO_LIMIT
        self._g_events = guard.events if guard is not None else _NO_LIMIT
        self._g_wakeups = guard.wakeups if guard is not None else _NO_LIMIT
        self._g_window = guard.window_ms if guard is not None else 0.0
        self._hev = self._wev = self._wwk = 0
        self._wev_t0 = self._wwk_t0 = host.now()
        self._tripped: str | None = None
        self._cause: Any = None      # what the running handler handles (for a guard crash)
        self._dests = frozenset(peers) | {node_id}
        self._routes = getattr(type(node), "_labkit_routes", None)   # a Service's route table
        #: This node's id, e.g. ``"n1"``.
        self.id: str = node_id
        #: The other nodes of the cluster.
        self.peers: tuple[str, ...] = peers
        #: 1 for the first run of this node, +1 at each restart.
        self.incarnation: int = incarnation
        self._mid = f"{node_id}.{incarnation}."       # message ids: "<node>.<incarnation>.<seq>"
        #: The cluster's seed.
        self.seed: int = host.seed
        #: A random generator seeded by (cluster seed, node, incarnation). Use it, not ``random``.
        self.rng: random.Random = node_rng(host.seed, node_id, incarnation)
        self._timer_rng = node_rng(host.seed, node_id, incarnation, "timers")
        #: Durable key/value storage; survives kill and restart (JSON values).
        self.storage: Storage = storage
        self._init_capacity(node, slow)

    # -- time ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """This node's clock in ms (true time, skewed by ``cluster.skew``)."""
        return self._host.now() * self._rate + self._offset

    def _set_clock(self, offset_ms: float, rate: float) -> None:
        self._offset, self._rate = offset_ms, rate

    # -- messages --------------------------------------------------------------------------
    def send(self, dst: str, /, type: str, **body: Any) -> str:
        """Send a message; returns its id. Delivery is up to the network."""
        tb = self._fast_send             # None on a dead node, or a host without transmit_body
        if tb is None or type.__class__ is not str or not type or dst not in self._dests:
            return self._send(dst, type, None, body)
        self._hev += 1                  # (_send's common case, inline: the simulator's hottest call)
        self._wev += 1
        if self._hev > self._g_handler or self._wev > self._g_events:
            self._over_events(f"message type {type!r} (to {dst})")
        self._seq += 1
        mid = f"{self._mid}{self._seq}"
        tb(self, mid, dst, type, None, body)
        return mid

    def _send(self, dst: str, type: str, re: str | None, body: dict) -> str:
        if self.dead:
            if self._tripped is not None:  # a handler that caught GuardTripped and sends on
                raise GuardTripped(self._tripped)
            return ""
        if type.__class__ is not str or not type:
            check_body(self.id, type, body)
        if dst not in self._dests and not self._host.is_destination(dst):
            raise UnknownNode(f"{self.id}: cannot send message type {type!r} to unknown node {dst!r}; "
                              f"peers are {list(self.peers)}")
        self._hev += 1
        self._wev += 1
        if self._hev > self._g_handler or self._wev > self._g_events:
            self._over_events(f"message type {type!r} (to {dst})")
        self._seq += 1
        mid = f"{self._mid}{self._seq}"
        if self._transmit_body is not None:     # the host encodes the body, or needs not
            self._transmit_body(self, mid, dst, type, re, body)
        else:
            self._host.transmit(self, mid, dst, type, re, encode_body(self.id, dst, type, body))
        return mid

    def reply(self, msg: Message, /, type: str | None = None, **body: Any) -> str:
        """Answer ``msg``: sent to its source with ``in_reply_to`` set. Default type: ``<type>_ok``."""
        if not isinstance(msg, Message):
            raise MessageError(f"{self.id}: reply() needs the Message you are answering, got {msg!r}")
        return self._send(msg.src, type or msg.type + "_ok", msg.id, body)

    def broadcast(self, type: str, **body: Any) -> list[str]:
        """Send the same message to every peer; returns the message ids."""
        tb = self._fast_send
        if tb is None or type.__class__ is not str or not type:
            return [self._send(p, type, None, body) for p in self.peers]
        mids = []
        for p in self.peers:            # (_send's common case, inline, as in send)
            self._hev += 1
            self._wev += 1
            if self._hev > self._g_handler or self._wev > self._g_events:
                self._over_events(f"message type {type!r} (to {p})")
            self._seq += 1
            mid = f"{self._mid}{self._seq}"
            tb(self, mid, p, type, None, body)
            mids.append(mid)
        return mids

    def rpc(self, dst: str, /, type: str, timeout: float = 1000.0, **body: Any) -> _Await:
        """Send a request now; ``await`` it for the reply (a Message), or ``RpcTimeout``."""
        c = timeout.__class__
        if (c is int or c is float) and 0 < timeout <= MAX_MS:      # (argcheck.ms's common case)
            timeout = float(timeout)
        else:
            timeout = argcheck.ms(timeout, lambda: f"{self.id}: rpc(timeout)", positive=True)
        mid = self._send(dst, type, None, body)
        return _Await("rpc", mid, dst, type, timeout)

    @cached_property
    def http(self) -> Any:
        """HTTP calls to other nodes: ``r = await ctx.http.get(node, path, timeout=ms)`` (also
        ``post/put/delete/patch/head``, aiohttp's arguments); see ``labkit.http_client``.
        (Made at first use, then an attribute: read once per call.)"""
        from .http_client import HttpClient
        return HttpClient(self)

    def _send_http(self, dst: str, type: str, body_json: Any, call: Any) -> str:
        """Send an HTTP request message (``ctx.http``); returns its id. ``body_json`` is the
        body's JSON text -- or, for a host with ``transmit_body``, a flat dict (see
        ``labkit.runtime.sim``), which that host's ``transmit_http`` takes too."""
        if self.dead:
            if self._tripped is not None:
                raise GuardTripped(self._tripped)
            return ""
        if dst not in self._dests:
            if self._host.is_destination(dst):
                raise UnknownNode(f"{self.id}: ctx.http cannot call {dst!r}: clients serve no HTTP; call a node "
                                  f"({list(self._dests)})")
            raise UnknownNode(f"{self.id}: ctx.http cannot call unknown node {dst!r}; nodes are "
                              f"{sorted(self._dests)}")
        self._hev += 1
        self._wev += 1
        if self._hev > self._g_handler or self._wev > self._g_events:
            self._over_events(f"HTTP request {type!r} (to {dst})")
        self._seq += 1
        mid = f"{self._mid}{self._seq}"
        self._host.transmit_http(self, mid, dst, type, body_json, call)
        return mid

    def _http_failed(self, msg_id: str, exc: BaseException) -> bool:
        """The HTTP call ``msg_id`` was refused or reset: raise ``exc`` in its coroutine.
        False if nobody waits for it any more (answered, timed out, or the node is gone)."""
        pending = self._rpcs.pop(msg_id, None)
        if pending is None or self.dead:
            return False
        self._host.cancel(pending[1])
        self._remember_answered(msg_id)
        self._step(pending[0], None, exc, pending[2])   # the cause it awaited in, as a timeout does
        return True

    def sleep(self, ms: float) -> _Await:
        """``await ctx.sleep(ms)`` inside a coroutine handler (ms on this node's clock)."""
        ms = argcheck.ms(ms, lambda: f"{self.id}: sleep(ms)")
        return _Await("sleep", None, None, None, ms)

    def work(self, ms: float) -> _Await:
        """``await ctx.work(ms)`` inside a coroutine handler: ``ms`` of service time (node clock,
        finite, >= 0) with a worker of this node occupied, times the node's slow factor
        (``cluster.slow``). Without a free worker the work waits its turn (FIFO); with the
        node class's ``queue_limit`` already waiting it raises ``labkit.Overloaded`` -- which,
        uncaught in a message handler, answers the message with error code 11 instead of
        crashing the node. In the simulator it is virtual time; in processes a real wait that
        burns no CPU. See ``labkit.capacity``."""
        ms = argcheck.ms(ms, lambda: f"{self.id}: work(ms)")
        return _Await("work", None, None, None, ms)

    # -- timers ----------------------------------------------------------------------------
    def set_timer(self, name: str, after: float | None = None,
                  between: tuple[float, float] | None = None) -> float:
        """(Re)arm timer ``name`` to fire once after ``after`` ms, or a random time drawn
        uniformly from ``between=(lo, hi)`` ms (node clock). Returns the chosen delay."""
        if (after is None) == (between is None):
            raise ValueError(f"{self.id}: set_timer({name!r}) needs exactly one of after=ms or between=(lo, hi)")
        if between is not None:
            if not isinstance(between, (tuple, list)) or len(between) != 2:
                raise ArgumentError(f"{self.id}: set_timer({name!r}, between=(lo, hi)) needs two numbers of ms, "
                                    f"got {between!r}")
            lo = argcheck.ms(between[0], lambda: f"{self.id}: set_timer({name!r}, between=(lo, hi)) lo")
            hi = argcheck.ms(between[1], lambda: f"{self.id}: set_timer({name!r}, between=(lo, hi)) hi")
            if lo > hi:
                raise ArgumentError(f"{self.id}: set_timer({name!r}, between={between!r}) needs 0 <= lo <= hi")
            after = self._timer_rng.uniform(lo, hi)
        elif not ((after.__class__ is float or after.__class__ is int) and 0 <= after <= MAX_MS):
            after = argcheck.ms(after, lambda: f"{self.id}: set_timer({name!r}, after)")   # (NaN too)
        else:
            after = float(after)
        if self.dead:
            if self._tripped is not None:
                raise GuardTripped(self._tripped)
            return after
        self._hev += 1                  # (_produce, inline)
        self._wev += 1
        if self._hev > self._g_handler or self._wev > self._g_events:
            self._over_events(f"timer {name!r}")
        old = self._timers.pop(name, None)
        if old is not None:
            self._host.cancel(old)
        now = self._host.now()
        self._timers[name] = self._host.call_at(now + after / self._rate, self._fire, name)
        data = {"name": name, "after": round(after, 3)}
        if self._row is not None:
            self._row((now, "timer_set", self.id, None, data))
        else:
            self._host.record(Event(now, "timer_set", self.id, None, data))
        return after

    def cancel_timer(self, name: str) -> bool:
        """Cancel timer ``name``; True if it was armed."""
        h = self._timers.pop(name, None)
        if h is None:
            return False
        self._host.cancel(h)
        return True

    @property
    def timers(self) -> tuple[str, ...]:
        """Names of the timers armed now."""
        return tuple(self._timers)

    # -- observability ---------------------------------------------------------------------
    def log(self, *parts: Any) -> None:
        """Write a line to the journal (shown by ``cluster.logs()``)."""
        if not self.dead:
            self._produce("log lines")
            self._host.record(Event(self._host.now(), "log", self.id, None,
                                    {"text": " ".join(str(p) for p in parts)}))

    def note(self, what: str, /, **fields: Any) -> None:
        """Journal a protocol observation *now*, as a ``note`` event: ``what`` plus JSON fields.

        Unlike ``report`` (a status snapshot, batched every 200 ms), every note is kept, in
        order, at the moment it happens -- so checkers can reason over every observation:
        ``ctx.note("leader", term=3)``, ``ctx.note("apply", index=7, command=cmd)``."""
        if not isinstance(what, str) or not what:
            raise TypeError(f"ctx.note(what, ...): what must be a non-empty string, got {what!r}")
        clash = _NOTE_RESERVED.intersection(fields)
        if clash:
            raise TypeError(f"ctx.note(): field name(s) {sorted(clash)} are reserved for the journal "
                            f"({', '.join(sorted(_NOTE_RESERVED))}); pick other names")
        if not self.dead:
            self._produce(f"note {what!r}")
            head = f'{{"what":{quote(what)}'
            try:
                body = _dumps(fields) if fields else "{}"
            except EncodeError as e:
                raise MessageError(f"{self.id}: cannot journal ctx.note({what!r}, ...): {e.at('fields')}. "
                                   f"Note only dicts with str keys, lists, str, int, float, bool and None.") from None
            self._host.record(Event(self._host.now(), "note", self.id, None, None,
                                    head + ("," + body[1:] if len(body) > 2 else "}")))

    def count(self, name: str, by: float = 1) -> None:
        """Add ``by`` (a finite number) to the named counter (read with ``cluster.counters()``);
        ``name`` is a str."""
        if name.__class__ is not str and not isinstance(name, str):
            raise TypeError(f"{self.id}: ctx.count(name): counter names are strings (the journal's keys), got {name!r}")
        if by.__class__ is not int:
            by = argcheck.number(by, lambda: f"{self.id}: count({name!r}, by)")
        self._counters[name] = self._counters.get(name, 0) + by
        self._stats_soon()

    def report(self, **status: Any) -> None:
        """Publish status fields, such as ``role="leader", term=3``, for panels and checkers.
        Raises MessageError naming a field the journal cannot hold (see ``ctx.send``)."""
        try:
            _journal_dumps(status)
        except EncodeError as e:
            raise MessageError(f"{self.id}: cannot report {e.at('status')}. Report only dicts with str "
                               f"keys, lists, str, int, float, bool and None.") from None
        self._status.update(status)
        self._stats_soon()

    @property
    def counters(self) -> dict[str, float]:
        return dict(self._counters)

    def _stats_soon(self) -> None:
        if not self._stats_pending and not self.dead:
            self._stats_pending = True
            self._host.call_at(self._host.now() + STATS_INTERVAL_MS, self._emit_stats)

    def _emit_stats(self) -> None:
        self._stats_pending = False
        busy = self._cap_on and self._capacity_stats()
        self._host.record(Event(self._host.now(), "stats", self.id, None,
                                {"counters": dict(self._counters), "status": dict(self._status),
                                 "incarnation": self.incarnation}))
        if busy:           # while there is work, keep taking stats (until a window shows none)
            self._stats_soon()

    # -- inputs from the runtime -----------------------------------------------------------
    def _start(self) -> None:
        self._host.record(Event(self._host.now(), "start", self.id, None, {"incarnation": self.incarnation}))
        self._run(self._node.on_start, (self,), "on_start")

    def _deliver(self, msg: Message) -> None:
        if self.dead:
            return
        re = msg.in_reply_to
        if re is not None:
            pending = self._rpcs.pop(re, None)
            if pending is not None:
                coro, handle, cause = pending
                self._host.cancel(handle)
                self._answered.add(re)
                r = _new(_Resumed)              # (_Resumed(cause, msg.id, re), inline)
                r.origin = cause.origin if cause.__class__ is _Resumed else cause
                r.reply_id, r.rpc_id = msg.id, re
                self._step(coro, msg, None, r)
                return
            if re in self._answered:  # a late or duplicated reply: the coroutine has moved on
                self.count("late_replies")
                return
        elif self._routes is not None and msg.body.get("http") == "1.1":   # an HTTP request to a Service
            self._http_request(msg)
            return
        self._hev = 0                   # (_run, inline: the hottest path)
        self._cause = msg
        try:
            result = self._node.on_message(self, msg)
        except BaseException as e:
            self._raised(e, msg)
            return
        if result is not None and result.__class__ is _CoroutineType:
            self._step(result, None, None, msg)

    def _fire(self, name: str) -> None:
        if self.dead:
            return
        self._timers.pop(name, None)
        cause = self._timer_causes.get(name)
        if cause is None:
            cause = f"timer {name!r}"
            if len(self._timer_causes) < 1000:
                self._timer_causes[name] = cause
        self._wwk += 1                  # (_woken's count, inline)
        if self._wwk > self._g_wakeups and self._woken_over(cause):
            return
        if self._row is not None:
            self._row((self._host.now(), "timer_fire", self.id, None, {"name": name}))
        else:
            self._host.record(Event(self._host.now(), "timer_fire", self.id, None, {"name": name}))
        self._hev = 0                   # (_run, inline)
        self._cause = cause
        try:
            result = self._node.on_timer(self, name)
        except BaseException as e:
            self._raised(e, cause)
            return
        if result is not None and result.__class__ is _CoroutineType:
            self._step(result, None, None, cause)

    def _kill(self) -> None:
        """The node is gone: forget every timer and coroutine (the runtime drops their events)."""
        self.dead = True
        self._fast_send = None
        for h in self._timers.values():
            self._host.cancel(h)
        for _, h, _ in self._rpcs.values():
            self._host.cancel(h)
        self._timers.clear()
        self._rpcs.clear()
        self._queue.clear()
        self._holding.clear()
        self._serving.clear()

    # -- running handlers ------------------------------------------------------------------
    def _run(self, fn: Callable[..., Any], args: tuple, cause: Any) -> None:
        self._hev = 0
        self._cause = cause
        try:
            result = fn(*args)
        except BaseException as e:  # a handler that raises crashes this node only
            self._raised(e, cause)
            return
        if result is not None and result.__class__ is _CoroutineType:   # (inspect.iscoroutine, cheaper)
            self._step(result, None, None, cause)

    def _raised(self, e: BaseException, cause: Any) -> None:
        """A handler raised ``e``: crash the node (or shed, for ``Overloaded``); the reader's
        own Ctrl-C (``Interrupted``) is raised on, to stop the cell too."""
        if isinstance(e, GuardTripped) and self.dead:
            return              # the guard crashed the node already, where it tripped
        if isinstance(e, Overloaded):   # shed, not crashed (labkit.capacity)
            self._unhandled_overload(e, cause)
            return
        self._crash(e, cause)
        if isinstance(e, Interrupted):
            raise                   # (called inside the handler's ``except``: re-raised as it is)

    def _step(self, coro: Any, value: Any, exc: BaseException | None, cause: Any) -> None:
        self._hev = 0
        self._cause = cause
        outer, self._stepping = self._stepping, coro
        try:
            aw = coro.throw(exc) if exc is not None else coro.send(value)
        except StopIteration as stop:
            self._stepping = outer
            if self._serving and coro in self._serving:     # an HTTP handler returned: its response
                try:
                    self._served(coro, *self._serving.pop(coro), stop.value, None)
                except BaseException as e:      # (the storm guard stopped the node while answering)
                    self._raised(e, cause)
            return
        except BaseException as e:  # SystemExit, KeyboardInterrupt, GeneratorExit too: see _run
            self._stepping = outer
            if self._serving and coro in self._serving:     # an HTTP handler raised: 4xx/5xx (service.py)
                try:
                    if self._served(coro, *self._serving.pop(coro), None, e):
                        return
                except BaseException as e2:
                    self._raised(e2, cause)
                    return
            if isinstance(e, GuardTripped) and self.dead:
                return
            if isinstance(e, Overloaded):   # shed, not crashed (labkit.capacity)
                self._unhandled_overload(e, cause)
                return
            self._crash(e, cause)
            if isinstance(e, Interrupted):
                raise
            return
        self._stepping = outer
        if self.dead:
            coro.close()
            return
        if not isinstance(aw, _Await):
            coro.close()
            if self._serving and coro in self._serving:   # an HTTP handler: its worker is freed first
                self._serving.pop(coro)
                self._holding.discard(coro)
                self._release()
            self._crash(TypeError(
                f"a handler awaited {aw!r}; labkit handlers may await only ctx.rpc(...), ctx.sleep(ms), "
                f"ctx.work(ms), ctx.http calls and req.json()/text() (asyncio functions do not run inside "
                f"nodes)"), cause)
            return
        kind = aw.kind
        if kind == "sleep":
            self._host.call_at(self._host.now() + aw.ms / self._rate, self._wake, coro, cause)
        elif kind == "rpc" or kind == "http":
            handle = self._host.call_at(self._host.now() + aw.ms / self._rate, self._rpc_timeout, aw, cause)
            self._rpcs[aw.msg_id] = (coro, handle, cause)
        else:
            self._await_work(coro, aw.ms, cause)

    def _remember_answered(self, msg_id: str) -> None:
        self._answered.add(msg_id)

    def _wake(self, coro: Any, cause: Any) -> None:
        if not self.dead and not self._woken(f"ctx.sleep in {cause}"):
            self._step(coro, None, None, cause)

    def _rpc_timeout(self, aw: _Await, cause: Any) -> None:
        pending = self._rpcs.pop(aw.msg_id, None)
        if pending is None or self.dead:
            return
        self._remember_answered(aw.msg_id)
        if aw.kind == "http":
            from .http_errors import ServerTimeoutError
            err: BaseException = ServerTimeoutError(
                f"{self.id}: no response to {aw.type} from {aw.dst} (request {aw.msg_id}) within {aw.ms:g} ms")
            self._host.cancel_http(self, aw.msg_id)
        else:
            err = RpcTimeout(f"{self.id}: no reply to rpc {aw.type!r} (id {aw.msg_id}) from {aw.dst} "
                             f"within {aw.ms:g} ms")
        self._step(pending[0], None, err, cause)

    # -- the storm guard (labkit.guard) ------------------------------------------------------
    def _produce(self, what: str) -> None:
        """Count one journal event this node produces (``_send`` counts inline)."""
        self._hev += 1
        self._wev += 1
        if self._hev > self._g_handler or self._wev > self._g_events:
            self._over_events(what)

    def _over_events(self, what: str) -> None:
        if self._hev > self._g_handler:
            self._trip(f"{self.id} produced more than {self._g_handler:,} events (sends, timers, logs) in one "
                       f"call of a handler without returning -- the last was {what}", "per_handler")
        now = self._host.now()
        if now - self._wev_t0 > self._g_window:   # a new window
            self._wev_t0, self._wev = now, 1
            return
        self._trip(f"{self.id} produced more than {self._g_events:,} events (sends, timers, logs) within "
                   f"{self._g_window:g} ms of cluster time -- the last was {what}", "events")

    def _woken(self, what: str) -> bool:
        """Count one wake-up (a timer firing, a sleep ending); True if the node crashed over it."""
        self._wwk += 1
        if self._wwk <= self._g_wakeups:
            return False
        return self._woken_over(what)

    def _woken_over(self, what: str) -> bool:
        """``_woken`` past the count's limit: a new window, or the node crashes (True)."""
        now = self._host.now()
        if now - self._wwk_t0 > self._g_window:
            self._wwk_t0, self._wwk = now, 1
            return False
        self._cause = what
        try:
            self._trip(f"{self.id} woke up more than {self._g_wakeups:,} times (timers, sleeps) within "
                       f"{self._g_window:g} ms of cluster time -- the last was {what} (a timer re-armed "
                       f"with after=0 from its own handler?)", "wakeups")
        except GuardTripped:
            pass
        return True

    def _trip(self, reason: str, limit: str, frame: Any = None) -> None:
        """Crash the node over a guard limit, here and now, then raise ``GuardTripped`` to
        unwind the handler. Crashing first means a handler that swallows the exception
        (``except BaseException``) cannot keep the node going: it is dead, and each further
        send, timer or log raises again (the processes runtime ends the process at once)."""
        msg = (f"storm guard: {reason}; the node was stopped. The limit is Guard({limit}=...); change it "
               f"with labkit.Cluster(..., guard=labkit.Guard({limit}=...))")
        self._tripped = msg
        self._guard_limit = limit
        exc = GuardTripped(msg)
        # The traceback of where the node was: the handler's frames, not labkit's own.
        # (``frame``: where a signal handler interrupted the node, else here)
        frames = traceback.extract_stack(frame) if frame is not None else traceback.extract_stack()[:-1]
        first = max((i + 1 for i, f in enumerate(frames) if f.filename == __file__ and f.name in _HANDLER_RUNNERS),
                    default=len(frames))          # (no handler running: a wake-up, no frames to show)
        while len(frames) > first and frames[-1].filename == __file__:
            frames.pop()
        tb = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames[first:])) + \
            f"labkit.guard.GuardTripped: {msg}\n"
        self._crash(exc, self._cause, tb)
        raise exc

    def _crash(self, exc: BaseException, cause: Any, tb: str | None = None) -> None:
        if isinstance(exc, RuntimeError) and "no running event loop" in str(exc):
            hint = TypeError("a handler called an asyncio function (e.g. asyncio.sleep); nodes have no "
                             "asyncio event loop: use `await ctx.sleep(ms)`, `await ctx.rpc(...)` and "
                             "`await ctx.http.get(...)`")
            hint.__cause__ = exc
            hint.__traceback__ = exc.__traceback__
            exc = hint
        if isinstance(cause, Message):
            what = f"handling message {cause.id} (type {cause.type!r} from {cause.src})"
            mid = cause.id
        else:
            what = str(cause)
            mid = None
        if tb is None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        data = {"error": f"{type(exc).__name__}: {exc}", "cause": what, "traceback": tb,
                "incarnation": self.incarnation, "seed": self.seed}
        if isinstance(exc, GuardTripped):
            data["guard"] = getattr(self, "_guard_limit", None)
        elif isinstance(exc, Interrupted):
            data["error"] = ("Interrupted: the cell was interrupted (Ctrl-C / interrupt kernel) while this "
                             "handler ran, and it did not return; its node is stopped")
        ev = Event(self._host.now(), "crash", self.id, mid, data)
        self._kill()
        self._host.record(ev)
        self._host.crashed(self, ev)


def crash_report(ev: Event) -> str:
    """How a crash is shown in the notebook."""
    return (f"labkit: node {ev.node} crashed while {ev.get('cause')} "
            f"(incarnation {ev.get('incarnation')}, seed {ev.get('seed')}, t={ev.t:.1f} ms); "
            f"the rest of the cluster goes on. cluster.restart({ev.node!r}) brings it back.\n"
            f"{ev.get('traceback') or ev.get('error')}")
