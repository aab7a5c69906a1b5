"""Course-wide pytest hooks (top level, so they apply to `pytest notebooks/01_time.ipynb` too).

* Each notebook's wall time under nbval — kernel start, every cell, kernel shutdown — is
  summed from its cells' setup/call/teardown reports and printed at the end as the
  "course run time" summary (per notebook and total). Binder and CI budgets are judged by it.
* Under pytest-xdist, nbval's cells must stay on one worker in order (they share a kernel),
  so plain ``-n N`` (``--dist load``) is run as ``--dist loadscope``: one notebook per worker.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class NotebookTime:
    seconds: float = 0.0
    cells: set = field(default_factory=set)
    failed: bool = False


def course_run_time_lines(times: dict[str, NotebookTime]) -> list[str]:
    """The summary's lines: one per notebook (sorted), then the total."""
    if not times:
        return []
    total_label = f"total ({len(times)} notebook{'s' if len(times) != 1 else ''})"
    width = max(len(total_label), *(len(name) for name in times))
    lines = []
    for name in sorted(times):
        t = times[name]
        mark = "  FAILED" if t.failed else ""
        lines.append(f"{name:<{width}}  {t.seconds:7.1f} s  {len(t.cells):3d} cells{mark}")
    lines.append(f"{total_label:<{width}}  {sum(t.seconds for t in times.values()):7.1f} s")
    return lines


class CourseClock:
    """Collects nbval cells' report durations per notebook (works under xdist: the controller
    sees every worker's reports)."""

    def __init__(self) -> None:
        self.times: dict[str, NotebookTime] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::", 1)[0]
        if not path.endswith(".ipynb"):
            return
        entry = self.times.setdefault(path, NotebookTime())
        entry.seconds += report.duration
        entry.cells.add(report.nodeid)
        entry.failed = entry.failed or report.failed

    def pytest_terminal_summary(self, terminalreporter) -> None:
        lines = course_run_time_lines(self.times)
        if lines:
            terminalreporter.section("course run time")
            for line in lines:
                terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("course-clock"):
        config.pluginmanager.register(CourseClock(), "course-clock")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist", None) == "load":
        from xdist.scheduler import LoadScopeScheduling
        return LoadScopeScheduling(config, log)
    return None
