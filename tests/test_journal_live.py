"""The journal of a real processes cluster: status() never reads it, and the size policy
(refuse past ``max_events``, read on when the limit is raised) holds on live node files."""
from __future__ import annotations

import os

import pytest

import labkit
from labkit.journal import JournalFull
from labkit.journal_store import EventStore
from labkit.runtime.processes import ProcessRuntime

try:                                   # tests/ as a package, or as a plain directory
    from .procnodes import Lab, Pinger
except ImportError:
    from procnodes import Lab, Pinger

pytestmark = pytest.mark.processes


def _no_parsing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("status() read the journal")
    monkeypatch.setattr(EventStore, "add_text", refuse)
    monkeypatch.setattr(ProcessRuntime, "_read_file", refuse)
    monkeypatch.setattr(ProcessRuntime, "_read_journal", refuse)


def _file_lines(c) -> int:
    n = 0
    for name in os.listdir(c._rt.dir):
        if name.startswith("j-"):
            with open(os.path.join(c._rt.dir, name), "rb") as f:
                n += f.read().count(b"\n")
    return n


def test_status_never_reads_the_journal_however_large(monkeypatch, wait_until):
    with labkit.Cluster(Lab, n=3, seed=1) as c:
        c.request("n1", "echo", timeout=5000, x=1)
        # a huge journal waiting to be read: 400,000 events (~45 MB) in one more node file
        line = ('{"t":1.0,"kind":"send","node":"n3","src":"n3","dst":"n1","type":"x","id":"n3.9.1",'
                '"re":null,"at":1.0,"body":{}}\n')
        with open(os.path.join(c._rt.dir, "j-n3-99.jsonl"), "w") as f:
            f.write(line * 400_000)
        with monkeypatch.context() as m:
            _no_parsing(m)
            st = c.status()
            assert {n: s.state for n, s in st.items()} == {"n1": "up", "n2": "up", "n3": "up"}
            # a crash shows in status() from the process alone, the journal still unread
            c.client_send("n2", "boom")
            crashed = wait_until(lambda: c.status()["n2"].state == "crashed", timeout=10)
            assert crashed
        # the crash is journaled once, with its traceback, when the journal is read
        crashes = c.journal.filter(kind="crash", node="n2")
        assert len(crashes) == 1 and "boom in on_message" in crashes[0].get("traceback")
        assert c.journal.count(node="n3", kind="send")["send"] >= 400_000
        assert c.status()["n2"].state == "crashed"


class Exits(labkit.Node):
    def on_message(self, ctx, msg):
        os._exit(7)          # the process ends outside labkit's crash handling


def test_a_process_that_exits_without_a_crash_line_is_journaled_and_reported_once(wait_until, capsys):
    with labkit.Cluster(Exits, n=2, seed=4) as c:
        c.client_send("n1", "bye")
        assert wait_until(lambda: c.status()["n1"].state == "crashed", timeout=10)
        for _ in range(3):                       # every read after the first finds nothing new
            crashes = c.journal.filter(kind="crash")
            c.run_for(0.05)
        assert len(crashes) == 1 and "exited with code 7" in crashes[0].get("error")
        assert len(c.crashes) == 1
    assert capsys.readouterr().err.count("exited with code 7") == 1


def test_closing_a_full_journal_says_what_it_discards(wait_until, capsys):
    c = labkit.Cluster(Pinger, n=2, seed=3)
    try:
        c.journal.set_limits(max_events=50)
        assert wait_until(lambda: _file_lines(c) > 200, timeout=20, cluster=c)
    finally:
        c.close()
    err = capsys.readouterr().err
    assert "the journal was full (50 events, its max_events)" in err and "discarded" in err
    assert len(c.journal) == 50 and c.journal.count()["close"] == 1   # the cluster's own events stay


def test_a_journal_past_max_events_refuses_then_reads_on_losing_nothing(wait_until):
    with labkit.Cluster(Pinger, n=3, seed=2) as c:
        c.journal.set_limits(max_events=300)
        full = wait_until(lambda: _file_lines(c) > 600, timeout=20, cluster=c)
        assert full
        with pytest.raises(JournalFull, match=r"max_events=300.*set_limits\(max_events=600\)"):
            len(c.journal)
        with pytest.raises(JournalFull):
            c.journal.filter(kind="send")
        # the cluster itself goes on: nothing that is not a journal read refuses
        assert c.status()["n1"].state == "up"
        c.run_for(0.1)
        assert c.request("n1", "get", timeout=5000).body["incarnation"] == 1
        assert isinstance(c.counters("n1"), dict)
        for n in c.ids:
            c.kill(n)
        on_disk = _file_lines(c)                 # the node files stop growing here
        c.journal.set_limits(max_events=10**6)
        j = c.journal
        from_nodes = len(j) - j.count()["kill"] - len(j.filter(node="client"))
        assert from_nodes == on_disk             # every line the nodes wrote, none twice
        times = [e.t for e in j]
        assert times == sorted(times)
