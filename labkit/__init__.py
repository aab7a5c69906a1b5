"""labkit: the lab bench of Cloud Lab.

Write a node as a ``labkit.Node`` subclass, start it with ``labkit.Cluster(MyNode, n=3)``
(real processes over ZeroMQ) or ``labkit.Cluster(MyNode, n=3, runtime="sim")`` (the
deterministic simulator), break it with the fault calls, and read ``cluster.journal``.
"""
from __future__ import annotations

from .cluster import Cluster, NodeStatus
from .context import Context
from .errors import (ClusterClosed, LabkitError, MessageError, NodeCrashed, RequestTimeout, RpcTimeout,
                     StorageCorrupt, StorageError, UnknownNode)
from .journal import KINDS, Event, Journal, JournalFull, JournalLimits
from .message import Message
from .nemesis import FAULTS, Schedule
from .network import Link, NetworkModel
from .node import Node

__version__ = "0.1.0"

#: Loaded on first use, so node processes never pay for matplotlib or the checkers.
_LAZY_MODULES = ("plots", "checkers", "checks", "history", "recorder", "testing", "edn", "widgets", "raft")
_LAZY_NAMES = {
    "History": "history", "Op": "history", "OpPair": "history", "HistoryError": "history",
    "Recorder": "recorder", "Client": "recorder", "KVProtocol": "recorder", "workload": "recorder",
    "Verdict": "checkers", "UnknownVerdict": "checkers", "check_linearizable": "checkers",
}


def __getattr__(name: str):
    import importlib
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_NAMES))
