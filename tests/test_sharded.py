"""labkit.systems.shardmap and labkit.systems.sharded: slot plans, the fenced shard's rules one message at a
time, and the store as a whole -- a node joins while clients write, with and without faults."""
from __future__ import annotations

import random
from collections import Counter

import pytest

import labkit
from labkit.systems.sharded import Shard, UnfencedShard, store_nodes
from labkit.systems.shardmap import SLOTS, even_map, normalize, plan_join, plan_leave, slot_of, to_json
from labkit.testing import FakeContext

SHARDS = ["n1", "n2", "n3", "n4"]


# -- shard maps -----------------------------------------------------------------------------------
def test_plan_join_moves_the_fair_share_from_the_fullest_nodes():
    m = even_map(SHARDS, 32)
    moves = plan_join(m, "n5")
    assert len(moves) == 32 // 5 and set(moves.values()) == {"n5"}
    donors = Counter(m[s][0] for s in moves)
    assert max(donors.values()) - min(donors.values()) <= 1 and len(donors) == 4
    with pytest.raises(ValueError, match="already owns"):
        plan_join(m, "n1")


def test_plan_leave_spreads_a_nodes_slots_over_the_others():
    m = even_map(SHARDS, 32)
    moves = plan_leave(m, "n2")
    assert sorted(moves) == [s for s in range(32) if m[s][0] == "n2"]
    assert "n2" not in moves.values()
    after = Counter({**{s: o for s, (o, _) in m.items()}, **moves}.values())
    assert max(after.values()) - min(after.values()) <= 1
    with pytest.raises(ValueError, match="only owner"):
        plan_leave(even_map(["a"], 4), "a")


def test_maps_are_validated_and_travel_as_json():
    m = even_map(SHARDS, 8)
    assert normalize(to_json(m)) == m
    with pytest.raises(ValueError, match=r"slot '3' has \['n1'\]"):
        normalize({**to_json(m), "3": ["n1"]})
    with pytest.raises(ValueError, match="0..n-1"):
        normalize({"1": ["n1", 1]})
    with pytest.raises(ValueError, match="at least as many slots"):
        even_map(SHARDS, 2)
    assert all(0 <= slot_of(f"k{i}") < SLOTS for i in range(100))


# -- one shard, one message at a time ---------------------------------------------------------------
def _shard(cls=Shard, node="n1"):
    m = even_map(["n1", "n2"], 4)                # n1 owns slots 0 and 2, n2 owns 1 and 3
    ctx = FakeContext(node, [n for n in ("n1", "n2", "n5", "cfg", "r1") if n != node])
    shard = cls(m)
    ctx.start(shard)
    return shard, ctx


def _key_in(slot, slots=4):
    return next(f"k{i}" for i in range(1000) if slot_of(f"k{i}", slots) == slot)


def test_a_fenced_shard_serves_its_slots_and_redirects_the_others():
    shard, ctx = _shard()
    ctx.deliver(shard, "write", src="r1", key=_key_in(0), value=1)
    assert ctx.sent[-1].type == "write_ok"
    ctx.deliver(shard, "read", src="r1", key=_key_in(1))
    reply = ctx.sent[-1]
    assert reply.type == "error" and reply.body["code"] == 11 and reply.body["moved"] == ["n2", 1]


def test_hand_off_fences_first_and_retries_the_install_until_acknowledged():
    shard, ctx = _shard()
    k = _key_in(0)
    ctx.deliver(shard, "write", src="r1", key=k, value="v")
    ctx.deliver(shard, "hand_off", src="cfg", slots={"0": 2}, to="n5")
    installs = ctx.outbox("install", dst="n5")
    assert installs and installs[-1].body["slots"] == {"0": [2, {k: "v"}]}
    ctx.deliver(shard, "write", src="r1", key=k, value="late")             # after the fence
    assert ctx.sent[-1].type == "error" and ctx.sent[-1].body["moved"] == ["n5", 2]
    ctx.advance(Shard.INSTALL_RETRY_MS + 1)                                 # no ack: sent again
    assert len(ctx.outbox("install", dst="n5")) == 2
    assert not ctx.outbox("hand_off_ok")
    ctx.deliver(shard, "install_ok", src="n5", in_reply_to=ctx.outbox("install")[-1].id)
    assert ctx.outbox("hand_off_ok")[-1].body["slots"] == ["0"]


def test_install_adopts_only_a_newer_epoch():
    shard, ctx = _shard(node="n5")
    k = _key_in(0)
    ctx.deliver(shard, "install", src="n1", slots={"0": [2, {k: "old"}]})
    assert ctx.sent[-1].type == "install_ok" and shard.owned == {0: 2}
    ctx.deliver(shard, "write", src="r1", key=k, value="new")
    ctx.deliver(shard, "install", src="n1", slots={"0": [2, {k: "old"}]})   # a retry, late
    assert ctx.sent[-1].type == "install_ok", "a duplicate is acknowledged (the sender stops retrying)"
    assert shard.data[k] == "new", "and ignored: it must not overwrite the write made since"


def test_a_duplicated_request_is_answered_once():
    shard, ctx = _shard()
    msg = ctx.deliver(shard, "write", src="r1", key=_key_in(0), value=1)
    ctx._deliver(msg)                 # the network delivers the same message (same id) again
    assert len(ctx.outbox("write_ok")) == 1


def test_an_unfenced_shard_serves_anything_and_overwrites_on_a_late_install():
    shard, ctx = _shard(UnfencedShard, node="n5")
    k = _key_in(0)
    ctx.deliver(shard, "install", src="n1", slots={"0": [2, {k: "old"}]})
    ctx.deliver(shard, "write", src="r1", key=k, value="new")
    ctx.deliver(shard, "install", src="n1", slots={"0": [2, {k: "old"}]})
    assert shard.data[k] == "old"
    ctx.deliver(shard, "read", src="r1", key=_key_in(1))                     # not its slot: answers anyway
    assert ctx.sent[-1].type == "error" and ctx.sent[-1].body["code"] == 20


# -- the store: a node joins while clients write ------------------------------------------------------
def join_while_writing(shard, runtime="sim", seed=0, faults=None, seconds=2.0):
    """8 clients over two routers: half inserts of fresh keys, half reads and writes of 16
    registers; n5 joins at 0.5 s. Returns (history, final query reply, owned slots per node)."""
    with labkit.Cluster(store_nodes(SHARDS, spares=["n5"], shard=shard), runtime=runtime, seed=seed) as c:
        if faults:
            c.nemesis(faults, every=(0.2, 0.5), duration=(0.2, 0.6))
        rec = labkit.Recorder(c, timeout_ms=1500, nodes=["r1", "r2"])
        rng, end, n = random.Random(seed), c.now + seconds * 1000, [0]

        def go(cl):
            if c.now >= end:
                return
            then = lambda _: c.call_at(c.now + rng.uniform(2, 8), go, cl)
            r = rng.random()
            if r < 0.5:
                n[0] += 1
                cl.invoke("write", n[0], key=f"k{n[0]}", then=then)
            elif r < 0.75:
                cl.invoke("write", rng.randrange(10**6), key=f"x{rng.randrange(16)}", then=then)
            else:
                cl.invoke("read", key=f"x{rng.randrange(16)}", then=then)

        for _ in range(8):
            c.call_at(c.now + rng.uniform(0, 5), go, rec.client())
        c.call_at(c.now + 500, lambda: c.client_send("cfg", "join", node="n5"))
        c.run_for(seconds)
        history = rec.settle()
        c.nemesis(None)
        c.heal()
        c.clear_links()
        c.run_for(1.0)
        query = c.request("r1", "query", deadline_ms=500, timeout=2000).body
        owned = {n: c.request(n, "owned").body["slots"] for n in [*SHARDS, "n5"]}
    return history, query, owned


def lost_inserts(history, query):
    acked = {p.key for p in history.pairs() if p.f == "write" and str(p.key).startswith("k") and p.type == "ok"}
    return acked - set(query["items"])


def registers(history):
    return labkit.History(op for op in history if str(op.key).startswith("x"))


@pytest.mark.parametrize("seed", range(6))
def test_fenced_join_under_faults_is_linearizable_and_loses_nothing(seed):
    history, query, owned = join_while_writing(Shard, seed=seed, faults=["partition", "drop", "duplicate",
                                                                          "reorder", "delay"])
    verdict = labkit.check_linearizable(registers(history), model="kv")
    assert verdict.valid is True, verdict
    assert not lost_inserts(history, query) and not query["partial"]
    assert len(owned["n5"]) == SLOTS // 5
    assert sorted(int(s) for slots in owned.values() for s in slots) == list(range(SLOTS)), "one owner per slot"


def test_unfenced_join_loses_acknowledged_writes():
    history, query, _ = join_while_writing(UnfencedShard, seed=3)
    assert lost_inserts(history, query)
    assert labkit.check_linearizable(registers(history), model="kv").valid is False


@pytest.mark.processes
def test_fenced_join_on_real_processes():
    history, query, owned = join_while_writing(Shard, runtime="processes", seed=1, seconds=1.5)
    assert labkit.check_linearizable(registers(history), model="kv").valid is True
    assert not lost_inserts(history, query) and len(owned["n5"]) == SLOTS // 5


def test_scatter_gather_answers_partial_and_says_which_shard_is_missing():
    with labkit.Cluster(store_nodes(SHARDS, config=None, routers=["r1"]), runtime="sim", seed=2) as c:
        for i in range(60):
            assert c.request("r1", "write", key=f"item{i}", value=i).type == "write_ok"
        full = c.request("r1", "query", prefix="item").body
        assert full["count"] == 60 and full["partial"] is False and full["missing"] == []
        c.cut("r1", "n3")
        t0 = c.now
        part = c.request("r1", "query", prefix="item", deadline_ms=100).body
        assert c.now - t0 < 150, "the deadline bounds the query"
        assert part["partial"] is True and part["missing"] == ["n3"]
        lost = {k for k in full["items"] if slot_of(k) in part["missing_slots"]}
        assert set(part["items"]) == set(full["items"]) - lost and lost


# -- the router and the config, one message at a time ----------------------------------------------------
def _router():
    ctx = FakeContext("r1", ["n1", "n2", "cfg"])
    router = labkit.systems.sharded.Router(even_map(["n1", "n2"], 4))
    ctx.start(router)
    return router, ctx


def test_a_router_follows_a_newer_owner_and_answers_with_the_shards_reply():
    router, ctx = _router()
    k = _key_in(0)                                       # slot 0: n1 at epoch 1
    ctx.deliver(router, "write", src="c1", key=k, value=1)
    first = ctx.outbox("write", dst="n1")[-1]
    ctx.deliver(router, "error", src="n1", in_reply_to=first.id, code=11, moved=["n2", 2])
    retry = ctx.outbox("write", dst="n2")
    assert retry and router.map[0] == ["n2", 2], "a newer epoch is adopted and tried at once"
    ctx.deliver(router, "write_ok", src="n2", in_reply_to=retry[-1].id)
    assert ctx.outbox("write_ok", dst="c1"), "the client gets the shard's answer"


def test_a_router_never_retries_a_write_that_timed_out_but_retries_reads():
    router, ctx = _router()
    ctx.deliver(router, "write", src="c1", key=_key_in(0), value=1)
    ctx.advance(labkit.systems.sharded.Router.ATTEMPT_MS + 1)
    assert len(ctx.outbox("write", dst="n1")) == 1, "a write that may have happened is not sent again"
    answer = ctx.outbox("error", dst="c1")[-1]
    assert answer.body["code"] == 0, "and the client hears it is indefinite (error 0)"
    ctx.deliver(router, "read", src="c2", key=_key_in(0))
    ctx.advance(2 * labkit.systems.sharded.Router.ATTEMPT_MS + 2 * labkit.systems.sharded.Router.RETRY_MS)
    assert len(ctx.outbox("read", dst="n1")) >= 2, "a read is safe to retry"


def test_a_router_gives_up_on_a_slot_in_transit_with_a_definite_error():
    router, ctx = _router()
    ctx.deliver(router, "read", src="c1", key=_key_in(0))
    while not ctx.outbox("error", dst="c1"):
        req = ctx.outbox("read", dst=router.map[0][0])[-1]
        ctx.deliver(router, "error", src=req.dst, in_reply_to=req.id, code=11, moved=["n1", 1])   # "not yet"
        ctx.advance(labkit.systems.sharded.Router.RETRY_MS)
        assert ctx.now < 2 * labkit.systems.sharded.Router.DEADLINE_MS, "the router must give up by its deadline"
    assert ctx.outbox("error", dst="c1")[-1].body["code"] == 11


def _ask(ctx, target, type, src, /, **body):
    """FakeContext.deliver with a body field called 'node' (deliver's own first parameter)."""
    from labkit.message import decode, encode
    ctx._node = target
    ctx._deliver(decode(encode(src, ctx.id, type, f"{src}.0.{len(ctx.sent)}", None, ctx.now, body)))


def test_the_config_runs_one_rebalance_at_a_time_and_refuses_bad_plans():
    ctx = FakeContext("cfg", ["n1", "n2", "n3"])
    cfg = labkit.systems.sharded.Config(even_map(["n1", "n2"], 4))
    ctx.start(cfg)
    _ask(ctx, cfg, "join", "c1", node="n3")
    assert ctx.outbox("hand_off"), "the join hands slots off"
    _ask(ctx, cfg, "leave", "c2", node="n1")
    assert ctx.outbox("error", dst="c2")[-1].body["code"] == 11, "a second rebalance waits its turn"
    for h in ctx.outbox("hand_off"):
        ctx.deliver(cfg, "hand_off_ok", src=h.dst, in_reply_to=h.id)
    done = ctx.outbox("join_ok", dst="c1")
    assert done and done[-1].body["moved"] and cfg.map[done[-1].body["moved"][0]][0] == "n3"
    _ask(ctx, cfg, "join", "c4", node="n1")
    assert ctx.outbox("error", dst="c4")[-1].body["code"] == 12, "joining a node that owns slots is a bad request"
