"""Course-wide pytest hooks (top level, so they apply to `pytest notebooks/01_time.ipynb` too).

* Each notebook's wall time under nbval — kernel start, every cell, kernel shutdown — is
  summed from its cells' setup/call/teardown reports and printed at the end as the
  "course run time" summary (per notebook and total). Binder and CI budgets are judged by it.
* Under pytest-xdist, nbval's cells must stay on one worker in order (they share a kernel),
  so plain ``-n N`` (``--dist load``) is run as ``--dist loadscope``: one notebook per worker.
* A reader's own work never fails the course's tests: in a git checkout, nbval runs the
  notebook as git's index has it (what is committed, or staged), not the working file
  JupyterLab autosaves answers and outputs into; notebooks git does not track (a reader's
  scratch copies) are not collected unless named on the command line. To test an edit of
  your own, stage it (``git add``) first; a line in the summary names every notebook whose
  working copy differs and was not what ran.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


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
    if not config.pluginmanager.has_plugin("course-committed"):
        config.pluginmanager.register(CommittedNotebooks(config), "course-committed")


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


class CommittedNotebooks:
    """Runs the committed (index) version of each tracked notebook and skips untracked ones:
    see the module docstring. Outside a git checkout (a zip, Binder without .git) it does
    nothing and the working files run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        r = _git("ls-files", "-z", "--", "*.ipynb")
        self.tracked: set[str] | None = (
            {p for p in r.stdout.decode().split("\0") if p} if r is not None and r.returncode == 0 else None)
        r = _git("diff", "--name-only", "-z", "--", "*.ipynb")    # working file vs index
        self.differs: set[str] = (
            {p for p in r.stdout.decode().split("\0") if p} if r is not None and r.returncode == 0 else set())
        self.named = {Path(a.split("::")[0]).resolve() for a in config.args}
        self.substituted: list[str] = []
        if self.tracked is not None and self.differs:
            self._patch_nbval()

    def _rel(self, path: Path) -> str | None:
        try:
            return path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            return None

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        if self.tracked is None or collection_path.suffix != ".ipynb":
            return None
        rel = self._rel(collection_path)
        if rel is None or rel in self.tracked or collection_path.resolve() in self.named:
            return None
        return True     # a notebook git does not track: a reader's own, not the course's

    def _patch_nbval(self) -> None:
        try:
            import nbformat
            from nbval.plugin import IPyNbFile
        except ImportError:
            return
        if getattr(IPyNbFile, "_course_committed", False):
            return
        plugin = self
        original = IPyNbFile.collect

        def collect(nbfile):  # type: ignore[no-untyped-def]
            rel = plugin._rel(Path(str(nbfile.fspath)))
            if rel not in plugin.differs:
                return original(nbfile)
            shown = _git("show", f":{rel}")
            if shown is None or shown.returncode != 0:
                return original(nbfile)
            plugin.substituted.append(rel)
            read = nbformat.read
            nbformat.read = lambda fp, as_version, **kw: nbformat.reads(shown.stdout.decode(), as_version, **kw)
            try:
                return list(original(nbfile))
            finally:
                nbformat.read = read
        IPyNbFile.collect = collect
        IPyNbFile._course_committed = True

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.substituted:
            terminalreporter.section("committed notebooks")
            for rel in sorted(set(self.substituted)):
                terminalreporter.write_line(f"{rel}: ran the committed version; your working copy differs "
                                            f"(git add it to test your edits)")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist", None) == "load":
        from xdist.scheduler import LoadScopeScheduling
        return LoadScopeScheduling(config, log)
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """nbval ends each notebook's kernel with ``shutdown_kernel(now=True)`` -- a SIGKILL -- so
    the kernel never removes its own temporary directories (a kernel that exits cleanly does).
    The next cluster would sweep them; the end of the test run sweeps them too, so it leaves
    nothing behind."""
    from labkit.runtime.processes import sweep_abandoned
    sweep_abandoned()
