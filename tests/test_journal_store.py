"""The journal's storage: events read from text are index columns plus their JSON lines,
built into ``Event`` objects lazily. These tests hold the lazy events to what parsing each
line with ``json`` gives, and exercise the size policy (spill, refuse) on small limits."""
from __future__ import annotations

import json
import random
import threading

import numpy as np
import pytest

import labkit
from labkit import _child
from labkit.journal import Event, Journal, JournalFull, JournalLimits, event_line
from labkit.journal_store import EventStore
from labkit.message import dumps, wire

NODES = ["n1", "n2", "n3", "client"]


def node_lines(seed: int = 1, rounds: int = 300) -> list[str]:
    """Journal lines written by the node runtime's own writer (``_child._Node``), in a
    realistic mix: timers, sends, deliveries, drops, notes, logs, stats, a crash."""
    rng = random.Random(seed)
    clock = [0.0]
    out: list[str] = []
    w = object.__new__(_child._Node)
    w.jbuf, w.out, w.wire, w.event_line, w.Event = out, [], wire, event_line, Event
    w.now = lambda: clock[0]
    for i in range(rounds):
        clock[0] += rng.uniform(0.01, 3.0)
        nid = rng.choice(NODES[:3])
        w.id, w.jid = nid, dumps(nid)
        r = rng.random()
        body = dumps({"i": i, "nested": {"id": "not-the-id", "t": 5}, "s": "é \" \\ ✓"})
        if r < 0.4:
            typ = rng.choice(["ping", 'odd "type", "id":"x"', "pong"])
            w.transmit(None, f"{nid}.1.{i}", rng.choice(NODES), typ, rng.choice([None, "n2.1.7"]), body)
            wire_ = w.out.pop()[1]
            w._journal_msg(rng.choice(["deliver", "drop"]), wire_, "partition" if r < 0.1 else None)
        elif r < 0.6:
            w.record(Event(clock[0], "timer_set", nid, None, {"name": "tick", "after": 12.5}))
        elif r < 0.7:
            w.record(Event(clock[0], "note", nid, None, None, wire=dumps({"what": "leader", "id": 3})))
        elif r < 0.8:
            w.record(Event(clock[0], "log", nid, None, {"text": "line\nwith newline"}))
        elif r < 0.9:
            w.record(Event(clock[0], "stats", nid, None, {"counters": {"x": float("nan")}, "status": {}}))
        else:
            w.record(Event(clock[0], "crash", nid, f"c0.1.{i}", {"error": "boom", "traceback": "tb"}))
    return [line.rstrip("\n") for line in out]


def parsed(line: str) -> Event:
    return Event.from_dict(json.loads(line))


def test_lazy_events_equal_parsing_each_line_with_json():
    lines = node_lines()
    j = Journal.load("\n".join(lines) + "\n")
    assert len(j) == len(lines)
    for line, e in zip(lines, j):
        ref = parsed(line)
        assert (e.t, e.kind, e.node, e.id) == (ref.t, ref.kind, ref.node, ref.id), line
        assert e.data == ref.data and e.type == ref.type and e.src == ref.src and e.body == ref.body
        assert e == ref and type(e) is Event


def test_message_type_and_id_come_from_the_header_not_the_body():
    lines = node_lines()
    j = Journal.load("\n".join(lines) + "\n")
    odd = j.filter(type='odd "type", "id":"x"')
    assert len(odd) > 0
    for e in odd:
        assert e.id.startswith(e.node) or e.kind != "send"
        assert e.body["nested"]["id"] == "not-the-id"
    notes = j.filter(kind="note")   # a field named "id" is the event's id, as Event.from_dict has it
    assert len(notes) > 0 and all(e.id == 3 and e.get("what") == "leader" for e in notes)


def test_lines_in_other_shapes_take_the_slow_path_and_read_the_same():
    shapes = [
        '{"t":1.5,"kind":"log","node":"n1","text":"a"}',                 # fast
        '{"node":"n1","kind":"log","t":2,"text":"key order"}',           # other key order
        '{"t":3,"kind":"log","node":"we\\"ird","text":"escaped node"}',  # escaped node id
        '{"t":4,"kind":"op","node":"c1","value":{"id":"inner"},"process":1}',
        '{"t":5,"kind":"kill","node":"n2"}',                             # no data at all
        '{"t":6,"kind":"crash","node":"n2","id":"c0.1.9","error":"x"}\r',  # CRLF
        '   ',                                                            # blank line
        '{"t":7e0,"kind":"deliver","node":"n1","id":"n2.1.1","src":"n2","dst":"n1","type":"p","re":null,"at":6,"body":{}}',
    ]
    j = Journal.load("\n".join(shapes) + "\n")
    expected = [parsed(s) for s in shapes if s.strip()]
    assert j.events == expected
    assert [e.id for e in j] == [None, None, None, None, None, "c0.1.9", "n2.1.1"]
    assert j.filter(node='we"ird').events == [expected[2]]
    assert Journal.load(j.to_jsonl()).events == expected


def test_a_damaged_body_is_reported_when_the_event_is_read():
    j = Journal.load('{"t":0,"kind":"log","node":"n1","text":"a"}\n{"t":1,"kind":"log","node":"n1","text":oops}\n')
    assert len(j) == 2 and j.count() == {"log": 2}            # the index needs only the header
    assert j[0].get("text") == "a"
    with pytest.raises(ValueError, match=r"not valid JSON .*oops.*damaged"):
        j[1].get("text")


def test_filter_and_count_agree_with_a_scan_of_the_events():
    lines = node_lines(seed=4, rounds=600)
    j = Journal.load("\n".join(lines) + "\n")
    ref = [parsed(s) for s in lines]
    rng = random.Random(2)
    for _ in range(40):
        node = rng.choice([None, "n1", ["n2", "client"], "nobody"])
        kind = rng.choice([None, "send", ["deliver", "drop"], "stats"])
        since = rng.choice([None, rng.uniform(0, 400)])
        until = rng.choice([None, rng.uniform(300, 900)])
        typ = rng.choice([None, "ping", ["pong", 'odd "type", "id":"x"']])
        got = j.filter(node=node, kind=kind, since=since, until=until, type=typ)
        nodes = {node} if isinstance(node, str) else set(node or ())
        kinds = {kind} if isinstance(kind, str) else set(kind or ())
        types = {typ} if isinstance(typ, str) else set(typ or ())
        want = [e for e in ref if (not nodes or e.node in nodes) and (not kinds or e.kind in kinds)
                and (since is None or e.t >= since) and (until is None or e.t <= until)
                and (not types or (e.kind in ("send", "deliver", "drop") and e.type in types))]
        assert got.events == want
        assert dict(got.count()) == {k: sum(1 for e in want if e.kind == k) for k in {e.kind for e in want}}
    for e in rng.sample([e for e in ref if isinstance(e.id, str)], 30) + [Event(0, "log", "n1", "nope", {})]:
        assert j.filter(id=e.id).events == [x for x in ref if x.id == e.id]


def test_by_time_store_merges_text_and_objects_stably():
    store = EventStore(by_time=True)
    store.add_text(b'{"t":5,"kind":"log","node":"n1","text":"a"}\n{"t":9,"kind":"log","node":"n1","text":"b"}\n')
    store.append(Event(5, "kill", "n2", None, {}))           # same time as "a", arrived later
    assert [(e.t, e.kind) for e in Journal(store)] == [(5, "log"), (5, "kill"), (9, "log")]
    store.add_text(b'{"t":7,"kind":"log","node":"n3","text":"c"}\n')   # older than the tail
    store.append(Event(1, "heal", "cluster", None, {}))
    assert [e.t for e in Journal(store)] == [1, 5, 5, 7, 9]
    static = Journal(store).filter(kind="log")               # holds rows, not positions
    store.add_text(b'{"t":0,"kind":"log","node":"n1","text":"first"}\n')
    assert [e.get("text") for e in static] == ["a", "c", "b"]
    assert Journal(store)[0].get("text") == "first"


def test_append_from_another_thread_while_reading_loses_nothing():
    store = EventStore()
    live = Journal(store)
    n = 20_000

    def writer():
        for i in range(n):
            store.append(Event(float(i), "log", "n1", None, {"i": i}))

    th = threading.Thread(target=writer)
    th.start()
    while th.is_alive():
        len(live)
        live.count()
    th.join()
    assert len(live) == n
    assert [e.get("i") for e in live] == list(range(n))


# -- the size policy ---------------------------------------------------------------------------

def test_text_past_the_memory_budget_is_spilled_and_reads_the_same(tmp_path):
    lines = node_lines(seed=7, rounds=3000)
    text = "\n".join(lines) + "\n"
    limits = JournalLimits(memory_mb=0.05, spill_dir=str(tmp_path))
    j = Journal.load(text, limits=limits)
    store = j._store
    assert store.spilled_bytes > len(text.encode()) // 2          # most of it went to disk
    assert store._text.in_memory <= 0.05 * 2**20
    assert not list(tmp_path.iterdir())                          # the spill file is unlinked
    assert j.to_jsonl() == text
    assert j.events == [parsed(s) for s in lines]


def test_set_limits_spills_down_to_a_lower_budget_at_once():
    j = Journal.load("\n".join(node_lines(rounds=2000)) + "\n")
    before = j.events
    assert j._store.spilled_bytes == 0
    j.set_limits(memory_mb=0)
    assert j._store._text.in_memory == 0 and j._store.spilled_bytes > 0
    assert j.events == before


def test_load_past_max_events_refuses_with_the_limit_and_what_to_do():
    lines = node_lines(rounds=50)
    text = "\n".join(lines) + "\n"
    with pytest.raises(JournalFull, match=r"more than 20 events.*max_events.*JournalLimits\(max_events=40\)"):
        Journal.load(text, limits=JournalLimits(max_events=20))
    assert len(Journal.load(text, limits=JournalLimits(max_events=len(lines)))) == len(lines)


def test_a_full_store_takes_whole_lines_up_to_the_limit_then_reads_on_when_raised():
    lines = node_lines(rounds=30)
    data = ("\n".join(lines) + "\n").encode()
    store = EventStore(limits=JournalLimits(max_events=10))
    taken = store.add_text(data)
    assert store.full and len(store) == 10
    assert data[:taken].count(b"\n") == 10 and data[taken - 1:taken] == b"\n"
    assert store.add_text(data[taken:]) == 0
    Journal(store).set_limits(max_events=100)
    assert not store.full
    assert store.add_text(data[taken:]) == len(data) - taken
    assert Journal(store).events == [parsed(s) for s in lines]


@pytest.mark.parametrize("kw, msg", [
    ({"memory_mb": -1}, "memory_mb"), ({"memory_mb": float("nan")}, "memory_mb"),
    ({"max_events": 0}, "max_events"), ({"max_events": 2.5}, "max_events"),
    ({"spill_dir": "/no/such/dir"}, "spill_dir"),
])
def test_bad_limits_are_refused_naming_the_setting(kw, msg):
    with pytest.raises(ValueError, match=msg):
        JournalLimits(**kw)


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABKIT_JOURNAL_MEMORY_MB", "64")
    monkeypatch.setenv("LABKIT_JOURNAL_MAX_EVENTS", "1000")
    assert Journal().limits == JournalLimits(memory_mb=64, max_events=1000)
    monkeypatch.setenv("LABKIT_JOURNAL_MAX_EVENTS", "lots")
    with pytest.raises(ValueError, match="LABKIT_JOURNAL_MAX_EVENTS='lots'"):
        Journal()


def test_sim_cluster_journal_is_live_and_its_events_are_the_objects_the_runtime_made():
    class Ping(labkit.Node):
        def on_start(self, ctx):
            ctx.set_timer("t", after=10)

        def on_timer(self, ctx, name):
            ctx.broadcast("ping")
            ctx.set_timer("t", after=10)

    with labkit.Cluster(Ping, n=3, runtime="sim", seed=5) as c:
        c.run_for(0.2)
        n = len(c.journal)
        first = c.journal[0]
        c.run_for(0.2)
        assert len(c.journal) > n and c.journal[0] is first
        assert np.all(np.diff([e.t for e in c.journal]) >= 0)
