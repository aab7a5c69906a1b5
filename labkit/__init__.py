"""labkit: the lab bench of Cloud Lab.

Write a node as a ``labkit.Node`` subclass, start it with ``labkit.Cluster(MyNode, n=3)``
(real processes over ZeroMQ) or ``labkit.Cluster(MyNode, n=3, runtime="sim")`` (the
deterministic simulator), break it with the fault calls, and read ``cluster.journal``.
"""
from __future__ import annotations

from ._interrupts import held_interrupts as _held_interrupts

# The processes runtime's modules (ZeroMQ, dill, multiprocess and the parts multiprocess
# imports only when it starts its first process) are imported here, with Ctrl-C held back,
# and not at the first Cluster(): an interrupt landing half-way through an import left the
# module broken, and every later Cluster() failed, until the kernel restarted.
with _held_interrupts():
    import dill as _dill  # noqa: F401
    import multiprocess as _mp  # noqa: F401
    import multiprocess.connection  # noqa: F401
    import multiprocess.resource_tracker  # noqa: F401
    import multiprocess.spawn  # noqa: F401
    import multiprocess.util  # noqa: F401
    if __import__("sys").platform.startswith("linux"):        # the start method processes use
        import multiprocess.forkserver  # noqa: F401
        import multiprocess.popen_forkserver  # noqa: F401
    else:
        import multiprocess.popen_spawn_posix  # noqa: F401
    try:
        import resource as _resource  # noqa: F401              (not on Windows)
    except ImportError:
        pass
    import zmq as _zmq  # noqa: F401

    from .runtime import child as _child  # noqa: F401
    from .runtime import pickling as _pickling  # noqa: F401
    from .runtime import processes  # noqa: F401
    from .runtime import sim  # noqa: F401
    from .runtime.host import NODE_PROCESS_ENV as _NODE_PROCESS_ENV
    if not __import__("os").environ.get(_NODE_PROCESS_ENV):   # a notebook: it reads journals
        import numpy as _numpy  # noqa: F401
from .cluster import Cluster, NodeStatus
from .context import Context
from .errors import (ArgumentError, ClusterClosed, Interrupted, LabkitError, MessageError, NodeCrashed,
                     NodeDown, Overloaded, RequestTimeout, RpcTimeout, StorageCorrupt, StorageError, UnknownNode)
from .guard import Guard, StormError
from .journal import KINDS, Event, Journal, JournalFull, JournalLimits
from .message import Message
from .nemesis import FAULTS, Schedule
from .runtime.network import Link, NetworkModel
from .node import Node
from .service import Service, delete, get, post, put, route
from .http_types import ClientResponse, HttpResponse, Request, Response, json_response
from .http_errors import (ClientConnectionError, ClientConnectorError, ClientError, ClientResponseError,
                          ClientSSLError, ContentTypeError, HTTPBadGateway, HTTPBadRequest, HTTPConflict,
                          HTTPException, HTTPForbidden, HTTPGatewayTimeout, HTTPInternalServerError,
                          HTTPMethodNotAllowed, HTTPNotFound, HTTPPreconditionFailed, HTTPServiceUnavailable,
                          HTTPTooManyRequests, HTTPUnauthorized, HTTPUnprocessableEntity, ServerConnectionError,
                          ServerDisconnectedError, ServerTimeoutError)

__version__ = "0.1.0"

#: Loaded on first use, so node processes never pay for matplotlib or the checkers.
_LAZY_MODULES = ("plots", "checkers", "sweep", "checks", "history", "recorder", "testing", "edn", "widgets", "raft",
                 "systems", "runtime", "maelstrom", "explore")
_LAZY_NAMES = {
    "History": "history", "Op": "history", "OpPair": "history", "HistoryError": "history",
    "Recorder": "recorder", "Client": "recorder", "KVProtocol": "recorder", "workload": "recorder",
    "Verdict": "checkers", "UnknownVerdict": "checkers", "check_linearizable": "checkers",
    "Program": "maelstrom.program",
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
