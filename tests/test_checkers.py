"""Verdicts and the checkers that need no search: journal invariants, convergence, fault
windows, availability, messages per op, set-full, counter bounds, latency."""
from __future__ import annotations

import pytest

import labkit
from labkit.checkers import (UnknownVerdict, Verdict, always, availability, convergence, counter_bounds,
                             eventually, fault_windows, latency, messages_per_op, quantiles, set_full)
from labkit.history import History, Op
from labkit.journal import Event, Journal
from labkit.recorder import Recorder, workload

try:
    from .kvnodes import AsyncReplicaKV, GossipRegister, KVStore, LeaderKV
except ImportError:
    from kvnodes import AsyncReplicaKV, GossipRegister, KVStore, LeaderKV


def H(*rows) -> History:
    """Rows ``(process, type, f, value, time)`` in real-time order."""
    return History(Op(r[0], r[1], r[2], r[3], None, r[4] if len(r) > 4 else None) for r in rows)


# -- verdicts -----------------------------------------------------------------------------

def test_verdict_truthiness_never_passes_unknown():
    assert bool(Verdict(True, "x", "fine")) is True
    assert bool(Verdict(False, "x", "broken")) is False
    unknown = Verdict(None, "x", "timed out")
    with pytest.raises(UnknownVerdict, match="could not decide"):
        bool(unknown)
    with pytest.raises(UnknownVerdict):
        if unknown:
            pass
    assert (unknown.passed, unknown.failed, unknown.unknown, unknown.outcome) == (False, False, True, "unknown")
    with pytest.raises(TypeError):
        Verdict("yes", "x", "?")  # type: ignore[arg-type]


def test_verdict_explains_itself():
    v = Verdict(False, "demo", "2 problems", {"n": 2}, ("first <problem>", "second"))
    text = str(v)
    assert text.splitlines() == ["demo: FAIL -- 2 problems", "  first <problem>", "  second"]
    html = v._repr_html_()
    assert "FAIL" in html and "&lt;problem&gt;" in html and "details" in html


def test_combine_prefers_failure_then_unknown():
    t, f, u = Verdict(True, "a", "ok"), Verdict(False, "b", "bad", explanations=("why",)), Verdict(None, "c", "?")
    assert Verdict.combine("all", [t, u]).valid is None
    both = Verdict.combine("all", [t, f, u])
    assert both.valid is False and both.explanations == ("why",) and "b: bad" in both.summary
    assert Verdict.combine("all", [t, t]).valid is True


# -- journal invariants -------------------------------------------------------------------

def ev(t, kind, node="n1", **data):
    return Event(t, kind, node, None, data)


def test_always_names_the_first_violating_event():
    j = Journal([ev(0, "log", text="a"), ev(5, "log", text="b"), ev(9, "log", text="c"), ev(12, "log", text="b")])
    v = always(j, lambda e: e.get("text") != "b", name="no b")
    assert v.valid is False and v.details["event_index"] == 1 and v.explanations[0].t == 5
    assert "no b" in str(v) and "t=5.0" in v.summary
    assert always(j, lambda e: e.kind == "log").valid is True


def test_always_with_a_view_of_reported_status():
    """At most one leader at a time, from what nodes report with ctx.report(role=...)."""
    j = Journal([ev(0, "start", "n1"), ev(0, "start", "n2"), ev(10, "stats", "n1", status={"role": "leader"}),
                 ev(20, "stats", "n2", status={"role": "leader"}), ev(30, "stats", "n1", status={"role": "follower"})])

    def one_leader(e, view):
        return sum(s.get("role") == "leader" for s in view.status.values()) <= 1

    v = always(j, one_leader)
    assert v.valid is False and v.explanations[0].t == 20
    assert always(Journal([*j.events[:3], j.events[4]]), one_leader).valid is True


def test_eventually_pass_fail_unknown():
    j = Journal([ev(0, "log", text="boot"), ev(100, "log", text="ready"), ev(400, "log", text="tick")])
    ready = lambda e: e.get("text") == "ready"  # noqa: E731
    assert eventually(j, ready, within=150).valid is True
    late = eventually(j, ready, within=50)
    assert late.valid is False and late.explanations[0].t == 100     # the first event after the deadline
    assert eventually(j, lambda e: e.get("text") == "never", within=300).valid is False
    short = eventually(j, lambda e: e.get("text") == "never", within=1000)
    assert short.valid is None and "ends" in short.summary
    assert eventually(j, ready, within=10, since=95).valid is True


# -- faults, convergence ------------------------------------------------------------------

def test_fault_windows_from_a_simulated_run():
    with labkit.Cluster(KVStore, n=3, runtime="sim", seed=1) as c:
        c.run_for(0.1); c.kill("n1")
        c.run_for(0.1); c.restart("n1")
        c.pause("n2"); c.run_for(0.1); c.resume("n2")
        c.partition(["n3"]); c.run_for(0.1); c.heal()
        c.set_link(delay=3); c.run_for(0.1); c.clear_links()
        c.skew("n3", 50.0); c.run_for(0.1); c.skew("n3")
        c.isolate("n2"); c.run_for(0.1)
        ws = fault_windows(c.journal)
    got = [(w.kind, w.nodes, round(w.start), None if w.open else round(w.end)) for w in ws]
    assert got == [("down", ("n1",), 100, 200), ("paused", ("n2",), 200, 300), ("partition", (), 300, 400),
                   ("link", (), 400, 500), ("skew", ("n3",), 500, 600), ("partition", (), 600, None)]
    assert ws[0].covers(150) and not ws[0].covers(200) and ws[-1].covers(10**9)


def partitioned_writes(cls, seed=1):
    c = labkit.Cluster(cls, n=3, runtime="sim", seed=seed)
    rec = Recorder(c, timeout_ms=100)
    c.partition(["n1"], ["n2", "n3"])
    rec.client("n1").call("write", 1, key="k")
    rec.client("n2").call("write", 2, key="k")
    c.run_for(0.5)
    c.heal()
    return c


def test_gossip_replicas_converge_after_the_heal():
    with partitioned_writes(GossipRegister) as c:
        c.run_for(1.0)
        v = convergence(c.journal, within=500, end=c.now)
        assert v.valid is True and 0 < v.details["lag_ms"] <= 500
        assert set(v.details["states"].values()) == {2}
        assert convergence(c.journal, within=100, end=c.now).valid is False     # not that fast


def test_async_replicas_never_converge_and_a_short_run_is_unknown():
    with partitioned_writes(AsyncReplicaKV) as c:
        early = convergence(c.journal, within=500, end=c.now + 100)
        c.run_for(1.0)
        late = convergence(c.journal, within=500, end=c.now)
    assert early.valid is None
    assert late.valid is False and "{'k': 1}" in str(late) and "{'k': 2}" in str(late)


def test_convergence_is_unknown_while_partitioned_and_accepts_a_state_function():
    with labkit.Cluster(GossipRegister, n=3, runtime="sim", seed=2) as c:
        c.partition(["n1"])
        c.run_for(0.3)
        assert convergence(c.journal).valid is None
        c.heal()
        c.run_for(0.5)
        # every node says nothing but "hello" in this view: equal states
        v = convergence(c.journal, within=100, state=lambda e: "hello" if e.kind == "timer_fire" else None)
        assert v.valid is True


# -- availability, cost, latency ----------------------------------------------------------

def test_availability_inside_and_outside_fault_windows():
    with labkit.Cluster(LeaderKV, n=3, runtime="sim", seed=3) as c:
        c.call_at(1000, c.isolate, "n1")                       # the leader: followers can't forward
        c.call_at(2000, c.heal)
        h = workload(c, clients=4, rate=100, duration=3.0, keys=1, timeout_ms=400, nodes=["n2", "n3"])
        v = availability(h, c.journal)
    pairs = h.pairs()
    during = [p for p in pairs if 1000 <= p.start < 2000]
    outside = [p for p in pairs if not 1000 <= p.start < 2000]
    d = v.details
    assert v.valid is True and d["ops"] == len(pairs) and d["fault_windows"] == ["partition [1000.0 .. 2000.0 ms]"]
    assert d["during_faults"] == {"ops": len(during), "ok_fraction": sum(p.type == "ok" for p in during) / len(during)}
    assert d["outside_faults"]["ops"] == len(outside)
    assert d["during_faults"]["ok_fraction"] < 0.1 < 0.9 < d["outside_faults"]["ok_fraction"]
    assert availability(h, min_ok=0.99).valid is False
    assert availability(History()).valid is None


def test_messages_per_op_counts_node_to_node_sends():
    with labkit.Cluster(LeaderKV, n=3, runtime="sim", seed=4) as c:
        h = workload(c, clients=3, rate=100, duration=1.0, keys=1, timeout_ms=300)
        sends = [e for e in c.journal.filter(kind="send") if not e.node.startswith("c") and not e.dst.startswith("c")]
        v = messages_per_op(c.journal, h)
        w = messages_per_op(c.journal)                      # ops counted from client deliveries
    done = sum(p.type in ("ok", "fail") for p in h.pairs())
    assert v.details == {"messages": len(sends), "ops": done, "per_op": len(sends) / done}
    assert 0.5 < v.details["per_op"] < 2.0             # two of three clients go through a follower
    assert w.details["ops"] == done
    assert messages_per_op(c.journal, h, max_per_op=0.1).valid is False
    assert messages_per_op([], History()).valid is None


def test_latency_quantiles_and_targets():
    rows = []
    for i, lat in enumerate([1, 2, 3, 4, 100]):
        rows += [(i, "invoke", "read", None, 10.0 * i), (i, "ok", "read", 1, 10.0 * i + lat)]
    h = H(*rows, (9, "invoke", "write", 1, 0.0), (9, "info", "write", 1, 500.0))
    v = latency(h)
    assert v.valid is True and v.details["quantiles_ms"]["0.5"] == 3 and v.details["quantiles_ms"]["1.0"] == 100
    assert v.details["ops"] == 5                          # info ops have no latency
    bad = latency(h, targets={0.99: 50})
    assert bad.valid is False and "p99" in bad.summary
    assert quantiles([5, 1, 3], [0.0, 0.5, 1.0]) == {0.0: 1, 0.5: 3, 1.0: 5}


# -- set-full and counters ----------------------------------------------------------------

def add(p, x, type="ok"):
    return [(p, "invoke", "add", x), (p, type, "add", x)]


def read(p, xs):
    return [(p, "invoke", "read", None), (p, "ok", "read", xs)]


def test_set_full_stable_stale_lost_duplicated_unexpected():
    h = H(*add(0, "a"), *add(0, "b"), *read(1, ["a"]), *read(1, ["a", "b"]), *add(0, "c"),
          *read(1, ["b", "c", "c"]), *read(1, ["b", "c", "z"]))
    v = set_full(h)
    d = v.details
    assert v.valid is False
    assert d["lost"] == ["a"] and d["stale"] == ["b"] and d["duplicated"] == ["c"] and d["unexpected"] == ["z"]
    assert d["stable"] == 2 and "lost" in v.summary


def test_set_full_valid_and_edge_cases():
    ok = H(*add(0, 1), *read(1, [1]), *add(0, 2, "info"), *add(0, 3, "fail"), *read(1, [1]), *add(0, 4))
    v = set_full(ok)
    assert v.valid is True and v.details["never_read"] == [4] and v.details["lost"] == []
    assert set_full(H(*add(0, 1), *read(1, []), *read(1, [1])), linearizable=True).valid is False   # stale
    assert set_full(H(*add(0, 1), *read(1, []), *read(1, [1]))).valid is True
    assert set_full(H(*add(0, 3, "fail"), *read(1, [3]))).details["unexpected"] == [3]
    assert set_full(H(*add(0, 1))).valid is None


def test_set_full_on_broadcast_shapes():
    h = History([Op(0, "invoke", "broadcast", 7, time=0.0), Op(0, "ok", "broadcast", 7, time=1.0),
                 Op(1, "invoke", "read", time=5.0), Op(1, "ok", "read", [7], time=6.0)])
    v = set_full(h, add_f="broadcast")
    assert v.valid is True and v.details["stable_latency_ms"]["0.5"] == 5.0


def test_counter_bounds():
    inc = [*add(0, 1), *add(0, 2)]
    assert counter_bounds(H(*inc, *read(1, 3))).valid is True
    assert counter_bounds(H(*inc, *read(1, 4))).valid is False
    assert counter_bounds(H(*inc, *read(1, 2))).valid is False
    # an info add may or may not have happened; a failed one did not
    maybe = H(*inc, *add(2, 5, "info"), *add(3, 10, "fail"))
    rows = list(maybe)
    for value, want in [(3, True), (8, True), (13, False)]:
        h = History(rows + [Op(1, "invoke", "read"), Op(1, "ok", "read", value)])
        v = counter_bounds(h)
        assert v.valid is want and v.details["final_bounds"] == [3, 8]
    # a read concurrent with an add may see it or not
    conc = H((0, "invoke", "add", 4), (1, "invoke", "read", None), (1, "ok", "read", 0), (0, "ok", "add", 4))
    assert counter_bounds(conc).valid is True
    assert counter_bounds(H(*inc)).valid is None
