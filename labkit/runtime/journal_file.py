"""A node's journal file, written through a shared memory mapping (processes runtime).

A node appends its round's journal lines before it hands the round's messages to ZeroMQ
(``labkit.runtime.child``): the journal never shows a delivery whose send it lacks. Written
with ``os.write``, that is one system call per round, on every message's path; written into
a ``MAP_SHARED`` mapping of the file it is a copy into the page cache -- which the kernel
keeps when the process is SIGKILLed, exactly as it keeps a finished ``write``. Only the part
still to be written is mapped, so what is written does not stay in the node's memory.

The file is reserved ahead of the writer in chunks (``os.posix_fallocate``: a full disk or
``ulimit -f`` is an ``OSError`` -- ENOSPC, EFBIG -- when a chunk is reserved, never a SIGBUS
on a later store), so its tail is NUL bytes not yet written. JSON lines never contain a raw
NUL, so a reader takes the bytes before the first NUL (``readable_length``) and, of those,
the whole lines. A reader may race the writer's copy; whatever it sees before the first NUL
is what was written, so the rule holds however the copy's stores become visible.

Where ``posix_fallocate`` is missing (macOS) the writer appends with ``os.write`` as before.
"""
from __future__ import annotations

import errno
import mmap
import os

FIRST_CHUNK = 64 * 1024          # bytes reserved at first; doubled as the journal grows ...
MAX_CHUNK = 16 * 1024 * 1024     # ... up to this much at a time
PROBE = 64 * 1024                # bytes a reader looks at first for the end of what is written


def write_all(fd: int, buf: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short: a file-size limit, a
    signal); raises OSError (ENOSPC, EFBIG, EIO, ...) when the OS refuses."""
    n = os.write(fd, buf)              # every byte at once, almost always: the hot path
    if n == len(buf):
        return
    view = memoryview(buf)[n:]
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "the write made no progress")
        view = view[n:]


class JournalWriter:
    """Append-only writer of one journal file; ``write(data)`` appends ``data`` (bytes, whole
    lines) and raises OSError when the disk or a file-size limit refuses the space."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mapped = hasattr(os, "posix_fallocate")
        flags = os.O_RDWR | os.O_CREAT if self.mapped else os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self.fd = os.open(path, flags, 0o600)
        self.pos = readable_length(path) if self.mapped else 0   # (a new file: 0)
        self.size = os.fstat(self.fd).st_size
        self.map: mmap.mmap | None = None
        self.base = 0                  # the file offset the mapping starts at (see _map)
        if self.mapped and self.size > self.pos:
            self._map(self.size)

    def write(self, data: bytes) -> None:
        if not self.mapped:
            write_all(self.fd, data)
            return
        end = self.pos + len(data)
        if end > self.size:
            self._reserve(end)
        base = self.base
        self.map[self.pos - base:end - base] = data           # type: ignore[index]
        self.pos = end

    def _reserve(self, end: int) -> None:
        """Reserve room up to at least ``end``: a doubling chunk, or, when the OS refuses that
        much (ENOSPC, EFBIG), exactly ``end`` -- which raises if even that is refused."""
        chunk = min(max(FIRST_CHUNK, self.size), MAX_CHUNK)
        want = max(end, self.size + chunk)
        try:
            os.posix_fallocate(self.fd, self.size, want - self.size)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or want == end:
                raise
            want = end
            os.posix_fallocate(self.fd, self.size, want - self.size)
        self.size = want
        self._map(want)

    def _map(self, size: int) -> None:
        """Map the file from the page holding ``pos`` up to ``size``: only the part still to
        be written, so the pages of what is written do not stay in this process's memory."""
        if self.map is not None:
            self.map.close()
        self.base = self.pos - self.pos % mmap.ALLOCATIONGRANULARITY
        self.map = mmap.mmap(self.fd, size - self.base, offset=self.base)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        os.close(self.fd)


def readable_length(path: str) -> int:
    """Bytes of ``path`` before its first NUL (its whole length if it has none): what a
    ``JournalWriter`` has written, however much it reserved. 0 for a missing file."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        pos = 0
        size = PROBE
        while True:
            block = f.read(size)
            if not block:
                return pos
            z = block.find(b"\0")
            if z >= 0:
                return pos + z
            pos += len(block)
            size = min(size * 4, 4 * MAX_CHUNK)


def append_line(path: str, line: bytes) -> None:
    """Append ``line`` where the journal's written part ends (the emergency path: no writer
    object to ask). Raises OSError when the OS refuses."""
    end = readable_length(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        view = memoryview(line)
        while view:
            n = os.pwrite(fd, view, end)
            if n <= 0:
                raise OSError(errno.EIO, "the write made no progress")
            view, end = view[n:], end + n
    finally:
        os.close(fd)
