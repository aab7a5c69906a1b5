"""Journal rows: the simulator appends tuples of Event's arguments instead of Events; the store
indexes them beside Events and builds each row's Event (once) when it is read."""
from __future__ import annotations

from labkit.journal import Event, Journal
from labkit.journal_store import EventStore


def test_rows_and_events_mix_and_read_back_as_the_same_events():
    w = ("n1", "n2", "m", "n1.1.1", None, 1.0, {"k": 1, "s": "é"})
    w2 = ("n1", "n2", "m", "n1.1.2", None, 1.5, '{"l":[1,2]}')
    store = EventStore()
    store.append((1.0, "send", "n1", "n1.1.1", None, w))
    store.append(Event(1.2, "log", "n1", None, {"text": "hi"}))
    store.append((1.5, "send", "n1", "n1.1.2", None, w2))
    store.append((1.6, "timer_set", "n2", None, {"name": "t", "after": 5.0}))
    j = Journal(store)
    assert j.count() == {"send": 2, "log": 1, "timer_set": 1}
    evs = j.events
    assert all(type(e) is Event for e in evs)
    assert [e.to_dict() for e in evs] == [
        {"t": 1.0, "kind": "send", "node": "n1", "id": "n1.1.1", "src": "n1", "dst": "n2", "type": "m",
         "re": None, "at": 1.0, "body": {"k": 1, "s": "é"}},
        {"t": 1.2, "kind": "log", "node": "n1", "text": "hi"},
        {"t": 1.5, "kind": "send", "node": "n1", "id": "n1.1.2", "src": "n1", "dst": "n2", "type": "m",
         "re": None, "at": 1.5, "body": {"l": [1, 2]}},
        {"t": 1.6, "kind": "timer_set", "node": "n2", "name": "t", "after": 5.0},
    ]
    assert j.events[0] is evs[0]                       # built once, then kept
    evs[0].body["k"] = 99                              # a reader's change stays in that event ...
    assert w[6] == {"k": 1, "s": "é"}                  # ... not in the message the row holds
    assert j.filter(id="n1.1.2").events == [evs[2]]
    assert j.filter(type="m", since=1.1).events == [evs[2]]
    text = j.to_jsonl()
    assert text.splitlines()[2] == ('{"t":1.5,"kind":"send","node":"n1","id":"n1.1.2","src":"n1","dst":"n2",'
                                    '"type":"m","re":null,"at":1.5,"body":{"l":[1,2]}}')
    assert Journal.load(text).to_jsonl() == text
