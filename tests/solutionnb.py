"""A solution notebook as its hidden tests see it (a helper module, not a test).

``setup`` are its code cells a reader runs before the checks; ``checks`` the cells tagged
``check``; ``hidden(i)`` the ``### BEGIN HIDDEN TESTS`` block of check cell ``i``;
``run_setup()`` runs the setup cells in a fresh namespace and returns it.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n(.*?)^### END HIDDEN TESTS", re.M | re.S)
SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"


class SolutionNotebook:
    def __init__(self, name: str) -> None:
        self.path = SOLUTIONS / name
        nb = nbformat.read(self.path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        self.setup = [c.source for c in code if "check" not in c.metadata.get("tags", [])]
        self.checks = [c.source for c in code if "check" in c.metadata.get("tags", [])]

    def hidden(self, i: int) -> str:
        m = HIDDEN.search(self.checks[i])
        assert m, f"check cell {i} of {self.path.name} has no hidden tests"
        return m.group(1)

    def run_setup(self) -> dict:
        ns: dict = {"__name__": "__main__"}
        for i, src in enumerate(self.setup):
            exec(compile(src, f"{self.path.name}[{i}]", "exec"), ns)
        return ns

    def run_hidden(self, i: int, ns: dict) -> None:
        exec(compile(self.hidden(i), f"{self.path.name}:hidden[{i}]", "exec"), ns)
