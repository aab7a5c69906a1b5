"""End to end: Maelstrom's kafka workload through labkit.maelstrom.test: a log kept on one
node passes; a log whose nodes hand out the same offsets is caught (inconsistent offsets)."""
from __future__ import annotations

import os
import random
import sys

import pytest

from labkit.maelstrom import workloads
from labkit.maelstrom import test as run_test
from labkit.maelstrom.workloads.kafka import KafkaInvocation

from maelstrom_elle_nodes import KafkaLog, KafkaReuse

PROGRAMS = os.path.join(os.path.dirname(__file__), "maelstrom", "programs")


def test_client_assigns_polls_from_positions_and_commits():
    wl = workloads.get("kafka", key_count=2, send_prob=0.0, reassign_prob=0.0)
    rng = random.Random(1)
    a = wl.invoke(rng, 7)
    assert a.f == "list_committed_offsets" and isinstance(a, KafkaInvocation)
    assert wl.request(a) == {"type": "list_committed_offsets", "keys": a.value}
    assert wl.completion(a, {"type": "list_committed_offsets_ok", "offsets": {a.value[0]: 3}}) == {a.value[0]: 3}
    p = wl.invoke(rng, 7)
    assert p.f == "poll" and wl.request(p)["offsets"][a.value[0]] == 3
    k = a.value[0]
    assert wl.completion(p, {"type": "poll_ok", "msgs": {k: [[3, 30], [5, 50]]}}) == [["poll", {k: [[3, 30], [5, 50]]}]]
    c = wl.invoke(rng, 7)
    assert c.f == "commit_offsets" and c.value == {k: 5}
    assert wl.request(wl.invoke(rng, 7))["offsets"][k] == 6        # next poll from 6
    with pytest.raises(ValueError, match="offset"):
        wl.completion(KafkaInvocation("send", [["send", "0", 1]]), {"type": "send_ok"})
    fin = wl.final(["n0", "n1"])      # invocation i runs on node i % 2: each node lists, then polls
    assert [i.f for i in fin] == ["list_committed_offsets"] * 2 + ["poll"] * 2
    assert fin[2].value[0][1] == {"0": 0, "1": 0}
    with pytest.raises(ValueError, match="probability"):
        workloads.get("kafka", send_prob=2)


def test_log_on_one_node_passes_in_sim():
    r = run_test(KafkaLog, "kafka", node_count=3, time_limit=10, rate=20, seed=5)
    v = r.checks["kafka"]
    assert r.valid is True and v.valid is True, str(r)
    assert v.details["sends_ok"] > 20 and v.details["polls_ok"] > 20


def test_reused_offsets_are_caught_in_sim():
    r = run_test(KafkaReuse, "kafka", node_count=3, time_limit=10, rate=20, seed=5)
    v = r.checks["kafka"]
    assert r.valid is False and "inconsistent-offsets" in v.details["anomaly_types"]
    case = v.details["anomalies"]["inconsistent-offsets"][0]
    assert len(case["msgs"]) >= 2


@pytest.mark.parametrize("reuse", [False, True])
def test_python_program(reuse):
    from labkit.maelstrom.program import Program
    cmd = [sys.executable, os.path.join(PROGRAMS, "kafka_log.py")] + (["--reuse-offsets"] if reuse else [])
    r = run_test(Program(cmd), "kafka", node_count=3, time_limit=4, rate=30, latency=10, quiet=1, seed=5,
             runtime="processes")
    v = r.checks["kafka"]
    assert v.valid is (not reuse), str(v)
    if reuse:
        assert "inconsistent-offsets" in v.details["anomaly_types"]
