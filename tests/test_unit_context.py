"""Unit tests of nodes against ``labkit.testing.FakeContext``: no cluster, no processes.

Each test drives a tiny node through the real ``Context`` on the fake host and checks the
messages it sent, the timers it fired (and when), the coroutines it resumed and the crashes
it reported.
"""
from __future__ import annotations

import asyncio

import pytest

import labkit
from labkit import Message, MessageError, RpcTimeout, StorageError, UnknownNode
from labkit.testing import FakeContext


# -- small nodes ---------------------------------------------------------------------------

class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        ctx.reply(msg, echo=msg.body.get("echo"))


class Recorder(labkit.Node):
    """Remembers every message and every timer firing, with the node clock at that moment."""

    def __init__(self):
        self.messages: list[Message] = []
        self.fired: list[tuple[str, float]] = []

    def on_message(self, ctx, msg):
        self.messages.append(msg)

    def on_timer(self, ctx, name):
        self.fired.append((name, ctx.now))


class Coordinator(labkit.Node):
    """On timer 'go': rpc to n2 and remember what came back (a Message or the RpcTimeout)."""

    def __init__(self, timeout=500):
        self.timeout = timeout
        self.outcome = None
        self.resumed_at = None
        self.other_messages: list[Message] = []

    async def on_timer(self, ctx, name):
        try:
            self.outcome = await ctx.rpc("n2", "get", timeout=self.timeout, key="x")
        except RpcTimeout as e:
            self.outcome = e
        self.resumed_at = ctx.now

    def on_message(self, ctx, msg):
        self.other_messages.append(msg)


def fresh(node=None, **kw):
    """A context for n1 (peers n2, n3); timers armed directly on it reach ``node``."""
    return FakeContext("n1", peers=("n2", "n3"), node=node, **kw)


# -- send / reply / broadcast --------------------------------------------------------------

def test_send_produces_message_with_src_dst_type_body_and_fresh_id():
    ctx = fresh()
    mid1 = ctx.send("n2", "ping", x=1, tags=["a"])
    mid2 = ctx.send("n3", "ping", x=2)
    assert mid1 != mid2 and mid1 and mid2
    m1, m2 = ctx.sent
    assert (m1.src, m1.dst, m1.type, m1.id, m1.body, m1.in_reply_to) == \
        ("n1", "n2", "ping", mid1, {"x": 1, "tags": ["a"]}, None)
    assert (m2.dst, m2.id, m2.body) == ("n3", mid2, {"x": 2})
    assert ctx.outbox(type="ping", dst="n3") == [m2]


def test_send_copies_the_body_at_send_time():
    ctx = fresh()
    items = [1, 2]
    nested = {"k": [0]}
    ctx.send("n2", "put", items=items, nested=nested, pair=(1, 2))
    items.append(3)
    nested["k"].append(99)
    sent = ctx.sent[-1]
    assert sent.body == {"items": [1, 2], "nested": {"k": [0]}, "pair": [1, 2]}  # tuples arrive as lists


def test_reply_goes_to_source_with_in_reply_to_and_default_type():
    ctx = fresh()
    node = Echo()
    msg = ctx.deliver(node, "echo", src="n3", echo="hi")
    assert len(ctx.sent) == 1
    r = ctx.sent[0]
    assert r.src == "n1" and r.dst == "n3"
    assert r.type == "echo_ok"
    assert r.in_reply_to == msg.id
    assert r.body == {"echo": "hi"}


def test_reply_with_explicit_type_and_to_a_client():
    class Node(labkit.Node):
        def on_message(self, ctx, msg):
            ctx.reply(msg, type="read_ok", value=7)

    ctx = fresh()
    msg = ctx.deliver(Node(), "read", src="c1")
    r = ctx.sent[-1]
    assert (r.dst, r.type, r.in_reply_to, r.body) == ("c1", "read_ok", msg.id, {"value": 7})


def test_reply_needs_a_message():
    ctx = fresh()
    with pytest.raises(MessageError, match="reply"):
        ctx.reply({"src": "n2", "id": "x"}, type="nope")
    assert ctx.sent == []


def test_broadcast_sends_one_copy_to_each_peer():
    ctx = fresh()
    ids = ctx.broadcast("gossip", value=[1])
    assert [m.dst for m in ctx.sent] == ["n2", "n3"]
    assert [m.id for m in ctx.sent] == ids
    assert len(set(ids)) == 2
    assert all(m.type == "gossip" and m.body == {"value": [1]} and m.src == "n1" for m in ctx.sent)


def test_send_records_a_send_event_with_wire_fields():
    ctx = fresh()
    ctx.advance(12.5)
    mid = ctx.send("n2", "ping", x=1)
    ev = [e for e in ctx.events if e.kind == "send"][-1]
    assert ev.id == mid and ev.node == "n1" and ev.t == 12.5
    assert (ev.src, ev.dst, ev.type, ev["body"], ev["at"]) == ("n1", "n2", "ping", {"x": 1}, 12.5)


def test_unknown_destination_raises_unknown_node_naming_it():
    ctx = fresh()
    with pytest.raises(UnknownNode) as ei:
        ctx.send("n9", "ping")
    text = str(ei.value)
    assert "'n9'" in text
    assert text.startswith("n1:")  # a readable message, not KeyError's quoted repr
    assert ctx.sent == []


def test_non_serialisable_body_raises_message_error_naming_the_field():
    ctx = fresh()
    with pytest.raises(MessageError) as ei:
        ctx.send("n2", "put", ok=1, members={1, 2})
    assert "'members'" in str(ei.value)
    assert "'ok'" not in str(ei.value)
    assert ctx.sent == []


def test_nan_in_body_is_rejected():
    ctx = fresh()
    with pytest.raises(MessageError, match="'score'"):
        ctx.send("n2", "put", score=float("nan"))


@pytest.mark.parametrize("bad_type", ["", None, 3])
def test_message_type_must_be_a_non_empty_string(bad_type):
    ctx = fresh()
    with pytest.raises(MessageError, match="type"):
        ctx.send("n2", bad_type)


# -- timers --------------------------------------------------------------------------------

def test_set_timer_after_fires_exactly_then():
    node = Recorder()
    ctx = fresh(node)
    assert ctx.set_timer("t", after=100) == 100
    assert ctx.timers == ("t",)
    ctx.advance(99.9)
    assert node.fired == []
    ctx.advance(0.1)
    assert node.fired == [("t", 100.0)]
    assert ctx.timers == ()
    ctx.advance(1000)
    assert node.fired == [("t", 100.0)]  # one-shot


def test_set_timer_between_fires_at_the_returned_delay_within_bounds():
    seen = set()
    for seed in range(20):
        node = Recorder()
        ctx = fresh(node, seed=seed)
        after = ctx.set_timer("t", between=(50, 100))
        assert 50 <= after <= 100
        ctx.advance(after - 0.001)
        assert node.fired == []
        ctx.advance(0.001)
        assert node.fired == [("t", pytest.approx(after))]
        seen.add(round(after, 6))
    assert len(seen) > 10  # the jitter is actually drawn, and depends on the seed


def test_timer_jitter_is_deterministic_per_seed():
    a = [fresh(seed=42).set_timer("t", between=(0, 1000)) for _ in range(2)]
    assert a[0] == a[1]
    assert fresh(seed=43).set_timer("t", between=(0, 1000)) != a[0]


def test_timers_fire_in_time_order_through_on_start():
    class Node(Recorder):
        def on_start(self, ctx):
            ctx.set_timer("slow", after=30)
            ctx.set_timer("fast", after=10)
            ctx.set_timer("mid", after=20)

    node = Node()
    ctx = fresh()
    ctx.start(node)
    ctx.advance(100)
    assert node.fired == [("fast", 10.0), ("mid", 20.0), ("slow", 30.0)]


def test_rearming_a_timer_replaces_it():
    node = Recorder()
    ctx = fresh(node)
    ctx.set_timer("t", after=100)
    ctx.advance(50)
    ctx.set_timer("t", after=100)  # now due at 150, not 100
    ctx.advance(60)
    assert node.fired == []
    ctx.advance(40)
    assert node.fired == [("t", 150.0)]
    ctx.advance(500)
    assert len(node.fired) == 1


def test_periodic_timer_rearmed_from_on_timer():
    class Ticker(Recorder):
        def on_timer(self, ctx, name):
            super().on_timer(ctx, name)
            ctx.set_timer(name, after=25)

    node = Ticker()
    ctx = fresh(node)
    ctx.set_timer("tick", after=25)
    ctx.advance(100)
    assert [t for _, t in node.fired] == [25.0, 50.0, 75.0, 100.0]


def test_cancel_timer():
    node = Recorder()
    ctx = fresh(node)
    ctx.set_timer("a", after=10)
    ctx.set_timer("b", after=20)
    assert ctx.cancel_timer("a") is True
    assert ctx.cancel_timer("a") is False
    assert ctx.cancel_timer("never") is False
    assert ctx.timers == ("b",)
    ctx.advance(100)
    assert node.fired == [("b", 20.0)]


@pytest.mark.parametrize("kwargs", [{}, {"after": 1, "between": (1, 2)}, {"between": (5, 1)},
                                    {"between": (-1, 2)}, {"after": -5}])
def test_set_timer_rejects_bad_arguments(kwargs):
    ctx = fresh()
    with pytest.raises(ValueError, match="set_timer"):
        ctx.set_timer("t", **kwargs)
    assert ctx.timers == ()


def test_timer_events_are_journalled():
    node = Recorder()
    ctx = fresh(node)
    ctx.set_timer("t", after=5)
    ctx.advance(5)
    kinds = [(e.kind, e.get("name"), e.t) for e in ctx.events if e.kind.startswith("timer")]
    assert kinds == [("timer_set", "t", 0.0), ("timer_fire", "t", 5.0)]


# -- coroutine handlers --------------------------------------------------------------------

def test_rpc_resumes_with_the_reply():
    node = Coordinator(timeout=500)
    ctx = fresh(node)
    ctx.set_timer("go", after=0)
    ctx.advance(0)
    req = ctx.sent[-1]
    assert (req.dst, req.type, req.body) == ("n2", "get", {"key": "x"})
    assert node.outcome is None  # suspended
    ctx.advance(30)
    reply = ctx.deliver(node, "get_ok", src="n2", in_reply_to=req.id, value=42)
    assert isinstance(node.outcome, Message)
    assert node.outcome.id == reply.id and node.outcome.body == {"value": 42}
    assert node.resumed_at == 30.0
    assert node.other_messages == []  # the reply went to the coroutine, not on_message
    ctx.advance(1000)  # the cancelled timeout must not fire afterwards
    assert isinstance(node.outcome, Message)


def test_rpc_raises_rpc_timeout_after_the_timeout():
    node = Coordinator(timeout=500)
    ctx = fresh(node)
    ctx.set_timer("go", after=10)
    ctx.advance(10)
    req_id = ctx.sent[-1].id
    ctx.advance(499)
    assert node.outcome is None
    ctx.advance(1)
    assert isinstance(node.outcome, RpcTimeout)
    assert node.resumed_at == 510.0
    assert "n2" in str(node.outcome) and req_id in str(node.outcome) and "500" in str(node.outcome)


def test_late_reply_after_rpc_timeout_is_counted_not_handled():
    node = Coordinator(timeout=100)
    ctx = fresh(node)
    ctx.set_timer("go", after=0)
    ctx.advance(0)
    req_id = ctx.sent[-1].id
    ctx.advance(200)
    assert isinstance(node.outcome, RpcTimeout)
    ctx.deliver(node, "get_ok", in_reply_to=req_id, value=1)
    assert isinstance(node.outcome, RpcTimeout)
    assert node.other_messages == []
    assert ctx.counters.get("late_replies") == 1


def test_uncaught_rpc_timeout_crashes_the_node():
    class Node(labkit.Node):
        async def on_timer(self, ctx, name):
            await ctx.rpc("n2", "get", timeout=50)

    ctx = fresh(Node(), raise_on_crash=False)
    ctx.set_timer("go", after=0)
    ctx.advance(100)
    assert ctx.crash is not None
    assert ctx.crash.get("error").startswith("RpcTimeout")
    assert ctx.dead


def test_duplicate_reply_to_an_rpc_is_not_handed_to_on_message():
    # Node.on_message: "Called for every message delivered to this node (replies to ctx.rpc
    # excepted)". A network that duplicates messages (link duplicate=...) delivers a reply twice.
    node = Coordinator(timeout=500)
    ctx = fresh(node)
    ctx.set_timer("go", after=0)
    ctx.advance(0)
    req_id = ctx.sent[-1].id
    ctx.deliver(node, "get_ok", in_reply_to=req_id, value=1)
    ctx.deliver(node, "get_ok", in_reply_to=req_id, value=1)  # the duplicate copy
    assert isinstance(node.outcome, Message)
    assert node.other_messages == []


def test_several_rpcs_in_sequence_and_parallel_coroutines():
    class Node(labkit.Node):
        def __init__(self):
            self.results = []

        async def on_message(self, ctx, msg):
            a = await ctx.rpc("n2", "get", key=msg.body["key"])
            b = await ctx.rpc("n3", "get", key=msg.body["key"])
            self.results.append((msg.body["key"], a.body["v"], b.body["v"]))

    node = Node()
    ctx = fresh(node)
    ctx.deliver(node, "read", src="c1", key="x")
    ctx.deliver(node, "read", src="c1", key="y")
    rx, ry = ctx.sent[0], ctx.sent[1]
    assert (rx.dst, rx.body, ry.dst, ry.body) == ("n2", {"key": "x"}, "n2", {"key": "y"})
    ctx.deliver(node, "get_ok", in_reply_to=ry.id, v=2)   # answers arrive out of order
    ctx.deliver(node, "get_ok", in_reply_to=rx.id, v=1)
    second = {m.body["key"]: m for m in ctx.sent[2:]}
    assert set(second) == {"x", "y"} and all(m.dst == "n3" for m in second.values())
    ctx.deliver(node, "get_ok", in_reply_to=second["y"].id, v=20)
    ctx.deliver(node, "get_ok", in_reply_to=second["x"].id, v=10)
    assert node.results == [("y", 2, 20), ("x", 1, 10)]


def test_sleep_resumes_after_the_given_ms():
    class Node(labkit.Node):
        def __init__(self):
            self.marks = []

        async def on_start(self, ctx):
            self.marks.append(ctx.now)
            await ctx.sleep(40)
            self.marks.append(ctx.now)
            await ctx.sleep(0)
            self.marks.append(ctx.now)

    node = Node()
    ctx = fresh()
    ctx.advance(5)
    ctx.start(node)
    assert node.marks == [5.0]
    ctx.advance(39)
    assert node.marks == [5.0]
    ctx.advance(1)
    assert node.marks == [5.0, 45.0, 45.0]


@pytest.mark.parametrize("bad", [-1, "10"])
def test_sleep_and_rpc_validate_arguments(bad):
    ctx = fresh()
    with pytest.raises(ValueError, match="sleep"):
        ctx.sleep(bad)
    with pytest.raises(ValueError, match="timeout"):
        ctx.rpc("n2", "get", timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        ctx.rpc("n2", "get", timeout=0)


def _crash_of_awaiting(awaitable_factory):
    class Node(labkit.Node):
        async def on_timer(self, ctx, name):
            await awaitable_factory()

    ctx = fresh(Node(), raise_on_crash=False)
    ctx.set_timer("go", after=0)
    ctx.advance(10)
    return ctx


def test_awaiting_asyncio_sleep_zero_crashes_with_a_clear_type_error():
    ctx = _crash_of_awaiting(lambda: asyncio.sleep(0))
    assert ctx.crash is not None
    err = ctx.crash.get("error")
    assert err.startswith("TypeError")
    assert "ctx.rpc" in err and "ctx.sleep" in err
    assert ctx.crash.get("cause") == "timer 'go'"


def test_awaiting_asyncio_sleep_with_a_delay_crashes_with_a_clear_type_error():
    # The natural student mistake is ``await asyncio.sleep(0.1)``, not ``asyncio.sleep(0)``.
    ctx = _crash_of_awaiting(lambda: asyncio.sleep(0.05))
    assert ctx.crash is not None
    err = ctx.crash.get("error")
    assert err.startswith("TypeError"), err
    assert "ctx.sleep" in err, err


def test_a_crash_is_reported_by_default_as_an_assertion_with_the_traceback():
    class Boom(labkit.Node):
        def on_message(self, ctx, msg):
            raise RuntimeError("kaboom")

    ctx = fresh()
    with pytest.raises(AssertionError, match="kaboom"):
        ctx.deliver(Boom(), "x")


def test_a_crashed_node_ignores_further_input_and_sends_nothing():
    class Boom(labkit.Node):
        def __init__(self):
            self.calls = 0

        def on_message(self, ctx, msg):
            self.calls += 1
            ctx.set_timer("later", after=10)
            raise ValueError("bad input")

        def on_timer(self, ctx, name):
            ctx.send("n2", "should_not_happen")

    node = Boom()
    ctx = fresh(node, raise_on_crash=False)
    m = ctx.deliver(node, "x", src="n3")
    assert ctx.crash.get("error") == "ValueError: bad input"
    assert ctx.crash.id == m.id and m.id in ctx.crash.get("cause")
    assert "Traceback" in ctx.crash.get("traceback")
    ctx.deliver(node, "x", src="n3")
    ctx.advance(100)
    assert node.calls == 1
    assert ctx.sent == []


# -- storage -------------------------------------------------------------------------------

def test_storage_copies_values_in_and_out():
    ctx = fresh()
    log = [{"term": 1}]
    ctx.storage["log"] = log
    log.append({"term": 2})  # mutating what was stored does not change the store
    assert ctx.storage["log"] == [{"term": 1}]
    got = ctx.storage["log"]
    got.append({"term": 3})  # nor does mutating what was read
    assert ctx.storage["log"] == [{"term": 1}]
    ctx.storage["log"] = got
    assert ctx.storage["log"] == [{"term": 1}, {"term": 3}]


def test_storage_is_dict_like():
    ctx = fresh(storage={"a": 1})
    assert ctx.storage["a"] == 1
    ctx.storage["b"] = (1, 2)
    assert ctx.storage["b"] == [1, 2]
    assert sorted(ctx.storage) == ["a", "b"] and len(ctx.storage) == 2 and "b" in ctx.storage
    assert ctx.storage.get("missing", "dflt") == "dflt"
    del ctx.storage["a"]
    assert "a" not in ctx.storage
    with pytest.raises(KeyError):
        ctx.storage["a"]


@pytest.mark.parametrize("value", [{1, 2}, object(), float("nan"), {"nested": {"bad": b"bytes"}}])
def test_storage_rejects_non_json_values_naming_the_key(value):
    ctx = fresh()
    ctx.storage["voted_for"] = "n2"
    with pytest.raises(StorageError) as ei:
        ctx.storage["voted_for"] = value
    assert "'voted_for'" in str(ei.value)
    assert ctx.storage["voted_for"] == "n2"  # the old value is intact


def test_storage_keys_must_be_strings():
    ctx = fresh()
    with pytest.raises(StorageError, match="keys"):
        ctx.storage[1] = "x"


# -- randomness ----------------------------------------------------------------------------

def test_rng_is_the_same_for_the_same_seed_node_and_incarnation():
    a = FakeContext("n1", seed=7, incarnation=1).rng
    b = FakeContext("n1", seed=7, incarnation=1).rng
    assert [a.random() for _ in range(5)] == [b.random() for _ in range(5)]


def test_rng_differs_across_incarnations_nodes_and_seeds():
    def seq(node="n1", seed=7, inc=1):
        peers = [p for p in ("n1", "n2", "n3") if p != node]
        r = FakeContext(node, peers=peers, seed=seed, incarnation=inc).rng
        return [r.random() for _ in range(5)]

    base = seq()
    assert seq(inc=2) != base
    assert seq(node="n2") != base
    assert seq(seed=8) != base
    assert seq(inc=2) != seq(inc=3)


def test_using_rng_does_not_change_timer_jitter():
    a = fresh(seed=3)
    b = fresh(seed=3)
    for _ in range(10):
        b.rng.random()
    assert a.set_timer("t", between=(0, 100)) == b.set_timer("t", between=(0, 100))


# -- observability -------------------------------------------------------------------------

def test_log_count_and_report():
    class Node(labkit.Node):
        def on_message(self, ctx, msg):
            ctx.log("got", msg.type, 3)
            ctx.count("msgs")
            ctx.count("bytes", by=10)
            ctx.report(role="leader", term=2)

    node = Node()
    ctx = fresh()
    ctx.deliver(node, "a")
    ctx.deliver(node, "b")
    assert [e.get("text") for e in ctx.events if e.kind == "log"] == ["got a 3", "got b 3"]
    assert ctx.counters == {"msgs": 2, "bytes": 20}
    ctx.advance(1000)
    stats = [e for e in ctx.events if e.kind == "stats"]
    assert len(stats) == 1  # coalesced
    assert stats[0].get("counters") == {"msgs": 2, "bytes": 20}
    assert stats[0].get("status") == {"role": "leader", "term": 2}


def test_recent_rpc_ids_keep_at_least_the_last_keep_and_at_most_twice_that():
    from labkit.context import RecentIds
    r = RecentIds(keep=100)
    for i in range(1_000):
        r.add(f"n1.1.{i}")
        # every id among the last `keep` is still known, whatever the generation it is in
        assert all(f"n1.1.{j}" in r for j in range(max(0, i - 99), i + 1)), i
        assert len(r) <= 200, (i, len(r))
    assert "n1.1.0" not in r and "n1.1.799" not in r
    assert "n1.1.900" in r and "n1.1.999" in r


def test_fake_context_refuses_what_a_cluster_would_refuse():
    """Ids a Cluster refuses, a node among its own peers, a message from a node that is not
    there and a bad type or HTTP method fail at the call that made them -- not later, as a
    crash inside the handler."""
    class Echo(labkit.Node):
        def on_message(self, ctx, msg):
            ctx.reply(msg)

    with pytest.raises(ValueError, match="bad node id 'n 1'"):
        FakeContext("n 1")
    with pytest.raises(ValueError, match="bad node id 'c0'"):
        FakeContext("n1", peers=["c0"])
    with pytest.raises(ValueError, match="peers are the other nodes, each once"):
        FakeContext("n1", peers=["n1", "n2"])
    assert FakeContext("n1", peers="n2").peers == ("n2",)          # one peer, not 'n' and '2'
    ctx = FakeContext("n1", peers=["n2"])
    with pytest.raises(ValueError, match=r"deliver\(src='n9'\): 'n9' is not n1, one of its peers \(n2\)"):
        ctx.deliver(Echo(), "x", src="n9")
    with pytest.raises(MessageError, match="non-empty string type, got None"):
        ctx.deliver(Echo(), None)
    for src in ("n1", "n2", "client", "c3"):                          # itself, a peer, clients
        assert ctx.deliver(Echo(), "x", src=src).src == src
    assert [m.dst for m in ctx.outbox()] == ["n1", "n2", "client", "c3"]


def test_fake_context_fetch_refuses_a_method_cluster_http_refuses():
    class Svc(labkit.Service):
        @labkit.get("/a")
        async def a(self, ctx, req):
            return labkit.Response(text="a")

    ctx = FakeContext("n1")
    assert ctx.fetch(Svc(), "get", "/a").status == 200
    with pytest.raises(labkit.ArgumentError, match="method must be one of"):
        ctx.fetch(Svc(), "FETCH", "/a")
