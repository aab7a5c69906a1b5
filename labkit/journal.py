"""The journal: one ordered record of everything that happened in a cluster.

Every send, delivery, drop, timer, crash, fault and client operation is an ``Event`` with a
time ``t`` (ms since the cluster started, on the true clock, not a node's skewed one), a
``kind``, the ``node`` it happened at and, for message events, the message id. Plots,
checkers, replay and the panel all read this one record.

Message events (``send``, ``deliver``, ``drop``) carry the message's wire fields
``src, dst, type, id, re, at, body``; ``drop`` adds the ``rule`` that dropped it. An event's
fields are decoded from the wire only when somebody reads them, which keeps the simulator
fast; ``Event.to_dict()`` is the schema, the same in both runtimes.

A journal read from text (the processes runtime's node files, ``Journal.load``) keeps each
event as its JSON line plus a few index columns (see ``journal_store``): ~0.15 KB an event
instead of ~1.3 KB as objects. ``Event`` objects are built as they are read, so iterating a
large journal is cheaper than keeping ``journal.events``; ``filter``, ``count``, ``len`` and
``summary`` work on the index. The memory a journal may take is bounded by a documented
policy (``JournalLimits``: spill text to disk past a budget, refuse past a number of events).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import LabkitError
from .message import loads as _loads, make_dumps

MESSAGE_KINDS = frozenset({"send", "deliver", "drop"})

#: The kinds of event a journal holds, and what they mean.
KINDS = {
    "send": "a node handed a message to the network (node = sender)",
    "deliver": "a message reached its destination's handler (node = receiver)",
    "drop": "the network dropped a message; `rule` says why (node = destination)",
    "timer_set": "a node set a timer (`name`, `after` ms on its own clock)",
    "timer_fire": "a timer fired (`name`)",
    "start": "a node incarnation started (`incarnation`)",
    "crash": "a handler raised: the node is down (`error`, `traceback`, `cause`, `seed`)",
    "handler_error": "a service's HTTP handler raised: answered 500, the node goes on (`error`, `traceback`, "
                     "`handler`, `request` id, `method`, `path`, `remote`, `seed`)",
    "kill": "the node was killed (SIGKILL in the processes runtime)",
    "restart": "the node was restarted with its durable storage",
    "pause": "the node was paused (SIGSTOP)",
    "resume": "the node was resumed (SIGCONT)",
    "partition": "the network was split into `groups`",
    "heal": "partitions and cuts were removed",
    "cut": "link(s) `a`->`b` (and back unless `one_way`) were cut",
    "uncut": "link(s) `a`->`b` (and back unless `one_way`) were restored",
    "link": "link fault settings changed (`src`, `dst`, settings)",
    "clear_links": "all link fault settings were removed",
    "skew": "a node's clock was skewed (`offset_ms`, `rate`)",
    "slow": "a node's speed changed: its ctx.work takes `factor` x as long (1: normal again) -- the gray failure",
    "log": "a node logged a line (`text`; a labkit.Program's stderr line has `stream` \"stderr\")",
    "note": "a node journaled a protocol observation with `ctx.note` (`what`, fields)",
    "stats": "a node's counters and reported status (`counters`, `status`)",
    "repair": "a node cut a torn last write off its storage file on start (`file`, `offset`, `bytes_cut`, `reason`)",
    "malformed": "a frame that is not a message reached a node and was dropped (`error`), or a labkit.Program's "
                 "program wrote a stdout line that is not a valid Maelstrom message (`error`, `line`, `source`)",
    "nemesis": "the nemesis (node 'nemesis') started, stopped or applied a fault (`op`, `fault`, args such as `node`)",
    "op": "a client operation, Jepsen-style (`process`, `type` invoke|ok|fail|info, `f`, `value`, `key`)",
    "close": "the cluster was closed",
}

# Journal lines tolerate NaN in user counters (a journal must never fail to be written).
_dumps = make_dumps(allow_nan=True)


def event_line(ev: "Event") -> str:
    """One journal line (JSON, no newline): the schema both runtimes write and ``load`` reads."""
    w = ev._wire
    if type(w) is bytes and ev._extra is None:   # read from a journal line: that line
        return w.decode("utf-8")
    if ev._data is None and type(w) is str and ev.id is None and not ev._extra and len(w) > 2:
        # A non-message event born as a JSON object (``ctx.note``): splice, don't re-encode.
        return f'{{"t":{round(ev.t, 3)!r},"kind":"{ev.kind}","node":{_dumps(ev.node)},{w[1:]}'
    return _dumps(ev.to_dict())


class Event:
    """One journal entry. Read-only; ``e.data`` holds the kind-specific fields.

    ``wire`` (internal) is where the fields come from until somebody reads them: a message's
    wire JSON (str), the simulator's tuple (``src, dst, type, id, re, at, body``, the body as
    JSON text or as a flat dict of JSON scalars), or a whole journal line (bytes)."""

    __slots__ = ("t", "kind", "node", "id", "_data", "_wire", "_extra")

    def __init__(self, t: float, kind: str, node: str, id: str | None = None,
                 data: Mapping[str, Any] | None = None, wire: str | bytes | tuple | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.t = t
        self.kind = kind
        self.node = node
        self.id = id
        self._data = data
        self._wire = wire
        self._extra = extra

    @property
    def data(self) -> Mapping[str, Any]:
        d = self._data
        if d is None:
            w = self._wire
            if w is None:
                d = {}
            elif type(w) is tuple:  # the simulator's form: header fields and the body (its JSON,
                b = w[6]            # or a flat dict of JSON scalars, see labkit.runtime.sim: copied; or an
                            # HTTP response's dict holding a flat dict, Response._payload: copied too)
                d = {"src": w[0], "dst": w[1], "type": w[2], "id": w[3], "re": w[4], "at": w[5],
                     "body": _loads(b) if b.__class__ is str else dict(b) if "json" not in b else _loads(_dumps(b))}
            elif type(w) is bytes:  # a whole journal line (a journal read from text)
                d = parse_line(w)
                for k in ("t", "kind", "node"):
                    d.pop(k, None)
                if self.kind not in MESSAGE_KINDS:
                    d.pop("id", None)
            else:
                d = _loads(w)
            if self._extra:
                d.update(self._extra)
            self._data = d
        return d

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    # Message events: short-cuts used by plots and checkers.
    @property
    def src(self) -> str | None:
        return self.data.get("src")

    @property
    def dst(self) -> str | None:
        return self.data.get("dst")

    @property
    def type(self) -> str | None:
        w = self._wire
        if self._data is None and type(w) is bytes and self.kind in MESSAGE_KINDS:
            return line_type(w)             # without decoding the body
        return self.data.get("type")

    @property
    def body(self) -> dict | None:
        return self.data.get("body")

    def to_dict(self) -> dict:
        d = {"t": round(self.t, 3), "kind": self.kind, "node": self.node}
        if self.id is not None:
            d["id"] = self.id
        for k, v in self.data.items():
            if k not in d:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Event":
        if not isinstance(d, Mapping):
            raise ValueError(f"an event is a JSON object, got {type(d).__name__}")
        rest = {k: v for k, v in d.items() if k not in ("t", "kind", "node")}
        mid = rest.get("id") if d.get("kind") in ("send", "deliver", "drop") else rest.pop("id", None)
        return cls(float(d["t"]), d["kind"], d["node"], mid, rest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        extra = ""
        if self.kind in ("send", "deliver", "drop"):
            extra = f" {self.src}->{self.dst} {self.type!r}"
            if self.kind == "drop":
                extra += f" rule={self.get('rule')!r}"
        elif self.kind == "log":
            extra = f" {self.get('text')!r}"
        elif self.kind == "timer_fire" or self.kind == "timer_set":
            extra = f" {self.get('name')!r}"
        mid = f" id={self.id}" if self.id else ""
        return f"<Event t={self.t:.3f} {self.kind} @{self.node}{mid}{extra}>"


# -- journal lines read from text -------------------------------------------------------------
#: Journal files are read and indexed in blocks of about this many bytes.
BLOCK_BYTES = 2 << 20

# The header of a journal line as labkit writes it, then anything, then the closing brace.
_LINE = re.compile(rb'^\{"t":(-?[0-9][0-9.eE+-]*),"kind":"([A-Za-z_][A-Za-z0-9_]*)","node":"([^"\\\n]*)"'
                   rb'(?:,[^\n]*)?\}$', re.M)
# An event's id: right after the header (how ``Event.to_dict`` writes it), or in a message's
# wire header (src, dst, type, id -- how nodes write message events). Inside a JSON string a
# quote is always escaped, so ``"id":"`` cannot match inside a value that comes earlier.
_ID = re.compile(rb'\{"t":[^,]*,"kind":"[^"]*","node":"[^"\\]*",(?:"id":"([^"\\]*)"'
                 rb'|"src":"[^"\\]*","dst":"[^"\\]*","type":"[^"\\]*(?:\\.[^"\\]*)*","id":"([^"\\]*)")')
_TYPE = re.compile(rb'\{"t":[^,]*,"kind":"[^"]*","node":"[^"\\]*",(?:"id":"[^"\\]*",)?'
                   rb'"src":"[^"\\]*","dst":"[^"\\]*","type":("[^"\\]*(?:\\.[^"\\]*)*")')


def line_id(line: bytes, kind: str | None = None) -> Any:
    """The ``id`` of the event whose journal line is ``line`` (None if it has none)."""
    if kind is not None and kind not in MESSAGE_KINDS and b'"id"' not in line:
        return None                          # most events: no id, no regular expression
    m = _ID.match(line)
    if m is not None:
        g = m.group(1)
        return (g if g is not None else m.group(2)).decode("utf-8")
    if b'"id"' not in line:
        return None
    return parse_line(line).get("id")    # as ``Event.from_dict`` has it, whatever its type


def line_type(line: bytes) -> Any:
    """The message type in a message event's journal line."""
    m = _TYPE.match(line)
    if m is not None:
        return _loads(m.group(1))
    return parse_line(line).get("type")


def parse_line(line: bytes) -> dict:
    try:
        d = _loads(line)
    except ValueError as e:
        raise ValueError(f"a journal line is not valid JSON ({e}): {line[:120].decode('utf-8', 'replace')!r}; "
                         f"the journal file is damaged") from None
    if type(d) is not dict:
        raise ValueError(f"a journal line is not a JSON object: {line[:120].decode('utf-8', 'replace')!r}")
    return d


# -- how much a journal may hold -------------------------------------------------------------
class JournalFull(LabkitError):
    """The journal holds its ``max_events`` and refuses to read more (see ``JournalLimits``)."""


def _env_number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or v < minimum:
        raise ValueError(f"environment variable {name}={raw!r} must be a number >= {minimum:g}; "
                         f"unset it to use the default {default:g}")
    return v


@dataclass(frozen=True)
class JournalLimits:
    """How much of a journal the notebook's process holds.

    * ``memory_mb``: journal text kept in memory (MB, 2**20 bytes); older text is spilled to
      a temporary file in ``spill_dir``. Default 128, or ``$LABKIT_JOURNAL_MEMORY_MB``.
    * ``max_events``: events a journal reads at most; past it a read raises ``JournalFull``.
      Default 5,000,000 (~200 MB of index), or ``$LABKIT_JOURNAL_MAX_EVENTS``.
    * ``spill_dir``: where spilled text goes (default ``$LABKIT_JOURNAL_SPILL_DIR``, else the
      system's temporary directory). Use a disk, not a RAM disk (tmpfs), or spilling saves
      no memory.

    The limits govern what a journal *reads* -- the processes runtime's node files and
    ``Journal.load``. Events made in the notebook's process (all of the simulator's, the
    cluster's own records) are already objects in memory when they are journaled; they are
    indexed but neither spilled nor refused.
    """

    memory_mb: float = 128.0
    max_events: int = 5_000_000
    spill_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.memory_mb, (int, float)) or isinstance(self.memory_mb, bool) \
                or not math.isfinite(self.memory_mb) or self.memory_mb < 0:
            raise ValueError(f"memory_mb is the journal text kept in memory, in MB: a finite number "
                             f">= 0; got {self.memory_mb!r}")
        if not isinstance(self.max_events, int) or isinstance(self.max_events, bool) or self.max_events < 1:
            raise ValueError(f"max_events is a whole number >= 1, got {self.max_events!r}")
        if self.spill_dir is not None and not os.path.isdir(self.spill_dir):
            raise ValueError(f"spill_dir {self.spill_dir!r} is not a directory")

    @classmethod
    def from_env(cls) -> "JournalLimits":
        return cls(memory_mb=_env_number("LABKIT_JOURNAL_MEMORY_MB", cls.memory_mb, 0),
                   max_events=int(_env_number("LABKIT_JOURNAL_MAX_EVENTS", cls.max_events, 1)),
                   spill_dir=os.environ.get("LABKIT_JOURNAL_SPILL_DIR") or None)


class Journal:
    """An ordered, filterable sequence of events.

    A live cluster's journal is read through ``cluster.journal``; it fills itself from the
    runtime each time it is read. ``filter`` and slices return a new (static) Journal that
    shares the events. ``Journal(events)`` makes one from any iterable of ``Event``.

    Memory: events read from text are held as their JSON lines plus an index (see
    ``journal_store``) and built into ``Event`` objects as they are read; ``events`` builds
    them all at once (~0.5 KB each), so iterate or ``filter`` first on a large journal.
    ``limits`` / ``set_limits`` bound what the journal holds (``JournalLimits``).
    """

    def __init__(self, events: Iterable[Event] = (), *, refresh: Callable[[], None] | None = None,
                 seed: int | None = None, _rows: Any = None) -> None:
        from .journal_store import EventStore
        if isinstance(events, EventStore):
            self._store = events
        else:
            self._store = EventStore()
            self._store.extend(events)
        self._rows = _rows             # None: every row of the store (a live journal)
        self._refresh = refresh
        self.seed = seed

    # -- reading ---------------------------------------------------------------------------
    def _sync(self) -> Any:
        """Rows of this journal in order (a numpy array of the store's physical rows)."""
        if self._rows is not None:
            return self._rows
        if self._refresh is not None:
            self._refresh()
        return self._store.rows()

    def _view(self, rows: Any) -> "Journal":
        return Journal(self._store, seed=self.seed, _rows=rows)

    def __iter__(self) -> Iterator[Event]:
        return self._store.iter_events(self._sync())

    def __len__(self) -> int:
        if self._rows is not None:
            return len(self._rows)
        if self._refresh is not None:
            self._refresh()
        self._store.sync()
        return self._store.nrows

    def __getitem__(self, i):
        rows = self._sync()
        if isinstance(i, slice):
            return self._view(rows[i])
        if not isinstance(i, int) and hasattr(i, "__index__"):
            i = i.__index__()
        if not isinstance(i, int):
            raise TypeError(f"journal indices are integers or slices, not {type(i).__name__}")
        n = len(rows)
        if not -n <= i < n:
            raise IndexError(f"journal index {i} out of range ({n} events)")
        return self._store.events(rows[i:i + 1] if i != -1 else rows[-1:])[0]

    @property
    def events(self) -> list[Event]:
        """Every event, as a list (builds them all: on a large journal, filter first)."""
        return self._store.events(self._sync())

    def filter(self, *, node: str | Iterable[str] | None = None, kind: str | Iterable[str] | None = None,
               type: str | Iterable[str] | None = None, since: float | None = None,
               until: float | None = None, id: str | None = None,
               where: Callable[[Event], bool] | None = None) -> "Journal":
        """Events matching every given condition. ``since``/``until`` are ms, inclusive
        (numbers, infinities included; ``ArgumentError`` for NaN or anything else).

        ``type`` matches a message event's message type; ``where`` is any predicate. Node,
        kind and time are answered from the index; ``type``, ``id`` and ``where`` look at the
        events left after those."""
        import numpy as np
        since, until = _bound(since, "since"), _bound(until, "until")
        nodes = _as_set(node)
        kinds = _as_set(kind)
        types = _as_set(type)
        if kinds is not None:
            unknown = kinds - KINDS.keys()
            if unknown:
                raise ValueError(f"unknown event kind(s) {sorted(unknown)}; known: {sorted(KINDS)}")
        if types is not None:
            kinds = (kinds or set(MESSAGE_KINDS)) & MESSAGE_KINDS
        store = self._store
        rows = self._sync()
        if nodes is not None or kinds is not None or since is not None or until is not None:
            t, k, n = store.columns(rows)
            keep = np.ones(len(rows), bool)
            if nodes is not None:
                keep &= np.isin(n, store.node_codes(nodes))
            if kinds is not None:
                keep &= np.isin(k, store.kind_codes(kinds))
            if since is not None:
                keep &= t >= since
            if until is not None:
                keep &= t <= until
            rows = rows[keep]
        if id is not None:
            rows = store.rows_maybe_with_id(rows, id)
        if id is not None or types is not None or where is not None:
            out = []
            for i, e in zip(rows.tolist(), store.iter_events(rows)):
                if id is not None and e.id != id:
                    continue
                if types is not None and e.type not in types:
                    continue
                if where is not None and not where(e):
                    continue
                out.append(i)
            rows = np.asarray(out, dtype=np.int64)
        return self._view(rows)

    def count(self, **filters: Any) -> Counter:
        """How many events of each kind (after ``filter(**filters)``)."""
        src = self.filter(**filters) if filters else self
        return src._counts(src._sync())

    def _counts(self, rows: Any) -> Counter:
        import numpy as np
        _, k, _ = self._store.columns(rows)
        names = self._store.kinds.names
        return Counter({names[c]: int(v) for c, v in enumerate(np.bincount(k)) if v})

    # -- limits ----------------------------------------------------------------------------
    @property
    def limits(self) -> JournalLimits:
        """What this journal may hold in memory and in all (``JournalLimits``)."""
        return self._store.limits

    def set_limits(self, *, memory_mb: float | None = None, max_events: int | None = None,
                   spill_dir: str | None = None) -> JournalLimits:
        """Change this journal's limits (the rest stay); returns the new ``JournalLimits``.
        Raising ``max_events`` lets a journal that refused (``JournalFull``) read on."""
        old = self._store.limits
        new = JournalLimits(memory_mb=old.memory_mb if memory_mb is None else memory_mb,
                            max_events=old.max_events if max_events is None else max_events,
                            spill_dir=old.spill_dir if spill_dir is None else spill_dir)
        self._store.set_limits(new)
        return new

    # -- export / import -------------------------------------------------------------------
    def to_jsonl(self, path: str | None = None) -> str | None:
        """Write one JSON object per line to ``path``, or return the text when no path is given."""
        lines = self._store.iter_lines(self._sync())
        if path is None:
            return "".join(lines)
        with open(path, "w", encoding="utf-8") as f:
            for part in lines:
                f.write(part)
        return None

    @classmethod
    def load(cls, source: str, *, limits: JournalLimits | None = None) -> "Journal":
        """Load a journal from a JSON-lines file path, or from JSON-lines text.

        Each line's header (``t``, ``kind``, ``node``) and shape are checked as it is read
        (ValueError names the line); the rest of a line is decoded when its event is read.
        A journal of more than ``limits.max_events`` events raises ``JournalFull``."""
        from .journal_store import EventStore
        store = EventStore(limits=limits)
        f = None
        if "\n" in source or source.lstrip().startswith("{"):
            data = source.encode("utf-8")
            blocks: Iterable[bytes] = (data[i:i + BLOCK_BYTES] for i in range(0, len(data), BLOCK_BYTES))
            where = "the journal"
        else:
            f = open(source, "rb")
            blocks = iter(lambda: f.read(BLOCK_BYTES), b"")
            where = f"the journal {source}"
        line = 1
        rest = b""
        try:
            for block in blocks:
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                line = _load_block(store, data[:cut], line, where)
            if rest:
                _load_block(store, rest + b"\n", line, where)
        finally:
            if f is not None:
                f.close()
        return cls(store)

    def summary(self) -> str:
        rows = self._sync()
        if not len(rows):
            return "Journal: empty"
        counts = self._counts(rows)
        kinds = ", ".join(f"{k} {counts[k]}" for k in sorted(counts, key=lambda k: (-counts[k], k)))
        t = self._store.times(rows[[0, -1]])
        return f"Journal: {len(rows)} events over {t[0]:.0f}-{t[1]:.0f} ms ({kinds})"

    def __repr__(self) -> str:
        return f"<{self.summary()}>"

    def __reduce__(self) -> tuple:
        # Pickles as its events: a static copy (a live journal's refresh does not travel).
        return (_rebuild, (self.events, self.seed))


def _rebuild(events: list, seed: int | None) -> "Journal":
    return Journal(events, seed=seed)


def _load_block(store: Any, data: bytes, line: int, where: str) -> int:
    """Index ``data`` (whole lines) into ``store``; returns the number of the next line."""
    if store.add_text(data, first_line=line, source=where) < len(data):
        raise JournalFull(f"this journal has more than {store.limits.max_events:,} events, the limit "
                          f"(max_events); load it with a higher limit, e.g. Journal.load(path, "
                          f"limits=labkit.JournalLimits(max_events={2 * store.limits.max_events})), "
                          f"or split the file.")
    return line + data.count(b"\n")


def _bound(x: Any, name: str) -> float | None:
    """A time bound of ``filter``: None, or a number of ms that is not NaN (which no time is
    before or after: every event would silently be left out)."""
    if x is None:
        return None
    if isinstance(x, float) and math.isinf(x):
        return x
    from . import argcheck
    from .errors import ArgumentError
    try:
        return argcheck.number(x, f"filter({name})", unit="ms")
    except ArgumentError:
        raise ArgumentError(f"filter({name}) must be a number of ms (or None), got {x!r}") from None


def _as_set(x) -> set | None:
    if x is None:
        return None
    if isinstance(x, str):
        return {x}
    return set(x)
