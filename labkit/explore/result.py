"""The answer of ``labkit.explore``: an outcome, the numbers, and the trace as a labkit Journal.

Outcomes (the names of model checkers such as TLC, Stateright and DSLabs):

* ``violation`` -- an invariant failed; ``trace`` leads there (shortest, for breadth-first);
* ``exception`` -- a handler raised; ``traceback`` is its traceback, ``trace`` leads there;
* ``goal``      -- a goal state was reached; ``trace`` leads there;
* ``exhausted`` -- every reachable state was explored: a proof, for this configuration;
* ``bounded``   -- no violation in any state up to ``max_depth`` steps (deeper ones exist);
* ``unknown``   -- a budget or Ctrl-C stopped the search, or random walks found nothing:
  "explored N states to depth d", never a pass.
"""
from __future__ import annotations

from typing import Any, Callable

from .state import Step

OUTCOMES = ("violation", "exception", "goal", "exhausted", "bounded", "unknown")


class Result:
    """What ``explore`` found. ``outcome`` (one of ``OUTCOMES``), ``message``, ``states``
    (distinct states), ``transitions`` (steps executed), ``depth`` (the deepest level
    reached), ``seconds``, ``rate`` (states/s), ``peak_mb`` (memory the search grew by);
    for a finding, ``trace`` (a list of ``Step``), ``journal`` (a labkit ``Journal`` of the
    trace run in the simulator: ``labkit.plots.spacetime(res.journal)`` draws it) and
    ``replay()``. ``fingerprint`` digests the set of states explored. ``notes`` lists what limits the result (e.g. handlers read ``ctx.now``)."""

    def __init__(self, found: dict[str, Any], *, config: dict[str, Any], notes: list[str],
                 prefix: list[tuple] | None = None) -> None:
        self.outcome: str = found["outcome"]
        self.message: str = found.get("message") or ""
        self.states: int = found["states"]
        self.transitions: int = found["transitions"]
        self.depth: int = found["depth"]
        self.seconds: float = found["seconds"]
        #: CPU seconds of this process during the search (what a shared machine cannot inflate).
        self.cpu_seconds: float = found.get("cpu_seconds", self.seconds)
        self.peak_mb: float = found.get("peak_mb", 0.0)
        #: A digest of the set of states explored (the same in every run and PYTHONHASHSEED).
        self.fingerprint: str = found.get("fingerprint", "")
        self.invariant: str | None = found.get("invariant")
        self.traceback: str | None = found.get("traceback")
        self.path: list[tuple] = list(prefix or []) + list(found.get("path") or [])
        self._own = len(found.get("path") or [])
        self.notes = notes
        self._config = config
        self._journal: Any = None
        self._replay: Any = None
        self.minimised_from: int | None = None

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0

    @property
    def passed(self) -> bool:
        """True for ``exhausted`` and ``bounded`` only (a budget never passes)."""
        return self.outcome in ("exhausted", "bounded")

    @property
    def trace(self) -> list[Step]:
        return [Step.of(ev) for ev in self.path]

    @property
    def journal(self) -> Any:
        """The trace as a labkit ``Journal``, from running it in the simulator (see ``replay``)."""
        if self._journal is None:
            self._journal = self.replay().journal
        return self._journal

    def replay(self) -> Any:
        """Run the trace again in labkit's simulator (``explore.replay.ScriptedSim``) and judge
        the last state as the search did. Returns a ``Replay``: ``journal``, ``state``,
        ``reproduced`` and ``message``. Raises ``ValueError`` for a result with no trace."""
        if self.outcome not in ("violation", "exception", "goal"):
            raise ValueError(f"a {self.outcome!r} result has no trace to replay: replay() follows the trace to a "
                             f"violation, an exception or a goal")
        from .replay import Replay, run_trace
        from .state import judge, reached
        c = self._config
        rt, hist = run_trace(c["factories"], seed=c["seed"], ids_in_state=c["ids_in_state"],
                             restart=c["restart"], requests=c["requests"], history=c["history"], path=self.path)
        from ..journal import Journal
        journal = Journal(list(rt.events), seed=c["seed"])
        view = rt.view(len(self.path), hist)
        if self.outcome == "exception":
            ok = bool(rt.crashes)
            msg = (f"the handler raised again: {rt.crashes[-1].get('error')}" if ok
                   else "NOT reproduced: no handler raised in the simulator")
        else:
            fns = c["invariants"] if self.outcome == "violation" else c["goals"]
            fn = next((f for f in fns if getattr(f, "__name__", repr(f)) == self.invariant), None) \
                if self.outcome == "violation" else None
            got = None
            for f in ([fn] if fn is not None else fns):
                got = judge(f, view, "invariant") if self.outcome == "violation" else reached(f, view)
                if got is not None:
                    break
            ok = got is not None
            what = "violation" if self.outcome == "violation" else "goal"
            msg = f"{what} reproduced: {got}" if ok else f"NOT reproduced: the {what} does not hold in the simulator"
        self._replay = Replay(journal, view, ok, msg, list(rt.crashes))
        self._journal = journal
        return self._replay

    def stage(self, *, drop_messages: bool = False) -> "Stage":
        """Start a next search from this result's last state (a staged search): pass it as
        ``explore(..., start=res.stage())``. ``drop_messages=True`` first drops the messages
        in flight between nodes (a deep bug's next stage rarely needs the last one's stale
        messages); client requests stay. The next search gets its own fault budgets."""
        if self.outcome not in ("goal", "violation"):
            raise ValueError(f"stage() starts from a goal (or violation) state; this result is {self.outcome!r}")
        return Stage(self, drop_messages)

    def summary(self) -> str:
        head = {
            "violation": f"violation at depth {len(self.path)}: {self.message}",
            "exception": f"exception at depth {len(self.path)}: {self.message}",
            "goal": f"goal reached at depth {len(self.path)}: {self.message}",
            "exhausted": f"exhausted: {self.states:,} states, no violation (depth {self.depth})",
            "bounded": f"bounded: no violation in {self.states:,} states up to depth {self.depth}",
            "unknown": f"unknown -- explored {self.states:,} states to depth {self.depth}; {self.message}",
        }[self.outcome]
        lines = [head, f"  {self.states:,} states, {self.transitions:,} transitions in {self.seconds:.2f} s "
                       f"({self.rate:,.0f} states/s)"]
        if self.minimised_from is not None:
            lines.append(f"  trace minimised from {self.minimised_from} to {len(self.path)} steps")
        if self.path:
            lines.append("  trace:")
            lines += [f"  {i:3d}. {st}" for i, st in enumerate(self.trace, 1)]
        if self.traceback:
            lines.append(self.traceback.rstrip())
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self) -> str:
        return self.summary()


class Stage:
    """A state to start a search from (``Result.stage``): the path that reaches it."""

    def __init__(self, res: Result, drop_messages: bool) -> None:
        self.result = res
        self.drop_messages = drop_messages
        self.config: dict[str, Any] = res._config

    def prefix(self, ex: Any) -> tuple[tuple, list[tuple]]:
        """The state, and the events that reach it (the network drops as explicit drops)."""
        from .search import replay_path
        s = replay_path(ex, self.result.path, strict=False)
        path = list(self.result.path)
        if self.drop_messages:
            for m in s[1]:
                if m[0] not in ex.index:       # a client's request: kept
                    continue
                ev = ("x",) + ex.key(m)
                s = ex.step(s, ev)
                path.append(ev)
            s = (s[0], s[1], (ex.faults["crash"], ex.faults["drop"], ex.faults["duplicate"]), s[3])
        return s, path


def note_flags(ex: Any) -> list[str]:
    notes = []
    if ex.flags.now:
        notes.append(f"handlers read ctx.now ({ex.flags.where_now}): time is frozen at 0 ms in the search, so "
                     f"time-dependent behaviour was not explored")
    if ex.ids_in_state:
        notes.append(f"message ids are part of the state ({ex.flags.where_ids or 'ids=True'}); states that differ "
                     f"only in ids are not merged")
    return notes


def minimise(res: Result, check: Callable[[list[tuple]], int | None]) -> Result:
    """Drop one event at a time from the trace and keep the drop while ``check(path)`` still
    finds the same failure (delta debugging to a one-minimal trace); ``check`` returns how many
    steps of the path reach the failure (the rest is cut), or None. Returns ``res``."""
    path = list(res.path)
    before = len(path)
    k = check(path)
    if k is not None:
        path = path[:k]
    changed = True
    while changed:
        changed = False
        for i in range(len(path) - 1, -1, -1):
            k = check(path[:i] + path[i + 1:])
            if k is not None:
                path = (path[:i] + path[i + 1:])[:k]
                changed = True
                break
    if len(path) < before:
        res.path = path
        res.minimised_from = before
        res._journal = None
    return res
