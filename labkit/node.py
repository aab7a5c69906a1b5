"""``labkit.Node``: the base class of everything that runs in a cluster.

A node is protocol logic and nothing else. It reacts to ``on_start``, ``on_message`` and
``on_timer`` and asks for effects through the context ``ctx`` it is handed: it never opens
a socket, reads the wall clock or calls ``random`` itself. That is what lets one class run
unchanged in real processes and in the deterministic simulator.

Fields on ``self`` are volatile: ``kill`` and ``restart`` give the node a fresh object.
Whatever must survive goes in ``ctx.storage``.

Any handler may be ``async def`` and ``await ctx.rpc(...)`` or ``await ctx.sleep(ms)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Context
    from .message import Message


class Node:
    """Subclass this and override the handlers you need."""

    def on_start(self, ctx: "Context") -> Any:
        """Called once when this incarnation of the node starts (also after ``restart``)."""

    def on_message(self, ctx: "Context", msg: "Message") -> Any:
        """Called for every message delivered to this node (replies to ``ctx.rpc`` excepted)."""

    def on_timer(self, ctx: "Context", name: str) -> Any:
        """Called when the timer ``name`` set with ``ctx.set_timer`` fires."""
