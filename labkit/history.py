"""Jepsen-style histories: what clients asked, and what they were told.

A history is an ordered list of operations. Each *logical process* (a single-threaded
client) alternates an ``invoke`` with its completion:

* ``ok`` -- it happened (the value is the result, e.g. what a read saw);
* ``fail`` -- it certainly did not happen (a *definite* error);
* ``info`` -- we do not know: it may have happened at any time after the invocation, or
  never (a timeout, a crash, an *indefinite* error). A process whose operation ended in
  ``info`` is never used again -- it might still be running -- so its client continues as a
  new process id, exactly as in Jepsen.

The order of the list is the real-time order (``index``); ``time`` is cluster time in ms
(the journal's clock), or ``None`` when unknown. Operations on independent objects carry a
``key`` (Jepsen's ``independent`` tuples ``[k v]``): checkers split the history by key.

Files: JSON lines (labkit's form, ``time`` in ms) and EDN (Jepsen/Maelstrom's form, one map
per line, ``:time`` in ns, keyed values as ``[k v]``). Both load back to equal histories.

The recorder and workload generator (``Recorder``, ``Client``, ``workload``) live in
``labkit.recorder`` and are re-exported here.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Mapping, Sequence, overload

from . import edn
from .errors import LabkitError

__all__ = ["Op", "OpPair", "History", "HistoryError", "TYPES", "freeze"]

#: The four operation types.
TYPES = ("invoke", "ok", "fail", "info")


class HistoryError(LabkitError, ValueError):
    """A malformed history or history file; the message names the file, line or op index."""


def freeze(x: Any) -> Any:
    """``x`` with lists turned into tuples and sets into frozensets (recursively), so that
    values are hashable and compare the same whether they came from JSON, EDN or Python."""
    if isinstance(x, (list, tuple)):
        return tuple(freeze(v) for v in x)
    if isinstance(x, (set, frozenset)):
        return frozenset(freeze(v) for v in x)
    return x


def _thaw(x: Any) -> Any:
    if isinstance(x, tuple):
        return [_thaw(v) for v in x]
    if isinstance(x, frozenset):
        return sorted((_thaw(v) for v in x), key=repr)
    return x


@dataclass(frozen=True)
class Op:
    """One history entry.

    ``process``: an int for client processes (anything else, e.g. ``"nemesis"``, is not a
    client and is ignored by checkers); ``type``: one of ``TYPES``; ``f``: the function
    (``"read"``, ``"write"``, ``"cas"``, ...); ``value``: its argument or result (lists are
    stored as tuples); ``key``: the independent object it acts on, or ``None``; ``time``:
    cluster ms or ``None``; ``index``: position in the history; ``error``: why it failed or
    is uncertain (e.g. ``"timeout"``), or ``None``.
    """

    process: Any
    type: str
    f: str
    value: Any = None
    key: Any = None
    time: float | None = None
    index: int = -1
    error: Any = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise HistoryError(f"op type must be one of {TYPES}, got {self.type!r}")
        if not isinstance(self.f, str) or not self.f:
            raise HistoryError(f"op f must be a non-empty string, got {self.f!r}")
        object.__setattr__(self, "value", freeze(self.value))
        object.__setattr__(self, "key", freeze(self.key))
        object.__setattr__(self, "error", freeze(self.error))
        if self.time is not None:     # to the ns, Jepsen's unit: EDN's integer :time reads back equal
            object.__setattr__(self, "time", round(self.time, 6))

    @property
    def is_client(self) -> bool:
        return isinstance(self.process, int) and not isinstance(self.process, bool)

    def to_dict(self) -> dict:
        """The JSON-lines form (``time`` in ms; ``key``/``error`` left out when ``None``)."""
        d: dict[str, Any] = {"process": self.process, "type": self.type, "f": self.f,
                             "value": _thaw(self.value)}
        if self.key is not None:
            d["key"] = _thaw(self.key)
        if self.time is not None:
            d["time"] = self.time
        d["index"] = self.index
        if self.error is not None:
            d["error"] = _thaw(self.error)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Op":
        """Build an op from its JSON-lines form. Raises HistoryError."""
        if not isinstance(d, Mapping):
            raise HistoryError(f"an op is an object/map, got {type(d).__name__}")
        missing = [k for k in ("process", "type", "f") if k not in d]
        if missing:
            raise HistoryError(f"op lacks {', '.join(missing)}")
        t = d.get("time")
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t)):
            raise HistoryError(f"op time must be a number of ms, got {t!r}")
        idx = d.get("index", -1)
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise HistoryError(f"op index must be an int, got {idx!r}")
        proc = d["process"]
        proc = str(proc) if isinstance(proc, str) else proc
        return cls(proc, str(d["type"]), str(d["f"]), d.get("value"), d.get("key"),
                   None if t is None else float(t), idx, d.get("error"))

    def __str__(self) -> str:
        key = f" {self.key!r}" if self.key is not None else ""
        t = f"{self.time:10.3f} ms " if self.time is not None else ""
        err = f" ({self.error})" if self.error is not None else ""
        return f"{t}#{self.index:<4} p{self.process} {self.type:<6} {self.f}{key} {self.value!r}{err}"


@dataclass(frozen=True)
class OpPair:
    """An invocation with its completion (``None`` if the history ended first)."""

    invoke: Op
    completion: Op | None

    @property
    def type(self) -> str:
        """``ok``, ``fail`` or ``info`` (an unanswered invocation counts as ``info``)."""
        return self.completion.type if self.completion is not None else "info"

    @property
    def process(self) -> Any:
        return self.invoke.process

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def key(self) -> Any:
        return self.invoke.key

    @property
    def value(self) -> Any:
        """The result for ``ok`` (falling back to the invocation's value when the completion
        carries none), the invocation's value otherwise."""
        c = self.completion
        if c is not None and c.type == "ok" and c.value is not None:
            return c.value
        return self.invoke.value

    @property
    def start(self) -> float | None:
        return self.invoke.time

    @property
    def end(self) -> float | None:
        """Completion time; ``None`` if unanswered. For ``info`` it is when the client gave up,
        not when the operation took effect (which may be any time later)."""
        return self.completion.time if self.completion is not None else None

    @property
    def latency(self) -> float | None:
        """ms from invocation to ``ok``/``fail``; ``None`` for ``info`` or unknown times."""
        if self.type == "info" or self.start is None or self.end is None:
            return None
        return self.end - self.start

    def __str__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        span = ""
        if self.start is not None:
            span = f" [{self.start:.1f} .. {self.end:.1f} ms]" if self.end is not None and self.type != "info" \
                else f" [{self.start:.1f} ms .. ?]"
        return f"p{self.process} {self.f}{key} {self.value!r} -> {self.type}{span} (op #{self.invoke.index})"


#: The first element of a transaction's micro-operations (Elle's list-append and rw-register,
#: jepsen.tests.kafka): written as EDN keywords, ``[:append 1 2]``, as Jepsen writes them.
MICRO_OPS = frozenset({"r", "w", "append", "send", "poll"})


def _micro_keywords(value: Any) -> Any:
    """``(("append", 1, 2), ("r", 1, None))`` -> the same with ``edn.Keyword`` names (a
    Keyword equals its str, so the value reads back equal); any other value unchanged."""
    if (isinstance(value, tuple) and value and all(
            isinstance(m, tuple) and m and isinstance(m[0], str) and m[0] in MICRO_OPS for m in value)):
        return tuple((edn.Keyword(m[0]),) + m[1:] for m in value)
    return value


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of a history file; HistoryError naming the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise HistoryError(f"{source}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {col}); "
                           f"history files are UTF-8") from None


def _check_process(p: Any, edn_form: bool) -> None:
    """Jepsen's process ids: an integer for a client, a keyword (EDN) or a name such as
    "nemesis" (JSON) for anything else. Strings of digits, floats, nil, booleans and
    collections are refused -- they would be dropped or mis-paired without a word."""
    if isinstance(p, int) and not isinstance(p, bool):
        return
    if edn_form and isinstance(p, edn.Keyword):
        return
    if not edn_form and isinstance(p, str) and p.isidentifier():
        return
    other = "a keyword such as :nemesis" if edn_form else 'a name such as "nemesis"'
    raise HistoryError(f"process must be an integer (a client) or {other}, got "
                       f"{edn.dumps(p) if edn_form else json.dumps(p)}")


def _in_order(rows: list[tuple[int, Op, bool]], source: str) -> list[tuple[int, Op]]:
    """Put (line, op, has_index) rows in real-time order: by ``index`` when every op has one,
    else by ``time`` when every op has one (ties keep line order), else by line -- provided
    the indices and times that are there never go backwards; if they do, HistoryError names
    the first line where they do."""
    if rows and all(h for _, _, h in rows):
        out = sorted(rows, key=lambda r: r[1].index)
        for (l1, a, _), (l2, b, _) in zip(out, out[1:]):
            if a.index == b.index:
                raise HistoryError(f"{source}: line {l2}: index {b.index} repeats line {l1}'s")
        return [(line, op) for line, op, _ in out]
    if rows and all(op.time is not None for _, op, _ in rows):
        return [(line, op) for line, op, _ in sorted(rows, key=lambda r: r[1].time)]
    last_i = last_t = None
    for line, op, has in rows:
        for what, v, last in (("index", op.index if has else None, last_i), ("time", op.time, last_t)):
            if v is not None and last is not None and v < last[0]:
                unit = " ms" if what == "time" else ""
                raise HistoryError(f"{source}: line {line}: {what} {v:g}{unit} goes backwards (line {last[1]} has "
                                   f"{last[0]:g}{unit}); only some ops have :index/:time, so the order cannot be "
                                   f"repaired -- give every op an :index (or a :time)")
        if has:
            last_i = (op.index, line)
        if op.time is not None:
            last_t = (op.time, line)
    return [(line, op) for line, op, _ in rows]


class History(Sequence[Op]):
    """An ordered, immutable list of ``Op``.

    Indices: if every op has an index and they increase, they are kept (a sub-history keeps
    its ops' original indices); otherwise ops are numbered by position."""

    def __init__(self, ops: Iterable[Op | Mapping[str, Any]] = ()) -> None:
        lst = [o if isinstance(o, Op) else Op.from_dict(o) for o in ops]
        idx = [o.index for o in lst]
        if not all(i >= 0 for i in idx) or any(b <= a for a, b in zip(idx, idx[1:])):
            lst = [o if o.index == i else replace(o, index=i) for i, o in enumerate(lst)]
        self._ops: tuple[Op, ...] = tuple(lst)
        self._pairs: list[OpPair] | None = None

    # -- sequence --------------------------------------------------------------------------
    @overload
    def __getitem__(self, i: int) -> Op: ...
    @overload
    def __getitem__(self, i: slice) -> "History": ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return History(self._ops[i])
        return self._ops[i]

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._ops == other._ops

    def line_of(self, index: int) -> int | None:
        """The file line the op with this ``index`` was read from (histories loaded from a
        file), else None."""
        return getattr(self, "_lines", {}).get(index)

    @classmethod
    def _from_rows(cls, rows: list[tuple[int, Op, bool]], source: str) -> "History":
        ordered = _in_order(rows, source)
        h = cls(op for _, op in ordered)
        h._lines = {op.index: line for op, (line, _) in zip(h._ops, ordered)}
        return h

    __hash__ = None  # type: ignore[assignment]

    @property
    def ops(self) -> tuple[Op, ...]:
        return self._ops

    # -- structure -------------------------------------------------------------------------
    def pairs(self) -> list[OpPair]:
        """Invocations paired with their completions, in invocation order (client ops only).

        Raises HistoryError if a process completes an op it never invoked, invokes twice
        without completing, or completes with a different ``f``."""
        if self._pairs is not None:
            return list(self._pairs)
        open_: dict[Any, int] = {}
        out: list[list] = []
        for op in self._ops:
            if not op.is_client:
                continue
            p = op.process
            if op.type == "invoke":
                if p in open_:
                    raise HistoryError(f"op #{op.index}: process {p} invokes {op.f!r} while its op "
                                       f"#{out[open_[p]][0].index} is still open (a process is single-threaded)")
                open_[p] = len(out)
                out.append([op, None])
            else:
                if p not in open_:
                    raise HistoryError(f"op #{op.index}: process {p} completes ({op.type}) an op it never invoked")
                pair = out[open_.pop(p)]
                if pair[0].f != op.f:
                    raise HistoryError(f"op #{op.index}: process {p} invoked {pair[0].f!r} but completes {op.f!r}")
                pair[1] = op
        self._pairs = [OpPair(a, b) for a, b in out]
        return list(self._pairs)

    def by_key(self) -> dict[Any, "History"]:
        """Sub-histories per ``key`` (client ops only; ``None`` collects unkeyed ops)."""
        groups: dict[Any, list[Op]] = defaultdict(list)
        for op in self._ops:
            if op.is_client:
                groups[op.key].append(op)
        return {k: History(v) for k, v in groups.items()}

    @property
    def processes(self) -> list:
        return sorted({o.process for o in self._ops if o.is_client})

    def filter(self, *, f: str | None = None, type: str | None = None, key: Any = None,
               process: Any = None) -> "History":
        """The ops matching every given condition (indices kept)."""
        return History(o for o in self._ops if (f is None or o.f == f) and (type is None or o.type == type)
                       and (key is None or o.key == key) and (process is None or o.process == process))

    def counts(self) -> dict[str, int]:
        """How many completed pairs of each type (``ok``/``fail``/``info``)."""
        c = {"ok": 0, "fail": 0, "info": 0}
        for p in self.pairs():
            c[p.type] += 1
        return c

    def summary(self) -> str:
        c = self.counts()
        keys = len({o.key for o in self._ops if o.is_client})
        return (f"History: {len(self)} ops, {len(self.processes)} processes, {keys} key(s); "
                f"{c['ok']} ok, {c['fail']} fail, {c['info']} info")

    def __repr__(self) -> str:
        return f"<{self.summary()}>"

    def __str__(self) -> str:
        return "\n".join(str(o) for o in self._ops)

    # -- JSON lines ------------------------------------------------------------------------
    def to_jsonl(self) -> str:
        return "".join(json.dumps(o.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
                       for o in self._ops)

    def save_jsonl(self, path: str) -> None:
        """Write one JSON object per line (``time`` in ms)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_jsonl())

    @classmethod
    def from_jsonl(cls, text: str, source: str = "<text>") -> "History":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if isinstance(d, Mapping) and "process" in d:
                    _check_process(d["process"], edn_form=False)
                rows.append((n, Op.from_dict(d), isinstance(d, Mapping) and "index" in d))
            except (ValueError, TypeError) as e:  # json errors and HistoryError are ValueErrors
                raise HistoryError(f"{source}: line {n}: {e}") from None
        return cls._from_rows(rows, source)

    @classmethod
    def load_jsonl(cls, path: str) -> "History":
        """Read a JSON-lines history. Raises HistoryError naming the file and line, OSError."""
        with open(path, "rb") as f:
            return cls.from_jsonl(_decode(f.read(), path), path)

    # -- EDN -------------------------------------------------------------------------------
    def to_edn(self, independent: bool = True) -> str:
        """Jepsen form, one map per line: keywords for ``:type``/``:f``, ``:time`` in ns.
        With ``independent`` (default), a keyed op's value is written as ``[key value]``;
        otherwise as ``:key key``."""
        lines = []
        for o in self._ops:
            d: dict[Any, Any] = {edn.Keyword("process"): edn.Keyword(o.process) if isinstance(o.process, str)
                                 else o.process,
                                 edn.Keyword("type"): edn.Keyword(o.type), edn.Keyword("f"): edn.Keyword(o.f)}
            v = _micro_keywords(o.value)
            if o.key is not None and independent:
                v = (o.key, v)
            d[edn.Keyword("value")] = v
            if o.key is not None and not independent:
                d[edn.Keyword("key")] = o.key
            if o.time is not None:
                d[edn.Keyword("time")] = int(round(o.time * 1e6))
            d[edn.Keyword("index")] = o.index
            if o.error is not None:
                d[edn.Keyword("error")] = o.error
            lines.append(edn.dumps(d))
        return "".join(line + "\n" for line in lines)

    def save_edn(self, path: str, independent: bool = True) -> None:
        """Write the Jepsen/Maelstrom EDN form (see ``to_edn``)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_edn(independent))

    @classmethod
    def from_edn(cls, text: str, source: str = "<text>", independent: bool | None = None) -> "History":
        """Parse EDN: one op map per line (or one vector of maps; ``#jepsen.history.Op`` tags
        are fine). Unknown fields are dropped.

        ``independent``: split ``[key value]`` values into ``key`` and ``value``. ``None``
        (default) decides by the data: yes when no op has ``:key`` and every client op's value
        is a two-element vector -- as in a Maelstrom lin-kv history, where even a read's
        invocation is ``[k nil]``."""
        try:
            forms = list(edn.iter_forms(text))
        except edn.EdnError as e:
            raise HistoryError(f"{source}: line {e.line}: malformed EDN: {e.reason}") from None
        if len(forms) == 1 and isinstance(forms[0][1], list):
            forms = [(forms[0][0], x) for x in forms[0][1]]
        raw = []
        for line, m in forms:
            if not isinstance(m, dict):
                raise HistoryError(f"{source}: line {line}: expected an op map, got {edn.dumps(m)[:80]}")
            raw.append((line, {str(k) if isinstance(k, str) else k: v for k, v in m.items()}))
        if independent is None:
            client = [d for _, d in raw if isinstance(d.get("process"), int)]
            independent = bool(client) and all("key" not in d for _, d in raw) and all(
                isinstance(d.get("value"), list) and len(d["value"]) == 2 for d in client)
        rows = []
        for line, d in raw:
            try:
                if "process" in d:
                    _check_process(d["process"], edn_form=True)
                if "time" in d and isinstance(d["time"], (int, float)) and not isinstance(d["time"], bool):
                    d["time"] = d["time"] / 1e6
                if independent and isinstance(d.get("process"), int):
                    v = d.get("value")
                    if not (isinstance(v, list) and len(v) == 2):
                        raise HistoryError(f"expected an independent [key value] tuple, got {edn.dumps(v)}")
                    d["key"], d["value"] = v
                rows.append((line, Op.from_dict(d), "index" in d))
            except HistoryError as e:
                raise HistoryError(f"{source}: line {line}: {e}") from None
        return cls._from_rows(rows, source)

    @classmethod
    def load_edn(cls, path: str, independent: bool | None = None) -> "History":
        """Read an EDN history (see ``from_edn``). Raises HistoryError naming file and line."""
        with open(path, "rb") as f:
            return cls.from_edn(_decode(f.read(), path), path, independent)

    @classmethod
    def load(cls, path: str) -> "History":
        """Read ``.edn`` or ``.jsonl``/``.json`` by extension (else by the first character)."""
        with open(path, "rb") as f:
            text = _decode(f.read(), path)
        low = path.lower()
        if low.endswith(".edn"):
            return cls.from_edn(text, path)
        if low.endswith((".jsonl", ".json", ".ndjson")):
            return cls.from_jsonl(text, path)
        first = text.lstrip()[:2]
        return cls.from_jsonl(text, path) if first.startswith('{"') else cls.from_edn(text, path)


def __getattr__(name: str) -> Any:  # re-export the recorder without an import cycle
    if name in ("Recorder", "Client", "workload", "KVProtocol", "ERROR_CODES"):
        from . import recorder
        return getattr(recorder, name)
    raise AttributeError(f"module 'labkit.history' has no attribute {name!r}")
