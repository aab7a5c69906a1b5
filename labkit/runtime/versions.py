"""The newest change each node has been told about, in memory the notebook and nodes share.

A fault call (``partition``, ``set_link``, ``skew``, ``slow``, ...) sends each node a command
on its control socket, numbered with the cluster's change version, and the notebook waits for
the acks. The rule a node keeps: *a change applies to every message the node reads after the
notebook announced it* -- including a paused node's backlog, which it reads after it resumes.

Asking the control socket before each message would cost a system call per message (libzmq
reads the socket's command mailbox with ``poll``). Instead the notebook writes, after sending
a command, its version into the node's slot of this file, mapped by both sides; a node reads
its slot (one load from shared memory) before each message, and only when the slot is ahead
of what it applied does it read the control socket -- waiting for the command if it is still
on its way, since it was sent before the slot was written. A one-byte wake frame (``WAKE``)
in the node's inbox then wakes a node that was waiting for messages.
"""
from __future__ import annotations

import mmap
import os

WAKE = b"!"          # a frame the notebook puts in a node's inbox: "read your slot" (never JSON)


class ChangeVersions:
    """``n`` signed 64-bit slots in the file at ``path`` (created with ``create=True``).

    ``slots`` is a ``memoryview`` of the slots (format ``"q"``): ``slots[i]`` is node ``i``'s
    newest announced change version (``i``: the node's index in the cluster's node ids)."""

    def __init__(self, path: str, n: int, create: bool) -> None:
        size = 8 * max(1, n)
        fd = os.open(path, (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if create else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.slots = memoryview(self._map).cast("q")

    def close(self) -> None:
        self.slots.release()
        self._map.close()
