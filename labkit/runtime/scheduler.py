"""The one scheduler: callbacks due at a time, in (time, order-of-scheduling) order.

Used by the simulator (virtual time), by each node process and by the notebook's side of
the processes runtime (real time), and by ``FakeContext`` (a hand-moved clock). An entry is
the list ``[t, seq, fn, args]``; cancelling sets ``fn`` to None, and the entry is skipped
when it comes up. Many cancelled entries (RPC timeouts that were answered) are swept out
so they do not pile up until they fall due.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable

_push = heapq.heappush
_pop = heapq.heappop


class Scheduler:
    __slots__ = ("heap", "_seq", "_cancelled")

    def __init__(self) -> None:
        self.heap: list[list] = []
        self._seq = 0
        self._cancelled = 0

    def call_at(self, t: float, fn: Callable[..., None], *args: Any) -> list:
        """Run ``fn(*args)`` at time ``t``; returns the entry, for ``cancel``."""
        self._seq += 1
        entry = [t, self._seq, fn, args]
        _push(self.heap, entry)
        return entry

    def cancel(self, entry: list) -> None:
        if entry[2] is not None:
            entry[2] = None
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self.heap):
                self.heap[:] = [e for e in self.heap if e[2] is not None]
                heapq.heapify(self.heap)
                self._cancelled = 0

    def next_time(self) -> float | None:
        """When the earliest entry (possibly cancelled) is due, or None."""
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now: float) -> list | None:
        """The next live entry due at or before ``now`` (removed from the heap), or None."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            entry = _pop(heap)
            if entry[2] is not None:
                return entry
            self._cancelled -= 1 if self._cancelled else 0
        return None

    def clear(self) -> None:
        self.heap.clear()
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self.heap)
