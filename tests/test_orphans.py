"""Processes are guests: no node process outlives its cluster or its host.

After close(), after the parent is SIGKILLed, after a Jupyter kernel restart and after the
kernel is SIGKILLed, every node process (and the multiprocess forkserver and resource tracker
the parent started) must be gone within 2 s -- and so must the programs that ``labkit.Program``
nodes run, and the processes those programs started. psutil.Process objects are taken while the
processes run, so a recycled pid is never mistaken for a survivor.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

import labkit

try:                                   # tests/ as a package, or as a plain directory
    from .kernelutil import Kernel, kill_leftovers
    from .procnodes import Lab
except ImportError:
    from kernelutil import Kernel, kill_leftovers
    from procnodes import Lab

pytestmark = pytest.mark.processes

GRACE_S = 2.0

# A cluster in a parent that is about to die: some nodes up, one restarted, and (with PAUSE)
# one paused (SIGSTOPped); prints what the test needs, then waits to be killed.
CLUSTER_CELL = """
import json, os, sys, labkit
PAUSE = {pause}
PROGRAMS = {programs}

class Guest(labkit.Node):
    def on_start(self, ctx):
        ctx.set_timer("tick", after=20)
    def on_timer(self, ctx, name):
        ctx.broadcast("ping")
        ctx.set_timer("tick", after=20)
    def on_message(self, ctx, msg):
        if msg.type == "hi":
            ctx.reply(msg, me=ctx.id)

if PROGRAMS:   # n3 and n4 run a program that has a child of its own (see FORKING)
    prog = labkit.Program([sys.executable, "forking.py"])
    cluster = labkit.Cluster({"n1": Guest, "n2": Guest, "n3": prog, "n4": prog}, runtime="processes", seed=9)
else:
    cluster = labkit.Cluster(Guest, n=4, runtime="processes", seed=9)
assert cluster.request("n1", "hi", timeout=10000).body == {"me": "n1"}
cluster.restart("n3")
assert cluster.request("n3", "hi", timeout=10000).body == {"me": "n3"}
if PAUSE:
    cluster.pause("n4")
print("CLUSTER " + json.dumps({"pids": [s.pid for s in cluster.status().values()],
                               "dir": cluster._rt.dir, "parent": os.getpid()}), flush=True)
"""

# A Maelstrom program (labkit.Program) that starts a child and answers "hi" like Guest.
FORKING = """
import subprocess
from maelstrom import Node
child = subprocess.Popen(["sleep", "600"])
node = Node()
node.on("hi", lambda m: node.reply(m, {"type": "hi_ok", "me": node.node_id}))
node.run()
"""

SLEEP = """
import time
time.sleep(120)
"""


def cluster_cell(pause, programs=False):
    return CLUSTER_CELL.replace("{pause}", repr(bool(pause))).replace("{programs}", repr(bool(programs)))


def _program_side(descendants, node_pids):
    """The processes the nodes started (watchdogs, programs and their children)."""
    out = []
    for p in descendants:
        try:
            if any(a.pid in node_pids for a in p.parents()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def _still_running(procs, timeout=GRACE_S):
    def alive():
        out = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    deadline = time.monotonic() + timeout
    left = alive()
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = alive()
    return left


def _describe(procs):
    out = []
    for p in procs:
        try:
            out.append((p.pid, " ".join(p.cmdline())[:90]))
        except psutil.Error:
            out.append((p.pid, "?"))
    return out


def _cluster_info(text):
    for line in text.splitlines():
        if line.startswith("CLUSTER "):
            return json.loads(line[len("CLUSTER "):])
    raise AssertionError(f"no CLUSTER line in {text!r}")


def _read_line(proc, timeout):
    """The first line ``proc`` prints to stdout that starts with CLUSTER, within ``timeout`` s."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"CLUSTER " in buf and buf.rstrip().endswith(b"}"):
                return _cluster_info(buf.decode())
    finally:
        sel.close()
    raise AssertionError(f"the script printed no cluster line in {timeout} s: {buf[-2000:]!r}; "
                         f"stderr: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''!r}")


def _kinds(procs, parent):
    """The forkserver and resource tracker among ``procs``: direct children of ``parent``
    (the node processes are the forkserver's children, and share its command line)."""
    direct = [p for p in procs if p.ppid() == parent]
    fork = [p for p in direct if "forkserver" in " ".join(p.cmdline())]
    tracker = [p for p in direct if "resource_tracker" in " ".join(p.cmdline())]
    return fork, tracker


# -- close() -----------------------------------------------------------------------------------

def test_no_node_left_after_close():
    c = labkit.Cluster(Lab, n=4, runtime="processes", seed=41)
    procs = []
    try:
        c.request("n1", "echo", timeout=5000, x=1)
        c.restart("n2")                                 # a second incarnation
        c.request("n2", "echo", timeout=5000, x=2)
        c.pause("n3")                                   # a stopped process
        with pytest.raises(labkit.NodeCrashed):
            c.request("n4", "boom", timeout=5000)       # a crashed one
        procs = [psutil.Process(s.pid) for s in c.status().values() if psutil.pid_exists(s.pid)]
        assert len(procs) >= 3
    finally:
        c.close()
    left = _still_running(procs)
    assert left == [], _describe(left)


# -- the parent dies ---------------------------------------------------------------------------

PAUSED = pytest.mark.parametrize("paused, programs", [(False, False), (True, False), (True, True)],
                                 ids=["all-up", "one-paused", "programs-one-paused"])


@PAUSED
def test_no_process_left_after_parent_is_sigkilled(tmp_path, paused, programs):
    script = tmp_path / "parent.py"
    script.write_text(cluster_cell(paused, programs) + SLEEP)
    (tmp_path / "forking.py").write_text(FORKING)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path)
    descendants = []
    info = None
    try:
        info = _read_line(proc, 60)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        node_pids = set(info["pids"])
        assert node_pids <= {p.pid for p in descendants}
        fork, tracker = _kinds(descendants, proc.pid)
        assert len(fork) == 1                           # the forkserver multiprocess started
        started = _program_side(descendants, node_pids)
        assert len(started) == (6 if programs else 0)   # per program: watchdog, program, its child
        assert {p.pid for p in descendants} == node_pids | {p.pid for p in fork + tracker + started}
        if paused:
            assert psutil.Process(info["pids"][3]).status() == psutil.STATUS_STOPPED

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        nodes = [p for p in descendants if p.pid in node_pids]
        assert _describe(_still_running(nodes)) == []
        assert _describe(_still_running(started)) == []
        assert _describe(_still_running(fork)) == []    # the forkserver does not outlive its parent
        assert _describe(_still_running(tracker)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kill_leftovers(descendants)
        if info is not None and os.path.basename(info["dir"]).startswith("labkit-"):
            shutil.rmtree(info["dir"], ignore_errors=True)


def test_private_dir_removed_when_a_script_exits_without_close(tmp_path):
    """A script (or a kernel shutting down) that never calls close(): its nodes go, and so
    should the cluster's directory of sockets, journals and storage files."""
    script = tmp_path / "forgetful.py"
    script.write_text(cluster_cell(False) + "\n# no close()\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    info = _cluster_info(out.stdout)
    try:
        procs = [psutil.Process(pid) for pid in info["pids"] if psutil.pid_exists(pid)]
        assert _describe(_still_running(procs)) == []
        assert not os.path.exists(info["dir"]), sorted(os.listdir(info["dir"]))
    finally:
        if os.path.basename(info["dir"]).startswith("labkit-"):
            shutil.rmtree(info["dir"], ignore_errors=True)


# -- the kernel restarts or dies ---------------------------------------------------------------

def _kernel_with_cluster(tmp_path, paused=False, programs=False):
    (tmp_path / "forking.py").write_text(FORKING)
    k = Kernel(tmp_path)
    try:
        exe = k.ok("import sys; print(sys.executable)")["stdout"].strip()
        assert exe == sys.executable                    # the venv's python runs the kernel
        info = _cluster_info(k.ok(cluster_cell(paused, programs))["stdout"])
        assert info["parent"] == k.pid
        descendants = k.descendants()
        assert set(info["pids"]) <= {p.pid for p in descendants}
        return k, info, descendants
    except BaseException:
        k.close()
        raise


@pytest.mark.parametrize("now", [True, False], ids=["restart-now", "restart-graceful"])
def test_no_process_left_after_kernel_restart(tmp_path, now):
    """What a reader does. (jupyter_client's restart(now=True) SIGKILLs the kernel's whole
    process group, and a graceful restart lets ipykernel terminate its children, so this
    passes even without labkit's own watchdog; the SIGKILL test below exercises that.)"""
    k, info, descendants = _kernel_with_cluster(tmp_path)
    try:
        old_pid = k.pid
        k.km.restart_kernel(now=now)
        assert k.pid != old_pid
        left = _still_running(descendants)
        assert _describe(left) == []
        k.kc.wait_for_ready(timeout=60)                 # the new kernel works
        assert k.ok("print(1 + 1)")["stdout"] == "2\n"
    finally:
        k.close()
        kill_leftovers(descendants)
        if os.path.basename(info["dir"]).startswith("labkit-"):
            shutil.rmtree(info["dir"], ignore_errors=True)


@PAUSED
def test_no_process_left_after_kernel_is_sigkilled(tmp_path, paused, programs):
    """Only the kernel process gets SIGKILL (not its process group, as a restart would)."""
    k, info, descendants = _kernel_with_cluster(tmp_path, paused, programs)
    try:
        fork, tracker = _kinds(descendants, k.pid)
        assert len(fork) == 1
        started = _program_side(descendants, set(info["pids"]))
        assert len(started) == (6 if programs else 0)
        os.kill(k.pid, signal.SIGKILL)
        nodes = [p for p in descendants if p.pid in set(info["pids"])]
        assert _describe(_still_running(nodes)) == []
        assert _describe(_still_running(started)) == []
        assert _describe(_still_running(fork)) == []
        assert _describe(_still_running(tracker)) == []
    finally:
        kill_leftovers(descendants)
        k.close()
        if os.path.basename(info["dir"]).startswith("labkit-"):
            shutil.rmtree(info["dir"], ignore_errors=True)
