"""``labkit.Node``: the base class of everything that runs in a cluster.

A node is protocol logic and nothing else. It reacts to ``on_start``, ``on_message`` and
``on_timer`` and asks for effects through the context ``ctx`` it is handed: it never opens
a socket, reads the wall clock or calls ``random`` itself. That is what lets one class run
unchanged in real processes and in the deterministic simulator.

Fields on ``self`` are volatile: ``kill`` and ``restart`` give the node a fresh object.
Whatever must survive goes in ``ctx.storage``.

Any handler may be ``async def`` and ``await ctx.rpc(...)``, ``await ctx.sleep(ms)`` or
``await ctx.work(ms)`` (service time, served by one of the node's ``workers``; see
``labkit.capacity``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Context
    from .message import Message


class Node:
    """Subclass this and override the handlers you need.

    Capacity (``labkit.capacity``), set in the class body and checked when the cluster is
    made: ``workers`` serve ``ctx.work`` at once; up to ``queue_limit`` more wait for one, in
    FIFO order; beyond that work is shed (``labkit.Overloaded``, error code 11 to the sender)."""

    #: How many ``ctx.work`` (or admitted requests) are served at once: a whole number >= 1.
    workers: int = 1
    #: How many may wait for a worker before the next is shed: a whole number >= 0.
    queue_limit: int = 64

    def on_start(self, ctx: "Context") -> Any:
        """Called once when this incarnation of the node starts (also after ``restart``)."""

    def on_message(self, ctx: "Context", msg: "Message") -> Any:
        """Called for every message delivered to this node (replies to ``ctx.rpc`` excepted)."""

    def on_timer(self, ctx: "Context", name: str) -> Any:
        """Called when the timer ``name`` set with ``ctx.set_timer`` fires."""
