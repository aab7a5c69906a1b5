"""labkit.systems.replication: primary-replica with a sync/async flag, failover, fencing, version tokens."""
from __future__ import annotations

import labkit
import pytest
from labkit.checkers import set_full
from labkit.systems.replication import PrimaryReplica, failover, replication_lag
from labkit.testing import FakeContext


def store(**flags):
    return type("Store", (PrimaryReplica,), flags)


def kill_the_primary(cls, seed, steps=60, kill_at=30, delay=8):
    """Clients add to the primary; kill it mid-way, fail over, read the set from the new one."""
    with labkit.Cluster(cls, n=3, runtime="sim", seed=seed) as c:
        c.set_link("*", "*", delay=delay, jitter=delay - 1)
        rec = labkit.Recorder(c, timeout_ms=300)
        clients = [rec.client("n1") for _ in range(4)]
        target, i = "n1", 0
        for step in range(steps):
            if step == kill_at:
                c.kill("n1")
                target, _ = failover(c, exclude=["n1"])
            for cl in clients:
                if not cl.busy:
                    i += 1
                    cl.invoke("add", i, key="s", node=target)
            c.run_for(0.01)
        rec.settle()
        c.run_for(0.3)
        clients[0].call("read", key="s", node=target)
        return set_full(rec.history), c.journal


def test_unit_primary_appends_acks_and_ships():
    node, ctx = PrimaryReplica(), FakeContext("n1", ["n2", "n3"])
    ctx.start(node)
    ctx.deliver(node, "write", src="c1", key="x", value=7)
    ok = ctx.outbox("write_ok")
    assert ok and not ctx.outbox("replicate"), "async: acknowledged at once, shipped with the next batch"
    ctx.advance(PrimaryReplica.BATCH_MS)
    assert [m.type for m in ctx.outbox("replicate")] == ["replicate", "replicate"]
    assert ok and ok[0].body["index"] == 1, ctx.sent
    assert ctx.storage["pr/len"] == 1, "the log entry is durable before the reply"


def test_unit_replica_refuses_writes_and_names_the_primary():
    node, ctx = PrimaryReplica(), FakeContext("n2", ["n1", "n3"])
    ctx.start(node)
    ctx.deliver(node, "write", src="c1", key="x", value=7)
    err = ctx.outbox("error")[0].body
    assert err["code"] == 11 and err["primary"] == "n1", err


def test_unit_sync_write_waits_for_every_replica():
    node, ctx = store(SYNC=True)(), FakeContext("n1", ["n2", "n3"])
    ctx.start(node)
    ctx.deliver(node, "write", src="c1", key="x", value=7)
    ctx.advance(PrimaryReplica.BATCH_MS)
    rep = ctx.outbox("replicate")
    ctx.deliver(node, "replicate_ok", src="n2", in_reply_to=rep[0].id, epoch=1, ok=True, applied=1)
    assert not ctx.outbox("write_ok"), "one replica of two is not enough under SYNC"
    ctx.deliver(node, "replicate_ok", src="n3", in_reply_to=rep[1].id, epoch=1, ok=True, applied=1)
    assert ctx.outbox("write_ok"), "both replicas hold it: the write is acknowledged"


def test_unit_fenced_replica_refuses_an_older_epoch():
    node, ctx = PrimaryReplica(), FakeContext("n3", ["n1", "n2"])
    ctx.start(node)
    ctx.deliver(node, "follow", src="client", primary="n2", epoch=2)
    ctx.deliver(node, "replicate", src="n1", epoch=1, start=1, entries=[[1, {"f": "write", "key": "x", "value": 1}]])
    reply = ctx.outbox("replicate_ok")[-1].body
    assert reply["ok"] is False and reply["epoch"] == 2 and reply["primary"] == "n2", reply
    assert node.applied == 0


@pytest.mark.parametrize("seed", range(5))
def test_sync_never_loses_an_acknowledged_write(seed):
    verdict, _ = kill_the_primary(store(SYNC=True), seed)
    assert verdict.valid is True and not verdict.details["lost"], verdict


def test_async_loses_acknowledged_writes_on_some_seed():
    lost = [len(kill_the_primary(store(SYNC=False), seed, delay=20)[0].details["lost"]) for seed in range(10)]
    assert sum(lost) > 0, f"async replication should lose writes acknowledged inside the lag window: {lost}"


def test_replication_lag_is_measured_per_replica():
    _, journal = kill_the_primary(store(), 1, steps=20, kill_at=999)
    lag = replication_lag(journal)
    assert set(lag) == {"n2", "n3"} and all(0 < ms < 100 for pts in lag.values() for _, ms in pts), lag


def split_brain(fencing):
    with labkit.Cluster(store(FENCING=fencing), n=3, runtime="sim", seed=3) as c:
        c.set_link("*", "*", delay=2)
        assert c.request("n1", "write", key="x", value="before").type == "write_ok"
        c.run_for(0.2)
        c.kill("n1")
        new, epoch = failover(c, exclude=["n1"])
        c.restart("n1")
        c.run_for(0.02)
        answers = [c.request("n1", "write", key="x", value=f"zombie {i}").type for i in range(3)]
        c.run_for(0.5)
        final = {n: c.request(n, "read", key="x").body for n in c.ids}
        return new, epoch, answers, final


def test_without_fencing_the_old_primary_accepts_writes_nobody_else_sees():
    new, epoch, answers, final = split_brain(fencing=False)
    assert answers == ["write_ok"] * 3 and final["n1"]["value"] == "zombie 2", (answers, final)
    assert final[new]["value"] == "before", final


def test_with_fencing_the_old_primary_refuses_then_follows():
    new, epoch, answers, final = split_brain(fencing=True)
    assert "write_ok" not in answers, answers
    assert {b["value"] for b in final.values()} == {"before"}, final
    assert final["n1"]["role"] == "replica", final


def test_version_token_makes_a_replica_wait():
    with labkit.Cluster(PrimaryReplica, n=3, runtime="sim", seed=1) as c:
        c.set_link("n1", "n3", delay=50)
        index = c.request("n1", "write", key="x", value=1).body["index"]
        stale = c.request("n3", "read", key="x").body
        fresh = c.request("n3", "read", key="x", after=index).body
        assert stale["value"] is None and fresh["value"] == 1 and fresh["index"] >= index, (stale, fresh)


def test_failover_without_anyone_up_says_so():
    with labkit.Cluster(PrimaryReplica, n=2, runtime="sim", seed=1) as c:
        c.kill("n1"), c.kill("n2")
        with pytest.raises(RuntimeError, match="no node answered"):
            failover(c)
