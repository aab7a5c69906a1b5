"""Work and capacity (labkit.capacity): ``ctx.work``, workers, the FIFO queue, shedding,
request admission, the metrics, and the slow node -- against FakeContext, in the simulator
(with an M/M/1 check against queueing theory) and with real processes."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

import labkit
from labkit import ArgumentError, Overloaded
from labkit.faults import fault_spans
from labkit.testing import FakeContext

try:                                   # tests/ as a package, or as a plain directory
    from .capnodes import MM1Server, Poisson, Server
except ImportError:
    from capnodes import MM1Server, Poisson, Server


def job(ctx, node, src="c0", ms=10.0, **body):
    return ctx.deliver(node, "job", src=src, ms=ms, **body)


class Two(Server):
    workers = 2


class Tight(Server):
    queue_limit = 2


# -- ctx.work against FakeContext -----------------------------------------------------------

def test_work_holds_a_worker_for_its_duration():
    ctx, node = FakeContext("n1"), Server()
    m = job(ctx, node, ms=10)
    assert (ctx.in_flight, ctx.queued) == (1, 0) and not ctx.sent
    ctx.advance(9.999)
    assert not ctx.sent
    ctx.advance(0.001)
    assert ctx.sent[-1].in_reply_to == m.id and ctx.sent[-1].body["served"] == pytest.approx(10.0)
    assert (ctx.in_flight, ctx.queued) == (0, 0)


def test_waiting_work_is_served_first_come_first_served():
    ctx, node = FakeContext("n1"), Server()
    ids = [job(ctx, node, ms=10).id for _ in range(4)]
    assert (ctx.in_flight, ctx.queued) == (1, 3)
    done = []
    for _ in range(4):
        ctx.advance(10)
        done.append((ctx.sent[-1].in_reply_to, ctx.now))
    assert done == [(ids[0], 10), (ids[1], 20), (ids[2], 30), (ids[3], 40)]
    # time in system: 10, 20, 30, 40 -- each waited for the ones before it
    assert [m.body["served"] for m in ctx.sent] == pytest.approx([10, 20, 30, 40])


def test_workers_serve_at_once():
    ctx, node = FakeContext("n1"), Two()
    for _ in range(3):
        job(ctx, node, ms=10)
    assert (ctx.in_flight, ctx.queued) == (2, 1)
    ctx.advance(10)
    assert len(ctx.sent) == 2 and (ctx.in_flight, ctx.queued) == (1, 0)
    ctx.advance(10)
    assert len(ctx.sent) == 3 and ctx.in_flight == 0


def test_past_the_queue_limit_a_message_is_answered_with_error_11_and_the_node_lives():
    ctx, node = FakeContext("n1"), Tight()
    served = [job(ctx, node).id for _ in range(3)]          # 1 in service + 2 queued
    shed = job(ctx, node, src="c1")
    err = ctx.sent[-1]
    assert (err.type, err.dst, err.in_reply_to, err.body["code"]) == ("error", "c1", shed.id, 11)
    assert "overloaded" in err.body["text"] and "Retry later" in err.body["text"]
    assert ctx.counters["shed"] == 1 and ctx.crash is None and not ctx.dead
    ctx.advance(30)
    assert [m.in_reply_to for m in ctx.outbox(type="job_ok")] == served   # the rest were served


def test_queue_limit_zero_sheds_whenever_every_worker_is_busy():
    class NoQueue(Server):
        queue_limit = 0
    ctx, node = FakeContext("n1"), NoQueue()
    job(ctx, node)
    job(ctx, node)
    assert ctx.sent[-1].type == "error" and ctx.counters["shed"] == 1


def test_overloaded_can_be_caught_by_the_handler():
    class Polite(labkit.Node):
        workers, queue_limit = 1, 0

        async def on_message(self, ctx, msg):
            try:
                await ctx.work(10)
            except Overloaded as e:
                ctx.reply(msg, "busy", why=str(e))
                return
            ctx.reply(msg)
    ctx, node = FakeContext("n1"), Polite()
    ctx.deliver(node, "a")
    ctx.deliver(node, "b")
    busy = ctx.sent[-1]
    assert busy.type == "busy" and "queue_limit=0" in busy.body["why"] and "refused" in busy.body["why"]
    assert not ctx.outbox(type="error") and ctx.counters["shed"] == 1    # counted once, not answered twice


def test_overloaded_in_a_timer_handler_counts_and_ends_the_handler():
    class Ticker(labkit.Node):
        workers, queue_limit = 1, 0

        def __init__(self):
            self.after = []

        async def on_timer(self, ctx, name):
            await ctx.work(50)
            self.after.append(name)
    node = Ticker()
    ctx = FakeContext("n1", node=node)
    ctx.set_timer("a", after=1)
    ctx.set_timer("b", after=2)
    ctx.advance(100)
    assert node.after == ["a"] and ctx.counters["shed"] == 1 and not ctx.sent and ctx.crash is None


def test_shed_after_an_rpc_answers_the_message_being_handled():
    class Proxy(labkit.Node):
        workers, queue_limit = 1, 0

        async def on_message(self, ctx, msg):
            if msg.type == "hold":
                await ctx.work(100)
                return
            await ctx.rpc("n2", "lookup", timeout=50)    # then the worker is taken: shed
            await ctx.work(10)
    ctx, node = FakeContext("n1"), Proxy()
    ctx.deliver(node, "hold")
    m = ctx.deliver(node, "ask", src="c3")
    ctx.deliver(node, "lookup_ok", src="n2", in_reply_to=ctx.sent[-1].id)
    err = ctx.sent[-1]
    assert (err.type, err.dst, err.in_reply_to, err.body["code"]) == ("error", "c3", m.id, 11)


def test_a_user_raised_overloaded_is_answered_and_counted():
    class Gate(labkit.Node):
        def on_message(self, ctx, msg):
            raise Overloaded("no tokens left")
    ctx, node = FakeContext("n1"), Gate()
    m = ctx.deliver(node, "x")
    assert ctx.sent[-1].in_reply_to == m.id and ctx.sent[-1].body["code"] == 11 and ctx.counters["shed"] == 1


def test_slow_makes_work_started_later_take_factor_times_as_long():
    ctx, node = FakeContext("n1"), Server()
    job(ctx, node, ms=10)
    ctx.slow(4)                     # work under way keeps its end
    job(ctx, node, ms=10)           # queued: starts at 10, slow by then
    ctx.advance(10)
    assert len(ctx.sent) == 1
    ctx.advance(39.999)
    assert len(ctx.sent) == 1
    ctx.advance(0.001)
    assert len(ctx.sent) == 2 and ctx.now == pytest.approx(50)
    ctx.slow(1)
    job(ctx, node, ms=10)
    ctx.advance(10)
    assert len(ctx.sent) == 3


def test_work_is_on_the_node_clock():
    ctx, node = FakeContext("n1"), Server()
    ctx._set_clock(0.0, 2.0)                     # cluster.skew(node, rate=2)
    job(ctx, node, ms=10)
    ctx.advance(5)
    assert len(ctx.sent) == 1 and ctx.sent[0].body["served"] == pytest.approx(10)


@pytest.mark.parametrize("ms", [float("nan"), -1, float("inf"), "10", True, 2e9])
def test_work_refuses_a_bad_duration(ms):
    with pytest.raises(ArgumentError, match=r"n1: work\(ms\) must be a finite number"):
        FakeContext("n1").work(ms)


@pytest.mark.parametrize("factor", [0.5, 0, float("nan"), 1e4, "2"])
def test_fake_slow_refuses_a_bad_factor(factor):
    with pytest.raises(ArgumentError, match=r"slow\(factor\)"):
        FakeContext("n1").slow(factor)


# -- request admission (used by HTTP serving) --------------------------------------------------

def test_admit_starts_queues_and_sheds():
    ctx = FakeContext("n1", node=Tight())
    started = []
    assert ctx._admit(lambda: started.append("a")) is True and started == ["a"]
    assert ctx._admit(lambda: started.append("b")) is True
    assert ctx._admit(lambda: started.append("c")) is True
    assert started == ["a"] and (ctx.in_flight, ctx.queued) == (1, 2)
    assert ctx._admit(lambda: started.append("d")) is False
    assert ctx.counters["shed"] == 1 and started == ["a"]
    ctx._release()
    assert started == ["a", "b"] and (ctx.in_flight, ctx.queued) == (1, 1)
    ctx._release()
    ctx._release()
    assert started == ["a", "b", "c"] and (ctx.in_flight, ctx.queued) == (0, 0)
    with pytest.raises(RuntimeError, match="_release"):
        ctx._release()


def test_work_inside_an_admitted_request_takes_no_second_worker():
    ctx = FakeContext("n1", node=Tight())
    done = []

    async def handler():
        await ctx.work(10)
        done.append(ctx.now)
        ctx._holding.discard(coro)
        ctx._release()

    coro = handler()

    def start():
        ctx._holding.add(coro)
        ctx._step(coro, None, None, "request GET /x")
    assert ctx._admit(start)
    assert ctx.in_flight == 1 and ctx.queued == 0        # the work did not queue behind itself
    ctx.advance(10)
    assert done == [10] and ctx.in_flight == 0 and not ctx._holding


def test_admitted_requests_and_message_work_share_one_fifo_queue():
    ctx, node = FakeContext("n1"), Server()
    order = []
    job(ctx, node, ms=10)                               # in service until 10
    assert ctx._admit(lambda: order.append(("request", ctx.now)))
    job(ctx, node, ms=10)                               # queued behind the request
    ctx.advance(10)
    assert order == [("request", 10)] and ctx.in_flight == 1 and ctx.queued == 1
    ctx.advance(5)
    ctx._release()                                      # the request took 5 ms
    ctx.advance(10)
    assert len(ctx.sent) == 2 and ctx.sent[-1].body["served"] == pytest.approx(25)   # arrived at 0, began at 15


def test_a_long_queue_of_instant_requests_does_not_deepen_the_stack():
    class Deep(labkit.Node):
        queue_limit = 5000
    ctx = FakeContext("n1", node=Deep())
    ran = []
    assert ctx._admit(lambda: ran.append(0))            # holds the worker
    for i in range(1, 4001):
        assert ctx._admit(lambda i=i: (ran.append(i), ctx._release()))
    ctx._release()
    assert ran == list(range(4001)) and ctx.in_flight == 0 and ctx.queued == 0


def test_a_dead_node_admits_nothing():
    ctx = FakeContext("n1")
    ctx._kill()
    assert ctx._admit(lambda: pytest.fail("started on a dead node")) is False
    ctx._release()                                      # a late release is ignored


# -- the metrics -------------------------------------------------------------------------------

def test_stats_report_in_flight_queue_utilization_and_shed_then_stop():
    ctx, node = FakeContext("n1"), Tight()
    for _ in range(4):
        job(ctx, node, ms=50)                           # 1 served, 2 queued, 1 shed
    ctx.advance(200)
    first = [e for e in ctx.events if e.kind == "stats"][-1].get("counters")
    assert first["utilization"] == pytest.approx(0.75) and first["shed"] == 1
    assert first["in_flight"] == 0 and first["queued"] == 0
    ctx.advance(1000)
    stats = [e for e in ctx.events if e.kind == "stats"]
    assert len(stats) == 2 and stats[-1].get("counters")["utilization"] == 0   # one idle window, then quiet


def test_a_node_that_never_works_publishes_no_capacity_metrics():
    class Counter(labkit.Node):
        def on_message(self, ctx, msg):
            ctx.count("seen")
    ctx, node = FakeContext("n1"), Counter()
    ctx.deliver(node, "x")
    ctx.advance(1000)
    stats = [e for e in ctx.events if e.kind == "stats"]
    assert len(stats) == 1 and stats[0].get("counters") == {"seen": 1}


# -- cluster-level checks ----------------------------------------------------------------------

@pytest.mark.parametrize("attrs, where", [
    ({"workers": 0}, r"Bad\.workers must be a whole number in \[1, 10,000\], got 0"),
    ({"workers": 1.5}, r"Bad\.workers must be a whole number .* got 1\.5 of type float"),
    ({"workers": True}, r"Bad\.workers .* got True of type bool"),
    ({"workers": "4"}, r"Bad\.workers .* got '4' of type str"),
    ({"queue_limit": -1}, r"Bad\.queue_limit must be a whole number in \[0, 1,000,000\], got -1 \(0 means"),
    ({"queue_limit": 10**7}, r"Bad\.queue_limit"),
])
def test_bad_capacity_is_refused_when_the_cluster_is_made(attrs, where):
    Bad = type("Bad", (Server,), attrs)
    with pytest.raises(ArgumentError, match=where):
        labkit.Cluster(Bad, n=1, runtime="sim", seed=1)
    with pytest.raises(ArgumentError, match=where):            # an instance: the same check
        labkit.Cluster({"a": Bad()}, runtime="sim", seed=1)


def test_numpy_whole_numbers_are_fine():
    Np = type("Np", (Server,), {"workers": np.int64(3), "queue_limit": np.int32(5)})
    with labkit.Cluster(Np, n=1, runtime="sim", seed=1) as c:
        ctx = c._rt.records["n1"].ctx
        assert (ctx._workers, ctx._queue_limit) == (3, 5)


def test_sim_slow_node_latency_is_exactly_factor_times():
    with labkit.Cluster(Server, n=2, runtime="sim", seed=3) as c:
        def latency(node):
            t0 = c.now
            reply = c.request(node, "job", ms=20)
            return c.now - t0, reply.body["served"]
        hop = 2 * labkit.runtime.sim.HOP_MS
        assert latency("n1") == pytest.approx((20 + hop, 20), abs=1e-9)
        c.slow("n1", 5)
        assert c.status()["n1"].slow == 5 and "5x slow" in str(c.status()["n1"])
        assert latency("n1") == pytest.approx((100 + hop, 100), abs=1e-9)
        assert latency("n2") == pytest.approx((20 + hop, 20), abs=1e-9)    # only n1 is slow
        c.restart("n1")                                                    # the machine is still slow
        assert latency("n1") == pytest.approx((100 + hop, 100), abs=1e-9)
        c.unslow("n1")
        assert latency("n1") == pytest.approx((20 + hop, 20), abs=1e-9)
        slows = [(e.node, e.get("factor")) for e in c.journal.filter(kind="slow")]
        assert slows == [("n1", 5.0), ("n1", 1.0)]
        spans = [s for s in fault_spans(c.journal) if s.kind == "slow"]
        assert len(spans) == 1 and spans[0].node == "n1" and spans[0].detail == "n1 ×5" and not spans[0].open


@pytest.mark.parametrize("factor", [0.5, 0, -2, float("nan"), float("inf"), 1001, "3", None])
def test_slow_refuses_a_bad_factor(factor):
    with labkit.Cluster(Server, n=1, runtime="sim", seed=1) as c:
        with pytest.raises(ArgumentError, match=r"slow\(factor\) must be a finite number in \[1, 1000\]"):
            c.slow("n1", factor)
        assert not c.journal.filter(kind="slow")


def test_slow_an_unknown_node():
    with labkit.Cluster(Server, n=1, runtime="sim", seed=1) as c:
        with pytest.raises(labkit.UnknownNode, match="n9"):
            c.slow("n9", 2)


def test_sim_shedding_reaches_the_client_as_error_11():
    with labkit.Cluster(Tight, n=1, runtime="sim", seed=2) as c:
        replies_ = []
        for _ in range(5):
            c.client_send("n1", "job", ms=10, on_reply=replies_.append)
        c.run_for(0.1)
        kinds = sorted((e.type, e.get("body").get("code")) for e in replies_)
        assert kinds == [("error", 11), ("error", 11), ("job_ok", None), ("job_ok", None), ("job_ok", None)]
        assert c.counters("n1")["counters"]["shed"] == 2 and c.status()["n1"].state == "up"


def test_nemesis_slow_fault_slows_and_restores():
    assert "slow" in labkit.FAULTS
    with labkit.Cluster(Server, n=3, runtime="sim", seed=4) as c:
        c.nemesis(["slow"], every=0.5, duration=0.5)
        c.run_for(0.75)
        slow = {n: s.slow for n, s in c.status().items()}
        assert sorted(slow.values()) == [1.0, 1.0, 10.0]
        c.nemesis(None)                                 # stops, and undoes the fault in force
        assert all(s.slow == 1.0 for s in c.status().values())
        ops = [(e.get("op"), e.get("factor")) for e in c.journal.filter(kind="nemesis") if e.get("op") == "slow"]
        assert ops == [("slow", 10.0), ("slow", 1.0)]


# -- M/M/1 against queueing theory ---------------------------------------------------------------

SEEDS = range(1, 21)
JOBS = 4000            # per seed: the pooled mean's standard error is ~3% at rho 0.8 (checked offline)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_sojourn_time_matches_theory(rho):
    """Poisson arrivals at rate lambda, exponential work of mean 1/mu, one worker: the mean
    time in system is 1/(mu - lambda) (Kleinrock, Queueing Systems vol. 1, section 3.2) and
    the utilization is rho = lambda/mu. Pooled over 20 seeds, within 10% (and 5%)."""
    mu = 1.0 / MM1Server.MEAN_MS
    lam = rho * mu
    seconds = JOBS / lam / 1000.0
    total = served = 0.0
    busy = []
    for seed in SEEDS:
        with labkit.Cluster({"server": MM1Server, "load": Poisson(lam)}, runtime="sim", seed=seed) as c:
            c.run_for(seconds)
            cn = c.counters("server")["counters"]
            total += cn["sojourn_ms"]
            served += cn["served"]
            stats = c.journal.filter(kind="stats", node="server")
            times = [e.t for e in stats]
            windows = np.diff([0.0] + times)
            utils = [e.get("counters")["utilization"] for e in stats]
            busy.append(float(np.dot(windows, utils) / times[-1]))
    theory = 1.0 / (mu - lam)
    measured = total / served
    assert served > 0.95 * JOBS * len(SEEDS)
    assert measured == pytest.approx(theory, rel=0.10), f"mean sojourn {measured:.2f} ms, theory {theory:.2f} ms"
    assert statistics.mean(busy) == pytest.approx(rho, rel=0.05)


# -- the panel and the plot --------------------------------------------------------------------

def test_panel_slow_button_toggles_and_tiles_show_the_load():
    from labkit.widgets import Panel, text_summary
    with labkit.Cluster(Server, n=2, runtime="sim", seed=6) as c:
        for _ in range(3):
            c.client_send("n1", "job", ms=100)
        c.run_for(0.25)
        p = Panel(c, refresh_hz=10)
        try:
            t1 = p.tiles["n1"]
            p._tick()
            assert "in flight 1 · queued 1 · util 100% · shed 0" in t1.body.value
            assert t1.buttons["slow"].description == "slow ×10"
            t1.buttons["slow"].click()
            assert c.status()["n1"].slow == 10 and p.last_action[1]
            p._tick()
            assert t1.buttons["slow"].description == "unslow" and "×10 slow" in t1.title.value
            assert "n1     up       incarnation 1  slow ×10" in text_summary(c)
            t1.buttons["slow"].click()
            assert c.status()["n1"].slow == 1
        finally:
            p.close()


def test_capacity_plot_draws_utilization_queue_and_shed_with_faults_shaded():
    from labkit.plots import capacity, to_svg
    with labkit.Cluster({"server": Tight, "load": Poisson(0.2)}, runtime="sim", seed=7) as c:
        c.run_for(0.5)
        c.slow("server", 3)
        c.run_for(0.5)
        fig = capacity(c)
        assert str(fig).startswith("<capacity: server util ") and "shed" in str(fig)
        svg = to_svg(fig)
        assert "node slow (gray failure)" in svg and "slow server ×3" in svg and "queue length" in svg
    empty = capacity(labkit.Cluster(labkit.Node, n=1, runtime="sim", seed=1).journal)
    assert "nothing to draw" in str(empty)


# -- real processes ------------------------------------------------------------------------------

def node_service_ms(c, type_="job"):
    """Per request to n1: the time from its delivery to n1 to n1's reply (n1's own clock
    readings, from the journal), in request order."""
    delivered = {e.id: e.t for e in c.journal.filter(kind="deliver", node="n1", type=type_)}
    return [e.t - delivered[e.get("re")] for e in c.journal.filter(kind="send", node="n1", type=type_ + "_ok")
            if e.get("re") in delivered]


@pytest.mark.processes
def test_processes_slow_node_takes_factor_times_as_long():
    with labkit.Cluster(Server, n=1, seed=8) as c:
        for _ in range(4):
            c.request("n1", "job", ms=20, timeout=5000)
        c.slow("n1", 5)
        assert c.status()["n1"].slow == 5
        for _ in range(4):
            c.request("n1", "job", ms=20, timeout=5000)
        c.unslow("n1")
        c.request("n1", "job", ms=20, timeout=5000)
        times = node_service_ms(c)
        normal, slow, back = times[:4], times[4:8], times[8:]
        assert len(times) == 9
        # Never early (the timer is never due before its time); late only by scheduling noise.
        assert min(normal) >= 20 - 0.01 and min(slow) >= 100 - 0.01 and back[0] >= 20 - 0.01
        ratio = statistics.median(slow) / statistics.median(normal)
        assert 3.0 <= ratio <= 5.5, f"slow/normal service time ratio {ratio:.2f} (normal {normal}, slow {slow})"


@pytest.mark.processes
def test_processes_work_waits_without_burning_cpu():
    """1.5 s of queued work on one worker: the node process sleeps through it."""
    psutil = pytest.importorskip("psutil")
    with labkit.Cluster(Server, n=1, seed=9) as c:
        proc = psutil.Process(c.status()["n1"].pid)
        cpu0 = sum(proc.cpu_times()[:2])
        for _ in range(30):
            c.client_send("n1", "job", ms=50)
        c.run_for(1.6)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        served = len(node_service_ms(c))
        assert served >= 25, f"only {served} of 30 jobs served in 1.6 s"
        assert cpu < 0.5, f"the node used {cpu:.2f} s of CPU while waiting out 1.5 s of work"
