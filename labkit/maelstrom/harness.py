"""``labkit.maelstrom.test``: run one of Maelstrom's workloads against your nodes and check it.

Theory of operation (Maelstrom's ``maelstrom.core/maelstrom-test``, on labkit machinery):

1. A labkit ``Cluster`` of ``node_count`` nodes ``n0 .. n{N-1}`` running your ``labkit.Node``
   class (simulator or processes) or ``labkit.Program`` (processes), plus the Maelstrom
   services the workload uses (``labkit.maelstrom.services``) under their Maelstrom names.
2. Every link between cluster members gets Maelstrom's ``--latency`` (ms, ``latency_dist``
   ``constant`` by default, or ``uniform`` in [0, 2 * latency] or ``exponential`` with that
   mean); client links have none.
3. The workload's ``setup`` messages (broadcast's ``topology``) are sent and answered.
4. ``concurrency`` logical clients (Jepsen workers; default one per node), client ``i`` bound
   to node ``n{i mod N}`` as in Maelstrom, share one arrival stream of ``rate`` ops/s (gaps
   uniform in [0, 2/rate] s: Jepsen's ``stagger``) for ``time_limit`` s; an arrival goes to a
   random idle client, or waits for one. The nemesis acts meanwhile (``labkit.maelstrom.nemesis``).
5. Then the nemesis stops and undoes its fault (heal), the cluster gets ``quiet`` s
   (Maelstrom: 10 s) to recover, and the workload's final reads run, one per node.
6. Checks: the workload's, availability, latency quantiles, ``net`` msgs-per-op, stats.

Outcomes (Maelstrom's client rules): a reply of the expected type is ``ok``; an ``error``
reply is ``fail`` when its code is definite, ``info`` otherwise (``labkit.maelstrom.protocol.ERRORS``,
Maelstrom's table; codes >= 1000 are indefinite); a timeout (``timeout`` ms, default 5000)
is ``info``, or ``fail`` for the workload's idempotent fs (Maelstrom's ``with-errors``: none
for echo, unique-ids, broadcast, g-set and the counters; reads for lin-kv); a malformed reply is
``info``.
Histories and the journal are recorded with labkit's ``Recorder`` on the cluster's clock.
"""
from __future__ import annotations

import os
import random
from typing import Any, Mapping

from .. import argcheck
from ..checkers.history_checks import latency as latency_check
from ..checkers.journal_checks import availability as availability_check
from ..checkers.verdict import Verdict
from ..errors import ArgumentError, LabkitError, RequestTimeout, NodeCrashed
from ..history import History, _thaw
from ..node import Node
from ..recorder import Client, KVProtocol, OpenLoop, Recorder
from ..runtime.base import is_client_id
from . import workloads as _workloads
from .protocol import error_code
from .nemesis import NEMESES, MaelstromNemesis, parse_nemesis
from .result import Result, combine_valid
from .workloads.base import CheckContext, Invocation, Workload

__all__ = ["test", "Result", "NEMESES", "SetupError", "SERVICE_NAMES", "LATENCY_DISTS"]

SERVICE_NAMES = ("lin-kv", "seq-kv", "lww-kv", "lin-tso")
LATENCY_DISTS = ("constant", "uniform", "exponential")


class SetupError(LabkitError):
    """A node did not start (its program exited or never answered ``init``), or did not answer
    the workload's setup message (e.g. ``topology``) properly: the test was not run."""


def _service_classes(names: tuple[str, ...]) -> dict[str, Any]:
    if not names:
        return {}
    from .services import SERVICES
    return {n: SERVICES[n] for n in names}


class _WorkloadProtocol(KVProtocol):
    """Adapts a ``Workload``'s wire format to the ``Recorder``'s protocol interface."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    def request(self, f: str, key: Any, value: Any) -> tuple[str, dict]:
        body = dict(self.workload.request(Invocation(f, _thaw(value), _thaw(key))))
        typ = body.pop("type", None)
        if not isinstance(typ, str) or not typ:
            raise ValueError(f"workload {self.workload.name!r} made a request body without a 'type': {body!r}")
        return typ, body

    def outcome(self, f: str, value: Any, reply_type: str, body: Mapping[str, Any]) -> tuple[str, Any, Any]:
        return _classify(self.workload, Invocation(f, _thaw(value)), reply_type, body)


def _classify(wl: Workload, inv: Invocation, reply_type: Any, body: Mapping[str, Any]) -> tuple[str, Any, Any]:
    if reply_type == "error":
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            e = error_code(code)
            name, definite = e.name, e.definite
        else:
            name, definite = f"error {code!r}", False
        text = body.get("text")
        return ("fail" if definite else "info"), inv.value, f"{name}: {text}" if text else name
    try:
        return "ok", wl.completion(inv, {"type": reply_type, **body}), None
    except (ValueError, KeyError, TypeError) as e:
        return "info", inv.value, f"malformed reply {reply_type!r}: {e}"


class _Client(Client):
    """A Recorder client that keeps the ``Invocation`` (key included) for the completion and
    makes timeouts of idempotent fs ``fail``."""

    def __init__(self, recorder: Recorder, worker: int, node: str, workload: Workload) -> None:
        super().__init__(recorder, worker, node)
        self.workload = workload
        self.inv: Invocation | None = None
        recorder.clients.append(self)

    def start(self, inv: Invocation, then: Any) -> None:
        self.inv = inv
        self.invoke(inv.f, inv.value, key=inv.key, then=then)

    def _on_reply(self, ev: Any) -> None:
        if self._open is None or self._open[1] != ev.get("re"):
            return
        op, _, handle, then = self._open
        self._open = None
        self.recorder.cluster.cancel(handle)
        inv = self.inv or Invocation(op.f, _thaw(op.value), _thaw(op.key))
        pair = self._complete(op, *_classify(self.workload, inv, ev.get("type"), ev.get("body") or {}), time=ev.t)
        if then is not None:
            then(pair)

    def _on_timeout(self, mid: str) -> None:
        if self._open is None or self._open[1] != mid:
            return
        op, _, _, then = self._open
        self._open = None
        self.recorder.cluster.forget(mid)
        typ = "fail" if op.f in self.workload.idempotent else "info"
        pair = self._complete(op, typ, op.value, "timeout")
        if then is not None:
            then(pair)


def _baseline_filter(events: list, baseline: dict | None) -> list:
    """The journal without the test's own latency settings (they are the network, not a fault)."""
    if not baseline:
        return events
    want = {"src": "*", "dst": "*", **baseline}
    return [e for e in events if not (e.kind == "link" and dict(e.data) == want)]


def _net_stats(events: list, history: History) -> dict:
    """Maelstrom's ``:net`` stats: messages sent, and per client operation invoked."""
    ops = sum(1 for op in history if op.is_client and op.type == "invoke")
    all_sends = [e for e in events if e.kind == "send"]
    servers = [e for e in all_sends if not is_client_id(e.node) and not is_client_id(e.dst or "")]
    out = {}
    for label, sends in (("all", all_sends), ("servers", servers)):
        out[label] = {"msg_count": len(sends), "msgs_per_op": (len(sends) / ops) if ops else None}
    out["ops"] = ops
    return out


def _stats_check(history: History) -> Verdict:
    """Jepsen's stats checker: counts by f and type; invalid if some f never succeeded."""
    pairs = [p for p in history.pairs() if p.invoke.is_client]
    by_f: dict[str, dict[str, int]] = {}
    for p in pairs:
        d = by_f.setdefault(p.f, {"count": 0, "ok": 0, "fail": 0, "info": 0})
        d["count"] += 1
        d[p.type] += 1
    details = {"count": len(pairs), "ok": sum(d["ok"] for d in by_f.values()),
               "fail": sum(d["fail"] for d in by_f.values()), "info": sum(d["info"] for d in by_f.values()),
               "by_f": by_f}
    if not pairs:
        return Verdict(None, "stats", "no client operations", details)
    never = sorted(f for f, d in by_f.items() if d["ok"] == 0)
    if never:
        return Verdict(False, "stats", f"no ok {', '.join(never)} operations", details,
                       tuple(f"{f}: {by_f[f]}" for f in never))
    return Verdict(True, "stats", f"{details['ok']} ok, {details['fail']} fail, {details['info']} info "
                   f"of {len(pairs)} ops", details)


def _as_node(x: Any, where: str) -> Any:
    """A program's path or command list (Maelstrom's ``--bin``) becomes a ``labkit.Program``;
    a Node class or instance, or a Program, is kept; anything else is an ``ArgumentError``."""
    from .program import Program
    if isinstance(x, (str, os.PathLike)) or (isinstance(x, (list, tuple)) and x
                                             and all(isinstance(a, (str, os.PathLike)) for a in x)):
        return Program(x)
    if isinstance(x, type) and issubclass(x, Program):
        raise ArgumentError(f"{where}: labkit.Program is the class; give a program, as labkit.Program('./prog') "
                            f"or just its path or command list")
    if (isinstance(x, type) and issubclass(x, Node)) or isinstance(x, Node):
        return x
    raise ArgumentError(f"{where}: give a labkit.Node class or instance, a labkit.Program, a program's path "
                        f"(like './maelstrom-echo') or its command list (like ['node', 'echo.js']), got {x!r}")


def _per_node(node: Any, node_count: int | None) -> dict[str, Any]:
    """``{"n0": node, ...}``: ``node`` on ``node_count`` nodes, or a mapping checked to name
    ``n0 .. n{N-1}`` (``ArgumentError`` otherwise, or if ``node_count`` disagrees). Paths and
    command lists become ``labkit.Program``s."""
    if isinstance(node, Mapping):
        node = {k: _as_node(v, f"node {k!r}") for k, v in node.items()}
        ids = list(node)
        want = [f"n{i}" for i in range(len(ids))]
        if not ids or sorted(ids) != sorted(want):
            raise ArgumentError(f"a mapping of nodes names Maelstrom's nodes n0 .. n{{N-1}}, e.g. "
                                f"{{'n0': ..., 'n1': ...}}; got {ids}")
        if node_count is not None and node_count != len(ids):
            raise ArgumentError(f"node_count={node_count!r} but the mapping names {len(ids)} nodes; leave node_count out")
        argcheck.whole(len(ids), "node_count (the mapping's size)", lo=1, hi=60)
        return {n: node[n] for n in want}
    n = argcheck.whole(5 if node_count is None else node_count, "node_count", lo=1, hi=60)
    node = _as_node(node, "test(node)")
    return {f"n{i}": node for i in range(n)}


def _default_runtime(x: Any) -> str:
    """"sim" for labkit Node classes and instances, "processes" for a Program (the simulator
    cannot run an external program) and anything else."""
    from .program import Program
    if isinstance(x, Program) or (isinstance(x, type) and issubclass(x, Program)):
        return "processes"
    if (isinstance(x, type) and issubclass(x, Node)) or isinstance(x, Node):
        return "sim"
    return "processes"


def test(node: Any, workload: str | Workload = "broadcast", *, node_count: int | None = None, time_limit: float = 20.0,
         rate: float = 100.0, latency: float = 100.0, latency_dist: str = "constant",
         nemesis: Any = (), nemesis_interval: float = 10.0, concurrency: int | None = None,
         availability: float | str | None = None, timeout: float = 5000.0, quiet: float = 10.0,
         seed: int | None = None, runtime: str | None = None, services: Any = None,
         **workload_opts: Any) -> Result:
    """Run Maelstrom's ``workload`` against ``node`` and check it; returns a ``Result``.

    ``node``: a ``labkit.Node`` subclass (or instance), a ``labkit.Program``, or a program's
    path or command list (made a ``labkit.Program``, like Maelstrom's ``--bin``), run on
    ``node_count`` nodes (default 5); or a mapping ``{"n0": ..., "n1": ...}`` naming each node
    (``n0 .. n{N-1}``; a cluster mixing languages or versions), whose size is the node count. ``workload``:
    a name from ``labkit.maelstrom.workloads.names()`` (options in ``workload_opts``, e.g.
    ``topology="tree4"``) or a ``Workload``. Units: ``time_limit``, ``nemesis_interval`` and
    ``quiet`` in seconds; ``rate`` ops/s over all clients; ``latency`` and ``timeout`` in ms.
    ``nemesis``: fault names (``NEMESES``) as a list or a comma-separated string.
    ``availability``: ``None`` (measure only), ``"total"`` (every op must be ok: Maelstrom's
    ``--availability total``) or a fraction in [0, 1]. ``concurrency``: clients (default
    ``node_count``). ``runtime``: ``"sim"`` (default for Node classes) or ``"processes"``
    (default otherwise). ``services``: extra service names to run beside the workload's.
    ``seed``: replays the run in the simulator (default: random, shown in the result).

    Raises ``ArgumentError``/``ValueError`` naming a bad option (also ``skew``/``slow`` on a
    cluster of programs only: they act through a labkit node's ``ctx``), ``SetupError`` if a node
    did not start (a program that exits or never answers ``init``) or does not answer a
    setup message. Source: Maelstrom ``src/maelstrom/core.clj``."""
    wl = workload if isinstance(workload, Workload) else _workloads.get(workload, **workload_opts)
    if isinstance(workload, Workload) and workload_opts:
        raise ArgumentError(f"workload options {sorted(workload_opts)} go to the Workload's constructor, "
                            f"not beside a Workload instance")
    per_node = _per_node(node, node_count)
    node_count = len(per_node)
    time_limit = argcheck.seconds(time_limit, "time_limit", positive=True)   # Jepsen's --time-limit: pos?
    rate = argcheck.number(rate, "rate", lo=0.0, hi=1e5, lo_open=True, unit="ops/s")
    latency = argcheck.ms(latency, "latency")
    if latency_dist not in LATENCY_DISTS:
        raise ArgumentError(f"latency_dist must be one of {LATENCY_DISTS}, got {latency_dist!r}")
    faults = parse_nemesis(nemesis)
    nemesis_interval = argcheck.seconds(nemesis_interval, "nemesis_interval", positive=True)
    concurrency = node_count if concurrency is None else argcheck.whole(concurrency, "concurrency", lo=1, hi=10_000)
    if availability == "total":
        min_ok: float | None = 1.0
    elif availability is None:
        min_ok = None
    else:
        min_ok = argcheck.number(availability, "availability (None, 'total' or a fraction)", lo=0.0, hi=1.0)
    timeout = argcheck.ms(timeout, "timeout", positive=True)
    quiet = argcheck.seconds(quiet, "quiet")
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    seed = argcheck.whole(seed, "seed")
    if runtime is None:
        runtime = "processes" if any(_default_runtime(x) == "processes" for x in per_node.values()) else "sim"
    ctx_only = [f for f in faults if f in ("skew", "slow")]
    if ctx_only and all(getattr(x, "_labkit_program", False) for x in per_node.values()):
        raise ArgumentError(f"nemesis {ctx_only}: skew and slow act through a labkit.Node's ctx (its clock, "
                            f"ctx.work); a labkit.Program reads the operating system's clock, so they would change "
                            f"nothing and the run would look tested when it was not. Leave them out for programs")
    if runtime == "sim" and any(getattr(x, "_labkit_program", False) for x in per_node.values()):
        raise ArgumentError("test(runtime='sim'): a labkit.Program runs a real executable, which the simulator "
                            "cannot run in virtual time; leave runtime out (or give 'processes') for programs")
    extra = () if services is None else ((services,) if isinstance(services, str) else tuple(services))
    bad = [s for s in extra if s not in SERVICE_NAMES]
    if bad:
        raise ArgumentError(f"unknown service(s) {bad}; Maelstrom's services are {', '.join(SERVICE_NAMES)}")
    svc_names = tuple(dict.fromkeys(tuple(wl.services) + extra))
    node_ids = list(per_node)
    members: dict[str, Any] = dict(per_node)
    members.update(_service_classes(svc_names))
    opts = {"workload": wl.name, "node_count": node_count, "time_limit": time_limit, "rate": rate,
            "latency": latency, "latency_dist": latency_dist, "nemesis": list(faults),
            "nemesis_interval": nemesis_interval, "concurrency": concurrency, "availability": availability,
            "timeout": timeout, "quiet": quiet, "seed": seed, "runtime": runtime, "services": list(svc_names),
            **wl.opts}

    from ..cluster import Cluster
    cluster = Cluster(members, runtime=runtime, seed=seed)
    try:
        return _run(cluster, wl, node_ids, list(svc_names), faults, opts, min_ok)
    finally:
        cluster.close()


def _run(cluster: Any, wl: Workload, node_ids: list[str], svc_names: list[str], faults: tuple[str, ...],
         opts: dict, min_ok: float | None) -> Result:
    baseline = None
    if opts["latency"] > 0:
        baseline = {"delay": opts["latency"], "distribution": opts["latency_dist"]}
        if opts["latency_dist"] == "uniform":
            baseline["jitter"] = opts["latency"]
        cluster.set_link("*", "*", **baseline)
    _check_started(cluster, node_ids)
    for dest, body in wl.setup(node_ids):
        body = dict(body)
        typ = body.pop("type")
        try:
            reply = cluster.request(dest, typ, timeout=opts["timeout"], as_client="client", **body)
        except (RequestTimeout, NodeCrashed) as e:
            raise SetupError(f"{dest} did not answer the {typ!r} setup message within {opts['timeout']:g} ms "
                             f"({type(e).__name__}); a {wl.name} node must reply {typ}_ok") from None
        if reply.type != typ + "_ok":
            raise SetupError(f"{dest} answered the {typ!r} setup message with {reply.type!r} {reply.body!r}; "
                             f"a {wl.name} node must reply {typ}_ok")
    rng = random.Random(f"{opts['seed']}/maelstrom-generator")
    rec = Recorder(cluster, timeout_ms=opts["timeout"], protocol=_WorkloadProtocol(wl), nodes=node_ids)
    workers = [_Client(rec, i, node_ids[i % len(node_ids)], wl) for i in range(opts["concurrency"])]
    end = cluster.now + opts["time_limit"] * 1000.0
    def start(w: _Client, then: Any) -> None:
        inv = wl.invoke(rng, w.process)
        if inv is not None:
            w.start(inv, then=then)

    arrivals = OpenLoop(cluster, workers, start, rng, 2000.0 / opts["rate"], end)
    nem = MaelstromNemesis(cluster, faults, node_ids, svc_names, opts["nemesis_interval"], opts["seed"], baseline)
    arrivals.begin()
    nem.start()
    cluster.run_for(opts["time_limit"])
    nem.stop()
    arrivals.backlog = 0
    cluster.run_for(opts["quiet"])
    rec.settle()
    finals = wl.final(node_ids)
    final_time = cluster.now
    if finals:
        by_node: dict[str, list[Invocation]] = {}
        for i, inv in enumerate(finals):
            by_node.setdefault(node_ids[i % len(node_ids)], []).append(inv)
        for n, invs in by_node.items():
            _final_chain(_Client(rec, len(rec.clients), n, wl), list(invs))
        rec.settle()
        while rec.pending:   # chains of several final ops per node
            rec.settle()
    history = rec.history
    events = list(cluster.journal)
    opts = {**opts, "final_time_ms": final_time}
    ctx = CheckContext(cluster.journal, list(node_ids), opts)
    wchecks = wl.check(history, ctx)
    checks: dict[str, Verdict] = {"workload": Verdict.combine(wl.name, wchecks.values(),
                                                             "; ".join(f"{k}: {v.summary}" for k, v in wchecks.items())
                                                             or "no checks")}
    checks.update(wchecks)
    checks["availability"] = availability_check(history, _baseline_filter(events, baseline), min_ok=min_ok)
    checks["latency"] = latency_check(history)
    net = _net_stats(events, history)
    mpo = net["servers"]["msgs_per_op"]
    checks["net"] = Verdict(True if mpo is not None else None, "net",
                            f"{net['servers']['msg_count']} messages between nodes and services (clients' not "
                            f"counted), " + (f"{mpo:.2f} per op" if mpo is not None else "no ops"), net)
    checks["stats"] = _stats_check(history)
    valid = combine_valid(checks.values())
    st = checks["stats"].details
    stats = {"ops": st["count"], "ok": st["ok"], "fail": st["fail"], "info": st["info"], "by_f": st["by_f"],
             "net": net, "duration_ms": cluster.now,
             # what Maelstrom would stop the test for and labkit rides out: shown in the summary
             "crashes": [(e.t, e.node, str(e.get("error") or "").removeprefix("ProgramError: "))
                         for e in events if e.kind == "crash"],
             "malformed_lines": {n: sum(1 for e in events if e.kind == "malformed" and e.node == n)
                                 for n in dict.fromkeys(e.node for e in events if e.kind == "malformed")}}
    return Result(wl.name, valid, checks, history, cluster.journal, stats, opts, nem.log)


def _check_started(cluster: Any, node_ids: list[str]) -> None:
    """``SetupError`` naming each node that crashed while starting (e.g. a program that
    exited or never answered ``init``): a test of a cluster that never came up judges nothing."""
    down = [n for n, st in cluster.status().items() if n in node_ids and st.state != "up"]
    if not down:
        return
    why = {e.node: str(e.get("error") or "").removeprefix("ProgramError: ") for e in cluster.journal
           if e.kind == "crash" and e.node in down}
    status = cluster.status()
    said = [why.get(n) or f"it is {status[n].state}" for n in down]
    lines = "; ".join(w if w.startswith(f"{n}:") else f"{n}: {w}" for n, w in zip(down, said))
    raise SetupError(f"{len(down)} of {len(node_ids)} nodes did not start, so the test was not run -- {lines}. "
                     f"Fix the program (labkit's crash report for the node shows the end of its stderr) "
                     f"and run the test again")


def _final_chain(client: _Client, invs: list[Invocation]) -> None:
    """Invoke ``invs`` one after another on ``client``."""
    if not invs:
        return
    inv = invs.pop(0)
    client.start(inv, then=lambda pair: _final_chain(client, invs))
