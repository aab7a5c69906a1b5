"""The course pipeline: exercises/ is written from solutions/, never by hand.

Theory of operation. ``solutions/NN_topic.ipynb`` is the one authored copy of a chapter's
exercises. Solution code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines
(nbgrader's markers); tests that only the solution runs sit between ``### BEGIN HIDDEN TESTS``
and ``### END HIDDEN TESTS``. ``build`` turns each solution notebook into
``exercises/NN_topic.ipynb``:

* a solution block becomes one line at the marker's indentation,
  ``raise NotImplementedError("Exercise: <hint>")`` — inside a function the signature sits
  outside the markers, so the stub becomes the body. The hint is the first ``# Hint: ...``
  comment inside the block (or just before it), else the enclosing function's name;
  in a markdown cell the block becomes ``_Your answer here._``;
* hidden-test blocks disappear (a cell left empty by that disappears too);
* outputs, execution counts and run-time metadata are stripped;
* cells that held a solution block, and cells tagged ``check`` (they call the reader's
  code), get the nbval tag ``raises-exception``, so ``pytest --nbval-lax exercises/`` accepts
  the stubs' ``NotImplementedError``.

The output is a pure function of the input (nbformat's sorted, indent-1 JSON; cell ids kept,
or derived from the file name and cell index when missing), so ``check`` can compare bytes:
it exits 1 naming every exercise that is stale, missing, or has no solution.

    python -m labkit.course build [--root DIR]
    python -m labkit.course check [--root DIR] [--committed]   # --committed: git's index, not the files
    python -m labkit.course strip FILE...        # remove outputs in place

``small_machine()`` and ``cluster_size(default)`` let chapters keep clusters small on Binder
(one CPU, 2 GB).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
RAISES_TAG = "raises-exception"
CHECK_TAG = "check"
MARKDOWN_STUB = "_Your answer here._"

_MARKER = re.compile(r"^(?P<indent>[ \t]*)### (?P<what>BEGIN|END) (?P<kind>SOLUTION|HIDDEN TESTS)[ \t]*$")
_HINT = re.compile(r"^\s*#\s*hint\s*:\s*(?P<hint>.+?)\s*$", re.IGNORECASE)
_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async[ \t]+)?def[ \t]+(?P<name>\w+)")
#: Cell metadata written by front ends while running; never part of the authored notebook.
_RUNTIME_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime", "jp-MarkdownHeadingCollapsed")
_RUNTIME_NB_METADATA = ("widgets",)


class MarkerError(ValueError):
    """Unbalanced or nested markers; the message names the file, the cell and the line."""


# ----------------------------------------------------------------------------------------
# one cell


@dataclass
class CellResult:
    source: str
    had_solution: bool
    had_hidden: bool


def _where(path: str, cell: int, line: int) -> str:
    return f"{path}: cell {cell}, line {line}"


def _hint_for(lines: list[str], begin: int, block: list[str]) -> str:
    """The stub's message: a ``# Hint:`` in the block, or just above it, or the function."""
    for line in block:
        m = _HINT.match(line)
        if m:
            return m["hint"]
    j = begin - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        m = _HINT.match(lines[j])
        if m:
            return m["hint"]
        j -= 1
    indent = len(lines[begin]) - len(lines[begin].lstrip())
    for j in range(begin - 1, -1, -1):
        m = _DEF.match(lines[j])
        if m and len(m["indent"]) < indent:
            return f"implement {m['name']}()"
    return ""


def transform_source(source: str, *, cell_type: str = "code", path: str = "<notebook>",
                     cell: int = 0) -> CellResult:
    """Replace solution blocks by stubs and drop hidden-test blocks in one cell's source."""
    lines = source.split("\n")
    out: list[str] = []
    had_solution = had_hidden = False
    open_kind: str | None = None
    open_line = 0
    block: list[str] = []
    for i, line in enumerate(lines):
        m = _MARKER.match(line)
        if m is None:
            if open_kind is None:
                out.append(line)
            else:
                block.append(line)
            continue
        kind = m["kind"]
        if m["what"] == "BEGIN":
            if open_kind is not None:
                raise MarkerError(f"{_where(path, cell, i + 1)}: `### BEGIN {kind}` inside the "
                                  f"`### BEGIN {open_kind}` opened on line {open_line + 1} "
                                  f"(close it with `### END {open_kind}` first)")
            open_kind, open_line, block = kind, i, []
            continue
        if open_kind != kind:
            opened = (f"; the open block is `### BEGIN {open_kind}` from line {open_line + 1}"
                      if open_kind else "")
            raise MarkerError(f"{_where(path, cell, i + 1)}: `### END {kind}` without a matching "
                              f"`### BEGIN {kind}`{opened}")
        if kind == "SOLUTION":
            had_solution = True
            if cell_type == "code":
                hint = _hint_for(lines, open_line, block)
                message = f"Exercise: {hint}" if hint else "Exercise"
                indent = _MARKER.match(lines[open_line])["indent"]
                out.append(f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})")
            else:
                out.append(MARKDOWN_STUB)
        else:
            had_hidden = True
        open_kind = None
    if open_kind is not None:
        raise MarkerError(f"{_where(path, cell, open_line + 1)}: `### BEGIN {open_kind}` is never "
                          f"closed (add `### END {open_kind}` in the same cell)")
    text = "\n".join(out)
    if had_hidden:  # no blank lines left dangling where a hidden block was
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return CellResult(text, had_solution, had_hidden)


# ----------------------------------------------------------------------------------------
# notebooks


def _read(path: Path, name: str | None = None, text: str | None = None):
    """Read a notebook (from ``text`` when given, else from ``path``); cells of nbformat >= 4.5
    without an id get one derived from ``name`` and the cell index (nbformat itself would make
    up random ones)."""
    import warnings

    import nbformat
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    raw = json.loads(text)
    missing = [i for i, c in enumerate(raw.get("cells", [])) if not c.get("id")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MissingIDFieldWarning: the ids are fixed just below
        nb = nbformat.reads(text, as_version=4)
    for i in missing:
        if i < len(nb.cells):
            nb.cells[i].pop("id", None)
    _ensure_ids(nb, name or Path(path).name)
    return nb


def _render(nb) -> str:
    import nbformat
    return nbformat.writes(nb) + "\n"


def _ensure_ids(nb, name: str) -> None:
    """Cells of nbformat >= 4.5 need ids; missing ones are derived, never random."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not cid or cid in seen:
            cid = hashlib.sha1(f"{name}:{i}".encode()).hexdigest()[:8]
            cell["id"] = cid
        seen.add(cid)


def strip_notebook(nb):
    """Remove outputs, execution counts and run-time metadata (in place); return ``nb``."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        md = cell.get("metadata", {})
        for key in _RUNTIME_CELL_METADATA:
            md.pop(key, None)
    for key in _RUNTIME_NB_METADATA:
        nb.metadata.pop(key, None)
    return nb


def exercise_notebook(solution, name: str = "<notebook>"):
    """The exercise version of a solution notebook (a new object; ``solution`` is untouched)."""
    nb = copy.deepcopy(solution)
    strip_notebook(nb)
    _ensure_ids(nb, name)
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") not in ("code", "markdown"):
            cells.append(cell)
            continue
        result = transform_source(cell.source, cell_type=cell.cell_type, path=name, cell=index)
        if result.had_hidden and not result.source.strip() and not result.had_solution:
            continue  # the cell was only hidden tests
        cell["source"] = result.source
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code" and (result.had_solution or CHECK_TAG in tags) and RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
        if tags:
            cell.setdefault("metadata", {})["tags"] = tags
        cells.append(cell)
    nb.cells = cells
    text = "\n".join(c.source for c in nb.cells)
    for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
        assert marker not in text, f"{name}: {marker!r} left in the exercise"  # a bug here, not the author's
    return nb


def render_exercise(solution_path: Path, root: Path | None = None, text: str | None = None) -> str:
    """The exact text ``build`` writes for one solution notebook (``text``: its contents, when
    they come from somewhere other than the file, e.g. git's index)."""
    name = _display(solution_path, root)
    return _render(exercise_notebook(_read(solution_path, name, text), name))


# ----------------------------------------------------------------------------------------
# the course folders


def find_root(start: Path | None = None) -> Path:
    """The course root: the nearest folder at or above ``start`` (default: the current one)
    holding ``solutions/`` or ``pyproject.toml``; else the folder above the labkit package."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "solutions").is_dir() or (d / "pyproject.toml").is_file():
            return d
    return Path(__file__).resolve().parent.parent


def _display(path: Path, root: Path | None) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve())) if root else str(path)
    except ValueError:
        return str(path)


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file()) if folder.is_dir() else []


def solution_notebooks(root: Path) -> list[Path]:
    return _notebooks(root / "solutions")


def build(root: Path) -> list[Path]:
    """Write ``exercises/X`` for every ``solutions/X``; return the files whose bytes changed.
    Every solution is transformed before anything is written, so a marker error writes nothing."""
    rendered = {p.name: render_exercise(p, root) for p in solution_notebooks(root)}
    out_dir = root / "exercises"
    changed = []
    for name, text in rendered.items():
        target = out_dir / name
        data = text.encode("utf-8")
        if target.is_file() and target.read_bytes() == data:
            continue
        out_dir.mkdir(exist_ok=True)
        target.write_bytes(data)
        changed.append(target)
    return changed


def committed_notebooks(root: Path, folder: str) -> dict[str, bytes] | None:
    """``{file name: bytes}`` of the notebooks directly in ``root/folder`` as git's index holds
    them -- what is committed, or staged to be -- not the working files, which JupyterLab
    rewrites (outputs, a student's answers) as soon as someone works in them. ``None`` when
    ``root`` is not a git checkout (or git is missing). Raises ``RuntimeError`` naming the
    file when git cannot read one."""
    import subprocess
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", f"{folder}/"],
                                capture_output=True, check=True).stdout.decode("utf-8")
    except (OSError, subprocess.CalledProcessError):
        return None
    out = {}
    for rel in sorted(x for x in listed.split("\0") if x):
        name = rel[len(folder) + 1:]
        if "/" in name or not name.endswith(".ipynb"):
            continue
        proc = subprocess.run(["git", "-C", str(root), "show", f":{rel}"], capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"git could not read the committed {rel}: {proc.stderr.decode(errors='replace')}")
        out[name] = proc.stdout
    return out


def check(root: Path, *, committed: bool = False) -> list[str]:
    """Problems that make exercises/ differ from what ``build`` would write (empty: in sync).

    ``committed=True`` compares what git's index holds (see ``committed_notebooks``) instead
    of the working files, so a student's work in exercises/ never makes the project's own
    tests fail; raises ``RuntimeError`` when ``root`` is not a git checkout."""
    problems = []
    if committed:
        sol_bytes, ex_bytes = committed_notebooks(root, "solutions"), committed_notebooks(root, "exercises")
        if sol_bytes is None or ex_bytes is None:
            raise RuntimeError(f"{root} is not a git checkout: check(committed=True) has nothing to read")
        solutions = {n: root / "solutions" / n for n in sol_bytes}
        exercises = dict.fromkeys(ex_bytes)
    else:
        solutions = {p.name: p for p in solution_notebooks(root)}
        exercises = {p.name: p for p in _notebooks(root / "exercises")}
    for name, path in solutions.items():
        text = sol_bytes[name].decode("utf-8") if committed else None
        want = render_exercise(path, root, text).encode("utf-8")
        if name not in exercises:
            problems.append(f"exercises/{name}: missing (solutions/{name} has no exercise twin)")
        elif (ex_bytes[name] if committed else exercises[name].read_bytes()) != want:
            problems.append(f"exercises/{name}: out of date with solutions/{name}")
    for name in exercises:
        if name not in solutions:
            problems.append(f"exercises/{name}: has no solutions/{name} (exercises are written from solutions)")
    return problems


def strip_files(paths: Iterable[Path]) -> list[Path]:
    """Remove outputs from notebooks in place; return those that changed."""
    changed = []
    for path in map(Path, paths):
        before = path.read_bytes()
        after = _render(strip_notebook(_read(path))).encode("utf-8")
        if after != before:
            path.write_bytes(after)
            changed.append(path)
    return changed


# ----------------------------------------------------------------------------------------
# small machines (Binder: one CPU, 2 GB)


def _total_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def small_machine() -> bool:
    """True on Binder (``BINDER_SERVICE_HOST`` / ``BINDER_REQUEST`` set), on one CPU, or
    with less than 3 GB of memory: chapters then keep their clusters small."""
    if os.environ.get("BINDER_SERVICE_HOST") or os.environ.get("BINDER_REQUEST"):
        return True
    if (os.cpu_count() or 1) <= 1:
        return True
    mem = _total_memory_bytes()
    return mem is not None and mem < 3 * 1024 ** 3


def cluster_size(default: int) -> int:
    """How many nodes a chapter should start: ``default``, or 3 on a small machine."""
    return min(default, 3) if small_machine() else default


# ----------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, helptext in (("build", "write exercises/ from solutions/"),
                          ("check", "exit 1 if exercises/ is not what build would write")):
        p = sub.add_parser(cmd, help=helptext)
        p.add_argument("--root", type=Path, default=None, help="course root (default: found from here)")
        if cmd == "check":
            p.add_argument("--committed", action="store_true",
                           help="compare what git's index holds, not the working files (which a student edits)")
    p = sub.add_parser("strip", help="remove outputs and execution counts from notebooks in place")
    p.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "strip":
            for path in strip_files(args.files):
                print(f"stripped {path}")
            return 0
        root = (args.root or find_root()).resolve()
        if args.command == "build":
            changed = build(root)
            for path in changed:
                print(f"wrote {_display(path, root)}")
            n = len(solution_notebooks(root))
            print(f"{n} exercise notebook(s) from {root / 'solutions'}; {len(changed)} changed")
            return 0
        problems = check(root, committed=args.committed)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python -m labkit.course build", file=sys.stderr)
            return 1
        print(f"exercises/ is up to date ({len(solution_notebooks(root))} notebook(s))")
        return 0
    except (MarkerError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
