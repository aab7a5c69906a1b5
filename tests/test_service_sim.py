"""Services in the simulator: determinism, the journal's shape of an exchange, plots, the
notebook's concurrent HTTP client (histories from HTTP calls), and sim-only errors."""
from __future__ import annotations

import pytest

import labkit

try:
    from .httpnodes import Caller, Inventory, Proxy
except ImportError:
    from httpnodes import Caller, Inventory, Proxy


class Shopper(labkit.Node):
    """Calls the proxy on a jittered timer, with a random item: many concurrent exchanges."""

    def on_start(self, ctx):
        ctx.set_timer("shop", between=(1, 20))

    async def on_timer(self, ctx, name):
        ctx.set_timer("shop", between=(1, 20))
        item = ctx.rng.choice(["apple", "pear", "kiwi"])
        try:
            r = await ctx.http.get("proxy", f"/via/{item}", timeout=300)
            ctx.count(f"status_{r.status}")
        except labkit.ClientError as e:
            ctx.count(type(e).__name__)


def run_shop(seed: int) -> str:
    nodes = {"inv": Inventory, "proxy": Proxy, "s1": Shopper, "s2": Shopper}
    with labkit.Cluster(nodes, runtime="sim", seed=seed) as c:
        c.set_link("*", "*", delay=2, jitter=2, drop=0.05, reorder=0.1, reorder_ms=10)
        c.run_for(0.5)
        c.partition(["inv"], ["proxy", "s1", "s2"])
        c.run_for(0.5)
        c.heal()
        c.kill("inv")
        c.run_for(0.3)
        c.restart("inv")
        c.pause("proxy")
        c.run_for(0.3)
        c.resume("proxy")
        c.run_for(0.5)
    return c.journal.to_jsonl()


def test_same_seed_same_journal_byte_for_byte():
    a, b = run_shop(11), run_shop(11)
    assert a == b
    assert run_shop(12) != a
    assert a.count('"kind":"deliver"') > 200 and '"type":"GET /via/' in a and '"rule":"node down"' in a


def test_an_exchange_in_the_journal():
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime="sim", seed=1) as c:
        body = c.request("caller", "call", to="inv", path="/stock/apple").body
        assert body["outcome"] == "ok"
        ev = [e for e in c.journal if e.kind in ("send", "deliver") and e.node in ("inv", "caller")
              and (e.type or "").startswith(("GET", "2"))]
        req_send, req_del, resp_send, resp_del = ev
        assert (req_send.kind, req_send.node, req_send.type) == ("send", "caller", "GET /stock/apple")
        assert (req_del.kind, req_del.node, req_del.id) == ("deliver", "inv", req_send.id)
        assert req_send.body == {"http": "1.1", "method": "GET", "path": "/stock/apple"}
        assert (resp_send.node, resp_send.type, resp_send.get("re")) == ("inv", "200", req_send.id)
        assert resp_del.body == resp_send.body and resp_del.body["status"] == 200
        assert resp_del.body["json"] == {"count": 3}
        assert resp_del.t - req_send.t == pytest.approx(0.2)      # two hops of HOP_MS


def test_late_response_is_dropped_as_connection_closed():
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime="sim", seed=1) as c:
        body = c.request("caller", "call", to="inv", path="/slow/500", call_timeout=100).body
        assert body["outcome"] == "timeout"
        c.run_for(1)
        drop = c.journal.filter(kind="drop")[-1]
        assert (drop.node, drop.type, drop.get("rule")) == ("caller", "200", "connection closed")
        assert c.counters("caller")["counters"].get("late_replies") is None


def test_spacetime_labels_and_op_plots_see_exchanges():
    from labkit.plots import latency, rate, spacetime
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime="sim", seed=2) as c:
        c.request("caller", "call", to="inv", path="/stock/apple")
        http = c.http("inv")
        for i in range(20):
            http.get("/stock/apple" if i % 4 else "/stock/none")
        import re
        svg = spacetime(c.journal, nodes=["inv", "caller"], until=1.0)._repr_svg_()
        labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        assert "GET /stock/apple" in labels and "200" in labels    # the arrows' labels
        assert "21 completed" in latency(c.journal).summary          # the call and 20 HTTP requests
        assert "21" in rate(c.journal).summary or rate(c.journal).summary.startswith("rate")
        ops = labkit.plots._base.operations(c.journal)
        assert [(o.f, o.type) for o in ops].count(("GET /stock/none", "fail")) == 5     # 404s fail
        assert [(o.f, o.type) for o in ops].count(("GET /stock/apple", "ok")) == 15


def test_concurrent_notebook_clients_record_a_history():
    with labkit.Cluster({"inv": Inventory}, runtime="sim", seed=3) as c:
        done, errors = [], []
        for p in range(4):
            http = c.http("inv", as_client=f"c{p}")
            c.record_op(p, "invoke", "read", None, key="apple")

            def ok(r, p=p):
                done.append(p)
                c.record_op(p, "ok", "read", r.json()["count"], key="apple")
            http.send("GET", "/stock/apple", on_response=ok, on_error=errors.append, timeout=100)
        c.run_for(0.01)
        c.pause("inv")
        c.http("inv", as_client="c9").send("GET", "/stock/apple", on_error=errors.append, timeout=50)
        c.run_for(0.2)
        c.resume("inv")
        c.kill("inv")
        c.http("inv").send("GET", "/x", on_error=errors.append)
        c.run_for(0.2)
        assert sorted(done) == [0, 1, 2, 3]
        assert [type(e).__name__ for e in errors] == ["ServerTimeoutError", "ClientConnectorError"]
        h = labkit.History(dict(e.data) for e in c.journal.filter(kind="op"))
        assert sorted(o.type for o in h) == ["invoke"] * 4 + ["ok"] * 4
        assert len(h.pairs()) == 4 and all(pair.value == 3 for pair in h.pairs())


def test_sim_has_no_url_and_bad_input():
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, runtime="sim", seed=4) as c:
        with pytest.raises(labkit.LabkitError, match="simulator has no sockets"):
            c.url("inv")
        with pytest.raises(labkit.UnknownNode):
            c.http("nobody")
        with pytest.raises(labkit.ArgumentError, match="client ids"):
            c.http("inv", as_client="bob")
        with pytest.raises(labkit.ArgumentError, match="starting with '/'"):
            c.http("inv").get("stock")
        with pytest.raises(labkit.ArgumentError, match="timeout"):
            c.http("inv").get("/stock/apple", timeout=0)
        with pytest.raises(labkit.ArgumentError, match="method"):
            c.http("inv").request("BREW", "/pot")


def test_server_crash_resets_open_requests():
    class Fragile(Inventory):
        def on_message(self, ctx, msg):
            raise RuntimeError("on_message bug")

    with labkit.Cluster({"inv": Fragile, "caller": Caller}, runtime="sim", seed=5) as c:
        c._rt.echo_crashes = False
        got = []
        c.client_send("caller", "call", to="inv", path="/slow/100", call_timeout=1000, on_reply=got.append)
        c.run_for(0.01)
        c.client_send("inv", "poke")
        c.run_for(0.5)
        assert got[0].body["outcome"] == "reset"
        assert c.request("caller", "call", to="inv", path="/stock/apple").body["outcome"] == "refused"
