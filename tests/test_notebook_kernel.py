"""labkit in a real Jupyter kernel, cell by cell, as a reader's notebook runs it.

A node class defined in a notebook cell -- using a helper function and a constant from other
cells -- must run in node processes; a crash must be reported in the cell's output; an
interrupted cell must stop the cell, not the cluster.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import pytest

try:                                   # tests/ as a package, or as a plain directory
    from .kernelutil import Kernel, kill_leftovers
except ImportError:
    from kernelutil import Kernel, kill_leftovers

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(tmp_path_factory.mktemp("notebook"))
    procs = []
    try:
        yield k
        procs = k.descendants()
        # a clean shutdown, as closing the notebook does
        k.kc.stop_channels()
        k.km.shutdown_kernel(now=False)
        assert not k.km.is_alive()
    finally:
        if k.km.has_kernel:
            k.close()
        kill_leftovers(procs)


def test_kernel_is_the_venvs_python(kernel):
    assert kernel.ok("import sys; print(sys.executable)")["stdout"].strip() == sys.executable


def test_cells_define_a_node_that_runs_in_processes(kernel):
    kernel.ok("import labkit, json")
    kernel.ok(
        "GREETING = 'hello'\n"
        "\n"
        "def decorate(name):\n"
        "    return f'{GREETING}, {name}!'\n"
    )
    kernel.ok(
        "class Greeter(labkit.Node):\n"
        "    def on_start(self, ctx):\n"
        "        self.greeted = []\n"
        "    def on_message(self, ctx, msg):\n"
        "        if msg.type == 'boom':\n"
        "            raise RuntimeError('kaboom from ' + ctx.id)\n"
        "        self.greeted.append(msg['name'])\n"
        "        ctx.reply(msg, text=decorate(msg['name']), greeting=GREETING, me=ctx.id,\n"
        "                  greeted=self.greeted)\n"
    )
    out = kernel.ok(
        "nb_cluster = labkit.Cluster(Greeter, n=3, runtime='processes', seed=7)\n"
        "reply = nb_cluster.request('n2', 'greet', timeout=10000, name='ada')\n"
        "print('REPLY', json.dumps(reply.body, sort_keys=True))\n"
        "print('PIDS', json.dumps([s.pid for s in nb_cluster.status().values()]))\n"
    )
    lines = dict(line.split(" ", 1) for line in out["stdout"].splitlines() if " " in line)
    assert json.loads(lines["REPLY"]) == {"greeting": "hello", "greeted": ["ada"], "me": "n2",
                                          "text": "hello, ada!"}
    pids = json.loads(lines["PIDS"])
    assert len(set(pids)) == 3 and kernel.pid not in pids
    assert set(pids) <= {p.pid for p in kernel.descendants()}       # real processes

    # the next cell: a handler that raises -> reported in the cell's stderr
    out = kernel.ok(
        "try:\n"
        "    nb_cluster.request('n3', 'boom', timeout=10000)\n"
        "except labkit.NodeCrashed as e:\n"
        "    print('CRASHED', type(e).__name__)\n"
    )
    assert "CRASHED NodeCrashed" in out["stdout"]
    err = out["stderr"]
    assert "labkit: node n3 crashed" in err
    assert "seed 7" in err and "incarnation 1" in err
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: kaboom from n3" in err
    assert "in on_message" in err                       # the frame of the notebook's handler
    assert "'boom'" in err                              # the message that caused it

    # the rest of the cluster goes on
    out = kernel.ok(
        "print('STATES', json.dumps({n: s.state for n, s in nb_cluster.status().items()}, sort_keys=True))\n"
        "print('AGAIN', nb_cluster.request('n1', 'greet', timeout=10000, name='bob')['text'])\n"
    )
    lines = dict(line.split(" ", 1) for line in out["stdout"].splitlines())
    assert json.loads(lines["STATES"]) == {"n1": "up", "n2": "up", "n3": "crashed"}
    assert lines["AGAIN"] == "hello, bob!"
    # the crash is printed once, not again by later cells
    assert "crashed" not in out["stderr"]
    kernel.ok("nb_cluster.close()")


def test_interrupting_a_cell_stops_the_cell_not_the_cluster(kernel):
    """Jupyter's interrupt sends SIGINT to the kernel's whole process group (nodes included)."""
    kernel.ok("import labkit, json")
    kernel.ok(
        "class Ticker(labkit.Node):\n"
        "    def on_start(self, ctx):\n"
        "        ctx.set_timer('tick', after=20)\n"
        "    def on_timer(self, ctx, name):\n"
        "        ctx.broadcast('ping')\n"
        "        ctx.set_timer('tick', after=20)\n"
        "    def on_message(self, ctx, msg):\n"
        "        if msg.type == 'hi':\n"
        "            ctx.reply(msg, me=ctx.id)\n"
        "tick_cluster = labkit.Cluster(Ticker, n=3, runtime='processes', seed=8)\n"
        "before = {n: (s.state, s.pid) for n, s in tick_cluster.status().items()}\n"
    )
    timer = threading.Timer(0.8, kernel.km.interrupt_kernel)
    t0 = time.monotonic()
    timer.start()
    try:
        out = kernel.run("tick_cluster.run_for(8)", timeout=30)
    finally:
        timer.cancel()
    assert out["status"] == "error" and out["error"][0] == "KeyboardInterrupt"
    assert time.monotonic() - t0 < 6
    out = kernel.ok(
        "tick_cluster.run_for(0.3)\n"
        "after = {n: (s.state, s.pid) for n, s in tick_cluster.status().items()}\n"
        "print('SAME', after == before, json.dumps(after, sort_keys=True))\n"
        "print('HI', json.dumps([tick_cluster.request(n, 'hi', timeout=10000)['me'] for n in tick_cluster.ids]))\n"
        "t = tick_cluster.now\n"
        "tick_cluster.run_for(0.3)\n"
        "print('TICKS', len(tick_cluster.journal.filter(kind='deliver', type='ping', since=t)))\n"
        "tick_cluster.close()\n"
    )
    lines = dict(line.split(" ", 1) for line in out["stdout"].splitlines())
    assert lines["SAME"].startswith("True"), lines["SAME"]
    assert json.loads(lines["HI"]) == ["n1", "n2", "n3"]
    assert int(lines["TICKS"]) > 10
    assert out["stderr"] == ""                          # no crash was reported
