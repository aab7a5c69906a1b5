"""``labkit.explore``: model-check unchanged node classes -- every interleaving up to a bound.

Seed sweeps find the bugs that random schedules hit; ``explore`` searches *every* ordering of
message deliveries, timer firings and (optionally) crashes, restarts, drops and duplicates
of a small configuration, as DSLabs and Stateright do, and returns the shortest trace to a
violation, drawn by ``labkit.plots.spacetime`` and replayed in the simulator::

    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision], max_depth=12,
                         faults={"crash": 1})
    res                    # "violation at depth 4: ..." and the trace, or "exhausted: 5,081 states"
    spacetime(res.journal); res.replay()

The module itself is callable (``labkit.explore(...)`` is ``labkit.explore.explore(...)``).
Modules: ``encoding`` (canonical pickled state, digests), ``executor`` (labkit's Context over
an explore Host), ``state`` (the view invariants read), ``search`` (strategies, sleep sets,
budgets), ``result`` (outcomes, minimisation), ``replay`` (the simulator with scripted
delivery), ``api`` (arguments and refusals).
"""
from __future__ import annotations

import sys
import types

from .api import ExploreRefused, explore
from .result import OUTCOMES, Result, Stage
from .replay import Replay, ScriptedSim
from .state import Envelope, StateView, Step

__all__ = ["explore", "ExploreRefused", "Result", "Stage", "Replay", "ScriptedSim", "StateView", "Step",
           "Envelope", "OUTCOMES"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return explore(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
