"""Errors labkit raises. Each message names what was wrong and what to do about it."""
from __future__ import annotations


class LabkitError(Exception):
    """Base class of every error labkit raises on purpose."""


class UnknownNode(LabkitError, KeyError):
    """A node id that is not part of the cluster."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown node"


class MessageError(LabkitError, ValueError):
    """A message that cannot be sent: bad body, bad destination, bad type."""


class StorageError(LabkitError, ValueError):
    """A value that cannot be stored durably (not JSON-serialisable, bad key), or a write that
    could not be made durable (disk full, file-size limit, I/O error): nothing of it is stored."""


class StorageCorrupt(StorageError):
    """A node's storage file is damaged before its tail (a checksum, frame or content error with
    whole records after it): the node refuses to start rather than skip acknowledged writes."""


class RpcTimeout(LabkitError, TimeoutError):
    """Raised inside a coroutine handler when ``await ctx.rpc(...)`` gets no reply in time."""


class RequestTimeout(LabkitError, TimeoutError):
    """Raised by ``cluster.request`` when the node did not answer in time."""


class NodeCrashed(LabkitError):
    """Raised by ``cluster.request`` when the node crashed while handling the request."""


class Overloaded(LabkitError):
    """Raised inside a coroutine handler at ``await ctx.work(ms)`` when the node cannot take
    the work: every worker is busy and ``queue_limit`` others already wait (the request is
    *shed*, counted as ``shed``). Left uncaught in a message handler it does not crash the
    node: the message is answered with a Maelstrom error, code 11 (temporarily-unavailable);
    see ``labkit.capacity``."""


class ClusterClosed(LabkitError):
    """The cluster was closed; start a new one."""


class ArgumentError(LabkitError, ValueError, TypeError):
    """A bad argument to a labkit call: the message names the argument, its value and what is
    allowed. A ``ValueError`` (and, for a value of the wrong type, a ``TypeError``)."""


class Interrupted(KeyboardInterrupt):
    """A real Ctrl-C ("interrupt kernel") that reached the simulator while it ran.

    The simulator turns SIGINT into this, so it can tell the reader's interrupt from a
    ``KeyboardInterrupt`` that node code raised itself (that one is the node's crash). It
    stops the cell like any ``KeyboardInterrupt``; if it had to stop a handler that did not
    return, that node is crashed, since its handler never finished."""


class NodeDown(NodeCrashed, RequestTimeout):
    """Raised by ``cluster.request`` at once when its node is known to be down or crashed
    (nothing is sent), or as soon as the node goes down while the request waits.

    A ``NodeCrashed``; and, since no reply can come in time, a ``RequestTimeout`` too -- so
    code that treats ``RequestTimeout`` as "no answer, nothing promised" works unchanged."""
