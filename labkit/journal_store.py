"""Where a journal's events live: small index columns in memory, each event's JSON line as text.

Theory of operation. A busy cluster journals ~20,000 events a second; as Python objects (an
``Event`` holding its decoded dict) each costs ~1.3 KB, so a minute of gossip would not fit
in a Binder kernel (2 GB). An ``EventStore`` keeps, per event, only what filters need -- the
time (float64), kind and node (small integer codes into name tables) -- in numpy columns,
plus where the event's JSON line is: in memory-mapped segments of journal text, or on disk
once the text outgrows its memory budget (see *Limits*). ``Event`` objects are built when somebody
reads them, and an event's fields are decoded from its line only when somebody reads those
(``Event.data``). About 30-45 bytes of index plus the line (~125 bytes) per event.

Rows are physical -- numbered in the order events reached the store -- and never move, so a
filtered journal can hold row numbers. ``order`` lists them in journal order: by time when
``by_time`` (the processes runtime merges one journal file per node; the sort is stable, so
among equal times the event that arrived first stays first), in arrival order otherwise.

Events created in the notebook's own process (all of the simulator's, the cluster's own
records, client replies) are ``append``-ed as objects -- ``append`` *is* a list's ``append``,
so the simulator's hot path pays nothing -- and indexed the next time the journal is read.
Such an object is an ``Event`` or a *row*: the tuple of ``Event``'s arguments
``(t, kind, node, id, data, wire[, extra])``, which costs the simulator a tenth of an
``Event`` to make; a row becomes its ``Event`` (kept in its place) when it is first read.

Reading text (``add_text``) takes a fast path for lines that start with the header every
labkit writer puts first, ``{"t":<ms>,"kind":"<kind>","node":"<id>",...}``: one regular
expression over a block of lines, no JSON parsing. Other lines are parsed with ``json``,
checked, and stored re-encoded with that header.

Limits (``JournalLimits``; defaults from the environment, see there). The text of a journal
past ``memory_mb`` is *spilled*: moved to an unlinked temporary file (in ``spill_dir``) and
read back from there when an event is read -- nothing is lost, the notebook's memory stays
flat. Past ``max_events`` events the journal *refuses* to read more: the read raises
``JournalFull`` (a live cluster's further events stay in its node files, and are read once
the limit is raised with ``journal.set_limits``; they are gone when the cluster closes).
Memory is then bounded by ``memory_mb`` plus ~40 bytes per event of index.
"""
from __future__ import annotations

import bisect
import gc
import math
import mmap
import operator
import os
import re
import tempfile
import threading
from typing import Any, Iterable, Iterator

from .journal import _LINE, BLOCK_BYTES, Event, JournalFull, JournalLimits, event_line, line_id  # noqa: F401
from .message import loads as _loads

#: numpy, imported by the first ``EventStore`` (``_numpy``): a node process never reads a
#: journal, and numpy is a fifth of labkit's import time, which every cold start pays in the
#: forkserver (see ``labkit.runtime.host.NODE_PROCESS_ENV``).
np: Any = None


def _numpy() -> None:
    global np
    if np is None:
        import numpy
        np = numpy
#: Events built per batch when a journal is iterated.
BATCH = 4096

# The fast path's view of a line: the header as labkit writes it (time; kind and node as one
# group), the rest, a closing brace. (Matching the whole line is faster than the header alone:
# the next search starts at the next line instead of trying every position for "^".)
_HEAD = re.compile(rb'^\{"t":(-?[0-9][0-9.eE+-]*),"kind":"([A-Za-z_][A-Za-z0-9_]*","node":"[^"\\\n]*)"'
                   rb'(?:,[^\n]*)?\}$', re.M)


# Ids of these characters (all labkit makes) appear in any JSON line exactly as "<id>".
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_I0, _I1, _I2 = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


def _event(objs: list, i: int) -> Event:
    """The ``Event`` at ``objs[i]``, built from its row (and kept) the first time."""
    o = objs[i]
    if o.__class__ is tuple:
        o = objs[i] = Event(*o)
    return o


class _Col:
    """A growable numpy column: ``a[:n]`` is the data."""

    __slots__ = ("a", "n")

    def __init__(self, dtype: Any) -> None:
        self.a = np.empty(1024, dtype)
        self.n = 0

    def extend(self, values: Any) -> None:
        k = len(values)
        need = self.n + k
        if need > len(self.a):
            a = np.empty(max(need, len(self.a) * 3 // 2), self.a.dtype)
            a[:self.n] = self.a[:self.n]
            self.a = a
        self.a[self.n:need] = values
        self.n = need

    @property
    def v(self) -> np.ndarray:
        return self.a[:self.n]


class _Names:
    """A table of names (kinds or nodes) and their integer codes, looked up by str or bytes
    (``by_str[name]`` / ``by_bytes[name]`` add a name not seen before)."""

    def __init__(self, limit: int) -> None:
        self.names: list[str] = []
        self.by_str = _StrCodes(self)
        self.by_bytes = _BytesCodes(self)
        self.limit = limit

    def code(self, s: str) -> int:
        return self.by_str[s]


class _StrCodes(dict):
    def __init__(self, owner: "_Names") -> None:
        super().__init__()
        self.owner = owner

    def __missing__(self, s: str) -> int:
        names = self.owner.names
        if len(names) >= self.owner.limit:
            raise ValueError(f"more than {self.owner.limit} distinct names; is this a journal?")
        c = self[s] = len(names)
        names.append(s)
        return c


class _BytesCodes(dict):
    def __init__(self, owner: _Names) -> None:
        super().__init__()
        self.owner = owner

    def __missing__(self, b: bytes) -> int:
        c = self[b] = self.owner.code(b.decode("utf-8"))
        return c


class _Heads(dict):
    """``kind","node":"<node>`` as the fast path captures it -> a code; ``kind[code]`` and
    ``node[code]`` are its kind and node codes (one dict look-up per line, not two)."""

    def __init__(self, kinds: _Names, nodes: _Names) -> None:
        super().__init__()
        self.kinds, self.nodes = kinds, nodes
        self.kind = np.empty(0, np.uint16)
        self.node = np.empty(0, np.uint32)

    def __missing__(self, head: bytes) -> int:
        kind, _, node = head.partition(b'","node":"')
        k, n = self.kinds.by_bytes[kind], self.nodes.by_bytes[node]
        c = self[head] = len(self.kind)
        self.kind = np.append(self.kind, np.uint16(k))
        self.node = np.append(self.node, np.uint32(n))
        return c


class _Text:
    """Journal text: anonymous memory maps of ``SEGMENT`` bytes, filled in turn, then spilled
    oldest first to one unlinked temporary file. (Maps, not a bytearray: a spilled segment's
    memory goes back to the OS at once, and nothing is ever reallocated or copied.) Text is
    addressed by global position; the spill file holds each byte at its global position."""

    SEGMENT = 16 << 20

    def __init__(self) -> None:
        self.bases: list[int] = []            # global position of each segment's first byte
        self.maps: list[Any] = []             # its memory map, or None once spilled
        self.used: list[int] = []
        self.end = 0
        self.in_memory = 0
        self.spilled = 0
        self.file: Any = None

    def append(self, data: bytes) -> int:
        n = len(data)
        pos = self.end
        if not n:
            return pos
        if not self.maps or self.maps[-1] is None or len(self.maps[-1]) - self.used[-1] < n:
            self.bases.append(pos)
            self.maps.append(mmap.mmap(-1, max(self.SEGMENT, n), flags=mmap.MAP_PRIVATE))   # plain memory
            self.used.append(0)
        u = self.used[-1]
        self.maps[-1][u:u + n] = data
        self.used[-1] = u + n
        self.end += n
        self.in_memory += n
        return pos

    def spill(self, budget: float, directory: str) -> None:
        """Move the oldest segments to the spill file until at most ``budget`` bytes stay."""
        for i, m in enumerate(self.maps):
            if self.in_memory <= budget:
                return
            if m is None:
                continue
            if self.file is None:
                self.file = tempfile.TemporaryFile(prefix="labkit-journal-", dir=directory)
            fd, base, used = self.file.fileno(), self.bases[i], self.used[i]
            done = 0
            with memoryview(m) as mv:
                while done < used:
                    done += os.pwrite(fd, mv[done:used], base + done)
            m.close()
            self.maps[i] = None
            self.in_memory -= used
            self.spilled += used

    def read(self, pos: int, size: int) -> bytes:
        i = bisect.bisect_right(self.bases, pos) - 1
        m = self.maps[i]
        if m is None:
            return os.pread(self.file.fileno(), size, pos)
        off = pos - self.bases[i]
        return m[off:off + size]


class EventStore:
    """The events of one journal; see the module's docstring. Thread-safe."""

    def __init__(self, *, by_time: bool = False, limits: JournalLimits | None = None) -> None:
        _numpy()
        self.by_time = by_time
        self.limits = limits if limits is not None else JournalLimits.from_env()
        self._lock = threading.RLock()
        self._pending: list = []
        #: Add an ``Event`` object (any thread; indexed when the journal is next read).
        self.append = self._pending.append
        self._t = _Col(np.float64)
        self._kind = _Col(np.uint16)
        self._node = _Col(np.uint32)
        self._ref = _Col(np.int64)     # >= 0: position of the line in the text; < 0: ~index in _objs
        self._size = _Col(np.uint32)   # length of the line (0 for objects)
        self._order = _Col(np.int64)   # by_time: physical rows in journal order
        self._ordered = 0              # rows placed in _order so far
        self._objs: list = []
        self.kinds = _Names(65535)
        self.nodes = _Names(2**32 - 1)
        self._heads = _Heads(self.kinds, self.nodes)
        self._text = _Text()
        self.full = False              # a read was refused (max_events)

    # -- adding ----------------------------------------------------------------------------
    def extend(self, events: Iterable) -> None:
        self._pending.extend(events)

    def _index_pending(self) -> None:
        p = self._pending
        k = len(p)
        if not k:
            return
        objs = p[:k]
        del p[:k]                      # atomic: events appended meanwhile by another thread stay
        base = len(self._objs)
        self._objs.extend(objs)
        kinds, nodes = self.kinds, self.nodes
        heads = [o if o.__class__ is tuple else (o.t, o.kind, o.node) for o in objs]   # rows and Events
        self._t.extend(np.fromiter(map(_I0, heads), np.float64, k))
        self._kind.extend(np.fromiter(map(kinds.by_str.__getitem__, map(_I1, heads)), np.uint16, k))
        self._node.extend(np.fromiter(map(nodes.by_str.__getitem__, map(_I2, heads)), np.uint32, k))
        self._ref.extend(np.arange(-1 - base, -1 - base - k, -1, dtype=np.int64))
        self._size.extend(np.zeros(k, np.uint32))

    def room(self) -> int:
        """How many more events this journal may read (``max_events`` minus those it has)."""
        return max(0, self.limits.max_events - self._t.n - len(self._pending))

    def add_text(self, data: bytes, *, first_line: int = 1, source: str = "the journal") -> int:
        """Index the journal lines in ``data`` (whole lines: empty, or ending with a newline).

        Blank lines are skipped. Returns how many bytes were taken: fewer than ``len(data)``
        (up to a line end) when ``max_events`` is reached -- then ``full`` is set. Raises
        ValueError naming the line (counting from ``first_line``) that is not an event."""
        if not data:
            return 0
        with self._lock:
            self._index_pending()
            room = self.room()
            if room <= 0:
                self.full = True
                return 0
            nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
            if len(nl) > room:                   # take what fits, up to a line end
                self.full = True
                data = data[:int(nl[room - 1]) + 1]
                nl = nl[:room]
            if not self._add_fast(data, nl):
                self._add_slow(data, first_line, source)
            return len(data)

    def _add_fast(self, data: bytes, nl: np.ndarray) -> bool:
        """Index ``data`` if every line has labkit's header and ends with a brace; else
        change nothing and return False."""
        found = _HEAD.findall(data)
        k = len(found)
        if not k:
            return not len(nl)
        if k != len(nl):
            return False                         # a line in another shape, or a blank line
        ts, heads = zip(*found)
        try:
            t = np.fromiter(map(float, ts), np.float64, k)
            head = np.fromiter(map(self._heads.__getitem__, heads), np.int64, k)
        except ValueError:                       # a bad number, a name that is not UTF-8
            return False
        if not np.isfinite(t).all():
            return False
        starts = np.empty(k, np.int64)
        starts[0] = 0
        starts[1:] = nl[:-1] + 1
        pos = self._append_text(data)
        self._t.extend(t)
        self._kind.extend(self._heads.kind[head])
        self._node.extend(self._heads.node[head])
        self._ref.extend(starts + pos)
        self._size.extend(nl - starts)
        return True

    def _add_slow(self, data: bytes, first_line: int, source: str) -> None:
        blob = bytearray()
        ts: list[float] = []
        kinds: list[int] = []
        nodes: list[int] = []
        starts: list[int] = []
        sizes: list[int] = []
        for i, raw in enumerate(data.split(b"\n")[:-1]):
            line = raw.strip()
            if not line:
                continue
            m = _LINE.fullmatch(line)
            t = None
            if m is not None:
                try:
                    t = float(m.group(1))
                except ValueError:
                    t = None
            if t is not None and math.isfinite(t):
                kind, node = self.kinds.by_bytes[m.group(2)], self.nodes.by_bytes[m.group(3)]
            else:
                try:
                    d = _loads(line)
                    ev = Event.from_dict(d)
                    if not isinstance(ev.kind, str) or not isinstance(ev.node, str):
                        raise ValueError("kind and node must be strings")
                    if not math.isfinite(ev.t):
                        raise ValueError(f"t must be a finite number of ms, got {d['t']!r}")
                except (ValueError, KeyError, TypeError) as e:
                    shown = raw[:120].decode("utf-8", "replace")
                    raise ValueError(f"line {first_line + i} of {source} is not an event: {e}: {shown!r}") from None
                t, kind, node = ev.t, self.kinds.code(ev.kind), self.nodes.code(ev.node)
                line = event_line(ev).encode("utf-8")
            ts.append(t)
            kinds.append(kind)
            nodes.append(node)
            starts.append(len(blob))
            sizes.append(len(line))
            blob += line
            blob += b"\n"
        if not ts:
            return
        pos = self._append_text(bytes(blob))
        self._t.extend(ts)
        self._kind.extend(kinds)
        self._node.extend(nodes)
        self._ref.extend(np.asarray(starts, np.int64) + pos)
        self._size.extend(sizes)

    def _append_text(self, blob: bytes) -> int:
        """Append ``blob`` to the text, then spill the oldest text past the memory budget;
        returns the global position of ``blob[0]``."""
        text = self._text
        pos = text.append(blob)
        budget = self.limits.memory_mb * 2**20
        if text.in_memory > budget:
            d = self.limits.spill_dir or tempfile.gettempdir()
            try:
                text.spill(budget, d)
            except OSError as e:
                raise JournalFull(
                    f"the journal outgrew its memory budget ({self.limits.memory_mb:g} MB) and could not "
                    f"spill text to {d}: {e}. Free disk space there, set LABKIT_JOURNAL_SPILL_DIR to a "
                    f"directory on a disk with room, or raise the budget with "
                    f"journal.set_limits(memory_mb=...).") from None
        return pos

    # -- ordering --------------------------------------------------------------------------
    def _place(self) -> None:
        """Put the rows indexed since the last call into ``_order`` (by time, stable)."""
        n = self._t.n
        start = self._ordered
        if start == n:
            return
        self._ordered = n
        if not self.by_time:
            return
        t = self._t.a
        new = np.arange(start, n, dtype=np.int64)
        new = new[np.argsort(t[start:n], kind="stable")]
        order = self._order
        m = order.n
        first = t[new[0]]
        if m and t[order.a[m - 1]] > first:      # merge into the tail that overlaps
            lo, hi = 0, m
            oa = order.a
            while lo < hi:                        # bisect_right on the time of order[i]
                mid = (lo + hi) // 2
                if t[oa[mid]] <= first:
                    lo = mid + 1
                else:
                    hi = mid
            tail = np.concatenate([oa[lo:m], new])
            tail = tail[np.argsort(t[tail], kind="stable")]
            order.n = lo
            order.extend(tail)
        else:
            order.extend(new)

    def sync(self) -> None:
        """Index appended objects and place new rows in journal order."""
        with self._lock:
            self._index_pending()
            self._place()

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._t.n + len(self._pending)

    @property
    def nrows(self) -> int:
        """Rows indexed so far (physical rows are 0 .. nrows-1, never renumbered)."""
        return self._t.n

    def rows(self) -> np.ndarray:
        """Every row, in journal order (a snapshot)."""
        with self._lock:
            self._index_pending()
            self._place()
            if self.by_time:
                return self._order.v.copy()
            return np.arange(self._t.n, dtype=np.int64)

    def columns(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time (ms), kind code and node code of ``rows``."""
        with self._lock:
            return self._t.a[rows], self._kind.a[rows], self._node.a[rows]

    def times(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._t.a[rows]

    def kind_codes(self, kinds: Iterable[str]) -> list[int]:
        return [self.kinds.by_str[k] for k in kinds if k in self.kinds.by_str]

    def node_codes(self, nodes: Iterable[str]) -> list[int]:
        return [self.nodes.by_str[n] for n in nodes if n in self.nodes.by_str]

    def text_rows_of_kinds(self, kinds: Iterable[str], start: int) -> np.ndarray:
        """Physical rows ``>= start`` read from text whose kind is one of ``kinds`` (in row
        order). (Objects are left out: they were made in this process, which knows them.)"""
        with self._lock:
            self._index_pending()
            codes = self.kind_codes(kinds)
            n = self._t.n
            if not codes or start >= n:
                return np.empty(0, np.int64)
            hit = np.isin(self._kind.a[start:n], codes) & (self._ref.a[start:n] >= 0)
            return start + np.flatnonzero(hit)

    def _lines(self, refs: list[int], sizes: list[int]) -> list[bytes | None]:
        """The journal lines at text positions ``refs`` (None where a ref is an object)."""
        out: list[bytes | None] = []
        with self._lock:
            read = self._text.read
            for ref, size in zip(refs, sizes):
                out.append(None if ref < 0 else read(ref, size))
        return out

    def rows_maybe_with_id(self, rows: np.ndarray, mid: str) -> np.ndarray:
        """``rows`` narrowed to those that may have id ``mid`` (a superset: the caller checks
        ``e.id``): objects whose id is ``mid``, lines that contain it as a JSON string."""
        if not isinstance(mid, str) or not _PLAIN_ID.fullmatch(mid):
            return rows                          # a writer might escape it some other way
        needle = f'"{mid}"'.encode("ascii")
        keep = []
        for part, refs, lines, objs in self._batches(rows):
            keep.extend(r for r, ref, line in zip(part.tolist(), refs, lines)
                        if (_event(objs, ~ref).id == mid if line is None else needle in line))
        return np.asarray(keep, dtype=np.int64)

    def _batches(self, rows: np.ndarray) -> Iterator[tuple]:
        """``rows`` in batches of BATCH: (rows, refs, lines -- None for an in-process event --,
        the objects), each batch read under the lock."""
        for i in range(0, len(rows), BATCH):
            part = rows[i:i + BATCH]
            with self._lock:
                refs = self._ref.a[part].tolist()
                lines = self._lines(refs, self._size.a[part].tolist())
                objs = self._objs
            yield part, refs, lines, objs

    def events(self, rows: np.ndarray) -> list:
        """The events at ``rows`` (Event objects, built now for rows held as text)."""
        with self._lock:
            refs = self._ref.a[rows].tolist()
            sizes = self._size.a[rows].tolist()
            ts = self._t.a[rows].tolist()
            ks = self._kind.a[rows].tolist()
            ns = self._node.a[rows].tolist()
            lines = self._lines(refs, sizes)
            objs = self._objs
        kinds, nodes = self.kinds.names, self.nodes.names
        out: list = []
        add = out.append
        collecting = gc.isenabled()
        gc.disable()          # many new objects, no cycles: collections would only cost time
        try:
            for ref, t, k, n, line in zip(refs, ts, ks, ns, lines):
                if line is None:
                    add(_event(objs, ~ref))
                else:
                    kind = kinds[k]
                    add(Event(t, kind, nodes[n], line_id(line, kind), None, line))
        finally:
            if collecting:
                gc.enable()
        return out

    def iter_events(self, rows: np.ndarray) -> Iterator:
        for i in range(0, len(rows), BATCH):
            yield from self.events(rows[i:i + BATCH])

    def iter_lines(self, rows: np.ndarray) -> Iterator[str]:
        """The journal lines of ``rows`` (JSON, each ending with a newline), in batches."""
        for _, refs, lines, objs in self._batches(rows):
            yield "".join(event_line(_event(objs, ~ref)) + "\n" if line is None else line.decode("utf-8") + "\n"
                          for ref, line in zip(refs, lines))

    def memory_bytes(self) -> int:
        """Bytes this store holds in memory (index columns and unspilled text; not objects)."""
        cols = (self._t, self._kind, self._node, self._ref, self._size, self._order)
        return sum(c.a.nbytes for c in cols) + self._text.in_memory

    @property
    def spilled_bytes(self) -> int:
        return self._text.spilled

    def set_limits(self, limits: JournalLimits) -> None:
        with self._lock:
            self.limits = limits
            if self.room() > 0:
                self.full = False
            self._append_text(b"")          # spills down to a lower budget now

    def full_message(self) -> str:
        return (f"the journal holds {self._t.n:,} events, its limit (max_events={self.limits.max_events:,}); "
                f"it reads no more, so memory stays bounded. Events after these are still in the node "
                f"files and are read once you raise the limit, e.g. "
                f"cluster.journal.set_limits(max_events={2 * self.limits.max_events}) -- or save what you "
                f"have with cluster.journal.to_jsonl(path), close the cluster and run a shorter experiment "
                f"(closing discards what was not read).")
