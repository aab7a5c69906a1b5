"""labkit.maelstrom.test in the simulator: workloads, checkers, nemesis, results, presets.

The nodes are plain labkit Node classes (tests/maelstromnodes.py) with the same logic as the
programs in tests/maelstrom/programs/; every run is simulated, so it is fast and the same
seed gives the same history.
"""
from __future__ import annotations

import sys

import labkit
import pytest

import labkit.maelstrom as m
import maelstromnodes as mn
from labkit.maelstrom.workloads import broadcast as bc
from labkit.maelstrom.workloads.counter import acceptable_sums


def run(node, workload, **kw):
    kw.setdefault("seed", 7)
    kw.setdefault("quiet", 5.0)    # recovery before final reads: several gossip retry periods (1 s)
    return m.test(node, workload, **kw)


# -- correct nodes pass ------------------------------------------------------------------

@pytest.mark.parametrize("node,workload,kw", [
    (mn.Echo, "echo", dict(node_count=1, time_limit=5, rate=20)),
    (mn.UniqueIds, "unique-ids", dict(node_count=3, time_limit=5, rate=200, nemesis="partition,restart",
                                      nemesis_interval=1, availability="total")),
    (mn.Gossip, "broadcast", dict(node_count=5, time_limit=10, rate=20, nemesis=["partition"],
                                  nemesis_interval=2)),
    (mn.GSet, "g-set", dict(node_count=3, time_limit=8, rate=50, nemesis=["partition"], nemesis_interval=2)),
    (mn.PNCounter, "pn-counter", dict(node_count=3, time_limit=8, rate=50, nemesis=["partition"],
                                      nemesis_interval=2)),
    (mn.KVCounter, "g-counter", dict(node_count=3, time_limit=8, rate=50, nemesis=["partition"],
                                     nemesis_interval=2)),
])
def test_correct_nodes_pass(node, workload, kw):
    r = run(node, workload, **kw)
    assert r.valid is True, str(r)
    assert r.exit_code == 0
    assert "Everything looks good" in str(r)
    assert r.stats["ok"] > 0 and r.checks["workload"].valid is True
    if kw.get("nemesis"):
        assert r.nemesis, "the nemesis applied no fault"


# -- broken nodes fail with the right finding ------------------------------------------------

def test_broadcast_that_never_gossips_loses_elements():
    r = run(mn.NoGossip, "broadcast", node_count=5, time_limit=5, rate=20)
    assert r.valid is False and r.exit_code == 1
    sf = r.checks["set-full"]
    assert sf.valid is False and sf.details["lost"], sf
    assert "lost" in sf.summary
    assert "Analysis invalid" in str(r)


def test_unique_id_counter_restarting_at_zero_duplicates():
    r = run(mn.RestartingIds, "unique-ids", node_count=3, time_limit=6, rate=200, nemesis=["restart"],
            nemesis_interval=1)
    v = r.checks["unique-ids"]
    assert v.valid is False and v.details["duplicated_count"] > 0
    assert any(op["op"] == "restart" for _, op in r.nemesis)
    # without restarts the same node is fine: the finding comes from the fault
    assert run(mn.RestartingIds, "unique-ids", node_count=3, time_limit=6, rate=200).valid is True


def test_read_then_write_counter_on_seq_kv_has_a_wrong_final_value():
    r = run(mn.ReadThenWriteCounter, "g-counter", node_count=3, time_limit=6, rate=50)
    v = r.checks["g-counter"]
    assert v.valid is False
    finals, definite = v.details["final_reads"], v.details["definite_sum"]
    assert finals and all(x < definite for x in finals), v.details   # lost updates
    assert r.opts["services"] == ["seq-kv"]


# -- determinism, latency, messages ------------------------------------------------------------

def test_same_seed_same_history():
    a = run(mn.Gossip, "broadcast", node_count=4, time_limit=4, rate=30, nemesis="partition,kill",
            nemesis_interval=1, seed=11)
    b = run(mn.Gossip, "broadcast", node_count=4, time_limit=4, rate=30, nemesis="partition,kill",
            nemesis_interval=1, seed=11)
    assert [o.to_dict() for o in a.history] == [o.to_dict() for o in b.history]
    assert a.nemesis == b.nemesis and a.nemesis


def test_latency_applies_to_node_links_not_client_links():
    r = run(mn.FlatGossip, "broadcast", node_count=5, time_limit=5, rate=20, latency=100)
    # clients reach their node at once: op latencies are far below one link's 100 ms
    assert r.checks["latency"].details["quantiles_ms"]["1.0"] < 100
    # a value reaches the other nodes one 100 ms hop later (Jepsen's stable latency <= 100 ms)
    lat = r.checks["set-full"].details["stable_latency_ms"]
    assert 0 < lat["1.0"] <= 100.0 + 1e-6
    sends = [e for e in r.journal if e.kind == "deliver" and e.get("type") == "gossip"]
    assert sends and all(e.t - e.get("at", e.t) >= 100.0 - 1e-6 for e in sends if e.get("at") is not None)


def test_msgs_per_op_counts_server_to_server_messages_per_invocation():
    r = run(mn.FlatGossip, "broadcast", node_count=5, time_limit=5, rate=20)
    events = list(r.journal)
    server = sum(1 for e in events if e.kind == "send" and e.node.startswith("n") and (e.dst or "").startswith("n"))
    invokes = sum(1 for op in r.history if op.type == "invoke")
    assert r.stats["net"]["servers"]["msg_count"] == server
    assert r.msgs_per_op == pytest.approx(server / invokes)
    # FlatGossip: each broadcast goes to 4 peers and is acknowledged: ~8 messages per broadcast
    broadcasts = sum(1 for op in r.history if op.type == "invoke" and op.f == "broadcast")
    assert server == pytest.approx(8 * broadcasts, rel=0.05)
    assert run(mn.NoGossip, "broadcast", node_count=5, time_limit=3, rate=20).msgs_per_op == 0


# -- outcomes: error codes and timeouts -------------------------------------------------------------

class Moody(labkit.Node):
    """Answers echo requests in turn: ok, error 11 (definite), error 13 (indefinite), nothing."""

    def on_start(self, ctx):
        self.n = 0

    def on_message(self, ctx, msg):
        self.n += 1
        k = self.n % 4
        if k == 1:
            ctx.reply(msg, type="echo_ok", echo=msg.body["echo"])
        elif k == 2:
            ctx.reply(msg, type="error", code=11, text="busy")
        elif k == 3:
            ctx.reply(msg, type="error", code=13, text="crashed")


def test_error_codes_and_timeouts_become_fail_or_info():
    r = run(Moody, "echo", node_count=1, time_limit=4, rate=10, timeout=300)
    comps = [op for op in r.history if op.type != "invoke"]
    assert {op.type for op in comps if op.error and op.error.startswith("temporarily-unavailable")} == {"fail"}
    assert {op.type for op in comps if op.error and op.error.startswith("crash")} == {"info"}
    assert {op.type for op in comps if op.error == "timeout"} == {"info"}
    assert {op.type for op in comps if op.error is None} == {"ok"}
    # Maelstrom's echo checker compares every completion with its request: unanswered ones count
    v = r.checks["echo"]
    assert v.valid is False and v.details["mismatched"] == 0 and v.details["unanswered"] == len(comps) - v.details["ok"]
    av = run(Moody, "echo", node_count=1, time_limit=4, rate=10, timeout=300, availability="total")
    assert av.checks["availability"].valid is False and av.valid is False


class IdempotentEcho(m.workloads.workload_class("echo")):
    idempotent = frozenset({"echo"})


def test_timeouts_of_idempotent_fs_fail():
    r = run(Moody, IdempotentEcho(), node_count=1, time_limit=4, rate=10, timeout=300)
    assert {op.type for op in r.history if op.error == "timeout"} == {"fail"}
    with pytest.raises(ValueError, match="beside a Workload instance"):
        m.test(Moody, IdempotentEcho(), topology="grid")


class Silent(labkit.Node):
    def on_message(self, ctx, msg):
        if msg.type == "topology":
            ctx.reply(msg, type="error", code=10, text="no topology here")


def test_a_node_refusing_topology_is_a_setup_error():
    with pytest.raises(m.harness.SetupError, match="n0 answered the 'topology' setup message with 'error'"):
        run(Silent, "broadcast", node_count=2, time_limit=1, rate=10)


# -- nemesis -------------------------------------------------------------------------------------

def test_partitions_never_cut_services():
    r = run(mn.KVCounter, "g-counter", node_count=3, time_limit=8, rate=30, nemesis=["partition"],
            nemesis_interval=1)
    cuts = [e for e in r.journal if e.kind == "cut"]
    assert cuts and all(e.get("a").startswith("n") and e.get("b").startswith("n") for e in cuts)
    assert not [e for e in r.journal if e.kind == "partition"]
    # every service request was answered: the services stayed reachable
    kv_sends = [e for e in r.journal if e.kind == "send" and e.node.startswith("n") and e.dst == "seq-kv"]
    drops = [e for e in r.journal if e.kind == "drop" and "seq-kv" in (e.node, e.dst)]
    assert kv_sends and not drops


@pytest.mark.parametrize("fault,kind", [("kill", "kill"), ("pause", "pause"), ("restart", "restart"),
                                        ("skew", "skew"), ("drop", "link"), ("duplicate", "link"),
                                        ("delay", "link"), ("reorder", "link")])   # delay: was a ValueError
def test_labkit_faults_maelstrom_lacks_are_applied_and_undone(fault, kind):
    r = run(mn.DurableGossip, "broadcast", node_count=3, time_limit=6, rate=20, nemesis=[fault], nemesis_interval=1,
            latency=10)
    assert any(e.kind == kind for e in r.journal), fault
    assert r.valid is True, str(r)
    if fault in ("drop", "duplicate", "delay", "reorder"):     # the test's latency is back after each link fault
        clears = [e for e in r.journal if e.kind == "clear_links"]
        assert clears
        later = [e for e in r.journal if e.kind == "link" and e.t >= clears[-1].t]
        assert later and later[-1].get("delay") == 10.0


def test_volatile_gossip_loses_values_to_kill_but_not_to_partition():
    kw = dict(node_count=3, time_limit=6, rate=20, nemesis_interval=1, latency=10)
    assert run(mn.Gossip, "broadcast", nemesis=["partition"], **kw).valid is True
    r = run(mn.Gossip, "broadcast", nemesis=["kill"], **kw)
    assert r.valid is False and r.checks["set-full"].details["lost"]


def test_nemesis_and_options_are_checked():
    with pytest.raises(ValueError, match="unknown nemesis fault.*'bogus'"):
        m.test(mn.Echo, "echo", nemesis="partition,bogus")
    with pytest.raises(ValueError, match="unknown topology 'star'"):
        m.test(mn.Gossip, "broadcast", topology="star")
    with pytest.raises(ValueError, match="unknown option.*colour.*its options are: topology"):
        m.test(mn.Gossip, "broadcast", colour="red")
    with pytest.raises(ValueError, match="unknown workload 'gossip'"):
        m.test(mn.Gossip, "gossip")
    with pytest.raises(ValueError, match="latency_dist"):
        m.test(mn.Gossip, "broadcast", latency_dist="normal")
    with pytest.raises(ValueError, match="availability"):
        m.test(mn.Echo, "echo", availability="most")
    with pytest.raises(ValueError, match="node_count"):
        m.test(mn.Echo, "echo", node_count=0)
    with pytest.raises(ValueError, match="unknown service"):
        m.test(mn.Echo, "echo", services=["redis"])
    with pytest.raises(ValueError, match=r"test\(node\): give a labkit.Node class.*got 42"):
        m.test(42, "echo")
    with pytest.raises(labkit.ArgumentError, match=r"test\(node\): labkit.Program is the class; give a program"):
        m.test(labkit.Program, "echo")                 # was a TypeError from inside a node process
    with pytest.raises(ValueError, match=r"node 'n1': give a labkit.Node class.*got None"):
        m.test({"n0": mn.Echo, "n1": None}, "echo")


# -- workload pieces -------------------------------------------------------------------------------

def test_topologies():
    nodes = [f"n{i}" for i in range(25)]
    for name in bc.TOPOLOGIES:
        t = bc.topology(name, nodes)
        assert set(t) == set(nodes)
        assert all(b in t[a] for a in t for b in t[a]), f"{name} is not symmetric"
        assert all(a not in t[a] for a in t)
    grid = bc.topology("grid", nodes)
    assert max(map(len, grid.values())) == 4 and grid["n0"] == ["n5", "n1"]
    assert bc.topology("line", nodes)["n3"] == ["n2", "n4"]
    assert len(bc.topology("total", nodes)["n0"]) == 24
    tree = bc.topology("tree4", nodes)
    assert tree["n0"] == ["n1", "n2", "n3", "n4"] and tree["n1"][0] == "n0"


def test_acceptable_sums_are_maelstroms_ranges():
    assert acceptable_sums(10, []) == [(10, 10)]
    assert acceptable_sums(10, [3]) == [(10, 10), (13, 13)]
    assert acceptable_sums(0, [1, 1, -1]) == [(-1, 2)]


def test_a_mapping_names_each_node():
    r = run({"n0": mn.Gossip, "n1": mn.DurableGossip, "n2": mn.Gossip}, "broadcast", time_limit=4, rate=20,
            nemesis=["partition"], nemesis_interval=1)
    assert r.valid is True and r.opts["node_count"] == 3 and r.opts["runtime"] == "sim"
    # (set-full judges by the *last* read: with one silent node among two, the silent one may read
    # last, holding everything, so two silent nodes make the loss certain)
    broken = run({"n0": mn.Gossip, "n1": mn.NoGossip, "n2": mn.NoGossip}, "broadcast", time_limit=4, rate=20)
    assert broken.valid is False and broken.checks["set-full"].details["lost"]
    with pytest.raises(ValueError, match="names Maelstrom's nodes n0"):
        m.test({"a": mn.Echo}, "echo")
    with pytest.raises(ValueError, match="node_count=3 but the mapping names 1 nodes"):
        m.test({"n0": mn.Echo}, "echo", node_count=3)


def test_history_round_trips_through_jepsens_edn():
    r = run(mn.Gossip, "broadcast", node_count=3, time_limit=3, rate=20, nemesis=["partition"], nemesis_interval=1)
    h = r.history
    back = labkit.History.from_edn(h.to_edn())
    assert [(o.process, o.type, o.f, o.value) for o in back] == [(o.process, o.type, o.f, o.value) for o in h]
    assert ":f :broadcast" in h.to_edn() and ":f :read" in h.to_edn()


def test_result_summary_and_html():
    r = run(mn.Echo, "echo", node_count=1, time_limit=2, rate=10)
    s = str(r)
    assert s.startswith("maelstrom test -w echo: 1 nodes") and ":valid? True  exit code 0" in s
    assert "<table>" in r._repr_html_() and "exit code 0" in r._repr_html_()
    assert set(r.checks) >= {"workload", "echo", "availability", "latency", "net", "stats"}


def test_time_limit_must_be_positive_and_unknown_presets_are_argument_errors():
    with pytest.raises(labkit.ArgumentError, match=r"time_limit must be .* in \(0,"):
        m.test(mn.Echo, "echo", time_limit=0)
    with pytest.raises(labkit.ArgumentError) as e:
        m.run_preset("broadcst", mn.Gossip)
    assert isinstance(e.value, KeyError)             # as documented before: KeyError still catches it
    assert str(e.value).startswith("unknown preset 'broadcst'; choose from echo, unique-ids")   # not repr()'d
    with pytest.raises(labkit.ArgumentError, match=r"^seed must be a whole number, got 'x'$"):   # was "in [-inf, inf]"
        m.test(mn.Echo, "echo", seed="x")
    # a Program in the simulator: named as test()'s option, before any cluster is made
    echo = labkit.Program([sys.executable, "-c", "pass"])
    with pytest.raises(labkit.ArgumentError, match=r"test\(runtime='sim'\): a labkit.Program runs a real executable"):
        m.test(echo, "echo", runtime="sim")
    # skew and slow act through ctx: on programs alone they would be silent no-ops
    with pytest.raises(labkit.ArgumentError, match=r"nemesis \['skew'\]: skew and slow act through a labkit.Node's ctx"):
        m.test(echo, "echo", nemesis="partition,skew")


def test_availability_says_which_ops_it_counts():
    """The availability line names its groups: 'x% of the N invoked during a fault' (not 'x% of N outside')."""
    r = run(mn.DurableGossip, "broadcast", node_count=3, time_limit=6, rate=20, nemesis=["partition"],
            nemesis_interval=1, latency=10)
    d = r.checks["availability"].details
    inside, outside = d["during_faults"]["ops"], d["outside_faults"]["ops"]
    assert inside and outside
    summary = r.checks["availability"].summary
    assert f"of the {inside} invoked during a fault" in summary
    assert f"of the {outside} invoked with no fault active" in summary and "outside" not in summary
    # the summary counts faults, not the nemesis's heals (was "faults applied: 2n" for n partitions)
    cuts = [op for _, op in r.nemesis if op["op"] == "partition"]
    assert cuts and len(r.nemesis) > len(cuts)
    assert f"; faults injected: {len(cuts)} partition\n" in str(r)
    calm = run(mn.Echo, "echo", node_count=1, time_limit=2, rate=10)
    assert calm.checks["availability"].summary == f"100.0% of {calm.stats['ops']} ops ok"
    assert "; faults injected: none\n" in str(calm)
    mpo = r.msgs_per_op
    assert (f"{r.stats['net']['servers']['msg_count']} messages between nodes and services (clients' not counted), "
            f"{mpo:.2f} per op") == r.checks["net"].summary


def test_summary_says_why_ops_were_not_ok_and_what_fail_and_info_mean():
    r = run(Moody, "echo", node_count=1, time_limit=4, rate=10, timeout=300)
    reasons = {}
    for op in r.history:
        if op.type in ("fail", "info"):
            reasons[op.error] = reasons.get(op.error, 0) + 1
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
    s = str(r)
    assert "  ops not ok, by reason: " + "; ".join(f"{k} x {e}" for e, k in top) in s
    assert f"{r.stats['fail']} fail [certainly not done], {r.stats['info']} info [outcome unknown]" in s
    assert "ops not ok" not in str(run(mn.Echo, "echo", node_count=1, time_limit=2, rate=10))
