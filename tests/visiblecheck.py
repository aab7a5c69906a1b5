"""Does an exercise's *visible* check catch a wrong answer? (a helper module, not a test)

Issue 19: every requirement in an exercise statement must be exercised by the check cell the
student runs, not only by the hidden tests. ``visible_report`` runs a solution notebook's
setup cells, swaps in a wrong answer, then runs the visible part of one check cell (its
hidden block removed) with its first ``sweep`` stopping at the first failing seed, and
returns the failure report -- or raises ``AssertionError`` when the wrong answer passed.
``visible_fails`` runs the whole visible cell instead (every sweep over a few seeds, and the
plain asserts after them) and returns the message of the assertion that failed.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

import labkit.sweep
from solutionnb import HIDDEN, SolutionNotebook


class _Passed(Exception):
    pass


def visible_report(nb: SolutionNotebook, check: int, wrong: Callable[[dict], dict],
                   seeds: range = range(100)) -> str:
    """``wrong(ns)`` returns ``{name: replacement}`` built from the setup namespace ``ns``
    (subclass the reference to break one rule). The check cell's first sweep runs over
    ``seeds`` and stops at the first failure; nothing after it (the real-process run) runs."""
    ns = nb.run_setup()
    ns.update(wrong(ns))
    real = labkit.sweep.sweep

    def first_failure(scenario: Any, seeds_: Any = None, **kw: Any) -> Any:
        result = real(scenario, seeds=seeds, quiet=True, stop_after=1)   # raises SweepFailed on a failure
        raise _Passed(result)

    labkit.sweep.sweep = first_failure
    if "sweep" in ns:
        ns["sweep"] = first_failure
    try:
        exec(compile(HIDDEN.sub("", nb.checks[check]), f"{nb.path.name}:visible[{check}]", "exec"), ns)
    except labkit.sweep.SweepFailed as failed:
        return str(failed)
    except _Passed as passed:
        raise AssertionError(f"the visible check of exercise {check + 1} passed a wrong answer: {passed.args[0]}")
    finally:
        labkit.sweep.sweep = real
    raise AssertionError(f"check cell {check} ran no sweep")


def visible_fails(nb: SolutionNotebook, check: int, wrong: Callable[[dict], dict], match: str,
                  seeds: range = range(10)) -> str:
    """Run the whole of check cell ``check`` (its hidden block removed) with ``wrong(ns)``'s
    replacements; each of its sweeps runs over ``seeds`` and stops at the first failing seed.
    The cell must fail with an ``AssertionError`` whose message matches ``match`` (a regex);
    returns that message."""
    ns = nb.run_setup()
    ns.update(wrong(ns))
    real = labkit.sweep.sweep

    def first_failure(scenario: Any, seeds_: Any = None, **kw: Any) -> Any:
        return real(scenario, seeds=seeds, quiet=True, stop_after=1)

    ns["sweep"] = first_failure
    with pytest.raises(AssertionError, match=match) as failed:
        exec(compile(HIDDEN.sub("", nb.checks[check]), f"{nb.path.name}:visible[{check}]", "exec"), ns)
    return str(failed.value)
