"""Sending node classes to node processes.

dill pickles classes defined in ``__main__`` -- a notebook's cells -- by value, which is what
lets a reader's class run in a child process. But dill also pickles by value every module
it does not consider installed (anything outside site-packages and the interpreter's prefix),
including labkit itself when it is installed editable and the reader's own helper modules:
that drags whole module dictionaries along and fails on objects such as compiled JSON
scanners. Node processes can import those modules by name (they share ``sys.path``), so
this pickler sends every importable module as a reference and leaves ``__main__`` to dill.
"""
from __future__ import annotations

import enum
import io
import pickle
import pickletools
import sys
import types
import warnings
from typing import Any

import dill
from dill import _dill


class _NodePickler(dill.Pickler):
    dispatch = type(dill.Pickler.dispatch)(dill.Pickler.dispatch)


def _save_module(pickler: Any, obj: types.ModuleType) -> None:
    name = obj.__name__
    if name != "__main__" and sys.modules.get(name) is obj and getattr(obj, "__spec__", None) is not None:
        pickler.save_reduce(_dill._import_module, (name,), obj=obj)
    else:
        _dill.save_module(pickler, obj)


_NodePickler.dispatch[types.ModuleType] = _save_module


# -- Enums defined in __main__ --------------------------------------------------------------------
# dill sends __main__ classes by value, but not Enums (their members refer back to the class),
# and falls back to a reference a node process cannot resolve. Here an Enum travels as its
# metaclass, bases, members (name -> value, in order, aliases included) and ``__init__``; the
# rest of its body (methods, properties, ``_missing_``, ...) follows as state set on the
# rebuilt class, so methods that name the Enum refer to the rebuilt one.

_ENUM_MACHINERY = frozenset({
    "_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_", "_member_type_",
    "_value_repr_", "_new_member_", "_use_args_", "__new__", "__init__", "__module__", "__qualname__",
    "__dict__", "__weakref__", "_flag_mask_", "_singles_mask_", "_all_bits_", "_boundary_", "_inverted_",
    "_sort_order_", "__reduce_ex__", "_order_", "_ignore_"})


def _make_enum(metacls: type, name: str, qualname: str, bases: tuple, members: list, body: dict) -> type:
    classdict = metacls.__prepare__(name, bases)
    for key, value in body.items():
        classdict[key] = value
    for key, value in members:
        classdict[key] = value
    cls = metacls(name, bases, classdict)
    cls.__qualname__ = qualname
    return cls


def _enum_parts(cls: Any) -> tuple[tuple, dict] | None:
    """(arguments of ``_make_enum``, attributes to set afterwards), or None if this Enum cannot
    be rebuilt faithfully (a custom ``__new__``: its members' values are not its arguments)."""
    members = [(k, m._value_) for k, m in cls.__members__.items()]
    body = {"__init__": cls.__dict__["__init__"]} if "__init__" in cls.__dict__ else {}
    body["__module__"] = cls.__module__
    args = (type(cls), cls.__name__, cls.__qualname__, cls.__bases__, members, body)
    try:
        skeleton = _make_enum(*args)
    except Exception:
        return None
    if skeleton._new_member_ is not cls._new_member_:
        return None
    missing = object()
    rest = {}
    for key, value in cls.__dict__.items():
        if key in cls.__members__ or key in _ENUM_MACHINERY or skeleton.__dict__.get(key, missing) is value:
            continue
        if key in skeleton.__dict__ and not _defined_in(value, cls.__module__):
            continue                     # the same machinery, made anew for the skeleton
        rest[key] = value
    return args, rest


def _defined_in(value: Any, module: str) -> bool:
    for v in (value, getattr(value, "__func__", None), getattr(value, "fget", None)):
        if v is not None and getattr(v, "__module__", None) == module:
            return True
    return isinstance(value, str)        # a docstring


def _save_enum_class(pickler: Any, cls: Any) -> None:
    parts = _enum_parts(cls) if _by_value(cls) else None
    if parts is None:
        pickler.save_global(cls)         # importable (or refused later, see _main_references)
        return
    args, rest = parts
    # state (None, attrs): pickle's BUILD sets each attribute with setattr, after the class
    # exists and is memoized -- so methods whose globals name the Enum find the rebuilt one
    pickler.save_reduce(_make_enum, args, state=(None, rest) if rest else None, obj=cls)


def _by_value(cls: Any) -> bool:
    mod = sys.modules.get(cls.__module__)
    if cls.__module__ == "__main__" or mod is None:
        return True
    obj = mod
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is not cls                # not reachable by its name: it must travel by value


_NodePickler.dispatch[enum.EnumMeta] = _save_enum_class


def _main_references(blob: bytes) -> list[str]:
    """Names the pickle takes from ``__main__`` by reference: a node process has no such
    names (its ``__main__`` is not the notebook), so each would fail there."""
    out = []
    memo: dict = {}
    recent: list = []                                   # the last values pushed, when known
    for op, arg, _pos in pickletools.genops(blob):
        name = op.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                    "BINSTRING", "STRING"):
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif name == "STACK_GLOBAL":
            module, qual = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            if module == "__main__":
                out.append(str(qual))
            recent.append(None)
        elif name in ("GLOBAL", "INST"):
            module, _, qual = str(arg).partition(" ")
            if module == "__main__":
                out.append(qual)
            recent.append(None)
        else:
            recent.append(None)
        del recent[:-4]
    return out


class MainReferenceError(pickle.PicklingError):
    """An object from ``__main__`` (a notebook cell) that can only be sent by name."""


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (a node class or instance) for a node process. Raises
    MainReferenceError naming any ``__main__`` object that could only be sent by reference."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dill.PicklingWarning)   # the fallbacks are checked below
        _NodePickler(buf, recurse=True).dump(obj)
    blob = buf.getvalue()
    names = _main_references(blob)
    if names:
        listed = ", ".join(sorted(set(names)))
        raise MainReferenceError(
            f"{listed} (defined in the notebook or script, __main__) can only be sent to a node "
            f"process by name, and node processes do not run the notebook's cells. Move "
            f"{'it' if len(set(names)) == 1 else 'them'} into a module (a .py file next to the "
            f"notebook) and import {'it' if len(set(names)) == 1 else 'them'} from there")
    return blob


loads = dill.loads
