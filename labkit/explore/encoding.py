"""The canonical encoding of node state: pickled bytes that are both the copy and the key.

A node's state is its ``__dict__``, pickled. The bytes serve twice: unpickling them is how a
state is copied (~1-2 us, against ~8 us for ``copy.deepcopy``), and a digest of them is how
two states are recognised as the same. For the second use the bytes must be *canonical*:
equal states, equal bytes, in every run and under every ``PYTHONHASHSEED``. Two things make
ordinary pickles differ for equal states, and both are removed here:

* the memo: pickle writes an object seen before as a back-reference, so two equal strings
  that happen to be one object pickle differently from two that are not. The pickler runs
  in *fast* mode (no memo): every object is written in full. (A consequence: two attributes
  that share one mutable object come back as two equal objects. Node state rarely relies on
  aliasing; a cyclic structure is refused with a clear error.)
* sets: their iteration order depends on the insertion history and on string hashes. Sets
  and frozensets are written with their contents sorted (by value, or by the elements' own
  canonical bytes when values do not compare).

Dict order is kept (it is part of the state: a program may iterate a dict). The canonical
pickler costs a Python call per pickled object, so a state is pickled twice only when the
fast pickle holds a set (the EMPTY_SET / FROZENSET opcodes, or a false alarm from the same
byte in data): once to be copied from, once, canonically, for its digest. Classes that
cannot be pickled by reference (defined in a function, or in an ``exec`` namespace) are
pickled by a name kept in a registry (``_load_class``), and so are functions that capture
nothing (``__closure__`` is None), such as the ``lambda: set()`` of a
``defaultdict(lambda: set())``: with no captured cells they hold no state of their own, so one
object stands for them in every state, as an importable function does. A closure is refused
(its cells are state that pickling by name would share between states).
"""
from __future__ import annotations

import io
import pickle
import sys
import weakref
from functools import partial
from hashlib import blake2b
from types import FunctionType
from typing import Any

PROTOCOL = 5
_SET_OPS = (b"\x8f", b"\x91")     # EMPTY_SET, FROZENSET

#: Classes (and functions that capture nothing) pickled by name because they cannot be found by
#: reference (``_load_class``).
_BY_NAME: dict[str, type] = {}
_NAMES: "weakref.WeakKeyDictionary[type, str]" = weakref.WeakKeyDictionary()


class EncodeRefused(Exception):
    """State that cannot be copied (unpicklable, cyclic): the message says what and where."""


def _class_name(cls: type) -> str:
    n = _NAMES.get(cls)
    if n is None:
        base = f"{cls.__module__}.{cls.__qualname__}"
        n, i = base, 1
        while n in _BY_NAME and _BY_NAME[n] is not cls:   # two classes of one name (redefined)
            i += 1
            n = f"{base}#{i}"
        _NAMES[cls] = n
        _BY_NAME[n] = cls
    return n


def _load_class(name: str) -> type:
    return _BY_NAME[name]


_IMPORTABLE: "weakref.WeakKeyDictionary[type, bool]" = weakref.WeakKeyDictionary()


def _plain_function(obj: Any) -> bool:
    """A Python function that captures nothing (see the module docstring)."""
    return obj.__class__ is FunctionType and obj.__closure__ is None


def _importable(cls: Any) -> bool:
    ok = _IMPORTABLE.get(cls)
    if ok is None:
        obj: Any = sys.modules.get(cls.__module__)
        for part in cls.__qualname__.split("."):
            obj = getattr(obj, part, None)
        ok = _IMPORTABLE[cls] = obj is cls
    return ok


class _ByNamePickler(pickle.Pickler):
    """Fast mode; classes and capture-free functions that are not importable go by name through
    the registry."""

    def reducer_override(self, obj: Any) -> Any:
        if (isinstance(obj, type) or _plain_function(obj)) and not _importable(obj):
            return (_load_class, (_class_name(obj),))
        return NotImplemented


class Classes:
    """Remembers which top-level classes need the by-name pickler (one exploration)."""

    def __init__(self) -> None:
        self.slow: set[type] = set()


class _Reusable:
    """One pickler and buffer reused for every dump (a fresh Pickler costs about as much as a
    small dump). Explorations run on one thread; a nested call (a ``__reduce__`` that encodes)
    gets its own."""

    def __init__(self, by_name: bool) -> None:
        self.buf = io.BytesIO()
        self.p = _ByNamePickler(self.buf, PROTOCOL) if by_name else pickle.Pickler(self.buf, PROTOCOL)
        self.p.fast = True
        self.busy = False


_REUSE = {False: _Reusable(False), True: _Reusable(True)}


def _dumps(obj: Any, by_name: bool) -> bytes:
    r = _REUSE[by_name]
    if r.busy:
        r = _Reusable(by_name)
    r.busy = True
    buf = r.buf
    try:
        buf.seek(0)
        buf.truncate()
        r.p.dump(obj)
        return buf.getvalue()
    finally:
        r.busy = False


_fast_dumps = partial(_dumps, by_name=False)


class _CanonicalPickler(pickle.Pickler):
    """For digests only (never loaded): sets sorted, classes by name."""

    def __init__(self, buf: io.BytesIO) -> None:
        super().__init__(buf, PROTOCOL)
        self.fast = True

    def persistent_id(self, obj: Any) -> Any:
        t = obj.__class__
        if t is set or t is frozenset:
            return ("s" if t is set else "f", _sorted(obj))
        if isinstance(obj, type) and obj.__module__ != "builtins":
            return ("c", _class_name(obj))
        if t is FunctionType and obj.__closure__ is None and not _importable(obj):
            return ("c", _class_name(obj))
        return None


def _sorted(items: Any) -> tuple:
    try:
        return tuple(sorted(items))
    except TypeError:                  # values that do not compare: order by canonical bytes
        return tuple(sorted(items, key=canonical))


def canonical(obj: Any) -> bytes:
    """Canonical bytes of ``obj`` for digests (see the module docstring)."""
    buf = io.BytesIO()
    try:
        _CanonicalPickler(buf).dump(obj)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError) as e:
        raise EncodeRefused(str(e)) from None
    return buf.getvalue()


_ERRORS = (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError)


def encode(obj: Any, classes: Classes, kind: type | None = None) -> tuple[bytes, bytes]:
    """``(data, canon)``: bytes to copy ``obj`` from (``decode``) and its canonical bytes
    (the same object when ``data`` is canonical already). ``kind`` remembers, per node class,
    that the by-name pickler is needed. Raises ``EncodeRefused``.

    A dict whose values include sets (a node's ``__dict__`` with ``self.votes = set()``) is
    pickled once, its sets replaced by their sorted contents (``_SortedSet``, turned back into
    sets by ``decode``): those bytes are canonical and loadable. Sets nested deeper cost a
    second, canonical pickle for the digest."""
    if obj.__class__ is dict and any(v.__class__ is set or v.__class__ is frozenset for v in obj.values()):
        flat = {k: (_SortedSet((v.__class__ is set,) + _sorted(v)) if v.__class__ is set or v.__class__ is frozenset
                    else v) for k, v in obj.items()}
        data = _pickle(flat, classes, kind)
        if _SET_OPS[0] not in data and _SET_OPS[1] not in data:
            return data, data
    data = _pickle(obj, classes, kind)
    if _SET_OPS[0] in data or _SET_OPS[1] in data:
        return data, canonical(obj)
    return data, data


def _pickle(obj: Any, classes: Classes, kind: type | None) -> bytes:
    by_name = kind in classes.slow
    try:
        return _dumps(obj, by_name)
    except _ERRORS as e:
        if by_name:
            raise EncodeRefused(str(e)) from None
        try:
            data = _dumps(obj, True)
        except _ERRORS as e2:
            raise EncodeRefused(str(e2)) from None
        classes.slow.add(kind)
        return data


class _SortedSet(tuple):
    """A set among a node's attributes, as (is it a set, *its sorted contents)."""

    __slots__ = ()


_SORTED_SET = b"_SortedSet"


def decode(data: bytes, classes: Classes | None = None) -> Any:
    """The object ``encode`` wrote (a fresh copy every call)."""
    obj = pickle.loads(data)
    if _SORTED_SET in data and obj.__class__ is dict:
        for k, v in obj.items():
            if v.__class__ is _SortedSet:
                obj[k] = set(v[1:]) if v[0] else frozenset(v[1:])
    return obj



def digest(parts: Any) -> bytes:
    """A 16-byte digest of a tuple of canonical parts (bytes, str, numbers, tuples)."""
    return blake2b(_fast_dumps(parts), digest_size=16).digest()


def why_unpicklable(d: dict, classes: Classes) -> str:
    """Which attribute of a node's ``__dict__`` cannot be copied, and why."""
    for k, v in d.items():
        try:
            encode(v, classes, None)
        except EncodeRefused as e:
            return f"self.{k} = {type(v).__name__} object ({e})"
    return "a cycle or shared structure across attributes"
