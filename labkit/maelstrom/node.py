"""A small library for writing Maelstrom programs in Python: stdlib only, any python3 >= 3.8.

Like the Python demo library that ships with Maelstrom (jepsen-io/maelstrom, ``demo/python``):
handlers by message type, ``reply``, ``send``, ``rpc`` with a timeout, ``node_id`` and
``node_ids``. A program run by ``labkit.Program`` imports it as ``from maelstrom import
Node`` (labkit puts it on the program's ``PYTHONPATH``); to run one under Maelstrom itself,
copy this file next to the program as ``maelstrom.py``.

    from maelstrom import Node

    node = Node()

    @node.on("echo")
    def echo(msg):
        node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

    node.run()

A message is Maelstrom's dict ``{"src", "dest", "body"}``. Handlers may be plain functions or
``async def``: an async handler can ``await node.rpc(dest, body)`` (the reply message, or
``RPCError``; ``RPCError(0)`` on timeout) and ``await asyncio.sleep(s)``. A handler that
raises ``RPCError`` answers the request with that error; any other exception is logged to
stderr and answered with error 13 (crash). A request type with no handler is answered with
error 10 (not-supported). ``init`` is handled here: ``node_id`` and ``node_ids`` are set,
the ``on_init`` hooks run, and ``init_ok`` is sent. Times are milliseconds. stdout carries
only protocol lines, written once per loop turn; log with ``node.log`` (stderr).
"""
from __future__ import annotations

import asyncio
import inspect
import json
import json.scanner
import os
import sys
import traceback

__all__ = ["Node", "RPCError", "ERROR_CODES"]

_encode = json.JSONEncoder(separators=(",", ":")).encode    # one encoder (json.dumps builds one a call)
_decode = json.JSONDecoder().decode
_scan = json.scanner.make_scanner(json.JSONDecoder())      # the decoder's core, without its regexes


def _parse(text: str):
    """One JSON line (``json.loads``, minus the whitespace checks when there is none)."""
    try:
        obj, end = _scan(text, 0)
        if end == len(text):
            return obj
    except StopIteration:
        pass
    return _decode(text)

#: Maelstrom's standard error codes (doc/protocol.md): code -> (name, definite).
ERROR_CODES = {0: ("timeout", False), 1: ("node-not-found", True), 10: ("not-supported", True),
               11: ("temporarily-unavailable", True), 12: ("malformed-request", True), 13: ("crash", False),
               14: ("abort", True), 20: ("key-does-not-exist", True), 21: ("key-already-exists", True),
               22: ("precondition-failed", True), 30: ("txn-conflict", True)}


class RPCError(Exception):
    """A Maelstrom error: ``code`` (see ``ERROR_CODES``) and ``text``. Raise it in a handler
    to answer with it; ``await node.rpc(...)`` raises it for an error reply or a timeout."""

    def __init__(self, code: int, text: str = "") -> None:
        self.code, self.text = code, text or ERROR_CODES.get(code, ("error", False))[0]
        super().__init__(f"error {code}: {self.text}")

    @property
    def definite(self) -> bool:
        """True if the operation certainly did not happen."""
        return ERROR_CODES.get(self.code, ("", False))[1]

    def body(self) -> dict:
        return {"type": "error", "code": self.code, "text": self.text}


class _Reply(asyncio.Future):
    """What ``node.rpc`` returns without a callback: await it for the reply message."""

    def _not_yet(self, *_):
        raise TypeError("node.rpc(...) without a callback returns an awaitable, not the reply: write "
                        "`reply = await node.rpc(...)` inside an `async def` handler, or pass callback=fn")

    __getitem__ = get = _not_yet


class Node:
    """One Maelstrom node: register handlers with ``on``, then ``run()``."""

    def __init__(self) -> None:
        self.node_id: str | None = None
        self.node_ids: list[str] = []
        self._handlers: dict = {}
        self._init_hooks: list = []
        self._pending: dict = {}          # msg_id -> (future or callback, timer handle)
        self._next = 0
        self._out: list[str] = []
        self._loop = None
        self._inbuf = b""
        self._tasks: set = set()
        self._early: list = []            # timers set before run(): (ms, fn, repeat)

    # -- registering ------------------------------------------------------------------------
    def on(self, type: str, handler=None):
        """Register ``handler(msg)`` for messages of ``type``; usable as ``@node.on("echo")``."""
        def register(fn):
            self._handlers[type] = fn
            return fn
        return register(handler) if handler is not None else register

    def on_init(self, fn):
        """Run ``fn()`` (or ``await fn()``) once ``node_id``/``node_ids`` are set, before init_ok."""
        self._init_hooks.append(fn)
        return fn

    # -- sending ----------------------------------------------------------------------------
    def _need_init(self, what: str) -> None:
        if self.node_id is None:
            raise RuntimeError(f"node.{what} before init: the node has no id yet. Send from a handler, "
                               f"or from an @node.on_init hook (it runs once node_id is set)")

    def send(self, dest: str, body: dict) -> None:
        """Send ``body`` (a dict with ``type``) to ``dest``. ``RuntimeError`` before init
        (the node has no id to send from yet)."""
        self._need_init("send()")
        self._out.append(_encode({"src": self.node_id, "dest": dest, "body": body}))
        if len(self._out) == 1 and self._loop is not None:
            self._loop.call_soon(self._flush)

    def reply(self, request: dict, body: dict) -> None:
        """Answer ``request``: ``body`` with ``in_reply_to`` set, to the request's sender."""
        body = dict(body)
        body["in_reply_to"] = request["body"].get("msg_id")
        self.send(request["src"], body)

    def new_msg_id(self) -> int:
        self._next += 1
        return self._next

    def rpc(self, dest: str, body: dict, callback=None, timeout: float = 1000):
        """Send a request (a ``msg_id`` is added). With ``callback``, call ``callback(reply)``
        when the reply comes -- or, after ``timeout`` ms, with an error reply of code 0 -- and
        return None. Without, return an awaitable: the reply message, or ``RPCError`` for an
        error reply, ``RPCError(0)`` after ``timeout`` ms. ``RuntimeError`` before init."""
        self._need_init("rpc()")
        msg_id = self.new_msg_id()
        loop = self._loop
        if callback is None:
            target = _Reply(loop=loop)
        else:
            target = callback
        handle = loop.call_later(timeout / 1000.0, self._timeout, msg_id, dest)
        self._pending[msg_id] = (target, handle)
        self.send(dest, dict(body, msg_id=msg_id))
        return target if callback is None else None

    def _timeout(self, msg_id: int, dest: str) -> None:
        entry = self._pending.pop(msg_id, None)
        if entry is None:
            return
        target = entry[0]
        if isinstance(target, asyncio.Future):
            if not target.done():
                target.set_exception(RPCError(0, f"no reply from {dest} to msg {msg_id}"))
        else:
            self._call(target, {"src": dest, "dest": self.node_id,
                                "body": {"type": "error", "code": 0, "text": "timeout", "in_reply_to": msg_id}})

    # -- timers and logging ---------------------------------------------------------------------
    def after(self, ms: float, fn) -> None:
        """Call ``fn()`` (or run ``async fn()``) once, ``ms`` from now (from ``run()`` when
        called before it)."""
        if self._loop is None:
            self._early.append((ms, fn, False))
            return
        self._loop.call_later(ms / 1000.0, self._call, fn)

    def every(self, ms: float, fn) -> None:
        """Call ``fn()`` every ``ms`` (first after ``ms``), as Maelstrom's demo's ``every``.
        Called before ``run()``, the timer starts when ``run()`` does. ``ValueError`` unless
        ``ms`` > 0."""
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms > 0:
            raise ValueError(f"node.every(ms, fn): ms must be a positive number of milliseconds, got {ms!r}")
        if self._loop is None:
            self._early.append((ms, fn, True))
            return

        def tick():
            self._loop.call_later(ms / 1000.0, tick)
            self._call(fn)
        self._loop.call_later(ms / 1000.0, tick)

    def log(self, *parts) -> None:
        """A line on stderr (stdout is the protocol's)."""
        print(*parts, file=sys.stderr, flush=True)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Read messages from stdin until it closes; returns then (handlers still waiting,
        e.g. for an rpc reply, are cancelled: the node is being shut down)."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        os.set_blocking(0, False)
        self._loop.add_reader(0, self._readable)
        early, self._early = self._early, []
        for ms, fn, repeat in early:
            (self.every if repeat else self.after)(ms, fn)
        try:
            await self._done
        finally:
            self._loop.remove_reader(0)
            self._flush()

    def _readable(self) -> None:
        try:
            data = os.read(0, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            if not self._done.done():
                self._done.set_result(None)
            return
        lines = (self._inbuf + data).split(b"\n")
        self._inbuf = lines.pop()
        for line in lines:
            if line.strip():
                try:
                    msg = _parse(line.decode())
                except ValueError:
                    self.log(f"maelstrom: not JSON on stdin, skipped: {line[:200]!r}")
                    continue
                self._dispatch(msg)
        self._flush()

    def _flush(self) -> None:
        if self._out:
            data = ("\n".join(self._out) + "\n").encode()
            self._out.clear()
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(1, view):]
                except BlockingIOError:
                    import select
                    select.select([], [1], [])

    def _dispatch(self, msg: dict) -> None:
        body = msg.get("body") or {}
        re = body.get("in_reply_to")
        if re is not None and re in self._pending:
            target, handle = self._pending.pop(re)
            handle.cancel()
            if isinstance(target, asyncio.Future):
                if not target.done():
                    if body.get("type") == "error":
                        target.set_exception(RPCError(body.get("code", 13), body.get("text", "")))
                    else:
                        target.set_result(msg)
            else:
                self._call(target, msg)
            return
        t = body.get("type")
        if t == "init":
            self._call(self._init, msg, request=msg)
            return
        handler = self._handlers.get(t)
        if handler is None:
            if re is None and "msg_id" in body:
                self.reply(msg, RPCError(10, f"no handler for message type {t!r}").body())
            return
        self._call(handler, msg, request=msg)

    def _init(self, msg: dict):
        """``node_id``/``node_ids`` are set at once (before any later message is handled);
        ``init_ok`` goes out when the hooks are done (after them, if any is async)."""
        self.node_id = msg["body"]["node_id"]
        self.node_ids = list(msg["body"]["node_ids"])
        steps = list(self._init_hooks) + ([lambda: self._handlers["init"](msg)] if "init" in self._handlers else [])
        for i, step in enumerate(steps):
            r = step()
            if r is not None and inspect.isawaitable(r):
                return self._init_rest(r, steps[i + 1:], msg)
        self.reply(msg, {"type": "init_ok"})
        return None

    async def _init_rest(self, pending, steps: list, msg: dict) -> None:
        await pending
        for step in steps:
            r = step()
            if r is not None and inspect.isawaitable(r):
                await r
        self.reply(msg, {"type": "init_ok"})

    def _call(self, fn, *args, request=None) -> None:
        """Run a handler or callback; errors answer ``request`` (if any) and are logged."""
        try:
            r = fn(*args)
        except BaseException as e:
            self._failed(e, request)
            return
        if r is not None and inspect.isawaitable(r):
            task = self._loop.create_task(self._guarded(r, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guarded(self, aw, request) -> None:
        try:
            await aw
        except asyncio.CancelledError:        # stdin closed: the node is shutting down
            raise
        except BaseException as e:
            self._failed(e, request)

    def _failed(self, e: BaseException, request) -> None:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise e
        if isinstance(e, RPCError):
            err = e
        else:
            self.log("".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
            err = RPCError(13, f"{type(e).__name__}: {e}")
        if request is not None and "msg_id" in request.get("body", {}):
            self.reply(request, err.body())
