"""Search strategies over the executor's states: breadth-first, depth-first, random walks.

Breadth-first (the default) finds a shortest trace to any violation or goal; depth-first
reaches deep states sooner with less memory in the frontier; random walks sample long runs
of a space too big to enumerate (seeded, so a walk is replayable). All three dedupe states
by their canonical digest (``encoding``) and keep, for each state, the state and event it
was first reached from, so a trace is rebuilt by following the parents back to the start.

Sleep sets (Godefroid 1996, "Partial-order methods for the verification of concurrent
systems", ch. 5) skip re-executing an event at a state when the same step was already taken,
in the other order, along a commuting path: two steps commute when they are deliveries or
timer firings at two different nodes (each handler touches only its own node and adds to
the network). With state caching a state reached again with a smaller sleep set is explored
again for the events it had put to sleep, which keeps the set of states exactly the same as
without sleep sets (tested). Faults (crash, restart, drop, duplicate) commute with nothing.
They are off when a history reducer is given (it sees every step, in order).

Prunes make commuting conditional: a pruned state is a dead end, so steps x and e at t
commute only if neither t.x nor t.e is pruned (Godefroid's independence *in a state*). A
step x taken at t therefore sends x to sleep in t's later children only when t.x is not
pruned (known: t.x was just computed), and a pruned state is never expanded, not even when
it is reached again with a smaller sleep set. A sleeping event inherited from t's parent
would need t.x, which was never computed, to be checked the same way; so with prunes the
sleep sets are one level deep: those events are not inherited (a subset of a sound sleep
set is sound). Keeping them, or putting x to sleep although t.x is pruned, loses states
(tested). Depth-first search with prunes does not revisit states found again at a smaller
depth, which the sleep-set argument needs, so there sleep sets stay off.

Budgets stop a search with the outcome ``unknown`` (explored N states to depth d), never a
pass; so does Ctrl-C, which returns what was found so far.
"""
from __future__ import annotations

import random
import time
from collections import deque
from typing import Any, Callable

from .executor import Executor, HandlerCrashed
from .state import judge, reached, view_of

CHECK_EVERY = 256          # states between two budget checks
_NONE: frozenset = frozenset()


class IdsRead(Exception):
    """A handler read a message id: the search starts again with ids in the state."""


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        import resource
        import sys
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 1e6 if sys.platform == "darwin" else r / 1e3


def _node_of(ev: tuple) -> str | None:
    """The node a delivery or timer step happens at (None for faults: they commute with nothing)."""
    k = ev[0]
    if k == "d":
        return ev[2]
    if k == "t":
        return ev[1]
    return None


class Search:
    """One search; ``run()`` returns a dict of what was found (``result.Result`` wraps it)."""

    def __init__(self, ex: Executor, *, strategy: str, invariants: list, goals: list, prunes: list,
                 max_depth: int | None, max_states: int | None, max_seconds: float | None,
                 max_memory_mb: float | None, sleep_sets: bool, progress: Any, walks: int, seed: int,
                 start: tuple | None = None) -> None:
        self.ex = ex
        self.strategy = strategy
        self.invariants, self.goals, self.prunes = invariants, goals, prunes
        self.max_depth = max_depth if max_depth is not None else 1 << 30
        self.max_states = max_states if max_states is not None else 1 << 62
        self.max_seconds = max_seconds if max_seconds is not None else float("inf")
        self.max_memory_mb = max_memory_mb
        # Sleep sets need the steps they skip to commute: a history sees every step in order, so
        # with one they are off; with prunes they are one level deep (module docstring), and off
        # in depth-first search.
        self.sleep_sets = (sleep_sets and ex.history is None and strategy != "random"
                           and not (prunes and strategy == "dfs"))
        #: With prunes, a step x taken at t puts x to sleep in t's later children only if t.x
        #: is not pruned, and sleep sets are not inherited further (see ``_loop``).
        self.one_level = bool(prunes)
        self.pruned: set[bytes] = set()
        self.progress = progress
        self.walks, self.seed = walks, seed
        self.start = start
        self.parents: dict[bytes, tuple] = {}
        self.states = 0
        self.transitions = 0
        self.depth = 0
        self.cut = False
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.rss0 = _rss_mb()
        self.peak_mb = 0.0
        self.found: dict[str, Any] | None = None
        self.pruned_root = False

    # -- checking a new state --------------------------------------------------------------
    def _check(self, s: tuple, d: bytes, depth: int) -> bool | None:
        """Judge a new state: True if the search ends here (a violation or a goal), None if a
        prune holds there (counted, not expanded), else False."""
        if not (self.invariants or self.goals or self.prunes):
            return False
        v = view_of(self.ex, s, depth)
        for fn in self.invariants:
            msg = judge(fn, v, "invariant")
            if msg is not None:
                self.found = {"outcome": "violation", "message": msg, "invariant": getattr(fn, "__name__", repr(fn)),
                              "digest": d, "trace_depth": depth}
                return True
        for fn in self.goals:
            msg = reached(fn, v)
            if msg is not None:
                self.found = {"outcome": "goal", "message": msg, "digest": d, "trace_depth": depth}
                return True
        for fn in self.prunes:
            if reached(fn, v) is not None:
                return None
        return False

    def _next(self, s: tuple, d: bytes, ev: tuple, depth: int) -> tuple[tuple, bytes] | None:
        """Take ``ev`` in state ``s`` (digest ``d``, at ``depth``): the next state and its digest,
        or None when a handler crashed (the search's outcome is then that exception). Raises
        ``IdsRead`` when a handler read message ids the state leaves out."""
        ex = self.ex
        try:
            s2 = ex.step(s, ev)
        except HandlerCrashed as e:
            self._crashed(e, d, ev, depth + 1)
            return None
        if ex.flags.ids and not ex.ids_in_state:
            raise IdsRead(ex.flags.where_ids)
        self.transitions += 1
        return s2, ex.digest(s2)

    def _crashed(self, e: HandlerCrashed, parent: bytes, ev: tuple, depth: int) -> None:
        self.found = {"outcome": "exception", "message": e.event.get("error"), "traceback": e.event.get("traceback"),
                      "node": e.event.node, "cause": e.event.get("cause"), "parent": parent, "event": ev,
                      "trace_depth": depth}

    def _budget(self) -> str | None:
        el = time.perf_counter() - self.t0
        mb = _rss_mb() - self.rss0
        self.peak_mb = max(self.peak_mb, mb)
        if self.progress is not None:
            rate = self.states / el if el > 0 else 0.0
            self.progress.update(self.states, f"depth {self.depth}, {rate:,.0f} states/s, +{mb:,.0f} MB",
                                 states=self.states, depth=self.depth, rate=rate, memory_mb=mb)
        if self.states >= self.max_states:
            return f"the state budget (max_states={self.max_states:,})"
        if el >= self.max_seconds:
            return f"the time budget (max_seconds={self.max_seconds:g})"
        if self.max_memory_mb is not None and mb >= self.max_memory_mb:
            return f"the memory budget (max_memory_mb={self.max_memory_mb:g}; the search grew by {mb:.0f} MB)"
        return None

    # -- the strategies ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        stop = None
        try:
            if self.strategy == "random":
                stop = self._walks()
            else:
                stop = self._graph(self.strategy == "dfs")
        except KeyboardInterrupt as e:
            stop = "an interrupt (Ctrl-C): the result is partial"
            if getattr(e, "where", None):          # it came inside a handler (InterruptedInHandler)
                stop += f"; {e.where} (does that handler ever return?)"
        self.peak_mb = max(self.peak_mb, _rss_mb() - self.rss0)
        from hashlib import blake2b
        seen = sorted(d for d in self.parents if d is not None)
        out = {"states": self.states, "transitions": self.transitions, "depth": self.depth,
               "seconds": time.perf_counter() - self.t0, "cpu_seconds": time.process_time() - self.cpu0,
               "peak_mb": self.peak_mb,
               "fingerprint": blake2b(b"".join(seen), digest_size=8).hexdigest()}
        if self.found is not None:
            out.update(self.found)
            if "digest" in self.found:
                out["path"] = self.path(self.found["digest"])
            else:                     # an exception: the path to the parent, then the event
                out["path"] = self.path(self.found["parent"]) + [self.found["event"]]
        elif stop is not None:
            out.update(outcome="unknown", message=f"stopped by {stop}")
        elif self.strategy == "random":
            out.update(outcome="unknown", message=f"{self.walks} random walk(s) found nothing; a sample proves nothing")
        elif self.cut:
            out.update(outcome="bounded", message=f"no violation up to depth {self.max_depth}")
        else:
            out.update(outcome="exhausted", message="every reachable state was explored")
        return out

    def path(self, d: bytes) -> list[tuple]:
        evs = []
        while True:
            p, ev = self.parents[d]
            if p is None:
                return evs[::-1]
            evs.append(ev)
            d = p

    def _root(self) -> tuple[tuple, bytes] | None:
        s0 = self.start if self.start is not None else self.ex.initial()
        d0 = self.ex.digest(s0)
        self.parents[d0] = (None, None)
        self.states = 1
        verdict = self._check(s0, d0, 0)
        if verdict:
            return None
        if verdict is None:
            self.pruned_root = True
            self.pruned.add(d0)
        return s0, d0

    def _graph(self, dfs: bool) -> str | None:
        try:
            root = self._root()
        except HandlerCrashed as e:
            self.found = {"outcome": "exception", "message": e.event.get("error"),
                          "traceback": e.event.get("traceback"), "node": e.event.node, "cause": "on_start",
                          "digest": None, "trace_depth": 0}
            self.parents[None] = (None, None)          # type: ignore[index]
            return None
        if root is None:
            return None
        s0, d0 = root
        sleeping = self.sleep_sets
        parents = self.parents
        sleeps: dict[bytes, frozenset] = {d0: frozenset()} if sleeping else {}
        depths: dict[bytes, int] = {d0: 0}
        frontier: deque = deque([(s0, d0, 0, frozenset(), False if self.pruned_root else None)])
        pop = frontier.pop if dfs else frontier.popleft
        max_depth = self.max_depth
        return self._loop(frontier, pop, dfs, sleeping, parents, sleeps, depths, max_depth, self.ex.enabled)

    def _loop(self, frontier: deque, pop: Callable, dfs: bool, sleeping: bool, parents: dict, sleeps: dict,
              depths: dict, max_depth: int, enabled: Callable) -> str | None:
        count = 0
        one_level, pruned = self.one_level, self.pruned
        while frontier:
            s, d, depth, sleep, only = pop()
            if dfs and depths.get(d, depth) < depth and only is None:
                continue                       # reached again, shallower, since it was queued
            if depth > self.depth:
                self.depth = depth
            if only is False:                  # a pruned state: counted, not expanded
                continue
            evs = enabled(s)
            if depth >= max_depth:
                if evs:
                    self.cut = True
                continue
            if sleeping:
                # sleep and done (events taken here so far), those at a node (faults commute
                # with nothing), by node: a step at node n sends to sleep all of them but n's
                base: set = set()
                at: dict[str, set] = {}
                for x in (() if one_level else sleep):
                    n = _node_of(x)
                    if n is not None:
                        base.add(x)
                        at.setdefault(n, set()).add(x)
            for ev in evs:
                if ev in sleep or (only and ev not in only):
                    continue
                nxt = self._next(s, d, ev, depth)
                if nxt is None:
                    return None
                s2, d2 = nxt
                count += 1
                if count >= CHECK_EVERY:
                    count = 0
                    stop = self._budget()
                    if stop:
                        return stop
                if sleeping:
                    n = _node_of(ev)
                    if n is None:
                        child_sleep = _NONE
                    else:
                        mine = at.get(n)
                        child_sleep = frozenset(base - mine if mine else base) if base else _NONE
                known = d2 in parents
                if not known:
                    parents[d2] = (d, ev)
                    depths[d2] = depth + 1
                    self.states += 1
                    if self.states >= self.max_states:
                        return self._budget()
                    verdict = self._check(s2, d2, depth + 1)
                    if verdict:
                        return None
                    if verdict is None:
                        pruned.add(d2)
                    if sleeping:
                        sleeps[d2] = child_sleep
                    frontier.append((s2, d2, depth + 1, child_sleep if sleeping else frozenset(),
                                     False if verdict is None else None))
                elif dfs and depth + 1 < depths[d2] and not self.prunes:   # shallower: explore it again
                    parents[d2] = (d, ev)
                    depths[d2] = depth + 1
                    if sleeping:
                        sleeps[d2] = child_sleep
                    frontier.append((s2, d2, depth + 1, child_sleep if sleeping else frozenset(), None))
                elif sleeping and d2 not in pruned:
                    old = sleeps[d2]
                    if not old <= child_sleep:         # some events slept there that must run now
                        sleeps[d2] = old & child_sleep
                        frontier.append((s2, d2, depths[d2], old & child_sleep, old - child_sleep))
                if sleeping and n is not None and d2 not in pruned:   # ev, done here, sleeps in later children
                    mine = at.get(n)
                    base.add(ev)
                    if mine is None:
                        at[n] = {ev}
                    else:
                        mine.add(ev)
        return None

    def _walks(self) -> str | None:
        rng = random.Random(f"{self.seed}/explore-walks")
        root = self._root()
        if root is None:
            return None
        s0, d0 = root
        parents = self.parents
        count = 0
        for _ in range(self.walks):
            s, d = s0, d0
            for depth in range(self.max_depth):
                evs = self.ex.enabled(s)
                if not evs:
                    break
                ev = rng.choice(evs)
                nxt = self._next(s, d, ev, depth)
                if nxt is None:
                    return None
                s2, d2 = nxt
                count += 1
                if d2 not in parents:
                    parents[d2] = (d, ev)
                    self.states += 1
                    verdict = self._check(s2, d2, depth + 1)
                    if verdict:
                        return None
                    if verdict is None:
                        break
                if depth + 1 > self.depth:
                    self.depth = depth + 1
                s, d = s2, d2
                if count >= CHECK_EVERY:
                    count = 0
                    stop = self._budget()
                    if stop:
                        return stop
        return None


def replay_path(ex: Executor, path: list[tuple], start: tuple | None = None,
                on_state: Callable[[tuple, int], Any] | None = None, strict: bool = True) -> tuple:
    """Run ``path`` from the start (or ``start``); ``on_state(s, depth)`` after each step.
    Raises KeyError if an event is not enabled where it comes, HandlerCrashed if one raises."""
    s = start if start is not None else ex.initial()
    for i, ev in enumerate(path, 1):
        if strict and ev not in ex.enabled(s):
            raise KeyError(ev)
        s = ex.step(s, ev)
        if on_state is not None:
            on_state(s, i)
    return s
