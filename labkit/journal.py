"""The journal: one ordered record of everything that happened in a cluster.

Every send, delivery, drop, timer, crash, fault and client operation is an ``Event`` with a
time ``t`` (ms since the cluster started, on the true clock, not a node's skewed one), a
``kind``, the ``node`` it happened at and, for message events, the message id. Plots,
checkers, replay and the panel all read this one record.

Message events (``send``, ``deliver``, ``drop``) carry the message's wire fields
``src, dst, type, id, re, at, body``; ``drop`` adds the ``rule`` that dropped it. An event's
fields are decoded from the wire only when somebody reads them, which keeps the simulator
fast; ``Event.to_dict()`` is the schema, the same in both runtimes.
"""
from __future__ import annotations

import io
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Mapping

from .message import loads as _loads, make_dumps

#: The kinds of event a journal holds, and what they mean.
KINDS = {
    "send": "a node handed a message to the network (node = sender)",
    "deliver": "a message reached its destination's handler (node = receiver)",
    "drop": "the network dropped a message; `rule` says why (node = destination)",
    "timer_set": "a node set a timer (`name`, `after` ms on its own clock)",
    "timer_fire": "a timer fired (`name`)",
    "start": "a node incarnation started (`incarnation`)",
    "crash": "a handler raised: the node is down (`error`, `traceback`, `cause`, `seed`)",
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
    "log": "a node logged a line (`text`)",
    "note": "a node journaled a protocol observation with `ctx.note` (`what`, fields)",
    "stats": "a node's counters and reported status (`counters`, `status`)",
    "repair": "a node cut a torn last write off its storage file on start (`file`, `offset`, `bytes_cut`, `reason`)",
    "malformed": "a frame that is not a message reached a node and was dropped (`error`)",
    "nemesis": "the nemesis (node 'nemesis') started, stopped or applied a fault (`op`, `fault`, args such as `node`)",
    "op": "a client operation, Jepsen-style (`process`, `type` invoke|ok|fail|info, `f`, `value`, `key`)",
    "close": "the cluster was closed",
}

# Journal lines tolerate NaN in user counters (a journal must never fail to be written).
_dumps = make_dumps(allow_nan=True)


def event_line(ev: "Event") -> str:
    """One journal line (JSON, no newline): the schema both runtimes write and ``load`` reads."""
    w = ev._wire
    if ev._data is None and type(w) is str and ev.id is None and not ev._extra and len(w) > 2:
        # A non-message event born as a JSON object (``ctx.note``): splice, don't re-encode.
        return f'{{"t":{round(ev.t, 3)!r},"kind":"{ev.kind}","node":{_dumps(ev.node)},{w[1:]}'
    return _dumps(ev.to_dict())


class Event:
    """One journal entry. Read-only; ``e.data`` holds the kind-specific fields."""

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
            elif type(w) is tuple:  # the simulator's form: header fields and the body's JSON
                d = {"src": w[0], "dst": w[1], "type": w[2], "id": w[3], "re": w[4], "at": w[5],
                     "body": _loads(w[6])}
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


class Journal:
    """An ordered, filterable list of events.

    A live cluster's journal is read through ``cluster.journal``; it fills itself from the
    runtime each time it is read. ``filter`` returns a new (static) Journal.
    """

    def __init__(self, events: Iterable[Event] = (), *, refresh: Callable[[], None] | None = None,
                 seed: int | None = None) -> None:
        self._events: list[Event] = events if isinstance(events, list) else list(events)
        self._refresh = refresh
        self.seed = seed

    # -- reading ---------------------------------------------------------------------------
    def _sync(self) -> list[Event]:
        if self._refresh is not None:
            self._refresh()
        return self._events

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self._sync()))

    def __len__(self) -> int:
        return len(self._sync())

    def __getitem__(self, i):
        ev = self._sync()
        if isinstance(i, slice):
            return Journal(ev[i], seed=self.seed)
        return ev[i]

    @property
    def events(self) -> list[Event]:
        return list(self._sync())

    def filter(self, *, node: str | Iterable[str] | None = None, kind: str | Iterable[str] | None = None,
               type: str | Iterable[str] | None = None, since: float | None = None,
               until: float | None = None, id: str | None = None,
               where: Callable[[Event], bool] | None = None) -> "Journal":
        """Events matching every given condition. ``since``/``until`` are ms, inclusive.

        ``type`` matches a message event's message type; ``where`` is any predicate.
        """
        nodes = _as_set(node)
        kinds = _as_set(kind)
        types = _as_set(type)
        if kinds is not None:
            unknown = kinds - KINDS.keys()
            if unknown:
                raise ValueError(f"unknown event kind(s) {sorted(unknown)}; known: {sorted(KINDS)}")
        out = []
        for e in self._sync():
            if nodes is not None and e.node not in nodes:
                continue
            if kinds is not None and e.kind not in kinds:
                continue
            if since is not None and e.t < since:
                continue
            if until is not None and e.t > until:
                continue
            if id is not None and e.id != id:
                continue
            if types is not None and (e.kind not in ("send", "deliver", "drop") or e.type not in types):
                continue
            if where is not None and not where(e):
                continue
            out.append(e)
        return Journal(out, seed=self.seed)

    def count(self, **filters: Any) -> Counter:
        """How many events of each kind (after ``filter(**filters)``)."""
        src = self.filter(**filters) if filters else self
        return Counter(e.kind for e in src._sync())

    # -- export / import -------------------------------------------------------------------
    def to_jsonl(self, path: str | None = None) -> str | None:
        """Write one JSON object per line to ``path``, or return the text when no path is given."""
        buf = io.StringIO()
        for e in self._sync():
            buf.write(event_line(e))
            buf.write("\n")
        text = buf.getvalue()
        if path is None:
            return text
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return None

    @classmethod
    def load(cls, source: str) -> "Journal":
        """Load a journal from a JSON-lines file path, or from JSON-lines text."""
        if "\n" in source or source.lstrip().startswith("{"):
            text = source
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        events = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(Event.from_dict(_loads(line)))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"line {n} of the journal is not an event: {e}: {line[:120]!r}") from None
        return cls(events)

    def summary(self) -> str:
        ev = self._sync()
        if not ev:
            return "Journal: empty"
        counts = Counter(e.kind for e in ev)
        kinds = ", ".join(f"{k} {counts[k]}" for k in sorted(counts, key=lambda k: (-counts[k], k)))
        return f"Journal: {len(ev)} events over {ev[0].t:.0f}-{ev[-1].t:.0f} ms ({kinds})"

    def __repr__(self) -> str:
        return f"<{self.summary()}>"


def _as_set(x) -> set | None:
    if x is None:
        return None
    if isinstance(x, str):
        return {x}
    return set(x)
