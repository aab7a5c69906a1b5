"""The course pipeline: exercises/ from solutions/, notebook hygiene, environments, README."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit import course

ROOT = Path(__file__).resolve().parent.parent
COURSE_DIRS = ("notebooks", "solutions", "exercises")

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


# ----------------------------------------------------------------------------------------
# a small synthetic course


def _solution_nb():
    return new_notebook(cells=[
        new_markdown_cell("# Lamport clocks\nWhat does a clock count?\n### BEGIN SOLUTION\nEvents.\n### END SOLUTION"),
        new_code_cell(
            "def tick(local, received):\n"
            "    \"\"\"The clock after receiving a message stamped ``received``.\"\"\"\n"
            "    ### BEGIN SOLUTION\n"
            "    # Hint: take the larger clock and add one\n"
            "    return max(local, received) + 1\n"
            "    ### END SOLUTION\n",
            outputs=[new_output("stream", name="stdout", text="noise\n")], execution_count=7),
        new_code_cell(
            "class Clock:\n"
            "    def send(self):\n"
            "        ### BEGIN SOLUTION\n"
            "        self.t = getattr(self, 't', 0) + 1\n"
            "        return self.t\n"
            "        ### END SOLUTION\n",
            execution_count=8),
        new_code_cell("### BEGIN SOLUTION\nANSWER = 42\n### END SOLUTION"),
        new_code_cell("assert tick(1, 5) == 6, 'tick(1, 5)'\nprint('passed')\n"
                      "### BEGIN HIDDEN TESTS\nassert tick(9, 2) == 10\n### END HIDDEN TESTS",
                      metadata={"tags": ["check"]}),
        new_code_cell("### BEGIN HIDDEN TESTS\nassert Clock().send() == 1\n### END HIDDEN TESTS"),
        new_code_cell("print('plain cell')", outputs=[new_output("stream", name="stdout", text="plain cell\n")],
                      execution_count=9),
    ])


def _course(root: Path, nb=None, name: str = "01_time.ipynb") -> Path:
    (root / "solutions").mkdir(parents=True, exist_ok=True)
    path = root / "solutions" / name
    nbformat.write(nb if nb is not None else _solution_nb(), str(path))
    return path


def _cells(path: Path):
    return nbformat.read(str(path), as_version=4).cells


def test_build_writes_stubs_drops_hidden_tests_and_tags_cells(tmp_path):
    _course(tmp_path)
    assert course.check(tmp_path) == ["exercises/01_time.ipynb: missing (solutions/01_time.ipynb has no exercise twin)"]
    written = course.build(tmp_path)
    assert written == [tmp_path / "exercises" / "01_time.ipynb"]
    text = written[0].read_text()
    for marker in ("### BEGIN", "### END", "max(local, received)", "ANSWER = 42", "tick(9, 2)", "Clock().send()"):
        assert marker not in text, marker
    md, fn, method, top, check, plain = _cells(written[0])   # the hidden-tests-only cell is gone
    assert md.source == "# Lamport clocks\nWhat does a clock count?\n_Your answer here._"
    assert fn.source == ("def tick(local, received):\n"
                         "    \"\"\"The clock after receiving a message stamped ``received``.\"\"\"\n"
                         "    raise NotImplementedError(\"Exercise: take the larger clock and add one\")\n")
    assert method.source == ("class Clock:\n    def send(self):\n"
                             "        raise NotImplementedError(\"Exercise: implement send()\")\n")
    assert top.source == 'raise NotImplementedError("Exercise")'
    assert check.source == "assert tick(1, 5) == 6, 'tick(1, 5)'\nprint('passed')"
    assert plain.source == "print('plain cell')"
    for cell in (fn, method, top):
        assert cell.metadata["tags"] == ["raises-exception"]
    assert check.metadata["tags"] == ["check", "raises-exception"]
    assert "tags" not in plain.metadata and "tags" not in md.metadata
    for cell in (fn, method, top, check, plain):
        assert cell.outputs == [] and cell.execution_count is None
    assert course.check(tmp_path) == []
    assert course.build(tmp_path) == []                       # nothing changes the second time


def test_exercise_code_runs_and_stubs_raise(tmp_path):
    _course(tmp_path)
    course.build(tmp_path)
    cells = [c for c in _cells(tmp_path / "exercises" / "01_time.ipynb") if c.cell_type == "code"]
    ns: dict = {}
    exec(compile(cells[0].source, "fn", "exec"), ns)           # defining the stub is fine
    with pytest.raises(NotImplementedError, match="larger clock"):
        ns["tick"](1, 2)
    exec(compile(cells[1].source, "method", "exec"), ns)
    with pytest.raises(NotImplementedError, match=r"implement send\(\)"):
        ns["Clock"]().send()
    with pytest.raises(NotImplementedError):
        exec(compile(cells[2].source, "top", "exec"), ns)


def test_build_is_deterministic_and_independent_of_the_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "solutions").mkdir(parents=True)
    (b / "solutions" / "01_time.ipynb").write_bytes(_course(a).read_bytes())   # same ids
    course.build(a)
    course.build(b)
    first = (a / "exercises" / "01_time.ipynb").read_bytes()
    assert first == (b / "exercises" / "01_time.ipynb").read_bytes()
    (a / "exercises" / "01_time.ipynb").unlink()
    course.build(a)
    assert (a / "exercises" / "01_time.ipynb").read_bytes() == first
    assert first.endswith(b"}\n") and json.loads(first)["nbformat"] == 4


def test_missing_cell_ids_are_derived_not_random(tmp_path):
    nb = _solution_nb()
    for cell in nb.cells:
        del cell["id"]
    raw = json.dumps(nb)                   # nbformat.write would add random ids; write raw JSON
    for root in (tmp_path / "a", tmp_path / "b"):
        (root / "solutions").mkdir(parents=True)
        (root / "solutions" / "02_x.ipynb").write_text(raw)
        course.build(root)
    data = [(r / "exercises" / "02_x.ipynb").read_bytes() for r in (tmp_path / "a", tmp_path / "b")]
    assert data[0] == data[1]
    ids = [c["id"] for c in json.loads(data[0])["cells"]]
    assert len(set(ids)) == len(ids) and all(ids)


def test_check_names_stale_missing_and_orphan_exercises(tmp_path, capsys):
    path = _course(tmp_path)
    _course(tmp_path, name="02_order.ipynb")
    course.build(tmp_path)
    assert course.main(["check", "--root", str(tmp_path)]) == 0
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[3].source = "### BEGIN SOLUTION\nANSWER = 43\n# Hint: the answer\n### END SOLUTION"
    nbformat.write(nb, str(path))
    (tmp_path / "exercises" / "03_extra.ipynb").write_text((tmp_path / "exercises" / "02_order.ipynb").read_text())
    (tmp_path / "solutions" / "02_order.ipynb").unlink()
    _course(tmp_path, name="04_new.ipynb")
    capsys.readouterr()
    assert course.main(["check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "exercises/01_time.ipynb: out of date with solutions/01_time.ipynb" in err
    assert "exercises/02_order.ipynb: has no solutions/02_order.ipynb" in err
    assert "exercises/03_extra.ipynb: has no solutions/03_extra.ipynb" in err
    assert "exercises/04_new.ipynb: missing" in err
    assert course.main(["build", "--root", str(tmp_path)]) == 0
    stub = _cells(tmp_path / "exercises" / "01_time.ipynb")[3].source
    assert stub == 'raise NotImplementedError("Exercise: the answer")'
    (tmp_path / "exercises" / "02_order.ipynb").unlink()
    (tmp_path / "exercises" / "03_extra.ipynb").unlink()
    assert course.main(["check", "--root", str(tmp_path)]) == 0


@pytest.mark.parametrize("source, line, words", [
    ("x = 1\n### BEGIN SOLUTION\ny = 2", 2, "never closed"),
    ("x = 1\n### END SOLUTION", 2, "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION", 2, "inside"),
    ("### BEGIN HIDDEN TESTS\nassert 1\n### END SOLUTION", 3, "without a matching"),
])
def test_unbalanced_markers_name_file_cell_and_line(tmp_path, capsys, source, line, words):
    nb = _solution_nb()
    nb.cells.insert(2, new_code_cell(source))
    _course(tmp_path, nb, name="05_bad.ipynb")
    with pytest.raises(course.MarkerError) as e:
        course.build(tmp_path)
    assert f"solutions/05_bad.ipynb: cell 2, line {line}" in str(e.value)
    assert words in str(e.value)
    assert not (tmp_path / "exercises").exists()               # nothing half-written
    assert course.main(["build", "--root", str(tmp_path)]) == 2
    assert f"cell 2, line {line}" in capsys.readouterr().err


def test_strip_removes_outputs_in_place(tmp_path, capsys):
    path = tmp_path / "n.ipynb"
    nb = _solution_nb()
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2024-01-01"}
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, str(path))
    assert course.main(["strip", str(path)]) == 0
    assert f"stripped {path}" in capsys.readouterr().out
    stripped = nbformat.read(str(path), as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in stripped.cells if c.cell_type == "code")
    assert "execution" not in stripped.cells[1].metadata and "widgets" not in stripped.metadata
    assert "### BEGIN SOLUTION" in stripped.cells[1].source    # strip keeps the source as it is
    before = path.read_bytes()
    assert course.strip_files([path]) == [] and path.read_bytes() == before


def test_small_machine_and_cluster_size(monkeypatch):
    for var in ("BINDER_SERVICE_HOST", "BINDER_REQUEST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(course.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(course, "_total_memory_bytes", lambda: 16 * 1024 ** 3)
    assert not course.small_machine() and course.cluster_size(7) == 7
    monkeypatch.setenv("BINDER_SERVICE_HOST", "10.0.0.1")
    assert course.small_machine() and course.cluster_size(7) == 3
    monkeypatch.delenv("BINDER_SERVICE_HOST")
    monkeypatch.setenv("BINDER_REQUEST", "v2/gh/cloud-lab/cloud-lab/HEAD")
    assert course.small_machine()
    monkeypatch.delenv("BINDER_REQUEST")
    monkeypatch.setattr(course.os, "cpu_count", lambda: 1)
    assert course.small_machine()
    monkeypatch.setattr(course.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(course, "_total_memory_bytes", lambda: 2 * 1024 ** 3)
    assert course.small_machine() and course.cluster_size(5) == 3


def test_total_memory_reads_proc_meminfo():
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo here")
    assert course._total_memory_bytes() > 100 * 1024 ** 2


# ----------------------------------------------------------------------------------------
# the real course folders


def _committed(folder: str) -> dict[str, bytes]:
    """git's version of the course notebooks in ``folder`` (what is committed or staged): the
    working files are the student's -- JupyterLab saves outputs and answers into them."""
    found = course.committed_notebooks(ROOT, folder)
    if found is None:
        pytest.skip(f"{ROOT} is not a git checkout: there is no committed version to check")
    return found


def test_repo_exercises_are_up_to_date():
    solutions = sorted(_committed("solutions"))
    assert solutions, "no committed solutions/ notebooks found"
    problems = course.check(ROOT, committed=True)
    assert problems == [], "\n".join(problems) + "\nrun: python -m labkit.course build (and git add exercises/)"
    assert sorted(_committed("exercises")) == solutions


def _committed_notebooks() -> dict[str, bytes]:
    return {f"{d}/{name}": data for d in COURSE_DIRS for name, data in _committed(d).items()}


def _cells_with_outputs(data: bytes) -> list[int]:
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    return [i for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]


def test_course_notebooks_are_committed_without_outputs():
    found = _committed_notebooks()
    assert found, "no committed notebooks found"
    dirty = [f"{rel}: cell {i}" for rel, data in found.items() for i in _cells_with_outputs(data)]
    assert not dirty, "notebooks committed with outputs (run python -m labkit.course strip FILE):\n" + "\n".join(dirty)


def test_course_notebook_names_are_numbered_chapters():
    bad = [rel for rel in _committed_notebooks() if not re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", rel.split("/")[1])]
    assert not bad, f"chapter notebooks are named NN_topic.ipynb: {bad}"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=cwd, check=True, capture_output=True)


def test_a_students_work_in_the_working_files_never_fails_the_committed_checks(tmp_path):
    """JupyterLab autosaves outputs and answers into notebooks/ and exercises/; the checks read
    git's index, so they pass on the student's checkout and still catch a bad commit."""
    _course(tmp_path)
    course.build(tmp_path)
    (tmp_path / "notebooks").mkdir()
    chapter = new_notebook(cells=[new_code_cell("print(1)")])
    nbformat.write(chapter, str(tmp_path / "notebooks" / "01_time.ipynb"))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "course")
    clean = {d: course.committed_notebooks(tmp_path, d) for d in ("notebooks", "exercises", "solutions")}

    # the student runs the chapter (outputs saved) and answers the exercise in place
    chapter.cells[0].outputs = [new_output("stream", name="stdout", text="1\n")]
    chapter.cells[0].execution_count = 1
    nbformat.write(chapter, str(tmp_path / "notebooks" / "01_time.ipynb"))
    ex_path = tmp_path / "exercises" / "01_time.ipynb"
    ex = nbformat.read(str(ex_path), as_version=4)
    ex.cells[1].source = "def tick(local, received):\n    return max(local, received) + 1\n"
    ex.cells[1].outputs, ex.cells[1].execution_count = [], 3
    nbformat.write(ex, str(ex_path))
    (tmp_path / "notebooks" / "scratch.ipynb").write_text(ex_path.read_text())   # untracked: not the course's

    assert course.check(tmp_path) == ["exercises/01_time.ipynb: out of date with solutions/01_time.ipynb"]
    assert course.check(tmp_path, committed=True) == []
    now = {d: course.committed_notebooks(tmp_path, d) for d in ("notebooks", "exercises", "solutions")}
    assert now == clean and "scratch.ipynb" not in now["notebooks"]
    assert all(_cells_with_outputs(data) == [] for d in ("notebooks", "exercises") for data in now[d].values())

    # ... but outputs that are staged (about to be committed) are caught
    _git(tmp_path, "add", "notebooks/01_time.ipynb", "exercises/01_time.ipynb")
    staged = course.committed_notebooks(tmp_path, "notebooks")
    assert _cells_with_outputs(staged["01_time.ipynb"]) == [0]
    assert course.check(tmp_path, committed=True) == ["exercises/01_time.ipynb: out of date with solutions/01_time.ipynb"]


def test_committed_check_outside_git_says_so(tmp_path):
    _course(tmp_path)
    assert course.committed_notebooks(tmp_path, "solutions") is None
    with pytest.raises(RuntimeError, match="not a git checkout"):
        course.check(tmp_path, committed=True)


# ----------------------------------------------------------------------------------------
# environments and Binder


def _requirement(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*", spec)
    assert m, f"write dependencies as name>=lower_bound, got {spec!r}"
    return m[1].lower().replace("_", "-"), m[2]


def _env_pip(path: Path) -> tuple[dict[str, str], list]:
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load(path.read_text())
    deps = env["dependencies"]
    pips = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, f"{path}: one pip: section"
    conda = [d for d in deps if not isinstance(d, dict)]
    return dict(_requirement(s) for s in pips[0]), conda


def test_environment_files_match_each_other_and_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = dict(_requirement(s) for s in project["dependencies"])
    top, top_conda = _env_pip(ROOT / "environment.yml")
    binder, binder_conda = _env_pip(ROOT / "binder" / "environment.yml")
    assert binder == top, "binder/environment.yml and environment.yml list different pip packages"
    assert binder_conda == top_conda
    assert top == want, "environment.yml's pip packages differ from pyproject.toml's dependencies"
    assert "python=3.11" in binder_conda and "pip" in binder_conda
    assert "labkit" not in binder                          # postBuild installs it, --no-deps


def test_binder_postbuild_installs_labkit_without_deps():
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"
    text = post.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert re.search(r"^python -m pip install --no-deps -e \.$", text, re.M)
    subprocess.run(["bash", "-n", str(post)], check=True)
    assert not (ROOT / "binder" / "requirements.txt").exists()  # repo2docker would prefer one config


def test_pytest_config_runs_notebooks():
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert opts["testpaths"] == ["tests", *COURSE_DIRS]
    for flag in ("--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout="):
        assert flag in opts["addopts"]


# ----------------------------------------------------------------------------------------
# nbval end to end, and the course run time summary


@pytest.mark.processes                    # starts Jupyter kernels
def test_nbval_runs_solutions_and_exercises_with_run_time_summary(tmp_path):
    """The synthetic course under the repo's pytest settings and conftest: solutions run clean,
    exercises pass because stub and check cells are tagged raises-exception."""
    _course(tmp_path)
    course.build(tmp_path)
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\n"
        f"testpaths = {' '.join(opts['testpaths'])}\n"
        f"addopts = {opts['addopts']}\n")
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"\b11 passed\b", out), out               # 5 exercise + 6 solution code cells
    summary = out[out.index("course run time"):]
    assert re.search(r"exercises/01_time\.ipynb\s+\d+\.\d s\s+5 cells", summary), summary
    assert re.search(r"solutions/01_time\.ipynb\s+\d+\.\d s\s+6 cells", summary), summary
    assert "total (2 notebooks)" in summary


@pytest.mark.processes                    # starts Jupyter kernels
def test_nbval_fails_a_solution_whose_check_fails(tmp_path):
    nb = _solution_nb()
    nb.cells[1].source = nb.cells[1].source.replace("+ 1", "+ 2")   # a wrong solution
    _course(tmp_path, nb)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --nbval-lax --nbval-current-env\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "solutions"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout


def test_course_run_time_lines():
    import importlib.util
    spec = importlib.util.spec_from_file_location("course_conftest", ROOT / "conftest.py")
    top = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = top          # dataclasses look their module up while being made
    try:
        spec.loader.exec_module(top)
    finally:
        del sys.modules[spec.name]
    t = {"notebooks/01_time.ipynb": top.NotebookTime(12.34, {"a", "b"}),
         "exercises/01_time.ipynb": top.NotebookTime(1.0, {"c"}, failed=True)}
    lines = top.course_run_time_lines(t)
    assert lines[0].startswith("exercises/01_time.ipynb") and lines[0].endswith("1 cells  FAILED")
    assert "12.3 s" in lines[1] and lines[1].endswith("2 cells")
    assert lines[2].startswith("total (2 notebooks)") and "13.3 s" in lines[2]
    assert top.course_run_time_lines({}) == []


# ----------------------------------------------------------------------------------------
# the README


def test_readme_keeps_the_quick_start_and_documents_the_course():
    text = (ROOT / "README.md").read_text()
    assert "python3 dev.py lab     # open the course in JupyterLab" in text
    assert "python3 dev.py test    # run every test" in text
    assert "https://mybinder.org/v2/gh/cloud-lab/cloud-lab/HEAD?urlpath=lab/tree/notebooks/00_welcome.ipynb" in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        if not image.startswith("http"):
            assert (ROOT / image).is_file(), image
    for command in ("python -m labkit.course check", "python -m labkit.check linearizable --model kv",
                    "pytest notebooks/01_time.ipynb solutions/01_time.ipynb exercises/01_time.ipynb"):
        assert command in text


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.processes
@pytest.mark.parametrize("index", range(len(_readme_python_blocks())))
def test_readme_python_snippets_run(tmp_path, index):
    code = _readme_python_blocks()[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------------
# dev.py lab: the repository root, chapter 00 first, --allow-root with a note


def _dev():
    import importlib.util
    spec = importlib.util.spec_from_file_location("cloudlab_dev", ROOT / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    return dev


def _opt(cmd: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in cmd if a.startswith(name + "=")), None)


def test_dev_test_runs_one_worker_per_core_unless_told_otherwise():
    dev = _dev()
    assert dev.test_workers([], cores=2) == ["-n", "2"]
    assert dev.test_workers(["-k", "sim", "-x"], cores=16) == ["-n", str(dev.MAX_TEST_WORKERS)]
    assert dev.test_workers([], cores=1) == []                                   # Binder: one core
    for own in (["-n", "0"], ["-n3"], ["--numprocesses=2"], ["-p", "no:xdist"], ["--pdb"], ["--dist=loadfile"]):
        assert dev.test_workers(own, cores=4) == [], own


def test_dev_lab_serves_the_repository_root_and_opens_chapter_00():
    dev = _dev()
    cmd, notes = dev.lab_command(["jupyter"], ["--port=9999"], euid=1000)
    assert cmd[:2] == ["jupyter", "lab"] and cmd[-1] == "--port=9999"          # the user's options come last
    assert Path(_opt(cmd, "--ServerApp.root_dir")) == ROOT
    url = _opt(cmd, "--LabApp.default_url")
    assert url == "/lab/tree/notebooks/00_welcome.ipynb" and (ROOT / url[len("/lab/tree/"):]).is_file()
    assert "--allow-root" not in cmd and notes == []
    assert not [a for a in cmd[2:] if not a.startswith("--")], f"no positional path narrows the root: {cmd}"


def test_dev_lab_as_root_adds_allow_root_with_a_note():
    dev = _dev()
    cmd, notes = dev.lab_command(["jupyter"], [], euid=0)
    assert cmd.count("--allow-root") == 1
    assert len(notes) == 1 and "--allow-root" in notes[0] and "root" in notes[0]
    cmd, notes = dev.lab_command(["jupyter"], ["--allow-root"], euid=0)      # given already: once, no note
    assert cmd.count("--allow-root") == 1 and notes == []


@pytest.mark.processes                    # starts a JupyterLab server
def test_dev_lab_server_reaches_exercises(tmp_path):
    """The command dev.py builds, really started (with this venv's jupyter, a free port and a
    token): the contents API finds exercises/ and solutions/, and / redirects to chapter 00."""
    import secrets
    import socket
    import time
    import urllib.error
    import urllib.request

    dev = _dev()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    cmd, _ = dev.lab_command([sys.executable, "-m", "jupyter"], [
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"])
    home = tmp_path / "jupyter"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    no_redirect = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}

    def status(path: str, op=opener) -> tuple[int, str]:
        try:
            with op.open(urllib.request.Request(base + path, headers=auth), timeout=5) as r:
                return r.status, r.headers.get("Location", "")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Location", "")
        except OSError:
            return 0, ""

    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while status("/api/status")[0] != 200:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            time.sleep(0.2)
        for path in ("exercises/00_welcome.ipynb", "notebooks/00_welcome.ipynb", "solutions/00_welcome.ipynb"):
            assert status(f"/api/contents/{path}?content=0")[0] == 200, path
        code, location = status("/", no_redirect)
        assert code in (301, 302) and location.split("?")[0].endswith("/lab/tree/notebooks/00_welcome.ipynb"), (code, location)
    finally:
        try:
            opener.open(urllib.request.Request(base + "/api/shutdown", method="POST", headers=auth), timeout=10).close()
        except OSError:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
        log.close()


# ----------------------------------------------------------------------------------------
# chapter assertions explain themselves (issue 19, item 4)

@pytest.mark.parametrize("name", [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))])
def test_chapter_assertions_carry_a_message(name):
    """A bare ``AssertionError`` in a chapter tells the reader nothing; every assert says what it expected."""
    import ast
    nb = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
    bare = [f"cell {i}, line {node.lineno}: {ast.get_source_segment(cell.source, node)[:80]}"
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for node in ast.walk(ast.parse(cell.source)) if isinstance(node, ast.Assert) and node.msg is None]
    assert not bare, f"{name}: asserts without a message:\n" + "\n".join(bare)


def test_nbval_runs_the_committed_notebook_not_the_readers_working_copy(tmp_path):
    """A reader's answers and scratch notebooks never fail the tests: nbval runs git's index
    version of a tracked notebook and skips untracked ones; staging an edit tests it."""
    import shutil
    import subprocess
    import sys
    shutil.copy(os.path.join(ROOT, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "nb").mkdir()
    good = new_notebook(cells=[new_code_cell("x = 1\nassert x == 1")])
    nbformat.write(good, str(tmp_path / "nb" / "ch.ipynb"))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "course")
    bad = new_notebook(cells=[new_code_cell("raise RuntimeError('the reader broke it')")])
    nbformat.write(bad, str(tmp_path / "nb" / "ch.ipynb"))              # the reader's edit
    nbformat.write(bad, str(tmp_path / "nb" / "scratch.ipynb"))         # the reader's own notebook

    def run():
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
                               "--nbval-current-env", "nb"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    r = run()
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:]
    assert "nb/ch.ipynb: ran the committed version" in r.stdout and "scratch" not in r.stdout
    _git(tmp_path, "add", "nb/ch.ipynb")                                  # staged: now it is tested
    r = run()
    assert r.returncode == 1 and "the reader broke it" in r.stdout, r.stdout[-2000:]


# ----------------------------------------------------------------------------------------
# the real course: every exercise notebook's code runs up to its checks


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb")))
def test_every_exercise_cell_runs_before_the_reader_writes_anything(name, monkeypatch):
    """A stub must be a function body that raises when *called*: a cell that defines the reader's
    classes and functions must run as generated, or the check says ``NameError`` about a class the
    reader never saw fail (a whole method inside a solution block leaves a class-level ``raise``).
    Only a cell whose stub stands at the top level (an answer assigned in the cell) may raise."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(ROOT / "exercises" / name), as_version=4)
    ns: dict = {"__name__": "__main__"}
    monkeypatch.chdir(ROOT / "exercises")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or course.CHECK_TAG in cell.metadata.get("tags", []):
            continue
        top_level_stub = any(line.startswith("raise NotImplementedError(") for line in cell.source.splitlines())
        try:
            exec(compile(cell.source, f"exercises/{name}: cell {i}", "exec"), ns)
        except NotImplementedError as e:
            assert top_level_stub, (f"exercises/{name}, cell {i}: running the cell as generated raises "
                                    f"NotImplementedError({e}) although no stub stands at its top level -- a "
                                    f"solution block in solutions/{name} holds a whole definition (put the `def` "
                                    f"line outside `### BEGIN SOLUTION`, so the stub is its body)")
