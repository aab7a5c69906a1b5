"""Recording histories from a running cluster: logical clients and a workload generator.

Theory of operation. A ``Recorder`` owns one history and a set of logical clients (Jepsen's
workers). A ``Client`` has at most one operation open: ``invoke`` appends an ``invoke`` op,
sends the request with ``cluster.client_send(..., on_reply=...)`` from client id
``c<process>``, and arms a timeout with ``cluster.call_at``. Whichever comes first decides
the completion: the reply (classified by the ``KVProtocol`` into ok / fail / info) or the
timeout (``info``; the request is ``forget``-ed, so a late reply is only journaled). Both
callbacks run inside ``cluster.run_for``/``cluster.request`` -- in virtual time in the
simulator, on the notebook's thread in the processes runtime -- so the same code records
the same kind of history in both runtimes, with times on the journal's clock.

After an ``info`` the client's process may still be running, so the client continues under
a fresh process id (Jepsen does the same; here ids come from a counter, not ``p + n``).

Message shapes (Maelstrom's lin-kv, see ``KVProtocol``): requests
``{type: "read", key}``, ``{type: "write", key, value}``, ``{type: "cas", key, from, to}``,
``{type: "append", key, value}``; replies ``read_ok {value}``, ``write_ok``, ``cas_ok``,
``append_ok``, or an error ``{type: "error", code, text?, definite?}``.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Sequence

from .errors import ClusterClosed, NodeCrashed, RequestTimeout, UnknownNode
from . import argcheck
from .history import History, Op, OpPair, _thaw as _jsonable
from .message import encode_body

__all__ = ["Recorder", "Client", "KVProtocol", "ERROR_CODES", "workload"]

#: Maelstrom's error codes: code -> (name, definite). A *definite* error means the operation
#: certainly did not happen (-> ``fail``); an indefinite one that it may have (-> ``info``).
#: Codes not listed here are indefinite unless the reply says ``definite: true``.
ERROR_CODES: dict[int, tuple[str, bool]] = {
    0: ("timeout", False), 1: ("node-not-found", True), 10: ("not-supported", True),
    11: ("temporarily-unavailable", True), 12: ("malformed-request", True), 13: ("crash", False),
    14: ("abort", True), 20: ("key-does-not-exist", True), 21: ("key-already-exists", True),
    22: ("precondition-failed", True), 30: ("txn-conflict", True),
}

#: Functions whose ``ok`` reply carries the result in ``value``.
READS = frozenset({"read", "get"})


class KVProtocol:
    """How operations become request messages and replies become outcomes.

    Requests: ``{"type": f}`` plus ``key`` when the op has one, plus ``from``/``to`` for
    ``cas`` (whose op value is ``(from, to)``), else ``value`` when it is not ``None``.

    Replies (the node decides ok / fail / info):

    * ``<f>_ok`` -> ``ok``; for ``read``/``get`` the result is the reply's ``value``.
    * ``{"type": "error", "code": c}`` (or any reply whose body has ``"error"``; an int
      ``error`` is taken as the code) -> ``fail`` if definite, else ``info``. Definite comes
      from the body's boolean ``definite`` if present, else from ``ERROR_CODES``.
    * A read answered with code 20 (key does not exist) is an ``ok`` read of ``None``: it
      observed the empty key.
    * Anything else -> ``info`` (``error`` says which reply type was unexpected).

    Subclass and override ``request``/``outcome`` for other message shapes.
    """

    def request(self, f: str, key: Any, value: Any) -> tuple[str, dict]:
        """``(message type, body)`` for invoking ``f`` on ``key`` with ``value``."""
        body: dict[str, Any] = {}
        if key is not None:
            body["key"] = _jsonable(key)
        if f == "cas":
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise ValueError(f"a cas op's value is (from, to), got {value!r}")
            body["from"], body["to"] = _jsonable(value[0]), _jsonable(value[1])
        elif value is not None:
            body["value"] = _jsonable(value)
        return f, body

    def outcome(self, f: str, value: Any, reply_type: str, body: Mapping[str, Any]) -> tuple[str, Any, Any]:
        """``(type, value, error)`` of the completion for a reply ``reply_type``/``body`` to
        an invocation of ``f`` with ``value``."""
        if reply_type == "error" or "error" in body:
            code = body.get("code")
            if not isinstance(code, int) and isinstance(body.get("error"), int):
                code = body["error"]
            name, definite = ERROR_CODES.get(code, (None, False)) if isinstance(code, int) else (None, False)
            if isinstance(body.get("definite"), bool):
                definite = body["definite"]
            if f in READS and code == 20:
                return "ok", None, None
            text = body.get("text") or (body["error"] if isinstance(body.get("error"), str) else None)
            error = name or (f"error {code}" if code is not None else "error")
            if text:
                error = f"{error}: {text}"
            return ("fail" if definite else "info"), value, error
        if reply_type == f + "_ok":
            return "ok", (body.get("value") if f in READS else value), None
        return "info", value, f"unexpected reply {reply_type!r}"


class Recorder:
    """Records one history from ``cluster``: create clients with ``client()``, let the
    cluster run, read ``history``.

    ``timeout_ms``: how long a client waits for a reply before the op becomes ``info``.
    ``nodes``: where clients send by default (client ``i`` -> ``nodes[i % len(nodes)]``)."""

    def __init__(self, cluster: Any, *, timeout_ms: float = 1000.0, protocol: KVProtocol | None = None,
                 nodes: Sequence[str] | None = None) -> None:
        self.cluster = cluster
        self.timeout_ms = argcheck.ms(timeout_ms, "Recorder(timeout_ms)", positive=True)
        self.protocol = protocol or KVProtocol()
        if isinstance(nodes, str):
            nodes = [nodes]                     # one node, not its characters
        self.nodes = list(nodes) if nodes is not None else list(cluster.ids)
        unknown = [n for n in self.nodes if n not in cluster.ids]
        if unknown or not self.nodes:
            raise ValueError(f"nodes {unknown or self.nodes} are not nodes of this cluster {list(cluster.ids)}")
        self.clients: list[Client] = []
        self._ops: list[Op] = []
        self._next_process = 0

    def client(self, node: str | None = None) -> "Client":
        """A new logical client bound to ``node`` (default: round robin over ``nodes``)."""
        c = Client(self, len(self.clients), node or self.nodes[len(self.clients) % len(self.nodes)])
        self.clients.append(c)
        return c

    @property
    def history(self) -> History:
        """The history so far (open invocations have no completion yet)."""
        return History(self._ops)

    @property
    def pending(self) -> int:
        """How many clients have an operation open."""
        return sum(1 for c in self.clients if c.busy)

    def settle(self, step_s: float = 0.01) -> History:
        """Run the cluster until no operation is open (at most one timeout); return the history."""
        step_s = argcheck.seconds(step_s, "settle(step_s)", positive=True)
        waited = 0.0
        while self.pending and waited <= self.timeout_ms + 100.0:
            self.cluster.run_for(step_s)
            waited += step_s * 1000.0
        return self.history

    def _new_process(self) -> int:
        p = self._next_process
        self._next_process += 1
        return p

    def _record(self, process: int, type: str, f: str, value: Any, key: Any, error: Any = None,
                time: float | None = None) -> Op:
        op = Op(process, type, f, value, key, self.cluster.now if time is None else time, len(self._ops), error)
        self._ops.append(op)
        extra = {"error": _jsonable(error)} if error is not None else {}
        self.cluster.record_op(process, type, f, _jsonable(value), _jsonable(key), time=op.time, **extra)
        return op


class Client:
    """One logical client (a Jepsen worker): one operation open at a time.

    ``process`` is its current process id (journal client id ``c<process>``); it changes
    after an ``info`` completion. ``node`` is where its requests go by default."""

    def __init__(self, recorder: Recorder, worker: int, node: str) -> None:
        self.recorder = recorder
        self.worker = worker
        self.node = node
        self.process = recorder._new_process()
        self._open: tuple[Op, str, Any, Callable[[OpPair], None] | None] | None = None
        self._in_call = False

    @property
    def busy(self) -> bool:
        return self._open is not None or self._in_call

    def invoke(self, f: str, value: Any = None, *, key: Any = None, node: str | None = None,
               then: Callable[[OpPair], None] | None = None) -> Op:
        """Invoke ``f`` without waiting; returns the ``invoke`` op. The completion is recorded
        while the cluster runs, then ``then(pair)`` is called. Raises if an op is open."""
        rec, cluster, typ, body, node, inv = self._begin(f, value, key, node)
        try:
            mid = cluster.client_send(node, typ, as_client=f"c{self.process}", on_reply=self._on_reply, **body)
        except BaseException as e:
            self._complete(inv, "info", value, f"client error: {type(e).__name__}")
            raise
        handle = cluster.call_at(cluster.now + rec.timeout_ms, self._on_timeout, mid)
        self._open = (inv, mid, handle, then)
        return inv

    def _begin(self, f: str, value: Any, key: Any, node: str | None) -> tuple:
        """Check the client is free, build the request and record the ``invoke``."""
        if self.busy:
            raise RuntimeError(f"client {self.worker} (process {self.process}) already has an operation open")
        rec = self.recorder
        typ, body = rec.protocol.request(f, key, value)
        node = self._preflight(node, typ, body)
        inv = rec._record(self.process, "invoke", f, value, key)
        return rec, rec.cluster, typ, body, node, inv

    def call(self, f: str, value: Any = None, *, key: Any = None, node: str | None = None) -> OpPair:
        """Invoke ``f`` and wait for the outcome (the cluster runs meanwhile, other clients too)."""
        rec, cluster, typ, body, node, inv = self._begin(f, value, key, node)
        self._in_call = True
        try:
            reply = cluster.request(node, typ, timeout=rec.timeout_ms, as_client=f"c{self.process}", **body)
        except RequestTimeout:
            outcome: tuple[str, Any, Any] = ("info", value, "timeout")
        except NodeCrashed:
            outcome = ("info", value, "crash")
        except BaseException as e:   # e.g. the cell was interrupted: the request may be out there
            self._complete(inv, "info", value, f"client error: {type(e).__name__}")
            raise
        else:
            outcome = rec.protocol.outcome(f, value, reply.type, reply.body)
        finally:
            self._in_call = False
        return self._complete(inv, *outcome)

    def _preflight(self, node: str | None, typ: str, body: dict) -> str:
        """Refuse, before anything is recorded, a request that could not be sent."""
        node = node or self.node
        cluster = self.recorder.cluster
        if cluster.closed:
            raise ClusterClosed("this cluster is closed; start a new one with labkit.Cluster(...)")
        if node not in cluster.ids:
            raise UnknownNode(f"unknown node {node!r}; nodes are {list(cluster.ids)}")
        encode_body(f"c{self.process}", node, typ, body)   # raises MessageError if not JSON
        return node

    def _complete(self, inv: Op, type: str, value: Any, error: Any, time: float | None = None) -> OpPair:
        comp = self.recorder._record(inv.process, type, inv.f, value, inv.key, error, time)
        if type == "info":
            self.process = self.recorder._new_process()
        return OpPair(inv, comp)

    def _on_reply(self, ev: Any) -> None:
        if self._open is None or self._open[1] != ev.get("re"):
            return
        inv, _, handle, then = self._open
        self._open = None
        self.recorder.cluster.cancel(handle)
        body = ev.get("body") or {}
        pair = self._complete(inv, *self.recorder.protocol.outcome(inv.f, inv.value, ev.get("type"), body),
                              time=ev.t)
        if then is not None:
            then(pair)

    def _on_timeout(self, mid: str) -> None:
        if self._open is None or self._open[1] != mid:
            return
        inv, _, _, then = self._open
        self._open = None
        self.recorder.cluster.forget(mid)
        pair = self._complete(inv, "info", inv.value, "timeout")
        if then is not None:
            then(pair)


DEFAULT_MIX = {"read": 0.5, "write": 0.4, "cas": 0.1}
_FS = ("read", "get", "write", "put", "cas", "append")


class OpenLoop:
    """Open-loop arrivals, as Jepsen's and Maelstrom's generators make them: the offered rate,
    not the number of clients, sets the load. Arrivals come every U(0, ``gap_ms``) ms (mean
    ``gap_ms``/2) until cluster time ``end`` (ms); each starts an operation on a random idle
    client -- ``start(client, then)``, which calls ``then(pair)`` when it completes -- or, with
    every client busy, joins a backlog the next client to finish takes from (an arrival is never
    dropped). ``backlog`` is how many wait; set it to 0 to forget them."""

    def __init__(self, cluster: Any, clients: list, start: Callable[[Any, Callable[[Any], None]], Any],
                 rng: random.Random, gap_ms: float, end: float) -> None:
        self.cluster, self.clients, self._start, self.rng = cluster, clients, start, rng
        self.gap, self.end = gap_ms, end
        self.backlog = 0

    def begin(self) -> None:
        """Schedule the first arrival."""
        self.cluster.call_at(self.cluster.now + self.rng.uniform(0.0, self.gap), self._arrive)

    def _run(self, w: Any) -> None:
        self._start(w, lambda pair, w=w: self._done(w))

    def _done(self, w: Any) -> None:
        if self.backlog and self.cluster.now < self.end:
            self.backlog -= 1
            self._run(w)

    def _arrive(self) -> None:
        if self.cluster.now >= self.end:
            return
        idle = [w for w in self.clients if not w.busy]
        if idle:
            self._run(self.rng.choice(idle))
        else:
            self.backlog += 1
        self.cluster.call_at(self.cluster.now + self.rng.uniform(0.0, self.gap), self._arrive)


def workload(cluster: Any, *, clients: int = 5, rate: float = 10.0, duration: float = 5.0,
             mix: Mapping[str, float] | None = None, keys: int | Sequence[Any] | None = 3,
             values: int = 5, nodes: Sequence[str] | None = None, timeout_ms: float = 1000.0,
             seed: int | None = None, protocol: KVProtocol | None = None) -> History:
    """Run a random read/write/cas workload against ``cluster`` and return its history.

    ``clients`` logical clients, each bound to one of ``nodes`` (default: all, round robin),
    share one arrival stream of ``rate`` ops/s (gaps uniform in ``[0, 2/rate]`` s, Jepsen's
    *stagger*); an arrival goes to a random idle client, or waits for one to free up. Ops are
    drawn from ``mix`` (f -> weight; f in read/get, write/put, cas, append) on a random key
    (``keys``: a count -> keys ``0..keys-1``, a list of keys, or ``None`` for one unkeyed
    register) with values in ``0..values-1`` (appends use unique values). Invocations stop
    after ``duration`` s of cluster time; the cluster then runs until every op has completed
    or timed out (``timeout_ms``). Deterministic in the simulator for a given ``seed``
    (default: the cluster's seed). Faults (``cluster.nemesis``, ``cluster.call_at(t, ...)``)
    set up before the call act during it.

    The node must answer the messages described in ``KVProtocol``."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    bad = [f for f in mix if f not in _FS]
    if bad or not mix:
        raise ValueError(f"mix maps f in {_FS} to weights >= 0 (not all 0); got {mix!r}")
    for f, w in mix.items():
        mix[f] = argcheck.number(w, f"workload(mix[{f!r}])", lo=0.0)
    if sum(mix.values()) <= 0:
        raise ValueError(f"mix maps f in {_FS} to weights >= 0 (not all 0); got {mix!r}")
    clients = argcheck.whole(clients, "workload(clients)", lo=1, hi=10_000)
    rate = argcheck.number(rate, "workload(rate)", lo=0.0, hi=1e6, lo_open=True, unit="ops/s")
    duration = argcheck.seconds(duration, "workload(duration)")
    values = argcheck.whole(values, "workload(values)", lo=1)
    if isinstance(keys, int) and not isinstance(keys, bool):
        keys = argcheck.whole(keys, "workload(keys)", lo=1)
    key_list: list[Any] = [None] if keys is None else list(range(keys)) if isinstance(keys, int) else list(keys)
    if not key_list:
        raise ValueError("keys must name at least one key")
    rng = random.Random(f"{cluster.seed if seed is None else seed}/workload")
    rec = Recorder(cluster, timeout_ms=timeout_ms, protocol=protocol, nodes=nodes)
    workers = [rec.client() for _ in range(clients)]
    fs, weights = list(mix), list(mix.values())
    end = cluster.now + duration * 1000.0
    state = {"appended": 0}

    def draw() -> tuple[str, Any, Any]:
        f = rng.choices(fs, weights)[0]
        key = rng.choice(key_list)
        if f in READS:
            return f, None, key
        if f == "cas":
            return f, (rng.randrange(values), rng.randrange(values)), key
        if f == "append":
            state["appended"] += 1
            return f, state["appended"], key
        return f, rng.randrange(values), key

    def start(w: Client, then: Callable[[Any], None]) -> None:
        f, value, key = draw()
        w.invoke(f, value, key=key, then=then)

    OpenLoop(cluster, workers, start, rng, 2000.0 / rate, end).begin()
    cluster.run_for(duration)
    return rec.settle()
