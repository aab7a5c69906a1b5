"""Robustness: every call bounded and interruptible (issue 18, "Hangs and unbounded runs").

* numeric arguments are checked once, at the API boundary, in both runtimes;
* the simulator can always be interrupted, and its storm guard stops a run that explodes;
  the processes runtime's nodes are crashed by the same guard;
* a handler's SystemExit / KeyboardInterrupt / GeneratorExit is that node's crash;
* a request to a node known to be down fails at once; fault calls never block on a stopped
  or stuck node, never skip silently.

Tests marked ``processes`` start real node processes.
"""
from __future__ import annotations

import _thread
import json
import math
import os
import signal
import threading
import time
import warnings

import psutil
import pytest

import labkit
from labkit import ArgumentError, Guard, NodeCrashed, StormError

try:                                   # tests/ as a package, or as a plain directory
    from .robustnodes import Misbehaving, Quiet, SendLoop, ZeroTimer
except ImportError:
    from robustnodes import Misbehaving, Quiet, SendLoop, ZeroTimer

NAN, INF = float("nan"), float("inf")
OK_MS = 5000.0
RUNTIMES = ["sim", pytest.param("processes", marks=pytest.mark.processes)]


def quiet(c):
    c._rt.echo_crashes = False      # crash reports are asserted on, not printed
    return c


# -- numbers at the API boundary -----------------------------------------------------------
def _noop():
    pass


# (call, argument name the error must name, the value it must show)
BAD_CALLS = [
    (lambda c: c.run_for(NAN), "run_for(seconds)", "nan"),
    (lambda c: c.run_for(INF), "run_for(seconds)", "inf"),
    (lambda c: c.run_for(-1), "run_for(seconds)", "-1"),
    (lambda c: c.run_for("1"), "run_for(seconds)", "'1'"),
    (lambda c: c.run_for(True), "run_for(seconds)", "True"),
    (lambda c: c.request("n1", "echo", timeout=NAN), "request(timeout)", "nan"),
    (lambda c: c.request("n1", "echo", timeout=INF), "request(timeout)", "inf"),
    (lambda c: c.request("n1", "echo", timeout=0), "request(timeout)", "0"),
    (lambda c: c.request("n1", "echo", timeout=-INF), "request(timeout)", "-inf"),
    (lambda c: c.skew("n1", rate=NAN), "skew(rate)", "nan"),
    (lambda c: c.skew("n1", rate=INF), "skew(rate)", "inf"),
    (lambda c: c.skew("n1", rate=0), "skew(rate)", "0"),
    (lambda c: c.skew("n1", rate=1e9), "skew(rate)", "1000000000.0"),
    (lambda c: c.skew("n1", offset_ms=NAN), "skew(offset_ms)", "nan"),
    (lambda c: c.skew("n1", offset_ms=-INF), "skew(offset_ms)", "-inf"),
    (lambda c: c.set_link(delay=NAN), "delay", "nan"),
    (lambda c: c.set_link(delay=INF), "delay", "inf"),
    (lambda c: c.set_link(jitter=NAN, distribution="uniform"), "jitter", "nan"),
    (lambda c: c.set_link(reorder=0.5, reorder_ms=INF), "reorder_ms", "inf"),
    (lambda c: c.set_link(drop=NAN), "drop", "nan"),
    (lambda c: c.set_link(drop=1.5), "drop", "1.5"),
    (lambda c: c.set_link(duplicate=NAN), "duplicate", "nan"),
    (lambda c: c.set_link(duplicate=-0.1), "duplicate", "-0.1"),
    (lambda c: c.set_link(reorder=INF), "reorder", "inf"),
    (lambda c: c.nemesis(["kill"], every=0, duration=0), "nemesis every", "0"),
    (lambda c: c.nemesis(["kill"], every=(0, 1), duration=(0, 0)), "nemesis every + duration", "(0, 0)"),
    (lambda c: c.nemesis(["kill"], every=1, duration=-1), "nemesis duration", "-1"),
    (lambda c: c.nemesis(["kill"], every=NAN), "nemesis every", "nan"),
    (lambda c: c.nemesis(["kill"], duration=INF), "nemesis duration", "inf"),
    (lambda c: c.nemesis(["kill"], every=(-1, 1)), "nemesis every", "-1"),
    (lambda c: c.nemesis(["kill"], every=(2, 1)), "nemesis every", "(2, 1)"),
    (lambda c: c.nemesis(["kill"], every=(1, NAN)), "nemesis every", "nan"),
    (lambda c: c.call_at(NAN, _noop), "call_at(t_ms)", "nan"),
    (lambda c: c.call_at(INF, _noop), "call_at(t_ms)", "inf"),
    (lambda c: c.record_op(-1, "invoke", "read"), "record_op(process)", "-1"),
    (lambda c: c.record_op(0, "invoke", "read", time=NAN), "record_op(time)", "nan"),
    (lambda c: c.logs(last=-1), "logs(last)", "-1"),
    (lambda c: labkit.workload(c, rate=NAN), "workload(rate)", "nan"),
    (lambda c: labkit.workload(c, rate=0), "workload(rate)", "0"),
    (lambda c: labkit.workload(c, duration=INF), "workload(duration)", "inf"),
    (lambda c: labkit.workload(c, clients=0), "workload(clients)", "0"),
    (lambda c: labkit.workload(c, values=0), "workload(values)", "0"),
    (lambda c: labkit.workload(c, keys=0), "workload(keys)", "0"),
    (lambda c: labkit.workload(c, timeout_ms=NAN), "Recorder(timeout_ms)", "nan"),
    (lambda c: labkit.workload(c, mix={"read": NAN}), "workload(mix['read'])", "nan"),
    (lambda c: labkit.Recorder(c).settle(step_s=INF), "settle(step_s)", "inf"),
]


def _check_refused(c, call, name, shown):
    before = len(c.journal)
    status = c.status()
    with pytest.raises(ArgumentError) as ei:     # a ValueError (and a TypeError)
        call(c)
    msg = str(ei.value)
    assert name in msg and shown in msg, msg
    assert "[" in msg or "(" in msg or "probability" in msg, msg   # the allowed range is said
    assert len(c.journal) == before, "a refused call must leave no trace in the journal"
    assert c.status() == status


def test_every_bad_number_is_refused_in_the_simulator():
    with labkit.Cluster(Quiet, n=3, runtime="sim", seed=1) as c:
        for call, name, shown in BAD_CALLS:
            _check_refused(c, call, name, shown)
        assert c.net.describe() == "healthy" and c._nemesis is None
        c.run_for(0.1)                                    # and the cluster runs on
        assert c.request("n1", "echo").body == {"me": "n1"}


@pytest.mark.processes
def test_every_bad_number_is_refused_in_processes_too_without_hanging():
    with labkit.Cluster(Quiet, n=3, runtime="processes", seed=1) as c:
        t0 = time.monotonic()
        for call, name, shown in BAD_CALLS:
            _check_refused(c, call, name, shown)
        assert time.monotonic() - t0 < 30                 # no call waited on a NaN deadline
        assert c.net.describe() == "healthy" and c._nemesis is None
        assert c.request("n1", "echo", timeout=OK_MS).body == {"me": "n1"}


def test_argument_errors_name_the_range_and_are_value_and_type_errors():
    with labkit.Cluster(Quiet, n=1, runtime="sim", seed=1) as c:
        with pytest.raises(ArgumentError) as ei:
            c.run_for(NAN)
        assert "[0, 1e+06]" in str(ei.value) and "seconds" in str(ei.value)
        assert isinstance(ei.value, ValueError) and isinstance(ei.value, TypeError)
        with pytest.raises(ArgumentError, match=r"skew\(rate\) must be a finite number in \[0.001, 1000\]"):
            c.skew("n1", rate=NAN)


def test_callbacks_and_node_names_that_cannot_work_are_refused_at_once():
    """A callback that is not callable would fail only when its reply came, inside a later
    run_for; an unknown node's logs would read as 'no logs'."""
    class Echo(labkit.Node):
        def on_message(self, ctx, msg):
            ctx.reply(msg)

    with labkit.Cluster(Echo, n=2, runtime="sim", seed=1) as c:
        with pytest.raises(ArgumentError, match=r"client_send\(on_reply=5\): give a function"):
            c.client_send("n1", "x", on_reply=5)
        with pytest.raises(labkit.UnknownNode, match="unknown node 'n9'"):
            c.logs("n9")
        assert c.logs("n1") == ""
        with pytest.raises(ArgumentError, match="call_at\\(t_ms\\) must be a finite number \\(ms\\), got nan"):
            c.call_at(NAN, print)
    with labkit.Cluster(HttpEcho, n=1, runtime="sim", seed=1) as c:
        for kw in ({"on_response": 1}, {"on_error": "print"}):
            with pytest.raises(ArgumentError, match=f"send\\({next(iter(kw))}="):
                c.http("n1").send("GET", "/x", **kw)


class HttpEcho(labkit.Service):
    @labkit.get("/x")
    async def x(self, ctx, req):
        return labkit.Response(text="x")


def test_guard_limits_are_checked_too():
    for bad in ({"events": 0}, {"wakeups": -1}, {"window_ms": NAN}, {"per_handler": 1.5}, {"queue": True},
                {"handler_s": 0}, {"handler_s": -1}, {"handler_s": NAN}, {"handler_s": "5"}, {"handler_s": True}):
        with pytest.raises(ArgumentError):
            Guard(**bad)
    with pytest.raises(TypeError, match="unknown guard limit"):
        labkit.Cluster(Quiet, n=1, runtime="sim", guard={"event": 5})


def test_nemesis_with_the_shortest_intervals_lets_run_for_return():
    with labkit.Cluster(Quiet, n=3, runtime="sim", seed=2) as c:
        c.nemesis(["kill", "partition"], every=0.0005, duration=0.0005)
        c.run_for(0.5)
        assert c.now == pytest.approx(500.0)
        assert len(c.journal.filter(kind="nemesis")) > 100


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("after", ["nan", "inf"])
def test_a_node_giving_a_bad_number_crashes_with_the_argument_named(runtime, after):
    with quiet(labkit.Cluster(Misbehaving, n=1, runtime=runtime, seed=3)) as c:
        with pytest.raises(NodeCrashed, match=r"set_timer\('t', after\) must be a finite number"):
            c.request("n1", "bad_timer", timeout=OK_MS, after=after)
        assert c.status()["n1"].state == "crashed"


# -- the simulator can always be interrupted -----------------------------------------------
def _interrupt_after(seconds: float) -> threading.Timer:
    """Ctrl-C / "interrupt kernel", from a timer thread: SIGINT's handler runs in the main thread."""
    t = threading.Timer(seconds, _thread.interrupt_main)
    t.daemon = True
    t.start()
    return t


class Spinner(labkit.Node):
    """A handler that loops (bounded only so that a failing test cannot hang forever)."""

    def on_message(self, ctx, msg):
        if msg.type == "spin":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:     # no events: the storm guard cannot see it
                pass
            ctx.reply(msg)
        elif msg.type == "echo":
            ctx.reply(msg)


def test_ctrl_c_stops_a_handler_that_never_returns_and_crashes_only_its_node():
    with quiet(labkit.Cluster(Spinner, n=2, runtime="sim", seed=4)) as c:
        c.client_send("n1", "spin")
        _interrupt_after(0.3)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt) as ei:
            c.run_for(1.0)
        took = time.monotonic() - t0
        assert isinstance(ei.value, labkit.Interrupted)
        assert took < 10, f"the interrupt took {took:.1f} s to stop the loop"
        (crash,) = c.crashes
        assert crash.node == "n1" and crash.get("error").startswith("Interrupted")
        assert "while time.monotonic() < deadline" in crash.get("traceback")   # where it was looping
        # the cell stopped, not the cluster: the rest goes on, and Ctrl-C works as usual again
        assert c.status()["n1"].state == "crashed" and c.status()["n2"].state == "up"
        assert c.request("n2", "echo").type == "echo_ok"
        c.run_for(0.5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class Stuck(labkit.Node):
    """Handlers that do not return: a busy loop, a blocking call, one after an await, one in a
    timer, one that swallows what stops it; or that run ``busy`` s and then answer."""

    def on_message(self, ctx, msg):
        if msg.type == "spin":
            while True:
                pass                                    # the line the crash report points at
        elif msg.type == "block":
            time.sleep(3600)
        elif msg.type == "later":
            return self.spin_after_sleep(ctx)
        elif msg.type == "timer":
            ctx.set_timer("spin", after=5)
        elif msg.type == "swallow":
            for _ in range(3):
                try:
                    while True:
                        pass
                except BaseException:
                    pass
        elif msg.type == "busy":
            end = time.monotonic() + msg["s"]
            while time.monotonic() < end:
                pass
        ctx.reply(msg)

    async def spin_after_sleep(self, ctx):
        await ctx.sleep(10)
        while True:
            pass

    def on_timer(self, ctx, name):
        while True:
            pass


@pytest.mark.parametrize("kind,cause", [("spin", "message client.1.1 (type 'spin' from client)"),
                                        ("block", "message client.1.1 (type 'block' from client)"),
                                        ("later", "message client.1.1 (type 'later' from client)"),
                                        ("timer", "timer 'spin'"),
                                        ("swallow", "message client.1.1 (type 'swallow' from client)")])
def test_a_handler_that_never_returns_is_stopped_in_the_simulator(kind, cause):
    """No events, so no other guard limit sees it: Guard.handler_s (wall s) stops it where it
    is, crashes its node only and ends the run with StormError, instead of hanging the cell."""
    with quiet(labkit.Cluster(Stuck, n=2, runtime="sim", seed=4, guard=Guard(handler_s=0.6))) as c:
        c.client_send("n1", kind)
        t0 = time.monotonic()
        with pytest.raises(StormError) as ei:
            c.run_for(1000)
        took = time.monotonic() - t0
        assert took < 30, f"stopped only after {took:.1f} s"
        text = str(ei.value)
        assert f"one call of its handler for {cause} ran" in text and "wall time without returning" in text
        assert "Guard(handler_s=...)" in text and "node n1" in text
        (crash,) = c.crashes
        assert crash.node == "n1" and crash.get("guard") == "handler_s"
        tb = crash.get("traceback")
        assert "test_robust_hangs.py" in tb and "labkit/runtime/sim.py" not in tb, tb  # the node's own lines
        assert c.status()["n1"].state == "crashed" and c.status()["n2"].state == "up"
        assert c.request("n2", "busy", s=0).type == "busy_ok"         # the cluster goes on
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stuck_handler_is_still_found_after_a_nested_run_of_another_cluster():
    """A reply callback of cluster a runs a request on cluster b (a nested run, which ends);
    then a's node hangs, in a's run: it is still watched."""
    a = quiet(labkit.Cluster(Stuck, n=1, runtime="sim", seed=1, guard=Guard(handler_s=0.6)))
    b = quiet(labkit.Cluster(Stuck, n=1, runtime="sim", seed=2, guard=Guard(handler_s=0.6)))
    safety = threading.Timer(30, _thread.interrupt_main)     # a regression fails, it does not hang
    try:
        def nested(ev):
            assert b.request("n1", "busy", s=0).type == "busy_ok"
            a.client_send("n1", "spin")

        a.client_send("n1", "busy", s=0, on_reply=nested)
        safety.start()
        with pytest.raises(StormError, match="type 'spin' from client"):
            a.run_for(1000)
    finally:
        safety.cancel()
        a.close()
        b.close()


def test_a_long_handler_within_the_limit_and_a_switched_off_guard_are_left_alone():
    with quiet(labkit.Cluster(Stuck, n=1, runtime="sim", seed=4, guard=Guard(handler_s=5))) as c:
        assert c.request("n1", "busy", s=1.2).type == "busy_ok"
        assert c.crashes == []
    with quiet(labkit.Cluster(Stuck, n=1, runtime="sim", seed=4, guard=None)) as c:
        assert c.request("n1", "busy", s=1.2).type == "busy_ok"
    assert Guard().resolved("sim").handler_s == 10.0 and Guard().resolved("processes").handler_s is None


def test_ctrl_c_during_a_long_simulation_stops_between_events_and_crashes_nothing():
    class Chatty(labkit.Node):
        def on_start(self, ctx):
            ctx.set_timer("t", after=1)

        def on_timer(self, ctx, name):
            ctx.broadcast("ping")
            ctx.set_timer("t", after=1)

    with labkit.Cluster(Chatty, n=3, runtime="sim", seed=5) as c:
        _interrupt_after(0.3)
        with pytest.raises(labkit.Interrupted):
            c.run_for(1e6)                               # would take hours of wall time
        assert c.crashes == []
        assert {s.state for s in c.status().values()} == {"up"}
        t = c.now
        c.run_for(0.01)                                  # and it runs on from where it stopped
        assert c.now == pytest.approx(t + 10)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind, error", [("exit", "SystemExit: 3"), ("kbi", "KeyboardInterrupt"),
                                         ("genexit", "GeneratorExit")])
def test_a_handler_raising_a_base_exception_is_that_node_s_crash(runtime, kind, error):
    with quiet(labkit.Cluster(Misbehaving, n=2, runtime=runtime, seed=6)) as c:
        t0 = time.monotonic()
        with pytest.raises(NodeCrashed, match=error):
            c.request("n1", kind, timeout=20_000)
        assert time.monotonic() - t0 < 10                # it did not wait out its timeout
        (crash,) = c.crashes
        assert crash.node == "n1" and crash.get("error").startswith(error) and crash.id
        assert c.request("n2", "echo", timeout=OK_MS).type == "echo_ok"   # the rest goes on
        c.restart("n1")
        assert c.request("n1", "echo", timeout=OK_MS).type == "echo_ok"


# -- the storm guard -------------------------------------------------------------------------
class StartLoop(labkit.Node):
    def on_start(self, ctx):
        while True:
            ctx.send(ctx.peers[0], "spam")


class Gossip(labkit.Node):
    """Answers every gossip with a broadcast: an exponential storm."""

    def on_message(self, ctx, msg):
        if msg.type in ("go", "gossip"):
            ctx.broadcast("gossip", hop=1)


def test_a_send_loop_in_on_start_is_crashed_by_the_guard_with_bounded_memory():
    limit = labkit.guard.DEFAULTS["sim"].per_handler
    with quiet(labkit.Cluster(StartLoop, n=2, runtime="sim", seed=7)) as c:
        assert {s.state for s in c.status().values()} == {"crashed"}
        for crash in c.crashes:
            assert "storm guard" in crash.get("error") and "one call of a handler" in crash.get("error")
            assert "'spam'" in crash.get("error") and crash.get("guard") == "per_handler"
            assert "ctx.send(ctx.peers[0], \"spam\")" in crash.get("traceback")
        assert len(c.journal.filter(kind="send")) == 2 * limit
        assert len(c._rt._heap) + len(c._rt._fifo) <= 2 * limit     # (arrivals wait in the FIFO beside the heap)


def test_a_send_loop_in_a_timer_stops_the_run_naming_node_and_type():
    with quiet(labkit.Cluster(SendLoop, n=2, runtime="sim", seed=8)) as c:
        with pytest.raises(StormError, match=r"storm guard: n\d produced more than 40,000 events \(sends, timers, "
                                             r"logs\) in one call of a handler without returning.*'spam'"):
            c.run_for(1)
        assert len(c.journal) < 2 * 40_000 + 100
        (crash,) = c.crashes                     # the run stopped at the first node over the limit
        assert "i += 1" not in crash.get("traceback") and "ctx.send(ctx.peers[0], \"spam\", i=i)" in crash.get("traceback")


def test_an_exponential_broadcast_storm_is_stopped_naming_node_and_type():
    with quiet(labkit.Cluster(Gossip, n=5, runtime="sim", seed=9)) as c:
        c.client_send("n1", "go")
        with pytest.raises(StormError) as ei:
            c.run_for(10)
        assert "storm guard" in str(ei.value) and "'gossip'" in str(ei.value)
        assert any(f"n{i}" in str(ei.value) for i in range(1, 6))
        assert c.now < 5.0                                  # stopped within a few virtual ms
        assert len(c.journal) < 1_000_000


def test_a_storm_over_many_nodes_is_stopped_by_the_queue_limit():
    with quiet(labkit.Cluster(Gossip, n=20, runtime="sim", seed=9)) as c:
        c.client_send("n1", "go")
        with pytest.raises(StormError, match=r"more than 300,000 events are waiting.*'gossip' messages from n\d+"):
            c.run_for(10)


def test_a_zero_ms_timer_is_stopped_in_the_simulator():
    with quiet(labkit.Cluster(ZeroTimer, n=1, runtime="sim", seed=10)) as c:
        pass
    with quiet(labkit.Cluster(ZeroTimer, n=1, runtime="sim", seed=10)) as c:
        with pytest.raises(StormError, match=r"n1 woke up more than 10,000 times.*timer 'spin'"):
            c.run_for(1)


def test_guard_limits_can_be_raised_lowered_or_switched_off():
    class Burst(labkit.Node):
        def on_message(self, ctx, msg):
            if msg.type == "go":
                for _ in range(msg["n"]):
                    ctx.send(ctx.peers[0], "x")
                ctx.reply(msg)

    with labkit.Cluster(Burst, n=2, runtime="sim", seed=11) as c:       # defaults: 20k sends are fine
        c.request("n1", "go", n=20_000)
    with quiet(labkit.Cluster(Burst, n=2, runtime="sim", seed=11, guard=Guard(per_handler=100))) as c:
        with pytest.raises(StormError, match="n1 produced more than 100 events"):
            c.request("n1", "go", n=101)
        assert c.status()["n1"].state == "crashed"
    with labkit.Cluster(Burst, n=2, runtime="sim", seed=11, guard=None) as c:
        c.request("n1", "go", n=120_000)
        assert c.crashes == []


@pytest.mark.processes
def test_processes_a_send_loop_is_crashed_with_the_reason_and_bounded():
    limit = labkit.guard.DEFAULTS["processes"].per_handler
    with quiet(labkit.Cluster(SendLoop, n=2, runtime="processes", seed=12)) as c:
        deadline = time.monotonic() + 30
        while c.status()["n1"].state == "up" and time.monotonic() < deadline:
            c.run_for(0.2)
        st = c.status()
        assert st["n1"].state == "crashed" and st["n2"].state == "crashed"
        for crash in c.crashes:
            assert "storm guard" in crash.get("error") and "'spam'" in crash.get("error"), crash.get("error")
        sends = c.journal.filter(kind="send", type="spam")
        assert len(sends) <= 2 * limit
        c.run_for(0.5)
        assert len(c.journal.filter(kind="send", type="spam")) == len(sends)   # nothing more


@pytest.mark.processes
def test_processes_a_zero_ms_timer_is_crashed_with_the_reason():
    with quiet(labkit.Cluster({"n1": ZeroTimer(), "n2": Quiet()}, runtime="processes", seed=13)) as c:
        deadline = time.monotonic() + 30
        while c.status()["n1"].state == "up" and time.monotonic() < deadline:
            c.run_for(0.2)
        assert c.status()["n1"].state == "crashed"
        (crash,) = c.crashes
        assert "woke up more than 10,000 times" in crash.get("error") and "'spin'" in crash.get("error")
        assert crash.get("guard") == "wakeups"
        fires = len(c.journal.filter(kind="timer_fire", node="n1"))
        c.run_for(0.5)
        assert len(c.journal.filter(kind="timer_fire", node="n1")) == fires                # bounded
        assert c.request("n2", "echo", timeout=OK_MS).type == "echo_ok"


# -- requests to nodes that are down fail fast ---------------------------------------------
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_request_to_a_killed_or_crashed_node_fails_at_once(runtime):
    with quiet(labkit.Cluster(Misbehaving, n=2, runtime=runtime, seed=14)) as c:
        c.kill("n1")
        t0, now0 = time.monotonic(), c.now
        with pytest.raises(NodeCrashed, match="n1 is down") as ei:
            c.request("n1", "echo", timeout=60_000)
        assert time.monotonic() - t0 < 2
        # a NodeDown: also a RequestTimeout, so `except RequestTimeout` ("no answer") still works
        assert isinstance(ei.value, labkit.NodeDown) and isinstance(ei.value, labkit.RequestTimeout)
        # journaled as an attempt that the dead node dropped (so histories show it), never sent
        if runtime == "sim":
            assert c.now == now0                            # no virtual time waited either
        (sent,) = c.journal.filter(kind="send", node="client").events
        assert [e.get("rule") for e in c.journal.filter(kind="drop", id=sent.id)] == ["node down"]
        c.restart("n1")
        c.run_for(0.2)
        assert c.journal.filter(kind="deliver", id=sent.id).events == []   # not handled after restart
        with pytest.raises(NodeCrashed):
            c.request("n1", "exit", timeout=60_000)
        t0 = time.monotonic()
        with pytest.raises(NodeCrashed, match="n1 is crashed"):
            c.request("n1", "echo", timeout=60_000)
        assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_request_fails_as_soon_as_its_node_crashes_while_it_waits(runtime):
    with quiet(labkit.Cluster(Misbehaving, n=2, runtime=runtime, seed=15)) as c:
        c.client_send("n1", "crash_later", ms=300)   # n1 crashes in 300 ms, in a timer
        t0, now0 = time.monotonic(), c.now
        with pytest.raises(NodeCrashed, match="n1 went crashed while request"):
            c.request("n1", "unanswered", timeout=60_000)   # a type n1 never answers
        assert time.monotonic() - t0 < 20
        if runtime == "sim":
            assert 300 <= c.now - now0 < 1000


# -- fault calls and a stopped or stuck node -------------------------------------------------
@pytest.mark.processes
def test_fault_calls_do_not_block_on_a_sigstopped_node_and_apply_when_it_resumes():
    with quiet(labkit.Cluster(Quiet, n=2, runtime="processes", seed=16)) as c:
        pid = c.status()["n2"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 5
            while psutil.Process(pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
                time.sleep(0.005)                         # (the stop lands a moment after the signal)
            t0 = time.monotonic()
            with pytest.warns(RuntimeWarning, match="n2 is stopped") as rec:
                c.partition(["n1"], ["n2"])
            with warnings.catch_warnings():
                warnings.simplefilter("error")               # no new warning while it lags
                c.heal()
                c.partition(["n1"], ["n2"])
            assert time.monotonic() - t0 < 1.0, "fault calls waited for the stopped node"
            assert "n2 applies it" in str(rec[0].message)
        finally:
            os.kill(pid, signal.SIGCONT)
        # n2 applies the partition before anything else: n1's pings are dropped by the partition
        t = c.now
        c.request("n1", "poke", timeout=OK_MS, to="n2")
        deadline = time.monotonic() + 10
        while not c.journal.filter(kind="drop", node="n2", since=t) and time.monotonic() < deadline:
            c.run_for(0.05)
        drops = c.journal.filter(kind="drop", node="n2", since=t).events
        assert drops and {e.get("rule") for e in drops} == {"partition"}
        assert c.journal.filter(kind="deliver", node="n2", since=t, type="ping").events == []
        c.heal()                                          # n2 has caught up: acked at once, no warning
        assert c._rt._lagging == {}


@pytest.mark.processes
def test_fault_calls_on_a_stuck_node_wait_once_briefly_then_not_at_all():
    with quiet(labkit.Cluster(Misbehaving, n=2, runtime="processes", seed=17)) as c:
        c.client_send("n2", "sleep", s=4.0)                # n2 is stuck in a handler for 4 s
        c.run_for(0.3)
        t0 = time.monotonic()
        with pytest.warns(RuntimeWarning, match=r"n2 did not acknowledge it within 1 s"):
            c.skew("n2", offset_ms=5000)
        first = time.monotonic() - t0
        t0 = time.monotonic()
        c.cut("n1", "n2")
        c.uncut("n1", "n2")
        rest = time.monotonic() - t0
        assert first < 2.5 and rest < 0.5, (first, rest)
        # when n2 gets going again, it has applied the skew before handling the next message
        assert c.request("n2", "echo", timeout=10_000).type == "echo_ok"
        true_now = c.now
        assert c.request("n2", "now", timeout=OK_MS)["now"] >= true_now + 4000
        c.heal()
        assert c._rt._lagging == {}                       # caught up: later calls wait for it again


INTERRUPT_SCRIPT = """
import sys, time
import labkit

class Stuck(labkit.Node):
    def on_message(self, ctx, msg):
        if msg.type == "stuck":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:   # stuck in a blocking call, not in Python code
                time.sleep(0.05)
        ctx.reply(msg)

c = labkit.Cluster(Stuck, n=2, runtime="sim", seed=1)
c.client_send("n1", "stuck")
print("ready", flush=True)
t0 = time.monotonic()
try:
    c.run_for(10)
except KeyboardInterrupt as e:
    print("interrupted", type(e).__name__, round(time.monotonic() - t0, 1), flush=True)
print("states", c.status()["n1"].state, c.status()["n2"].state, flush=True)
print("echo", c.request("n2", "echo").type, flush=True)
"""


def test_a_real_sigint_stops_a_handler_stuck_in_a_blocking_call(tmp_path):
    """A real SIGINT (what "interrupt kernel" sends) to a process whose simulator is stuck in
    a handler that sleeps in a loop: the cell ends with Interrupted, the node is crashed."""
    import subprocess
    import sys
    script = tmp_path / "stuck.py"
    script.write_text(INTERRUPT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(
        labkit.__file__)), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)                                   # let it get stuck in the handler
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = out.splitlines()
    assert lines[0].startswith("interrupted Interrupted"), (out, err[-2000:])
    assert float(lines[0].split()[-1]) < 10
    assert lines[1:] == ["states crashed up", "echo echo_ok"], (out, err[-2000:])
    assert "labkit.errors.Interrupted: the simulator was interrupted" in err and "time.sleep(0.05)" in err


@pytest.mark.processes
def test_interrupt_kernel_stops_a_simulated_handler_that_never_returns(tmp_path):
    """In a real Jupyter kernel: "interrupt kernel" during a simulator run whose handler loops
    without end ends the cell (within about a second), crashes only that node, and the next
    cell uses the cluster as usual."""
    try:
        from .kernelutil import Kernel
    except ImportError:
        from kernelutil import Kernel
    k = Kernel(tmp_path)
    try:
        k.ok("import labkit, json, time\n"
             "class Spin(labkit.Node):\n"
             "    def on_message(self, ctx, msg):\n"
             "        if msg.type == 'spin':\n"
             "            deadline = time.monotonic() + 30\n"
             "            while time.monotonic() < deadline:\n"
             "                pass\n"
             "        ctx.reply(msg)\n"
             "c = labkit.Cluster(Spin, n=2, runtime='sim', seed=1)\n"
             "c.client_send('n1', 'spin')\n")
        timer = threading.Timer(0.8, k.km.interrupt_kernel)
        t0 = time.monotonic()
        timer.start()
        try:
            out = k.run("c.run_for(5)", timeout=60)
        finally:
            timer.cancel()
        took = time.monotonic() - t0
        assert out["status"] == "error" and out["error"][0] == "Interrupted", out
        assert took < 10, took
        assert "labkit: node n1 crashed" in out["stderr"]
        out = k.ok("print('STATES', json.dumps({n: s.state for n, s in c.status().items()}, sort_keys=True))\n"
                   "print('ECHO', c.request('n2', 'echo').type)\n"
                   "c.run_for(1)\n")
        lines = dict(line.split(" ", 1) for line in out["stdout"].splitlines())
        assert json.loads(lines["STATES"]) == {"n1": "crashed", "n2": "up"}
        assert lines["ECHO"] == "echo_ok"
    finally:
        k.close()


@pytest.mark.parametrize("bad", [NAN, INF, -1.0])
def test_fake_context_advance_refuses_bad_times(bad):
    from labkit.testing import FakeContext
    ctx = FakeContext()
    with pytest.raises(ArgumentError, match=r"FakeContext.advance\(ms\)"):
        ctx.advance(bad)
    assert ctx.now == 0.0


def test_panel_refuses_a_bad_refresh_rate():
    with labkit.Cluster(Quiet, n=1, runtime="sim", seed=1) as c:
        for bad in (NAN, INF, 0, -1):
            with pytest.raises(ValueError, match="refresh_hz"):
                c.panel(refresh_hz=bad)


@pytest.mark.processes
def test_processes_a_loop_that_swallows_the_guard_still_ends():
    try:
        from .robustnodes import SwallowingLoop
    except ImportError:
        from robustnodes import SwallowingLoop
    with quiet(labkit.Cluster({"n1": SwallowingLoop(), "n2": Quiet()}, runtime="processes", seed=18)) as c:
        deadline = time.monotonic() + 30
        while c.status()["n1"].state == "up" and time.monotonic() < deadline:
            c.run_for(0.2)
        assert c.status()["n1"].state == "crashed"
        (crash,) = c.crashes
        assert "storm guard" in crash.get("error")
        assert c.request("n2", "echo", timeout=OK_MS).type == "echo_ok"
