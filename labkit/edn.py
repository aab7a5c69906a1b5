"""A small EDN reader and writer: the subset Jepsen and Maelstrom histories use.

Jepsen stores a history as EDN, one operation map per line::

    {:process 0, :type :invoke, :f :read, :value nil, :time 1234567, :index 0}

Supported: maps ``{}``, vectors ``[]``, lists ``()``, sets ``#{}``, keywords (``:f``,
``:ns/name``), strings, integers (``42``, ``42N``), floats (``1.5``, ``1e3``, ``1.5M``),
``nil``, ``true``/``false``, ``##NaN``/``##Inf``/``##-Inf``, symbols, comments (``;``), discards (``#_``) and tagged
literals (``#jepsen.history.Op{...}`` reads as its map; the tag is dropped). Commas are
white space. Not supported: characters (``\\a``), ratios, ``#inst``/``#uuid`` as
anything but their string.

Python mapping: keyword -> ``Keyword`` (a ``str`` subclass, so ``Keyword("read") ==
"read"``), symbol -> ``Symbol``, vector and list -> ``list``, set -> ``frozenset``,
map -> ``dict`` (vector keys become tuples, to be hashable). Writing maps back: ``Keyword``
-> ``:kw``, other ``str`` -> ``"string"``, ``list``/``tuple`` -> vector, ``set``/``frozenset``
-> ``#{}``, ``dict`` -> map, ``None`` -> ``nil``.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterator

__all__ = ["Keyword", "Symbol", "EdnError", "loads", "loads_all", "dumps"]


class Keyword(str):
    """An EDN keyword such as ``:read``; equal to the plain string ``"read"``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Keyword({str(self)!r})"


class Symbol(str):
    """An EDN symbol (bare word other than nil/true/false)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str(self)!r})"


class EdnError(ValueError):
    """Malformed EDN; ``line`` is the 1-based line where the problem is."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


_DELIMS = set("()[]{}\"; \t\r\n,")
_INT = re.compile(r"[+-]?\d+N?\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\d*\.\d+|\d+)([eE][+-]?\d+)?M?\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "/": "/"}
_END = object()
_OPENER = {"}": "{", "]": "[", ")": "("}


class _Unclosed(EdnError):
    """The text ended inside a collection (``read_seq`` says which, and where it opened)."""
_SYMBOLIC = {"NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}


class _Reader:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1

    def error(self, msg: str) -> EdnError:
        return EdnError(msg, self.line)

    def skip_ws(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c == "\n":
                self.line += 1
                self.i += 1
            elif c in " \t\r,":
                self.i += 1
            elif c == ";":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def read(self, closer: str | None = None) -> Any:
        """The next form; ``_END`` when ``closer`` is reached (or at end of text if None)."""
        self.skip_ws()
        s = self.s
        if self.i >= len(s):
            if closer is not None:
                raise _Unclosed("", self.line)      # read_seq names the line of the opener
            return _END
        c = s[self.i]
        if closer is not None and c == closer:
            self.i += 1
            return _END
        if c in ")]}":
            raise self.error(f"unexpected {c!r}" + (f" where {closer!r} should close" if closer else ""))
        if c == "{":
            self.i += 1
            items = self.read_seq("}")
            if len(items) % 2:
                raise self.error("a map needs an even number of forms (key value pairs)")
            return {_hashable(items[k]): items[k + 1] for k in range(0, len(items), 2)}
        if c == "[":
            self.i += 1
            return self.read_seq("]")
        if c == "(":
            self.i += 1
            return self.read_seq(")")
        if c == '"':
            return self.read_string()
        if c == "#":
            if s.startswith("#_", self.i):
                self.i += 2
                if self.read() is _END:
                    raise self.error("#_ discards nothing")
                return self.read(closer)
            return self.read_dispatch()
        if c == "\\":
            raise self.error("EDN characters (\\c) are not supported")
        return self.read_atom()

    def read_seq(self, closer: str) -> list:
        out = []
        opened = self.line              # (the opener was just read, on this line)
        while True:
            try:
                x = self.read(closer)
            except _Unclosed:
                # The innermost collection left open is named on the line it was opened on (the
                # line of the missing closer), not at the end of the text.
                raise EdnError(f"unexpected end of input: the {_OPENER[closer]!r} opened on this line is "
                               f"never closed (a {closer!r} is missing)", opened) from None
            if x is _END:
                return out
            out.append(x)

    def read_string(self) -> str:
        s, i, start_line = self.s, self.i + 1, self.line
        parts = []
        while True:
            j = i
            while j < len(s) and s[j] not in '"\\':
                j += 1
            parts.append(s[i:j])
            self.line += s.count("\n", i, j)
            if j >= len(s):
                raise EdnError("unterminated string", start_line)
            if s[j] == '"':
                self.i = j + 1
                return "".join(parts)
            esc = s[j + 1:j + 2]
            if esc == "u":
                try:
                    parts.append(chr(int(s[j + 2:j + 6], 16)))
                except ValueError:
                    raise self.error("bad \\u escape in string") from None
                i = j + 6
            elif esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
                i = j + 2
            else:
                raise self.error(f"bad escape \\{esc} in string")

    def read_dispatch(self) -> Any:
        s = self.s
        nxt = s[self.i + 1:self.i + 2]
        if nxt == "{":
            self.i += 2
            return frozenset(_hashable(x) for x in self.read_seq("}"))
        if nxt == "#":                      # symbolic values ##NaN, ##Inf, ##-Inf
            self.i += 2
            tok = self.read_atom()
            if tok not in _SYMBOLIC:
                raise self.error(f"unknown symbolic value ##{tok}")
            return _SYMBOLIC[tok]
        self.i += 1
        tag = self.read_atom()
        if not isinstance(tag, Symbol):
            raise self.error(f"bad tag #{tag!r}")
        form = self.read()
        if form is _END:
            raise self.error(f"tag #{tag} has no form")
        return form

    def read_atom(self) -> Any:
        s, i = self.s, self.i
        j = i
        while j < len(s) and s[j] not in _DELIMS:
            j += 1
        tok = s[i:j]
        self.i = j
        if tok.startswith(":"):
            if len(tok) < 2:
                raise self.error("empty keyword ':'")
            return Keyword(tok[1:])
        if tok == "nil":
            return None
        if tok == "true":
            return True
        if tok == "false":
            return False
        if _INT.match(tok):
            return int(tok.rstrip("N"))
        if _FLOAT.match(tok):
            return float(tok.rstrip("M"))
        if tok[0].isdigit() or (tok[0] in "+-" and len(tok) > 1 and tok[1].isdigit()):
            raise self.error(f"bad number {tok!r}")
        return Symbol(tok)


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted(((k, _hashable(v)) for k, v in x.items()), key=repr))
    return x


def loads(text: str) -> Any:
    """Read exactly one EDN form from ``text``. Raises ``EdnError``."""
    forms = list(iter_forms(text))
    if len(forms) != 1:
        raise EdnError(f"expected one form, found {len(forms)}", 1)
    return forms[0][1]


def iter_forms(text: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, form)`` for each top-level form in ``text``."""
    r = _Reader(text)
    while True:
        r.skip_ws()
        line = r.line
        x = r.read()
        if x is _END:
            return
        yield line, x


def loads_all(text: str) -> list:
    """Read every top-level form in ``text``."""
    return [x for _, x in iter_forms(text)]


def _dump_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace(
        "\t", "\\t").replace("\r", "\\r") + '"'


def dumps(x: Any) -> str:
    """``x`` as EDN text (one line). Raises ``TypeError`` for values EDN cannot hold."""
    if x is None:
        return "nil"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, Keyword):
        return ":" + str(x)
    if isinstance(x, Symbol):
        return str(x)
    if isinstance(x, str):
        return _dump_str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise TypeError(f"EDN cannot hold the float {x!r}")
        return repr(x)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{dumps(k)} {dumps(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + " ".join(dumps(v) for v in x) + "]"
    if isinstance(x, (set, frozenset)):
        return "#{" + " ".join(sorted((dumps(v) for v in x))) + "}"
    raise TypeError(f"cannot write a {type(x).__name__} as EDN: {x!r}")
