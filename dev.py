#!/usr/bin/env python3
"""Cloud Lab's two set-up commands, needing nothing but Python 3 and pip.

    python3 dev.py lab     # open the course in JupyterLab (the repository root; chapter 00 first)
    python3 dev.py test    # run every test (labkit's tests and the notebooks), one worker per core
    python3 dev.py bench   # run the benchmarks (prints one JSON line each)

Each command creates ``.venv`` in the repository on first use (or when pyproject.toml
changes) and installs labkit with what it needs; later runs reuse it.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".labkit-installed"
#: What ``dev.py lab`` opens first; the server's root is the repository, so notebooks/,
#: exercises/ and solutions/ are all reachable from the file browser.
FIRST_NOTEBOOK = "notebooks/00_welcome.ipynb"
ROOT_NOTE = ("running as root (uid 0, as in many containers): passing --allow-root to JupyterLab, "
             "which refuses to start as root without it. Run as an ordinary user where you can.")


def _say(msg: str) -> None:
    print(f"[dev.py] {msg}", flush=True)


def ensure_env() -> None:
    """Create or refresh the virtual environment when pyproject.toml changed."""
    if sys.version_info < (3, 10):
        sys.exit(f"Cloud Lab needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want and PY.exists():
        return
    if not PY.exists():
        _say(f"creating a virtual environment in {VENV.relative_to(ROOT)}/")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as e:  # e.g. Debian without python3-venv
            sys.exit(f"could not create {VENV}: {e}\nOn Debian/Ubuntu: apt install python3-venv")
    _say("installing labkit and its dependencies (first run takes a few minutes)")
    subprocess.check_call([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    subprocess.check_call([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(want)


def lab_command(jupyter: list[str], rest: list[str], euid: int | None = None) -> tuple[list[str], list[str]]:
    """The JupyterLab command line ``dev.py lab`` runs, and the notes to print before it.

    ``jupyter``: how to start jupyter (``[".venv/bin/jupyter"]``); ``rest``: the user's own
    options, passed last so they win; ``euid``: the effective user id (default: this
    process's; on Windows there is none). Serves the repository root (``ROOT``) and opens
    ``FIRST_NOTEBOOK``; as root adds ``--allow-root`` (unless given) with a note saying why.
    """
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    cmd = [*jupyter, "lab", f"--ServerApp.root_dir={ROOT}", f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}"]
    notes = []
    if euid == 0 and "--allow-root" not in rest:
        cmd.append("--allow-root")
        notes.append(ROOT_NOTE)
    return cmd + list(rest), notes


#: ``dev.py test`` runs on this many pytest-xdist workers at most, one per usable core.
MAX_TEST_WORKERS = 4


def test_workers(rest: list[str], cores: int | None = None) -> list[str]:
    """The pytest-xdist option ``dev.py test`` adds: ``-n N`` with one worker per usable core
    (at most ``MAX_TEST_WORKERS``), nothing on one core (Binder) or when ``rest`` already says
    how to run (``-n``/``--numprocesses``/``--dist``, ``-p no:xdist``, or ``--pdb``, which
    needs the terminal)."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:           # macOS, Windows
            cores = os.cpu_count() or 1
    own = any(a in ("-n", "--pdb", "no:xdist") or a.startswith(("-n", "--numprocesses", "--dist")) for a in rest)
    if own or cores < 2:
        return []
    return ["-n", str(min(cores, MAX_TEST_WORKERS))]


def run(*cmd: str) -> int:
    return subprocess.call(list(cmd), cwd=ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("lab", "test", "bench"):
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_env()
    if what == "lab":
        cmd, notes = lab_command([str(BIN / "jupyter")], rest)
        for note in notes:
            _say(note)
        _say(f"serving {ROOT} and opening {FIRST_NOTEBOOK} (exercises/ and solutions/ are in the file browser)")
        return run(*cmd)
    if what == "test":
        return run(str(PY), "-m", "pytest", *test_workers(rest), *rest)
    return run(str(PY), "benchmarks/run_all.py", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
