"""The main loop of one node process (processes runtime).

Theory of operation. The parent starts this function in a fresh process (forkserver on
Linux, spawn on macOS) with the node's spec, the pickled node factory and the read end of a
pipe whose write end only the parent holds. The process:

1. binds its inbox (a PULL socket on an ipc path in the cluster's private 0700 directory),
   connects a PUSH socket to every peer's inbox and one to the parent's client inbox, and a
   DEALER to the parent's control socket; says hello and waits for the network state;
2. then loops (``_Node.run``): wait for the inbox (one blocking ``recv`` with the next timer
   as its timeout), apply the changes the notebook announced first (``labkit.runtime.versions``:
   a partition the parent has announced covers every message read after it), pass each
   arriving message through the receiver's copy of the ``NetworkModel`` (drop, delay,
   duplicate, reorder; a delayed copy is checked against partitions again when it is due);
   run due timers; then append the journal lines of this round to the journal file
   (``labkit.runtime.journal_file``: a copy into a shared mapping, no system call) and only
   then hand outgoing messages to ZeroMQ -- so a SIGKILL can lose a round's sends, but the
   journal never shows a delivery whose send it lacks.

A ``labkit.Service`` runs a different loop, on asyncio, with a real aiohttp server and client
(``labkit.runtime.child_async``); so does a plain node from its first ``ctx.http`` call on (the poll
loop hands over at the end of that round). Plain nodes that never call HTTP keep this loop.

The process ends when the watchdog pipe reports EOF (the parent died, however it died), on
SIGKILL from the parent (``kill``/``close``), or after a handler crash has been journaled.
It ignores SIGINT, so interrupting a notebook cell does not stop the cluster.
"""
from __future__ import annotations

import errno
import gc
import json
import os
import select
import signal
import sys
import time
import traceback
from typing import Any, Callable

from ..message import _SURELY_SMALL, MAX_FRAME_BYTES, dumps as _dumps, split_frames, too_large
from .host import NODE_PROCESS_ENV
from .journal_file import JournalWriter, append_line, write_all
from .versions import WAKE, ChangeVersions

MAX_BATCH = 256
EXIT_CRASHED = 3
EXIT_INTERNAL = 4


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


#: glibc's ``mallopt`` parameters (malloc.h) and the values a node process sets (bytes).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 2 << 20


def _tune_malloc() -> None:
    """Serve allocations up to ``MMAP_THRESHOLD`` from the heap, and keep up to
    ``TRIM_THRESHOLD`` free at its top, in this node process (glibc only; elsewhere nothing).

    asyncio reads a socket into a fresh 256 KiB buffer and shrinks it to what came
    (``selector_events``: ``recv(max_size)``). Above glibc's mmap threshold (128 KiB until
    raised) that is an ``mmap``, an ``mremap`` and a ``munmap`` per read: measured, 3 system
    calls and about 40 us per HTTP request on each side. glibc raises the threshold itself when
    a large mapped block is freed -- which a freed *shrunk* buffer never is, so it stayed at
    128 KiB unless some import (numpy's) happened to free a big one first. These are the values
    that rule settles on after a 1 MiB block is freed (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD:
    mallopt(3))."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):       # not glibc (musl has no mallopt): its own allocator's way
        pass


def _drop_inherited_keepalives() -> None:
    """Close the forkserver's and resource tracker's keep-alive pipe ends a forkserver child
    inherits. Holding them would keep the forkserver alive as long as any node lives -- and a
    SIGSTOPped node lives forever -- so the forkserver could never exit when the notebook
    dies, and its exit is what fires our parent-death SIGKILL."""
    for modname, objname, attr in (("multiprocess.forkserver", "_forkserver", "_forkserver_alive_fd"),
                                   ("multiprocess.resource_tracker", "_resource_tracker", "_fd")):
        mod = sys.modules.get(modname)
        obj = getattr(mod, objname, None) if mod else None
        fd = getattr(obj, attr, None) if obj else None
        if isinstance(fd, int):
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(obj, attr, None)


def fds_needed(n_nodes: int, parent: bool) -> int:
    """File descriptors a process of an ``n_nodes`` cluster may hold, with room to spare
    (measured with 64 nodes: 403 in the notebook, 210 in a node): per peer a ZeroMQ
    connection and socket mailbox, in the notebook also a process sentinel."""
    return 64 + (8 if parent else 5) * n_nodes


def raise_fd_limit(need: int) -> tuple[bool, int, int]:
    """Raise this process's soft RLIMIT_NOFILE to ``need`` if it is lower and the hard limit
    allows. Returns (enough, soft, hard) with the limits as they now are (-1: unlimited)."""
    try:
        import resource
    except ImportError:            # not a Unix: nothing to raise
        return True, -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft == inf or soft >= need:
        return True, soft, hard
    if hard == inf or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            return True, need, hard
        except (ValueError, OSError):       # e.g. macOS caps at OPEN_MAX below an unlimited hard limit
            pass
    return False, soft, (-1 if hard == inf else hard)


def main(spec: dict, factory_blob: bytes, watch: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.pop(NODE_PROCESS_ENV, None)   # (the forkserver's mark: not for a node's programs)
    _die_with_parent()
    _tune_malloc()
    _drop_inherited_keepalives()
    raise_fd_limit(fds_needed(len(spec["nodes"]), parent=False))   # the notebook checked it can
    node = _Node.__new__(_Node)
    try:
        node.__init__(spec, factory_blob, watch)  # type: ignore[misc]
        if spec.get("service"):
            from .child_async import run_async
            run_async(node, started=False)
        elif node.run() == "async":     # a plain node made its first HTTP call
            from .child_async import run_async
            run_async(node, started=True)
    except SystemExit:
        raise
    except BaseException as e:  # storage that cannot open, a full disk, or a bug in labkit
        error, cause = _describe(e, node)
        _emergency_journal(spec, traceback.format_exc(), error, cause)
        _last_words(node, error)
        os._exit(EXIT_INTERNAL)


def _describe(e: BaseException, node: Any) -> tuple[str, str]:
    """What went wrong, in words for the crash report: (error, cause)."""
    from ..errors import StorageError
    if isinstance(e, StorageError):
        return str(e), "opening its storage" if not hasattr(node, "ctx") else "writing its storage"
    if isinstance(e, OSError) and e.errno is not None:
        name = errno.errorcode.get(e.errno, "error")
        what = f"{name}: {e.strerror}"
        lost = ""
        for line in getattr(node, "jbuf", ()):   # a crash the journal could not take
            if '"kind":"crash"' in line:
                try:
                    lost = f"; the node had crashed: {json.loads(line).get('error')}"
                except ValueError:
                    pass
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            what += " -- the node cannot write its journal or storage (disk full or file-size limit)"
        return what + lost, "the labkit node runtime"
    return "labkit runtime error", "the labkit node runtime"


def _last_words(node: Any, error: str) -> None:
    """Tell the parent why this process ends, over the control socket: the disk may be too
    full for the journal to say it."""
    control = getattr(node, "control", None)
    if control is None:
        return
    try:
        control.send(_dumps({"op": "fatal", "error": error[:2000]}).encode(), node.zmq.NOBLOCK)
        node.zc.destroy(linger=300)   # wait (briefly) until it is sent
    except Exception:
        pass


def _emergency_journal(spec: dict, tb: str, error: str = "labkit runtime error",
                       cause: str = "the labkit node runtime") -> None:
    path = os.path.join(spec["dir"], f"j-{spec['id']}-{spec['incarnation']}.jsonl")
    t = (time.monotonic() - spec["t0"]) * 1000.0
    line = _dumps({"t": round(t, 3), "kind": "crash", "node": spec["id"], "error": error,
                   "cause": cause, "traceback": tb,
                   "incarnation": spec["incarnation"], "seed": spec["seed"]}) + "\n"
    try:
        append_line(path, line.encode())   # where the written part of the journal ends
    except OSError:
        pass


class _Node:
    """The node process: sockets, poll loop, and the Host a Context needs."""

    def __init__(self, spec: dict, factory_blob: bytes, watch: Any) -> None:
        import zmq

        from ..context import Context, node_rng
        from ..journal import Event, event_line
        from ..message import decode, wire
        from .network import NetworkModel
        from .scheduler import Scheduler
        from .base import is_client_id
        from .storage import FileBackedData, Storage

        self.zmq = zmq
        self.NOBLOCK = int(zmq.NOBLOCK)
        self.decode = decode
        self.wire = wire
        self.Event = Event
        self.event_line = event_line
        self.is_client_id = is_client_id
        self.spec = spec
        self.id: str = spec["id"]
        self.seed: int = spec["seed"]
        self.t0: float = spec["t0"]
        self.launched_at: float = spec["launched_at"]
        self.nodes: tuple[str, ...] = tuple(spec["nodes"])
        self._node_set = frozenset(self.nodes)
        self.watch = watch
        d = spec["dir"]
        self.timers = Scheduler()
        self.call_at = self.timers.call_at     # (the Host interface: see below)
        self.cancel = self.timers.cancel
        self.jbuf: list[str] = []
        self.out: list[tuple[str, str]] = []
        self.http_out: list[tuple] = []       # HTTP calls to start once the journal is written
        self.wants_async = False              # a ctx.http call: hand over to the asyncio loop
        self.poller: Any = None               # the loop's select.poll (set by run)
        self._io: dict[int, list] = {}        # fd -> [on readable, on writable] (add_reader, ...)
        self.round_hooks: list[Callable[[], None]] = []   # called at the end of every loop round
        self.has_crashed = False
        self.jid = _dumps(self.id)
        self.journal = JournalWriter(os.path.join(d, f"j-{self.id}-{spec['incarnation']}.jsonl"))
        self.journal_write = self.journal.write

        zc = self.zc = zmq.Context(io_threads=1)
        self.inbox = zc.socket(zmq.PULL)
        path = os.path.join(d, f"{self.id}.in")
        if os.path.exists(path):
            os.unlink(path)  # left by a killed earlier incarnation
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.inbox.bind("ipc://" + path)
        self.socks: dict[str, Any] = {}
        for peer in self.nodes:   # this node too: a message to itself goes through its inbox
            self.socks[peer] = self._push(os.path.join(d, f"{peer}.in"))
        self.client_sock = self._push(os.path.join(d, "client.in"))
        self.control = zc.socket(zmq.DEALER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.control.setsockopt(zmq.IDENTITY, f"{self.id}/{spec['incarnation']}".encode())
        self.control.connect("ipc://" + os.path.join(d, "control"))
        # The newest change the notebook announced to this node, and the newest applied.
        self.versions = ChangeVersions(os.path.join(d, "changes.v"), len(self.nodes), create=False)
        self.slots, self.slot = self.versions.slots, self.nodes.index(self.id)
        self.control_v = 0

        self.net = NetworkModel(self.nodes)
        self.net_rng = node_rng(self.seed, self.id, spec["incarnation"], "network")

        from .pickling import loads
        from ..guard import Guard
        factory = loads(factory_blob)
        guard = Guard(**spec["guard"]) if spec.get("guard") else None
        store = FileBackedData(os.path.join(d, f"storage-{self.id}.jsonl"), fsync=spec.get("fsync", False))
        self.ctx = Context(self, self.id, factory(), tuple(n for n in self.nodes if n != self.id),
                           incarnation=spec["incarnation"], storage=Storage(self.id, store.data, store.write),
                           offset_ms=spec["offset_ms"], rate=spec["rate"], guard=guard,
                           slow=spec.get("slow", 1.0))
        if store.repair is not None:   # a torn last write was cut: say so before anything else
            self.record(self.Event(self.now(), "repair", self.id, None, store.repair))
        if spec.get("service"):
            self._listen()
        self._handshake()

    def _listen(self) -> None:
        """A service listens before it says hello: the parent lets no node of a start run
        ``on_start`` until every one has said hello, so a node's ``on_start`` may call any
        service started with it. A connection made before the service's loop runs waits in
        the kernel's backlog and is served once its ``on_start`` is done."""
        import socket
        self.ssl_ctx = self.ctx._node.ssl_context(self.ctx)
        self.scheme = "https" if self.ssl_ctx is not None else "http"
        sock = self.listen_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        path = os.path.join(self.spec["dir"], f"{self.id}.port")
        with open(path + ".tmp", "w") as f:
            f.write(f"{self.scheme} {sock.getsockname()[1]} {self.spec['incarnation']}\n")
        os.replace(path + ".tmp", path)

    def _push(self, path: str) -> Any:
        s = self.zc.socket(self.zmq.PUSH)
        s.setsockopt(self.zmq.LINGER, 0)
        s.setsockopt(self.zmq.RECONNECT_IVL, 10)
        s.setsockopt(self.zmq.SNDHWM, 10000)
        s.connect("ipc://" + path)
        return s

    def _handshake(self) -> None:
        zmq = self.zmq
        self.control.send(_dumps({"op": "hello", "pid": os.getpid()}).encode())
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.watch.fileno(), zmq.POLLIN)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = dict(poller.poll(1000))
            if self.watch.fileno() in ready:
                self._parent_gone()
            if self.control in ready:
                cmd = json.loads(self.control.recv())
                if cmd.get("op") == "go":
                    self.net.load_state(cmd["net"])
                    self.control_v = cmd.get("v", 0)
                    return
        os._exit(0)  # the parent never answered: it is gone or stuck

    def _parent_gone(self) -> None:
        """The notebook died without closing the cluster: leave, and take the directory along
        (every node tries; whoever comes last finds little left)."""
        import shutil
        shutil.rmtree(self.spec["dir"], ignore_errors=True)
        os._exit(0)

    # -- Host interface ---------------------------------------------------------------------
    def now(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    # call_at(t, fn, *args) and cancel(entry) are the scheduler's own methods, bound in
    # __init__ (one Python frame less per RPC on the hot path).

    def transmit(self, ctx: Any, mid: str, dst: str, type: str, re: str | None, body_json: str) -> None:
        now = self.now()
        rule = too_large(type, body_json) if len(body_json) + len(type) >= _SURELY_SMALL else None
        if rule is not None:        # journaled without its body; never sent
            w = self.wire(self.id, dst, type, mid, re, now, "{}")
            self.jbuf.append(f'{{"t":{now:.3f},"kind":"send","node":{self.jid},{w[1:]}\n')
            self.jbuf.append(f'{{"t":{now:.3f},"kind":"drop","node":{_dumps(dst)},{w[1:-1]},"rule":{_dumps(rule)}}}\n')
            return
        w = self.wire(self.id, dst, type, mid, re, now, body_json)
        self.jbuf.append(f'{{"t":{now:.3f},"kind":"send","node":{self.jid},{w[1:]}\n')
        self.out.append((dst, w))

    def record(self, ev: Any) -> None:
        self.jbuf.append(self.event_line(ev) + "\n")

    def transmit_http(self, ctx: Any, mid: str, dst: str, type: str, body_json: str, call: Any) -> None:
        """An HTTP request (``ctx.http``): journaled now, made after the round's journal write
        by the asyncio loop (``labkit.runtime.child_async``), which this loop hands over to."""
        if not self.wants_async and "aiohttp" not in sys.modules:
            # A plain node's first call loads aiohttp here (~0.3 s, once), before the call's
            # timeout is armed: the wait is the import's, not the call's.
            import aiohttp  # noqa: F401
        now = self.now()
        w = self.wire(self.id, dst, type, mid, None, now, body_json)
        self.jbuf.append(f'{{"t":{now:.3f},"kind":"send","node":{self.jid},{w[1:]}\n')
        self.http_out.append((mid, dst, call, w, now))
        self.wants_async = True

    def cancel_http(self, ctx: Any, mid: str) -> None:
        pass   # (the asyncio loop cancels the call; here none has started yet)

    def is_destination(self, name: str) -> bool:
        return name in self._node_set or self.is_client_id(name)

    def crashed(self, ctx: Any, ev: Any) -> None:
        """The node crashed: write out the journal (crash line included) and what it sent
        before, then end the process here and now -- a handler that swallows the crash
        (``except BaseException``) and goes on looping must not keep a dead node running."""
        self.has_crashed = True
        self._flush()
        os._exit(EXIT_CRASHED)

    # -- file descriptors: a program's pipes (labkit.maelstrom.Program) ---------------------
    # The loop polls these fds with the node's inbox (one ``select.poll``: see ``run``) and
    # calls the callback on the loop's own thread, between messages: no threads, no races.
    def add_reader(self, fd: int, cb: Callable[[], None]) -> None:
        """Call ``cb()`` in the loop whenever ``fd`` is readable (or hung up)."""
        self._io_set(fd, 0, cb)

    def remove_reader(self, fd: int) -> None:
        self._io_set(fd, 0, None)

    def add_writer(self, fd: int, cb: Callable[[], None]) -> None:
        """Call ``cb()`` in the loop whenever ``fd`` is writable (or broken)."""
        self._io_set(fd, 1, cb)

    def remove_writer(self, fd: int) -> None:
        self._io_set(fd, 1, None)

    def _io_set(self, fd: int, i: int, cb: Callable[[], None] | None) -> None:
        if self.poller is None:
            raise RuntimeError("add_reader/add_writer: the node's loop is not running (a service or an HTTP-"
                               "calling node runs on asyncio)")
        entry = self._io.get(fd)
        if entry is None:
            if cb is None:
                return
            entry = self._io[fd] = [None, None]
        entry[i] = cb
        flags = (select.POLLIN if entry[0] is not None else 0) | (select.POLLOUT if entry[1] is not None else 0)
        if flags:
            self.poller.register(fd, flags)
        else:
            del self._io[fd]
            self.poller.unregister(fd)

    def _run_io(self, ready: list) -> None:
        io = self._io
        broken = select.POLLERR | select.POLLHUP | select.POLLNVAL
        readable, writable = select.POLLIN | broken, select.POLLOUT | broken
        for fd, ev in ready:
            entry = io.get(fd)
            if entry is None or self.has_crashed:
                continue
            if entry[0] is not None and ev & readable:
                entry[0]()
            entry = io.get(fd)
            if entry is not None and entry[1] is not None and ev & writable and not self.has_crashed:
                entry[1]()

    def add_round_hook(self, cb: Callable[[], None]) -> None:
        """Call ``cb()`` at the end of every loop round, before the round's journal lines and
        messages are written out (a program's stdin is written there: one write a round)."""
        self.round_hooks.append(cb)

    def program_group(self, pgid: int) -> None:
        """Tell the notebook the process group of this incarnation's program, so that kill,
        pause and resume reach the whole group (see ``labkit.runtime.processes``)."""
        d = self.spec["dir"]
        path = os.path.join(d, f"program-{self.id}.pgid")
        with open(path + ".tmp", "w") as f:
            f.write(f"{self.spec['incarnation']} {pgid}\n")
        os.replace(path + ".tmp", path)

    def notice(self, text: str) -> None:
        """Show ``text`` in the notebook: appended to the cluster's notices file, which the
        notebook prints from while the cluster runs (one write: notices never interleave)."""
        fd = os.open(os.path.join(self.spec["dir"], "notices"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            write_all(fd, (text.rstrip("\n") + "\n\0").encode())
        finally:
            os.close(fd)

    # -- messages ---------------------------------------------------------------------------
    def _journal_msg(self, kind: str, wire: str, rule: str | None = None) -> None:
        tail = wire[1:] if rule is None else f'{wire[1:-1]},"rule":{_dumps(rule)}}}'
        self.jbuf.append(f'{{"t":{self.now():.3f},"kind":"{kind}","node":{self.jid},{tail}\n')

    def _arrive_frame(self, frame: bytes) -> None:
        """A frame holds one message, or several joined by newlines (see ``_flush``)."""
        if b"\n" not in frame:
            self._arrive(frame)
            return
        for part in frame.split(b"\n"):
            if self.has_crashed:
                return
            self._arrive(part)

    def _arrive(self, frame: bytes) -> None:
        try:
            wire = frame.decode()
            msg = self.decode(wire)
            if msg.dst != self.id:
                raise ValueError(f"addressed to {msg.dst!r}, not {self.id!r}")
            if msg.src not in self._node_set and not self.is_client_id(msg.src):
                raise ValueError(f"from unknown sender {msg.src!r}")
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            self.ctx.count("malformed_frames")
            self.record(self.Event(self.now(), "malformed", self.id, None,
                                   {"error": str(e)[:200], "bytes": len(frame)}))
            return
        if msg.sent_at < self.launched_at:  # sent while this node was down: lost with it
            self._journal_msg("drop", wire, "node down")
            return
        src = msg.src
        if not self.net._faulty or src not in self._node_set:
            # No fault anywhere, or a client (clients sit outside the network model):
            # delivered now (_deliver, inline: the hot path).
            self.jbuf.append(f'{{"t":{self.now():.3f},"kind":"deliver","node":{self.jid},{wire[1:]}\n')
            self.ctx._deliver(msg)
            return
        delays, rule = self.net.route(src, self.id, self.net_rng)
        if rule is not None:
            self._journal_msg("drop", wire, rule)
            return
        now = self.now()
        if self.net.shaped:       # a bandwidth limit: wait for the link, then be sent
            tx = self.net.transmit(src, self.id, len(frame), now)
            if tx:
                delays = [tx + d for d in delays]
        for i, d in enumerate(delays):
            if d <= 0 and i == 0:
                self._deliver(wire, msg)
            else:
                self.call_at(now + d, self._deliver_later, src, wire)

    def _deliver_later(self, src: str, wire: str) -> None:
        rule = self.net.blocked(src, self.id)
        if rule is not None:
            self._journal_msg("drop", wire, rule)
            return
        self._deliver(wire, self.decode(wire))

    def _deliver(self, wire: str, msg: Any) -> None:
        self._journal_msg("deliver", wire)
        self.ctx._deliver(msg)

    def _control(self, raw: bytes) -> None:
        cmd = json.loads(raw)
        op = cmd.get("op")
        if op == "net":
            self.net.load_state(cmd["net"])
        elif op == "clock":
            self.ctx._set_clock(cmd["offset_ms"], cmd["rate"])
        elif op == "slow":
            self.ctx._set_slow(cmd["factor"])
        v = cmd.get("v")
        if isinstance(v, int) and v > self.control_v:
            self.control_v = v
        self.control.send(_dumps({"op": "ack", "v": v}).encode())

    def _catch_up(self) -> None:
        """Apply the changes the notebook announced in this node's slot before reading another
        message (``labkit.runtime.versions``). A command is sent before its slot is written,
        so one not yet here is on its way: wait for it (a ROUTER that dropped it -- more than
        its queue's worth of changes to a paused node -- is given up on after 2 s)."""
        slots, i, control = self.slots, self.slot, self.control
        deadline = None
        while slots[i] > self.control_v:
            if control.poll(50):
                self._control(control.recv())
            elif deadline is None:
                deadline = time.monotonic() + 2.0
            elif time.monotonic() > deadline:
                self.control_v = slots[i]
                return

    def _take(self, frame: bytes) -> bool:
        """One frame from the inbox: changes announced before it first, then its messages.
        Returns True when the frame held several (its sender is busy: more may wait)."""
        if self.slots[self.slot] > self.control_v:
            self._catch_up()
        if b"\n" in frame:
            self._arrive_frame(frame)
            return True
        if frame != WAKE:
            self._arrive(frame)
        return False

    def _watch_parent(self) -> None:
        """End the process when the notebook is gone (the watchdog pipe reports EOF), from a
        thread blocked in ``read``: the loop's wait is then one socket's, not a ``poll``."""
        import threading
        fd = self.watch.fileno()

        def wait() -> None:
            try:
                while os.read(fd, 64):      # the parent never writes: only EOF comes
                    pass
            except OSError:
                pass
            self._parent_gone()

        threading.Thread(target=wait, name="labkit-watchdog", daemon=True).start()

    def _flush(self) -> None:
        if self.jbuf:
            self.journal_write("".join(self.jbuf).encode())
            self.jbuf.clear()
        out = self.out
        if not out:
            return
        # One frame per destination per round: the round's messages to a peer (or to the
        # clients) joined by newlines, which JSON never contains raw. A busy node sends one
        # frame where it would send hundreds; the receiver splits it. (One message, the common
        # round -- a reply, a request -- needs no grouping.)
        socks, client_sock = self.socks, self.client_sock
        if len(out) == 1:
            dst, wire = out[0]
            by_sock: dict[Any, list[str]] = {socks.get(dst) or client_sock: [wire]}
        else:
            by_sock = {}
            for dst, wire in out:
                sock = socks.get(dst) or client_sock
                group = by_sock.get(sock)
                if group is None:
                    by_sock[sock] = [wire]
                else:
                    group.append(wire)
        out.clear()
        Again, NOBLOCK = self.zmq.Again, self.NOBLOCK
        for sock, wires in by_sock.items():
            data = "\n".join(wires).encode()
            for frame, held in ([(data, wires)] if len(data) <= MAX_FRAME_BYTES else split_frames(wires)):
                try:
                    sock.send(frame, NOBLOCK)
                except Again:
                    for wire in held:
                        self._journal_msg("drop", wire, "queue full")
        if self.jbuf:
            self.journal_write("".join(self.jbuf).encode())
            self.jbuf.clear()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> str | None:
        """The node's loop. Returns "async" when a ``ctx.http`` call asks for the asyncio loop.

        A round takes what waits in the inbox, runs due timers and round hooks, writes the
        round's journal lines and then sends its messages (``_flush``). How a round waits:

        * **one blocking ``recv``** on the inbox, with ``RCVTIMEO`` set to the next timer, when
          nothing else needs watching -- the common case. libzmq waits on the socket's command
          mailbox itself: two system calls per message, as a raw pyzmq ``recv`` pays. Changes
          from the notebook need no second socket to watch (``labkit.runtime.versions``), nor
          does the notebook's death (a thread reads the watchdog pipe: ``_watch_parent``).
        * **``select.poll``** on the inbox's ``zmq.FD`` and the node's program pipes
          (``add_reader``; ``labkit.maelstrom``). ``zmq.FD`` is edge-triggered (libzmq's
          ``zmq_getsockopt``, ZMQ_FD): after it fires, ``EVENTS`` says whether a frame waits,
          and only a drained socket may be slept on.

        A busy inbox is drained, up to ``MAX_BATCH`` frames a round, so a round's messages to
        one peer leave as one frame. Whether it is busy is asked (``EVENTS``: a system call)
        after a frame that held several messages, after a poll, when a timer is due, and every
        16th frame -- not after every frame, which a ping-pong would pay for every time."""
        zmq = self.zmq
        poller = self.poller = select.poll()
        inbox = self.inbox
        # Plain ints, and the socket's own ``get``/``set``: ``getsockopt(EVENTS)`` wraps the
        # answer in an enum and ``& POLLIN`` makes another (~1 us a message on this hot path).
        NOBLOCK, Again, EVENTS, POLLIN = int(zmq.NOBLOCK), zmq.Again, int(zmq.EVENTS), int(zmq.POLLIN)
        RCVTIMEO = int(zmq.RCVTIMEO)
        inbox_get, inbox_set, recv = inbox.get, inbox.set, inbox.recv
        inbox_fd = inbox_get(zmq.FD)
        poller.register(inbox_fd, select.POLLIN)
        poll = poller.poll
        take = self._take
        timers = self.timers
        heap = timers.heap          # (timers.next_time() and pop_due(), inline on the hot path)
        self._watch_parent()
        survivors = self.gc_setup()
        self.ctx._start()
        self._flush()
        if not self.has_crashed:
            self.control.send(_dumps({"op": "started"}).encode())
        rcvtimeo = -1              # the inbox's RCVTIMEO (ms; -1: none, ZeroMQ's default)
        frames = 0
        busy = True                # frames may wait: ask EVENTS before sleeping on the socket
        while not self.has_crashed and not self.wants_async:
            if heap:
                wait = heap[0][0] - self.now()
                timeout = 0 if wait <= 0 else min(int(wait) + 1, 3_600_000)
            else:
                timeout = -1
            if self._io and not busy:       # program pipes to watch too: one poll for all
                ready = poll(None if timeout < 0 else timeout)
                busy = any(fd == inbox_fd for fd, _ in ready)
                if ready and not self.has_crashed:
                    self._run_io(ready)
            if busy or timeout == 0:        # drain what waits, without sleeping
                busy = False
                n = 0
                while inbox_get(EVENTS) & POLLIN:
                    try:
                        frame = recv(NOBLOCK)
                    except Again:  # rare: another reader cannot exist, but be safe
                        break
                    take(frame)
                    n += 1
                    if self.has_crashed or n >= MAX_BATCH:   # the rest next round (after timers)
                        busy = True
                        break
            elif not self._io:
                if timeout != rcvtimeo:
                    inbox_set(RCVTIMEO, timeout)
                    rcvtimeo = timeout
                try:
                    frame = recv()
                except Again:               # the next timer is due
                    frame = None
                if frame is not None:
                    busy = take(frame)
                    frames += 1
                    if not frames & 15:
                        busy = True
            if heap:
                now = self.now()
                while heap and heap[0][0] <= now and not self.has_crashed:
                    entry = timers.pop_due(now)
                    if entry is None:
                        break
                    entry[2](*entry[3])
            if self.round_hooks and not self.has_crashed:
                for hook in self.round_hooks:
                    hook()
            self._flush()
            if survivors[0]:
                survivors[0] = False
                gc.freeze()
        if self.wants_async and not self.has_crashed:
            return "async"
        self._flush()
        os._exit(EXIT_CRASHED)

    def gc_setup(self) -> list:
        """Tune the collector for a long-lived node; returns the flag a loop checks to freeze."""
        gc.freeze()  # start-up objects never need collecting: cheaper collections from here on
        gc.set_threshold(50_000, 1, gc.get_threshold()[2])   # a young generation-1: see below
        # Objects that survive an older-generation collection are long-lived (a Raft log, a
        # store): freeze them after it, so later collections scan only what is new and a
        # node's GC pause stays short as its state grows (an 80 ms pause on a follower with a
        # large log was enough to start a needless election). The cost: cyclic garbage made
        # later out of frozen objects is never collected -- rare in node state.
        survivors = [False]

        def after_collection(phase: str, info: dict) -> None:
            if phase == "stop" and info["generation"] >= 1:
                survivors[0] = True

        gc.callbacks.append(after_collection)
        self.survivors = survivors
        return survivors
