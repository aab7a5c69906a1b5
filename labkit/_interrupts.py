"""Holding Ctrl-C ("interrupt kernel") back while labkit does something that must not be cut
in half: importing ZeroMQ, dill and multiprocess (a module interrupted half-way through its
import stays broken until the kernel restarts), or starting the forkserver and a node process
(an interrupt there would leak a process, a lock or a directory).

``held_interrupts()`` swaps in a SIGINT handler that only takes note; when the block ends, the
previous handler is put back and, if an interrupt came, called -- so the ``KeyboardInterrupt``
arrives right after the block, as late as a few milliseconds. ``check()`` delivers a noted
interrupt early, inside the block, where the caller can still clean up. Signals reach only
the main thread; elsewhere (and where signals cannot be handled) the block runs unguarded.
"""
from __future__ import annotations

import signal
import threading
from typing import Any


class held_interrupts:
    """Context manager: SIGINT during the block is delivered when it ends (or at ``check()``)."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._active = False
        self.interrupted = False

    def _note(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def __enter__(self) -> "held_interrupts":
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._note)
                self._active = True
            except (ValueError, OSError):   # an embedded interpreter without signal support
                self._active = False
        return self

    def check(self) -> None:
        """Deliver an interrupt that came while held, now (inside the block)."""
        if self.interrupted:
            self.interrupted = False
            self._deliver()

    def _deliver(self) -> None:
        prev = self._previous
        if callable(prev):
            prev(signal.SIGINT, None)           # normally raises KeyboardInterrupt
        elif prev != signal.SIG_IGN:
            raise KeyboardInterrupt

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if not self._active:
            return
        self._active = False
        signal.signal(signal.SIGINT, self._previous)
        if self.interrupted and exc_type is None:
            self.interrupted = False
            self._deliver()
