"""The simulator runtime: a whole cluster in one process, in virtual time, from one seed.

Theory of operation. Everything that will happen is an entry ``[t, seq, fn, args]`` on one
heap: message arrivals, timers, coroutine wake-ups, nemesis steps. ``run_for`` pops entries
in (time, sequence) order and calls them; virtual time jumps from one entry to the next, so
seconds of cluster life cost milliseconds. (One kind of entry waits in a FIFO queue beside
the heap: a message on a perfect network arrives ``HOP_MS`` after it is sent, so those
arrivals are made in (time, sequence) order already; the loop takes whichever of the FIFO's
and the heap's first entries comes first -- the order the heap alone would give, without a
push and a pop on it per message.) All randomness comes from generators seeded by
the cluster seed (per node and incarnation, and one for the network), and nothing reads the
wall clock, so one seed gives one journal, byte for byte.

Every message takes ``HOP_MS`` (0.1 ms, about one loopback hop) on top of its link's delay,
as on a real machine; besides realism, this keeps virtual time moving when nodes answer each
other without end. A cluster that still makes no progress in time -- e.g. a timer re-armed
with ``after=0`` from its own handler -- is stopped with an error rather than hanging.

Runs are bounded and interruptible. The storm guard (``labkit.guard``) crashes a node that
produces events without end and stops the run with a ``StormError``; so does a heap holding
more than ``Guard.queue`` entries. While the simulator runs (a run, a request, starting,
restarting or resuming nodes), SIGINT -- Ctrl-C, "interrupt kernel" -- is caught: the run
stops between two events with ``labkit.Interrupted`` (a ``KeyboardInterrupt``); a handler
that has not returned ``INTERRUPT_GRACE_S`` later is interrupted where it is, and its node
crashed. A handler that produces nothing and never returns (``while True: pass``) is found
by a watcher thread (``_StuckWatch``) after ``Guard.handler_s`` wall seconds and stopped the
same way, with a ``StormError``. A ``KeyboardInterrupt`` raised by node code itself is that
node's crash, like ``SystemExit`` or any other exception.

Faults map onto the heap: a killed node's context is dead and its entries are skipped; a
paused node's entries are set aside and run, in order, when it resumes (as a SIGSTOPped
process handles its backlog after SIGCONT); a partition is checked again when a delayed
message arrives.
"""
from __future__ import annotations

import _thread
import gc
import heapq
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from .sim_http import SimHttpMixin
from ..context import _HANDLER_RUNNERS, Context
from ..errors import Interrupted, LabkitError
from ..guard import StormError
from ..journal import Event
from ..message import (_SURELY_SMALL, Message, is_flat,
                       body_json, encode_body, loads_trusted, too_large, wire)
from .base import NodeRecord, RuntimeBase
from .scheduler import Scheduler
from .storage import Storage

_loads = loads_trusted
_heappush = heapq.heappush
_new = object.__new__

#: Virtual time one message takes on a perfect link (ms).
HOP_MS = 0.1
#: Events allowed at one instant of virtual time before the simulator calls it a livelock.
LIVELOCK_EVENTS = 1_000_000
#: While a run lasts, objects it makes and keeps (the journal's) are frozen rather than walked
#: by the collector again and again -- up to about this many; past it, collections go on as usual.
FREEZE_MAX_OBJECTS = 1_000_000
#: After a Ctrl-C, how long (wall seconds) a handler may go on before it is stopped where it is.
INTERRUPT_GRACE_S = 0.5
INTERRUPTED = "the simulator was interrupted (Ctrl-C / interrupt kernel); the cluster is still there"


#: How often (wall s) the watcher looks for a handler that does not return (Guard.handler_s).
WATCH_PERIOD_S = 0.5


def _outermost_handler(frame: Any) -> Any:
    """The outermost frame of a ``Context`` running a node's handler in ``frame``'s stack, or None."""
    found = None
    ctx_file = Context._run.__code__.co_filename
    while frame is not None:
        code = frame.f_code
        if code.co_filename == ctx_file and code.co_name in _HANDLER_RUNNERS:
            found = frame
        frame = frame.f_back
    return found


class _StuckWatch:
    """Finds a node handler that runs on without returning (``Guard.handler_s``).

    One daemon thread per process, started by the first simulator run on the main thread: it
    wakes every ``WATCH_PERIOD_S``, only looks while such a run is on (``arm``), and takes the
    main thread's stack (``sys._current_frames``) -- nothing on the simulator's hot path. When
    the same call of a handler (the same frame object of the ``Context`` method running it) is
    still there after ``handler_s``, it signals the main thread, whose SIGINT handler (the
    run's, see ``SimRuntime._with_sigint``) crashes that node where it is."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.run: Any = None            # (runtime, limit s, the run's state dict, its lock)
        threading.Thread(target=self._loop, name="labkit-sim-watch", daemon=True).start()

    def arm(self, run: Any) -> Any:
        """Watch ``run`` (None: nothing) from now on; returns what was watched before (a run
        of another cluster that this one's run is nested in, e.g. from a reply callback)."""
        with self.lock:
            outer, self.run = self.run, run
        return outer

    def _loop(self) -> None:
        main = threading.main_thread().ident
        seen, since = None, 0.0
        while True:
            time.sleep(WATCH_PERIOD_S)
            with self.lock:
                run = self.run
            if run is None:
                seen = None
                continue
            rt, limit, state, lock = run
            frame = sys._current_frames().get(main)
            handler = _outermost_handler(frame)
            del frame
            now = time.monotonic()
            if handler is None or handler is not seen:
                seen, since = handler, now
                continue
            if now - since >= limit:
                with lock:                       # (as the grace timer: never after the run ends)
                    if not state["finishing"] and rt._stuck is None:
                        rt._stuck = now - since
                        signal.pthread_kill(main, signal.SIGINT)
                seen = None


_watch: "_StuckWatch | None" = None


def _stuck_watch() -> _StuckWatch:
    global _watch
    if _watch is None or _watch.pid != os.getpid():      # (a forked sweep worker starts its own)
        _watch = _StuckWatch()
    return _watch


class _SimHost:
    """The host of one node incarnation inside the simulator."""

    __slots__ = ("rt", "rec", "seed", "transmit", "transmit_body", "record_row", "transmit_http",
                 "respond_http", "_sched", "cancel")

    def __init__(self, rt: "SimRuntime", rec: NodeRecord) -> None:
        self.rt, self.rec, self.seed = rt, rec, rt.seed
        #: ``transmit(ctx, mid, dst, type, re, body_json)`` and ``transmit_body(..., body)``
        #: (the body dict itself: see ``_transmit``): the runtime's own, one call less on the
        #: simulator's hottest path.
        self.transmit = self.transmit_body = rt._transmit
        #: ``record_row((t, kind, node, id, data))``: a journal row, without an ``Event``.
        self.record_row = rt.events.append
        self.transmit_http = rt._transmit_http      # HTTP: see labkit.runtime.sim_http
        self.respond_http = rt._respond_http
        self._sched = rt._sched
        #: ``cancel(entry)``: the scheduler's own (an answered RPC's timeout, one call less).
        self.cancel = rt._sched.cancel

    def now(self) -> float:
        return self.rt.t

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> list:
        sched = self._sched          # (Scheduler.call_at, inline: every timer comes this way)
        sched._seq += 1
        entry = [t, sched._seq, self._node_call, (self.rec.ctx, fn, args)]
        _heappush(sched.heap, entry)
        return entry

    def _node_call(self, ctx: Context, fn: Callable[..., None], args: tuple) -> None:
        if ctx.dead or ctx is not self.rec.ctx:
            return
        if self.rec.state == "paused":
            self.rec.deferred.append((self._node_call, (ctx, fn, args)))
            return
        fn(*args)

    def record(self, ev: Event) -> None:
        self.rt.events.append(ev)

    def is_destination(self, name: str) -> bool:
        return self.rt.is_destination(name)

    def crashed(self, ctx: Context, ev: Event) -> None:
        self.rt._node_crashed(self.rec, ev)

    def cancel_http(self, ctx: Context, mid: str) -> None:
        pass  # the response, if one comes, is dropped as "connection closed" (see _sim_http)

    def handler_failed(self, ctx: Context, ev: Event) -> None:
        self.rt.report_handler_error(ev)


class SimRuntime(SimHttpMixin, RuntimeBase):
    """One process, virtual time, one seed."""

    name = "sim"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        for nid, f in self.factories.items():
            if getattr(getattr(f, "node", f), "_labkit_program", False):
                raise LabkitError(
                    f"node {nid} is a labkit.Program: it runs a real executable in a real process, which "
                    f"the simulator cannot run in virtual time. Use Cluster(..., runtime=\"processes\"); to "
                    f"simulate the protocol, write the node as a labkit.Node (labkit.maelstrom.export runs "
                    f"such a node as a Maelstrom program too)")
        self.t = 0.0
        self._at_t, self._at = 0.0, 0.0     # the last time rounded for a wire's ``at`` (_transmit)
        self._sched = Scheduler()
        self._heap = self._sched.heap
        self._fifo: deque[list] = deque()    # arrivals on a perfect network, in (t, seq) order
        self._net_rng = random.Random(f"{self.seed}/network")
        self._stores: dict[str, dict[str, str]] = {n: {} for n in self.node_ids}
        self._interrupted = False
        self._sigint_installed = False
        self._running = False       # inside _run_until: a storm stops the run (see _node_crashed)
        self._storm: str | None = None
        self._stuck: float | None = None    # set by _StuckWatch: a handler ran this long (s)
        self._http_setup()
        self._row = self.events.append      # a journal row (see labkit.journal_store)
        self._arrive_cb = self._arrive      # (one bound method for every arrival on the heap)
        self._flat: Any = None              # the last body _transmit found flat
        self._freezes_left = 0              # see _gc_starts

    # -- the heap --------------------------------------------------------------------------
    def _push(self, t: float, fn: Callable[..., None], args: tuple) -> list:
        return self._sched.call_at(t, fn, *args)

    def now(self) -> float:
        return self.t

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> list:
        return self._push(max(t, self.t), fn, args)

    def cancel(self, entry: list) -> None:
        self._sched.cancel(entry)

    def _run_until(self, end: float, stop: Callable[[], bool] | None = None) -> bool:
        outer, self._running = self._running, True
        try:
            return self._loop(end, stop)
        finally:
            self._running = outer             # (a reply callback's request nests a run)

    def _loop(self, end: float, stop: Callable[[], bool] | None) -> bool:
        heap, fifo = self._heap, self._fifo
        pop, popleft = heapq.heappop, fifo.popleft
        same = 0
        guard = self.guard
        queue = guard.queue if guard is not None and guard.queue else 1 << 62
        while True:
            if fifo:                    # the first of the FIFO's and the heap's entries (by t, seq)
                entry = fifo[0]
                in_heap = False
                if heap:
                    h = heap[0]
                    if h[0] < entry[0] or (h[0] == entry[0] and h[1] < entry[1]):
                        entry, in_heap = h, True
            elif heap:
                entry = heap[0]
                in_heap = True
            else:
                break
            if entry[0] > end:
                break
            if self._interrupted:
                raise Interrupted(INTERRUPTED)
            if len(heap) + len(fifo) > queue:
                raise StormError(self._queue_report(queue))
            if in_heap:
                pop(heap)
            else:
                popleft()
            fn = entry[2]
            if fn is None:
                continue
            t = entry[0]
            if t == self.t:
                same += 1
                if same > LIVELOCK_EVENTS:
                    raise LabkitError(
                        f"livelock: {LIVELOCK_EVENTS:,} events at t={t:.3f} ms without virtual time moving "
                        f"(a timer or sleep of 0 ms re-armed from its own handler?); last: {fn.__qualname__}")
            else:
                same = 0
                self.t = t
            if in_heap:
                fn(*entry[3])
            else:
                fn(entry[3][0])         # (a FIFO entry is an arrival: one argument, its wire)
            if self._storm is not None:
                msg, self._storm = self._storm, None
                raise StormError(msg)
            if stop is not None and stop():
                return True
        self.t = max(self.t, end)
        return False

    def _queue_report(self, limit: int) -> str:
        """What fills the heap: the (sender, message type) with the most messages in flight."""
        by: dict[tuple[str, str], int] = {}
        arrive = self._arrive
        for e in (*self._heap, *self._fifo):
            if e[2] == arrive:
                w = e[3][0]
                key = (w[0], w[2])
                by[key] = by.get(key, 0) + 1
        top = max(by.items(), key=lambda kv: kv[1]) if by else None
        what = (f"; most are {top[0][1]!r} messages from {top[0][0]} ({top[1]:,})" if top
                else " (timers and scheduled calls, no messages)")
        return (f"storm guard: more than {limit:,} events are waiting in the simulator at t={self.t:.3f} ms"
                f"{what} -- a message storm (each message answered by several?). The run was stopped; "
                f"the limit is Guard(queue=...): labkit.Cluster(..., guard=labkit.Guard(queue=...))")

    def _with_interrupts(self, body: Callable[[], Any]) -> Any:
        """Run ``body``; Ctrl-C / Interrupt stops it between two events, never inside a handler
        -- unless a handler has not returned ``INTERRUPT_GRACE_S`` after the Ctrl-C (it loops
        forever?) or a second Ctrl-C comes: then ``Interrupted`` is raised where the handler
        is, and that node is crashed (its handler never finished). Either way the cell stops
        with ``Interrupted``, a ``KeyboardInterrupt``. The cluster stays usable.

        While it runs, the cyclic garbage collector runs less often: the journal keeps every
        event alive, so frequent young-generation passes only re-walk survivors (this alone
        is ~1.5x the simulator's speed) -- and, unless the program froze some itself, every
        object there was before the run is frozen (``gc.freeze``) until it ends, so that the
        passes the run's own garbage calls for do not walk the notebook's whole heap (earlier
        journals included) again and again. The run's own survivors -- mostly journal rows, one
        to three per event, which no collection can free -- are frozen too, each time a young
        collection is about to walk them (``_gc_starts``), up to ``FREEZE_MAX_OBJECTS``
        (then collections go on as usual): without it, walking them once each costs the
        simulator ~15% of its time. labkit's own event path makes no reference cycles, so
        all that defers is collecting cycles a handler makes, to the end of the run. Settings
        are restored afterwards; nothing is kept from being collected after the run."""
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
        freeze = not self._running and gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
            self._freezes_left = FREEZE_MAX_OBJECTS // gc.get_threshold()[0]
            gc.callbacks.append(self._gc_starts)
        try:
            return self._with_sigint(body)
        finally:
            if freeze:
                gc.callbacks.remove(self._gc_starts)
                gc.unfreeze()
            gc.set_threshold(*thresholds)

    def _gc_starts(self, phase: str, info: dict) -> None:
        """A ``gc.callbacks`` hook while a run lasts: before a young collection, freeze what
        survived since the last one (see ``_with_interrupts``). A young generation holds at
        most about a threshold's worth of objects, hence the count of freezes left."""
        if phase == "start" and info["generation"] < 2 and self._freezes_left > 0:
            self._freezes_left -= 1
            gc.freeze()

    def _with_sigint(self, body: Callable[[], Any]) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return body()
        if self._sigint_installed:   # nested (a reply callback that calls request): already armed
            return body()
        main_ident = threading.main_thread().ident
        state: dict[str, Any] = {"finishing": False, "timer": None}
        lock = threading.Lock()

        def nudge() -> None:  # the grace is over and the run has not stopped: interrupt again
            with lock:
                if not state["finishing"] and self._interrupted:
                    kill = getattr(signal, "pthread_kill", None)
                    if kill is not None:   # a real signal also wakes a blocking call (time.sleep)
                        kill(main_ident, signal.SIGINT)
                    else:
                        _thread.interrupt_main()

        def arm() -> None:
            t = threading.Timer(INTERRUPT_GRACE_S, nudge)
            t.daemon = True
            state["timer"] = t
            t.start()

        def on_sigint(signum, frame):
            if state["finishing"]:
                return              # the interrupt is already being honoured
            if self._stuck is not None:     # not a Ctrl-C: the watcher found a handler stuck
                ran, self._stuck = self._stuck, None
                self._stop_stuck(frame, ran)
                return
            if self._interrupted:   # a second one (the reader's or the grace timer's): stop here
                arm()               # (again later, should the handler swallow this one)
                raise Interrupted(INTERRUPTED)
            self._interrupted = True
            arm()

        old = signal.signal(signal.SIGINT, on_sigint)
        self._sigint_installed = True
        limit = self.guard.handler_s if self.guard is not None else None
        watch = _stuck_watch() if limit and hasattr(signal, "pthread_kill") else None
        outer_run = None
        try:
            if watch is not None:
                outer_run = watch.arm((self, limit, state, lock))
            return body()
        finally:
            state["finishing"] = True   # first, with no call before it: from here on_sigint is a no-op
            if watch is not None:
                watch.arm(outer_run)
            with lock:                  # (waits out a nudge that is sending its signal)
                pass
            t = state["timer"]
            if t is not None:
                t.cancel()
                t.join()        # a signal it sent has run on_sigint (a no-op now) when this returns
            signal.signal(signal.SIGINT, old)
            self._sigint_installed = False
            self._interrupted = False
            self._stuck = None

    def _stop_stuck(self, frame: Any, ran: float) -> None:
        """In the main thread's SIGINT handler: crash the node whose handler call has run
        ``ran`` wall seconds (``Guard.handler_s``), where it is (``Context._trip`` raises
        ``GuardTripped`` into the handler; the run then stops with ``StormError``)."""
        runner = _outermost_handler(frame)
        ctx = runner.f_locals.get("self") if runner is not None else None
        if not isinstance(ctx, Context):
            return                  # it returned in the meantime
        if ctx.dead:                # stopped before, and it swallowed that: again, until it lets go
            from ..guard import GuardTripped
            raise GuardTripped(ctx._tripped or f"node {ctx.id} was stopped; its handler still runs")
        cause = ctx._cause
        what = (f"message {cause.id} (type {cause.type!r} from {cause.src})" if isinstance(cause, Message)
                else str(cause))
        ctx._trip(f"one call of its handler for {what} ran {ran:.1f} s of wall time without returning "
                  f"(an endless loop?)", "handler_s", frame)

    # -- nodes -----------------------------------------------------------------------------
    def _start_node(self, rec: NodeRecord) -> None:
        host = _SimHost(self, rec)
        storage = Storage(rec.id, self._stores[rec.id])
        rec.ctx = Context(host, rec.id, self.factories[rec.id](), self.peers_of(rec.id),
                          incarnation=rec.incarnation, storage=storage,
                          offset_ms=rec.offset_ms, rate=rec.rate, guard=self.guard, slow=rec.slow)
        rec.state = "up"
        rec.deferred = []
        rec.ctx._start()

    def start(self) -> None:
        def start_all() -> None:
            for rec in self.records.values():
                self._start_node(rec)
        self._with_interrupts(start_all)

    def _node_crashed(self, rec: NodeRecord, ev: Event) -> None:
        rec.state = "crashed"
        self._reset_http(rec.id)
        self.report_crash(ev)
        if self._running and ev.get("guard"):
            # Raised by the loop once the handler is out of the way: raised from here, inside
            # the node's handler, an ``except Exception`` in node code could swallow it.
            self._storm = (f"{ev.get('error')} (node {rec.id}, t={ev.t:.3f} ms; the crash report above "
                           f"shows the line it was at)")

    # -- the network -----------------------------------------------------------------------
    def _transmit(self, ctx: Context, mid: str, dst: str, type: str, re: str | None, body: Any) -> None:
        """A node's message enters the network (``Host.transmit`` with the body's JSON text,
        and ``transmit_body`` with the body dict). Its wire tuple ``w`` is (src, dst, type,
        id, re, at, body), and the journal rows of its ``send`` and ``deliver`` hold it.

        A *flat* body -- a few keys, JSON scalars of exact types, short strings (the bounds are
        ``labkit.message.FLAT_MAX_*``) -- crosses JSON unchanged, so it travels as the dict
        itself: the context's own ``**body`` dict, which no handler holds. Each receiver gets
        a copy of it (``_arrive``), and the journal encodes it when it is read, to the text
        the encoder would have made here. Any other body is encoded here, which refuses what
        could not cross a real network (``MessageError``), and decoded at each arrival."""
        t = self.t
        if t != self._at_t:                 # ``at`` is the time rounded to 1 us; messages come in bursts
            self._at_t, self._at = t, round(t, 3)
        src = ctx.id
        if body is self._flat:              # a broadcast's body, found flat for its first peer
            w = (src, dst, type, mid, re, self._at, body)
            self._row((t, "send", src, mid, None, w))
            if not self.net._faulty:
                sched = self._sched
                sched._seq += 1
                self._fifo.append([t + HOP_MS, sched._seq, self._arrive_cb, (w,)])
                return
            return self._route(t, src, dst, mid, w)
        if is_flat(body):                   # flat: no JSON, and surely small
            self._flat = body           # (held here, so no other dict can take its id)
            w = (src, dst, type, mid, re, self._at, body)
            self._row((t, "send", src, mid, None, w))
            if not self.net._faulty:    # a perfect network (the common case): one copy, one hop
                sched = self._sched
                sched._seq += 1
                self._fifo.append([t + HOP_MS, sched._seq, self._arrive_cb, (w,)])
                return
            return self._route(t, src, dst, mid, w)
        if body.__class__ is not str:
            body = encode_body(src, dst, type, body)
        w = (src, dst, type, mid, re, self._at, body)
        if len(body) + len(type) >= _SURELY_SMALL:     # (too_large's own quick test, inline)
            big = too_large(type, body)
            if big is not None:        # journaled without its body; never sent (as in processes)
                w = w[:6] + ("{}",)
                self.events.append((t, "send", src, mid, None, w))
                self.events.append(Event(t, "drop", dst, mid, wire=w, extra={"rule": big}))
                return
        self.events.append((t, "send", src, mid, None, w))
        if not self.net._faulty:
            sched = self._sched
            sched._seq += 1
            self._fifo.append([t + HOP_MS, sched._seq, self._arrive_cb, (w,)])
            return
        self._route(t, src, dst, mid, w)

    def _route(self, t: float, src: str, dst: str, mid: str, w: tuple) -> None:
        """A message on a network with faults: the model's rules, then one arrival per copy."""
        delays, rule = self.net.route(src, dst, self._net_rng)
        if rule is not None:
            self.events.append(Event(t, "drop", dst, mid, wire=w, extra={"rule": rule}))
            return
        if self.net.shaped:       # a bandwidth limit: wait for the link, then be sent
            tx = self.net.transmit(src, dst, len(wire(*w[:6], body_json(w[6])).encode()), t)
            if tx:
                delays = [tx + d for d in delays]
        for d in delays:
            self._push(t + HOP_MS + d, self._arrive, (w,))

    def _arrive(self, w: tuple) -> None:
        src, dst, type, mid, re, at, body = w
        rec = self.records.get(dst)
        if rec is not None and rec.state == "up" and not self.net._faulty:   # the common case
            self._row((self.t, "deliver", dst, mid, None, w))
            m = _new(Message)       # (Message(...) without a Python __init__ call: the hottest path)
            m.src, m.dst, m.type, m.id, m.in_reply_to, m.sent_at = src, dst, type, mid, re, at
            m.body = body.copy() if body.__class__ is dict else _loads(body)   # the receiver's own copy
            rec.ctx._deliver(m)
            return
        if rec is None:  # a client
            ev = Event(self.t, "deliver", dst, mid, wire=w)
            self.events.append(ev)
            self._client_reply(ev)
            if self._due:
                self.run_callbacks()
            return
        if rec.state in ("down", "crashed"):
            self.events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": "node down"}))
            return
        rule = self.net.blocked(src, dst)
        if rule is not None:
            self.events.append(Event(self.t, "drop", dst, mid, wire=w, extra={"rule": rule}))
            return
        if rec.state == "paused":
            rec.deferred.append((self._arrive, (w,)))
            return
        self.events.append((self.t, "deliver", dst, mid, None, w))
        rec.ctx._deliver(Message(src, dst, type, mid, dict(body) if body.__class__ is dict else _loads(body), re, at))

    # -- the runtime interface used by Cluster ---------------------------------------------
    def run_for(self, seconds: float) -> None:
        self._with_interrupts(lambda: self._run_until(self.t + seconds * 1000.0))

    def _transmit_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        w = (client, node, type, mid, None, round(self.t, 3), body_json)
        self.events.append(Event(self.t, "send", client, mid, wire=w))
        self._push(self.t + HOP_MS, self._arrive, (w,))

    def _refuse_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        w = (client, node, type, mid, None, round(self.t, 3), body_json)
        self.events.append(Event(self.t, "send", client, mid, wire=w))
        self.events.append(Event(self.t, "drop", node, mid, wire=w, extra={"rule": "node down"}))

    def _wait_for_reply(self, mid: str, timeout: float, node: str) -> None:
        rec = self.records[node]

        def done() -> bool:
            return mid in self._replies or mid in self.crashed_ids or rec.state in ("down", "crashed")

        self._with_interrupts(lambda: self._run_until(self.t + timeout, done))

    def kill(self, rec: NodeRecord) -> None:
        if rec.ctx is not None:
            rec.ctx._kill()
        rec.state = "down"
        self._reset_http(rec.id)
        backlog, rec.deferred = rec.deferred, []
        for fn, args in backlog:  # messages a paused node never handled are lost with it
            if self._deferred_http_lost(fn, args):
                continue
            if fn == self._arrive:
                w = args[0]
                self.events.append(Event(self.t, "drop", w[1], w[3], wire=w, extra={"rule": "node down"}))

    def restart(self, rec: NodeRecord) -> None:
        self._with_interrupts(lambda: self._start_node(rec))

    def pause(self, rec: NodeRecord) -> None:
        rec.state = "paused"

    def resume(self, rec: NodeRecord) -> None:
        rec.state = "up"
        backlog, rec.deferred = rec.deferred, []

        def handle_backlog() -> None:
            for fn, args in backlog:
                fn(*args)
        self._with_interrupts(handle_backlog)

    def set_clock(self, rec: NodeRecord) -> None:
        if rec.ctx is not None:
            rec.ctx._set_clock(rec.offset_ms, rec.rate)

    def set_slow(self, rec: NodeRecord) -> None:
        if rec.ctx is not None:
            rec.ctx._set_slow(rec.slow)

    def net_changed(self) -> None:
        pass  # the model is read directly

    def counters(self, rec: NodeRecord) -> tuple[dict, dict]:
        ctx = rec.ctx
        return (dict(ctx._counters), dict(ctx._status)) if ctx else ({}, {})

    def close(self) -> None:
        self._sched.clear()
        self._fifo.clear()
        self._due.clear()
