"""Parity: the same HTTP scenario under each fault gives the same outcome class (ok / 5xx /
timeout / refused / reset) in both runtimes, for a node's calls and for the notebook's."""
from __future__ import annotations

import re

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


#: What the caller's exception says, the same words in both runtimes (request ids aside).
ERRORS = {
    "killed server": r"caller: cannot connect to inv for GET /stock/apple \(request caller\.\d+\.\d+\): "
                     r"connection refused; inv is down \(killed or crashed\): nothing listens$",
    "plain node as server": r"caller: cannot connect to caller for GET /stock/apple \(request caller\.\d+\.\d+\): "
                            r"connection refused; caller is a plain labkit.Node, not a labkit.Service",
    "killed while the request is open": r"caller: inv went down while request caller\.\d+\.\d+ "
                                        r"\(GET /slow/3000\) was open: server disconnected",
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_node_calls_same_outcome_under_each_fault(runtime):
    outcomes = {}
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime=runtime, seed=5) as c:
        assert call(c, timeout=5000)["outcome"] == "ok"          # warm: the caller loads aiohttp once
        for name, act, undo, _ in SCENARIOS:
            body = act(c)
            outcomes[name] = body["outcome"]
            if name in ERRORS:
                assert re.match(ERRORS[name], body["error"]), (name, body["error"])
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


# (target as the caller writes it, params) -> (on the wire and in the journal, what the handler sees)
TARGETS = [
    ("/item/caf%C3%A9", None, "/item/caf%C3%A9", "", {"path": "/item/café", "match": {"name": "café"}}),
    ("/item/café", None, "/item/caf%C3%A9", "", {"path": "/item/café", "match": {"name": "café"}}),
    ("/item/a%2Fb", None, "/item/a%2Fb", "", {"path": "/item/a/b", "match": {"name": "a/b"}}),
    ("/item/100%25", None, "/item/100%25", "", {"path": "/item/100%", "match": {"name": "100%"}}),
    ("/item/a b", None, "/item/a%20b", "", {"path": "/item/a b", "match": {"name": "a b"}}),
    ("/q?x=a+b&y=%26z&e=%C3%A9", None, "/q", "x=a+b&y=%26z&e=%C3%A9",
     {"path": "/q", "qs": "x=a b&y=%26z&e=é", "query": [["x", "a b"], ["y", "&z"], ["e", "é"]]}),
    ("/q", {"k": "v w", "k2": "é&"}, "/q", "k=v+w&k2=%C3%A9%26",
     {"path": "/q", "qs": "k=v w&k2=é%26", "query": [["k", "v w"], ["k2", "é&"]]}),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_request_target_is_sent_journaled_and_seen_alike_in_both_runtimes(runtime):
    """What aiohttp does with a target, both runtimes do: the caller percent-encodes it as
    aiohttp's client does (yarl); the journal's send and deliver carry that wire form; routes
    match aiohttp's ``path_safe`` (an escaped "/" stays in its part) and the handler sees the
    decoded path, match_info, query_string and query. (Before: the processes server journaled
    and showed decoded forms, answered 400 to a raw "é" and 404 to "%2F".)"""
    import json
    try:
        from .httpnodes import Paths
    except ImportError:
        from httpnodes import Paths
    with labkit.Cluster({"paths": Paths, "caller": Caller}, runtime=runtime, seed=6) as c:
        for target, params, wire_path, wire_qs, seen in TARGETS:
            if params is None:
                got = call(c, to="paths", path=target, timeout=3000)
                assert got["outcome"] == "ok" and got["status"] == 200, (target, got)
                body = json.loads(got["body"])
            else:
                r = c.http("paths").get(target, params=params)
                assert r.status == 200, (target, r.status, r.text())
                body = r.json()
            for k, v in seen.items():
                assert body[k] == v, (runtime, target, k, body[k], v)
            for kind in ("send", "deliver"):
                (ev,) = [e for e in c.journal.filter(kind=kind) if e.get("type", "").startswith("GET /")][-1:]
                assert ev.type == f"GET {wire_path}" and ev["body"]["path"] == wire_path, (runtime, target, kind, ev.data)
                assert ev["body"].get("query", "") == wire_qs, (runtime, target, kind, ev.data)


def test_an_outside_client_sees_the_same_decoded_target():
    """urllib (an outside client) reaches cluster.url with an encoded target: the handler sees
    it decoded, the journal keeps the wire form."""
    import json
    import urllib.request
    try:
        from .httpnodes import Paths
    except ImportError:
        from httpnodes import Paths
    with labkit.Cluster({"paths": Paths}, runtime="processes", seed=7) as c:
        with urllib.request.urlopen(c.url("paths") + "/item/a%2Fb%20c?x=%C3%A9+f", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["match"] == {"name": "a/b c"} and body["path"] == "/item/a/b c"
        assert body["query"] == [["x", "é f"]] and body["qs"] == "x=é f"
        (ev,) = [e for e in c.journal.filter(kind="deliver", node="paths") if e.type.startswith("GET")]
        assert ev.type == "GET /item/a%2Fb%20c" and ev["body"]["query"] == "x=%C3%A9+f"
