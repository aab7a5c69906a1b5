"""``labkit.Program``: a cluster node that is an external Maelstrom program, in any language.

    cluster = labkit.Cluster(labkit.Program(["./maelstrom-echo"]), n=3)
    cluster.request("n1", "echo", echo="hi").body        # {"echo": "hi"}

Theory of operation. A Program is a ``labkit.Node`` whose ``on_start`` starts the executable
inside its node process (processes runtime only), so labkit's network, faults, journal and
panel apply unchanged: the node process is the program's network card. It writes each
message delivered to the node to the program's stdin as one Maelstrom line (see
``labkit.maelstrom.protocol`` for the mapping), and reads the program's stdout lines,
validates them and sends them on through labkit's network. Maelstrom's integer ``msg_id``s
are mapped to labkit message ids and back, per node, so replies find their requests.

- **init.** The program first gets Maelstrom's ``init`` (``node_id``, ``node_ids``: the
  cluster's nodes in order, Maelstrom's service ids left out) and must answer ``init_ok``
  within ``init_timeout`` ms (Maelstrom's 10 s); ``Cluster()`` and ``restart`` return once
  it has. Otherwise the node crashes with an error naming it, and the cluster goes on.
- **Faults.** The program runs in its own process group, led by a tiny watchdog (``sh``)
  that kills the whole group as soon as the node process is gone -- SIGKILLed, crashed, or
  left with the notebook. ``kill`` SIGKILLs node and group, ``pause``/``resume`` SIGSTOP /
  SIGCONT them (the watchdog itself keeps running), ``restart`` starts a fresh program and
  initialises it again.
- **Output checks.** A stdout line that is not JSON, or not a valid envelope, or sent to an
  unknown node, is skipped: journaled as a ``malformed`` event and printed in the notebook
  with the node and the line (labkit keeps reading where Maelstrom would stop).
- **stderr.** Each line is journaled as a ``log`` event (``stream="stderr"``, up to 200
  a second per node) and shown in the notebook (up to 10 a second per node, 20 for the
  whole cluster; how many were left out is said). When the program exits, the node crashes
  with its exit status and the last 40 lines of its stderr.
- **What does not reach a program.** The program reads its own clock and keeps its own
  state, so ``cluster.skew`` and ``cluster.slow`` (which act through ``ctx``) do not change
  it, and it has no ``ctx.storage``: a restarted program starts empty, as in Maelstrom.
  Network faults, kill, pause and restart apply in full.

The loop that runs the node polls the program's pipes with its ZeroMQ sockets (see
``labkit.runtime.child``), and runs the callbacks here between messages: one thread.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Any, Mapping, Sequence, Union

from ..errors import ArgumentError, LabkitError
from ..node import Node

__all__ = ["Program", "ProgramError", "INIT_TIMEOUT_MS"]

#: Maelstrom's deadline for ``init_ok`` (ms).
INIT_TIMEOUT_MS = 10_000.0

Command = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


class ProgramError(LabkitError):
    """A program failed: it could not start, never answered ``init``, or exited."""


def _interpreter(path: str) -> str:
    """The interpreter a script names on its ``#!`` line (``sh`` for ``#!/bin/sh``), else
    a guess from its extension, for an error message."""
    try:
        with open(path, "rb") as f:
            first = f.readline(200).decode(errors="replace")
    except OSError:
        first = ""
    if first.startswith("#!"):
        words = first[2:].split()
        if words:
            name = os.path.basename(words[0])
            return words[1] if name == "env" and len(words) > 1 else name
    ext = os.path.splitext(path)[1]
    return {".sh": "sh", ".rb": "ruby", ".pl": "perl", ".jar": "java"}.get(ext, "ruby")


def _resolve(cmd: Any, where: str) -> list[str]:
    """A command as an argv list with an absolute executable (checked now, in the notebook,
    so that a typo is an error here and not a crash in every node)."""
    if isinstance(cmd, (str, os.PathLike)):
        path = os.path.abspath(os.path.expanduser(os.fspath(cmd)))
        if not os.path.exists(path):
            raise ArgumentError(f"{where}: no such file {path!r}. Give the path of an executable, or a command "
                                f"list such as ['python3', 'node.py'] or ['node', 'node.js']")
        if os.path.isdir(path):
            raise ArgumentError(f"{where}: {path!r} is a directory, not an executable")
        if os.access(path, os.X_OK):
            return [path]
        if path.endswith(".py"):
            return [sys.executable, path]
        if path.endswith((".js", ".mjs")):
            node = shutil.which("node")
            if node is None:
                raise ArgumentError(f"{where}: {path!r} is JavaScript but node.js is not on PATH")
            return [node, path]
        raise ArgumentError(f"{where}: {path!r} is not executable: `chmod +x` it, or give the interpreter, "
                            f"e.g. [{_interpreter(path)!r}, {os.fspath(cmd)!r}]")
    if isinstance(cmd, (list, tuple)):
        if not cmd:
            raise ArgumentError(f"{where}: the command list is empty; give e.g. ['python3', 'node.py']")
        argv = []
        for i, a in enumerate(cmd):
            if not isinstance(a, (str, os.PathLike)):
                raise ArgumentError(f"{where}: command[{i}] must be a string, got {a!r}")
            argv.append(os.fspath(a))
        exe = argv[0]
        if os.sep in exe:
            full = os.path.abspath(os.path.expanduser(exe))
            if not (os.path.isfile(full) and os.access(full, os.X_OK)):
                raise ArgumentError(f"{where}: {full!r} is not an executable file")
        else:
            found = shutil.which(exe)
            if found is None:
                raise ArgumentError(f"{where}: command {exe!r} is not on PATH")
            full = os.path.abspath(found)
        return [full, *argv[1:]]
    raise ArgumentError(f"{where}: a command is a list of strings (e.g. ['./echo', '--fast']) or the path of an "
                        f"executable, got {cmd!r}")


class Program(Node):
    """A node that runs an external program speaking Maelstrom's JSON-lines protocol
    (processes runtime only; the simulator refuses it with an error).

    ``cmd``: a command list (``["python3", "echo.py"]``), the path of an executable (a
    ``.py`` or ``.js`` file that is not executable is run with this Python or ``node``), or a
    mapping node id -> command for different programs per node. Executables are looked up
    (on PATH, or relative to the current directory) when the Program is made: a missing one
    raises ``labkit.ArgumentError`` here.

    ``env``: extra environment variables for the program (it inherits the notebook's, plus
    ``PYTHONUNBUFFERED=1`` and, on ``PYTHONPATH``, the directory that makes ``from maelstrom
    import Node`` load ``labkit/maelstrom/node.py``). ``cwd``: its working directory (default: the current directory when the Program is
    made, so relative paths among the arguments mean what they meant there).
    ``Cluster(Program(cmd), n=3)`` names the nodes ``n0``, ``n1``, ``n2`` (Maelstrom's ids).
    ``init_timeout``: ms to wait for ``init_ok`` (Maelstrom's 10 000). ``show_stderr``: print
    the program's stderr in the notebook (rate-limited; it is journaled either way).

    Source: Maelstrom's protocol (jepsen-io/maelstrom ``doc/protocol.md``): the process
    model, ``init``/``init_ok`` and the envelope are Maelstrom's; the faults are labkit's."""

    _labkit_program = True          # the simulator and the processes runtime look for this
    #: ``Cluster(Program(...), n=3)`` names its nodes ``n0, n1, n2``, as Maelstrom does.
    first_node_number = 0

    def __init__(self, cmd: Command | Mapping[str, Command], *, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None, init_timeout: float = INIT_TIMEOUT_MS,
                 show_stderr: bool = True) -> None:
        if isinstance(cmd, Mapping):
            if not cmd:
                raise ArgumentError("Program({}): the mapping names no node")
            self.commands: dict[str, list[str]] | None = {
                str(k): _resolve(v, f"Program(...)[{k!r}]") for k, v in cmd.items()}
            self.command: list[str] | None = None
        else:
            self.commands = None
            self.command = _resolve(cmd, "Program(cmd)")
        if env is not None and not (isinstance(env, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ArgumentError(f"Program(env=...) must map str to str, got {env!r}")
        self.env = dict(env) if env is not None else {}
        if cwd is not None and not os.path.isdir(cwd):
            raise ArgumentError(f"Program(cwd={cwd!r}): no such directory")
        # the program runs where the Program was made (relative arguments mean what they meant here)
        self.cwd = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
        from .. import argcheck
        self.init_timeout = argcheck.ms(init_timeout, lambda: "Program(init_timeout)", positive=True)
        if not isinstance(show_stderr, bool):
            raise ArgumentError(f"Program(show_stderr) must be True or False, got {show_stderr!r}")
        self.show_stderr = show_stderr

    def __repr__(self) -> str:
        if self.commands is not None:
            return "Program(" + repr({k: shlex.join(v) for k, v in self.commands.items()}) + ")"
        return f"Program({shlex.join(self.command or [])!r})"

    def command_for(self, node: str) -> list[str]:
        """The argv this Program runs as ``node``. Raises ``ArgumentError`` if a mapping does
        not name ``node``."""
        if self.commands is None:
            return list(self.command or [])
        if node not in self.commands:
            raise ArgumentError(f"Program(...) has no command for node {node!r}; its mapping names "
                                f"{sorted(self.commands)}: give every node of the cluster one")
        return list(self.commands[node])

    # -- the node ---------------------------------------------------------------------------
    def on_start(self, ctx: Any) -> None:
        host = ctx._host
        if not hasattr(host, "add_reader"):
            raise LabkitError(f"{ctx.id}: labkit.Program runs a real executable, so it needs the processes "
                              f"runtime (Cluster(..., runtime='processes')); this node's runtime cannot host it")
        from ._bridge import Bridge
        self._bridge = Bridge(ctx, host, self.command_for(ctx.id), env=self.env, cwd=self.cwd,
                              init_timeout=self.init_timeout, show_stderr=self.show_stderr)
        self._bridge.start()

    def on_message(self, ctx: Any, msg: Any) -> None:
        self._bridge.deliver(msg)
