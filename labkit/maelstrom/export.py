"""Run a ``labkit.Node`` class as a Maelstrom program: stdin/stdout, one JSON message a line.

    python -m labkit.maelstrom.export mymodule:MyNode          # an importable module
    python -m labkit.maelstrom.export path/to/nodes.py:MyNode  # a file
    python -m labkit.maelstrom.export path/to/nodes.py         # its one Node subclass

So a node written in the course can be run by Maelstrom itself (``maelstrom test -w echo
--bin export.sh``) or by ``labkit.Program``. The node gets a ``ctx`` backed by the process:
``ctx.send``/``reply``/``rpc`` write Maelstrom lines to stdout (labkit message ids become
integer ``msg_id``s and back; ``in_reply_to`` maps both ways), timers and ``ctx.sleep`` run
on the wall clock, ``ctx.storage`` is in memory (a Maelstrom node has no disk), ``ctx.log``
and crash reports go to stderr. The node starts at Maelstrom's ``init``: ``ctx.id`` is
``node_id``, ``ctx.peers`` the other ``node_ids``; ``on_start`` runs, then ``init_ok`` is
sent. A crash ends the process with exit code 1 (Maelstrom then sees the node die).
``ctx.http`` is not available. Options: ``--seed N`` seeds ``ctx.rng`` (default: random).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import random
import selectors
import sys
import time
from typing import Any, Callable

from ..context import Context, crash_report
from ..errors import LabkitError
from ..journal import Event
from ..message import Message, quote
from ..node import Node
from ..runtime.scheduler import Scheduler
from ..runtime.storage import Storage
from . import protocol

__all__ = ["load_node_class", "StdioHost", "main"]


def _dotted_name(path: str) -> str | None:
    """``a/b/c.py`` inside packages ``a`` and ``a.b`` (each with an ``__init__.py``) -> ``a.b.c``."""
    parts = [os.path.splitext(os.path.basename(path))[0]]
    d = os.path.dirname(path)
    while os.path.isfile(os.path.join(d, "__init__.py")):
        parts.insert(0, os.path.basename(d))
        d = os.path.dirname(d)
    return ".".join(parts) if len(parts) > 1 else None


def load_node_class(spec: str) -> type[Node]:
    """``module:Class``, ``file.py:Class`` or ``file.py`` (its one Node subclass) -> the class.
    Raises ``LabkitError`` saying what was not found."""
    target, _, name = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    if target.endswith(".py") or os.path.exists(target):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise LabkitError(f"no such file {path!r}")
        modname = os.path.splitext(os.path.basename(path))[0]
        sys.path.insert(0, os.path.dirname(path))
        mspec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
        sys.modules[modname] = module
        try:
            mspec.loader.exec_module(module)  # type: ignore[union-attr]
        except ImportError as e:
            if "relative import" not in str(e):
                raise
            dotted = _dotted_name(path)
            raise LabkitError(f"{target} is part of a package (it uses a relative import), so it cannot be "
                              f"loaded as a file: give it as a module, "
                              f"{dotted or 'package.module'}:{name or 'ClassName'} (run from the directory "
                              f"that holds the package, or put that directory on PYTHONPATH)") from None
    else:
        module = importlib.import_module(target)
    if name:
        cls = getattr(module, name, None)
        if cls is None:
            raise LabkitError(f"{target} has no {name!r}")
    else:
        found = [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, Node)
                 and c.__module__ == module.__name__]
        if len(found) != 1:
            raise LabkitError(f"{target} defines {len(found)} labkit.Node classes "
                              f"({[c.__name__ for c in found]}): name one, as {target}:ClassName")
        cls = found[0]
    if not (inspect.isclass(cls) and issubclass(cls, Node)):
        raise LabkitError(f"{spec} is {cls!r}, not a labkit.Node subclass")
    return cls


class StdioHost:
    """The ``Host`` of a ``Context`` in an exported program: stdout for the network, the wall
    clock, a timer heap, stderr for the journal's logs and crashes."""

    def __init__(self, factory: Callable[[], Node], seed: int, out_fd: int = 1, err: Any = None) -> None:
        self.factory, self.seed, self.out_fd = factory, seed, out_fd
        self.err = err if err is not None else sys.stderr
        self.t0 = time.monotonic()
        self.timers = Scheduler()
        self.out: list[str] = []
        self.ctx: Context | None = None
        self.node_ids: list[str] = []
        self.next_id = 0
        self.mine: dict[int, str] = {}      # msg_id we sent -> the labkit id it was
        self.theirs: dict[str, int] = {}    # labkit id we gave an incoming message -> its msg_id
        self.seq = 0

    # -- Host ------------------------------------------------------------------------------
    def now(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> list:
        return self.timers.call_at(t, fn, *args)

    def cancel(self, entry: list) -> None:
        self.timers.cancel(entry)

    def transmit(self, ctx: Any, mid: str, dst: str, type: str, re: str | None, body_json: str) -> None:
        self.next_id += 1
        k = self.next_id
        self.mine[k] = mid
        if len(self.mine) > 100_000:
            del self.mine[next(iter(self.mine))]
        head = f'{{"type":{quote(type)},"msg_id":{k}'
        r = self.theirs.get(re) if re is not None else None
        if r is not None:
            head += f',"in_reply_to":{r}'
        body = head + ("}" if body_json == "{}" else "," + body_json[1:])
        self.out.append(f'{{"src":{quote(ctx.id)},"dest":{quote(dst)},"body":{body}}}')

    def record(self, ev: Event) -> None:
        if ev.kind == "log":
            print(f"{ev.node}: {ev.get('text')}", file=self.err, flush=True)

    def is_destination(self, name: str) -> bool:
        return isinstance(name, str) and bool(name)

    def crashed(self, ctx: Any, ev: Event) -> None:
        self.flush()
        print(crash_report(ev), file=self.err, flush=True)
        os._exit(1)

    def _no_http(self, *args: Any) -> None:
        raise LabkitError("ctx.http is not available in a node exported as a Maelstrom program "
                          "(Maelstrom carries JSON messages only): use ctx.rpc")

    transmit_http = respond_http = _no_http

    def cancel_http(self, ctx: Any, mid: str) -> None:
        pass

    def handler_failed(self, ctx: Any, ev: Event) -> None:
        print(f"{ev.node}: handler error: {ev.get('error')}", file=self.err, flush=True)

    # -- the program -------------------------------------------------------------------------
    def flush(self) -> None:
        if self.out:
            data = ("\n".join(self.out) + "\n").encode()
            self.out.clear()
            view = memoryview(data)
            while view:
                view = view[os.write(self.out_fd, view):]

    def handle_line(self, line: bytes) -> None:
        try:
            env = protocol.parse_envelope(line, node=self.ctx.id if self.ctx else "?")
        except protocol.EnvelopeError as e:
            print(f"maelstrom export: skipped a bad input line: {e}", file=self.err, flush=True)
            return
        type_, mid, re, rest = protocol.split_body(env["body"])
        if type_ == "init" and self.ctx is None:
            self.init(env, mid)
            return
        if self.ctx is None:
            print(f"maelstrom export: {type_!r} before init, skipped", file=self.err, flush=True)
            return
        self.seq += 1
        # labkit's id form, "<sender>.<incarnation>.<number>": the number is the sender's
        # msg_id (Maelstrom numbers each sender's messages, as labkit numbers a client's), so a
        # node reading a client's sequence from its ids (RaftKV.session_of) works exported too
        lid = f"{env['src']}.0.{mid}" if mid is not None else f"{env['src']}.u.{self.seq}"
        if mid is not None:
            self.theirs[lid] = mid
            if len(self.theirs) > 100_000:
                del self.theirs[next(iter(self.theirs))]
        self.ctx._deliver(Message(env["src"], self.ctx.id, type_, lid, rest,
                                  self.mine.get(re) if re is not None else None, self.now()))

    def init(self, env: dict, mid: int | None) -> None:
        body = env["body"]
        me, ids = body.get("node_id"), body.get("node_ids")
        if not isinstance(me, str) or not isinstance(ids, list):
            print(f"maelstrom export: init needs node_id and node_ids, got {body}", file=self.err, flush=True)
            return
        self.node_ids = [str(n) for n in ids]
        self.ctx = Context(self, me, self.factory(), tuple(n for n in self.node_ids if n != me),
                           incarnation=1, storage=Storage(me), guard=None)
        self.ctx._start()
        reply = {"type": "init_ok"}
        if mid is not None:
            reply["in_reply_to"] = mid
        self.out.append(json.dumps({"src": me, "dest": env["src"], "body": reply}, separators=(",", ":")))

    def run(self, in_fd: int = 0) -> None:
        """Serve until stdin closes."""
        sel = selectors.DefaultSelector()
        sel.register(in_fd, selectors.EVENT_READ)
        buf = b""
        timers = self.timers
        while True:
            due = timers.next_time()
            timeout = None if due is None else max(0.0, (due - self.now()) / 1000.0)
            if sel.select(timeout):
                data = os.read(in_fd, 1 << 16)
                if not data:
                    break
                lines = (buf + data).split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if line.strip():
                        self.handle_line(line)
            now = self.now()
            while (entry := timers.pop_due(now)) is not None:
                entry[2](*entry[3])
            self.flush()
        self.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.maelstrom.export",
                                 description="Run a labkit.Node class as a Maelstrom program on stdin/stdout.")
    ap.add_argument("node", help="module:Class, file.py:Class, or file.py (its one labkit.Node subclass)")
    ap.add_argument("--seed", type=int, default=None, help="seed of ctx.rng (default: random)")
    args = ap.parse_args(argv)
    try:
        cls = load_node_class(args.node)
    except (LabkitError, ImportError, SyntaxError) as e:
        print(f"labkit.maelstrom.export: cannot load {args.node!r}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    StdioHost(cls, seed).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
