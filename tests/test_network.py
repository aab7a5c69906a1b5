"""NetworkModel and Link: partitions, cuts, link rules, delay distributions, validation.

Statistical checks draw from seeded generators and use 5-sigma bounds, so they are exact
functions of the seed (deterministic) and would catch a wrong rate by a wide margin.
"""
from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import Link, NetworkModel

NODES = ("n1", "n2", "n3", "n4", "n5")


def model(nodes=NODES) -> NetworkModel:
    return NetworkModel(nodes)


def within_5_sigma(count: int, n: int, p: float) -> bool:
    sigma = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 5 * sigma


# -- partitions and cuts -------------------------------------------------------------------

def test_healthy_model_blocks_nothing_and_routes_instantly():
    m = model()
    rng = random.Random(0)
    for a in NODES:
        for b in NODES:
            assert m.blocked(a, b) is None
            assert m.route(a, b, rng) == ([0.0], None)
    assert m.describe() == "healthy"


def test_partition_groups_and_unnamed_nodes_form_one_more_group():
    m = model()
    groups = m.partition(["n1", "n2"], ["n3"])
    assert groups == [["n1", "n2"], ["n3"], ["n4", "n5"]]
    assert m.blocked("n1", "n2") is None
    assert m.blocked("n4", "n5") is None
    for a, b in [("n1", "n3"), ("n3", "n1"), ("n1", "n4"), ("n3", "n5"), ("n5", "n2")]:
        assert m.blocked(a, b) == "partition"
    rng = random.Random(0)
    assert m.route("n1", "n4", rng) == ([], "partition")
    assert m.route("n4", "n5", rng) == ([0.0], None)


def test_partition_accepts_a_single_name_as_a_group():
    m = model()
    assert m.partition("n3") == [["n3"], ["n1", "n2", "n4", "n5"]]
    assert m.blocked("n3", "n1") == "partition"


def test_a_new_partition_replaces_the_old_one():
    m = model()
    m.partition(["n1"])
    m.partition(["n5"])
    assert m.blocked("n1", "n2") is None
    assert m.blocked("n5", "n1") == "partition"


def test_isolate_is_partition_of_one():
    m = model()
    m.partition(["n2"])
    for other in ("n1", "n3", "n4", "n5"):
        assert m.blocked("n2", other) == "partition"
        assert m.blocked(other, "n2") == "partition"
    assert m.blocked("n1", "n3") is None


def test_partition_validation():
    m = model()
    with pytest.raises(ValueError, match="at least one group"):
        m.partition()
    with pytest.raises(ValueError, match="'n1'.*two groups"):
        m.partition(["n1", "n2"], ["n1"])
    with pytest.raises(KeyError, match="unknown node 'n9'"):
        m.partition(["n1"], ["n9"])
    assert m.groups == {}  # a rejected partition changes nothing


def test_two_way_cut():
    m = model()
    m.cut("n1", "n2")
    assert m.blocked("n1", "n2") == "cut"
    assert m.blocked("n2", "n1") == "cut"
    assert m.blocked("n1", "n3") is None
    assert m.route("n2", "n1", random.Random(0)) == ([], "cut")


def test_one_way_cut_blocks_only_one_direction():
    m = model()
    m.cut("n1", "n2", one_way=True)
    assert m.blocked("n1", "n2") == "cut"
    assert m.blocked("n2", "n1") is None
    assert m.route("n2", "n1", random.Random(0)) == ([0.0], None)


def test_cut_with_wildcard():
    m = model()
    m.cut("*", "n3", one_way=True)
    for other in ("n1", "n2", "n4", "n5"):
        assert m.blocked(other, "n3") == "cut"
        assert m.blocked("n3", other) is None
    assert m.blocked("n3", "n3") is None


def test_cut_unknown_node():
    m = model()
    with pytest.raises(KeyError, match="unknown node 'x1'"):
        m.cut("n1", "x1")
    assert m.cuts == set()


def test_heal_removes_partitions_and_cuts_but_keeps_link_settings():
    m = model()
    m.partition(["n1"])
    m.cut("n2", "n3")
    m.set_link("*", "*", delay=10)
    m.heal()
    assert all(m.blocked(a, b) is None for a in NODES for b in NODES)
    assert m.link("n1", "n2").delay == 10
    assert m.route("n1", "n2", random.Random(0)) == ([10.0], None)


# -- link rules ----------------------------------------------------------------------------

def test_set_link_applies_to_one_directed_link():
    m = model()
    got = m.set_link("n1", "n2", delay=30)
    assert got == Link(delay=30)
    assert m.link("n1", "n2").delay == 30
    assert m.link("n2", "n1").perfect
    assert m.link("n1", "n3").perfect


def test_wildcards_match_sources_and_destinations():
    m = model()
    m.set_link("*", "n3", drop=0.5)
    m.set_link("n4", "*", delay=7)
    assert m.link("n1", "n3").drop == 0.5 and m.link("n5", "n3").drop == 0.5
    assert m.link("n3", "n1").perfect
    assert m.link("n4", "n1").delay == 7 and m.link("n4", "n1").drop == 0
    assert m.link("n4", "n3") == Link(delay=7, drop=0.5)  # both rules apply


def test_later_rules_override_only_the_fields_they_set():
    m = model()
    m.set_link("*", "*", delay=50, drop=0.1)
    m.set_link("n1", "n2", delay=5)
    assert m.link("n1", "n2") == Link(delay=5, drop=0.1)
    assert m.link("n2", "n1") == Link(delay=50, drop=0.1)
    m.set_link("*", "*", drop=0.0)
    assert m.link("n1", "n2") == Link(delay=5, drop=0.0)
    assert m.link("n2", "n1") == Link(delay=50, drop=0.0)


def test_set_link_returns_the_resulting_settings():
    m = model()
    m.set_link("*", "*", delay=50)
    assert m.set_link("n1", "n2", drop=0.25) == Link(delay=50, drop=0.25)


def test_clear_links_restores_perfect_links_but_keeps_partitions():
    m = model()
    m.partition(["n1"])
    m.set_link("*", "*", delay=10, drop=0.5)
    m.clear_links()
    assert m.link("n2", "n3").perfect
    assert m.route("n2", "n3", random.Random(0)) == ([0.0], None)
    assert m.blocked("n1", "n2") == "partition"


def test_jitter_makes_the_default_distribution_uniform():
    assert Link(delay=10, jitter=2).distribution == "uniform"
    assert Link(delay=10).distribution == "constant"
    assert Link(delay=10, distribution="exponential").distribution == "exponential"


def test_describe_mentions_each_fault():
    m = model()
    m.partition(["n1"])
    m.cut("n2", "n3", one_way=True)
    m.set_link("n4", "n5", delay=3)
    text = m.describe()
    assert "partition n1 | n2,n3,n4,n5" in text
    assert "cut n2->n3" in text and "n3->n2" not in text
    assert "link n4->n5 delay=3" in text


# -- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["drop", "duplicate", "reorder"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "0.5", True, float("nan")])
def test_probabilities_must_be_in_0_1(field, value):
    m = model()
    with pytest.raises(ValueError, match=f"{field}.*probability"):
        m.set_link("*", "*", **{field: value})
    assert m.rules == []  # nothing half-applied


@pytest.mark.parametrize("field", ["delay", "jitter", "reorder_ms"])
@pytest.mark.parametrize("value", [-1, float("inf"), "5", None])
def test_times_must_be_non_negative_numbers(field, value):
    m = model()
    with pytest.raises(ValueError, match=f"{field} must be a number of ms >= 0"):
        m.set_link("n1", "n2", **{field: value})
    assert m.rules == []


def test_unknown_distribution():
    with pytest.raises(ValueError, match="distribution must be one of.*'pareto'"):
        model().set_link("*", "*", distribution="pareto")
    with pytest.raises(ValueError, match="distribution"):
        Link(distribution="normal")


def test_unknown_setting_names_it_and_lists_the_known_ones():
    m = model()
    with pytest.raises(TypeError) as ei:
        m.set_link("*", "*", latency=5)
    assert "'latency'" in str(ei.value) and "delay" in str(ei.value)
    assert m.rules == []


def test_set_link_unknown_node():
    m = model()
    with pytest.raises(KeyError, match="unknown node 'n7'"):
        m.set_link("n7", "*", delay=1)
    with pytest.raises(KeyError, match="unknown node 'n7'"):
        m.set_link("*", "n7", delay=1)
    assert m.rules == []


# -- delay distributions and rates ---------------------------------------------------------

def test_constant_delay_is_exact():
    lk = Link(delay=42.5)
    rng = random.Random(1)
    assert {lk.sample_delay(rng) for _ in range(1000)} == {42.5}
    m = model()
    m.set_link("n1", "n2", delay=42.5)
    assert all(m.route("n1", "n2", rng) == ([42.5], None) for _ in range(200))


def test_uniform_delay_stays_within_jitter_and_covers_the_range():
    lk = Link(delay=100, jitter=20)
    rng = random.Random(2)
    xs = [lk.sample_delay(rng) for _ in range(20000)]
    assert min(xs) >= 80 and max(xs) <= 120
    assert min(xs) < 81 and max(xs) > 119
    mean = sum(xs) / len(xs)
    sd_of_mean = (40 / math.sqrt(12)) / math.sqrt(len(xs))
    assert abs(mean - 100) < 5 * sd_of_mean


def test_uniform_delay_never_negative():
    lk = Link(delay=5, jitter=20)
    rng = random.Random(3)
    xs = [lk.sample_delay(rng) for _ in range(5000)]
    assert min(xs) == 0.0 and max(xs) <= 25


def test_exponential_delay_has_mean_close_to_delay():
    lk = Link(delay=30, distribution="exponential")
    rng = random.Random(4)
    n = 20000
    xs = [lk.sample_delay(rng) for _ in range(n)]
    assert min(xs) >= 0
    mean = sum(xs) / n
    assert abs(mean - 30) < 5 * 30 / math.sqrt(n)
    # a long tail: some samples far above the mean, unlike uniform
    assert max(xs) > 4 * 30


def test_exponential_with_zero_delay_is_zero():
    assert Link(delay=0, distribution="exponential").sample_delay(random.Random(0)) == 0.0


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_drop_rate_is_within_statistical_bounds(p):
    m = model()
    m.set_link("n1", "n2", drop=p)
    rng = random.Random(5)
    n = 20000
    dropped = 0
    for _ in range(n):
        delays, rule = m.route("n1", "n2", rng)
        if rule is not None:
            assert rule == "drop" and delays == []
            dropped += 1
        else:
            assert delays == [0.0]
    assert within_5_sigma(dropped, n, p), dropped


def test_drop_one_drops_everything_and_zero_nothing():
    m = model()
    m.set_link("n1", "n2", drop=1.0)
    m.set_link("n2", "n1", drop=0.0, delay=1)
    rng = random.Random(6)
    assert all(m.route("n1", "n2", rng) == ([], "drop") for _ in range(500))
    assert all(m.route("n2", "n1", rng) == ([1.0], None) for _ in range(500))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_duplicate_rate_is_within_statistical_bounds(p):
    m = model()
    m.set_link("*", "*", duplicate=p, delay=10, jitter=5)
    rng = random.Random(7)
    n = 20000
    dups = 0
    for _ in range(n):
        delays, rule = m.route("n3", "n4", rng)
        assert rule is None and len(delays) in (1, 2)
        assert all(5 <= d <= 15 for d in delays)
        dups += len(delays) == 2
    assert within_5_sigma(dups, n, p), dups


def test_reorder_holds_back_a_fraction_by_up_to_reorder_ms():
    lk = Link(delay=10, reorder=0.25, reorder_ms=200)
    rng = random.Random(8)
    n = 20000
    xs = [lk.sample_delay(rng) for _ in range(n)]
    held = [x for x in xs if x > 10]
    assert all(10 <= x <= 210 for x in xs)
    assert within_5_sigma(len(held), n, 0.25)


def test_route_is_deterministic_for_a_seed():
    def run(seed):
        m = model()
        m.set_link("*", "*", delay=20, jitter=10, drop=0.2, duplicate=0.2)
        rng = random.Random(seed)
        return [m.route("n1", "n2", rng) for _ in range(200)]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_messages_from_outside_the_model_are_never_faulted():
    m = model()
    m.partition(["n1"])
    m.set_link("*", "*", drop=1.0)
    assert m.route("client", "n1", random.Random(0)) == ([0.0], None)


# -- properties ----------------------------------------------------------------------------

node_names = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), min_size=2, max_size=7,
                      unique=True)


@st.composite
def partitioned(draw):
    nodes = draw(node_names)
    labels = draw(st.lists(st.integers(0, 3), min_size=len(nodes), max_size=len(nodes)))
    named = draw(st.lists(st.booleans(), min_size=len(nodes), max_size=len(nodes)))
    groups: dict[int, list[str]] = {}
    for n, lab, keep in zip(nodes, labels, named):
        if keep:
            groups.setdefault(lab, []).append(n)
    if not groups:
        groups[0] = [nodes[0]]
    return nodes, [g for _, g in sorted(groups.items())]


@given(partitioned())
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
def test_partition_blocked_is_symmetric_and_false_within_a_group(case):
    nodes, groups = case
    m = NetworkModel(nodes)
    out = m.partition(*groups)
    # every node lands in exactly one group; unnamed ones in one extra group
    flat = [n for g in out for n in g]
    assert sorted(flat) == sorted(nodes)
    unnamed = [n for n in nodes if not any(n in g for g in groups)]
    assert out[: len(groups)] == groups
    assert out[len(groups):] == ([unnamed] if unnamed else [])
    group_of = {n: i for i, g in enumerate(out) for n in g}
    for a in nodes:
        for b in nodes:
            assert (m.blocked(a, b) is None) == (m.blocked(b, a) is None)
            if group_of[a] == group_of[b]:
                assert m.blocked(a, b) is None
            else:
                assert m.blocked(a, b) == "partition"


link_settings = st.fixed_dictionaries({}, optional={
    "delay": st.floats(0, 100),
    "jitter": st.floats(0, 50),
    "distribution": st.sampled_from(["constant", "uniform", "exponential"]),
    "drop": st.floats(0, 1),
    "duplicate": st.floats(0, 1),
    "reorder": st.floats(0, 1),
    "reorder_ms": st.floats(0, 300),
})
endpoint = st.sampled_from(["*", "n1", "n2", "n3"])


@st.composite
def faulty_models(draw):
    m = NetworkModel(["n1", "n2", "n3"])
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["link", "cut", "partition", "heal", "clear"]))
        if action == "link":
            before = list(m.rules)
            try:
                m.set_link(draw(endpoint), draw(endpoint), **draw(link_settings))
            except ValueError:  # a rejected combination (e.g. constant + jitter) changes nothing
                assert m.rules == before
        elif action == "cut":
            m.cut(draw(endpoint), draw(endpoint), one_way=draw(st.booleans()))
        elif action == "partition":
            m.partition(draw(st.lists(st.sampled_from(["n1", "n2", "n3"]), min_size=1, unique=True)))
        elif action == "heal":
            m.heal()
        else:
            m.clear_links()
    return m


@given(faulty_models(), st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
def test_route_never_returns_both_delays_and_a_rule(m, seed):
    rng = random.Random(seed)
    for a in m.nodes:
        for b in m.nodes:
            for _ in range(5):
                delays, rule = m.route(a, b, rng)
                if rule is None:
                    assert 1 <= len(delays) <= 2
                    assert all(d >= 0 and math.isfinite(d) for d in delays)
                else:
                    assert delays == []
                    assert rule in ("partition", "cut", "drop")
                    if rule != "drop":
                        assert m.blocked(a, b) == rule


@given(faulty_models())
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
def test_state_round_trips_through_json(m):
    wire = json.dumps(m.state())
    m2 = NetworkModel(m.nodes)
    m2.load_state(json.loads(wire))
    assert json.dumps(m2.state()) == wire
    for a in m.nodes:
        for b in m.nodes:
            assert m2.blocked(a, b) == m.blocked(a, b)
            assert m2.link(a, b) == m.link(a, b)
    assert m2.describe() == m.describe()
    r1, r2 = random.Random(3), random.Random(3)
    assert [m.route("n1", "n2", r1) for _ in range(20)] == [m2.route("n1", "n2", r2) for _ in range(20)]


def test_state_is_a_snapshot_not_a_live_view():
    # ``state()`` ships the model to node processes; a snapshot taken before a change must
    # not silently pick the change up.
    m = model()
    m.set_link("*", "*", delay=5)
    snap = m.state()
    before = json.dumps(snap)
    m.set_link("n1", "n2", drop=1.0)
    m.cut("n1", "n3")
    assert json.dumps(snap) == before


def test_uncut_restores_exactly_what_cut_took():
    m = NetworkModel(["n1", "n2", "n3"])
    m.cut("n1", "n2")
    m.cut("n1", "n3", one_way=True)
    m.uncut("n1", "n2", one_way=True)          # only n1 -> n2 comes back
    assert m.blocked("n1", "n2") is None and m.blocked("n2", "n1") == "cut"
    m.uncut("n1", "n2")
    assert m.blocked("n2", "n1") is None
    assert m.blocked("n1", "n3") == "cut"       # untouched
    m.partition(["n1"])
    m.uncut("n1", "n3")                          # uncut does not heal a partition
    assert m.blocked("n1", "n3") == "partition"
