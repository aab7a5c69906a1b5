"""labkit.Service against FakeContext: routes, probes, answers (404/405/400/500/503), outbound
calls answered by hand, the request and response types, and bad input."""
from __future__ import annotations

import pytest

import labkit
from labkit.testing import FakeContext

try:
    from .httpnodes import Inventory, Proxy
except ImportError:
    from httpnodes import Inventory, Proxy


@pytest.fixture
def inv():
    ctx = FakeContext("inv", peers=["proxy", "caller"])
    node = Inventory()
    ctx.start(node)
    return ctx, node


# -- routes and answers --------------------------------------------------------------------------
def test_route_match_info_and_json(inv):
    ctx, node = inv
    r = ctx.fetch(node, "GET", "/stock/apple")
    assert (r.status, r.json(), r.headers["content-type"]) == (200, {"count": 3}, "application/json; charset=utf-8")
    r = ctx.fetch(node, "POST", "/stock/pear", json={"n": 2})
    assert (r.status, r.json()) == (201, {"count": 2})
    assert ctx.storage["pear"] == 2


def test_unknown_route_404_and_wrong_method_405(inv):
    ctx, node = inv
    r = ctx.fetch(node, "GET", "/nothing/here")
    assert (r.status, r.text()) == (404, "404: Not Found")
    r = ctx.fetch(node, "DELETE", "/stock/apple")
    assert r.status == 405
    assert set(r.headers["Allow"].split(",")) == {"GET", "POST"}


def test_http_exception_answers_its_status(inv):
    ctx, node = inv
    r = ctx.fetch(node, "GET", "/stock/kiwi")
    assert (r.status, r.text()) == (404, "no such item")
    assert ctx.handler_errors == []          # an answer, not a failure


def test_body_not_json_is_400_with_the_reason(inv):
    ctx, node = inv
    r = ctx.fetch(node, "POST", "/stock/pear", data="n=2")
    assert r.status == 400
    assert "not JSON" in r.text() and "JSONDecodeError" in r.text()
    r = ctx.fetch(node, "POST", "/stock/pear")
    assert r.status == 400 and "empty" in r.text()


def test_handler_raises_500_journaled_and_node_lives_on(inv):
    ctx, node = inv
    r = ctx.fetch(node, "GET", "/boom")
    assert r.status == 500
    assert "KeyError" in r.text() and "handler_error" in r.text()
    ev = ctx.handler_errors[-1]
    assert ev.kind == "handler_error" and ev.node == "inv"
    assert (ev["method"], ev["path"], ev["handler"], ev["seed"]) == ("GET", "/boom", "boom", 0)
    assert ev["request"].startswith("client.") and "KeyError: 'missing'" in ev["traceback"]
    assert "httpnodes.py" in ev["traceback"] and "_serve" not in ev["traceback"]   # the reader's frames
    assert not ctx.dead and ctx.crash is None
    assert ctx.fetch(node, "GET", "/stock/apple").status == 200


def test_handler_returning_a_non_response_is_500_saying_what_to_return():
    class Bad(labkit.Service):
        @labkit.get("/x")
        async def x(self, ctx, req):
            return {"a": 1}

        @labkit.get("/nan")
        async def nan(self, ctx, req):
            return labkit.json_response({"v": float("nan")})

    ctx, node = FakeContext("b"), Bad()
    ctx.start(node)
    r = ctx.fetch(node, "GET", "/x")
    assert r.status == 500 and "json_response" in ctx.handler_errors[-1]["error"]
    r = ctx.fetch(node, "GET", "/nan")
    assert r.status == 500 and "data['v']" in ctx.handler_errors[-1]["error"]


def test_system_exit_in_a_handler_crashes_the_node():
    class Exit(labkit.Service):
        @labkit.get("/x")
        async def x(self, ctx, req):
            raise SystemExit(1)

    ctx, node = FakeContext("e", raise_on_crash=False), Exit()
    ctx.start(node)
    with pytest.raises(AssertionError, match="no response"):
        ctx.fetch(node, "GET", "/x", timeout=10)
    assert ctx.dead and ctx.crash is not None and "SystemExit" in ctx.crash["error"]


def test_head_is_served_by_get_without_a_body(inv):
    ctx, node = inv
    r = ctx.fetch(node, "HEAD", "/stock/apple")
    assert r.status == 200 and r.read() == b"" and r.headers["Content-Type"].startswith("application/json")


def test_regex_route_and_order():
    class Files(labkit.Service):
        @labkit.get("/files/special")
        async def special(self, ctx, req):
            return labkit.Response(text="special")

        @labkit.get("/files/{name:.+}")
        async def any_file(self, ctx, req):
            return labkit.Response(text=req.match_info["name"])

        @labkit.route("*", "/any")
        async def any_method(self, ctx, req):
            return labkit.Response(text=req.method)

    ctx, node = FakeContext("f"), Files()
    ctx.start(node)
    assert ctx.fetch(node, "GET", "/files/special").text() == "special"
    assert ctx.fetch(node, "GET", "/files/a/b.txt").text() == "a/b.txt"
    assert ctx.fetch(node, "PATCH", "/any").text() == "PATCH"


# -- probes --------------------------------------------------------------------------------------
def test_probes_healthz_and_readyz(inv):
    ctx, node = inv
    assert (ctx.fetch(node, "GET", "/healthz").status, ctx.fetch(node, "GET", "/healthz").text()) == (200, "ok")
    assert ctx.fetch(node, "GET", "/readyz").status == 200 and ctx.is_ready
    assert ctx.fetch(node, "PUT", "/ready/0").status == 204
    r = ctx.fetch(node, "GET", "/readyz")
    assert r.status == 503 and not ctx.is_ready
    assert ctx.fetch(node, "GET", "/healthz").status == 200        # alive though not ready
    ctx.ready(True)
    assert ctx.fetch(node, "GET", "/readyz").status == 200


def test_a_route_may_replace_a_probe():
    class Deep(labkit.Service):
        @labkit.get("/healthz")
        async def health(self, ctx, req):
            return labkit.json_response({"db": "ok"}, status=200)

    ctx, node = FakeContext("d"), Deep()
    ctx.start(node)
    assert ctx.fetch(node, "GET", "/healthz").json() == {"db": "ok"}
    assert ctx.fetch(node, "GET", "/readyz").status == 200


def test_shed_request_is_503_with_retry_after(inv, monkeypatch):
    ctx, node = inv
    monkeypatch.setattr(ctx, "_admit", lambda start: False)
    r = ctx.fetch(node, "GET", "/stock/apple")
    assert r.status == 503 and r.headers["Retry-After"] == "1" and "shed" in r.text()
    assert ctx.counters["http_shed"] == 1
    assert ctx.fetch(node, "GET", "/healthz").status == 200          # probes take no worker


# -- a service is a node -------------------------------------------------------------------------
def test_service_still_handles_messages_timers_and_storage(inv):
    ctx, node = inv
    ctx.deliver(node, "count", src="caller", item="apple")
    assert ctx.sent[-1].type == "count_ok" and ctx.sent[-1].body == {"n": 3}
    assert ctx.timers == ("tick",)


# -- outbound calls ------------------------------------------------------------------------------
def test_calls_answered_refused_reset_and_timed_out():
    ctx = FakeContext("proxy", peers=["inv"])
    node = Proxy()
    ctx.start(node)

    def start_call():
        ctx._deliver(labkit.Message("client", "proxy", "GET /via/apple", f"client.0.{len(ctx.sent)}",
                                    {"http": "1.1", "method": "GET", "path": "/via/apple"}))
        return ctx.http_requests()[-1]

    call = start_call()
    assert (call.type, call.dst, call.body["path"]) == ("GET /stock/apple", "inv", "/stock/apple")
    ctx.respond(call, status=200, json={"count": 7})
    out = ctx.sent[-1]
    assert (out.type, out.dst, out.body["json"]) == ("200", "client", {"count": 7})
    ctx.refuse(start_call())
    assert ctx.sent[-1].type == "502"
    ctx.reset(start_call())
    assert ctx.sent[-1].type == "502"
    start_call()
    ctx.advance(199)
    assert ctx.sent[-1].type == "GET /stock/apple"
    ctx.advance(1)
    assert ctx.sent[-1].type == "504"


def test_ctx_http_in_a_plain_node_and_response_api():
    got = {}

    class Client(labkit.Node):
        async def on_start(self, ctx):
            async with ctx.http.get("inv", "/stock/apple?x=1", params={"y": "2"}, headers={"X-A": "b"}) as r:
                got["status"], got["ok"], got["json"] = r.status, r.ok, await r.json()
                got["text"], got["ctype"] = await r.text(), r.content_type
                try:
                    r.raise_for_status()
                except labkit.ClientResponseError as e:
                    got["raised"] = e.status

    ctx = FakeContext("c", peers=["inv"])
    ctx.start(Client())
    call = ctx.http_requests("inv")[-1]
    assert call.body["query"] == "x=1&y=2" and call.body["headers"] == [["X-A", "b"]]
    ctx.respond(call, status=404, json={"e": 1})
    assert got == {"status": 404, "ok": False, "json": {"e": 1}, "text": '{"e":1}',
                   "ctype": "application/json", "raised": 404}


def test_response_json_on_text_is_content_type_error():
    seen = {}

    class Client(labkit.Node):
        async def on_start(self, ctx):
            r = await ctx.http.get("inv", "/x")
            try:
                await r.json()
            except labkit.ContentTypeError as e:
                seen["error"] = str(e)
            try:
                await r.json(content_type=None)           # no type check: the body itself is not JSON
            except labkit.ContentTypeError as e:
                seen["body"] = str(e)

    ctx = FakeContext("c", peers=["inv"])
    ctx.start(Client())
    ctx.respond(ctx.http_requests()[-1], text="plain")
    assert "unexpected mimetype: text/plain" in seen["error"]
    assert "not JSON" in seen["body"]


def test_request_api(inv):
    ctx, node = inv
    r = ctx.fetch(node, "GET", "/echo?a=1&a=2", headers={"X-Test": "yes"}, src="proxy")
    assert r.json() == {"remote": "proxy", "query": {"a": "1"}, "x": "yes", "method": "GET"}
    req = labkit.Request("GET", "/p", "a=1&a=2", [["Content-Type", "application/json"], ["X-A", "1"], ["x-a", "2"]],
                         text='{"k": 1}')
    assert req.query.getall("a") == ["1", "2"] and req.headers.getall("X-A") == ["1", "2"]
    assert req.content_type == "application/json" and req.path_qs == "/p?a=1&a=2"


# -- bad input -----------------------------------------------------------------------------------
def test_bad_routes_are_refused_at_class_definition():
    with pytest.raises(TypeError, match="async def"):
        class A(labkit.Service):
            @labkit.get("/x")
            def x(self, ctx, req):
                return None
    with pytest.raises(labkit.ArgumentError, match="starting with '/'"):
        labkit.get("x")
    with pytest.raises(labkit.ArgumentError, match="method"):
        labkit.route("FETCH", "/x")
    with pytest.raises(labkit.ArgumentError, match="malformed"):
        labkit.get("/x/{a")
    with pytest.raises(labkit.ArgumentError, match="both"):
        class B(labkit.Service):
            @labkit.get("/x")
            async def one(self, ctx, req):
                return labkit.Response()

            @labkit.get("/x")
            async def two(self, ctx, req):
                return labkit.Response()


def test_bad_call_arguments_raise_at_once():
    ctx = FakeContext("c", peers=["inv"])
    with pytest.raises(labkit.ArgumentError, match="starting with '/'"):
        ctx.http.get("inv", "stock")
    with pytest.raises(labkit.ArgumentError, match="timeout"):
        ctx.http.get("inv", "/x", timeout=-1)
    with pytest.raises(labkit.UnknownNode, match="unknown node"):
        ctx.http.get("nobody", "/x")
    with pytest.raises(labkit.UnknownNode, match="clients serve no HTTP"):
        ctx.http.get("client", "/x")
    with pytest.raises(labkit.ArgumentError, match="not both"):
        ctx.http.post("inv", "/x", json={}, data="a")
    with pytest.raises(labkit.ArgumentError, match=r"cannot encode json= as JSON: json\['s'\] is a set"):
        ctx.http.post("inv", "/x", json={"s": {1, 2}})        # named as the caller named it
    with pytest.raises(labkit.ArgumentError, match=r"json is an object, which JSON cannot carry"):
        ctx.http.post("inv", "/x", json=object())
    with pytest.raises(labkit.ArgumentError, match="header"):
        ctx.http.get("inv", "/x", headers={"A": 1})
    with pytest.raises(labkit.ArgumentError, match="method"):
        ctx.http.request("FETCH", "inv", "/x")
    with pytest.raises(TypeError, match="SSLContext"):
        ctx.http.get("inv", "/x", ssl="yes")
    with pytest.raises(labkit.ArgumentError, match="100..599"):
        labkit.Response(status=99)
    with pytest.raises(labkit.ArgumentError, match="str"):
        labkit.Response(text=b"x")
    with pytest.raises(labkit.ArgumentError, match="True or False"):
        ctx.ready("yes")
    assert ctx.sent == []


# -- the processes runtime builds message bodies without parsing back their JSON ------------------
@pytest.mark.parametrize("payload", [None, ("json", '{"n":[1,2.5,"x",null,true]}'), ("json", '"s"'),
                                     ("body", "hé\n"), ("body64", "AAEC")])
@pytest.mark.parametrize("journal_headers", [[], [["Content-Type", "application/json"], ["A", "b"]]])
def test_http_bodies_built_directly_equal_parsed_json(payload, journal_headers):
    from labkit.message import loads
    from labkit.http_types import encode_request, encode_response
    from labkit.http_types import _MISSING
    from labkit.runtime.http_bodies import _finish, request_body, response_body
    real = [("Host", "127.0.0.1:1"), ("X-Labkit-Id", "n1.1.1"), *map(tuple, journal_headers)]
    shown = [[k, v] for k, v in real if not k.lower().startswith("x-labkit-")]
    for query in ("", "a=1&b=%20"):
        want = loads(encode_request("POST", "/p/é", query, journal_headers, payload))
        want["headers"] = shown
        got = request_body("POST", "/p/é", query, journal_headers, payload, real)
        assert (got, list(got)) == (want, list(want))
    for status, reason in ((200, None), (200, "OK"), (418, "Short and stout")):
        want = loads(encode_response(status, reason, journal_headers, payload))
        want["headers"] = shown
        got = response_body(status, reason, journal_headers, payload, real)
        assert (got, list(got)) == (want, list(want))
        # as the node's hot path builds them: the JSON value parsed once, the headers split once
        value = loads(payload[1]) if payload is not None and payload[0] == "json" else _MISSING
        d = {"http": "1.1", "status": status}
        if reason and reason != labkit.http_errors.reason_of(status):
            d["reason"] = reason
        got = _finish(d, journal_headers, payload, value, shown)
        assert (got, list(got)) == (want, list(want))


def test_header_split_equals_headers_for_journal():
    from labkit.http_types import headers_for_journal
    from labkit.runtime.http_bodies import (REQUEST_STACK_HEADERS, RESPONSE_STACK_HEADERS, split_request_headers,
                                           split_response_headers)
    pairs = [("Host", "h"), ("X-Labkit-Id", "n1.1.1"), ("x-labkit-from", "n1"), ("Content-Type", "a/b"),
             ("USER-AGENT", "u"), ("A", "1"), ("a", "2"), ("Date", "d"), ("Server", "s"), ("Connection", "close")]
    from multidict import CIMultiDict
    for split, stack in ((split_request_headers, REQUEST_STACK_HEADERS), (split_response_headers, RESPONSE_STACK_HEADERS)):
        for some in (pairs, pairs[2:], pairs[::-1], pairs + [("Host", "again")], []):
            for _ in range(2):          # the second time from the plan remembered the first time
                shown, journaled = split(CIMultiDict(some))
                assert journaled == headers_for_journal(some, stack)
                assert shown == [[k, v] for k, v in some if not k.lower().startswith("x-labkit-")]
                assert all(any(j is s for s in shown) for j in journaled)     # the same pairs, not copies


def test_payload_and_value_parses_json_once():
    from labkit.http_types import _MISSING, payload_and_value, payload_of_bytes
    cases = [(b'{"a":[1,2.5,null]}', "application/json; charset=utf-8", ("json", '{"a":[1,2.5,null]}'), {"a": [1, 2.5, None]}),
             (b'{"a": 1}', "application/json", ("body", '{"a": 1}'), _MISSING),          # not labkit's encoding
             (b'{"a":1}', "text/plain", ("body", '{"a":1}'), _MISSING),
             (b"\xff\x00", "application/json", ("body64", "/wA="), _MISSING),
             (b"", "application/json", None, _MISSING)]
    for data, ctype, payload, value in cases:
        got = payload_and_value(data, ctype)
        assert got[0] == payload == payload_of_bytes(data, ctype)
        assert got[1] == value if value is not _MISSING else got[1] is _MISSING


def test_text_response_fast_path_equals_the_general_one():
    for text in ("", "hé\n", "x" * 5000):
        for status, reason in ((200, None), (404, None), (200, "Fine")):
            fast = labkit.Response(text=text, status=status, reason=reason, charset="latin-1")  # (charset: ignored)
            general = labkit.Response(text=text, status=status, reason=reason, headers={})    # (headers={}: general)
            for r in (fast, general):
                assert r.status == status and r.reason == reason and r._flat is None
            assert (fast._hraw, fast._pl, fast._encode()) == (general._hraw, general._pl, general._encode())
    with pytest.raises(labkit.ArgumentError, match="100..599"):
        labkit.Response(text="x", status=600)


def test_text_payloads_are_written_as_labkits_json_writes_strings():
    from labkit.http_types import _payload_json
    from labkit.message import dumps
    for text in ("", "pong", 'hé\n\t"\\', "\x00\x1f\x7f", "\ud800", "😀", "\u2028"):
        for kind in ("body", "body64"):
            assert _payload_json((kind, text)) == f',"{kind}":{dumps(text)}'
    assert _payload_json(("json", '{"a":1}')) == ',"json":{"a":1}' and _payload_json(None) == ""


def test_encode_response_writes_the_common_content_types_as_any_headers():
    from labkit.http_types import JSON_TYPE, TEXT_TYPE, encode_response
    from labkit.message import dumps
    for headers in ([["Content-Type", JSON_TYPE]], [("Content-Type", TEXT_TYPE)], [["Content-Type", "x/y"]],
                    [["content-type", TEXT_TYPE]], [["Content-Type", TEXT_TYPE], ["A", "b"]]):
        assert encode_response(200, None, headers, ("body", "x")) == \
            f'{{"http":"1.1","status":200,"headers":{dumps(headers)},"body":"x"}}'
