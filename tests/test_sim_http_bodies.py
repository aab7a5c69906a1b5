"""HTTP bodies in the simulator: a flat ``json_response`` travels as a dict (no JSON round
trip), yet the caller, the journal and the handler each see exactly what encoding it when it
was made would give -- and handlers driven without a wrapper coroutine still answer 4xx/5xx
as aiohttp's do (see labkit.service, labkit.runtime.sim_http)."""
from __future__ import annotations

import json

import labkit
from labkit.http_types import encode_response


class Svc(labkit.Service):
    def on_start(self, ctx):
        self.cached = labkit.json_response({"n": 1})

    @labkit.get("/snapshot")
    async def snapshot(self, ctx, req):
        data = {"n": 1, "f": 1.5, "s": "é\"x", "b": True, "z": None}
        r = labkit.json_response(data)
        data["n"] = 99                        # after json_response: not what was answered
        data["new"] = 1
        return r

    @labkit.get("/cached")
    async def cached_(self, ctx, req):
        return self.cached                    # the same Response object, every time

    @labkit.get("/header")
    async def header(self, ctx, req):
        r = labkit.json_response({"n": 2})
        r.headers["X-Extra"] = "yes"          # a multidict made: goes out with the response
        return r

    @labkit.get("/teapot")
    async def teapot(self, ctx, req):
        return labkit.json_response({"n": 3}, status=418, reason="Short and stout")

    @labkit.get("/late-bug")
    async def late_bug(self, ctx, req):
        await ctx.sleep(1)
        return {}["missing"]

    @labkit.get("/late-http-error")
    async def late_http_error(self, ctx, req):
        await ctx.work(2)
        raise labkit.HTTPConflict(text="taken")

    @labkit.get("/late-none")
    async def late_none(self, ctx, req):
        await ctx.sleep(1)


class Client(labkit.Node):
    def on_start(self, ctx):
        self.got = []

    async def on_message(self, ctx, msg):
        r = await ctx.http.get("svc", msg["path"], timeout=100)
        try:
            j = await r.json()
        except labkit.ClientResponseError:
            j = None
        self.got.append((r.status, r.reason, j, r.headers.get("X-Extra"), await r.text()))
        if isinstance(j, dict):
            j["mutated"] = True               # the caller's own copy
        ctx.reply(msg)


def cluster(seed: int = 1) -> labkit.Cluster:
    return labkit.Cluster({"svc": Svc, "cl": Client}, runtime="sim", seed=seed)


def call(c: labkit.Cluster, path: str) -> tuple:
    c.request("cl", "get", path=path)
    return c._rt.records["cl"].ctx._node.got[-1]


def response_bodies(c: labkit.Cluster, kind: str) -> list[str]:
    """The response bodies' JSON text as the journal writes them."""
    out = []
    for line in c.journal.filter(kind=kind, node="svc" if kind == "send" else "cl").to_jsonl().splitlines():
        d = json.loads(line)
        if d["src"] == "svc" and d["type"].isdigit():
            out.append(line[line.index(',"body":') + len(',"body":'):-1])
    return out


def test_a_flat_json_response_is_what_it_was_when_made_for_the_caller_and_the_journal():
    with cluster() as c:
        status, reason, j, _, text = call(c, "/snapshot")
        data = {"n": 1, "f": 1.5, "s": "é\"x", "b": True, "z": None}
        assert (status, reason, j) == (200, "OK", {**data, "mutated": True})
        assert text == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        expect = encode_response(200, None, [["Content-Type", "application/json; charset=utf-8"]],
                                 ("json", text))
        assert response_bodies(c, "send") == response_bodies(c, "deliver") == [expect]


def test_callers_and_readers_mutating_what_they_got_change_neither_the_journal_nor_the_next_answer():
    with cluster() as c:
        assert call(c, "/cached")[2] == {"n": 1, "mutated": True}
        assert call(c, "/cached")[2] == {"n": 1, "mutated": True}
        for e in c.journal.filter(kind="deliver", node="cl"):
            if e.src == "svc":
                assert e.body["json"] == {"n": 1}
                e.body["json"]["x"] = 1       # a reader's copy of this event (the send has its own)
        assert call(c, "/cached")[2] == {"n": 1, "mutated": True}
        assert response_bodies(c, "send") == [
            '{"http":"1.1","status":200,"headers":[["Content-Type","application/json; charset=utf-8"]],'
            '"json":{"n":1}}'] * 3


def test_a_json_response_changed_after_it_was_made_goes_out_as_changed():
    with cluster() as c:
        status, reason, j, extra, _ = call(c, "/header")
        assert (status, j, extra) == (200, {"n": 2, "mutated": True}, "yes")
        status, reason, j, _, _ = call(c, "/teapot")
        assert (status, reason, j) == (418, "Short and stout", {"n": 3, "mutated": True})
        r = labkit.json_response({"a": 1})
        assert (r.text, r.body, r.content_type) == ('{"a":1}', b'{"a":1}', "application/json")


def test_handlers_that_await_then_fail_answer_as_aiohttp_and_the_node_lives_on():
    with cluster() as c:
        status, _, _, _, text = call(c, "/late-bug")
        assert status == 500 and "KeyError" in text
        ev = next(iter(c.journal.filter(kind="handler_error")))
        tb = ev["traceback"]
        assert "late_bug" in tb and "context.py" not in tb and "service.py" not in tb
        assert call(c, "/late-http-error")[:1] == (409,) and call(c, "/late-http-error")[4] == "taken"
        status, _, _, _, text = call(c, "/late-none")
        assert status == 500 and "returned None" in text
        assert call(c, "/cached")[0] == 200
        assert c._rt.records["svc"].ctx.in_flight == 0     # every worker was freed


def test_same_seed_same_journal_with_flat_responses():
    texts = []
    for _ in range(2):
        with cluster(seed=3) as c:
            for p in ("/snapshot", "/cached", "/header", "/teapot", "/late-bug", "/late-none"):
                call(c, p)
            texts.append(c.journal.to_jsonl())
    assert texts[0] == texts[1]
