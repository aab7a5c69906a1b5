"""labkit.systems.partitioning: every partitioner places each key on exactly one node, moves the
expected fraction of keys when a node comes or goes, and agrees across processes."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.systems.partitioning import (BoundedLoadRing, HashRing, JumpHash, ListPartitioner, ModN, RangePartitioner,
                                 Rendezvous, jump_hash, load, moved_fraction, placement, spread, stable_hash)

ROOT = Path(__file__).resolve().parent.parent
KEYS = [f"user{i}" for i in range(20_000)]
TEN = [f"n{i}" for i in range(1, 11)]


def test_stable_hash_is_fixed_64_bit_and_takes_str_bytes_int():
    h = stable_hash("user42")
    assert h == int.from_bytes(__import__("hashlib").blake2b(b"user42", digest_size=8).digest(), "big")
    assert 0 <= h < 2**64
    assert stable_hash(7) == stable_hash("7") == stable_hash(b"7")
    for bad in (1.5, None, ("a",), True):
        with pytest.raises(TypeError, match="str, bytes or int"):
            stable_hash(bad)


_CHILD = """
import json, sys
from labkit.systems.partitioning import HashRing, JumpHash, Rendezvous, ModN, stable_hash
nodes = [f"n{i}" for i in range(1, 8)]
keys = [f"key{i}" for i in range(500)]
out = {"stable": [stable_hash(k) for k in keys[:20]], "builtin": [hash(k) for k in keys[:20]]}
for cls in (HashRing, JumpHash, Rendezvous, ModN):
    p = cls(nodes)
    out[cls.__name__] = [p.owner(k) for k in keys]
print(json.dumps(out))
"""


def _child(hashseed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_two_processes_agree_on_placement_where_builtin_hash_does_not():
    a, b = _child("1"), _child("2")
    assert a["builtin"] != b["builtin"], "the trap: hash() of a str differs between processes"
    for name in ("stable", "HashRing", "JumpHash", "Rendezvous", "ModN"):
        assert a[name] == b[name], f"{name}: two processes placed keys differently"


def _moves(p, node_added):
    before = placement(p, KEYS)
    p.add(node_added)
    after = placement(p, KEYS)
    p.remove(node_added)
    back = placement(p, KEYS)
    return before, after, back


@pytest.mark.parametrize("make, lo, hi", [
    (lambda: ModN(TEN), 0.85, 0.95),                      # ideal N/(N+1) = 0.909
    (lambda: HashRing(TEN, vnodes=100), 0.05, 0.13),      # ideal 1/(N+1) = 0.0909
    (lambda: JumpHash(TEN), 0.08, 0.10),
    (lambda: Rendezvous(TEN), 0.08, 0.10),
])
def test_fraction_moved_when_an_eleventh_node_joins_and_leaves(make, lo, hi):
    p = make()
    before, after, back = _moves(p, "n11")
    moved = moved_fraction(before, after)
    assert lo <= moved <= hi, f"{type(p).__name__} moved {moved:.3f}"
    assert back == before, "removing the node again restores every key's owner"
    if not isinstance(p, ModN):   # consistent: keys move only to the new node
        assert all(a == b or b == "n11" for a, b in zip(before, after))


def test_every_key_has_exactly_one_owner_among_the_nodes():
    for p in (ModN(TEN), HashRing(TEN, 50), JumpHash(TEN), Rendezvous(TEN)):
        owners = placement(p, KEYS[:2000])
        assert set(owners) <= set(TEN)
        assert owners == placement(p, KEYS[:2000]), "placement is deterministic"


def test_ring_spread_falls_with_virtual_nodes():
    s = {v: spread(HashRing(TEN, vnodes=v).arcs())["std_over_mean"] for v in (1, 10, 100, 1000)}
    assert s[1] > s[10] > s[100] > s[1000]
    assert 0.3 < s[1] < 1.6 and s[100] < 0.2 and s[1000] < 0.06, s
    arcs = HashRing(TEN, vnodes=20).arcs()
    assert math.isclose(sum(arcs.values()), 1.0)
    counted = spread(load(placement(HashRing(TEN, vnodes=20), KEYS), TEN))["std_over_mean"]
    assert abs(counted - spread(arcs)["std_over_mean"]) < 0.05, "keys follow the arcs"


def test_ring_removes_any_node_and_only_its_keys_move():
    r = HashRing(TEN, vnodes=64)
    before = placement(r, KEYS)
    r.remove("n4")
    after = placement(r, KEYS)
    assert all(a == b for a, b in zip(before, after) if a != "n4")
    assert "n4" not in after


def test_jump_hash_moves_only_to_the_new_bucket_and_is_even():
    for n in (1, 2, 7, 20):
        for h in range(0, 2**64, 2**64 // 997):
            a, b = jump_hash(h, n), jump_hash(h, n + 1)
            assert a == b or b == n
    counts = load(placement(JumpHash(TEN), KEYS), TEN)
    assert spread(counts)["max_over_mean"] < 1.05
    with pytest.raises(ValueError, match="at least one bucket"):
        jump_hash(5, 0)


def test_jump_hash_refuses_to_remove_a_middle_bucket():
    j = JumpHash(TEN)
    with pytest.raises(ValueError, match="only remove its last bucket"):
        j.remove("n3")
    j.remove("n10")
    assert j.nodes == tuple(TEN[:-1])


def test_rendezvous_removal_moves_only_that_nodes_keys():
    r = Rendezvous(TEN)
    before = placement(r, KEYS)
    r.remove("n7")
    after = placement(r, KEYS)
    assert all(a == b for a, b in zip(before, after) if a != "n7")


def test_common_errors_name_the_problem():
    for p in (ModN(["a"]), HashRing(["a"]), JumpHash(["a"]), Rendezvous(["a"])):
        with pytest.raises(ValueError, match="already one of"):
            p.add("a")
        with pytest.raises(KeyError, match="no node 'b'"):
            p.remove("b")
        with pytest.raises(TypeError, match="non-empty str"):
            p.add("")
    for empty in (ModN(), HashRing(), JumpHash(), Rendezvous()):
        with pytest.raises(LookupError, match="no nodes"):
            empty.owner("k")
    with pytest.raises(ValueError, match="vnodes"):
        HashRing(["a"], vnodes=0)
    with pytest.raises(ValueError, match="equal|differ|same"):
        moved_fraction(["a"], ["a", "b"])


def test_range_partitioner_keeps_order_splits_and_merges():
    r = RangePartitioner(["f", "m", "t"], ["n1", "n2", "n3", "n4"])
    assert [r.owner(k) for k in ("apple", "f", "kiwi", "m", "zebra")] == ["n1", "n2", "n2", "n3", "n4"]
    r.add("n5", at="p")
    assert r.owner("o") == "n3" and r.owner("p") == "n5" and r.owner("s") == "n5"
    r.remove("n3")                                      # n3's range goes to the range below (n2)
    assert r.owner("m") == "n2" and r.splits == ["f", "p", "t"]
    r.remove("n1")                                      # the first range has nobody below: above
    assert r.owner("a") == "n2" and r.owners == ["n2", "n5", "n4"]
    with pytest.raises(TypeError, match="say where to split"):
        r.add("n6")
    with pytest.raises(ValueError, match="already a split point"):
        r.split("p")
    with pytest.raises(ValueError, match="give 2 owners"):
        RangePartitioner(["m"], ["n1"])
    with pytest.raises(ValueError, match="strictly increasing"):
        RangePartitioner(["m", "c"], ["a", "b", "c"])
    with pytest.raises(TypeError, match="one type"):
        r.owner(5)


def test_range_partitioner_sends_increasing_keys_to_the_last_range():
    r = RangePartitioner([f"2024-{m:02d}" for m in range(2, 13)], [f"n{i}" for i in range(1, 13)])
    writes = [f"2024-12-31T{h:02d}:{m:02d}" for h in range(24) for m in range(60)]
    assert set(placement(r, writes)) == {"n12"}


def test_list_partitioner_maps_values_and_refuses_unmapped_ones():
    p = ListPartitioner({"eu": "n1", "us": "n2"})
    assert p.owner("eu:alice") == "n1" and p.owner("us:bob") == "n2"
    with pytest.raises(KeyError, match="list 'ap'"):
        p.owner("ap:carol")
    p.assign("ap", "n3")
    assert p.owner("ap:carol") == "n3" and p.nodes == ("n1", "n2", "n3")
    with pytest.raises(ValueError, match="still holds"):
        p.remove("n3")
    q = ListPartitioner({"eu": "n1"}, default="n9", value_of=lambda k: k["region"] if isinstance(k, dict) else k)
    assert q.owner({"region": "eu"}) == "n1" and q.owner("mars") == "n9"


def test_bounded_load_caps_every_node_even_with_one_hot_key():
    b = BoundedLoadRing(TEN, vnodes=50, c=1.25)
    for i in range(20_000):
        b.assign("hot" if i % 2 else f"k{i}")
    total = sum(b.loads.values())
    assert total == 20_000
    assert max(b.loads.values()) <= math.ceil(1.25 * total / 10)
    ring = HashRing(TEN, 50)
    plain = load((ring.owner("hot" if i % 2 else f"k{i}") for i in range(20_000)), TEN)
    assert max(plain.values()) > 0.5 * total, "without the bound the hot key's node takes over half"
    hot = b.owner("hot")
    b.release(hot)
    assert b.loads[hot] == max(b.loads.values()) - 1 or b.loads[hot] < max(b.loads.values())
    with pytest.raises(ValueError, match="c must be"):
        BoundedLoadRing(TEN, c=1.0)
    b.remove("n1")
    assert "n1" not in b.loads
    with pytest.raises(ValueError, match="holds no load"):
        BoundedLoadRing(TEN).release("n1")


def test_bounded_load_keeps_first_choices_when_nothing_is_hot():
    b = BoundedLoadRing(TEN, vnodes=100, c=1.5)
    plain = HashRing(TEN, vnodes=100)
    same = sum(b.assign(k) == plain.owner(k) for k in KEYS[:5000])
    assert same / 5000 > 0.9


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), extra=st.integers(0, 3), vnodes=st.integers(1, 40))
def test_ring_add_then_remove_is_identity_and_consistent(n, extra, vnodes):
    nodes = [f"s{i}" for i in range(n)]
    r = HashRing(nodes, vnodes=vnodes)
    keys = KEYS[:300]
    before = placement(r, keys)
    new = [f"x{i}" for i in range(extra)]
    for x in new:
        r.add(x)
    mid = placement(r, keys)
    assert all(a == b or b in new for a, b in zip(before, mid))
    for x in new:
        r.remove(x)
    assert placement(r, keys) == before
