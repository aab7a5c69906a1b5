"""The simulator runtime, through ``labkit.Cluster(..., runtime="sim")``.

Everything here is virtual time and seeded randomness: no processes, no sleeps, and one
seed gives one journal.
"""
from __future__ import annotations

import math

import pytest

import labkit
from labkit.runtime.sim import HOP_MS as HOP
from labkit import ClusterClosed, MessageError, NodeCrashed, RequestTimeout, UnknownNode


# -- nodes ---------------------------------------------------------------------------------

class Pinger(labkit.Node):
    """Broadcasts a ping on a jittered timer, answers pings and client reads."""

    def on_start(self, ctx):
        ctx.set_timer("tick", between=(50, 100))

    def on_timer(self, ctx, name):
        ctx.broadcast("ping", n=ctx.rng.randrange(1000))
        ctx.set_timer("tick", between=(50, 100))

    def on_message(self, ctx, msg):
        if msg.type == "ping":
            ctx.reply(msg, type="pong")
        elif msg.type == "read":
            ctx.reply(msg, now=ctx.now, id=ctx.id, incarnation=ctx.incarnation)


class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        ctx.reply(msg, type="echo_ok", echo=msg.body.get("echo"))


class Silent(labkit.Node):
    def on_message(self, ctx, msg):
        pass


class Fragile(labkit.Node):
    """Echoes, but crashes on a 'boom' request."""

    def on_message(self, ctx, msg):
        if msg.type == "boom":
            raise ZeroDivisionError("boom requested")
        ctx.reply(msg, type="echo_ok", echo=msg.body.get("echo"))


class Counter(labkit.Node):
    """Counts increments both in a field (volatile) and in storage (durable)."""

    def __init__(self):
        self.volatile = 0

    def on_message(self, ctx, msg):
        if msg.type == "inc":
            self.volatile += 1
            ctx.storage["durable"] = ctx.storage.get("durable", 0) + 1
            ctx.count("incs")
            ctx.report(last=msg.src, volatile=self.volatile)
        ctx.reply(msg, volatile=self.volatile, durable=ctx.storage.get("durable", 0),
                  incarnation=ctx.incarnation)


class Sender(labkit.Node):
    """On a 'send' request from a client, sends ``count`` messages to ``to``; counts what it gets."""

    def __init__(self):
        self.got = []

    def on_message(self, ctx, msg):
        if msg.type == "send":
            for i in range(msg.body["count"]):
                ctx.send(msg.body["to"], "data", i=i)
            ctx.reply(msg)
        elif msg.type == "data":
            self.got.append(msg.body["i"])
        elif msg.type == "got":
            ctx.reply(msg, got=self.got)


def sim(node_cls=Pinger, n=3, seed=1, **kw):
    return labkit.Cluster(node_cls, n=n, runtime="sim", seed=seed, **kw)


@pytest.fixture
def cluster(request):
    made = []

    def make(*a, **kw):
        c = sim(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def delivered(journal, src, dst, since=None, until=None):
    return [e for e in journal.filter(kind="deliver", since=since, until=until) if e.src == src and e.dst == dst]


def dropped(journal, src=None, dst=None, rule=None, since=None):
    return [e for e in journal.filter(kind="drop", since=since)
            if (src is None or e.src == src) and (dst is None or e.dst == dst)
            and (rule is None or e.get("rule") == rule)]


def within_5_sigma(count, n, p):
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


# -- determinism ---------------------------------------------------------------------------

def _busy_run(seed):
    with sim(Pinger, n=4, seed=seed) as c:
        c.set_link("*", "*", delay=20, jitter=15, drop=0.1, duplicate=0.05, reorder=0.1)
        c.run_for(1.0)
        c.partition(["n1", "n2"])
        c.run_for(0.5)
        c.heal()
        c.kill("n3")
        c.run_for(0.5)
        c.restart("n3")
        c.request("n2", "read")
        c.run_for(1.0)
    return c.journal.to_jsonl()


def test_same_seed_gives_a_byte_identical_journal():
    a, b = _busy_run(5), _busy_run(5)
    assert len(a.splitlines()) > 500
    assert a == b


def test_different_seeds_give_different_journals():
    assert _busy_run(5) != _busy_run(6)


def test_timer_jitter_depends_on_the_seed(cluster):
    def timer_delays(seed):
        c = cluster(Pinger, n=3, seed=seed)
        c.run_for(1.0)
        return [e.get("after") for e in c.journal.filter(kind="timer_set")]

    a, b = timer_delays(1), timer_delays(2)
    assert len(a) > 20 and all(50 <= x <= 100 for x in a + b)
    assert a != b
    assert timer_delays(1) == a


class Ticker(labkit.Node):
    """Sends to n3 every 10 ms exactly (no timer jitter)."""

    def on_start(self, ctx):
        if ctx.id != "n3":
            ctx.set_timer("tick", after=10)

    def on_timer(self, ctx, name):
        ctx.send("n3", "tick")
        ctx.set_timer("tick", after=10)


def test_delivery_order_under_delay_jitter_depends_on_the_seed(cluster):
    def order(seed):
        c = cluster(Ticker, n=3, seed=seed)
        c.set_link("*", "*", delay=30, jitter=20)
        c.run_for(1.0)
        return [e.src for e in c.journal.filter(kind="deliver", node="n3")]

    a, b = order(1), order(2)
    assert len(a) > 100 and set(a) == {"n1", "n2"}
    assert a != b
    assert order(1) == a


# -- virtual time --------------------------------------------------------------------------

def test_run_for_advances_virtual_time(cluster):
    c = cluster(Pinger)
    assert c.now == 0.0
    c.run_for(1.5)
    assert c.now == 1500.0
    c.run_for(0)
    assert c.now == 1500.0
    c.run_for(0.25)
    assert c.now == 1750.0
    fires = c.journal.filter(kind="timer_fire")
    assert fires.events and max(e.t for e in fires) <= 1750.0
    # each node ticks every 50-100 ms: between 17 and 35 ticks in 1.75 s
    for n in c.ids:
        assert 17 <= len(fires.filter(node=n)) <= 35


def test_sixty_virtual_seconds(cluster):
    # how fast this runs is measured in benchmarks/sim_speed.py, not asserted here
    c = cluster(Pinger, n=3)
    c.run_for(60)
    assert c.now == 60_000.0
    fires = len(c.journal.filter(kind="timer_fire"))
    assert 3 * 600 <= fires <= 3 * 1200


def test_run_for_rejects_negative_time(cluster):
    c = cluster(Pinger)
    with pytest.raises(ValueError, match="run_for"):
        c.run_for(-1)


# -- requests ------------------------------------------------------------------------------

def test_request_returns_the_reply_message(cluster):
    c = cluster(Echo)
    c.run_for(0.1)
    reply = c.request("n2", "echo", echo={"x": [1, 2]})
    assert isinstance(reply, labkit.Message)
    assert (reply.src, reply.dst, reply.type, reply.body) == ("n2", "client", "echo_ok", {"echo": {"x": [1, 2]}})
    sends = c.journal.filter(kind="send", node="client")
    assert len(sends) == 1 and reply.in_reply_to == sends.events[0].id
    r2 = c.request("n1", "echo", as_client="c7", echo=1)
    assert r2.dst == "c7" and r2.body == {"echo": 1}


def test_request_to_a_node_that_never_replies_times_out(cluster):
    c = cluster(Silent)
    t0 = c.now
    with pytest.raises(RequestTimeout) as ei:
        c.request("n1", "hello", timeout=250)
    assert c.now == t0 + 250
    assert "n1" in str(ei.value) and "250" in str(ei.value)
    # the cluster is still usable
    c.run_for(0.1)


def test_request_to_a_crashing_handler_raises_node_crashed(cluster):
    c = cluster(Fragile, n=3, seed=9)
    with pytest.raises(NodeCrashed) as ei:
        c.request("n2", "boom")
    assert "n2" in str(ei.value) and "boom requested" in str(ei.value)
    crashes = c.journal.filter(kind="crash").events
    assert len(crashes) == 1
    ev = crashes[0]
    assert ev.node == "n2"
    assert ev.get("seed") == 9
    assert "ZeroDivisionError: boom requested" in ev.get("traceback")
    assert "Traceback" in ev.get("traceback")
    assert ev.id == c.journal.filter(kind="send", node="client").events[0].id
    assert c.crashes == crashes
    assert c.status()["n2"].state == "crashed"
    # the rest of the cluster goes on
    assert c.status()["n1"].state == "up" and c.status()["n3"].state == "up"
    assert c.request("n1", "echo", echo=3).body == {"echo": 3}
    assert c.request("n3", "echo", echo=4).body == {"echo": 4}
    t = c.now
    with pytest.raises(NodeCrashed, match="n2 is crashed"):   # known to be crashed: fails at once
        c.request("n2", "echo", timeout=100)
    assert c.now == t
    c.restart("n2")
    assert c.request("n2", "echo", echo=5).body == {"echo": 5}
    assert c.status()["n2"].incarnation == 2


def test_crash_is_reported_with_node_message_seed_and_traceback(capsys):
    with labkit.Cluster(Fragile, n=2, runtime="sim", seed=77) as c:
        with pytest.raises(NodeCrashed):
            c.request("n1", "boom")
    err = capsys.readouterr().err
    assert "node n1 crashed" in err
    assert "seed 77" in err
    assert "'boom'" in err and "client" in err  # the message it was handling
    assert "ZeroDivisionError: boom requested" in err


def test_crash_in_a_timer_keeps_other_nodes_running(cluster):
    class TimeBomb(Pinger):
        def on_timer(self, ctx, name):
            if ctx.id == "n1" and ctx.now > 300:
                raise RuntimeError("tick tock")
            super().on_timer(ctx, name)

    c = cluster(TimeBomb, n=3, seed=4)
    c.run_for(2.0)
    crash = c.journal.filter(kind="crash").events
    assert [e.node for e in crash] == ["n1"]
    t_crash = crash[0].t
    assert 300 < t_crash < 450
    assert "timer 'tick'" in crash[0].get("cause")
    later = c.journal.filter(since=t_crash + 1)
    assert len(later.filter(kind="timer_fire", node="n1")) == 0
    assert len(later.filter(kind="timer_fire", node="n2")) > 10
    assert len(delivered(later, "n2", "n3")) > 10
    assert len(dropped(later, dst="n1", rule="node down")) > 0


# -- coroutine handlers in the simulator ---------------------------------------------------

class Proxy(labkit.Node):
    """Answers a client 'get' by asking the next node with ``await ctx.rpc`` (n3 never answers)."""

    def on_message(self, ctx, msg):
        if msg.type == "lookup":
            if ctx.id != "n3":
                ctx.reply(msg, value=f"value@{ctx.id}")
        elif msg.type == "get":
            return self.forward(ctx, msg)

    async def forward(self, ctx, msg):
        target = msg.body["via"]
        try:
            answer = await ctx.rpc(target, "lookup", timeout=msg.body.get("rpc_timeout", 200))
        except labkit.RpcTimeout:
            if msg.body.get("tolerate"):
                ctx.reply(msg, value=None, timed_out=True)
                return
            raise
        await ctx.sleep(25)
        ctx.reply(msg, value=answer.body["value"], from_=answer.src)


def test_rpc_coroutine_in_the_simulator(cluster):
    c = cluster(Proxy, n=3)
    c.set_link("n1", "n2", delay=10)
    c.set_link("n2", "n1", delay=15)
    t0 = c.now
    r = c.request("n1", "get", via="n2")
    assert r.body == {"value": "value@n2", "from_": "n2"}
    # four hops: client->n1, n1->n2, n2->n1, n1->client
    assert c.now - t0 == pytest.approx(10 + 15 + 25 + 4 * HOP)


def test_rpc_timeout_in_the_simulator(cluster):
    c = cluster(Proxy, n=3)
    t0 = c.now
    r = c.request("n1", "get", via="n3", tolerate=True, rpc_timeout=300)
    assert r.body == {"value": None, "timed_out": True}
    assert c.now - t0 == pytest.approx(300 + 2 * HOP)


def test_uncaught_rpc_timeout_crashes_the_node_and_the_request_says_so(cluster):
    c = cluster(Proxy, n=3, seed=12)
    with pytest.raises(NodeCrashed, match="RpcTimeout"):
        c.request("n1", "get", via="n3", rpc_timeout=100, timeout=1000)
    crash = c.journal.filter(kind="crash").events
    assert len(crash) == 1 and crash[0].node == "n1" and crash[0].get("seed") == 12


def test_rng_differs_between_incarnations_in_the_simulator(cluster):
    class Dice(labkit.Node):
        def on_start(self, ctx):
            ctx.storage.setdefault("rolls", [])
            ctx.storage["rolls"] = ctx.storage["rolls"] + [ctx.rng.random()]

        def on_message(self, ctx, msg):
            ctx.reply(msg, rolls=ctx.storage["rolls"])

    def rolls(seed):
        c = cluster(Dice, n=2, seed=seed)
        c.restart("n1")
        c.restart("n1")
        return c.request("n1", "read").body["rolls"], c.request("n2", "read").body["rolls"]

    n1, n2 = rolls(4)
    assert len(n1) == 3 and len(set(n1)) == 3       # each incarnation draws differently
    assert n2[0] not in n1                           # and each node
    assert rolls(4) == (n1, n2)                      # but the same seed replays them


# -- kill and restart ----------------------------------------------------------------------

def test_kill_loses_fields_but_keeps_storage_across_restart(cluster):
    c = cluster(Counter, n=2)
    for _ in range(3):
        r = c.request("n1", "inc")
    assert (r.body["volatile"], r.body["durable"], r.body["incarnation"]) == (3, 3, 1)
    assert c.kill("n1") is True
    assert c.kill("n1") is False  # already down
    assert c.status()["n1"].state == "down"
    c.restart("n1")
    st = c.status()["n1"]
    assert (st.state, st.incarnation) == ("up", 2)
    r = c.request("n1", "read")
    assert (r.body["volatile"], r.body["durable"], r.body["incarnation"]) == (0, 3, 2)
    r = c.request("n1", "inc")
    assert (r.body["volatile"], r.body["durable"]) == (1, 4)
    # the other node's storage is its own
    assert c.request("n2", "read").body["durable"] == 0
    kinds = [(e.kind, e.node, e.get("incarnation")) for e in c.journal.filter(kind=["kill", "restart", "start"])]
    assert kinds[-3:] == [("kill", "n1", 1), ("restart", "n1", 2), ("start", "n1", 2)]


def test_restart_of_a_running_node_kills_it_first(cluster):
    c = cluster(Counter, n=1)
    c.request("n1", "inc")
    c.restart("n1")
    kinds = [e.kind for e in c.journal.filter(kind=["kill", "restart"])]
    assert kinds == ["kill", "restart"]
    assert c.request("n1", "read").body == {"volatile": 0, "durable": 1, "incarnation": 2}


def test_messages_to_a_killed_node_are_dropped_as_node_down(cluster):
    c = cluster(Pinger, n=3)
    c.run_for(0.3)
    c.kill("n2")
    t_kill = c.now
    c.run_for(1.0)
    assert delivered(c.journal, "n1", "n2", since=t_kill) == []
    assert delivered(c.journal, "n3", "n2", since=t_kill) == []
    down = dropped(c.journal, dst="n2", since=t_kill)
    assert len(down) > 10 and all(e.get("rule") == "node down" for e in down)
    # and n2 itself does nothing while down
    after = c.journal.filter(node="n2", since=t_kill + 0.001)
    assert {e.kind for e in after} == {"drop"}
    with pytest.raises(NodeCrashed, match="n2 is down"):    # known to be down: fails at once
        c.request("n2", "read", timeout=100)


def test_messages_in_flight_to_a_node_killed_meanwhile_are_dropped(cluster):
    c = cluster(Sender, n=2)
    c.set_link("n1", "n2", delay=100)
    c.request("n1", "send", to="n2", count=5)
    c.kill("n2")
    c.run_for(0.5)
    drops = dropped(c.journal, src="n1", dst="n2")
    assert len(drops) == 5 and all(e.get("rule") == "node down" for e in drops)
    assert delivered(c.journal, "n1", "n2") == []


# -- partitions and cuts -------------------------------------------------------------------

def test_partitioned_nodes_exchange_nothing_and_heal_restores_delivery(cluster):
    c = cluster(Pinger, n=3)
    c.run_for(0.5)
    assert len(delivered(c.journal, "n1", "n3")) > 0
    groups = c.partition(["n1"], ["n2", "n3"])
    assert groups == [["n1"], ["n2", "n3"]]
    t_part = c.now
    c.run_for(1.0)
    j = c.journal
    for a, b in [("n1", "n2"), ("n2", "n1"), ("n1", "n3"), ("n3", "n1")]:
        assert delivered(j, a, b, since=t_part) == [], (a, b)
    assert len(delivered(j, "n2", "n3", since=t_part)) > 5  # same side still talks
    cut_off = dropped(j, since=t_part, rule="partition")
    assert len(cut_off) > 10
    assert all("n1" in (e.src, e.dst) for e in cut_off)
    c.heal()
    t_heal = c.now
    c.run_for(1.0)
    j = c.journal
    assert len(delivered(j, "n1", "n2", since=t_heal)) > 5
    assert len(delivered(j, "n3", "n1", since=t_heal)) > 5
    assert dropped(j, since=t_heal) == []
    kinds = [e.kind for e in j.filter(kind=["partition", "heal"])]
    assert kinds == ["partition", "heal"]


def test_isolate_cuts_one_node_off(cluster):
    c = cluster(Pinger, n=3)
    assert c.isolate("n2") == [["n2"], ["n1", "n3"]]
    c.run_for(1.0)
    assert delivered(c.journal, "n2", "n1") == [] and delivered(c.journal, "n3", "n2") == []
    assert len(delivered(c.journal, "n1", "n3")) > 5


def test_partition_does_not_block_clients(cluster):
    c = cluster(Echo, n=3)
    c.partition(["n1"], ["n2", "n3"])
    assert c.request("n1", "echo", echo=1).body == {"echo": 1}
    assert c.request("n3", "echo", echo=2).body == {"echo": 2}


def test_one_way_cut_blocks_only_one_direction(cluster):
    c = cluster(Pinger, n=3)
    c.cut("n1", "n2", one_way=True)
    c.run_for(1.0)
    j = c.journal
    assert delivered(j, "n1", "n2") == []
    assert len(delivered(j, "n2", "n1")) > 5
    cuts = dropped(j, rule="cut")
    assert len(cuts) > 5 and all((e.src, e.dst) == ("n1", "n2") for e in cuts)
    assert len(delivered(j, "n1", "n3")) > 5


def test_two_way_cut_blocks_both_directions(cluster):
    c = cluster(Pinger, n=3)
    c.cut("n1", "n2")
    c.run_for(1.0)
    j = c.journal
    assert delivered(j, "n1", "n2") == [] and delivered(j, "n2", "n1") == []
    assert len(delivered(j, "n2", "n3")) > 5


def test_a_partition_drops_messages_already_delayed_in_flight(cluster):
    c = cluster(Sender, n=3)
    c.set_link("n1", "n2", delay=100)
    c.request("n1", "send", to="n2", count=10)   # sent at t=0, due at t=100
    c.run_for(0.05)
    assert delivered(c.journal, "n1", "n2") == []
    c.partition(["n1"], ["n2", "n3"])
    c.run_for(0.5)
    assert delivered(c.journal, "n1", "n2") == []
    drops = dropped(c.journal, src="n1", dst="n2")
    assert len(drops) == 10 and all(e.get("rule") == "partition" for e in drops)
    assert all(e.t == pytest.approx(100.0 + 2 * HOP) for e in drops)
    assert c.request("n2", "got").body["got"] == []


def test_healing_before_a_delayed_message_lands_lets_it_through(cluster):
    c = cluster(Sender, n=2)
    c.set_link("n1", "n2", delay=100)
    c.request("n1", "send", to="n2", count=3)
    c.run_for(0.02)
    c.partition(["n1"])
    c.run_for(0.02)
    c.heal()
    c.run_for(0.2)
    assert c.request("n2", "got").body["got"] == [0, 1, 2]


def test_cluster_drop_rate_on_a_link_is_within_statistical_bounds(cluster):
    c = cluster(Sender, n=2, seed=3)
    c.set_link("n1", "n2", drop=0.25)
    n = 4000
    c.request("n1", "send", to="n2", count=n, timeout=5000)
    c.run_for(0.1)
    drops = dropped(c.journal, src="n1", dst="n2")
    assert all(e.get("rule") == "drop" for e in drops)
    got = c.request("n2", "got").body["got"]
    assert len(got) + len(drops) == n
    assert within_5_sigma(len(drops), n, 0.25), len(drops)
    # the reverse link is untouched
    c.request("n2", "send", to="n1", count=200)
    c.run_for(0.1)
    assert len(c.request("n1", "got").body["got"]) == 200


def test_link_delay_delays_delivery(cluster):
    c = cluster(Sender, n=2)
    c.set_link("n1", "n2", delay=40)
    c.request("n1", "send", to="n2", count=3)
    c.run_for(0.1)
    sends = {e.id: e.t for e in c.journal.filter(kind="send", node="n1")}
    dels = delivered(c.journal, "n1", "n2")
    assert len(dels) == 3
    assert all(e.t - sends[e.id] == pytest.approx(40.0 + HOP) for e in dels)


def test_link_faults_do_not_apply_to_client_replies(cluster):
    # network.py: "Clients (the notebook) sit outside the model: faults apply between nodes,
    # ... where client links are perfect". A wildcard link rule must not eat client replies.
    c = cluster(Echo, n=3)
    c.set_link("*", "*", drop=1.0)
    assert c.request("n1", "echo", echo=1, timeout=500).body == {"echo": 1}


def test_link_delay_does_not_apply_to_client_replies(cluster):
    c = cluster(Echo, n=3)
    c.set_link("*", "*", delay=300)
    t0 = c.now
    c.request("n1", "echo", echo=1, timeout=1000)
    assert c.now - t0 == pytest.approx(2 * HOP)  # just the two hops, no link delay


# -- pause, resume, skew -------------------------------------------------------------------

def test_pause_defers_deliveries_and_timers_until_resume(cluster):
    c = cluster(Pinger, n=3)
    c.run_for(0.2)
    c.pause("n2")
    assert c.status()["n2"].state == "paused"
    t_pause = c.now
    c.run_for(1.0)
    t_resume = c.now
    j = c.journal
    n2_events = j.filter(node="n2", since=t_pause + 0.001)
    assert [e for e in n2_events if e.kind in ("deliver", "timer_fire", "send")] == []
    assert len(j.filter(kind="send", until=t_resume, since=t_pause + 0.001, where=lambda e: e.dst == "n2")) > 10
    assert c.resume("n2") is True
    assert c.resume("n2") is False
    after = c.journal.filter(since=t_resume)
    backlog = [e for e in after if e.kind == "deliver" and e.dst == "n2"]
    assert len(backlog) > 10
    assert all(e.t == t_resume for e in backlog)  # the backlog is handled at resume time
    assert len(after.filter(kind="timer_fire", node="n2")) == 1  # the overdue tick fires once
    c.run_for(0.5)
    assert len(c.journal.filter(kind="timer_fire", node="n2", since=t_resume + 1)) >= 4


def test_paused_node_does_not_answer_requests(cluster):
    c = cluster(Echo, n=2)
    c.pause("n1")
    with pytest.raises(RequestTimeout, match="paused"):
        c.request("n1", "echo", timeout=100)
    with pytest.raises(labkit.LabkitError, match="cannot pause n1"):
        c.pause("n1")
    c.resume("n1")
    assert c.request("n1", "echo", echo=2).body == {"echo": 2}


def read_clock(c, node):
    """(the node's clock, the true time) when ``node`` handled a 'read' request."""
    now = c.request(node, "read").body["now"]
    return now, c.now - HOP  # the reply took one hop back to the client


def test_skew_changes_the_node_clock(cluster):
    c = cluster(Pinger, n=2)
    c.run_for(1.0)
    now, true = read_clock(c, "n1")
    assert now == pytest.approx(true) and true == pytest.approx(1000.0 + HOP)
    c.skew("n1", offset_ms=500, rate=2.0)
    now, true = read_clock(c, "n1")
    assert now == pytest.approx(true * 2 + 500)
    now, true = read_clock(c, "n2")
    assert now == pytest.approx(true)  # other clocks unchanged
    c.run_for(0.5)
    now, true = read_clock(c, "n1")
    assert true > 1500 and now == pytest.approx(true * 2 + 500)
    c.skew("n1")
    now, true = read_clock(c, "n1")
    assert now == pytest.approx(true)
    sk = c.journal.filter(kind="skew").events
    assert [(e.node, e.get("offset_ms"), e.get("rate")) for e in sk] == [("n1", 500.0, 2.0), ("n1", 0.0, 1.0)]
    with pytest.raises(ValueError, match="rate"):
        c.skew("n1", rate=0)


def test_skew_survives_restart(cluster):
    c = cluster(Pinger, n=2)
    c.skew("n2", offset_ms=-300)
    c.restart("n2")
    c.run_for(1.0)
    now, true = read_clock(c, "n2")
    assert now == pytest.approx(true - 300) and true == pytest.approx(1000 + HOP)


def test_fast_clock_fires_timers_early(cluster):
    class OneShot(labkit.Node):
        def on_message(self, ctx, msg):
            ctx.set_timer("once", after=100)
            ctx.reply(msg)

    c = cluster(OneShot, n=1)
    c.skew("n1", rate=2.0)
    c.request("n1", "arm")
    c.run_for(1.0)
    fire = c.journal.filter(kind="timer_fire").events
    assert [e.t for e in fire] == [pytest.approx(HOP + 50.0)]  # armed when the request arrived


# -- nemesis -------------------------------------------------------------------------------

def _nemesis_run(cluster_seed, nemesis_seed=7, seconds=12.0):
    with sim(Pinger, n=5, seed=cluster_seed) as c:
        sched = c.nemesis(["partition", "kill"], every=(0.3, 0.8), duration=(0.3, 0.8), seed=nemesis_seed)
        assert isinstance(sched, labkit.Schedule)
        c.run_for(seconds)
    return c.journal


FAULT_KINDS = ["nemesis", "kill", "restart", "partition", "heal"]


def test_nemesis_with_the_same_seed_replays_identically():
    a, b = _nemesis_run(1), _nemesis_run(1)
    assert a.to_jsonl() == b.to_jsonl()
    counts = a.count()
    for k in FAULT_KINDS:
        assert counts[k] > 0, k
    ops = [e.get("op") for e in a.filter(kind="nemesis")]
    assert ops[0] == "start" and {"partition", "heal", "kill", "restart"} <= set(ops)


def test_nemesis_faults_depend_only_on_the_nemesis_seed():
    def faults(j):
        return [e.to_dict() for e in j.filter(kind=FAULT_KINDS)]

    assert faults(_nemesis_run(1, 7)) == faults(_nemesis_run(2, 7))
    assert faults(_nemesis_run(1, 7)) != faults(_nemesis_run(1, 8))


def test_nemesis_faults_are_applied(cluster):
    c = cluster(Pinger, n=5, seed=2)
    c.nemesis(["kill"], every=1.0, duration=2.0, seed=3)
    c.run_for(1.5)
    kills = c.journal.filter(kind="kill").events
    assert len(kills) == 1 and kills[0].t == 1000.0
    victim = kills[0].node
    assert c.status()[victim].state == "down"
    c.run_for(2.0)   # the kill lasts 2 s, then the victim restarts
    restarts = c.journal.filter(kind="restart").events
    assert [(e.node, e.t) for e in restarts] == [(victim, 3000.0)]
    assert c.status()[victim] == labkit.NodeStatus("up", 2)


def test_nemesis_none_stops_it_and_undoes_a_kill(cluster):
    c = cluster(Pinger, n=5, seed=2)
    c.nemesis(["kill"], every=1.0, duration=5.0, seed=3)
    c.run_for(2.0)
    victim = c.journal.filter(kind="kill").events[0].node
    assert c.status()[victim].state == "down"
    assert c.nemesis(None) is None
    assert c.status()[victim].state == "up"
    t_stop = c.now
    c.run_for(20.0)
    later = c.journal.filter(since=t_stop + 0.001, kind=FAULT_KINDS)
    assert len(later) == 0
    assert c.journal.filter(kind="nemesis").events[-1].get("op") == "stop"
    assert all(s.state == "up" for s in c.status().values())


def test_nemesis_none_stops_it_and_heals_a_partition(cluster):
    c = cluster(Pinger, n=5, seed=2)
    c.nemesis(["partition"], every=1.0, duration=5.0, seed=3)
    c.run_for(2.0)
    assert c.net.groups
    c.nemesis(None)
    assert c.net.groups == {}
    assert c.journal.filter(kind=FAULT_KINDS).events[-2].kind == "heal"
    t_stop = c.now
    c.run_for(1.0)
    assert dropped(c.journal, since=t_stop) == []
    assert len(c.journal.filter(kind="partition", since=t_stop)) == 0


def test_nemesis_none_without_a_nemesis_is_harmless(cluster):
    c = cluster(Pinger, n=3)
    assert c.nemesis(None) is None
    c.run_for(0.5)
    assert len(c.journal.filter(kind="nemesis")) == 0


def test_nemesis_rejects_unknown_faults(cluster):
    c = cluster(Pinger, n=3)
    with pytest.raises(ValueError, match="unknown nemesis fault.*'flood'"):
        c.nemesis(["kill", "flood"])
    with pytest.raises(ValueError, match="every"):
        c.nemesis(["kill"], every=-1)


# -- counters ------------------------------------------------------------------------------

def test_counters_and_reports_show_in_cluster_counters(cluster):
    c = cluster(Counter, n=2)
    for _ in range(3):
        c.request("n1", "inc")
    c.request("n2", "inc", as_client="c2")
    assert c.counters() == {
        "n1": {"counters": {"incs": 3}, "status": {"last": "client", "volatile": 3}},
        "n2": {"counters": {"incs": 1}, "status": {"last": "c2", "volatile": 1}},
    }
    assert c.counters("n2") == {"counters": {"incs": 1}, "status": {"last": "c2", "volatile": 1}}
    c.run_for(0.5)
    stats = c.journal.filter(kind="stats", node="n1").events
    assert stats and stats[-1].get("counters") == {"incs": 3}
    with pytest.raises(UnknownNode):
        c.counters("n9")


# -- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda c: c.kill("n9"),
    lambda c: c.restart("n9"),
    lambda c: c.pause("n9"),
    lambda c: c.resume("n9"),
    lambda c: c.skew("n9", 10),
    lambda c: c.request("n9", "read"),
    lambda c: c.isolate("n9"),
    lambda c: c.partition(["n1"], ["n9"]),
    lambda c: c.cut("n1", "n9"),
    lambda c: c.set_link("n9", "*", delay=1),
], ids=["kill", "restart", "pause", "resume", "skew", "request", "isolate", "partition", "cut", "set_link"])
def test_unknown_node_raises_unknown_node_naming_it(cluster, call):
    c = cluster(Echo, n=3)
    with pytest.raises(UnknownNode) as ei:
        call(c)
    text = str(ei.value)
    assert "'n9'" in text
    assert not text.startswith(("'", '"')), f"message is a quoted repr: {text}"
    assert c.request("n1", "echo", echo=0).body == {"echo": 0}  # nothing broke


@pytest.mark.parametrize("n", [0, -1, 65, 2.5, True])
def test_bad_cluster_size(n):
    with pytest.raises(ValueError, match="n must be a whole number"):
        labkit.Cluster(Echo, n=n, runtime="sim", seed=1)


def test_bad_runtime_name():
    with pytest.raises(ValueError) as ei:
        labkit.Cluster(Echo, n=2, runtime="simulator", seed=1)
    assert "'simulator'" in str(ei.value) and "'sim'" in str(ei.value)


def test_node_class_must_subclass_node():
    class NotANode:
        def on_message(self, ctx, msg):
            pass

    with pytest.raises(TypeError, match="NotANode must subclass labkit.Node"):
        labkit.Cluster(NotANode, n=2, runtime="sim", seed=1)
    with pytest.raises(TypeError, match="labkit.Node"):
        labkit.Cluster(lambda: Echo(), n=2, runtime="sim", seed=1)


def test_misspelt_cluster_option_is_rejected():
    # ``seeds=3`` instead of ``seed=3`` silently gives a random seed: no replay.
    with pytest.raises(TypeError, match="seeds"):
        labkit.Cluster(Echo, n=2, runtime="sim", seeds=3)


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed"):
        labkit.Cluster(Echo, n=2, runtime="sim", seed="7")


def test_request_body_must_be_json(cluster):
    c = cluster(Echo, n=2)
    with pytest.raises(MessageError) as ei:
        c.request("n1", "echo", good=1, bad={1, 2})
    assert "'bad'" in str(ei.value) and "'good'" not in str(ei.value)
    assert c.request("n1", "echo", echo="still fine").body == {"echo": "still fine"}


def test_request_validates_its_arguments(cluster):
    c = cluster(Echo, n=2)
    with pytest.raises(ValueError, match="timeout"):
        c.request("n1", "echo", timeout=0)
    with pytest.raises(ValueError, match="client ids"):
        c.request("n1", "echo", as_client="n2")
    with pytest.raises(MessageError, match="type"):
        c.request("n1", "")


def test_nodes_as_a_dict_and_a_list(cluster):
    with labkit.Cluster({"db": Echo, "cache": Silent()}, runtime="sim", seed=1) as c:
        assert c.ids == ("db", "cache")
        assert c.request("db", "echo", echo=1).body == {"echo": 1}
        with pytest.raises(RequestTimeout):
            c.request("cache", "echo", timeout=50)
    with labkit.Cluster([Echo, Silent], runtime="sim", seed=1) as c:
        assert c.ids == ("n1", "n2")
    with pytest.raises(ValueError, match="reserved for clients"):
        labkit.Cluster({"client": Echo}, runtime="sim", seed=1)


# -- closing -------------------------------------------------------------------------------

def test_close_is_idempotent_and_later_calls_raise_cluster_closed():
    c = sim(Pinger, n=3)
    c.run_for(0.5)
    c.close()
    c.close()
    assert c.closed
    for call in [lambda: c.run_for(1), lambda: c.request("n1", "read"), lambda: c.kill("n1"),
                 lambda: c.restart("n1"), lambda: c.pause("n1"), lambda: c.resume("n1"),
                 lambda: c.skew("n1", 5), lambda: c.partition(["n1"]), lambda: c.isolate("n1"),
                 lambda: c.cut("n1", "n2"), lambda: c.heal(), lambda: c.set_link(delay=1),
                 lambda: c.clear_links(), lambda: c.nemesis(["kill"]), lambda: c.status(),
                 lambda: c.counters()]:
        with pytest.raises(ClusterClosed, match="closed"):
            call()
    # the journal stays readable, with exactly one close event at the end
    j = c.journal
    assert j.events[-1].kind == "close"
    assert len(j.filter(kind="close")) == 1
    assert "closed" in c.summary()


def test_context_manager_closes():
    with sim(Echo, n=2) as c:
        c.request("n1", "echo")
    assert c.closed
    with pytest.raises(ClusterClosed):
        c.request("n1", "echo")


def test_close_stops_a_running_nemesis():
    c = sim(Pinger, n=3)
    c.nemesis(["kill"], every=0.1, duration=0.1)
    c.close()
    n = len(c.journal)
    with pytest.raises(ClusterClosed):
        c.run_for(1)
    assert len(c.journal) == n


def test_nemesis_events_are_the_nemesis_s_and_name_their_victim():
    class Idle(labkit.Node):
        pass

    with labkit.Cluster(Idle, n=3, runtime="sim", seed=4) as c:
        c.nemesis(["kill"], every=0.1, duration=0.1)
        c.run_for(1)
        ev = c.journal.filter(kind="nemesis").events
    assert ev and {e.node for e in ev} == {"nemesis"}
    kills = [e for e in ev if e.get("op") == "kill"]
    assert kills and all(e.get("node") in c.ids for e in kills)
