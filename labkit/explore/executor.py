"""The executor: run one node handler on a copy of a search state, with labkit's own ``Context``.

Theory of operation. A search state is plain data (see ``state``): each node's pickled
``__dict__``, armed timers, storage, status and incarnation; the messages in flight; the
fault budgets left; an optional user history. To take a step -- deliver a message, fire a
timer, crash or restart a node -- the executor unpickles the one node involved, hands it a
real ``labkit.Context`` (a subclass, ``ExploreContext``) whose ``Host`` is the executor, runs
the handler exactly as the simulator would, and pickles the node back. The other nodes are
untouched bytes. ``ctx.send``/``reply``/``broadcast``, ``set_timer``/``cancel_timer``,
``storage``, ``note``/``log`` and the crash capture are labkit's code, not a copy of it.

What the host does differently from the simulator:

* time is frozen: ``ctx.now`` is 0.0 in every handler (reads are flagged in the result, since
  a protocol that depends on time is only partly explored);
* a timer is not a point in time but a name that "may fire" (all armed timers, or, in the
  ``"ordered"`` mode, those not forced to wait for a timer armed before them on that node
  whose ``(lo, hi)`` range ends before theirs begins -- DSLabs' rule);
* ``ctx.rng`` is seeded per (seed, node, incarnation, event), so one state and one event give
  one successor, and dedupe is sound (``set_timer(between=(lo, hi))`` returns the midpoint);
* message ids (``node.incarnation.seq``) are left out of the state unless a handler reads
  ``msg.id``/``msg.in_reply_to`` (tracked; the search then starts again with ids in);
* ``async`` handlers are refused: a coroutine suspended in ``await ctx.rpc`` cannot be copied.

A handler is a function of its node's slot (state bytes, timers, storage, status,
incarnation -- what the slot's digest covers) and the event: its randomness is seeded by
the event and the node, its time is frozen, and what it does goes through ``ctx``. The same
delivery or timer at the same node state therefore gives the same new slot and the same
messages, in whichever global state it happens; ``step`` runs each (slot digest, event)
pair once and reuses the outcome (``memo``); a crash (the down slot) and a restart
(``on_start`` from storage, in the next incarnation) likewise. In an interleaving search most transitions
repeat a pair seen before (another node moved meanwhile), so most steps run no handler and
pickle nothing. The assumption is the one deduplication already makes (equal digests,
equal futures); a handler that reads state kept outside its node (a class attribute it
changes, a module-level counter) breaks both.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from hashlib import blake2b
from typing import Any, Callable

from ..context import Context
from ..guard import DEFAULTS as _GUARDS
from ..message import loads_trusted
from ..runtime.base import is_client_id
from ..runtime.storage import Storage
from .context import (MIDPOINT, ExploreContext, HandlerCrashed, InterruptedInHandler, Refused,  # noqa: F401
                      TrackedMessage, _Flags, _last_frame)
from .encoding import Classes, EncodeRefused, _fast_dumps, decode, encode, why_unpicklable

_FIRE = Context._fire
_STATS = Context._emit_stats
VIEW_CACHE = 20_000
MEMO = 100_000          # (slot digest, event) outcomes kept; 0 turns the memo off


class Executor:
    """Runs steps on states for one configuration (see the module docstring)."""

    def __init__(self, factories: dict[str, Callable[[], Any]], *, seed: int, ids_in_state: bool,
                 faults: dict[str, Any], timers: str, history: tuple[Any, Callable] | None,
                 requests: list[tuple[str, str, str, dict]]) -> None:
        self.factories = factories
        self.ids = tuple(factories)
        self.index = {n: i for i, n in enumerate(self.ids)}
        self.seed = seed
        self.ids_in_state = ids_in_state
        self.faults = faults
        self.ordered = timers == "ordered"
        self.history = history
        self.requests = requests
        self.classes = Classes()
        self.flags = _Flags()
        self.node_set = frozenset(self.ids)
        self.out: list[tuple] = []
        self.crash: Any = None
        self.guard = _GUARDS["sim"]
        self.ctxs = {n: self._context(n) for n in self.ids}
        #: Node objects by their bytes, for the views invariants read (never for steps, which
        #: always unpickle a fresh copy): a node left unchanged by a step is not unpickled again.
        self.view_cache: dict[str, dict[bytes, Any]] = {n: {} for n in self.ids}   # per node: classes differ
        self._plain: set[type] = set()      # node classes checked for __slots__
        #: (node slot digest, event) -> (the node's new slot, the messages it sent): a handler
        #: is a function of its node's slot and the event (see ``step``), so it runs once per pair.
        self.memo: dict[tuple, tuple] = {}
        self.memo_max = MEMO
        self._budgets: dict[tuple, bytes] = {}

    # -- the Host protocol ---------------------------------------------------------------
    def now(self) -> float:
        return 0.0

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> Any:
        f = getattr(fn, "__func__", None)
        if f is _FIRE:
            return fn.__self__._lohi
        if f is _STATS:
            return None
        raise Refused(f"a handler scheduled {getattr(fn, '__qualname__', fn)} (ctx.sleep, ctx.work or an rpc "
                      f"timeout): labkit.explore runs plain handlers only; async nodes are refused")

    def cancel(self, handle: Any) -> None:
        pass                # timers are read back from ctx._timers after the handler

    def transmit(self, ctx: Context, msg_id: str, dst: str, type: str, re: str | None, body_json: str) -> None:
        self.out.append(self.message(ctx.id, dst, type, body_json, msg_id, re))

    def message(self, src: str, dst: str, type: str, body_json: str, mid: str, re: str | None) -> tuple:
        """A message in flight: (src, dst, type, body JSON, id, re, key bytes for the digest,
        its delivery event). (Messages are made once per handler run and shared by every state
        they are in flight in, so what each state would recompute is kept with them.)

        Without ids in the state a missing ``re`` is kept as "" (read back as None): ids are
        then labels only, and ``memo`` may reuse one, so two messages may agree up to ``re``,
        and the sorted network must never compare None with a str."""
        k = f"{src}\x1f{dst}\x1f{type}\x1f{body_json}"
        if self.ids_in_state:
            k = f"{k}\x1f{mid}\x1f{re}"
            return (src, dst, type, body_json, mid, re, k.encode(), ("d", src, dst, type, body_json, mid, re))
        if re is None:
            re = ""
        return (src, dst, type, body_json, mid, re, k.encode(), ("d", src, dst, type, body_json))

    def record(self, event: Any) -> None:
        pass

    def is_destination(self, name: str) -> bool:
        return name in self.node_set or is_client_id(name)

    def crashed(self, ctx: Context, event: Any) -> None:
        if str(event.get("error", "")).startswith("KeyboardInterrupt"):
            what = ctx._event if len(ctx._event) <= 100 else ctx._event[:97] + "..."
            raise InterruptedInHandler(f"{ctx.id} was handling {what}{_last_frame(event.get('traceback'))}")
        self.crash = event

    def transmit_http(self, *a: Any, **kw: Any) -> None:
        raise Refused("labkit.explore does not model HTTP (ctx.http); explore message-passing nodes")

    respond_http = cancel_http = transmit_http

    def handler_failed(self, ctx: Context, event: Any) -> None:
        self.crash = event

    # -- nodes -----------------------------------------------------------------------------
    def _context(self, node_id: str) -> ExploreContext:
        node = self.factories[node_id]()
        if getattr(type(node), "_labkit_routes", None) is not None:
            raise Refused(f"{type(node).__name__} is a labkit.Service (HTTP): labkit.explore explores "
                          f"message-passing nodes (on_message/on_timer) only")
        peers = tuple(n for n in self.ids if n != node_id)
        return ExploreContext(self, node_id, node, peers, incarnation=1, storage=Storage(node_id, {}),
                              guard=self.guard)

    def _encode_node(self, node_id: str, node: Any) -> tuple[bytes, bytes]:
        d = getattr(node, "__dict__", None)
        if d is None or type(node) not in self._plain:
            slots = [n for c in type(node).__mro__ for n in getattr(c, "__slots__", ()) if n not in ("__dict__",
                                                                                                  "__weakref__")]
            if d is None or slots:
                raise Refused(f"{type(node).__name__} uses __slots__ ({slots}): labkit.explore copies a node's state "
                              f"as its __dict__; drop __slots__ from the node class")
            self._plain.add(type(node))
        for v in d.values():
            if v.__class__ is ExploreContext:
                raise Refused(f"node {node_id} keeps its ctx on self ({type(node).__name__}): the context is "
                              f"handed to every handler anew; use the `ctx` argument, never `self.ctx = ctx`")
        try:
            return encode(d, self.classes, type(node))
        except Refused:
            raise
        except EncodeRefused:
            raise Refused(f"node {node_id}'s state cannot be copied: {why_unpicklable(d, self.classes)}. "
                          f"labkit.explore copies node state by pickling it; keep plain data (dicts, lists, "
                          f"sets, numbers, strings, instances of module-level classes) on self") from None

    def _decode_node(self, node_id: str, data: bytes) -> Any:
        cls = type(self.ctxs[node_id]._node)
        node = cls.__new__(cls)
        node.__dict__.update(decode(data, self.classes))
        return node

    def _prepare(self, node_id: str, node: Any, slot: tuple, event: str) -> ExploreContext:
        ctx = self.ctxs[node_id]
        ctx._node = node
        ctx.dead = False
        ctx.incarnation = slot[1]
        ctx._seq = slot[5]
        ctx._timers = {t[0]: (t[1], t[2]) for t in slot[3]}
        ctx.storage = Storage(node_id, dict(slot[4]))
        ctx._stats_pending = False
        ctx._counters, ctx._status = {}, {}      # ctx.count/report: journal side effects, not state
        ctx._rng_obj = None
        ctx._event = event
        ctx._hev = ctx._wev = ctx._wwk = 0
        self.out = []
        self.crash = None
        return ctx

    def _finish(self, node_id: str, ctx: ExploreContext) -> tuple:
        if self.crash is not None:
            raise HandlerCrashed(self.crash)
        data, canon = self._encode_node(node_id, ctx._node)
        cache = self.view_cache[node_id]
        if len(cache) >= VIEW_CACHE:
            cache.clear()
        cache[data] = ctx._node            # for invariants: the object these bytes were made from
        return self.slot(True, ctx.incarnation, data, tuple([(n, h[0], h[1]) for n, h in ctx._timers.items()]),
                         tuple(ctx.storage._data.items()), ctx._seq, canon)

    def slot(self, up: bool, inc: int, data: bytes | None, timers: tuple, store: tuple, seq: int,
             canon: bytes | None) -> tuple:
        """A node in a state: (up, incarnation, pickled __dict__, timers, storage items, message
        seq, digest of the parts that make up the state)."""
        parts = (up, inc, canon, timers, store, seq) if self.ids_in_state else (up, inc, canon, timers, store)
        return (up, inc, data, timers, store, seq, blake2b(_fast_dumps(parts), digest_size=16).digest())

    def _start(self, i: int, inc: int, store: tuple) -> tuple:
        node_id = self.ids[i]
        node = self.factories[node_id]()
        ctx = self._prepare(node_id, node, (True, inc, None, (), store, 0, None), "start")
        ctx._start()
        return self._finish(node_id, ctx)

    # -- states ----------------------------------------------------------------------------
    def initial(self) -> tuple:
        """The state after every node's ``on_start`` (in id order) and the client requests."""
        slots, net = [], []
        for i in range(len(self.ids)):
            slots.append(self._start(i, 1, ()))
            net.extend(self.out)
        for k, (client, node, type, body) in enumerate(self.requests, 1):
            from ..message import encode_body
            net.append(self.message(client, node, type, encode_body(client, node, type, body), f"{client}.1.{k}", None))
        f = self.faults
        hist = encode(self.history[0], self.classes) if self.history else None
        return (tuple(slots), self._sort(net), (f["crash"], f["drop"], f["duplicate"]), hist)

    def _sort(self, net: list) -> tuple:
        net.sort()
        return tuple(net)

    def _add(self, net: tuple, new: list) -> tuple:
        """``net`` (sorted) with the messages ``new`` put in their places."""
        if not new:
            return net
        out = list(net)
        for m in new:
            insort(out, m)
        return tuple(out)

    def key(self, m: tuple) -> tuple:
        return m[:6] if self.ids_in_state else m[:4]

    def digest(self, s: tuple) -> bytes:
        """The state's 16-byte digest: canonical, the same in every run and PYTHONHASHSEED."""
        slots, net, budget, hist = s
        parts = [sl[6] for sl in slots]
        parts.append(b"\x1e".join([m[6] for m in net]))
        b = self._budgets.get(budget)
        if b is None:
            b = self._budgets[budget] = b"%d/%d/%d" % budget
        parts.append(b)
        if hist is not None:
            parts.append(hist[1])
        return blake2b(b"".join(parts), digest_size=16).digest()

    def enabled(self, s: tuple) -> list[tuple]:
        """Every event that may happen next in ``s``, in a fixed order."""
        slots, net, (crash, drop, dup), _ = s
        out: list[tuple] = []
        last = None
        for m in net:
            ev = m[7]
            if ev == last:          # the network is sorted: copies of one message are neighbours
                continue
            last = ev
            out.append(ev)
            if drop:
                out.append(("x",) + ev[1:])
            if dup:
                out.append(("2",) + ev[1:])
        restart = self.faults["restart"]
        for i, sl in enumerate(slots):
            n = self.ids[i]
            if sl[0]:
                timers = sl[3]
                for j, (name, lo, hi) in enumerate(timers):
                    if self.ordered and any(t[2] <= lo and t[0] != name for t in timers[:j]):
                        continue
                    out.append(("t", n, name))
                if crash:
                    out.append(("c", n) if restart else ("c", n, "lost"))
            elif restart:
                out.append(("r", n))
        return out

    def _find(self, net: tuple, k: tuple) -> int:
        i = bisect_left(net, k)           # net is sorted, and a key sorts before what it begins
        if i < len(net) and net[i][:len(k)] == k:
            return i
        raise KeyError(k)

    def step(self, s: tuple, ev: tuple) -> tuple:
        """The successor of ``s`` by event ``ev``. Raises HandlerCrashed or Refused."""
        slots, net, budget, hist = s
        kind = ev[0]
        if kind == "d":
            j = self._find(net, ev[1:])
            m = net[j]
            rest = net[:j] + net[j + 1:]
            dst = m[1]
            i = self.index.get(dst)
            if i is None or not slots[i][0]:        # to a client, or to a node that is down: consumed
                return (slots, rest, budget, self._hist(hist, ev, m))
            sl = slots[i]
            key = (sl[6], ev)
            hit = self.memo.get(key)
            if hit is None:
                node = self._decode_node(dst, sl[2])
                ctx = self._prepare(dst, node, sl, f"deliver {m[0]}>{dst} {m[2]} {m[3]}")
                ctx._deliver(TrackedMessage(m[0], dst, m[2], m[4], loads_trusted(m[3]), m[5] or None, self.flags))
                hit = self._remember(key, self._finish(dst, ctx))
            return (slots[:i] + (hit[0],) + slots[i + 1:], self._add(rest, hit[1]), budget,
                    self._hist(hist, ev, m))
        if kind == "t":
            i = self.index[ev[1]]
            sl = slots[i]
            key = (sl[6], ev)
            hit = self.memo.get(key)
            if hit is None:
                node = self._decode_node(ev[1], sl[2])
                ctx = self._prepare(ev[1], node, sl, f"timer {ev[2]}")
                ctx._fire(ev[2])
                hit = self._remember(key, self._finish(ev[1], ctx))
            return (slots[:i] + (hit[0],) + slots[i + 1:], self._add(net, hit[1]),
                    budget, self._hist(hist, ev, None))
        if kind == "c":
            i = self.index[ev[1]]
            sl = slots[i]
            key = (sl[6], ev)
            hit = self.memo.get(key)
            if hit is None:
                self.out = []
                hit = self._remember(key, self.slot(False, sl[1], None, (), sl[4], 0, b""))
            down = hit[0]
            if len(ev) > 2:          # no restarts in this search: what is on its way to it is lost
                net = tuple(m for m in net if m[1] != ev[1])
            return (slots[:i] + (down,) + slots[i + 1:], net, (budget[0] - 1,) + budget[1:],
                    self._hist(hist, ev, None))
        if kind == "r":
            i = self.index[ev[1]]
            sl = slots[i]
            key = (sl[6], ev)
            hit = self.memo.get(key)
            if hit is None:
                hit = self._remember(key, self._start(i, sl[1] + 1, sl[4]))
            return (slots[:i] + (hit[0],) + slots[i + 1:], self._add(net, hit[1]),
                    budget, self._hist(hist, ev, None))
        j = self._find(net, ev[1:])
        m = net[j]
        if kind == "x":
            left = budget[1] - 1 if budget[1] > 0 else budget[1]     # -1: unlimited
            return (slots, net[:j] + net[j + 1:], (budget[0], left, budget[2]), self._hist(hist, ev, m))
        if kind == "2":
            return (slots, self._add(net, [m]), (budget[0], budget[1], budget[2] - 1),
                    self._hist(hist, ev, m))
        raise ValueError(f"unknown event {ev!r}")

    def _remember(self, key: tuple, new: tuple) -> tuple:
        hit = (new, tuple(self.out))
        memo = self.memo
        if len(memo) >= self.memo_max:
            memo.clear()
            if self.memo_max <= 0:        # memo off (MEMO = 0: benchmarks/explore.py's baseline)
                return hit
        memo[key] = hit
        return hit

    def _hist(self, hist: bytes | None, ev: tuple, m: tuple | None) -> bytes | None:
        if self.history is None:
            return hist
        from .state import Step
        h = decode(hist[0])            # type: ignore[index]
        h = self.history[1](h, Step.of(ev, m))
        try:
            return encode(h, self.classes)
        except EncodeRefused as e:
            raise Refused(f"the history reducer returned a value that cannot be pickled: {e}") from None

    def node(self, s: tuple, node_id: str) -> Any:
        """The node object of ``node_id`` in ``s`` for a view (shared: not to be changed)."""
        return self.load(node_id, s[0][self.index[node_id]][2])

    def load(self, node_id: str, data: bytes | None) -> Any:
        """The node object of these bytes for a view (shared: not to be changed); None for None."""
        if data is None:
            return None
        cache = self.view_cache[node_id]
        n = cache.get(data)
        if n is None:
            n = cache[data] = self._decode_node(node_id, data)
        return n
