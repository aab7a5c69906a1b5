"""End to end: Maelstrom's txn-list-append and txn-rw-register workloads (Elle checker)
through labkit.maelstrom.test: a store that runs each txn serially on one lin-kv key is
serializable; one without isolation is caught, with the anomalies named."""
from __future__ import annotations

import os
import random
import sys

import pytest

from labkit.maelstrom import workloads
from labkit.maelstrom import test as run_test

from maelstrom_elle_nodes import TxnNoIsolation, TxnStore

PROGRAMS = os.path.join(os.path.dirname(__file__), "maelstrom", "programs")
CYCLES = {"G0", "G1c", "G-single", "G-nonadjacent", "G2-item", "G0-realtime", "G1c-realtime",
          "G-single-realtime", "G-nonadjacent-realtime", "G2-item-realtime"}


def test_generator_and_wire_format():
    wl = workloads.get("txn-list-append", key_count=2, max_txn_length=3, max_writes_per_key=4)
    rng = random.Random(2)
    invs = [wl.invoke(rng, 0) for _ in range(40)]
    assert all(1 <= len(i.value) <= 3 and i.f == "txn" for i in invs)
    appends = [(m[1], m[2]) for i in invs for m in i.value if m[0] == "append"]
    assert len(appends) == len(set(appends))                           # unique values per key
    assert max(c for k, c in __import__("collections").Counter(k for k, _ in appends).items()) <= 4
    inv = next(i for i in invs if any(m[0] == "r" for m in i.value))
    body = wl.request(inv)
    assert body["type"] == "txn" and body["txn"] == [list(m) for m in inv.value]
    done = [[f, k, [1] if f == "r" else v] for f, k, v in inv.value]
    assert wl.completion(inv, {"type": "txn_ok", "txn": done}) == done
    with pytest.raises(ValueError, match="does not complete"):
        wl.completion(inv, {"type": "txn_ok", "txn": [["x", 0, None]] * len(inv.value)})
    with pytest.raises(ValueError, match="unknown consistency model"):
        workloads.get("txn-rw-register", consistency_models="linearizable")
    assert workloads.get("txn-rw-register").invoke(rng, 0).value[0][0] in ("r", "w")


@pytest.mark.parametrize("workload", ["txn-list-append", "txn-rw-register"])
def test_serial_store_on_lin_kv_is_strict_serializable_in_sim(workload):
    r = run_test(TxnStore, workload, node_count=3, time_limit=10, rate=20, seed=5)
    v = r.checks["elle"]
    assert r.valid is True and v.valid is True, str(r)
    assert v.details["ok_count"] > 20 and v.details["consistency_model"] == "strict-serializable"


@pytest.mark.parametrize("workload", ["txn-list-append", "txn-rw-register"])
def test_store_without_isolation_is_caught_in_sim(workload):
    r = run_test(TxnNoIsolation, workload, node_count=3, time_limit=10, rate=20, seed=5)
    v = r.checks["elle"]
    assert r.valid is False and v.valid is False
    found = set(v.details["forbidden_found"])
    assert found, v.details
    for t in found:                                              # each is named in the summary
        assert t in v.summary
    if workload == "txn-list-append":
        assert found & CYCLES, found
        cyc = next(a for t in found & CYCLES for a in v.details["anomalies"][t])
        assert " < " in cyc["cycle"] and cyc["steps"]


def test_read_uncommitted_model_is_weaker():
    r = run_test(TxnNoIsolation, "txn-rw-register", node_count=3, time_limit=10, rate=20, seed=5,
             consistency_models="read-uncommitted")
    strict = run_test(TxnNoIsolation, "txn-rw-register", node_count=3, time_limit=10, rate=20, seed=5)
    assert set(r.checks["elle"].details["forbidden_found"]) < set(strict.checks["elle"].details["forbidden_found"])


@pytest.mark.parametrize("isolated", [True, False])
def test_python_program(isolated):
    from labkit.maelstrom.program import Program
    cmd = [sys.executable, os.path.join(PROGRAMS, "txn_list_append.py")] + ([] if isolated else ["--no-isolation"])
    r = run_test(Program(cmd), "txn-list-append", node_count=3, time_limit=4, rate=30, latency=10, quiet=1, seed=5,
             runtime="processes")
    v = r.checks["elle"]
    assert v.valid is isolated, str(v)
    if not isolated:
        assert v.details["forbidden_found"]


@pytest.mark.skipif(not os.path.exists("/usr/bin/node") and not __import__("shutil").which("node"),
                    reason="node.js is not installed")
@pytest.mark.parametrize("isolated", [True, False])
def test_javascript_program(isolated):
    import shutil
    from labkit.maelstrom.program import Program
    node = shutil.which("node") or "/usr/bin/node"
    cmd = [node, os.path.join(PROGRAMS, "txn_list_append.js")] + ([] if isolated else ["--no-isolation"])
    r = run_test(Program(cmd), "txn-list-append", node_count=3, time_limit=4, rate=30, latency=10, quiet=1,
                 seed=5, runtime="processes")
    v = r.checks["elle"]
    assert v.valid is isolated, str(v)
    assert v.details["ok_count"] > 20
