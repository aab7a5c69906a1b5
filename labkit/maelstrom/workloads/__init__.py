"""Maelstrom's workloads, by Maelstrom's names: ``get("broadcast", topology="tree4")``.

Each module exposes ``WORKLOADS: dict[str, type[Workload]]``; modules are imported only when
one of their workloads is asked for. Source: Maelstrom's ``doc/workloads.md``.
"""
from __future__ import annotations

import importlib
from typing import Any

from .base import CheckContext, Invocation, Workload

__all__ = ["get", "names", "module_for", "Workload", "Invocation", "CheckContext", "MODULES"]

#: Workload name -> module (under ``labkit.maelstrom.workloads``) that defines it.
MODULES: dict[str, str] = {
    "echo": "echo",
    "unique-ids": "unique_ids",
    "broadcast": "broadcast",
    "g-set": "gset",
    "g-counter": "counter",
    "pn-counter": "counter",
    "lin-kv": "lin_kv",
    "txn-list-append": "txn",
    "txn-rw-register": "txn",
    "kafka": "kafka",
}


def names() -> list[str]:
    """The workload names, in Maelstrom's order."""
    return list(MODULES)


def module_for(name: str) -> str:
    """The module name defining workload ``name``; ``ValueError`` naming the known ones."""
    if not isinstance(name, str) or name not in MODULES:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(MODULES)}")
    return MODULES[name]


def workload_class(name: str) -> type[Workload]:
    """The ``Workload`` subclass for ``name`` (imports its module). ``ValueError`` for an
    unknown name; ``ImportError`` if its module is not available in this checkout."""
    mod = importlib.import_module(f"{__name__}.{module_for(name)}")
    try:
        return mod.WORKLOADS[name]
    except (AttributeError, KeyError):
        raise ImportError(f"module {mod.__name__} does not define workload {name!r} in WORKLOADS") from None


def get(name: str, **opts: Any) -> Workload:
    """A fresh workload ``name`` with Maelstrom options ``opts`` (unknown option ->
    ``ValueError`` naming it and the known ones)."""
    return workload_class(name)(**opts)
