"""labkit.systems.versionvector, labkit.systems.merkle and labkit.systems.quorum: version-vector laws, Merkle diffs,
and the Dynamo-style store's quorums, repairs and sloppy quorum."""
from __future__ import annotations

import random

import labkit
import pytest
from hypothesis import given, settings, strategies as st
from labkit.systems.merkle import MerkleTree, diff, digest
from labkit.systems.quorum import QuorumKV, Ring, convergence_lag
from labkit.systems.versionvector import VersionVector, merged_context, reconcile

vvs = st.dictionaries(st.sampled_from(["n1", "n2", "n3", "n4"]), st.integers(0, 5)).map(VersionVector)


@given(vvs, vvs)
def test_merge_is_commutative(a, b):
    assert a.merge(b) == b.merge(a)


@given(vvs, vvs, vvs)
def test_merge_is_associative(a, b, c):
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(vvs)
def test_merge_is_idempotent(a):
    assert a.merge(a) == a


@given(vvs, vvs)
def test_merge_is_the_least_upper_bound(a, b):
    m = a.merge(b)
    assert a <= m and b <= m
    assert all(m[k] in (a[k], b[k]) for k in m)


@given(vvs, vvs)
def test_compare_is_consistent(a, b):
    c = a.compare(b)
    assert {"equal": "equal", "before": "after", "after": "before", "concurrent": "concurrent"}[c] == b.compare(a)
    assert (c == "concurrent") == a.concurrent(b)


@given(vvs, st.sampled_from(["n1", "n2", "n5"]))
def test_increment_dominates(a, node):
    assert a < a.increment(node)


@settings(max_examples=50)
@given(st.lists(st.tuples(vvs, st.integers()), max_size=6))
def test_reconcile_keeps_exactly_the_undominated_and_is_order_free(items):
    versions = [{"vv": vv.to_json(), "value": v, "ts": [i, "n1"]} for i, (vv, v) in enumerate(items)]
    kept = reconcile(versions)
    assert reconcile(list(reversed(versions))) == kept
    kept_vvs = [VersionVector(v["vv"]) for v in kept]
    for v in versions:
        assert any(VersionVector(v["vv"]) <= k for k in kept_vvs)
    assert all(not (a < b) for a in kept_vvs for b in kept_vvs)
    assert reconcile(kept + versions) == kept


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="counts"):
        VersionVector({"n1": -1})


def test_lww_keeps_the_larger_timestamp_and_drops_the_other():
    a = {"vv": {"n1": 1}, "value": "a", "ts": [10.0, "n1"]}
    b = {"vv": {"n2": 1}, "value": "b", "ts": [5.0, "n2"]}
    assert reconcile([a, b], lww=True) == [a]
    assert [v["value"] for v in reconcile([a, b])] == ["a", "b"]
    assert merged_context([a, b]) == VersionVector({"n1": 1, "n2": 1})


def test_merkle_diff_finds_exactly_the_changed_keys_with_few_comparisons():
    rng = random.Random(1)
    a = {f"k{i}": rng.randrange(10**9) for i in range(4096)}
    b = dict(a)
    changed = sorted(rng.sample(sorted(a), 5))
    for k in changed:
        b[k] += 1
    b["only-b"] = 1
    keys, comparisons = diff(MerkleTree(a, 12), MerkleTree(b, 12))
    assert sorted(keys) == sorted(changed + ["only-b"])
    assert comparisons <= 2 * 6 * 12 + 1, comparisons
    same, one = diff(MerkleTree(a, 12), MerkleTree(dict(a), 12))
    assert same == [] and one == 1
    with pytest.raises(ValueError, match="depth"):
        MerkleTree(a, 30)
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})


def test_ring_preference_lists_are_stable_and_balanced():
    ring = Ring([f"n{i}" for i in range(1, 6)])
    assert ring.preference_list("x") == Ring([f"n{i}" for i in range(5, 0, -1)]).preference_list("x")
    firsts = [ring.preference_list(f"key{i}")[0] for i in range(2000)]
    assert all(200 < firsts.count(n) < 700 for n in ring.nodes), {n: firsts.count(n) for n in ring.nodes}
    assert sorted(ring.preference_list("x")) == list(ring.nodes)


def store(**flags):
    return type("Store", (QuorumKV,), flags)


def staleness(cls, seed, trials=40):
    """Write then, at once, read through another random node; count reads that miss the write."""
    stale = 0
    with labkit.Cluster(cls, n=3, runtime="sim", seed=seed) as c:
        c.set_link("*", "*", delay=1, distribution="exponential")
        rng = random.Random(seed)
        for i in range(trials):
            assert c.request(rng.choice(c.ids), "write", key="k", value=i).type == "write_ok"
            got = c.request(rng.choice(c.ids), "read", key="k").body.get("values")
            stale += i not in (got or [])
            c.run_for(0.05)
    return stale


def test_r_plus_w_over_n_never_reads_stale_without_failures():
    assert sum(staleness(store(R=2, W=2), s) for s in range(5)) == 0


def test_r_plus_w_at_most_n_reads_stale():
    assert sum(staleness(store(R=1, W=1), s) for s in range(5)) > 10


def partition_writes(sloppy, seed=1):
    with labkit.Cluster(store(SLOPPY=sloppy, ANTI_ENTROPY_MS=(100, 200)), n=5, runtime="sim", seed=seed) as c:
        c.set_link("*", "*", delay=2)
        key = next(f"k{i}" for i in range(100) if Ring(c.ids).preference_list(f"k{i}")[:3] == sorted(
            Ring(c.ids).preference_list(f"k{i}")[:3]))
        home = Ring(c.ids).preference_list(key)[:3]
        rest = [n for n in c.ids if n not in home]
        coordinator = home[0]
        c.partition([coordinator, *rest], home[1:])
        answers = [c.request(coordinator, "write", key=key, value=i).type for i in range(5)]
        t_heal = c.now
        c.heal()
        c.run_for(1.5)
        reads = {n: c.request(n, "read", key=key).body.get("value") for n in home}
        return answers, reads, convergence_lag(c.journal, nodes=list(c.ids), since=t_heal), c


def test_a_strict_quorum_refuses_writes_without_w_home_replicas():
    answers, _, _, _ = partition_writes(sloppy=False)
    assert "write_ok" not in answers, answers


def test_a_sloppy_quorum_stays_writable_and_hands_off_after_the_heal():
    answers, reads, lag, c = partition_writes(sloppy=True)
    assert answers.count("write_ok") >= 4, answers
    assert set(reads.values()) == {4}, reads
    assert lag is not None and lag < 1000, lag
    handoffs = c.journal.filter(kind="deliver", type="handoff")
    assert handoffs, "hints were handed off to their home replicas"


def test_read_repair_fixes_the_stale_replica_it_saw():
    with labkit.Cluster(store(R=3, W=1), n=3, runtime="sim", seed=2) as c:
        c.set_link("*", "*", delay=1)
        c.cut("n1", "n3")
        c.request("n1", "write", key="k", value="new")
        c.run_for(0.1)
        c.heal()
        before = c.journal.filter(kind="note", node="n3", where=lambda e: e["what"] == "kv")
        c.request("n2", "read", key="k")
        c.run_for(0.05)
        after = c.journal.filter(kind="note", node="n3", where=lambda e: e["what"] == "kv")
        assert not before and len(after) == 1, f"n3 should get the write by read repair only: {before}, {after}"
        assert c.request("n3", "read", key="k").body["value"] == "new"


def test_concurrent_writes_keep_siblings_and_a_write_with_the_context_resolves_them():
    with labkit.Cluster(store(R=3, W=3, N=3), n=3, runtime="sim", seed=4) as c:
        c.set_link("*", "*", delay=1)
        c.request("n1", "write", key="cart", value=["milk"])
        one = c.request("n1", "read", key="cart").body          # both writers start from this context
        c.heal()
        c.request("n1", "write", key="cart", value=["milk", "eggs"], context=one["context"])
        c.request("n2", "write", key="cart", value=["milk", "tea"], context=one["context"])
        got = c.request("n3", "read", key="cart").body
        assert sorted(map(tuple, got["values"])) == [("milk", "eggs"), ("milk", "tea")], got
        merged = sorted({x for v in got["values"] for x in v})
        c.request("n3", "write", key="cart", value=merged, context=got["context"])
        assert c.request("n1", "read", key="cart").body["values"] == [merged]


def test_merkle_anti_entropy_converges_keys_nobody_reads():
    with labkit.Cluster(store(R=1, W=1, READ_REPAIR=False, ANTI_ENTROPY_MS=(50, 100)), n=3, runtime="sim",
                        seed=5) as c:
        c.set_link("*", "*", delay=1)
        c.isolate("n3")
        for i in range(30):
            c.request("n1", "write", key=f"k{i}", value=i)
        t = c.now
        c.heal()
        c.run_for(2.0)
        assert convergence_lag(c.journal, nodes=list(c.ids), since=t) is not None
        assert sum(c.counters(n)["counters"].get("merkle_comparisons", 0) for n in c.ids) > 0
