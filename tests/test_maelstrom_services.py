"""Maelstrom's services (labkit.maelstrom.services) and protocol helpers, in the simulator."""
from __future__ import annotations

import pytest

import labkit
from labkit.maelstrom import protocol
from labkit.maelstrom.services import LWWKV, SERVICES, LinKV


def _cluster(seed=1):
    return labkit.Cluster({"n0": labkit.Node, **SERVICES}, runtime="sim", seed=seed)


def _req(c, node, type, client="c1", **body):
    r = c.request(node, type, as_client=client, **body)
    return r.type, r.body


@pytest.mark.parametrize("svc", ["lin-kv", "seq-kv", "lww-kv"])
def test_kv_api_single_client(svc):
    with _cluster() as c:
        assert _req(c, svc, "read", key="x") == ("error", {"code": 20, "text": "key does not exist"})
        assert _req(c, svc, "cas", key="x", **{"from": 1, "to": 2})[1]["code"] == 20
        assert _req(c, svc, "cas", key="x", create_if_not_exists=True, **{"from": 1, "to": 2}) == ("cas_ok", {})
        if svc != "lww-kv":          # lww-kv's reads may come from the other replica
            assert _req(c, svc, "read", key="x") == ("read_ok", {"value": 2})
        assert _req(c, svc, "write", key=[1, "k"], value={"a": [1]}) == ("write_ok", {})
        assert _req(c, svc, "bogus", key="x")[1]["code"] == 10
        assert _req(c, svc, "read")[1]["code"] == 12


def test_lin_kv_cas_and_json_equality():
    with _cluster() as c:
        assert _req(c, "lin-kv", "write", key=1, value=1) == ("write_ok", {})
        t, b = _req(c, "lin-kv", "cas", key=1, **{"from": 1.0, "to": 5})
        assert (t, b["code"]) == ("error", 22)          # 1.0 is not 1 (JSON equality, as Clojure's =)
        assert protocol.ERRORS[b["code"]].name == "precondition-failed"
        assert _req(c, "lin-kv", "cas", key=1, **{"from": 1, "to": 5}) == ("cas_ok", {})
        assert _req(c, "lin-kv", "read", key=1, client="c2") == ("read_ok", {"value": 5})
        assert _req(c, "lin-kv", "read", key="1")[0] == "error"        # key 1 and key "1" differ


def test_lin_tso_counts_from_zero():
    with _cluster() as c:
        assert [_req(c, "lin-tso", "ts", client=f"c{i % 3 + 1}")[1]["ts"] for i in range(5)] == [0, 1, 2, 3, 4]
        assert _req(c, "lin-tso", "read")[1]["code"] == 10


def test_seq_kv_reads_can_be_stale_but_monotonic_per_client():
    stale = 0
    for seed in range(1, 6):
        with _cluster(seed) as c:
            for v in range(1, 30):
                assert _req(c, "seq-kv", "write", key="k", value=v, client="c1") == ("write_ok", {})
                t, b = _req(c, "seq-kv", "read", key="k", client="c2")
                seen = b.get("value")
                stale += seen != v
            # per client, reads never go back in time
            last = -1
            for _ in range(30):
                t, b = _req(c, "seq-kv", "read", key="k", client="c3")
                v = b.get("value", -1) if t == "read_ok" else -1
                assert v >= last
                last = v
            # a client always sees its own writes
            assert _req(c, "seq-kv", "read", key="k", client="c1") == ("read_ok", {"value": 29})
    assert stale > 0


def test_seq_kv_cas_on_a_stale_read_fails_definitely():
    """A cas on a stale value fails definitely (22): the store never applies it to an old state."""
    with _cluster(3) as c:
        _req(c, "seq-kv", "write", key="k", value=0, client="c1")
        for v in range(1, 10):
            _req(c, "seq-kv", "write", key="k", value=v, client="c1")
        outcomes = []
        for _ in range(40):
            t, b = _req(c, "seq-kv", "read", key="k", client="c2")
            t2, b2 = _req(c, "seq-kv", "cas", key="k", client="c2", **{"from": b["value"], "to": 100 + b["value"]})
            outcomes.append(t2 if t2 == "cas_ok" else b2["code"])
            if t2 == "cas_ok":
                break
        assert set(outcomes) <= {"cas_ok", 22} and outcomes[-1] == "cas_ok"
        # the cas that won was made on the newest value, 9, whatever state c2 had read; c2 now
        # reads its own write, while c1 may still read the state it last saw (stale, not wrong)
        assert _req(c, "seq-kv", "read", key="k", client="c2") == ("read_ok", {"value": 109})
        assert _req(c, "seq-kv", "read", key="k", client="c1")[1]["value"] in (9, 109)


def test_lww_kv_converges_and_can_serve_stale():
    stale = 0
    for seed in range(1, 6):
        with _cluster(seed) as c:
            for v in range(1, 20):
                _req(c, "lww-kv", "write", key="k", value=v, client="c1")
                t, b = _req(c, "lww-kv", "read", key="k", client="c2")
                stale += (t, b.get("value")) != ("read_ok", v)
            # no more writes: repeated requests merge the replicas until both hold 19
            for _ in range(20):
                _req(c, "lww-kv", "read", key="other", client="c2")
            assert {_req(c, "lww-kv", "read", key="k", client="c3")[1]["value"] for _ in range(10)} == {19}
    assert stale > 0


def test_lww_merge_ties_break_by_value():
    a = [3, {'"k"': (2, 5)}]
    b = [4, {'"k"': (2, 7), '"j"': (1, "x")}]
    assert LWWKV._merge(a, b) == [4, {'"k"': (2, 7), '"j"': (1, "x")}]
    assert LWWKV._merge(b, a) == [4, {'"k"': (2, 7), '"j"': (1, "x")}]


def test_services_are_deterministic_per_seed():
    def run(seed):
        with _cluster(seed) as c:
            out = []
            for v in range(10):
                _req(c, "seq-kv", "write", key="k", value=v, client="c1")
                out.append(_req(c, "seq-kv", "read", key="k", client="c2"))
                _req(c, "lww-kv", "write", key="k", value=v, client="c1")
                out.append(_req(c, "lww-kv", "read", key="k", client="c2"))
            return out
    assert run(7) == run(7)


def test_a_node_calls_a_service_by_rpc():
    class Caller(labkit.Node):
        async def on_message(self, ctx, msg):
            w = await ctx.rpc("lin-kv", "write", key="a", value=msg.body["v"])
            r = await ctx.rpc("lin-kv", "read", key="a")
            ctx.reply(msg, got=[w.type, r.body["value"]])

    with labkit.Cluster({"n0": Caller, "lin-kv": LinKV}, runtime="sim", seed=1) as c:
        assert c.request("n0", "go", v=4).body == {"got": ["write_ok", 4]}


def test_protocol_errors_table():
    assert set(protocol.ERRORS) == {0, 1, 10, 11, 12, 13, 14, 20, 21, 22, 30}
    assert [c for c, e in protocol.ERRORS.items() if not e.definite] == [0, 13]
    assert protocol.is_definite(22) and not protocol.is_definite(0) and not protocol.is_definite(1000)
    assert not protocol.error_code(1234).definite and protocol.error_code(1234).name == "custom"
    with pytest.raises(TypeError):
        protocol.error_code("20")


@pytest.mark.parametrize("line, reason", [
    ("hello", "not JSON"),
    ("[1]", "a JSON list"),
    ('{"src": "n0", "body": {"type": "x"}}', "'dest'"),
    ('{"src": "n0", "dest": "c1", "body": []}', "'body' must be an object"),
    ('{"src": "n0", "dest": "c1", "body": {"msg_id": 1}}', "'body.type'"),
    ('{"src": "n0", "dest": "c1", "body": {"type": "x", "msg_id": "1"}}', "'body.msg_id' must be an integer"),
    ('{"src": "n0", "dest": "c1", "body": {"type": "x", "in_reply_to": true}}', "'body.in_reply_to'"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_parse_envelope_errors_name_node_and_line(line, reason):
    with pytest.raises(protocol.EnvelopeError) as e:
        protocol.parse_envelope(line, node="n3")
    assert str(e.value).startswith("n3: its program wrote a line that is not a Maelstrom message")
    assert reason in str(e.value)
    assert e.value.node == "n3"


def test_body_mapping_round_trip():
    body = {"type": "echo", "msg_id": 7, "in_reply_to": 3, "echo": "hi"}
    t, mid, re, rest = protocol.split_body(body)
    assert (t, mid, re, rest) == ("echo", 7, 3, {"echo": "hi"})
    assert protocol.join_body(t, rest, mid, re) == body
    assert protocol.join_body("x", {"type": "y", "msg_id": 1, "a": 1}) == {"type": "x", "a": 1}
    env = protocol.parse_envelope(protocol.envelope_line("c1", "n0", body), node="n0")
    assert env == {"src": "c1", "dest": "n0", "body": body}
