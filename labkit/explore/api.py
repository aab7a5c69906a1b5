"""``labkit.explore(...)``: check its arguments, refuse what cannot be explored, run the search."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping

from ..errors import ArgumentError, LabkitError
from ..runtime.base import is_client_id
from .executor import Executor, HandlerCrashed, Refused
from .result import Result, Stage, minimise, note_flags
from .search import IdsRead, Search, replay_path
from .state import judge, reached, view_of

STRATEGIES = ("bfs", "dfs", "random")
FAULTS = {"crash": 0, "restart": False, "drop": False, "duplicate": 0}


class ExploreRefused(LabkitError):
    """The node classes (or arguments) cannot be model-checked as they are; the message says why
    and what to do instead."""


def _check_async(factories: Mapping[str, Callable[[], Any]]) -> None:
    seen = set()
    for node_id, f in factories.items():
        if getattr(getattr(f, "node", f), "_labkit_program", False):
            raise ExploreRefused(f"node {node_id} is a labkit.Program (a real executable in a real process): "
                                 f"labkit.explore copies node state between steps, so it explores labkit.Node "
                                 f"classes only; write the protocol as a labkit.Node to explore it")
        cls = f if isinstance(f, type) else type(f())
        if cls in seen:
            continue
        seen.add(cls)
        for name in ("on_start", "on_message", "on_timer"):
            fn = getattr(cls, name, None)
            if fn is not None and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
                raise ExploreRefused(
                    f"{cls.__name__}.{name} is `async def`: labkit.explore copies node state between steps, and a "
                    f"handler suspended in `await ctx.rpc(...)` (a coroutine) cannot be copied, so async nodes "
                    f"are refused in this version. Write the handler as a plain `def` that sends with ctx.send "
                    f"and handles the reply in on_message.")


def _faults(faults: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(FAULTS)
    if faults is None:
        return out
    if not isinstance(faults, Mapping):
        raise ArgumentError(f"faults must be a dict such as {{'crash': 1, 'restart': True, 'drop': True, "
                            f"'duplicate': 1}}, got {faults!r}")
    for k, v in faults.items():
        if k not in FAULTS:
            raise ArgumentError(f"faults: unknown fault {k!r}; the faults are {sorted(FAULTS)}")
        if k == "restart":
            if not isinstance(v, bool):
                raise ArgumentError(f"faults['restart'] must be True or False, got {v!r}")
            out[k] = v
        elif k == "drop" and isinstance(v, bool):
            out[k] = -1 if v else 0
        elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ArgumentError(f"faults[{k!r}] must be a whole number >= 0 (how many times it may happen)"
                                + (" or True (any number of drops)" if k == "drop" else "") + f", got {v!r}")
        else:
            out[k] = v
    return out


def _requests(requests: Iterable[Any], ids: tuple[str, ...]) -> list[tuple[str, str, str, dict]]:
    out = []
    for i, r in enumerate(requests, 1):
        r = tuple(r)
        if len(r) == 3:
            r = (f"c{i}",) + r
        if len(r) != 4 or not isinstance(r[3], dict) or r[1] not in ids or not is_client_id(r[0]):
            raise ArgumentError(f"requests[{i - 1}] = {r!r}: give (node, type, body) or (client, node, type, body), "
                                f"with a node of {list(ids)}, a client id such as 'c1' and a dict body")
        out.append(r)                                                      # type: ignore[arg-type]
    return out


def _fns(x: Any, what: str) -> list[Callable]:
    if x is None:
        return []
    if callable(x):
        return [x]
    if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        raise ArgumentError(f"{what} must be a function of the state view s, or a list of them, got {x!r}")
    out = list(x)
    for f in out:
        if not callable(f):
            raise ArgumentError(f"{what} must be functions of the state view s, got {f!r}")
    return out


def explore(nodes: Any, n: int | None = None, *, invariants: Any = (), goals: Any = (), prunes: Any = (),
            max_depth: int | None = None, max_states: int | None = None, max_seconds: float | None = 60.0,
            max_memory_mb: float | None = 2000.0, faults: Mapping[str, Any] | None = None, timers: str = "any",
            requests: Iterable[Any] = (), history: tuple[Any, Callable] | None = None, strategy: str = "bfs",
            walks: int = 1000, seed: int = 0, sleep_sets: bool = True, ids: bool | None = None,
            start: Stage | None = None, minimise_trace: bool = True, progress: Any = None) -> Result:
    """Explore every ordering of deliveries, timer firings and faults of a small cluster.

    ``nodes``/``n`` are ``labkit.Cluster``'s (a Node class and a count, a list, or a dict of
    ids to classes); the classes run unchanged. ``invariants``, ``goals``, ``prunes``:
    functions of a read-only ``StateView`` ``s`` (``s.nodes``, ``s.status``, ``s.network``,
    ``s.storage``, ``s.timers``, ``s.history``). An invariant returns True when it holds and
    False or a message when it does not; a goal or a prune returns something truthy when it
    holds (a prune stops the search below that state). ``max_depth`` bounds the steps;
    ``max_states``, ``max_seconds`` and ``max_memory_mb`` are budgets: hitting one answers
    ``unknown``. ``faults``: ``{"crash": k, "restart": bool, "drop": bool | k, "duplicate":
    k}``. ``timers``: ``"any"`` (any armed timer may fire next, as Stateright) or
    ``"ordered"`` (DSLabs: a timer waits for those armed before it on its node whose ``hi``
    is at most its ``lo``). ``requests``: client messages in flight from the start,
    ``(node, type, body)`` or ``(client, node, type, body)``. ``history``: ``(initial,
    reducer)``, ``reducer(h, step) -> h`` on every ``Step``. ``strategy``: ``"bfs"``
    (shortest traces), ``"dfs"``, or ``"random"`` (``walks`` seeded walks of up to
    ``max_depth`` steps). ``seed`` seeds ``ctx.rng`` per (seed, node, incarnation, event).
    ``ids``: None detects handlers that read message ids (they then join the state).
    ``start``: a ``Result.stage()`` to continue from. Traces of dfs and random searches are
    minimised unless ``minimise_trace=False``. ``progress``: as ``labkit.sweep``'s.

    Returns a ``Result``. Raises ``ExploreRefused`` for async handlers, ``ctx`` kept on self,
    state that cannot be pickled or HTTP services; ``ArgumentError`` for bad arguments.
    Model: Stateright's and DSLabs' (messages in flight as a multiset, no time)."""
    from ..cluster import _factories
    factories = _factories(nodes, n)
    _check_async(factories)
    if strategy not in STRATEGIES:
        raise ArgumentError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if timers not in ("any", "ordered"):
        raise ArgumentError(f"timers must be 'any' or 'ordered', got {timers!r}")
    for name, v in (("max_depth", max_depth), ("max_states", max_states), ("walks", walks)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "max_depth" else 1)):
            raise ArgumentError(f"{name} must be a whole number >= {0 if name == 'max_depth' else 1} or None, got {v!r}")
    for name, v in (("max_seconds", max_seconds), ("max_memory_mb", max_memory_mb)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ArgumentError(f"{name} must be a positive number or None, got {v!r}")
    if strategy == "random" and max_depth is None:
        raise ArgumentError("strategy='random' needs max_depth (the length of each walk)")
    if history is not None and (not isinstance(history, tuple) or len(history) != 2 or not callable(history[1])):
        raise ArgumentError(f"history must be (initial value, reducer(h, step) -> h), got {history!r}")
    f = _faults(faults)
    if f["duplicate"] and max_depth is None and f["drop"] != -1:
        pass
    config = dict(factories=factories, seed=seed, restart=f["restart"], requests=_requests(requests, tuple(factories)),
                  history=history, invariants=_fns(invariants, "invariants"), goals=_fns(goals, "goals"),
                  prunes=_fns(prunes, "prunes"))
    ids_in_state = bool(ids)
    own_progress = None
    if progress is not False:
        from .._progress import Progress
        own_progress = Progress("explore", None, unit="states", mode=progress)
    try:
        while True:
            try:
                ex = Executor(factories, seed=seed, ids_in_state=ids_in_state, faults=f, timers=timers,
                              history=history, requests=config["requests"])
                s0, prefix = (None, None) if start is None else start.prefix(ex)
            except Refused as e:
                raise ExploreRefused(str(e)) from None
            search = Search(ex, strategy=strategy, invariants=config["invariants"], goals=config["goals"],
                            prunes=config["prunes"], max_depth=max_depth, max_states=max_states,
                            max_seconds=max_seconds, max_memory_mb=max_memory_mb, sleep_sets=sleep_sets,
                            progress=own_progress, walks=walks, seed=seed, start=s0)
            try:
                found = search.run()
            except IdsRead:
                if ids is False:
                    raise ExploreRefused(f"a handler read {ex.flags.where_ids}, but ids=False leaves message ids "
                                         f"out of the state; use ids=None (detect) or ids=True") from None
                ids_in_state = True
                continue
            except Refused as e:
                raise ExploreRefused(str(e)) from None
            break
    finally:
        if own_progress is not None:
            own_progress.close()
    config["ids_in_state"] = ex.ids_in_state
    res = Result(found, config=config, notes=note_flags(ex), prefix=prefix)
    if minimise_trace and strategy != "bfs" and res.outcome in ("violation", "exception", "goal") and res._own > 1:
        minimise(res, _same_failure(ex, res, config, s0, prefix or []))
    return res


def _same_failure(ex: Executor, res: Result, config: dict, s0: Any, prefix: list) -> Callable[[list], int | None]:
    """A test for minimisation: how many steps of this path reach the same kind of finding
    (None if it does not)?"""
    n = len(prefix)

    class _Hit(Exception):
        pass

    def check(path: list) -> int | None:
        if path[:n] != prefix:
            return None

        last = [0]

        def on_state(s: tuple, depth: int) -> None:
            last[0] = depth
            v = view_of(ex, s, depth)
            if res.outcome == "violation":
                if any(judge(fn, v, "invariant") is not None for fn in config["invariants"]
                       if getattr(fn, "__name__", repr(fn)) == res.invariant):
                    raise _Hit(depth)
            elif res.outcome == "goal" and any(reached(fn, v) is not None for fn in config["goals"]):
                raise _Hit(depth)
        try:
            replay_path(ex, path[n:], start=s0, on_state=on_state)
        except _Hit as h:
            return n + h.args[0]
        except KeyError:
            return None
        except HandlerCrashed:
            if res.outcome != "exception":
                return None
            return n + last[0] + 1
        return None
    return check
