"""Durable storage: the part of a node's state that survives ``kill`` and ``restart``.

``ctx.storage`` is a dict-like store of JSON values. Values are copied in and out, exactly as
if they went to disk: mutating a list you read does not change what is stored until you assign
it back. ``update({...})`` writes many keys at once and atomically (one record): after a crash
either all of them are stored or none -- cheaper than one write per key, and what a log append
wants.

What "durable" means here
-------------------------
A write (``storage[k] = v``, ``update``, ``del``) returns only once every byte of its record
has been handed to the operating system; if any byte cannot be written (disk full, file-size
limit, I/O error) the record is taken back, nothing of it is stored, the store in memory is
unchanged, and the call raises :class:`~labkit.errors.StorageError` naming the cause -- which,
left uncaught, crashes the node with that reason in the journal. So "persist, then reply"
(Raft §5, Figure 2) holds: a reply sent after a write is never sent for a write that is lost.

* **Node crash** (SIGKILL, ``cluster.kill``, a handler that raises): everything written before
  the kill survives; a write cut short by the kill never happened.
* **Machine crash or power loss**: by default records sit in the OS page cache for a few
  seconds before the kernel writes them out, so the newest acknowledged writes can be lost.
  ``Cluster(..., fsync=True)`` calls ``fsync`` after every write (and on the directory after a
  compaction), which is what etcd and PostgreSQL do; it costs a disk flush per write
  (milliseconds on many disks), which is why the course leaves it off.
* The simulator keeps storage in memory: a kill or restart keeps it, and there are no torn
  writes to repair.

Theory of operation: a write-ahead log
--------------------------------------
In the processes runtime each node's store is one append-only file (``FileBackedData``), laid
out like etcd's WAL and SQLite's journal: a header line ``labkit-storage 2``, then one framed
record per write::

    <payload length, 8 hex digits> <CRC-32 of the payload, 8 hex digits> <payload JSON>\\n

The payload is ``{"m": {key: value, ...}, "d": [deleted key, ...]}`` with values as JSON (not
strings of JSON). On open the file is replayed record by record and each checksum verified:

* **A torn tail** -- the last record cut short (a kill in the middle of a write), or a run of
  zero bytes at the end (a machine crash that extended the file before its data reached the
  disk) -- is a write that never completed: the file is truncated back to the last whole
  record and the node journals a ``repair`` event saying how many bytes were cut, where, and
  why. New records then start on a clean boundary, never glued to the torn bytes.
* **Corruption before the tail** -- a record whose checksum, frame or content is wrong while
  whole records follow it, or a whole last record with a wrong checksum -- is never skipped:
  the node refuses to start with :class:`~labkit.errors.StorageCorrupt`, naming the file, the
  byte offset, what is wrong and what to do. (etcd does the same: only an unexpected EOF is
  repaired; a CRC mismatch is fatal.)

The file is compacted (rewritten with only the live keys, then atomically renamed over the
old one, mode 0600 kept) when it is more than twice the live data and at least
``COMPACT_BYTES``: a store that overwrites keys stays small, compaction costs O(1) per write
amortised, and a store that only grows (a Raft log) is never rewritten.
"""
from __future__ import annotations

import errno as _errno
import json
import os
import re
import zlib
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator, Mapping

from ..errors import StorageCorrupt, StorageError
from ..message import EncodeError, dumps as _dumps

#: The first line of every storage file (format version 2: framed, checksummed records).
MAGIC = b"labkit-storage 2\n"
_HEAD = 18                      # "%08x %08x " before each payload
_HEADER = re.compile(rb"([0-9a-f]{8}) ([0-9a-f]{8}) ")
_decode = json.JSONDecoder().decode
_PARTIAL = re.compile(rb"[0-9a-f]{0,8}( [0-9a-f]{0,8})?")   # a header the file ends inside


class Storage(MutableMapping):
    """A node's durable key/value store (keys are strings, values JSON).

    ``on_write`` is called with ``{key: JSON text, or None for a deletion}`` before the
    in-memory copy changes; if it raises (the write could not be made durable) the store is
    left exactly as it was. Raises :class:`StorageError` for a non-string key, a value that is
    not JSON, or a write that failed.
    """

    def __init__(self, node: str, data: dict[str, str] | None = None,
                 on_write: Callable[[dict[str, str | None]], None] | None = None) -> None:
        self._node = node
        self._data: dict[str, str] = data if data is not None else {}
        self._on_write = on_write

    def _encode(self, key: Any, value: Any) -> str:
        if not isinstance(key, str):
            raise StorageError(f"{self._node}: storage keys are strings, got {key!r}")
        try:
            return _dumps(value)
        except EncodeError as e:
            raise StorageError(f"{self._node}: cannot store {key!r}: {e.at(f'storage[{key!r}]')}. Store only "
                               f"dicts with str keys, lists, str, int, float, bool and None.") from None

    def __getitem__(self, key: str) -> Any:
        return json.loads(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        s = self._encode(key, value)
        if self._on_write:
            self._on_write({key: s})       # durable first: raises and changes nothing on failure
        self._data[key] = s

    def update(self, other: Mapping[str, Any] = (), /, **kw: Any) -> None:  # type: ignore[override]
        """Store every key of ``other`` (and ``kw``) in one atomic write: all or none survive a crash."""
        encoded: dict[str, str | None] = {k: self._encode(k, v) for k, v in dict(other, **kw).items()}
        if not encoded:
            return
        if self._on_write:
            self._on_write(encoded)
        self._data.update(encoded)  # type: ignore[arg-type]

    def __delitem__(self, key: str) -> None:
        if key not in self._data:
            raise KeyError(key)
        if self._on_write:
            self._on_write({key: None})
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"<Storage of {self._node}: {len(self._data)} keys>"


def frame(payload: bytes) -> bytes:
    """One record as it is written: length, CRC-32, payload, newline."""
    return b"%08x %08x " % (len(payload), zlib.crc32(payload)) + payload + b"\n"


def _parse_at(data: bytes, pos: int) -> tuple[str, Any, int]:
    """Read the record at ``pos``: ("ok", payload dict, end), ("incomplete", reason, -1) when
    the file ends inside it, or ("bad", reason, -1) when a whole record is wrong."""
    n = len(data)
    m = _HEADER.match(data, pos)
    if m is None:
        head = data[pos:pos + _HEAD]
        if len(head) < _HEAD and _PARTIAL.fullmatch(head):
            return "incomplete", "the file ends inside a record header", -1
        return "bad", f"not a record header: {bytes(head[:20])!r}", -1
    length, crc = int(m.group(1), 16), int(m.group(2), 16)
    end = pos + _HEAD + length
    if end + 1 > n:
        return "incomplete", f"the record says {length} bytes but the file ends after {n - pos - _HEAD}", -1
    if data[end] != 0x0A:
        return "bad", "the record does not end where its length says", -1
    payload = data[pos + _HEAD:end]
    if zlib.crc32(payload) != crc:
        return "bad", f"checksum mismatch (stored {crc:08x}, computed {zlib.crc32(payload):08x})", -1
    try:
        rec = json.loads(payload)
    except ValueError as e:
        return "bad", f"checksum matches but the payload is not JSON ({e})", -1
    if (not isinstance(rec, dict) or not isinstance(rec.get("m", {}), dict)
            or not isinstance(rec.get("d", []), list) or not all(isinstance(k, str) for k in rec.get("d", []))
            or set(rec) - {"m", "d"}):
        return "bad", 'the payload is not a storage record ({"m": {...}, "d": [...]})', -1
    return "ok", rec, end + 1


def _whole_record_after(data: bytes, pos: int) -> int | None:
    """The offset of a whole, valid record starting after ``pos`` (records start after a
    newline), or None: tells corruption in the middle from a torn tail."""
    i = data.find(b"\n", pos)
    while i != -1 and i + 1 < len(data):
        if _parse_at(data, i + 1)[0] == "ok":
            return i + 1
        i = data.find(b"\n", i + 1)
    return None


class FileBackedData:
    """A node's storage file (see the module docstring for the format and the contract).

    ``data`` is the replayed store ``{key: JSON text}``; ``repair`` is None, or a dict
    describing the torn tail that was cut on open (``offset``, ``bytes_cut``, ``reason``).
    ``fsync=True`` makes every write survive a machine crash too.

    Raises :class:`StorageCorrupt` on open when the file is damaged anywhere but its tail.
    """

    COMPACT_BYTES = 4 << 20

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.data: dict[str, str] = {}
        self.repair: dict[str, Any] | None = None
        self._vlen: dict[str, int] = {}       # key -> bytes its value takes in a compacted file
        self._live = 0
        good = self._replay()
        for k, v in self.data.items():
            self._account(k, v)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(self._fd).st_size
            if size > good:
                os.ftruncate(self._fd, good)       # cut the torn tail before anything is appended
            if good == 0:
                self._write_all(MAGIC, 0)
                good = len(MAGIC)
            elif self.fsync and size > good:
                os.fsync(self._fd)
        except BaseException:
            os.close(self._fd)
            raise
        self._size = good
        self._compact_at = 0

    # -- opening ----------------------------------------------------------------------------
    def _replay(self) -> int:
        """Load the file into ``data``; return the length of its good prefix."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return 0
        n = len(data)
        if n == 0:
            return 0
        if not data.startswith(MAGIC):
            if MAGIC.startswith(data) or not data.strip(b"\0"):   # header torn, or all zeros
                self._torn(0, n, "the file ends inside its header line")
                return 0
            raise StorageCorrupt(
                f"{self.path} is not a labkit storage file: it does not begin with "
                f"{MAGIC.decode().strip()!r} (first bytes {data[:24]!r}). labkit will not guess what "
                f"it holds. Move it aside (or delete it) to start this node with empty storage.")
        pos = len(MAGIC)
        count = 0
        store, match, crc32, decode = self.data, _HEADER.match, zlib.crc32, _decode
        while pos < n:
            # The fast path (a whole, valid record) inline; anything else goes to _parse_at.
            m = match(data, pos)
            if m is not None:
                end = pos + _HEAD + int(m.group(1), 16)
                if end < n and data[end] == 0x0A:
                    payload = data[pos + _HEAD:end]
                    if crc32(payload) == int(m.group(2), 16):
                        try:
                            rec = decode(payload.decode())
                        except ValueError:
                            rec = None
                        if type(rec) is dict and type(rec.get("m")) is dict and "d" not in rec and len(rec) == 1:
                            for k, v in rec["m"].items():
                                store[k] = _dumps(v)
                            pos = end + 1
                            count += 1
                            continue
            status, what, end = _parse_at(data, pos)
            if status == "ok":
                for k in what.get("d", ()):
                    store.pop(k, None)
                for k, v in what.get("m", {}).items():
                    store[k] = _dumps(v)
                pos = end
                count += 1
                continue
            later = _whole_record_after(data, pos)
            zeros = not data[pos:].strip(b"\0")
            if later is None and (status == "incomplete" or zeros):
                self._torn(pos, n - pos, what if not zeros else "the file ends in zero bytes")
                return pos
            where = (f"whole records follow it (the next at byte {later})" if later is not None
                     else "it is a whole record, not one cut short by a crash")
            raise StorageCorrupt(
                f"{self.path} is corrupt at byte {pos} (record {count + 1}): {what}; {where}, so this "
                f"is not a torn last write and labkit will not skip it. The {count} records before "
                f"byte {pos} are intact. To start from them, losing the rest, truncate the file: "
                f"os.truncate({self.path!r}, {pos}); or restore the file, or delete it to start empty.")
        return pos

    def _torn(self, offset: int, cut: int, reason: str) -> None:
        self.repair = {"file": os.path.basename(self.path), "offset": offset, "bytes_cut": cut,
                       "reason": f"torn tail: {reason}"}

    # -- writing ----------------------------------------------------------------------------
    def _account(self, key: str, value: str | None) -> None:
        self._live -= self._vlen.pop(key, 0)
        if value is not None:
            n = len(key) + len(value) + 4
            self._vlen[key] = n
            self._live += n

    @staticmethod
    def _payload(changes: Mapping[str, str | None]) -> bytes:
        sets = ",".join(f"{_dumps(k)}:{v}" for k, v in changes.items() if v is not None)
        dels = [k for k, v in changes.items() if v is None]
        tail = f',"d":{_dumps(dels)}' if dels else ""
        return f'{{"m":{{{sets}}}{tail}}}'.encode()

    def _write_all(self, buf: bytes, start: int) -> None:
        """Write every byte of ``buf`` at the end of the file (which is ``start`` bytes long),
        or take back what was written and raise StorageError."""
        done = 0
        try:
            done = os.write(self._fd, buf)              # almost always every byte at once
            view = memoryview(buf)
            while done < len(buf):
                wrote = os.write(self._fd, view[done:])
                if wrote <= 0:
                    raise OSError(_errno.EIO, "the write made no progress")
                done += wrote
            if self.fsync:
                os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, start)     # a half record must not stay in the file
            except OSError:
                pass                              # the next open cuts it as a torn tail
            name = _errno.errorcode.get(e.errno or 0, "error")
            hint = {_errno.ENOSPC: "The disk is full: free space",
                    _errno.EFBIG: "The file-size limit (ulimit -f) was reached: raise it",
                    _errno.EDQUOT: "The disk quota is used up: free space"}.get(e.errno or 0, "Check the disk")
            raise StorageError(
                f"storage write failed ({name}: {e.strerror}) after {done} of {len(buf)} bytes to "
                f"{self.path}; nothing of this write is stored. {hint}, then restart the node.") from None

    def write(self, changes: Mapping[str, str | None]) -> None:
        """Append one record with ``changes`` ({key: JSON text or None}); durable on return."""
        payload = self._payload(changes)
        rec = b"%08x %08x %b\n" % (len(payload), zlib.crc32(payload), payload)
        self._write_all(rec, self._size)
        self._size += len(rec)
        for k, v in changes.items():
            self._account(k, v)
        if (self._size > self.COMPACT_BYTES and self._size > 2 * self._live + 64
                and self._size > self._compact_at):
            self._compact()

    def _compact(self) -> None:
        tmp = self.path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                parts = [MAGIC]
                items = list(self.data.items())
                for i in range(0, len(items), 1000):
                    parts.append(frame(self._payload(dict(items[i:i + 1000]))))
                buf = memoryview(b"".join(parts))
                while buf:
                    buf = buf[os.write(fd, buf):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            # Compaction only saves space; the file as it is stays correct. Try again when it
            # has doubled, not on every write.
            try:
                os.unlink(tmp)
            except OSError:
                pass
            self._compact_at = 2 * self._size
            return
        if self.fsync:
            dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close the file (the node process exits without it; tests use it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
