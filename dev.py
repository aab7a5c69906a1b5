#!/usr/bin/env python3
"""Cloud Lab's two set-up commands, needing nothing but Python 3 and pip.

    python3 dev.py lab     # open the course in JupyterLab
    python3 dev.py test    # run every test (labkit's tests and, as they land, the notebooks)
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


def run(*cmd: str) -> int:
    return subprocess.call(list(cmd), cwd=ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("lab", "test", "bench"):
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_env()
    if what == "lab":
        return run(str(BIN / "jupyter"), "lab", "notebooks/", *rest)
    if what == "test":
        return run(str(PY), "-m", "pytest", *rest)
    return run(str(PY), "benchmarks/run_all.py", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
