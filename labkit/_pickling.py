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

import io
import sys
import types
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


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (a node class or instance) for a node process."""
    buf = io.BytesIO()
    _NodePickler(buf, recurse=True).dump(obj)
    return buf.getvalue()


loads = dill.loads
