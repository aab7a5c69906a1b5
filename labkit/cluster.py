"""``labkit.Cluster``: start nodes, talk to them, break them, read what happened.

One front end, two runtimes. ``Cluster(MyNode, n=3)`` starts three real OS processes
talking over ZeroMQ; ``runtime="sim"`` runs the same class in the deterministic simulator.
Every call here means the same in both: fault calls change the one ``NetworkModel`` (or a
node's state) and write a journal event; ``run_for`` lets the cluster run (wall-clock
seconds, or virtual seconds in the simulator); ``request`` makes the notebook a client.
"""
from __future__ import annotations

import copy
import random
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import argcheck
from ._interrupts import held_interrupts
from .capacity import MAX_SLOW, MIN_SLOW, check_capacity
from .errors import ArgumentError, ClusterClosed, LabkitError, MessageError, UnknownNode
from .guard import resolve as resolve_guard
from .journal import Event, Journal, JournalFull, _dumps as _journal_dumps
from .message import ID_CHARS, EncodeError, Message, check_body
from .nemesis import FAULTS, Schedule, plan
from .runtime.network import Link, NetworkModel
from .node import Node
from .runtime.base import RuntimeBase, is_client_id

RUNTIMES = ("processes", "sim")
#: The range of ``skew(rate=...)``: a clock a thousand times slower or faster than true time.
MIN_CLOCK_RATE, MAX_CLOCK_RATE = 0.001, 1000.0


@dataclass(frozen=True)
class NodeStatus:
    """One node as the cluster sees it."""

    state: str          # "up" | "down" | "paused" | "crashed"
    incarnation: int
    pid: int | None = None
    slow: float = 1.0   # cluster.slow: ctx.work takes this many times as long (1: normal)

    def __str__(self) -> str:
        return f"{self.state} (incarnation {self.incarnation}" + (f", {self.slow:g}x slow)" if self.slow != 1 else ")")


def _check_no_arguments(cls: type, where: str) -> None:
    """A Node class is made with ``cls()`` in each node process: one whose ``__init__`` needs
    arguments is an ``ArgumentError`` here, not a TypeError in every node process."""
    import inspect
    try:
        inspect.signature(cls).bind()
    except TypeError as e:
        example = "labkit.Program('./prog')" if getattr(cls, "_labkit_program", False) else f"{cls.__name__}(...)"
        raise ArgumentError(f"{where}: {cls.__name__} cannot be made without arguments ({e}); give an instance, "
                            f"e.g. {example}") from None
    except ValueError:          # no signature to read (a C-level __init__): let the node process try
        pass


def check_node_id(k: Any) -> None:
    """ValueError unless ``k`` can name a node: 1 to 32 of ``ID_CHARS``, not a client id."""
    if not isinstance(k, str) or not k or is_client_id(k) or not set(k) <= ID_CHARS or len(k) > 32:
        raise ValueError(f"bad node id {k!r}: use short names of letters, digits, '_', '-', '.' "
                         f"like 'n1' or 'db' ('client', 'c0', 'c1', ... are reserved for clients)")


def _factories(nodes: Any, n: int | None) -> dict[str, Callable[[], Node]]:
    """Normalise the ``nodes`` argument into ``{node id: zero-argument factory}``."""
    def factory(x: Any, where: str) -> Callable[[], Node]:
        if isinstance(x, type):
            if not issubclass(x, Node):
                raise TypeError(f"{where}: {x.__name__} must subclass labkit.Node")
            _check_no_arguments(x, where)
            check_capacity(x, where)
            return x
        if isinstance(x, Node):
            check_capacity(x, where)
            return _Template(x)
        raise TypeError(f"{where}: expected a labkit.Node subclass or instance, got {x!r}")

    if isinstance(nodes, Mapping):
        if n is not None:
            raise TypeError("give n only with a single node class; a dict already names the nodes")
        out = {}
        for k, v in nodes.items():
            check_node_id(k)
            out[k] = factory(v, f"node {k!r}")
        if not out:
            raise ValueError("a cluster needs at least one node")
        return out
    if isinstance(nodes, (list, tuple)):
        if n is not None and n != len(nodes):
            raise TypeError(f"n={n} but {len(nodes)} nodes were given; leave n out")
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        return {f"n{i}": factory(v, f"nodes[{i - 1}]") for i, v in enumerate(nodes, 1)}
    n = 3 if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 64:
        raise ValueError(f"n must be a whole number from 1 to 64, got {n!r}")
    f = factory(nodes, "Cluster(...)")
    first = getattr(nodes, "first_node_number", 1)      # a Maelstrom Program: n0, n1, ... as Maelstrom
    return {f"n{i}": f for i in range(first, first + n)}


def _weak_call(obj: Any, fn: Callable[[Any], None]) -> Callable[[], None]:
    ref = weakref.ref(obj)

    def call() -> None:
        o = ref()
        if o is not None:
            fn(o)
    return call


class _Template:
    """A node given as an instance: every incarnation starts from a copy of it."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def __call__(self) -> Node:
        return copy.deepcopy(self.node)


class Cluster:
    """A cluster of nodes running ``nodes`` (a Node class, a list, or a dict id -> class/instance).

    Use it as a context manager, or call ``close()`` (idempotent) when done.

    ``guard`` sets the storm guard's limits (``labkit.Guard``; see ``labkit.guard``): a node
    that produces events without end -- a handler sending in a loop, a timer re-armed with
    ``after=0``, a broadcast storm -- is crashed with the reason, and the simulator stops the
    run with a ``StormError``. ``"default"`` keeps the runtime's limits; ``None`` switches it off.
    """

    def __init__(self, nodes: Any, n: int | None = None, *, runtime: str = "processes",
                 seed: int | None = None, fsync: bool = False, guard: Any = "default") -> None:
        """``fsync=True`` (processes runtime) makes every ``ctx.storage`` write survive a
        machine crash, not only a node kill, at the cost of a disk flush per write; see
        ``labkit.runtime.storage`` for what "durable" means. The simulator keeps storage in memory."""
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be True or False, got {fsync!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        limits = resolve_guard(guard, runtime)
        if seed is None:
            seed = random.SystemRandom().randrange(1, 2**31)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        factories = _factories(nodes, n)
        self.seed: int = seed
        self.ids: tuple[str, ...] = tuple(factories)
        self.net = NetworkModel(self.ids)
        from .journal_store import EventStore
        # The processes runtime merges its nodes' journal files by time; the simulator's
        # events arrive in order.
        self._events = EventStore(by_time=runtime != "sim")
        self._closed = False
        self._nemesis: Any = None
        rt_class: type[RuntimeBase]
        if runtime == "sim":
            from .runtime.sim import SimRuntime as rt_class
        else:
            from .runtime.processes import ProcessRuntime as rt_class
        self._rt: RuntimeBase = rt_class(factories, seed, self.net, self._events)
        self._rt.fsync = fsync  # type: ignore[attr-defined]
        self._rt.guard = limits
        # a weak reference: the journal outlives the cluster without keeping it alive
        self.journal = Journal(self._events, refresh=_weak_call(self, Cluster._rt_sync), seed=seed)
        try:
            self._rt.start()
        except BaseException:
            self.close()
            raise

    # -- plumbing --------------------------------------------------------------------------
    @property
    def runtime(self) -> str:
        return self._rt.name

    @property
    def now(self) -> float:
        """Cluster time in ms since start (virtual in the simulator)."""
        return self._rt.now()

    def _rt_sync(self) -> None:
        if not self._closed:
            self._rt.sync()

    def _live(self) -> RuntimeBase:
        if self._closed:
            raise ClusterClosed("this cluster is closed; start a new one with labkit.Cluster(...)")
        return self._rt

    def _rec(self, node: str):
        rt = self._live()
        if node not in rt.records:
            raise UnknownNode(f"unknown node {node!r}; nodes are {list(self.ids)}")
        return rt.records[node]

    def _record(self, kind: str, node: str = "cluster", **data: Any) -> None:
        self._rt.record(Event(self._rt.now(), kind, node, None, data))

    # -- running ---------------------------------------------------------------------------
    def run_for(self, seconds: float) -> "Cluster":
        """Let the cluster run for ``seconds`` (virtual seconds in the simulator). Blocks.

        Interrupting the cell stops the wait, not the cluster. ``seconds`` is a finite number
        in [0, 1e6]; anything else raises ``ArgumentError`` (a ``ValueError``)."""
        seconds = argcheck.seconds(seconds, "run_for(seconds)")
        self._live().run_for(seconds)
        return self

    def request(self, node: str, /, type: str, timeout: float = 1000.0, *, as_client: str = "client",
                **body: Any) -> Message:
        """Send ``{type, **body}`` to ``node`` as a client and return the reply message.

        ``timeout`` is in ms, a finite number in (0, 1e9]. ``as_client`` names the client
        ("client", "c0", "c1", ...). Raises ``RequestTimeout`` when no reply comes in time,
        ``NodeCrashed`` when the node crashes handling the request, and ``NodeDown`` (both a
        ``NodeCrashed`` and a ``RequestTimeout``) at once when ``node`` is known to be down or
        crashed (nothing is sent), or as soon as it goes down while the request waits."""
        client = as_client
        self._rec(node)
        if not is_client_id(client):
            raise ValueError(f"client ids are 'client' or c0, c1, ...; got {client!r}")
        timeout = argcheck.ms(timeout, "request(timeout)", positive=True)
        check_body(client, type, body)
        ev = self._rt.request(node, type, timeout, body, client)
        d = ev.data
        return Message(d["src"], d["dst"], d["type"], d["id"], d["body"], d.get("re"), d.get("at", 0.0))

    def client_send(self, node: str, /, type: str, *, as_client: str = "client",
                    on_reply: Callable[[Event], None] | None = None, **body: Any) -> str:
        """Send a request without waiting (for workload generators); returns its id.

        ``on_reply(event)`` is called with the reply's ``deliver`` event while the cluster runs:
        only inside ``run_for``/``request``, on the thread that called them (never on the
        panel's thread). If it raises, that ``run_for``/``request`` raises the error; the
        reply is in the journal already, and callbacks still due run at the next call. Stop
        waiting with ``forget(id)``."""
        self._rec(node)
        if not is_client_id(as_client):
            raise ValueError(f"client ids are 'client' or c0, c1, ...; got {as_client!r}")
        if on_reply is not None and not callable(on_reply):
            raise ArgumentError(f"client_send(on_reply={on_reply!r}): give a function of the reply's "
                                         f"deliver event, or None")
        check_body(as_client, type, body)
        return self._rt.client_send(as_client, node, type, body, on_reply)

    def http(self, node: str, /, *, as_client: str = "client") -> Any:
        """An HTTP client of the service ``node``, from the notebook: ``cluster.http("inv").get(
        "/stock/apple")`` blocks like ``request`` and returns a ``labkit.HttpResponse``
        (``status``, ``headers``, ``json()``, ``text()``); ``.send(method, path,
        on_response=fn, on_error=fn, timeout=ms)`` does not wait (for workloads). Both runtimes.
        See ``labkit.cluster_http`` for the errors."""
        from .cluster_http import ClusterHttp
        return ClusterHttp(self, node, as_client)

    def url(self, node: str) -> str:
        """The real address of the service ``node`` in the processes runtime,
        ``http://127.0.0.1:PORT`` (``https://...`` if it serves TLS): open it with ``curl``, a
        browser, ``requests`` or ``aiohttp``. A restarted node listens on a new port: ask again.
        Raises ``LabkitError`` in the simulator (it has no sockets: use ``cluster.http(node)``),
        for a plain ``Node`` (it serves no HTTP) and for a node that is down."""
        self._rec(node)
        return self._rt.url(node)

    def record_op(self, process: int, type: str, f: str, value: Any = None, key: Any = None,
                  time: float | None = None, **extra: Any) -> None:
        """Journal a client operation (a Jepsen history entry): ``type`` is invoke, ok, fail
        or info. Histories are recorded this way, so the journal holds them too."""
        if type not in ("invoke", "ok", "fail", "info"):
            raise ValueError(f"an operation's type is invoke, ok, fail or info; got {type!r}")
        process = argcheck.whole(process, "record_op(process)", lo=0)
        if time is not None:
            time = argcheck.number(time, "record_op(time)", lo=0.0, unit="ms")
        data = {"process": process, "type": type, "f": f, "value": value, **extra}
        if key is not None:
            data["key"] = key
        try:                             # the journal holds JSON: refuse what JSON would change
            _journal_dumps(data)
        except EncodeError as e:
            raise ValueError(f"record_op: cannot journal {e.at('op')}") from None
        self._live().record(Event(self.now if time is None else time, "op", f"c{process}", None, data))

    def forget(self, msg_id: str) -> None:
        """Stop waiting for the reply to ``msg_id``; if it comes later it is only journaled."""
        self._rt.forget(msg_id)

    def call_at(self, t_ms: float, fn: Callable[..., None], *args: Any) -> Any:
        """Run ``fn(*args)`` at cluster time ``t_ms`` (while the cluster runs); returns a handle
        for ``cancel``. Virtual time in the simulator; in the processes runtime the call runs
        in this (the notebook's) thread during ``run_for``/``request``. ``t_ms`` must be finite
        (a time already past means "as soon as the cluster runs")."""
        t_ms = argcheck.number(t_ms, "call_at(t_ms)", unit="ms")
        if not callable(fn):
            raise TypeError(f"call_at(t_ms, fn): fn must be callable, got {fn!r}")
        return self._live().call_at(t_ms, fn, *args)

    def cancel(self, handle: Any) -> None:
        """Cancel a ``call_at``."""
        self._rt.cancel(handle)

    # -- node faults -----------------------------------------------------------------------
    def kill(self, node: str) -> bool:
        """Kill ``node`` (SIGKILL): volatile state is lost, ``ctx.storage`` is kept.
        Returns False if it was already down."""
        rec = self._rec(node)
        with self._rt.lock:
            if rec.state in ("down", "crashed"):
                return False
            self._rt.kill(rec)
            rec.state = "down"
            self._record("kill", node, incarnation=rec.incarnation)
        return True

    def restart(self, node: str) -> None:
        """Start a new incarnation of ``node`` with its durable storage (kills it first if up)."""
        rec = self._rec(node)
        with self._rt.lock:
            if rec.state in ("up", "paused"):
                self.kill(node)
            rec.incarnation += 1
            self._record("restart", node, incarnation=rec.incarnation)
            self._rt.restart(rec)

    def pause(self, node: str) -> None:
        """Freeze ``node`` (SIGSTOP): it neither handles messages nor fires timers until resumed.
        Fault calls made meanwhile reach it when it resumes (before it handles its backlog)."""
        rec = self._rec(node)
        with self._rt.lock:
            if rec.state != "up":
                raise LabkitError(f"cannot pause {node}: it is {rec.state}")
            self._rt.pause(rec)
            rec.state = "paused"
            self._record("pause", node)

    def resume(self, node: str) -> bool:
        """Unfreeze a paused node; it then handles its backlog. False if it was not paused."""
        rec = self._rec(node)
        with self._rt.lock:
            if rec.state != "paused":
                return False
            rec.state = "up"
            self._record("resume", node)
            self._rt.resume(rec)
        return True

    def skew(self, node: str, offset_ms: float = 0.0, rate: float = 1.0) -> None:
        """Make ``node``'s clock read ``true_time * rate + offset_ms``. ``skew(node)`` resets it.
        Timers run on the node's clock too: a fast clock fires them early. ``offset_ms`` is
        finite, at most 1e9 ms either way; ``rate`` is in [0.001, 1000]."""
        rec = self._rec(node)
        offset_ms = argcheck.number(offset_ms, "skew(offset_ms)", lo=-argcheck.MAX_MS, hi=argcheck.MAX_MS,
                                    unit="ms")
        rate = argcheck.number(rate, "skew(rate)", lo=MIN_CLOCK_RATE, hi=MAX_CLOCK_RATE)
        rec.offset_ms, rec.rate = offset_ms, rate
        self._record("skew", node, offset_ms=offset_ms, rate=rate)
        self._rt.set_clock(rec)

    def slow(self, node: str, factor: float) -> None:
        """The gray failure: ``node`` stays up and answers, but each ``ctx.work`` it starts from
        now on takes ``factor`` times as long (``factor`` in [1, 1000]; 1 is normal speed).
        Handlers that never await ``ctx.work`` take no modelled time, so nothing of theirs
        slows. Like ``skew``, it is the machine's: it survives ``kill`` and ``restart``, until
        ``unslow(node)``. Journaled as a ``slow`` event (``factor``) and shaded on plots.
        Source: Huang et al., "Gray Failure", HotOS 2017; see ``labkit.capacity``."""
        rec = self._rec(node)
        factor = argcheck.number(factor, "slow(factor)", lo=MIN_SLOW, hi=MAX_SLOW)
        with self._rt.lock:
            rec.slow = factor
            self._record("slow", node, factor=factor)
            self._rt.set_slow(rec)  # type: ignore[attr-defined]

    def unslow(self, node: str) -> None:
        """Undo ``slow(node, ...)``: ``node``'s work takes its normal time again."""
        self.slow(node, 1.0)

    # -- network faults --------------------------------------------------------------------
    def _net_changed(self, kind: str, **data: Any) -> None:
        with self._rt.lock:
            self._record(kind, **data)
            self._rt.net_changed()

    def partition(self, *groups: Iterable[str]) -> list[list[str]]:
        """Split the cluster: nodes in different groups can't talk. Unnamed nodes form one
        more group, so ``partition(["n1"])`` cuts n1 off. Returns the groups."""
        self._live()
        out = self.net.partition(*groups)
        self._net_changed("partition", groups=out)
        return out

    def isolate(self, node: str) -> list[list[str]]:
        """Cut ``node`` off from every other node."""
        return self.partition([node])

    def cut(self, a: str, b: str, one_way: bool = False) -> None:
        """Cut the link a -> b, and b -> a unless ``one_way``. ``"*"`` means every node."""
        self._live()
        self.net.cut(a, b, one_way)
        self._net_changed("cut", a=a, b=b, one_way=one_way)

    def uncut(self, a: str, b: str, one_way: bool = False) -> None:
        """Undo ``cut(a, b, one_way)``: restore the link a -> b (and b -> a unless ``one_way``)."""
        self._live()
        self.net.uncut(a, b, one_way)
        self._net_changed("uncut", a=a, b=b, one_way=one_way)

    def heal(self) -> None:
        """Remove every partition and cut (link settings stay; see ``clear_links``)."""
        self._live()
        self.net.heal()
        self._net_changed("heal")

    def set_link(self, src: str = "*", dst: str = "*", **settings: Any) -> Link:
        """Set delay / jitter / distribution / drop / duplicate / reorder / bandwidth on links
        src -> dst (``"*"`` = every node). Returns the resulting settings of one matching link.
        ``bandwidth`` is bytes per second (e.g. 125_000 for 1 Mbit/s; None: no limit): each
        directed link then sends one message at a time, size / bandwidth each, and later
        messages queue behind (see ``labkit.runtime.network``). Bad values raise ``ArgumentError``."""
        self._live()
        link = self.net.set_link(src, dst, **settings)
        self._net_changed("link", src=src, dst=dst, **settings)
        return link

    def clear_links(self) -> None:
        """Remove every link setting: all links perfect again."""
        self._live()
        self.net.clear_links()
        self._net_changed("clear_links")

    # -- nemesis ---------------------------------------------------------------------------
    def nemesis(self, schedule: Schedule | Sequence[str] | str | None = ("partition", "kill"), *,
                seed: int | None = None, every: float | tuple[float, float] | None = None,
                duration: float | tuple[float, float] | None = None) -> Schedule | None:
        """Start a seeded fault schedule (e.g. ``nemesis(["partition", "kill"], every=2)``);
        it acts while the cluster runs. ``nemesis(None)`` stops it and undoes the current fault.
        The same schedule and seed replay the same faults. ``every`` and ``duration`` are
        seconds (or ``(lo, hi)`` ranges) in [0, 1e6] whose low ends add up to at least 1 ms;
        ``seed`` is an int."""
        self._live()
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"nemesis seed must be an int, got {seed!r}")
        if self._nemesis is not None:
            self._stop_nemesis()
        if schedule is None:
            return None
        if not isinstance(schedule, Schedule):
            kw: dict[str, Any] = {"faults": schedule}
            if every is not None:
                kw["every"] = every
            if duration is not None:
                kw["duration"] = duration
            schedule = Schedule(**kw)
        elif every is not None or duration is not None:
            raise TypeError("give every/duration inside the Schedule, not beside it")
        seed = self.seed if seed is None else seed
        ops = plan(schedule, self.ids, seed)
        run = _NemesisRun(self, schedule, seed, ops, self._rt.now())
        self._nemesis = run
        self._record("nemesis", "nemesis", op="start", faults=list(schedule.faults), seed=seed)
        run.arm()
        return schedule

    def _stop_nemesis(self) -> None:
        run, self._nemesis = self._nemesis, None
        run.stop()
        if run.undo is not None:
            run.apply(run.undo)
        self._record("nemesis", "nemesis", op="stop")

    # -- looking ---------------------------------------------------------------------------
    def status(self) -> dict[str, NodeStatus]:
        """``{node: NodeStatus(state, incarnation, pid)}``.

        Never reads the journal: states come from the nodes' processes, so this stays quick
        however long the journal grows. (A crash's traceback is printed when the cluster next
        runs -- ``run_for``, ``request`` -- or its journal is read.)"""
        rt = self._live()
        with rt.lock:
            rt.poll_states()
            return {n: NodeStatus(r.state, r.incarnation, r.pid, r.slow) for n, r in rt.records.items()}

    def counters(self, node: str | None = None) -> dict:
        """Named counters (``ctx.count``) and reported status (``ctx.report``) per node."""
        rt = self._live()
        try:
            rt.sync()
        except JournalFull:     # the counters read so far still stand
            pass
        nodes = [node] if node is not None else list(self.ids)
        out = {}
        for n in nodes:
            c, s = rt.counters(self._rec(n))
            out[n] = {"counters": c, "status": s}
        return out[node] if node is not None else out

    def panel(self, *, metric: Callable[["Cluster"], float] | None = None, refresh_hz: float = 4):
        """The live control panel: node tiles with kill / restart / pause / resume, a link
        matrix, partition presets, delay and drop sliders, a strip chart and the last action.
        A widget in JupyterLab; headless (plain python, pytest, nbval) it prints a short text
        summary and returns None. The panel holds the cluster weakly: keep it in a variable."""
        from .widgets import panel
        return panel(self, metric=metric, refresh_hz=refresh_hz)

    @property
    def crashes(self) -> list[Event]:
        """Crash events so far (each has the traceback)."""
        self._rt_sync()
        return list(self._rt.crashes)

    def logs(self, node: str | None = None, last: int = 20) -> str:
        """The last ``last`` log lines (of ``node``, or of every node), one per line. Raises
        UnknownNode for a node the cluster does not have."""
        if node is not None and node not in self.ids:
            raise UnknownNode(f"unknown node {node!r}; nodes are {list(self.ids)}")
        last = argcheck.whole(last, "logs(last)", lo=0)
        if last == 0:
            return ""
        j = self.journal.filter(kind="log", node=node)
        return "\n".join(f"{e.t:9.1f} ms  {e.node:>4}  {e.get('text')}" for e in j[-last:])

    def summary(self) -> str:
        if self._closed:
            return f"Cluster({self.runtime}, seed={self.seed}): closed; {self.journal.summary()}"
        st = self.status()
        nodes = ", ".join(f"{n} {s.state}" + (f"#{s.incarnation}" if s.incarnation > 1 else "")
                          for n, s in st.items())
        return (f"Cluster({self.runtime}, {len(self.ids)} nodes, seed={self.seed}, t={self.now / 1000:.2f} s): "
                f"{nodes}; network {self.net.describe()}")

    def __repr__(self) -> str:
        return f"<{self.summary()}>"

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every node and free every resource. Safe to call twice. The journal stays.

        Ctrl-C during ``close`` is held until it is done (then raised): a close cut in half
        would leave node processes, descriptors and the cluster's directory behind."""
        if self._closed:
            return
        with held_interrupts():
            try:
                if self._nemesis is not None:
                    self._nemesis.stop()
                    self._nemesis = None
                self._record("close")
            finally:
                self._closed = True
                self._rt.close()  # stops the nodes first, then reads the rest of the journal

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; close() is the contract
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass


class _NemesisRun:
    """Feeds a nemesis plan to the runtime one operation at a time."""

    def __init__(self, cluster: Cluster, schedule: Schedule, seed: int, ops, t0: float) -> None:
        self.cluster, self.schedule, self.seed, self.ops, self.t0 = cluster, schedule, seed, ops, t0
        self.undo: dict | None = None
        self.handle: Any = None
        self.stopped = False

    def arm(self) -> None:
        t, op = next(self.ops)
        self.handle = self.cluster._rt.call_at(self.t0 + t * 1000.0, self.fire, op)

    def fire(self, op: dict) -> None:
        if self.stopped:
            return
        self.apply(op)
        self.undo = None if op["op"] in ("heal", "restart", "resume", "clear_links") or \
            (op["op"] == "skew" and not op["offset_ms"]) or (op["op"] == "slow" and op["factor"] == 1) \
            else self._undo_of(op)
        self.arm()

    @staticmethod
    def _undo_of(op: dict) -> dict:
        return {"partition": {"op": "heal"}, "kill": {"op": "restart", "node": op.get("node")},
                "pause": {"op": "resume", "node": op.get("node")},
                "set_link": {"op": "clear_links"},
                "skew": {"op": "skew", "node": op.get("node"), "offset_ms": 0.0},
                "slow": {"op": "slow", "node": op.get("node"), "factor": 1.0}}[op["op"]]

    def apply(self, op: dict) -> None:
        c = self.cluster
        args = {k: v for k, v in op.items() if k not in ("op", "fault")}
        c._rt.record(Event(c.now, "nemesis", "nemesis", None, {"op": op["op"], "fault": op.get("fault"), **args}))
        kind = op["op"]
        if kind == "partition":
            c.partition(*args["groups"])
        elif kind == "set_link":
            c.set_link(**args)
        elif kind == "skew":
            c.skew(args["node"], args["offset_ms"])
        elif kind == "slow":
            c.slow(args["node"], args["factor"])
        elif kind == "kill":
            c.kill(args["node"])
        elif kind == "restart":
            if c._rec(args["node"]).state in ("down", "crashed"):
                c.restart(args["node"])
        elif kind == "resume":
            c.resume(args["node"])
        elif kind == "pause":
            if c._rec(args["node"]).state == "up":
                c.pause(args["node"])
        else:
            getattr(c, kind)()

    def stop(self) -> None:
        self.stopped = True
        if self.handle is not None:
            self.cluster._rt.cancel(self.handle)
