"""Storage as a write-ahead log: what the framing, checksums and whole-write loop cost.

Baseline, same run: the storage format before issue 17 -- one unframed JSON line per write
with a single unchecked ``os.write`` -- kept here verbatim as ``OldFile``. Both write the
same records to files in the same temporary directory, alternating rounds, median of rounds.

Workloads:
* ``raft_append``: what the reference Raft writes per AppendEntries -- one chunk of 8 entries
  plus the log length, in one ``update`` (the hot path of the Raft benchmark);
* ``overwrite``: one small key overwritten again and again (term/vote, counters), which also
  exercises compaction;
* ``replay``: opening a 40,000-record store (a node's restart).

Targets: write cost (both write workloads) <= 1.3x the old format; replay <= 1.5x. The old
format could lose every write after a torn record, so it is a floor, not a rival.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labkit.message import dumps as _dumps  # noqa: E402
from labkit.runtime.storage import FileBackedData, Storage  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, info, median  # noqa: E402

ROUNDS = 5
WRITES = 20_000
REPLAY_RECORDS = 40_000
TARGET_WRITE = 1.3
TARGET_REPLAY = 1.5


class OldFile:
    """The pre-issue-17 ``FileBackedData``: JSON lines, one unchecked os.write, no framing."""

    COMPACT_BYTES = 4 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, str] = {}
        self._vlen: dict[str, int] = {}
        self._live = 0
        if os.path.exists(path):
            with open(path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break
                    for k in rec.get("d", ()):
                        self.data.pop(k, None)
                    for k, v in rec.get("m", {}).items():
                        self.data[k] = _dumps(v)
        for k, v in self.data.items():
            self._account(k, v)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _account(self, key, value):
        self._live -= self._vlen.pop(key, 0)
        if value is not None:
            n = len(key) + len(value) + 4
            self._vlen[key] = n
            self._live += n

    @staticmethod
    def _line(changes):
        sets = ",".join(f"{_dumps(k)}:{v}" for k, v in changes.items() if v is not None)
        dels = [k for k, v in changes.items() if v is None]
        tail = f',"d":{_dumps(dels)}' if dels else ""
        return f'{{"m":{{{sets}}}{tail}}}\n'.encode()

    def write(self, changes):
        line = self._line(changes)
        os.write(self._fd, line)
        self._size += len(line)
        for k, v in changes.items():
            self._account(k, v)
        if self._size > self.COMPACT_BYTES and self._size > 2 * self._live + 64:
            self._compact()

    def _compact(self):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            items = list(self.data.items())
            for i in range(0, len(items), 1000):
                f.write(self._line(dict(items[i:i + 1000])))
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def close(self):
        os.close(self._fd)


ENTRY = {"op": "append", "key": 7, "value": 123456, "client": "c3", "seq": 991}


def raft_append(store: Storage, n: int) -> None:
    for i in range(n):
        store.update({f"raft/log/{8 * i + 1}": [[3, ENTRY]] * 8, "raft/len": 8 * i + 8})


def overwrite(store: Storage, n: int) -> None:
    for i in range(n):
        store["raft/term"] = [i, "n2"]


def time_writes(cls, d: str, name: str, fn) -> float:
    path = os.path.join(d, f"{cls.__name__}-{name}")
    back = cls(path)
    st = Storage("n1", back.data, back.write)
    t0 = time.perf_counter()
    fn(st, WRITES)
    dt = time.perf_counter() - t0
    back.close()
    os.unlink(path)
    return dt / WRITES * 1e6      # µs per write


def time_replay(cls, d: str) -> float:
    path = os.path.join(d, f"{cls.__name__}-replay")
    back = cls(path)
    st = Storage("n1", back.data, back.write)
    for i in range(REPLAY_RECORDS):
        st.update({f"raft/log/{i + 1}": [[3, ENTRY]], "raft/len": i + 1})
    back.close()
    t0 = time.perf_counter()
    again = cls(path)
    dt = time.perf_counter() - t0
    assert len(again.data) == REPLAY_RECORDS + 1
    again.close()
    os.unlink(path)
    return dt * 1000              # ms


def main() -> None:
    d = tempfile.mkdtemp(prefix="labkit-bench-storage-")
    try:
        res: dict[str, dict[str, list[float]]] = {}
        for r in range(ROUNDS):
            order = (OldFile, FileBackedData) if r % 2 == 0 else (FileBackedData, OldFile)
            for cls in order:
                who = "old" if cls is OldFile else "new"
                for name, fn in (("raft_append", raft_append), ("overwrite", overwrite)):
                    res.setdefault(name, {}).setdefault(who, []).append(time_writes(cls, d, name, fn))
                res.setdefault("replay", {}).setdefault(who, []).append(time_replay(cls, d))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    out = {name: {who: median(v) for who, v in by.items()} for name, by in res.items()}
    ratios = {name: out[name]["new"] / out[name]["old"] for name in out}
    for name in out:
        unit = "ms" if name == "replay" else "µs/write"
        info(f"{name:12s} old {out[name]['old']:8.2f} {unit}   new {out[name]['new']:8.2f} {unit}   "
             f"ratio {ratios[name]:.2f}")
    write_ratio = max(ratios["raft_append"], ratios["overwrite"])
    ok = write_ratio <= TARGET_WRITE and ratios["replay"] <= TARGET_REPLAY
    emit({"name": "storage", "ratio": write_ratio, "target": f"<= {TARGET_WRITE} (writes), <= {TARGET_REPLAY} (replay)",
          "pass": ok, "replay_ratio": ratios["replay"], "detail": out})


if __name__ == "__main__":
    main()
