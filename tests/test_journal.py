"""Event and Journal: export/import round trips, filters and error messages."""
from __future__ import annotations

import json

import pytest

import labkit
from labkit import KINDS, Event, Journal


class Gossip(labkit.Node):
    """Pings a peer on a jittered timer, answers pings, logs, and crashes on 'boom'."""

    def on_start(self, ctx):
        ctx.set_timer("tick", between=(20, 60))

    def on_timer(self, ctx, name):
        peer = ctx.peers[ctx.rng.randrange(len(ctx.peers))]
        ctx.send(peer, "ping", at=ctx.now, note="é ✓")  # non-ASCII survives the round trip
        ctx.log("pinged", peer)
        ctx.count("pings")
        ctx.set_timer("tick", between=(20, 60))

    def on_message(self, ctx, msg):
        if msg.type == "boom":
            raise RuntimeError("asked to crash")
        if msg.type == "ping":
            ctx.reply(msg, type="pong")
        elif msg.type == "read":
            ctx.reply(msg, value=ctx.id)


@pytest.fixture(scope="module")
def journal():
    """A journal with every common kind of event in it, from a 1.5 s sim run."""
    with labkit.Cluster(Gossip, n=3, runtime="sim", seed=11) as c:
        c.run_for(0.3)
        c.request("n1", "read")
        c.set_link("n1", "n2", drop=0.5, delay=5, jitter=2)
        c.partition(["n3"])
        c.run_for(0.3)
        c.heal()
        c.kill("n2")
        c.run_for(0.3)
        c.restart("n2")
        with pytest.raises(labkit.NodeCrashed):
            c.request("n3", "boom")
        c.run_for(0.6)
        c.skew("n1", 50)
    # the journal outlives the cluster; take a static copy of it, "close" event included
    return Journal(c.journal.events, seed=c.journal.seed)


def test_fixture_journal_has_the_kinds_we_filter_on(journal):
    kinds = journal.count()
    for k in ("send", "deliver", "drop", "timer_set", "timer_fire", "start", "crash", "kill",
              "restart", "partition", "heal", "link", "log", "stats", "skew", "close"):
        assert kinds[k] > 0, k
    assert set(kinds) <= set(KINDS)


def test_to_jsonl_then_load_gives_equal_events(journal):
    text = journal.to_jsonl()
    assert text.endswith("\n") and text.count("\n") == len(journal)
    loaded = Journal.load(text)
    assert len(loaded) == len(journal)
    assert loaded.events == journal.events
    assert loaded.to_jsonl() == text  # byte for byte
    for a, b in zip(journal, loaded):
        assert (a.t, a.kind, a.node, a.id) == (pytest.approx(b.t, abs=1e-3), b.kind, b.node, b.id)
        assert a.to_dict() == b.to_dict()


def test_to_jsonl_to_a_file_and_load_from_the_path(journal, tmp_path):
    path = tmp_path / "run.jsonl"
    assert journal.to_jsonl(str(path)) is None
    assert path.read_text(encoding="utf-8") == journal.to_jsonl()
    assert Journal.load(str(path)).events == journal.events


def test_each_line_is_one_json_event_with_the_schema(journal):
    for line in journal.to_jsonl().splitlines():
        d = json.loads(line)
        assert {"t", "kind", "node"} <= d.keys()
        assert d["kind"] in KINDS
        if d["kind"] in ("send", "deliver", "drop"):
            assert {"src", "dst", "type", "id", "re", "at", "body"} <= d.keys()
        if d["kind"] == "drop":
            assert d["rule"] in ("drop", "partition", "cut", "node down")


def test_message_events_round_trip_their_fields(journal):
    loaded = Journal.load(journal.to_jsonl())
    orig = journal.filter(kind="send", type="ping").events[0]
    back = loaded.filter(kind="send", id=orig.id).events
    assert len(back) == 1
    b = back[0]
    assert (b.src, b.dst, b.type, b["body"]) == (orig.src, orig.dst, orig.type, orig["body"])
    assert b["body"]["note"] == "é ✓"


def test_crash_event_round_trips_with_its_traceback(journal):
    crash = journal.filter(kind="crash").events
    assert len(crash) == 1
    back = Journal.load(journal.to_jsonl()).filter(kind="crash").events[0]
    assert back.id == crash[0].id and back.id is not None
    assert "asked to crash" in back.get("traceback")
    assert back.get("seed") == 11


def test_event_from_dict_to_dict():
    d = {"t": 1.5, "kind": "log", "node": "n1", "text": "hello"}
    e = Event.from_dict(d)
    assert (e.t, e.kind, e.node, e.id, e.get("text")) == (1.5, "log", "n1", None, "hello")
    assert e.to_dict() == d
    assert e == Event(1.5, "log", "n1", None, {"text": "hello"})
    assert e != Event(1.5, "log", "n2", None, {"text": "hello"})


# -- filters -------------------------------------------------------------------------------

def test_filter_by_node(journal):
    only = journal.filter(node="n2")
    assert len(only) > 0 and all(e.node == "n2" for e in only)
    both = journal.filter(node=["n1", "n3"])
    assert {e.node for e in both} == {"n1", "n3"}
    assert len(only) + len(both) + len(journal.filter(node=["client", "cluster"])) == len(journal)


def test_filter_time_bounds_take_infinities_and_refuse_nan(journal):
    assert len(journal.filter(since=float("-inf"), until=float("inf"))) == len(journal)
    for bad in (float("nan"), "5", True):
        with pytest.raises(labkit.ArgumentError, match="filter\\(since\\) must be a number of ms"):
            journal.filter(since=bad)


def test_filter_by_kind(journal):
    sends = journal.filter(kind="send")
    assert len(sends) > 0 and all(e.kind == "send" for e in sends)
    msgs = journal.filter(kind=("send", "deliver", "drop"))
    assert len(msgs) == len(sends) + journal.count()["deliver"] + journal.count()["drop"]


def test_filter_by_message_type(journal):
    pongs = journal.filter(type="pong")
    assert len(pongs) > 0
    assert all(e.kind in ("send", "deliver", "drop") and e.type == "pong" for e in pongs)
    both = journal.filter(type=["ping", "pong"], kind="deliver")
    assert {e.type for e in both} == {"ping", "pong"}
    # non-message events never match a type filter, even if they have a "type" field
    assert len(Journal([Event(0, "log", "n1", None, {"type": "ping"})]).filter(type="ping")) == 0


def test_filter_since_until_are_inclusive(journal):
    times = sorted({e.t for e in journal})
    lo, hi = times[5], times[-5]
    window = journal.filter(since=lo, until=hi)
    assert all(lo <= e.t <= hi for e in window)
    assert any(e.t == lo for e in window) and any(e.t == hi for e in window)
    expected = sum(1 for e in journal if lo <= e.t <= hi)
    assert len(window) == expected < len(journal)


def test_filter_by_id(journal):
    send = journal.filter(kind="send", type="ping").events[3]
    same = journal.filter(id=send.id)
    assert len(same) >= 2  # the send and its delivery (or drop)
    assert all(e.id == send.id for e in same)
    assert {e.kind for e in same} <= {"send", "deliver", "drop"}


def test_filter_where_and_combinations(journal):
    dropped_by_rule = journal.filter(kind="drop", where=lambda e: e.get("rule") == "partition")
    assert len(dropped_by_rule) > 0
    assert all(e.get("rule") == "partition" and (e.src == "n3" or e.dst == "n3") for e in dropped_by_rule)
    combo = journal.filter(node="n1", kind="log", where=lambda e: "n2" in e.get("text"))
    assert len(combo) > 0
    assert all(e.node == "n1" and e.kind == "log" and e.get("text") == "pinged n2" for e in combo)


def test_filter_returns_a_new_static_journal():
    with labkit.Cluster(Gossip, n=2, runtime="sim", seed=3) as c:
        c.run_for(0.2)
        live_before = len(c.journal)
        sends = c.journal.filter(kind="send")
        n = len(sends)
        c.run_for(0.5)
        assert len(c.journal) > live_before  # the cluster's journal is live
        assert len(sends) == n               # a filtered journal is not


def test_filter_unknown_kind_raises_value_error(journal):
    with pytest.raises(ValueError, match=r"unknown event kind\(s\) \['delivered'\]"):
        journal.filter(kind="delivered")
    with pytest.raises(ValueError, match="sned"):
        journal.filter(kind=["send", "sned"])


def test_count_and_slice(journal):
    c = journal.count(node="n1")
    assert sum(c.values()) == len(journal.filter(node="n1"))
    head = journal[:10]
    assert isinstance(head, Journal) and len(head) == 10
    assert head.events == journal.events[:10]
    assert journal[0] == journal.events[0]


def test_summary_mentions_counts():
    j = Journal([Event(0, "log", "n1", None, {"text": "a"}), Event(10, "log", "n2", None, {"text": "b"}),
                 Event(20, "kill", "n1", None, {})])
    assert j.summary() == "Journal: 3 events over 0-20 ms (log 2, kill 1)"
    assert Journal([]).summary() == "Journal: empty"


# -- loading errors ------------------------------------------------------------------------

GOOD = '{"t":0,"kind":"log","node":"n1","text":"a"}'


def test_load_skips_blank_lines():
    j = Journal.load(GOOD + "\n\n  \n" + GOOD.replace('"a"', '"b"') + "\n")
    assert [e.get("text") for e in j] == ["a", "b"]


@pytest.mark.parametrize("bad_line", [
    '{"t":0,"kind":"log","node":"n1"',     # truncated JSON
    'not json at all',
    '{"kind":"log","node":"n1"}',          # no time
    '{"t":0,"node":"n1"}',                 # no kind
    '{"t":"soon","kind":"log","node":"n1"}',
])
def test_load_malformed_line_names_the_line_number(bad_line):
    text = "\n".join([GOOD, GOOD, bad_line, GOOD]) + "\n"
    with pytest.raises(ValueError, match=r"^line 3 of the journal"):
        Journal.load(text)


@pytest.mark.parametrize("bad_line", ['[1, 2]', '42', '"a string"', 'null'])
def test_load_a_line_that_is_json_but_not_an_object_names_the_line_number(bad_line):
    text = "\n".join([GOOD, bad_line]) + "\n"
    with pytest.raises(ValueError, match=r"^line 2 of the journal"):
        Journal.load(text)
