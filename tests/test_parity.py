"""The same scenario in both runtimes, comparing what is comparable.

Time differs (virtual vs wall clock) and so does the interleaving of concurrent events; what
must agree is what the node code and the network model decide: replies, message ids and
bodies, seeded randomness, storage across restarts, drop rules, node states, and the journal's
schema (the keys of ``Event.to_dict()`` per event kind).
"""
from __future__ import annotations

from collections import Counter

import pytest

import labkit

try:                                   # tests/ as a package, or as a plain directory
    from .procnodes import Counter as CountingNode
except ImportError:
    from procnodes import Counter as CountingNode

pytestmark = pytest.mark.processes

RUNTIMES = ("sim", "processes")
SCHEMA_KINDS = ("send", "deliver", "drop", "timer_set", "timer_fire", "start", "kill", "restart",
                "partition", "heal", "crash", "log", "stats")
OK_MS = 5000.0


def settle(c, pred, seconds=5.0):
    """Run the cluster in small steps until ``pred()`` holds (bounded); return pred()."""
    steps = int(seconds / 0.05)
    for _ in range(steps):
        if pred():
            return True
        c.run_for(0.05)
    return pred()


def scenario(runtime):
    """One fixed story; returns what both runtimes must agree on."""
    out = {}
    with labkit.Cluster(CountingNode, n=3, runtime=runtime, seed=1234) as c:
        # requests and replies; volatile counting
        out["pings"] = [c.request("n1", "ping", timeout=OK_MS, echo=i).body for i in range(3)]
        out["rand"] = c.request("n2", "rand", timeout=OK_MS).body          # ctx.rng is seeded alike
        # durable storage across kill/restart
        c.request("n1", "put", timeout=OK_MS, key="k", value={"v": [1, 2]})
        out["kill"] = (c.kill("n1"), c.kill("n1"))
        out["status_killed"] = {n: (s.state, s.incarnation) for n, s in c.status().items()}
        c.restart("n1")
        out["after_restart"] = c.request("n1", "get", timeout=OK_MS, key="k").body
        # a partition: notes across it are dropped with rule "partition", inside it delivered
        out["groups"] = c.partition(["n1"], ["n2", "n3"])
        c.request("n1", "fanout", timeout=OK_MS, n=1)
        c.request("n2", "fanout", timeout=OK_MS, n=2)
        assert settle(c, lambda: len(c.journal.filter(type="note", kind=["deliver", "drop"])) >= 4)
        c.heal()
        c.request("n1", "fanout", timeout=OK_MS, n=3)
        assert settle(c, lambda: len(c.journal.filter(type="note", kind=["deliver", "drop"])) >= 6)
        # a crash
        with pytest.raises(labkit.NodeCrashed):
            c.request("n3", "boom", timeout=OK_MS)
        out["ping_n2"] = c.request("n2", "ping", timeout=OK_MS, echo="x").body
        c.run_for(0.5)                                                        # stats, timers
        assert settle(c, lambda: c.counters("n2")["counters"].get("pings") == 1)
        out["counters_n2"] = c.counters("n2")
        out["status"] = {n: (s.state, s.incarnation) for n, s in c.status().items()}
        events = [e.to_dict() for e in c.journal]
    out["events"] = events
    return out


@pytest.fixture(scope="module")
def runs():
    return {rt: scenario(rt) for rt in RUNTIMES}


def test_same_answers(runs):
    sim, proc = runs["sim"], runs["processes"]
    assert sim["pings"] == proc["pings"] == [{"pings": i + 1, "echo": i} for i in range(3)]
    assert sim["rand"] == proc["rand"]
    assert sim["ping_n2"] == proc["ping_n2"] == {"pings": 1, "echo": "x"}
    assert sim["groups"] == proc["groups"] == [["n1"], ["n2", "n3"]]


def test_kill_restart_keeps_storage_in_both(runs):
    for rt in RUNTIMES:
        r = runs[rt]
        assert r["kill"] == (True, False), rt
        assert r["status_killed"]["n1"] == ("down", 1), rt
        assert r["after_restart"] == {"value": {"v": [1, 2]}, "pings": 0, "incarnation": 2}, rt
        assert r["status"] == {"n1": ("up", 2), "n2": ("up", 1), "n3": ("crashed", 1)}, rt


def test_counters_agree(runs):
    assert runs["sim"]["counters_n2"] == runs["processes"]["counters_n2"] == \
        {"counters": {"pings": 1}, "status": {}}


def _notes(events, kind):
    return sorted((e["src"], e["dst"], e["body"]["n"], e.get("rule")) for e in events
                  if e["kind"] == kind and e.get("type") == "note")


def test_partition_drops_with_the_same_rules(runs):
    for rt in RUNTIMES:
        ev = runs[rt]["events"]
        assert _notes(ev, "drop") == [("n1", "n2", 1, "partition"), ("n1", "n3", 1, "partition"),
                                      ("n2", "n1", 2, "partition")], rt
        assert _notes(ev, "deliver") == [("n1", "n2", 3, None), ("n1", "n3", 3, None),
                                         ("n2", "n3", 2, None)], rt
    assert {e["rule"] for e in runs["sim"]["events"] if e["kind"] == "drop"} == \
           {e["rule"] for e in runs["processes"]["events"] if e["kind"] == "drop"}


def test_same_messages_ids_and_bodies(runs):
    """Every send/deliver/drop, minus time: same ids, ends, types, bodies and rules."""
    def key(e):
        return (e["kind"], e["node"], e["id"], e["src"], e["dst"], e["type"], e["re"],
                repr(e["body"]), e.get("rule"))

    def msgs(rt):
        return Counter(key(e) for e in runs[rt]["events"] if e["kind"] in ("send", "deliver", "drop"))

    sim, proc = msgs("sim"), msgs("processes")
    assert sim - proc == Counter() and proc - sim == Counter(), \
        f"only in sim: {sorted(sim - proc)}\nonly in processes: {sorted(proc - sim)}"


def test_journal_schema_is_the_same(runs):
    def schema(rt):
        by_kind = {}
        for e in runs[rt]["events"]:
            by_kind.setdefault(e["kind"], set()).add(tuple(sorted(e)))
        return by_kind

    sim, proc = schema("sim"), schema("processes")
    for kind in SCHEMA_KINDS:
        assert kind in sim and kind in proc, f"the scenario produced no {kind!r} event in " + \
            ("sim" if kind not in sim else "processes")
        assert sim[kind] == proc[kind], kind
    assert set(sim) == set(proc)
    for kind in sim:
        assert kind in labkit.KINDS


def test_crash_event_in_both(runs):
    for rt in RUNTIMES:
        (crash,) = [e for e in runs[rt]["events"] if e["kind"] == "crash"]
        assert crash["node"] == "n3" and crash["seed"] == 1234 and crash["incarnation"] == 1, rt
        assert crash["error"] == "ValueError: boom: n3", rt
        assert "ValueError: boom: n3" in crash["traceback"] and "on_message" in crash["traceback"], rt


def test_timer_draws_agree(runs):
    """set_timer(between=...) draws from the same seeded generator in both runtimes."""
    def draws(rt):
        return sorted((e["node"], e["after"]) for e in runs[rt]["events"] if e["kind"] == "timer_set")
    assert draws("sim") == draws("processes")
    assert len(draws("sim")) == 4                        # n1, n2, n3 and n1's second incarnation


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_request_to_a_down_node_is_not_handled_after_restart(runtime):
    """A request to a node known to be down fails at once (``NodeDown``), journaled as sent
    and dropped ("node down"); a message sent to it anyway (``client_send``) must not be
    handled later by the next incarnation either (the sim drops it with rule "node down"; the
    processes runtime queues it in the notebook's ZeroMQ socket and delivers it after restart)."""
    with labkit.Cluster(CountingNode, n=2, runtime=runtime, seed=5) as c:
        c.kill("n1")
        with pytest.raises(labkit.NodeDown, match="n1 is down"):
            c.request("n1", "put", timeout=OK_MS, key="ghost", value="written while down")
        c.client_send("n1", "put", key="ghost", value="written while down")
        c.run_for(0.2)
        c.restart("n1")
        assert c.request("n1", "get", timeout=OK_MS, key="ghost").body["value"] is None
        c.run_for(0.2)
        refused, sent = c.journal.filter(kind="send", node="client", type="put").events
        for ev in (refused, sent):
            assert c.journal.filter(kind="deliver", id=ev.id).events == []
            assert [e.get("rule") for e in c.journal.filter(kind="drop", id=ev.id)] == ["node down"]
