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

__all__ = [
    "Cluster", "NodeStatus", "Context", "Node", "Message", "Event", "Journal", "KINDS",
    "Link", "NetworkModel", "Schedule", "FAULTS",
    "LabkitError", "ClusterClosed", "MessageError", "NodeCrashed", "RequestTimeout", "RpcTimeout",
    "StorageError", "UnknownNode",
]
