"""Bandwidth-limited links (labkit.runtime.network): a link sends one message at a time, each for
size / bandwidth, so a burst queues and leaves as a train -- in the model, the simulator and
real processes."""
from __future__ import annotations

import random

import pytest

import labkit
from labkit import ArgumentError
from labkit.faults import fault_spans
from labkit.message import encode
from labkit.runtime.network import Link, NetworkModel

try:                                   # tests/ as a package, or as a plain directory
    from .capnodes import Burst
except ImportError:
    from capnodes import Burst


@pytest.mark.parametrize("bw", [0, -5, float("nan"), float("inf"), True, "fast", 2e12])
def test_a_bad_bandwidth_is_refused(bw):
    with pytest.raises(ArgumentError, match=r"link bandwidth is bytes per second: give a number in \(0, 1e\+12\]"):
        Link(bandwidth=bw)
    net = NetworkModel(["a", "b"])
    with pytest.raises(ArgumentError, match="bandwidth"):
        net.set_link("a", "b", bandwidth=bw)
    assert net.rules == [] and not net.shaped        # a refused rule is not kept


def test_transmit_queues_messages_behind_each_other_per_directed_link():
    net = NetworkModel(["a", "b", "c"])
    assert not net.shaped and net.transmit("a", "b", 1000, 0.0) == 0.0
    net.set_link("a", "*", bandwidth=1_000_000)       # 1 MB/s: 1000 bytes take 1 ms
    assert net.shaped and net.link("a", "b").bandwidth == 1e6
    assert net.transmit("a", "b", 1000, 0.0) == pytest.approx(1.0)
    assert net.transmit("a", "b", 1000, 0.0) == pytest.approx(2.0)     # waits for the first
    assert net.transmit("a", "b", 500, 0.5) == pytest.approx(2.0)      # 2.0 - 0.5 waiting + 0.5 sending
    assert net.transmit("a", "c", 1000, 0.0) == pytest.approx(1.0)     # another link: its own queue
    assert net.transmit("b", "a", 1000, 0.0) == 0.0                    # no limit that way
    assert net.transmit("a", "b", 1000, 10.0) == pytest.approx(1.0)    # idle again by then
    assert net.transmit("client", "a", 1000, 0.0) == 0.0               # clients sit outside the model
    assert "bandwidth=1000000" in net.describe()
    net.clear_links()
    assert not net.shaped and net.transmit("a", "b", 1000, 20.0) == 0.0


def test_bandwidth_ships_to_node_processes_with_the_rest_of_the_model():
    net = NetworkModel(["a", "b"])
    net.set_link("a", "b", bandwidth=125_000, delay=3)
    other = NetworkModel(["a", "b"])
    other.load_state(net.state())
    assert other.shaped and other.link("a", "b") == Link(delay=3, bandwidth=125_000)


def test_route_is_unchanged_by_bandwidth():
    """Bandwidth adds to the delays ``route`` draws; it draws no random numbers itself."""
    plain, shaped = NetworkModel(["a", "b"]), NetworkModel(["a", "b"])
    plain.set_link("*", "*", delay=5, jitter=2, drop=0.1)
    shaped.set_link("*", "*", delay=5, jitter=2, drop=0.1, bandwidth=1000)
    r1, r2 = random.Random(1), random.Random(1)
    assert [plain.route("a", "b", r1) for _ in range(50)] == [shaped.route("a", "b", r2) for _ in range(50)]


def _train(c, src, dst):
    return [(e.t, e.get("body")["i"]) for e in c.journal.filter(kind="deliver", type="blob")
            if e.src == src and e.dst == dst]


def test_sim_a_burst_leaves_as_a_train_spaced_by_size_over_bandwidth():
    with labkit.Cluster(Burst, n=2, runtime="sim", seed=1) as c:
        c.set_link("n1", "n2", bandwidth=100_000, delay=5)      # 100 kB/s, then 5 ms on the wire
        c.request("n1", "burst", n=5, pad=1000, dst="n2")
        c.run_for(1)
        sends = c.journal.filter(kind="send", type="blob")
        d = sends[0].data
        size = len(encode(d["src"], d["dst"], d["type"], d["id"], d["re"], d["at"], d["body"]).encode())
        tx = size * 1000.0 / 100_000                              # ms per message: ~10 ms
        assert 10 < tx < 12
        t0 = sends[0].t
        train = _train(c, "n1", "n2")
        assert [i for _, i in train] == [0, 1, 2, 3, 4]          # first come, first served
        for k, (t, _) in enumerate(train):                       # wait, send, then 5 ms on the wire
            assert t == pytest.approx(t0 + labkit.runtime.sim.HOP_MS + 5 + (k + 1) * tx, abs=1e-6)
        links = c.journal.filter(kind="link")
        assert links[0].get("bandwidth") == 100_000
        assert any(s.kind == "link" and "bandwidth=100000" in s.detail for s in fault_spans(c.journal))


def test_sim_the_other_direction_and_other_links_are_not_held_up():
    with labkit.Cluster(Burst, n=3, runtime="sim", seed=2) as c:
        c.set_link("n1", "n2", bandwidth=10_000)                 # ~0.1 s per 1 kB message
        c.request("n1", "burst", n=3, pad=1000, dst="n2")
        c.request("n1", "burst", n=1, pad=1000, dst="n3")
        c.request("n2", "burst", n=1, pad=1000, dst="n1")
        c.run_for(1)
        to_n2 = _train(c, "n1", "n2")
        (t3, _), = _train(c, "n1", "n3")
        (t1, _), = _train(c, "n2", "n1")
        assert len(to_n2) == 3 and to_n2[0][0] > 100 and to_n2[2][0] > 300
        assert t3 < 5 and t1 < 5


@pytest.mark.processes
def test_processes_a_burst_is_spaced_by_size_over_bandwidth():
    """Lower bounds are exact (a message is never early); the upper bound is generous."""
    with labkit.Cluster(Burst, n=2, seed=3) as c:
        c.set_link("n1", "n2", bandwidth=50_000)                 # ~10 kB messages: ~0.2 s each
        c.request("n1", "burst", n=4, pad=10_000, dst="n2", timeout=5000)
        c.run_for(1.2)
        deadline = 40
        while len(_train(c, "n1", "n2")) < 4 and deadline:
            c.run_for(0.1)
            deadline -= 1
        train = _train(c, "n1", "n2")
        assert [i for _, i in train] == [0, 1, 2, 3]
        first_send = c.journal.filter(kind="send", type="blob")[0].t
        tx = 10_000 * 1000.0 / 50_000
        gaps = [b[0] - a[0] for a, b in zip(train, train[1:])]
        assert train[0][0] - first_send >= tx * 0.99 and all(g >= tx * 0.95 for g in gaps), (first_send, train)
        assert train[-1][0] - first_send < 4 * tx * 3, (first_send, train)
