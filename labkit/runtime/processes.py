"""The processes runtime: one OS process per node, messages over ZeroMQ.

Theory of operation. The notebook's process (the *parent*) owns a private temporary
directory (mode 0700) that holds every endpoint and file of the cluster: each node's inbox
(``<id>.in``), the parent's control socket and client inbox, each incarnation's journal file
(``j-<id>-<incarnation>.jsonl``) and each node's durable storage file. No ports are opened,
so many clusters never collide.

Nodes send to each other directly; the *receiving* node applies labkit's ``NetworkModel``
(see ``_child``), whose state the parent pushes over the control socket and waits to be
acknowledged -- so a fault call has taken effect on every running node when it returns. (A
node reads its control socket when its slot in the shared ``changes.v`` file says a change is
announced, before its next message: see ``labkit.runtime.versions``.) A
node that cannot answer (paused, stopped from outside, stuck in a handler) is not waited for
long: the change stays queued for it and applies before it handles anything else (see
``_tell``). Client links (the notebook) sit outside the model.

Reply callbacks (``client_send(on_reply=...)``) run only on the thread driving ``run_for`` /
``request``: any thread may read the inbox into the journal (``status()`` from the panel's
thread does), but it only queues the callbacks.

The journal is one file per node incarnation, appended once per loop round through a shared
mapping (``labkit.runtime.journal_file``: the file's reserved tail is NUL bytes, where a reader
stops); the parent reads new lines when the journal is read and merges them by time (all processes
stamp events with the same system-wide monotonic clock). A crash event found there is printed
in the notebook with its traceback.

Processes are guests: each node holds the read end of a pipe whose write end only the parent
holds, and leaves when it sees EOF -- whether the parent closed the cluster, exited, or was
SIGKILLed. On Linux they also ask for SIGKILL when their parent process dies, and they ignore
SIGINT, so interrupting a cell never stops the cluster.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
import weakref
from typing import Any, Callable

import zmq

from .host import NODE_PROCESS_ENV, OWNER_FILE, dead_forkserver_dir, ensure_fd_limit, own_mp_tempdir, short_base
from .._interrupts import held_interrupts
from ..errors import LabkitError
from ..journal import BLOCK_BYTES, Event, JournalFull
from .journal_file import PROBE, readable_length
from .versions import WAKE, ChangeVersions
from ..message import MAX_FRAME_BYTES, decode, dumps as _dumps, split_frames, wire
from .base import NodeRecord, RuntimeBase
from .scheduler import Scheduler

START_TIMEOUT_S = 60.0
#: How long a fault call waits for a running node to acknowledge a change before it goes on
#: without it (the node is stuck in a handler, or stopped from outside labkit). The change
#: still reaches the node: it is queued, and applied before the node handles anything else.
ACK_TIMEOUT_S = 1.0
#: How long (s) close() and kill() wait for a killed program's process group to be gone.
GROUP_EXIT_S = 2.0
#: How often (s) a running cluster asks whether a node process has exited.
EXIT_CHECK_S = 0.01
#: ZeroMQ constants as plain ints: pyzmq's enums cost an enum operation per use on the hot path.
_EVENTS, _POLLIN, _NOBLOCK, _RCVTIMEO = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.RCVTIMEO)
#: How often (s) a running cluster with programs prints their notices (stderr, bad output).
NOTICE_CHECK_S = 0.1
#: How many program notices the notebook shows a second, all nodes together (each node also
#: sends at most 10 a second: see labkit.maelstrom._bridge); the rest are counted.
NOTICES_SHOWN_PER_S = 20


def _mp_context():
    import multiprocess as mp
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        own_mp_tempdir(_START_LOCK)
        ctx.set_forkserver_preload(["labkit.runtime.child", "labkit.context", "labkit.runtime.network", "labkit.runtime.pickling", "zmq"])
    return ctx


_START_LOCK = threading.Lock()  # _MainHidden swaps attributes of the one __main__ module


class _MainHidden:
    """Hide ``__main__``'s file and spec while a process starts -- and, for a node process
    (``node=True``), mark the environment (``NODE_PROCESS_ENV``) that the node forkserver, if
    this start makes it, inherits. (A sweep's pool starts its own forkserver unmarked: its
    workers read journals.)

    multiprocess would otherwise re-run the main script in every child (the reason scripts need
    ``if __name__ == "__main__":``). Nodes never need it: dill sends classes defined in
    ``__main__`` -- a notebook's cells included -- by value."""

    _missing = object()

    def __init__(self, node: bool = False) -> None:
        self.node = node

    def __enter__(self) -> None:
        _START_LOCK.acquire()
        try:
            if self.node:
                # The forkserver (started by the first start) and a spawned child run nodes
                # only: ``import labkit`` there skips what only a notebook needs (labkit/__init__).
                os.environ[NODE_PROCESS_ENV] = "1"
            main = sys.modules["__main__"]
            self.main = main
            self.spec = main.__dict__.get("__spec__", self._missing)
            self.file = main.__dict__.get("__file__", self._missing)
            main.__spec__ = None
            main.__dict__.pop("__file__", None)
        except BaseException:               # never leave the lock held: every start would hang
            _START_LOCK.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        if self.node:
            os.environ.pop(NODE_PROCESS_ENV, None)
        main = self.main
        for name, value in (("__spec__", self.spec), ("__file__", self.file)):
            if value is self._missing:
                main.__dict__.pop(name, None)
            else:
                main.__dict__[name] = value
        _START_LOCK.release()




def _short_tmpdir() -> str:
    """A new private (0700) directory for one cluster, named ``labkit-*``, holding the
    notebook's pid in ``owner.pid``. Directories whose owner is gone are swept first: when a
    kernel and its whole process group are SIGKILLed nobody is left to remove them."""
    base = sweep_abandoned()
    d = tempfile.mkdtemp(prefix="labkit-", dir=base)
    with open(os.path.join(d, OWNER_FILE), "w") as f:
        f.write(str(os.getpid()))
    return d


def sweep_abandoned() -> str:
    """Remove the directories of clusters (and forkservers) whose owner process is gone -- a
    kernel SIGKILLed with its process group leaves them, as nbval's kernel shutdown does --
    from the temporary directories labkit uses; returns the short one. Every cluster start
    calls it; so does the test suite at its end."""
    base = short_base()
    _sweep_stale(base)
    if tempfile.gettempdir() != base:
        _sweep_stale(tempfile.gettempdir())
    return base


def _sweep_stale(base: str) -> None:
    """Remove ``labkit-*`` directories (clusters, and multiprocess's temporary directory)
    whose owner process is gone, and ``pymp-*`` directories of forkservers that are gone."""
    try:
        names = [n for n in os.listdir(base) if n.startswith(("labkit-", "pymp-"))]
    except OSError:
        return
    for name in names:
        d = os.path.join(base, name)
        if name.startswith("pymp-"):
            if dead_forkserver_dir(d):
                shutil.rmtree(d, ignore_errors=True)
            continue
        try:
            with open(os.path.join(d, OWNER_FILE)) as f:
                pid = int(f.read().strip())
            if os.stat(d).st_uid != os.getuid():
                continue
            os.kill(pid, 0)                       # the owner lives: leave it alone
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue                              # not ours, no owner file yet, or unreadable


class ProcessRuntime(RuntimeBase):
    name = "processes"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        ensure_fd_limit(len(self.node_ids))
        # Ctrl-C is held back during set-up and delivered at its end, where what was made is
        # undone: an interrupted Cluster() leaves no socket, pipe or directory behind.
        with held_interrupts() as held:
            try:
                self._setup()
                held.check()
            except BaseException:
                self._abandon()
                raise

    def _abandon(self) -> None:
        """Undo a set-up cut short by an error or an interrupt."""
        for name in ("control", "inbox"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close(0)
        if getattr(self, "zctx", None) is not None:
            self.zctx.term()
        for name in ("_watch_w", "_watch_r"):
            conn = getattr(self, name, None)
            if conn is not None:
                conn.close()
        if hasattr(self, "dir"):
            self._cleanup_files()

    def _setup(self) -> None:
        from ..runtime import pickling as _pickling
        self._lock = self.lock
        self.dir = _short_tmpdir()
        self.t0 = time.monotonic()
        self._mp = _mp_context()
        self._watch_r, self._watch_w = self._mp.Pipe(duplex=False)
        self._blobs: dict[str, bytes] = {}
        self._fatal: dict[str, str] = {}      # "id/incarnation" -> why its process ended
        self.fsync = False                    # set by Cluster(fsync=...) before start
        by_factory: dict[int, bytes] = {}       # Cluster(N, n=64): one class, pickled once
        for nid, factory in self.factories.items():
            try:
                blob = by_factory.get(id(factory))
                if blob is None:
                    blob = by_factory[id(factory)] = _pickling.dumps(factory)
                self._blobs[nid] = blob
            except _pickling.MainReferenceError as e:
                raise LabkitError(f"cannot send the node class of {nid} to a node process: {e}.") from None
            except Exception as e:
                self._cleanup_files()
                raise LabkitError(
                    f"cannot send the node class of {nid} to a node process: {type(e).__name__}: {e}. "
                    f"Node classes must be picklable by dill: avoid holding open files, sockets or "
                    f"locks on the class or instance.") from None
        self.zctx = zmq.Context()
        self.control = self.zctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.control.bind("ipc://" + os.path.join(self.dir, "control"))
        self.inbox = self.zctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.inbox.bind("ipc://" + os.path.join(self.dir, "client.in"))
        # One thread at a time reads the inbox (ZeroMQ sockets are not thread-safe): the one
        # holding ``_reader``, taken without blocking; the others wait on ``_arrived``. close()
        # takes it (then the lock: the order every reader takes them in) before closing it.
        self._reader = threading.RLock()
        self._arrived = threading.Condition(threading.Lock())
        self._rcvtimeo = -1
        self._versions = ChangeVersions(os.path.join(self.dir, "changes.v"), len(self.node_ids), create=True)
        self._node_index = {n: i for i, n in enumerate(self.node_ids)}
        #: node id -> a poll(2) object watching its current process's sentinel (see _has_exited)
        self._exit_polls: dict[str, Any] = {}
        self._to_node: dict[str, Any] = {}
        self._files: dict[str, list] = {}          # path -> [offset, partial bytes]
        self._scanned = 0                         # journal rows looked at for stats and crashes
        self._exited: set[tuple[str, int]] = set()  # (node, incarnation) seen exited by poll_states
        self._held: dict[str, list[tuple[str, str]]] | None = None   # requests sent during a drain
        self._stats: dict[str, Event] = {}        # latest stats event per node
        self._calls = Scheduler()                 # the nemesis's steps, run during run_for/request
        self._net_version = 0
        self._lagging: dict[str, int] = {}        # "id/incarnation" -> newest change not acked
        self._closed = False
        self._next_exit_check = 0.0             # monotonic s: when _pump next asks for exits
        # Nodes that run a program (labkit.maelstrom.Program): their notices (stderr lines, bad
        # output) are printed from the cluster's notices file while the cluster runs.
        self._programs = frozenset(n for n, f in self.factories.items()
                                   if getattr(getattr(f, "node", f), "_labkit_program", False))
        self._next_notice_check = 0.0
        self._notices_at = 0                     # bytes of the notices file shown so far
        self._notice_tail = b""
        self._notice_window = [0.0, 0, 0]       # [start (monotonic s), shown, left out]
        from ..service import is_service
        self._services = frozenset(n for n, f in self.factories.items() if is_service(f))
        # If the cluster is never closed (the notebook forgets, the interpreter exits), still
        # kill the nodes and remove the directory. (A SIGKILLed parent is the pipe's job.)
        self._pids: set[int] = set()
        self._finalizer = weakref.finalize(self, _last_resort_cleanup, self._pids, self.dir)

    def now(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    # -- starting nodes --------------------------------------------------------------------
    def _spec(self, rec: NodeRecord) -> dict:
        return {"service": rec.id in self._services, "services": sorted(self._services), "id": rec.id, "nodes": list(self.node_ids), "dir": self.dir, "seed": self.seed,
                "incarnation": rec.incarnation, "t0": self.t0, "launched_at": self.now(),
                "offset_ms": rec.offset_ms, "rate": rec.rate, "slow": rec.slow, "fsync": self.fsync,
                "guard": self.guard.as_dict() if self.guard is not None else None}

    def _launch(self, recs: list[NodeRecord]) -> None:
        from ..runtime import child as _child
        for rec in recs:
            # Ctrl-C waits until the process is started and recorded (so close() stops it): an
            # interrupt inside multiprocess's start-up would leave a process or a lock behind.
            with held_interrupts():
                p = self._mp.Process(target=_child.main, args=(self._spec(rec), self._blobs[rec.id], self._watch_r),
                                     name=f"labkit-{rec.id}", daemon=True)
                with _MainHidden(node=True):
                    p.start()
                if rec.proc is not None:                      # the previous incarnation's
                    _close_process(rec.proc)
                rec.proc, rec.pid, rec.state = p, p.pid, "starting"
                watch = select.poll()
                watch.register(p.sentinel, select.POLLIN)
                self._exit_polls[rec.id] = watch
                self._pids.add(p.pid)
        self._await_hellos(recs)

    def _await_hellos(self, recs: list[NodeRecord]) -> None:
        """Answer the new nodes' hellos with the network state once all of them have said
        hello, then wait until each has run ``on_start``: a cluster call returns only when its
        nodes are really running. The barrier is what lets a node's ``on_start`` call a
        service started with it: a service listens before its hello."""
        waiting = {f"{r.id}/{r.incarnation}": r for r in recs}
        hellos: dict[str, bytes] | None = {}     # None once the go is sent
        deadline = time.monotonic() + START_TIMEOUT_S
        go = _dumps({"op": "go", "net": self.net.state(), "v": self._net_version}).encode()
        for r in recs:          # what a new incarnation starts with: no change to catch up on
            self._versions.slots[self._node_index[r.id]] = self._net_version
        while waiting:
            if time.monotonic() > deadline:
                raise LabkitError(f"node(s) {sorted(waiting)} did not start within {START_TIMEOUT_S:.0f} s")
            if self.control.poll(20):
                ident, raw = self.control.recv_multipart()
                key = ident.decode()
                op = json.loads(raw).get("op")
                if key in waiting and op == "hello" and hellos is not None:
                    hellos[key] = ident
                    if hellos.keys() >= waiting.keys():
                        for who in hellos.values():
                            self.control.send_multipart([who, go])
                        hellos = None
                elif key in waiting and op == "started":
                    waiting.pop(key).state = "up"
                elif op == "fatal":
                    self._fatal[key] = json.loads(raw).get("error", "")
                continue
            for key, r in list(waiting.items()):
                if r.proc.exitcode is None:
                    continue
                self._read_journal()
                crash = next((e for e in reversed(self.crashes) if e.node == r.id
                              and e.get("incarnation") == r.incarnation), None)
                if crash is not None and crash.get("cause") == "on_start":
                    waiting.pop(key)  # crashed in its own on_start: reported like any crash
                    r.state = "crashed"
                    continue
                self._drain_last_words()
                why = self._fatal.get(key) or (crash.get("error") if crash is not None else None)
                if crash is not None and crash.get("cause") == "opening its storage":
                    raise LabkitError(f"node {r.id} could not start: {why}")
                detail = f":\n{crash.get('traceback')}" if crash is not None else ""
                reason = f": {why}" if why and why != "labkit runtime error" else ""
                raise LabkitError(f"node {r.id} could not start (its process exited with code "
                                  f"{r.proc.exitcode}){reason}{detail}")

    def start(self) -> None:
        self._launch(list(self.records.values()))

    def restart(self, rec: NodeRecord) -> None:
        with self._lock:
            self._launch([rec])

    # -- node faults -----------------------------------------------------------------------
    def _signal(self, rec: NodeRecord, sig: int) -> None:
        try:
            os.kill(rec.pid, sig)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass

    def _program_group(self, rec: NodeRecord) -> int | None:
        """The process group of the program (``labkit.maelstrom.Program``) that the node's
        current incarnation runs, or None: its node process writes it to
        ``program-<id>.pgid`` before it starts the program. The group's leader is a small
        watchdog that kills the group once the node process is gone, however it went."""
        try:
            with open(os.path.join(self.dir, f"program-{rec.id}.pgid")) as f:
                inc, pgid = f.read().split()
        except (OSError, ValueError):
            return None
        return int(pgid) if int(inc) == rec.incarnation else None

    def _signal_group(self, rec: NodeRecord, sig: int) -> int | None:
        """Send ``sig`` to the node's program and everything it started (its process group);
        returns the group's id (None: the node runs no program)."""
        pgid = self._program_group(rec)
        if pgid is None:
            return None
        try:
            os.killpg(pgid, sig)
            if sig == signal.SIGSTOP:
                os.kill(pgid, signal.SIGCONT)   # the watchdog (the leader) keeps watching
        except (ProcessLookupError, PermissionError):
            pass
        return pgid

    def kill(self, rec: NodeRecord) -> None:
        with self._lock:
            self._signal(rec, signal.SIGKILL)
            pgid = self._signal_group(rec, signal.SIGKILL)
            rec.proc.join(5)
            if pgid is not None:
                _await_groups_gone({pgid}, GROUP_EXIT_S)
            self._forget_port(rec.id)

    def _forget_port(self, node: str) -> None:
        """A dead service's port file goes with it: callers are refused at once, and never
        sent to whatever process gets that port number next."""
        try:
            os.unlink(os.path.join(self.dir, f"{node}.port"))
        except FileNotFoundError:
            pass

    def url(self, node: str) -> str:
        rec = self.records[node]
        if node not in self._services:
            raise LabkitError(f"cluster.url({node!r}): {node} is a plain labkit.Node, not a labkit.Service; "
                              f"it serves no HTTP")
        self.poll_states()
        if rec.state in ("down", "crashed"):
            raise LabkitError(f"cluster.url({node!r}): {node} is {rec.state}; cluster.restart({node!r}) "
                              f"brings it back (on a new port: ask for its url again)")
        try:
            with open(os.path.join(self.dir, f"{node}.port")) as f:
                scheme, port, _ = f.read().split()
        except (OSError, ValueError):
            raise LabkitError(f"cluster.url({node!r}): {node} is not listening (it is {rec.state})") from None
        return f"{scheme}://127.0.0.1:{port}"

    def pause(self, rec: NodeRecord) -> None:
        self._signal_group(rec, signal.SIGSTOP)       # the program first: it writes nothing more
        self._signal(rec, signal.SIGSTOP)

    def resume(self, rec: NodeRecord) -> None:
        self._signal(rec, signal.SIGCONT)
        self._signal_group(rec, signal.SIGCONT)

    # -- telling nodes about changes -------------------------------------------------------
    def _tell(self, targets: list[NodeRecord], cmd: dict) -> None:
        """Send ``cmd`` to each target and wait for the acks of those running.

        A node paused with ``pause`` applies the change when it is resumed (before its
        backlog). A node that is stopped from outside labkit (SIGSTOP, seen in /proc), or that
        let an earlier change wait (stuck in a handler), or that does not answer within
        ``ACK_TIMEOUT_S``, is not waited for: the change stays queued for it, it applies it as
        soon as it runs again, and a ``RuntimeWarning`` names it once per such episode."""
        with self._lock:
            self._read_acks()
            self._net_version += 1
            v = self._net_version
            raw = _dumps({**cmd, "v": v}).encode()
            waiting = set()
            late = []
            for r in targets:
                if r.state in ("up", "paused"):
                    key = f"{r.id}/{r.incarnation}"
                    self.control.send_multipart([key.encode(), raw])
                    # Then the node's slot, then a wake frame: see runtime.versions.
                    self._versions.slots[self._node_index[r.id]] = v
                    try:
                        self._node_sock(r.id).send(WAKE, _NOBLOCK)
                    except zmq.Again:             # its inbox is full: it is busy, it reads the slot
                        pass
                    if r.state != "up":
                        continue
                    if key in self._lagging:
                        self._lagging[key] = v
                    elif _stopped(r.pid):
                        self._lagging[key] = v
                        late.append((r.id, _STOPPED))
                    else:
                        waiting.add(key)
            deadline = time.monotonic() + ACK_TIMEOUT_S
            while waiting and time.monotonic() < deadline:
                if self.control.poll(20):
                    ident, reply = self.control.recv_multipart()
                    key, rv = ident.decode(), self._control_reply(ident, reply)
                    if rv == v:
                        waiting.discard(key)
                else:
                    for key in list(waiting):
                        rec = self.records[key.split("/")[0]]
                        if rec.proc is None or rec.proc.exitcode is not None:
                            waiting.discard(key)
                        elif _stopped(rec.pid):          # stopped while we waited
                            waiting.discard(key)
                            self._lagging[key] = v
                            late.append((rec.id, _STOPPED))
            for key in sorted(waiting):
                self._lagging[key] = v
                late.append((key.split("/")[0], f"did not acknowledge it within {ACK_TIMEOUT_S:g} s "
                                                f"(stuck in a handler, or stopped?)"))
        what = {"net": "network change", "clock": "clock change", "slow": "speed change"}.get(cmd.get("op"), "change")
        for node, why in late:
            warnings.warn(f"labkit: {node} {why} at t={self.now():.0f} ms. The {what} is queued: {node} "
                          f"applies it, and any later ones, as soon as it runs again; until then it still "
                          f"works with the old settings. Fault calls no longer wait for it.",
                          RuntimeWarning, stacklevel=_caller_level())

    def _read_acks(self) -> None:
        """Take in acks that came after their fault call stopped waiting (a lagging node);
        forget lagging incarnations that are gone (killed, crashed, restarted)."""
        live = {f"{r.id}/{r.incarnation}" for r in self.records.values() if r.state in ("up", "paused")}
        for key in [k for k in self._lagging if k not in live]:
            del self._lagging[key]
        while self._lagging and self.control.poll(0):
            ident, reply = self.control.recv_multipart()
            self._control_reply(ident, reply)

    def _control_reply(self, ident: bytes, raw: bytes) -> Any:
        """One message from a node's control socket during a fault call: an ack (its version
        is returned, and a lagging node that caught up is noted) or a dying node's last words."""
        key = ident.decode()
        try:
            msg = json.loads(raw)
        except ValueError:
            return None
        if msg.get("op") == "fatal":
            self._fatal[key] = str(msg.get("error", ""))
            return None
        v = msg.get("v")
        self._acked(key, v)
        return v

    def _acked(self, key: str, v: Any) -> None:
        lag = self._lagging.get(key)
        if lag is not None and isinstance(v, int) and v >= lag:
            del self._lagging[key]               # it has caught up with every change

    def net_changed(self) -> None:
        self._tell(list(self.records.values()), {"op": "net", "net": self.net.state()})

    def set_clock(self, rec: NodeRecord) -> None:
        self._tell([rec], {"op": "clock", "offset_ms": rec.offset_ms, "rate": rec.rate})

    def set_slow(self, rec: NodeRecord) -> None:
        self._tell([rec], {"op": "slow", "factor": rec.slow})

    # -- the journal -----------------------------------------------------------------------
    def record(self, ev: Event) -> None:
        self.events.append(ev)

    def sync(self) -> None:
        """Read new journal lines and client replies into ``events`` (merged by time).

        Raises ``JournalFull`` when the journal has reached its ``max_events`` and more is
        waiting (see ``labkit.journal.JournalLimits``)."""
        if self._closed:
            return
        with self._lock:
            self._read_journal()
            if self.events.full:
                raise JournalFull(self.events.full_message())

    def poll_states(self) -> None:
        """Mark nodes whose process has exited as crashed, from the processes alone (no
        journal is read); the crash is journaled and reported at the next journal read."""
        with self._lock:
            for rec in self.records.values():
                if rec.state == "up" and self._has_exited(rec):
                    rec.state = "crashed"
                    self._exited.add((rec.id, rec.incarnation))

    def _has_exited(self, rec: NodeRecord) -> bool:
        """Has ``rec``'s current process exited? The answer of ``Process.exitcode``, asked only
        when it can be yes: the exit status is already known (an earlier ``exitcode`` read it),
        or a poll(2) of the process's sentinel finds it readable or hung up (the forkserver
        writes the status there, then closes it). ``exitcode`` itself polls through a
        ``selectors`` object made per call: ten times the cost, and this runs on every request."""
        proc = rec.proc
        if proc is None:
            return False
        if getattr(getattr(proc, "_popen", None), "returncode", None) is not None:
            return True                  # read already: the sentinel may be drained and not yet closed
        watch = self._exit_polls.get(rec.id)
        if watch is not None:
            try:
                if not watch.poll(0):
                    return False
            except RuntimeError:     # another thread polls it this instant (status() from a panel's
                pass                 # thread): a poll object refuses a second caller; ask exitcode
        return proc.exitcode is not None

    def _read_journal(self) -> None:
        """``sync`` without ``JournalFull``: what runtime calls use to learn about crashes."""
        if self._closed:
            return
        with self._lock:
            store = self.events
            # Exits seen *before* the files are read: a crash line is written before the exit.
            gone = {(r.id, r.incarnation) for r in self.records.values()
                    if r.state == "up" and r.proc is not None and r.proc.exitcode is not None}
            self._drain_inbox(store)
            try:
                names = os.listdir(self.dir)
            except FileNotFoundError:
                names = []
            for name in names:
                if name.startswith("j-") and name.endswith(".jsonl") and not store.full:
                    # journals only: a node id may itself start with "j-" ("j-x.in")
                    self._read_file(os.path.join(self.dir, name))
            store.sync()
            new = store.text_rows_of_kinds(("stats", "crash", "handler_error"), self._scanned)
            self._scanned = store.nrows
            for e in store.events(new):
                if e.kind == "stats":
                    self._stats[e.node] = e
                elif e.kind == "handler_error":
                    self.report_handler_error(e)
                else:
                    rec = self.records.get(e.node)
                    if rec is not None and e.get("incarnation") == rec.incarnation:
                        rec.state = "crashed"
                    self._exited.discard((e.node, e.get("incarnation")))
                    gone.discard((e.node, e.get("incarnation")))
                    self.report_crash(e)
            for nid, inc in sorted(gone | self._exited):   # exited with no crash journaled
                rec = self.records[nid]
                current = rec.incarnation == inc
                if current:
                    rec.state = "crashed"
                code = rec.proc.exitcode if current and rec.proc is not None else "unknown"
                self._drain_last_words()
                why = self._fatal.get(f"{nid}/{inc}")
                e = Event(self.now(), "crash", nid, None, {
                    "error": f"the node process exited with code {code}" + (f": {why}" if why else ""),
                    "cause": "outside any handler", "traceback": "", "incarnation": inc,
                    "seed": self.seed})
                store.append(e)
                self.report_crash(e)
            self._exited.clear()

    def _show_notices(self, final: bool = False) -> None:
        """Print what node processes asked to show in the notebook (``_child.notice``): each
        notice ends with a NUL byte; an unfinished one waits for the rest. At most
        ``NOTICES_SHOWN_PER_S`` a second; how many were left out is said when the second ends
        (or the cluster closes)."""
        if not self._programs or self.echo_crashes is False:
            return
        win = self._notice_window              # [start (monotonic s), shown, left out]
        t = time.monotonic()
        if final or t - win[0] >= 1.0:
            if win[2]:
                print(f"labkit: {win[2]} more program notices not shown (the notebook shows at most "
                      f"{NOTICES_SHOWN_PER_S} a second); the journal has the stderr lines as log events "
                      f"and bad output as malformed events", file=sys.stderr)
            win[:] = [t, 0, 0]
        path = os.path.join(self.dir, "notices")
        try:
            if os.path.getsize(path) <= self._notices_at:
                return
            with open(path, "rb") as f:
                f.seek(self._notices_at)
                data = f.read(1 << 20)
        except OSError:
            return
        self._notices_at += len(data)
        data = self._notice_tail + data
        *done, self._notice_tail = data.split(b"\0")
        for text in done:
            text = text.strip(b"\n")
            if not text:
                continue
            if win[1] >= NOTICES_SHOWN_PER_S:
                win[2] += 1
                continue
            win[1] += 1
            print(text.decode(errors="replace"), file=sys.stderr)
        if final and win[2]:
            self._show_notices(final=True)

    def _drain_last_words(self) -> None:
        """Collect the "fatal" messages node processes send as they die (why they end, e.g. a
        full disk the journal could not take). Called with the lock held and no other control
        exchange under way, so anything else waiting is a stale ack."""
        while self.control.poll(0):
            ident, raw = self.control.recv_multipart()
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg.get("op") == "fatal":
                self._fatal[ident.decode()] = str(msg.get("error", ""))

    def _read_file(self, path: str) -> None:
        """Index the whole lines added to one journal file since the last read, in blocks
        (memory stays flat however much is waiting); stop where the journal is full."""
        st = self._files.setdefault(path, [0, b""])   # [bytes read, unfinished last line]
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(st[0])
            size = PROBE                          # little is new, usually: look at that first
            while True:
                block = f.read(size)
                if not block:
                    return
                size = BLOCK_BYTES
                z = block.find(b"\0")             # the end of what the node has written: the
                end = z >= 0                      # rest is reserved (runtime.journal_file)
                if end:
                    block = block[:z]
                data = st[1] + block
                cut = data.rfind(b"\n") + 1
                taken = self.events.add_text(data[:cut], source=f"node journal {path}") if cut else 0
                if taken < cut:                   # the journal is full: read the rest later
                    st[0] += len(block) - (len(data) - taken)
                    st[1] = b""
                    return
                st[0] += len(block)               # only once the lines are in the journal
                st[1] = data[cut:]               # an unfinished last line waits for the rest
                if end:
                    return

    def _drain_inbox(self, out: list[Event]) -> None:
        """Journal the client replies waiting in the inbox, and queue their callbacks.

        Any thread may drain (``status()`` from the panel's thread does), unless another is
        reading the inbox (``_await_inbox``: it journals each reply as it comes); callbacks
        run only in ``_run_callbacks``, on the thread driving ``run_for``/``request``. The socket is
        asked whether a frame waits (``EVENTS``) rather than read until ``zmq.Again``: the
        exception costs more than the question, and an empty inbox is the common case."""
        if not self._reader.acquire(blocking=False):
            return                                # a thread waits in the inbox: it journals each reply
        inbox, n = self.inbox, 0
        try:
            while inbox.get(_EVENTS) & _POLLIN:
                try:
                    frame = inbox.recv(_NOBLOCK)
                except zmq.Again:                 # (EVENTS said a frame waits: not expected)
                    break
                n += 1
                if b"\n" not in frame:
                    self._client_arrive(frame, out)
                    continue
                for raw in frame.split(b"\n"):          # a node batches a round's replies
                    self._client_arrive(raw, out)
        finally:
            self._reader.release()
        if n:
            with self._arrived:
                self._arrived.notify_all()

    def _await_inbox(self, ms: int) -> None:
        """Wait up to ``ms`` (>= 1) for a frame in the client inbox and journal it (the caller
        holds no lock). One blocking ``recv`` with ``RCVTIMEO``: libzmq waits on the socket's
        mailbox itself, with the system calls of a raw pyzmq ``recv`` (``zmq_poll`` and then
        ``recv`` made three more). While another thread reads the inbox, wait until it has
        journaled a frame or stopped reading."""
        if not self._reader.acquire(blocking=False):
            with self._arrived:
                self._arrived.wait(ms / 1000.0)
            return
        try:
            if self._closed:                      # (closed by another thread meanwhile)
                return
            inbox = self.inbox
            if ms != self._rcvtimeo:
                inbox.set(_RCVTIMEO, ms)
                self._rcvtimeo = ms
            try:
                frame = inbox.recv()
            except zmq.Again:
                return
            with self._lock:
                # One frame: if more wait, the next recv returns at once.
                if b"\n" not in frame:
                    self._client_arrive(frame, self.events)
                else:
                    for raw in frame.split(b"\n"):      # a node batches a round's replies
                        self._client_arrive(raw, self.events)
        finally:
            self._reader.release()
            with self._arrived:                   # (a reply for another thread, or the inbox is free)
                self._arrived.notify_all()

    def _run_callbacks(self) -> None:
        """Run the due reply callbacks on this (the caller's) thread. Requests the callbacks
        send are held and go out together at the end (one frame per node, as nodes do). A
        callback may itself wait for a reply (``cluster.request``): that run nests in this one."""
        if not self._due:
            return
        outermost = self._held is None
        if outermost:
            self._held = {}
        try:
            self.run_callbacks()
        finally:
            self._send_held()
            if outermost:
                self._held = None

    def _client_arrive(self, raw: bytes, out: list[Event]) -> None:
        try:
            msg = decode(raw.decode())
        except ValueError:
            return
        # Parsed once: the event's fields come from the decoded message, not a second parse.
        ev = Event(self.now(), "deliver", msg.dst, msg.id,
                   {"src": msg.src, "dst": msg.dst, "type": msg.type, "id": msg.id, "re": msg.in_reply_to,
                    "at": msg.sent_at, "body": msg.body})
        out.append(ev)
        self._client_reply(ev)

    # -- scheduled calls (the nemesis) -----------------------------------------------------
    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> list:
        return self._calls.call_at(t, fn, *args)

    def cancel(self, entry: list) -> None:
        self._calls.cancel(entry)

    def _pump(self) -> float:
        """Run due calls and surface crashes; return ms until the next call (or 50).

        The journal files are read only when a node process has exited (a crash to report)
        or when somebody reads the journal: parsing them while the cluster runs would take
        CPU from the nodes."""
        with self._lock:
            self._drain_inbox(self.events)  # client replies: journaled here ...
        return self._run_due()

    def _run_due(self) -> float:
        """``_pump`` after its drain of the inbox: run the due reply callbacks (outside the
        lock) and calls, surface crashes; return ms until the next call (or 50)."""
        self._run_callbacks()                 # ... and their callbacks run here, outside the lock
        calls = self._calls
        while (entry := calls.pop_due(self.now())) is not None:
            entry[2](*entry[3])
        # Has a node process exited (a crash to report)? Asking costs a waitpid per node, so at
        # most every EXIT_CHECK_S: a crash is noticed within that, a request's round trip
        # does not pay for it.
        t = time.monotonic()
        if self._programs and t >= self._next_notice_check:
            self._next_notice_check = t + NOTICE_CHECK_S
            self._show_notices()
        if self._exited or t >= self._next_exit_check:
            self._next_exit_check = t + EXIT_CHECK_S
            if self._exited or any(r.state == "up" and self._has_exited(r) for r in self.records.values()):
                self._read_journal()
        due = calls.next_time()
        return min(50.0, due - self.now()) if due is not None else 50.0

    # -- running ---------------------------------------------------------------------------
    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            wait = self._pump()
            left = (end - time.monotonic()) * 1000.0
            if left <= 0:
                return
            self._await_inbox(max(1, int(min(wait, left))))  # wakes at once for a client reply

    def _transmit_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        now = self.now()                         # the send event's time is the message's sent_at
        w = wire(client, node, type, mid, None, now, body_json)
        ev = Event(now, "send", client, mid, wire=w)
        held = self._held
        if held is not None:                     # inside a drain: sent together at its end
            self.record(ev)
            held.setdefault(node, []).append((mid, w))
            return
        # Sent first, journaled while it travels: the send event is the notebook's own (no
        # SIGKILL can separate the two), and no reader sees the journal in between -- readers
        # (sync, a drain of the inbox) hold the lock, as does a fault call's wake-up frame to
        # the same socket (ZeroMQ sockets are not thread-safe).
        with self._lock:
            sock = self._to_node.get(node) or self._node_sock(node)
            try:
                sock.send(w.encode(), _NOBLOCK)
            except zmq.Again:
                self.record(ev)
                self.record(Event(self.now(), "drop", node, mid, wire=w, extra={"rule": "queue full"}))
                return
            self.record(ev)

    def _node_sock(self, node: str) -> Any:
        """The notebook's PUSH socket to ``node``'s inbox (made on first use; called with the
        lock held)."""
        sock = self._to_node.get(node)
        if sock is None:
            sock = self._to_node[node] = self.zctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 10000)
            sock.connect("ipc://" + os.path.join(self.dir, f"{node}.in"))
        return sock

    def _refuse_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        now = self.now()
        w = wire(client, node, type, mid, None, now, body_json)
        self.record(Event(now, "send", client, mid, wire=w))
        self.record(Event(now, "drop", node, mid, wire=w, extra={"rule": "node down"}))

    def _send_held(self) -> None:
        """Send the requests that reply callbacks made during a drain: one frame per node."""
        held = self._held
        if not held:
            return
        self._held = {}
        with self._lock:                         # (the sockets are shared: see _transmit_client)
            for node, items in held.items():
                sock = self._node_sock(node)
                for frame, wires in split_frames([w for _, w in items]):     # each within MAX_FRAME_BYTES
                    try:
                        sock.send(frame, _NOBLOCK)
                    except zmq.Again:
                        for w in wires:
                            mid = decode(w).id
                            self.record(Event(self.now(), "drop", node, mid, wire=w, extra={"rule": "queue full"}))

    def node_down(self, node: str) -> bool:
        rec = self.records[node]
        if rec.state == "up" and self._has_exited(rec):
            self._read_journal()                 # it exited: read its crash before answering
        return rec.state in ("down", "crashed")

    def _wait_for_reply(self, mid: str, timeout: float, node: str) -> None:
        """Run the cluster (as ``run_for`` does) until the reply to ``mid`` is in, ``node``
        crashes or goes down, or ``timeout`` ms pass.

        Each wake-up is one blocking ``recv`` of the inbox (``_await_inbox``): every ZeroMQ
        call on the socket is a system call or two (its command mailbox), and they were most
        of the notebook's share of a round trip. Replies that another thread journaled
        meanwhile are seen at the top of the loop."""
        self._send_held()                        # a request made in a reply callback: send it now
        deadline = time.monotonic() + timeout / 1000.0
        rec = self.records[node]
        replies, crashed_ids, await_inbox = self._replies, self.crashed_ids, self._await_inbox
        while mid not in replies:
            wait = self._run_due()               # callbacks due, the nemesis's calls, exits every 10 ms
            if mid in crashed_ids or rec.state in ("down", "crashed"):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await_inbox(max(1, int(min(wait, left * 1000.0))))
        else:
            # The reply is journaled (it came through the inbox); the node's own lines are
            # read when somebody reads the journal -- not here, on every request: that read
            # was most of the client round trip.
            return
        self._read_journal()                     # no reply: a crash to learn about, perhaps

    def counters(self, rec: NodeRecord) -> tuple[dict, dict]:
        e = self._stats.get(rec.id)
        return (dict(e.get("counters", {})), dict(e.get("status", {}))) if e else ({}, {})

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        # No thread may be in the inbox's recv when it is closed: wait for the reader (its
        # recv returns within RCVTIMEO, <= 50 ms), then take the lock.
        reading = self._reader.acquire(timeout=5.0)
        try:
            with self._lock:
                self._close_locked()
        finally:
            if reading:
                self._reader.release()

    def _close_locked(self) -> None:
        try:
            groups = set()
            for rec in self.records.values():
                if rec.proc is not None and rec.proc.exitcode is None:
                    self._signal(rec, signal.SIGKILL)
                    pgid = self._signal_group(rec, signal.SIGKILL)
                    if pgid is not None:
                        groups.add(pgid)
            for rec in self.records.values():
                if rec.proc is not None:
                    rec.proc.join(5)
                    if rec.state in ("up", "paused", "starting"):
                        rec.state = "down"
                    _close_process(rec.proc)              # its sentinel fd
            if groups:      # SIGKILL is delivered, not done: return once the programs are gone
                _await_groups_gone(groups, GROUP_EXIT_S)
            # Reply callbacks run only while the cluster runs: replies still in the inbox at
            # close are journaled, not handed to code that would use a closed cluster.
            self._awaiting.clear()
            self._replies.clear()
            self._due.clear()
            self._read_journal()
            self._show_notices(final=True)
            if self.events.full:
                self._say_unread()
        finally:
            self._closed = True
            for s in [self.control, self.inbox, *self._to_node.values()]:
                s.close(0)
            self.zctx.term()
            self._watch_w.close()
            self._watch_r.close()
            self._cleanup_files()

    def _say_unread(self) -> None:
        """At close, a full journal's unread lines go with the directory: never silently."""
        unread = 0
        for name in os.listdir(self.dir):
            if name.startswith("j-"):
                path = os.path.join(self.dir, name)
                unread += readable_length(path) - self._files.get(path, [0])[0]
        if unread:
            print(f"labkit: the journal was full ({self.events.limits.max_events:,} events, its max_events); "
                  f"{unread / 2**20:.1f} MB of node journal lines it did not read are discarded with "
                  f"the cluster. Raise the limit before closing, e.g. "
                  f"cluster.journal.set_limits(max_events=...), to keep them.", file=sys.stderr)

    def _cleanup_files(self) -> None:
        versions = getattr(self, "_versions", None)
        if versions is not None:
            versions.close()
            self._versions = None
        shutil.rmtree(self.dir, ignore_errors=True)
        if hasattr(self, "_finalizer"):
            self._finalizer.detach()


def _close_process(proc: Any) -> None:
    """Release a finished node process's file descriptor (its sentinel). A process that has
    not exited yet (a crashed node still on its way out) is reaped first, briefly."""
    try:
        if proc.exitcode is None:
            proc.join(5)
        proc.close()
    except ValueError:       # still running after all, or closed already: nothing to free now
        pass


_STOPPED = "is stopped (SIGSTOP from outside labkit?)"


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside labkit."""
    here = os.path.dirname(os.path.abspath(__file__))
    f, level = sys._getframe(1), 1
    while f is not None and os.path.dirname(os.path.abspath(f.f_code.co_filename)).startswith(here):
        f, level = f.f_back, level + 1
    return level


def _stopped(pid: int | None) -> bool:
    """Is process ``pid`` stopped (SIGSTOP, SIGTSTP), as Linux's /proc says? False elsewhere."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:data.rindex(b")") + 3] in (b"T", b"t")
    except (OSError, ValueError):
        return False


def _group_members_alive(pgids: set[int]) -> set[int]:
    """Those of the process groups ``pgids`` that still hold a live process (a zombie, dead and
    waiting to be reaped, does not count). Linux reads /proc; elsewhere ``killpg(pgid, 0)``
    (which counts zombies too, so the wait may run to its limit there)."""
    if sys.platform.startswith("linux"):
        alive: set[int] = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
                rest = data[data.rindex(b")") + 2:].split()
                if rest[0] not in (b"Z", b"X") and int(rest[2]) in pgids:
                    alive.add(int(rest[2]))
            except (OSError, ValueError, IndexError):
                continue
        return alive
    alive = set()
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
            alive.add(pgid)
        except ProcessLookupError:
            pass
        except PermissionError:
            alive.add(pgid)
    return alive


def _await_groups_gone(pgids: set[int], timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until the programs' process groups ``pgids``, just sent
    SIGKILL, hold no live process: a signal is delivered at once but a process takes a moment
    to die (longer on a loaded machine), and ``close()``/``kill()`` promise nothing is left."""
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while _group_members_alive(pgids) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _last_resort_cleanup(pids: set[int], dir: str) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        names = [n for n in os.listdir(dir) if n.startswith("program-") and n.endswith(".pgid")]
    except OSError:
        names = []
    for name in names:                       # programs' groups (their watchdogs would, too)
        try:
            with open(os.path.join(dir, name)) as f:
                os.killpg(int(f.read().split()[1]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
    shutil.rmtree(dir, ignore_errors=True)
