"""Parity: the same HTTP scenario under each fault gives the same outcome class (ok / 5xx /
timeout / refused / reset) in both runtimes, for a node's calls and for the notebook's."""
from __future__ import annotations

import pytest

import labkit

try:
    from .httpnodes import Caller, Inventory
except ImportError:
    from httpnodes import Caller, Inventory

pytestmark = pytest.mark.processes

RUNTIMES = ("sim", "processes")


def call(c, path="/stock/apple", timeout=300, **kw):
    return c.request("caller", "call", timeout=10_000, to=kw.pop("to", "inv"), path=path, call_timeout=timeout,
                     **kw).body


def _kill_while_open(c):
    """A request is open at the server (its handler sleeps) when the server is killed."""
    got = []
    c.client_send("caller", "call", to="inv", path="/slow/3000", call_timeout=5000, on_reply=got.append)
    # let the request reach the server: until its deliver is journaled (bounded)
    for _ in range(200):
        c.run_for(0.02)
        if any(e.kind == "deliver" and e.node == "inv" and e.type == "GET /slow/3000" for e in c.journal):
            break
    c.kill("inv")
    for _ in range(200):
        if got:
            break
        c.run_for(0.02)
    c.restart("inv")
    return got[0].body if got else {"outcome": "no reply"}


SCENARIOS = [
    # (name, setup(c) -> result body, undo(c), expected outcome)
    ("no fault", lambda c: call(c), None, "ok"),
    ("handler raises", lambda c: call(c, "/boom"), None, "5xx"),
    ("partition", lambda c: (c.partition(["inv"]), call(c))[1], lambda c: c.heal(), "timeout"),
    ("cut request only", lambda c: (c.cut("caller", "inv", one_way=True), call(c))[1], lambda c: c.heal(), "timeout"),
    ("cut response only", lambda c: (c.cut("inv", "caller", one_way=True), call(c))[1], lambda c: c.heal(), "timeout"),
    ("drop requests", lambda c: (c.set_link("caller", "inv", drop=1.0), call(c))[1], lambda c: c.clear_links(),
     "timeout"),
    ("drop responses", lambda c: (c.set_link("inv", "caller", drop=1.0), call(c))[1], lambda c: c.clear_links(),
     "timeout"),
    ("delay beyond the timeout", lambda c: (c.set_link("inv", "caller", delay=600), call(c))[1],
     lambda c: c.clear_links(), "timeout"),
    ("delay within the timeout", lambda c: (c.set_link("caller", "inv", delay=60), call(c, timeout=2000))[1],
     lambda c: c.clear_links(), "ok"),
    ("killed server", lambda c: (c.kill("inv"), call(c))[1], lambda c: c.restart("inv"), "refused"),
    ("killed and partitioned", lambda c: (c.kill("inv"), c.partition(["inv"]), call(c))[2],
     lambda c: (c.heal(), c.restart("inv")), "timeout"),
    ("paused server", lambda c: (c.pause("inv"), call(c))[1], lambda c: c.resume("inv"), "timeout"),
    ("skewed caller clock", lambda c: (c.skew("caller", rate=20.0), call(c, "/slow/200", timeout=300))[1],
     lambda c: c.skew("caller"), "timeout"),
    ("plain node as server", lambda c: call(c, to="caller"), None, "refused"),
    ("killed while the request is open", _kill_while_open, None, "reset"),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_node_calls_same_outcome_under_each_fault(runtime):
    outcomes = {}
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime=runtime, seed=5) as c:
        assert call(c, timeout=5000)["outcome"] == "ok"          # warm: the caller loads aiohttp once
        for name, act, undo, _ in SCENARIOS:
            body = act(c)
            outcomes[name] = body["outcome"]
            if name == "delay within the timeout":
                assert body["ms"] >= 60, body
            if undo is not None:
                undo(c)
            c.run_for(0.1 if runtime == "processes" else 1.0)    # late responses drain before the next
    assert outcomes == {name: want for name, _, _, want in SCENARIOS}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_notebook_client_same_outcomes(runtime):
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime=runtime, seed=5) as c:
        http = c.http("inv")
        r = http.get("/stock/apple")
        assert (r.status, r.json()) == (200, {"count": 3})
        assert r.event.kind == "deliver" and r.event.node == "client" and r.event.type == "200"
        assert http.get("/boom").status == 500
        assert http.post("/stock/kiwi", json={"n": 4}).json() == {"count": 4}
        assert http.get("/echo", params={"q": "1"}).json()["remote"] == "client"
        c.pause("inv")
        with pytest.raises(labkit.ServerTimeoutError):
            http.get("/stock/apple", timeout=200)
        c.resume("inv")
        c.kill("inv")
        with pytest.raises(labkit.ClientConnectorError, match="inv is down"):
            http.get("/stock/apple")
        assert c.journal.filter(kind="drop")[-1].get("rule") == "node down"
        c.restart("inv")
        assert http.get("/stock/kiwi").status == 404               # volatile state went with the kill
        with pytest.raises(labkit.ClientConnectorError, match="plain labkit.Node"):
            c.http("caller").get("/x")
