"""The bridge between one node process and the program it runs (``labkit.Program``).

Runs in the node process, on its loop's thread (see ``labkit.runtime.child``: ``add_reader``
and ``add_writer`` call back between messages). Owns the program's pipes, the id maps and
the program's process group; see ``labkit.maelstrom.program`` for the behaviour.
"""
from __future__ import annotations

import errno
import json
import json.scanner
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any

from ..errors import MessageError, UnknownNode
from ..journal import Event
from ..message import MAX_MESSAGE_BYTES, dumps as _dumps, quote
from . import protocol
from .program import ProgramError

#: The last stderr lines kept, shown when the program exits or fails to start.
STDERR_TAIL = 40
#: stderr lines journaled per second (``log`` events); the rest are counted.
STDERR_JOURNALED_PER_S = 200
#: Notices (stderr lines, bad output) printed in the notebook per second per node.
NOTICES_PER_S = 10
#: How many ids each map keeps (oldest forgotten first).
MAX_IDS = 100_000
#: At most this much stdout is read per loop round, so messages keep flowing both ways.
READ_PER_ROUND = 1 << 20
#: Pending stdin (bytes) beyond which messages for a program that does not read are dropped.
MAX_PENDING_STDIN = 64 << 20
#: The init message's sender (Maelstrom's controller is a client).
INIT_SRC = "c0"

# The group's leader: ignores interrupts, waits for EOF on the pipe only the node process
# holds (its end closes however the node process ends), then SIGKILLs the whole group.
_WATCHDOG = "trap '' INT HUP TERM; while read -r _; do :; done; kill -KILL 0"
_PYLIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib")


_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]
_INT_OR_NONE = (int, type(None))


def _popen(argv: list[str], pgid: int, **kw: Any) -> subprocess.Popen:
    """Start ``argv`` in process group ``pgid`` (0: a new group it leads). Python >= 3.11 does
    the setpgid between fork and exec in C; 3.10 needs a preexec_fn (Python code in the forked
    child of a process with ZeroMQ's threads: os.setpgid only, no locks taken)."""
    if sys.version_info >= (3, 11):
        return subprocess.Popen(argv, process_group=pgid, **kw)
    return subprocess.Popen(argv, preexec_fn=lambda: os.setpgid(0, pgid), **kw)  # noqa: PLW1509


def _short(line: str, n: int = protocol.MAX_LINE_SHOWN) -> str:
    return line if len(line) <= n else line[:n] + f"... ({len(line):,} chars)"


class Bridge:
    def __init__(self, ctx: Any, host: Any, argv: list[str], *, env: dict, cwd: str | None,
                 init_timeout: float, show_stderr: bool) -> None:
        self.ctx, self.host, self.argv = ctx, host, argv
        self.id: str = ctx.id
        self.qid = quote(ctx.id)
        self.env, self.cwd, self.init_timeout, self.show_stderr = env, cwd, init_timeout, show_stderr
        self.cmd_text = shlex.join(argv)
        self.ready = False
        self.next_id = 1                       # Maelstrom msg_ids this node hands its program
        self.in_ids: dict[int, str] = {}       # msg_id we gave -> the labkit id it was
        self.out_ids: dict[str, int] = {}      # labkit id of a program's message -> its msg_id
        self.wbuf: list[bytes] = []
        self.wlen = 0
        self.writing = False
        self.out_buf = b""
        self.skip_line = False                 # inside an over-long line: drop until its end
        self.err_buf = b""
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.win_t = time.monotonic()
        self.win_journaled = self.win_shown = 0
        self.unjournaled = self.unshown = 0
        self.win_pending = False
        self.dropped_in = 0
        self.init_ok_unmatched = False         # it sent an init_ok without the init's msg_id

    # -- starting ---------------------------------------------------------------------------
    def start(self) -> None:
        r, self.watch_w = os.pipe()          # both ends close-on-exec: only the watchdog gets r
        try:
            wd = _popen(["/bin/sh", "-c", _WATCHDOG], 0, stdin=r, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, close_fds=True)
        finally:
            os.close(r)
        self.pgid = wd.pid
        self.host.program_group(self.pgid)   # before the program exists: kill always finds it
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = _PYLIB + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self.proc = _popen(self.argv, self.pgid, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=self.cwd, env=env, close_fds=True, bufsize=0)
        except OSError as e:
            self.fail(f"{self.id}: cannot start its program `{self.cmd_text}`: {e.strerror or e}", "on_start")
        self.fin, self.fout, self.ferr = (self.proc.stdin.fileno(), self.proc.stdout.fileno(),
                                          self.proc.stderr.fileno())
        for fd in (self.fin, self.fout, self.ferr):
            os.set_blocking(fd, False)
        t0 = time.monotonic()
        self.ctx.log(f"program started (pid {self.proc.pid}, group {self.pgid}): {self.cmd_text}")
        node_ids = [n for n in getattr(self.host, "nodes", (self.id, *self.ctx.peers))
                    if n not in protocol.SERVICE_IDS]
        self.init_id = self.next_id
        self.next_id += 1
        self.write(protocol.envelope_line(INIT_SRC, self.id, {
            "type": "init", "msg_id": self.init_id, "node_id": self.id, "node_ids": node_ids}).encode())
        self.flush_stdin()
        poll = select.poll()
        poll.register(self.fout, select.POLLIN)
        poll.register(self.ferr, select.POLLIN)
        deadline = t0 + self.init_timeout / 1000.0
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                deadline_is = ("Maelstrom's deadline" if self.init_timeout == 10_000
                               else "Program(init_timeout=...); Maelstrom's is 10 s")
                unmatched = (" (it sent an init_ok, but without \"in_reply_to\" set to the init's msg_id)"
                             if self.init_ok_unmatched else "")
                self.fail(f"{self.id}: its program `{self.cmd_text}` did not answer init with init_ok{unmatched} within "
                          f"{self.init_timeout / 1000:g} s ({deadline_is}). A Maelstrom node must reply "
                          f"{{\"type\": \"init_ok\", \"in_reply_to\": <init's msg_id>}} on stdout, one JSON "
                          f"object per line, flushed", "on_start")
            if self.wbuf:                     # init (and anything after it) not all written yet
                poll.register(self.fin, select.POLLOUT)
            for fd, _ in poll.poll(max(1, int(left * 1000))):
                if fd == self.fin:
                    self.flush_stdin()
                    if not self.wbuf:
                        poll.unregister(self.fin)
                elif fd == self.ferr:
                    self.read_stderr()
                else:
                    self.read_stdout()
        self.ctx.log(f"program answered init_ok after {(time.monotonic() - t0) * 1000:.1f} ms")
        self.host.add_reader(self.fout, self.on_stdout)
        self.host.add_reader(self.ferr, self.on_stderr)
        self.host.add_round_hook(self.end_of_round)
        if self.wbuf:
            self.flush_stdin()

    # -- to the program ---------------------------------------------------------------------
    def deliver(self, msg: Any) -> None:
        """A labkit message for this node: to the program's stdin, as a Maelstrom line."""
        k = self.next_id
        self.next_id = k + 1
        ids = self.in_ids
        ids[k] = msg.id
        if len(ids) > MAX_IDS:
            del ids[next(iter(ids))]
        re = self.out_ids.get(msg.in_reply_to) if msg.in_reply_to is not None else None
        b = msg.body
        if "type" in b or "msg_id" in b or "in_reply_to" in b:      # fields the envelope sets: drop them
            line = protocol.envelope_line(msg.src, self.id, protocol.join_body(msg.type, b, k, re))
        else:                                                     # the hot path: no dict is rebuilt
            bj = _dumps(b)
            head = f'{{"src":{quote(msg.src)},"dest":{self.qid},"body":{{"type":{quote(msg.type)},"msg_id":{k}'
            if re is not None:
                head = f"{head},\"in_reply_to\":{re}"
            line = head + ("}}\n" if bj == "{}" else f",{bj[1:]}}}\n")
        self.write(line.encode())        # written at the end of the loop's round: one write a round

    def write(self, data: bytes) -> None:
        if self.wlen + len(data) > MAX_PENDING_STDIN:
            self.dropped_in += 1
            if self.dropped_in == 1:
                self.notice(f"labkit: {self.id}: its program has not read its stdin for a while "
                            f"({self.wlen / 2**20:.0f} MB waiting): messages to it are dropped until it reads")
            self.ctx.count("program_stdin_dropped")
            return
        self.wbuf.append(data)
        self.wlen += len(data)

    def end_of_round(self) -> None:
        if self.wbuf and not self.writing:
            self.flush_stdin()

    def flush_stdin(self) -> None:
        if not self.wbuf:
            return
        wbuf = self.wbuf
        if len(wbuf) == 1:
            data, later = wbuf[0], []
        else:                              # a pipe takes 64 KB at a time: join no more than 256 KB
            size, i = 0, 0
            while i < len(wbuf) and size < 1 << 18:
                size += len(wbuf[i])
                i += 1
            data, later = b"".join(wbuf[:i]), wbuf[i:]
        try:
            n = os.write(self.fin, data)
        except BlockingIOError:
            n = 0
        except OSError as e:               # EPIPE: the program is gone; its stdout EOF says so
            if e.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self.wbuf, self.wlen = [], 0
            self._writer(False)
            return
        rest = data[n:]
        self.wbuf = ([rest] if rest else []) + later
        self.wlen -= n
        if not self.wbuf:
            self.wlen = self.dropped_in = 0
        self._writer(bool(self.wbuf))

    def _writer(self, on: bool) -> None:
        if on != self.writing and self.ready:
            if on:
                self.host.add_writer(self.fin, self.flush_stdin)
            else:
                self.host.remove_writer(self.fin)
            self.writing = on

    # -- from the program -------------------------------------------------------------------
    def on_stdout(self) -> None:
        self.ctx._run(self.read_stdout, (), "reading its program's output")

    def on_stderr(self) -> None:
        self.ctx._run(self.read_stderr, (), "reading its program's stderr")

    def read_stdout(self) -> None:
        chunks, total, eof = [], 0, False
        while total < READ_PER_ROUND:
            try:
                b = os.read(self.fout, 1 << 16)
            except BlockingIOError:
                break
            if not b:
                eof = True
                break
            chunks.append(b)
            total += len(b)
        if chunks:
            data = self.out_buf + b"".join(chunks)
            if self.skip_line:                 # the rest of an over-long line, already reported: drop it
                nl = data.find(b"\n")
                data = b"" if nl < 0 else data[nl + 1:]
                self.skip_line = nl < 0
            lines = data.split(b"\n")
            self.out_buf = lines.pop()
            for line in lines:
                if line.strip():
                    self.handle_line(line)
            if len(self.out_buf) > MAX_MESSAGE_BYTES:
                head = self.out_buf[:protocol.MAX_LINE_SHOWN].decode(errors="replace")
                self.bad(head, "too long", f"{self.id}: its program wrote a line longer than labkit's limit of "
                         f"{MAX_MESSAGE_BYTES:,} bytes per message, starting {head!r}... The whole line was "
                         f"skipped; the node goes on")
                self.out_buf, self.skip_line = b"", True
        if eof:
            self.exited()

    def handle_line(self, line: bytes) -> None:
        # The hot path parses and checks inline; anything unusual goes to parse_envelope, which
        # accepts what JSON allows (spaces around the object) and words what is wrong.
        env: Any = None
        try:
            text = line.decode()
            env, end = _scan(text, 0)
            if end != len(text):
                env = None
        except (StopIteration, ValueError, RecursionError):
            pass
        body = env.get("body") if env.__class__ is dict else None
        if (body.__class__ is not dict or env.get("dest").__class__ is not str or not env["dest"]
                or body.get("type").__class__ is not str or not body["type"]
                or body.get("msg_id", 0).__class__ not in _INT_OR_NONE
                or body.get("in_reply_to", 0).__class__ not in _INT_OR_NONE):
            try:
                env = protocol.parse_envelope(line, node=self.id)
            except protocol.EnvelopeError as e:
                self.bad(e.line, e.reason, str(e))
                return
            body = env["body"]
        if env["src"] != self.id:
            self.bad(line.decode(), f"'src' is {env['src']!r}, but this node is {self.id!r}")
            return
        rest = body                            # the labkit body: what is left of the Maelstrom one
        type_ = rest.pop("type")
        mid = rest.pop("msg_id", None)
        re = rest.pop("in_reply_to", None)
        if not self.ready:
            if re == self.init_id and type_ in ("init_ok", "error"):
                if type_ == "error":
                    self.fail(f"{self.id}: its program answered init with an error: {rest}", "on_start")
                self.ready = True
                return
            if type_ == "init_ok":              # a reply that does not say what it answers
                self.bad(line.decode(), f"an init_ok must carry \"in_reply_to\": {self.init_id}, the msg_id of "
                                        f"the init it answers; this one has {re!r}")
                self.init_ok_unmatched = True
                return
        elif re == self.init_id and type_ == "init_ok":
            return                          # a second init_ok: nothing to send
        dest = env["dest"]
        lre = self.in_ids.get(re) if re is not None else None
        try:
            lid = self.ctx._send(dest, type_, lre, rest)
        except UnknownNode:
            hint = (f"; this cluster runs no {dest} service: labkit.maelstrom.test(..., services=[{dest!r}]) "
                    f"or --services {dest} adds it (Maelstrom always runs all four), or put it in the Cluster"
                    if dest in protocol.SERVICE_IDS else "")
            self.bad(line.decode(), f"it is addressed to {dest!r}, which is no node of this cluster "
                                    f"(nodes: {', '.join(self.host.nodes)}; clients c1, c2, ...){hint}")
            return
        except MessageError as e:
            self.bad(line.decode(), str(e))
            return
        if mid is not None and lid:
            out = self.out_ids
            out[lid] = mid
            if len(out) > MAX_IDS:
                del out[next(iter(out))]

    def bad(self, line: str, reason: str, text: str | None = None) -> None:
        """A stdout line that was skipped: journaled (``malformed``) and shown in the notebook."""
        if text is None:
            text = (f"{self.id}: its program wrote a line that is not a valid Maelstrom message ({reason}): "
                    f"{_short(line)!r}. The line was skipped; the node goes on.")
        self.ctx.count("program_bad_lines")
        self.host.record(Event(self.host.now(), "malformed", self.id, None,
                               {"error": text, "line": _short(line, 2000), "source": "program stdout"}))
        self.notice("labkit: " + text)

    def read_stderr(self) -> None:
        while True:
            try:
                b = os.read(self.ferr, 1 << 16)
            except (BlockingIOError, OSError):
                return
            if not b:
                if self.err_buf:
                    self.stderr_line(self.err_buf)
                    self.err_buf = b""
                return
            lines = (self.err_buf + b).split(b"\n")
            self.err_buf = lines.pop()
            if len(self.err_buf) > 1 << 16:
                lines.append(self.err_buf)
                self.err_buf = b""
            for line in lines:
                self.stderr_line(line)

    def stderr_line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        self.tail.append(line)
        self._window()
        if self.win_journaled < STDERR_JOURNALED_PER_S:
            self.win_journaled += 1
            self.host.record(Event(self.host.now(), "log", self.id, None, {"text": line, "stream": "stderr"}))
        else:
            self.unjournaled += 1
            self._window_later()
        if self.show_stderr:
            self.notice(f"{self.id} stderr: {_short(line)}")

    def _window_later(self) -> None:
        """Say what a window left out when it ends, even if the program writes nothing more."""
        if not self.win_pending:
            self.win_pending = True
            self.host.call_at(self.host.now() + (self.win_t + 1.0 - time.monotonic()) * 1000.0 + 1.0,
                              self._window_due)

    def _window_due(self) -> None:
        self.win_pending = False
        self._window()

    def _window(self) -> None:
        t = time.monotonic()
        if t - self.win_t < 1.0:
            return
        self.win_t = t
        self.win_journaled = self.win_shown = 0
        if self.unjournaled:
            self.host.record(Event(self.host.now(), "log", self.id, None, {
                "text": f"({self.unjournaled} stderr lines not journaled: at most {STDERR_JOURNALED_PER_S} a second are)",
                "stream": "stderr"}))
            self.unjournaled = 0
        if self.unshown:
            n, self.unshown = self.unshown, 0
            self.notice(f"labkit: {self.id}: {n} more stderr/output notices not shown (at most {NOTICES_PER_S} "
                        f"a second are); cluster.journal has the stderr lines as log events")

    def notice(self, text: str) -> None:
        self._window()
        if self.win_shown >= NOTICES_PER_S:
            self.unshown += 1
            self._window_later()
            return
        self.win_shown += 1
        self.host.notice(text)

    # -- the end ----------------------------------------------------------------------------
    def exited(self) -> None:
        """stdout reached EOF: the program ended (or closed its stdout)."""
        self.read_stderr()
        try:
            rc = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            how = "closed its stdout (so it can send nothing more; it was killed)"
        elif rc < 0:
            try:
                how = f"was killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                how = f"was killed by signal {-rc}"
        else:
            how = f"exited with code {rc}"
        when = "" if self.ready else " before it answered init"
        self.fail(f"{self.id}: its program `{self.cmd_text}` {how}{when}",
                  "running its program" if self.ready else "on_start")

    def fail(self, text: str, cause: str) -> None:
        """End this node: kill the program's group, crash with ``text`` and the stderr tail."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            pass
        tail = "\n".join(self.tail)
        tb = text + (f"\n--- the last {len(self.tail)} lines of its stderr ---\n{tail}" if self.tail
                     else "\n(its stderr was empty)")
        err = ProgramError(text)
        self.ctx._crash(err, cause, tb)       # the processes runtime ends the node process here
        raise err
