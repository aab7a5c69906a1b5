"""Maelstrom's ``g-set`` workload: a grow-only set (a CRDT exercise).

``{"type": "add", "element": x}`` -> ``add_ok``; ``{"type": "read"}`` -> ``read_ok
{"value": [...]}``. Adds are 0, 1, 2, ... mixed half and half with reads; one final read per
node after the heal. History: ``f="add"`` value ``x``; ``f="read"`` ok value the list.
Checker: Jepsen's set-full (labkit ``set_full``). Source: Maelstrom
``src/maelstrom/workload/g_set.clj``.
"""
from __future__ import annotations

from .base import Invocation
from .broadcast import SetWorkload

__all__ = ["GSet", "WORKLOADS"]


class GSet(SetWorkload):
    """Grow-only set: adds of unique ints, reads of the whole set."""

    name = "g-set"
    add_f = "add"
    read_field = "value"

    def request(self, inv: Invocation) -> dict:
        if inv.f == "read":
            return {"type": "read"}
        return {"type": "add", "element": inv.value}


WORKLOADS = {"g-set": GSet}
