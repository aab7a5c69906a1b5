"""Robustness: reply callbacks and sends to self (issue 18, "Lost or wrong data").

* ``on_reply`` callbacks run only on the thread that runs the cluster (``run_for`` /
  ``request``), never on another thread that merely reads it (the panel's refresher calls
  ``status()``); a callback that raises stops that call with its traceback, and no journal
  event is ever lost over it;
* a node's message to itself is delivered to the node, in both runtimes, and the journal
  says so.
"""
from __future__ import annotations

import threading
import time

import pytest

import labkit

try:                                   # tests/ as a package, or as a plain directory
    from .robustnodes import Misbehaving, Quiet
except ImportError:
    from robustnodes import Misbehaving, Quiet

OK_MS = 5000.0
RUNTIMES = ["sim", pytest.param("processes", marks=pytest.mark.processes)]


def _delivered_to_client(c, mids):
    return {e.get("re") for e in c.journal.filter(kind="deliver", node="client")} >= set(mids)


@pytest.mark.processes
def test_callbacks_never_run_on_a_thread_that_only_reads_the_cluster():
    calls = []
    with labkit.Cluster(Quiet, n=2, runtime="processes", seed=1) as c:
        mid = c.client_send("n1", "echo", on_reply=lambda ev: calls.append((threading.current_thread(), ev)))
        seen = threading.Event()

        def panel_like_reader():      # what the panel's refresher does, 10 times a second
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                c.status()
                if _delivered_to_client(c, [mid]):
                    seen.set()
                    return
                time.sleep(0.01)

        reader = threading.Thread(target=panel_like_reader)
        reader.start()
        reader.join()
        assert seen.is_set(), "the reply never reached the journal"
        assert calls == []                   # journaled by the reader, but not called there
        c.run_for(0.01)                      # the notebook runs the cluster: now it is called, here
        assert len(calls) == 1
        thread, ev = calls[0]
        assert thread is threading.main_thread()
        assert ev.get("re") == mid and ev.kind == "deliver"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_raising_callback_stops_the_cell_and_loses_no_event(runtime):
    called = []

    def cb(ev):
        called.append(ev.get("re"))
        if len(called) == 1:
            raise ValueError("bug in my callback")

    with labkit.Cluster(Quiet, n=2, runtime=runtime, seed=2) as c:
        mids = [c.client_send(n, "echo", on_reply=cb) for n in ("n1", "n2", "n1", "n2", "n1")]
        with pytest.raises(ValueError, match="bug in my callback") as ei:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                c.run_for(0.05)
        assert any("cb" in str(f.name) for f in ei.traceback)      # the callback's own traceback
        # the reply whose callback raised is in the journal, and status() keeps it
        c.status()
        assert _delivered_to_client(c, called[:1])
        # the other callbacks were kept (or their replies are still coming): the next
        # run_for runs them, on this thread, and every reply is in the journal once
        deadline = time.monotonic() + 20
        while len(called) < len(mids) and time.monotonic() < deadline:
            c.run_for(0.05)
        assert sorted(called) == sorted(mids)
        c.status()
        delivered = [e.get("re") for e in c.journal.filter(kind="deliver", node="client")]
        assert sorted(delivered) == sorted(mids)
        assert sorted(e.id for e in c.journal.filter(kind="send", node="client")) == sorted(mids)


@pytest.mark.processes
def test_status_while_callbacks_are_due_keeps_every_event():
    """The pending batch must never be cleared before it is merged (a raising callback in a
    status() call used to lose it for good)."""
    with labkit.Cluster(Quiet, n=2, runtime="processes", seed=3) as c:
        def boom(ev):
            raise RuntimeError("boom")

        mids = [c.client_send("n1", "echo", on_reply=boom) for _ in range(20)]
        c.record_op(0, "invoke", "read")                 # a pending event of the notebook's own
        deadline = time.monotonic() + 20
        while not _delivered_to_client(c, mids) and time.monotonic() < deadline:
            c.status()                                   # never raises: callbacks do not run here
        assert _delivered_to_client(c, mids)
        assert len(c.journal.filter(kind="op")) == 1
        for _ in mids:
            with pytest.raises(RuntimeError, match="boom"):
                c.run_for(0.01)
        c.run_for(0.01)                                  # all callbacks have run: no more errors
        assert len(c.journal.filter(kind="deliver", node="client")) == 20


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_message_to_itself_is_delivered_to_the_node(runtime):
    with labkit.Cluster(Misbehaving, n=2, runtime=runtime, seed=4) as c:
        for i in range(3):
            c.request("n2", "to_self", timeout=OK_MS, n=i)
        deadline = time.monotonic() + 20
        while c.request("n2", "echo", timeout=OK_MS)["hellos"] < 3 and time.monotonic() < deadline:
            c.run_for(0.05)
        assert c.request("n2", "echo", timeout=OK_MS)["hellos"] == 3
        sends = c.journal.filter(kind="send", type="hello").events
        delivers = c.journal.filter(kind="deliver", type="hello").events
        assert [(e.node, e.src, e.dst) for e in sends] == [("n2", "n2", "n2")] * 3
        assert sorted((e.node, e.src, e.dst, e.id) for e in delivers) == \
            sorted(("n2", "n2", "n2", e.id) for e in sends)
        # nothing went to the notebook's inbox instead
        assert all(e.get("type") != "hello" for e in c.journal.filter(kind="deliver", node="client"))
        assert [e.get("text") for e in c.journal.filter(kind="log", node="n2")] == \
            [f"hello {i} from n2" for i in range(3)]


@pytest.mark.processes
def test_a_live_panel_never_runs_reply_callbacks():
    """The control panel's refresher reads status() 10 times a second while no cell runs: the
    reply reaches the journal through it, but its callback waits for the next run_for."""
    pytest.importorskip("ipywidgets")
    from labkit.widgets import Panel
    calls = []
    with labkit.Cluster(Quiet, n=2, runtime="processes", seed=5) as c:
        p = Panel(c, refresh_hz=10)
        try:
            mid = c.client_send("n1", "echo", on_reply=lambda ev: calls.append(threading.current_thread()))
            deadline = time.monotonic() + 20
            while mid not in c._rt._replies and not c._rt._due and time.monotonic() < deadline:
                time.sleep(0.02)                 # only the panel's thread reads the cluster here
            assert len(c._rt._due) == 1, "the panel's refresher did not take the reply in"
            time.sleep(0.3)                      # three more refreshes
            assert calls == [] and p.last_action is None
            c.run_for(0.01)
            assert calls == [threading.main_thread()]
            assert p.status_line.value == "<i>ready</i>"      # nothing reported on the panel
        finally:
            p.close()


@pytest.mark.processes
def test_callbacks_still_due_when_the_cluster_closes_are_not_run():
    calls = []
    c = labkit.Cluster(Quiet, n=1, runtime="processes", seed=6)
    try:
        mid = c.client_send("n1", "echo", on_reply=calls.append)
        deadline = time.monotonic() + 20
        while not _delivered_to_client(c, [mid]) and time.monotonic() < deadline:
            c.status()
            time.sleep(0.01)
        assert _delivered_to_client(c, [mid]) and calls == []
    finally:
        c.close()
    assert calls == []                                     # never called on a closed cluster
    assert len(c.journal.filter(kind="deliver", node="client")) == 1
