"""A real Jupyter kernel for tests: start it, run cells as a notebook would, read the output."""
from __future__ import annotations

import time
from typing import Any

import psutil
from jupyter_client import KernelManager


class Kernel:
    """One ipykernel (the venv's: jupyter_client runs the "python3" spec with sys.executable)."""

    def __init__(self, cwd: str) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def run(self, code: str, timeout: float = 60) -> dict[str, Any]:
        """Execute one cell; return its stdout, stderr, error (ename, evalue) and status."""
        out: dict[str, Any] = {"stdout": "", "stderr": "", "error": None}

        def hook(msg: dict) -> None:
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                out[c["name"]] += c["text"]
            elif t == "error":
                out["error"] = (c["ename"], c["evalue"])

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        out["status"] = reply["content"]["status"]
        return out

    def ok(self, code: str, timeout: float = 60) -> dict[str, Any]:
        """Execute one cell that must not raise."""
        out = self.run(code, timeout)
        assert out["status"] == "ok", f"cell failed: {out['error']}\nstderr: {out['stderr'][-2000:]}"
        return out

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children(recursive=True)

    def close(self) -> None:
        """Stop the kernel and (by process group) anything it left behind."""
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)


def kill_leftovers(procs: list[psutil.Process]) -> None:
    """Cleanup for a failed test: SIGKILL the given processes (by pid, checked by start time)."""
    for p in procs:
        try:
            if p.is_running():
                p.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(_running(p) for p in procs):
        time.sleep(0.02)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
