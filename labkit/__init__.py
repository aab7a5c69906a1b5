"""labkit: the lab bench of Cloud Lab.

Write a node as a ``labkit.Node`` subclass, start it with ``labkit.Cluster(MyNode, n=3)``
(real processes over ZeroMQ) or ``labkit.Cluster(MyNode, n=3, runtime="sim")`` (the
deterministic simulator), break it with the fault calls, and read ``cluster.journal``.
"""
from __future__ import annotations

from .cluster import Cluster, NodeStatus
from .context import Context
from .errors import (ClusterClosed, LabkitError, MessageError, NodeCrashed, RequestTimeout, RpcTimeout,
                     StorageError, UnknownNode)
from .journal import KINDS, Event, Journal
from .message import Message
from .nemesis import FAULTS, Schedule
from .network import Link, NetworkModel
from .node import Node

__version__ = "0.1.0"

_LAZY = ("plots", "checkers", "history", "testing")


def __getattr__(name: str):
    """``labkit.plots`` and friends load on first use: node processes never pay for matplotlib."""
    if name in _LAZY:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")

__all__ = [
    "Cluster", "NodeStatus", "Context", "Node", "Message", "Event", "Journal", "KINDS",
    "Link", "NetworkModel", "Schedule", "FAULTS",
    "LabkitError", "ClusterClosed", "MessageError", "NodeCrashed", "RequestTimeout", "RpcTimeout",
    "StorageError", "UnknownNode",
]
