"""End to end: Maelstrom's lin-kv workload through labkit.maelstrom.test, with labkit nodes
in the simulator and with the Python program in real processes."""
from __future__ import annotations

import os
import shutil
import sys

import pytest

from labkit.maelstrom import workloads
from labkit.maelstrom import test as run_test

from maelstrom_elle_nodes import LinKVProxy, RaftLinKV, StaleLinKV

PROGRAMS = os.path.join(os.path.dirname(__file__), "maelstrom", "programs")


def test_workload_generator_and_wire_format():
    wl = workloads.get("lin-kv", key_count=2, per_key_limit=3)
    import random
    rng = random.Random(1)
    invs = [wl.invoke(rng, 0) for _ in range(30)]
    assert {i.f for i in invs} == {"read", "write", "cas"}
    assert max(i.key for i in invs) >= 8         # 30 ops, 3 per key: keys retire
    cas = next(i for i in invs if i.f == "cas")
    assert wl.request(cas) == {"type": "cas", "key": cas.key, "from": cas.value[0], "to": cas.value[1]}
    assert wl.completion(cas, {"type": "cas_ok"}) == cas.value
    with pytest.raises(ValueError, match="read_ok"):
        wl.completion(next(i for i in invs if i.f == "read"), {"type": "write_ok"})
    with pytest.raises(ValueError, match="per_key_limit"):
        workloads.get("lin-kv", per_key_limit=0)
    with pytest.raises(ValueError, match="unknown option"):
        workloads.get("lin-kv", keys=3)


def test_proxy_to_lin_kv_is_linearizable_in_sim():
    r = run_test(LinKVProxy, "lin-kv", node_count=3, time_limit=10, rate=20, seed=5)
    assert r.valid is True, str(r)
    assert r.checks["linearizable"].valid is True
    assert r.stats["ok"] > 50 and r.exit_code == 0


def test_stale_reading_lin_kv_is_not_linearizable_in_sim():
    r = run_test(StaleLinKV, "lin-kv", node_count=3, time_limit=10, rate=20, seed=5)
    assert r.valid is False and r.exit_code == 1
    v = r.checks["linearizable"]
    assert v.valid is False and "cannot be linearized" in v.summary


@pytest.mark.parametrize("stale", [False, True])
def test_python_program(stale):
    from labkit.maelstrom.program import Program
    cmd = [sys.executable, os.path.join(PROGRAMS, "lin_kv.py")] + (["--stale"] if stale else [])
    r = run_test(Program(cmd), "lin-kv", node_count=3, time_limit=4, rate=20, latency=10, quiet=1, seed=5,
             runtime="processes")
    assert r.checks["linearizable"].valid is (not stale), str(r)


def test_raft_backed_lin_kv_is_linearizable_under_partitions_in_sim():
    r = run_test(RaftLinKV, "lin-kv", node_count=3, time_limit=30, rate=20, seed=5, nemesis=["partition"],
                 nemesis_interval=5)
    v = r.checks["linearizable"]
    assert v.valid is True, str(r)
    assert r.stats["ok"] > 20 and r.checks["availability"].details   # some ops succeed despite the faults


def test_raft_backed_lin_kv_exported_as_a_program():
    """labkit's Raft key-value store run as a Maelstrom program (labkit.maelstrom.export)
    in real processes, under partitions."""
    from labkit.maelstrom.program import Program
    nodes = os.path.join(os.path.dirname(__file__), "maelstrom_elle_nodes.py")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = run_test(Program([sys.executable, "-m", "labkit.maelstrom.export", nodes + ":RaftLinKV"], env=env),
                 "lin-kv", node_count=3, time_limit=8, rate=20, latency=10, quiet=2, seed=5, runtime="processes",
                 nemesis=["partition"], nemesis_interval=3)
    assert r.checks["linearizable"].valid is True, str(r)
    assert r.stats["ok"] > 20


@pytest.mark.skipif(not shutil.which("node"), reason="node.js is not installed")
@pytest.mark.parametrize("stale", [False, True])
def test_raft_lin_kv_in_javascript(stale):
    """A Raft lin-kv written in JavaScript passes under partitions; the same with followers
    answering reads from their own (lagging) state is caught."""
    from labkit.maelstrom.program import Program
    cmd = [shutil.which("node"), os.path.join(PROGRAMS, "lin_kv_raft.js")] + (["--stale-reads"] if stale else [])
    r = run_test(Program(cmd), "lin-kv", node_count=5, time_limit=10, rate=40, latency=10, quiet=2, seed=11,
                 runtime="processes", nemesis=["partition"], nemesis_interval=1)
    v = r.checks["linearizable"]
    assert v.valid is (not stale), str(r)
    assert r.stats["ok"] > 50
