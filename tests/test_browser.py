"""The panel in a real browser: JupyterLab, headless Chromium driven by Playwright.

A notebook written here starts a small processes cluster and shows its panel; the test runs
all cells, clicks n1's kill button in the rendered widget, and checks both sides: the tile in
the page turns "down", and the kernel says so (a cell printing ``cluster.status()`` is run
again and its output read from the page). A screenshot goes to artifacts/browser-panel.png.

Needs the system Chromium (/usr/bin/chromium) and the ``playwright`` Python package (its own
browser downloads are never used); skipped with the reason when either is missing.
JupyterLab runs from this venv on a free loopback port with a random token, in a temporary
root and with temporary config/runtime/settings dirs, in its own process session; it, its
kernel and the kernel's node processes are all shut down in ``finally``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:                                   # tests/ as a package, or as a plain directory
    from .kernelutil import _running, kill_leftovers
except ImportError:
    from kernelutil import _running, kill_leftovers

pytestmark = [pytest.mark.processes, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# .ci/run installs Chromium and sets LABKIT_REQUIRE_BROWSER=1: there, a missing browser is a
# failure, not a skip. On a developer's machine without Chromium the test says why it skips.
_REQUIRED = os.environ.get("LABKIT_REQUIRE_BROWSER") == "1"
if not os.path.exists(CHROMIUM):
    if _REQUIRED:
        raise RuntimeError(f"{CHROMIUM} is missing but LABKIT_REQUIRE_BROWSER=1 (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
if _REQUIRED:
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing "
                                   "(pip install playwright; no browser download is needed)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

CELLS = [
    "import labkit",
    # A node class defined in a cell, as readers write them (dill sends it by value).
    "class Beat(labkit.Node):\n"
    "    def on_start(self, ctx):\n"
    "        ctx.report(role='leader' if ctx.id == 'n1' else 'follower')\n"
    "        ctx.set_timer('beat', after=50)\n"
    "    def on_timer(self, ctx, name):\n"
    "        ctx.count('beats')\n"
    "        ctx.broadcast('beat')\n"
    "        ctx.set_timer('beat', after=50)\n"
    "    def on_message(self, ctx, msg):\n"
    "        ctx.count('heard')",
    "cluster = labkit.Cluster(Beat, n=3, seed=7)",
    "import labkit.widgets\n"
    "p = cluster.panel() if hasattr(cluster, 'panel') else labkit.widgets.panel(cluster)\n"
    "p",
    "print('STATUS', ' '.join(f'{n}={s.state}#{s.incarnation}' for n, s in cluster.status().items()))",
]


def _notebook() -> str:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(CELLS)]
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _still_running(procs: list, timeout: float) -> list:
    """Wait (bounded) for the psutil processes ``procs`` to exit; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in procs if _running(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def _get(url: str) -> int:
    try:
        with _LOCAL.open(url, timeout=2) as r:
            return r.status
    except OSError:
        return 0


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free loopback port: yields (base url, token)."""
    import psutil
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    (root / "panel.ipynb").write_text(_notebook())
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"))
    env.pop("LABKIT_PANEL", None)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"] + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    procs: list = []
    try:
        deadline = time.monotonic() + 90
        while _get(f"{base}/api/status?token={token}") != 200:
            assert proc.poll() is None, (tmp_path / "jupyterlab.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            time.sleep(0.2)
        yield base, token
    finally:
        try:
            procs = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            procs = []
        # Shut the server down as its menu does: it shuts its kernels down (whose node
        # processes then leave on their own); escalate only if it does not stop.
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
            _LOCAL.open(req, timeout=10).close()
        except OSError:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
        left = _still_running(procs, timeout=15)
        kill_leftovers(left)                     # by pid, checked by start time (psutil)
        assert not left, f"left behind: {left}"


def test_kill_button_in_the_browser(jupyterlab):
    base, token = jupyterlab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        try:
            page.goto(f"{base}/lab/tree/panel.ipynb?token={token}", timeout=60_000)
            expect = sync_api.expect
            expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(len(CELLS), timeout=60_000)
            # the kernel, started for the notebook's kernelspec, must be ready before Run All
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()

            tile = page.locator(".labkit-tile-n1")
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
            expect(tile.or_(errors).first).to_be_visible(timeout=90_000)
            assert errors.count() == 0, errors.first.inner_text()
            state = tile.locator(".labkit-state")
            expect(state).to_have_text("● up", timeout=30_000)
            expect(tile).to_contain_text("leader", timeout=30_000)
            expect(tile).to_contain_text("beats", timeout=30_000)     # counters arrive live
            status_cell = page.locator(".jp-Notebook .jp-Cell").nth(len(CELLS) - 1)
            expect(status_cell.locator(".jp-OutputArea-output")).to_contain_text(
                "STATUS n1=up#1 n2=up#1 n3=up#1", timeout=60_000)

            tile.locator("button", has_text="kill").click()
            expect(state).to_have_text("● down", timeout=30_000)                # (a) the page
            expect(tile.locator("button", has_text="restart")).to_be_enabled()
            expect(tile.locator("button", has_text="kill")).to_be_disabled()
            expect(page.locator(".labkit-status-line")).to_contain_text("kill n1", timeout=10_000)

            status_cell.locator(".jp-InputArea-editor").click()                 # (b) the kernel
            page.keyboard.press("Control+Enter")           # run this cell again, in place
            expect(status_cell.locator(".jp-OutputArea-output")).to_contain_text(
                "STATUS n1=down#1 n2=up#1 n3=up#1", timeout=60_000)
            expect(page.locator(".labkit-tile-n2 .labkit-state")).to_have_text("● up")
            assert "crash" not in state.inner_text()

            ARTIFACTS.mkdir(exist_ok=True)
            page.locator(".labkit-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser-panel.png"), full_page=True)
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)               # what the page looked like, for the log
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"), full_page=True)
            (ARTIFACTS / "browser-failure.html").write_text(page.content())
            raise
        finally:
            browser.close()
