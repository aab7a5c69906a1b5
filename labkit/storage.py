"""Durable storage: the part of a node's state that survives ``kill`` and ``restart``.

``ctx.storage`` is a dict-like store of JSON values. Every write is durable before the
call returns (in the processes runtime it is appended to a file with one ``os.write``, so a
SIGKILL right after loses nothing), which is the contract Raft needs: "persist, then reply".
Values are copied in and out, exactly as if they went to disk: mutating a list you read
does not change what is stored until you assign it back. ``update({...})`` writes many keys
at once and atomically (one record, one ``os.write``): after a crash either all of them are
stored or none -- cheaper than one write per key, and what a log append wants.
"""
from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator, Mapping

from .errors import StorageError
from .message import EncodeError, dumps as _dumps



class Storage(MutableMapping):
    """A node's durable key/value store (keys are strings, values JSON)."""

    def __init__(self, node: str, data: dict[str, str] | None = None,
                 on_write: Callable[[dict[str, str | None]], None] | None = None) -> None:
        self._node = node
        self._data: dict[str, str] = data if data is not None else {}
        self._on_write = on_write      # called with {key: json or None (deleted)} per write

    def __getitem__(self, key: str) -> Any:
        return json.loads(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise StorageError(f"{self._node}: storage keys are strings, got {key!r}")
        try:
            s = _dumps(value)
        except EncodeError as e:
            raise _refused(self._node, key, e) from None
        self._data[key] = s
        if self._on_write:
            self._on_write({key: s})

    def update(self, other: Mapping[str, Any] = (), /, **kw: Any) -> None:  # type: ignore[override]
        """Store every key of ``other`` (and ``kw``) in one atomic write: all or none survive a crash."""
        items = dict(other, **kw)
        encoded: dict[str, str | None] = {}
        for key, value in items.items():
            if not isinstance(key, str):
                raise StorageError(f"{self._node}: storage keys are strings, got {key!r}")
            try:
                encoded[key] = _dumps(value)
            except EncodeError as e:
                raise _refused(self._node, key, e) from None
        if not encoded:
            return
        self._data.update(encoded)  # type: ignore[arg-type]
        if self._on_write:
            self._on_write(encoded)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        if self._on_write:
            self._on_write({key: None})

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"<Storage of {self._node}: {len(self._data)} keys>"


def _refused(node: str, key: str, e: EncodeError) -> StorageError:
    return StorageError(f"{node}: cannot store {key!r}: {e.at(f'storage[{key!r}]')}. Store only dicts "
                        f"with str keys, lists, str, int, float, bool and None.")


class FileBackedData:
    """An append-only file of JSON lines, one per write: ``{"m": {key: value, ...}}`` with the
    values written as JSON themselves (not as strings of JSON: no second escaping), plus
    ``"d": [key, ...]`` for deletions. A torn last line (a write cut short by SIGKILL) never
    happened. The file is compacted when it is more than twice the live data (and at least
    ``COMPACT_BYTES``): a store that overwrites keys stays small, compaction costs O(1) per
    write amortised, and a store that only grows (a Raft log) is never rewritten -- a rewrite
    would free nothing and pause the node for as long as the store is big."""

    COMPACT_BYTES = 4 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, str] = {}
        self._vlen: dict[str, int] = {}       # key -> bytes its value takes in a compacted file
        self._live = 0
        if os.path.exists(path):
            with open(path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # a torn last line: the write never completed, so it never happened
                    for k in rec.get("d", ()):
                        self.data.pop(k, None)
                    for k, v in rec.get("m", {}).items():
                        self.data[k] = _dumps(v)
        for k, v in self.data.items():
            self._account(k, v)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _account(self, key: str, value: str | None) -> None:
        self._live -= self._vlen.pop(key, 0)
        if value is not None:
            n = len(key) + len(value) + 4
            self._vlen[key] = n
            self._live += n

    @staticmethod
    def _line(changes: dict[str, str | None]) -> bytes:
        sets = ",".join(f"{_dumps(k)}:{v}" for k, v in changes.items() if v is not None)
        dels = [k for k, v in changes.items() if v is None]
        tail = f',"d":{_dumps(dels)}' if dels else ""
        return f'{{"m":{{{sets}}}{tail}}}\n'.encode()

    def write(self, changes: dict[str, str | None]) -> None:
        line = self._line(changes)
        os.write(self._fd, line)
        self._size += len(line)
        for k, v in changes.items():
            self._account(k, v)
        if self._size > self.COMPACT_BYTES and self._size > 2 * self._live + 64:
            self._compact()

    def _compact(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            items = list(self.data.items())
            for i in range(0, len(items), 1000):
                f.write(self._line(dict(items[i:i + 1000])))
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
