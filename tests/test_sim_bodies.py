"""Message bodies in the simulator: a flat body (a few JSON scalars) travels without JSON,
any other as JSON -- and either way the receiver sees exactly what a real network would
deliver, gets its own copy, and the journal says what was sent (see labkit.runtime.sim)."""
from __future__ import annotations

import enum
import json

import pytest

import labkit
from labkit import MessageError


class Color(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


class Echo(labkit.Node):
    """n1 sends what it is asked to; every receiver keeps the bodies it got and mutates them."""

    def on_start(self, ctx):
        self.got = []

    def on_message(self, ctx, msg):
        if msg.type == "go":
            kind = msg["kind"]
            if kind == "plain":
                ctx.send("n2", "m", s="x", i=3, f=1.5, b=True, n=None, neg=-0.0)
            elif kind == "broadcast":
                ctx.broadcast("m", i=1)
            elif kind == "subclasses":
                ctx.send("n2", "m", c=Color.RED, t=Tag("tag"))
            elif kind == "big int":
                ctx.send("n2", "m", i=10 ** 30)
            elif kind == "long str":
                ctx.send("n2", "m", s="é" * 10_000)
            elif kind == "nested":
                ctx.send("n2", "m", l=(1, 2), d={"a": [1]})
            ctx.reply(msg)
            return
        self.got.append((type(msg.body), {k: (type(v), v) for k, v in msg.body.items()}))
        msg.body["mutated"] = True            # the receiver's copy: nobody else sees this


def run(kind: str, n: int = 2):
    c = labkit.Cluster(Echo, n=n, runtime="sim", seed=1)
    c.request("n1", "go", kind=kind)
    c.run_for(0.01)
    return c


def got_of(c, node: str) -> list:
    return c._rt.records[node].ctx._node.got


def wire_bodies(c, kind: str) -> list[dict]:
    return [json.loads(line)["body"] for line in c.journal.filter(kind=kind, type="m").to_jsonl().splitlines()]


def test_a_flat_body_arrives_equal_and_journaled_as_sent():
    c = run("plain")
    got = got_of(c, "n2")
    assert got == [(dict, {"s": (str, "x"), "i": (int, 3), "f": (float, 1.5), "b": (bool, True),
                           "n": (type(None), None), "neg": (float, -0.0)})]
    sent = {"s": "x", "i": 3, "f": 1.5, "b": True, "n": None, "neg": -0.0}
    assert wire_bodies(c, "send") == [sent] and wire_bodies(c, "deliver") == [sent]   # not "mutated"
    line = c.journal.filter(kind="deliver", type="m").to_jsonl()
    assert '"body":{"s":"x","i":3,"f":1.5,"b":true,"n":null,"neg":-0.0}}' in line
    assert "mutated" not in c.journal.filter(kind="send", type="m")[0].body
    c.close()


def test_each_receiver_of_a_broadcast_gets_its_own_copy():
    c = run("broadcast", n=3)
    assert got_of(c, "n2") == got_of(c, "n3") == [(dict, {"i": (int, 1)})]
    assert wire_bodies(c, "deliver") == [{"i": 1}, {"i": 1}]
    c.close()


@pytest.mark.parametrize("kind, expect", [
    ("subclasses", {"c": (int, 1), "t": (str, "tag")}),      # as JSON delivers them: base types
    ("big int", {"i": (int, 10 ** 30)}),
    ("long str", {"s": (str, "é" * 10_000)}),
    ("nested", {"l": (list, [1, 2]), "d": (dict, {"a": [1]})}),   # a tuple arrives as a list
])
def test_other_bodies_arrive_as_json_delivers_them(kind, expect):
    c = run(kind)
    assert got_of(c, "n2") == [(dict, expect)]
    assert wire_bodies(c, "deliver") == [{k: v for k, (_, v) in expect.items()}]
    c.close()


@pytest.mark.parametrize("value, what", [
    (float("nan"), "NaN"), (float("inf"), "NaN or infinities"), ({1, 2}, "set"), (b"x", "bytes"),
    (10 ** 5000, "cannot be encoded"),
], ids=["nan", "inf", "set", "bytes", "int of 5001 digits"])
def test_a_body_a_real_network_could_not_carry_is_refused_in_the_simulator(value, what):
    class Sender(labkit.Node):
        def on_message(self, ctx, msg):
            try:
                ctx.send("n2", "m", v=value)
            except MessageError as e:
                ctx.reply(msg, error=str(e))
            else:
                ctx.reply(msg, error=None)

    c = labkit.Cluster(Sender, n=2, runtime="sim", seed=1)
    err = c.request("n1", "go").body["error"]
    assert err is not None and what in err and "n1: cannot send message type 'm' to n2: body" in err
    assert not c.journal.filter(kind="send", type="m").events      # nothing was sent
    c.close()


def test_journals_with_flat_and_json_bodies_are_byte_identical_per_seed():
    texts = []
    for _ in range(2):
        c = labkit.Cluster(Echo, n=3, runtime="sim", seed=4)
        for kind in ("plain", "broadcast", "subclasses", "nested"):
            c.request("n1", "go", kind=kind)
        c.run_for(0.01)
        texts.append(c.journal.to_jsonl())
        c.close()
    assert texts[0] == texts[1]
