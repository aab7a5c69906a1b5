"""Classes and functions of a solution notebook, without running its experiments (a helper module).

``cells(notebook, *names)`` executes only the code cells that define ``names`` (a class or a
function, ``class X``/``def X`` at the start of a line), in order, in one fresh namespace
that has ``labkit`` and the names those cells expect from the rest of the notebook, and
returns the namespace. The classes are the course's own: the tests explore what a reader
writes, not a copy of it.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"


def cells(notebook: str, *names: str, **given) -> dict:
    import labkit
    nb = nbformat.read(SOLUTIONS / notebook, as_version=4)
    ns: dict = {"__name__": f"nbcells_{notebook.split('.')[0]}", "labkit": labkit, **given}
    wanted = [re.compile(rf"^(class|def) {n}\b", re.M) for n in names]
    found = set()
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        hits = {j for j, w in enumerate(wanted) if w.search(c.source)}
        if hits:
            exec(compile(c.source, f"{notebook}[{i}]", "exec"), ns)
            found |= hits
    missing = [names[j] for j in range(len(names)) if j not in found]
    assert not missing, f"{notebook} defines none of {missing}"
    return ns
