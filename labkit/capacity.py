"""Work and capacity: service time, workers, a FIFO queue, shedding -- and the slow node.

Theory of operation. A node has ``workers`` (a class attribute, default 1) that serve at once,
and a FIFO queue of at most ``queue_limit`` (default 64) waiting for one -- the shape of a
thread-pool server: gunicorn's ``workers`` and ``backlog``, Tomcat's ``maxThreads`` and
``acceptCount``. Work claims a worker in one of two ways:

* ``await ctx.work(ms)`` in a coroutine handler that holds no worker: the work takes a free
  worker for its duration; with none free it waits in the queue; with ``queue_limit`` already
  waiting it is refused -- ``labkit.Overloaded`` is raised at the ``await`` and ``shed`` is
  counted. Left uncaught in a message handler, ``Overloaded`` does not crash the node: the
  message is answered with a Maelstrom error, ``{"type": "error", "code": 11, "text": ...}``
  (11 is temporarily-unavailable: the request was not done; see ``labkit.recorder``), like a
  server's 503. Uncaught elsewhere (a timer handler), the handler just ends. A shed request
  is refused at its first ``ctx.work``: put that before side effects.
* Request admission (``Context._admit`` / ``_release``), used by HTTP serving: a request
  holds a worker from admission to its response (one thread per request), and ``ctx.work``
  inside it only waits. Beyond the queue the request is shed and answered 503.

Time. ``ctx.work(ms)`` lasts ``ms`` x the node's slow factor on the node's own clock (as
``ctx.sleep``: ``cluster.skew(rate=...)`` stretches it in cluster time). In the simulator
this is virtual time with the worker occupied; in the processes runtime the node process
really waits -- its poll loop sleeps until the work's timer is due, burning no CPU, so five
busy nodes fit on two cores -- and keeps handling messages meanwhile (they queue for a
worker). A handler that never awaits ``ctx.work`` takes no modelled time at all.

Metrics, published with the node's counters (``stats`` journal events every 200 ms while
there is work, read with ``cluster.counters()``, charted by the panel and by
``labkit.plots.capacity``) -- Gregg's USE method (utilization, saturation, errors):

* ``in_flight``: busy workers when the stats were taken;
* ``queued``: requests and works waiting for a worker then;
* ``utilization``: busy worker-time / (``workers`` x elapsed) over the stats window, in [0, 1];
* ``shed``: requests and works refused since the node started (a count).

Queueing theory. Poisson arrivals at rate lambda and exponential work of mean 1/mu on one
worker make the M/M/1 queue: mean time in system 1/(mu - lambda), utilization lambda/mu
(Kleinrock, *Queueing Systems, Vol. 1: Theory*, 1975, section 3.2). ``tests/test_capacity.py``
checks the simulator against it over 20 seeds.

The slow node. ``cluster.slow(node, factor)`` is the gray failure (Huang et al., "Gray
Failure: The Achilles' Heel of Cloud-Scale Systems", HotOS 2017): the node is alive and
answers -- heartbeats and health checks pass -- but each ``ctx.work`` takes ``factor`` times
longer. It changes work that starts after the call (work under way keeps its end), and it
is a property of the node's machine: like ``skew`` it survives ``kill`` and ``restart`` until
``cluster.unslow(node)``.
"""
from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from .errors import ArgumentError, Overloaded
from .guard import GuardTripped
from .message import Message

if TYPE_CHECKING:
    from .context import Context

#: Defaults of the node class attributes ``workers`` and ``queue_limit``.
DEFAULT_WORKERS, DEFAULT_QUEUE_LIMIT = 1, 64
MAX_WORKERS, MAX_QUEUE_LIMIT = 10_000, 1_000_000
#: The range of ``cluster.slow(node, factor)``: 1 is normal speed.
MIN_SLOW, MAX_SLOW = 1.0, 1000.0
#: Maelstrom's error code for "temporarily-unavailable" (the request was not done).
SHED_CODE = 11
#: The counters a node that serves work publishes (see the module docstring).
METRICS = ("in_flight", "queued", "utilization", "shed")


def check_capacity(node: Any, where: str) -> tuple[int, int]:
    """``(workers, queue_limit)`` of a node class or instance, checked; ``ArgumentError``
    naming the node, the attribute, its value and the range otherwise."""
    cls = node if isinstance(node, type) else type(node)
    out = []
    for attr, lo, hi, default in (("workers", 1, MAX_WORKERS, DEFAULT_WORKERS),
                                  ("queue_limit", 0, MAX_QUEUE_LIMIT, DEFAULT_QUEUE_LIMIT)):
        v = getattr(node, attr, default)
        if v.__class__ is not int:
            try:
                import numpy as _np   # a numpy integer is a whole number too
                ok = isinstance(v, (int, _np.integer)) and not isinstance(v, bool)
            except ImportError:
                ok = isinstance(v, int) and not isinstance(v, bool)
            if not ok:
                raise ArgumentError(f"{where}: {cls.__name__}.{attr} must be a whole number in [{lo}, {hi:,}], "
                                    f"got {v!r} of type {type(v).__name__} (set it in the class body, "
                                    f"e.g. {attr} = {4 if attr == 'workers' else 64})")
            v = int(v)
        if not lo <= v <= hi:
            raise ArgumentError(f"{where}: {cls.__name__}.{attr} must be a whole number in [{lo}, {hi:,}], got {v!r}"
                                + (" (0 means: no queue, shed whenever every worker is busy)"
                                   if attr == "queue_limit" else ""))
        out.append(v)
    return out[0], out[1]


class _Resumed:
    """The cause of a coroutine step after an RPC reply: shown as text in a crash report,
    and keeping the message the coroutine handles (``origin``), to answer it if it is shed."""

    __slots__ = ("origin", "reply_id", "rpc_id")

    def __init__(self, origin: Any, reply_id: str, rpc_id: str) -> None:
        self.origin = origin.origin if type(origin) is _Resumed else origin
        self.reply_id, self.rpc_id = reply_id, rpc_id

    def __str__(self) -> str:
        return f"resuming after the reply {self.reply_id} to rpc {self.rpc_id}"


class CapacityMixin:
    """The worker pool of one node incarnation: part of ``Context`` (see the module docstring)."""

    def _init_capacity(self: "Context", node: Any, slow: float) -> None:
        self._workers, self._queue_limit = check_capacity(node, self.id)
        self._busy = 0                        # workers serving now
        self._queue: deque[Callable[[], None]] = deque()   # who waits for a worker, FIFO
        #: Coroutines that hold an admitted worker (``_admit``): their ``ctx.work`` only waits.
        self._holding: set = set()
        #: HTTP handler coroutines of admitted requests -> what they answer (labkit.service).
        self._serving: dict = {}
        #: The coroutine ``_step`` is running right now (None between steps).
        self._stepping: Any = None
        self._slow = slow
        self._cap_on = False                  # set at the first ctx.work or _admit
        self._busy_ms = 0.0                   # busy worker-ms in this stats window so far
        self._busy_t = self._win_t0 = 0.0
        self._handing = False                 # inside _free_worker's loop
        self._frees = 0                       # workers freed while it ran

    # -- what a handler may read -------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Workers busy now (at most the node's ``workers``)."""
        return self._busy

    @property
    def queued(self) -> int:
        """Requests and works waiting for a worker now (at most the node's ``queue_limit``)."""
        return len(self._queue)

    # -- request admission (HTTP serving) ------------------------------------------------------
    def _admit(self: "Context", start: Callable[[], None]) -> bool:
        """A request asks for a worker. If one is free it is marked busy and ``start()`` is
        called now; else, if fewer than ``queue_limit`` wait, ``start`` is queued (FIFO) and
        called when a worker is handed to it; either way True. Else ``shed`` is counted and
        False is returned: the caller answers 503. A dead node admits nothing (False).

        ``start()`` starts the request's handler; it must not raise (run the handler through
        the context, which turns its exceptions into a crash) and should add the handler's
        coroutine to ``ctx._holding``, so that ``ctx.work`` inside it takes no second worker.
        When the request is finished, discard the coroutine from ``_holding`` and call
        ``_release()`` exactly once."""
        if self.dead:
            return False
        if not self._cap_on:
            self._capacity_on()
        if self._busy < self._workers:
            self._busy_change(1)
            self._stats_soon()
            start()
            return True
        if len(self._queue) < self._queue_limit:
            self._queue.append(start)
            self._stats_soon()
            return True
        self.count("shed")
        return False

    def _release(self: "Context") -> None:
        """The admitted request is finished: its worker is free, and the next in the queue
        (a request's ``start()`` or a waiting ``ctx.work``) gets it now. A no-op on a dead node."""
        if self.dead:
            return
        if self._busy <= 0:
            raise RuntimeError(f"{self.id}: ctx._release() with no worker busy: each _admit that "
                               f"started or queued a request is released once, when it is finished")
        self._free_worker()

    # -- ctx.work ------------------------------------------------------------------------------
    def _await_work(self: "Context", coro: Any, ms: float, cause: Any) -> None:
        """``coro`` awaits ``ctx.work(ms)`` (called by ``_step``)."""
        if not self._cap_on:
            self._capacity_on()
        if coro in self._holding:            # an admitted request: its worker does the work
            self._host.call_at(self._host.now() + ms * self._slow / self._rate, self._wake, coro, cause)
        elif self._busy < self._workers:
            self._busy_change(1)
            self._stats_soon()
            self._begin_work(coro, ms, cause)
        elif len(self._queue) < self._queue_limit:
            self._queue.append(partial(self._begin_work, coro, ms, cause))
            self._stats_soon()
        else:
            err = Overloaded(f"{self.id}: ctx.work({ms:g}) refused -- all {self._workers} worker(s) are busy and "
                             f"{len(self._queue)} wait (queue_limit={self._queue_limit}), so this request is "
                             f"shed. Uncaught in a message handler, the message is answered with error code "
                             f"{SHED_CODE} (temporarily-unavailable). More capacity: raise the node class's "
                             f"workers or queue_limit")
            err._counted = True               # type: ignore[attr-defined]
            self.count("shed")
            self._step(coro, None, err, cause)

    def _begin_work(self: "Context", coro: Any, ms: float, cause: Any) -> None:
        """A worker is ``coro``'s now: it serves for ``ms`` (node clock) x the slow factor."""
        self._host.call_at(self._host.now() + ms * self._slow / self._rate, self._work_done, coro, cause)

    def _work_done(self: "Context", coro: Any, cause: Any) -> None:
        if self.dead:
            return
        self._free_worker()
        if not self._woken(f"ctx.work in {cause}"):
            self._step(coro, None, None, cause)

    def _free_worker(self: "Context") -> None:
        """A worker finished: hand it to the first in the queue, or mark it idle. A ``start()``
        run from here may finish its request at once and free a worker again: that is taken
        by this loop, not by a nested call, so a long queue never deepens the stack."""
        if self._handing:
            self._frees += 1
            return
        if not self._queue:                  # nobody waits (the common case): the worker is idle
            self._busy_change(-1)
            if not self._stats_pending:
                self._stats_soon()
            return
        self._handing = True
        try:
            frees = 1
            while frees:
                frees -= 1
                if self._queue and not self.dead:
                    self._queue.popleft()()    # the worker passes to it: still busy
                else:
                    self._busy_change(-1)
                frees += self._frees
                self._frees = 0
        finally:
            self._handing = False
        self._stats_soon()

    def _busy_change(self: "Context", delta: int) -> None:
        now = self._host.now()
        self._busy_ms += self._busy * (now - self._busy_t)
        self._busy_t = now
        self._busy += delta

    def _unhandled_overload(self: "Context", exc: BaseException, cause: Any) -> None:
        """``Overloaded`` left a handler: answer the message it handled with error 11 (if it
        handled one) and count the shed; the node lives on."""
        if not getattr(exc, "_counted", False):
            self.count("shed")
        origin = cause.origin if type(cause) is _Resumed else cause
        if isinstance(origin, Message) and not self.dead:
            try:
                self._send(origin.src, "error", origin.id,
                           {"code": SHED_CODE, "text": f"{self.id} is overloaded: every worker is busy and its "
                                                       f"queue is full, so the request was shed (not done). "
                                                       f"Retry later, with backoff, or elsewhere"})
            except GuardTripped:              # the storm guard stopped the node over this send
                pass

    # -- metrics and the slow factor -----------------------------------------------------------
    def _capacity_on(self: "Context") -> None:
        self._cap_on = True
        self._busy_t = self._win_t0 = self._host.now()
        self._counters.setdefault("shed", 0)

    def _capacity_stats(self: "Context") -> bool:
        """Put ``in_flight``, ``queued`` and this window's ``utilization`` in the counters;
        True while there is work to report (so the next stats are taken too)."""
        self._busy_change(0)
        now = self._busy_t
        span = now - self._win_t0
        util = self._busy_ms / (self._workers * span) if span > 0 else float(self._busy > 0)
        c = self._counters
        c["in_flight"] = self._busy
        c["queued"] = len(self._queue)
        c["utilization"] = round(min(util, 1.0), 4)
        self._busy_ms, self._win_t0 = 0.0, now
        return bool(self._busy or self._queue or util > 0)

    def _set_slow(self: "Context", factor: float) -> None:
        """Make ``ctx.work`` that starts from now on take ``factor`` x as long."""
        self._slow = factor
