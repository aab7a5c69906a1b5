"""The notebook's client path in the processes runtime: what ``cluster.request`` and
``client_send`` journal, and how a request learns that its node's process is gone.

Every test starts OS processes (marker ``processes``); waits are bounded polling loops whose
result is asserted afterwards, never a timed assertion.
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time

import psutil
import pytest

import labkit

try:                                   # tests/ as a package, or as a plain directory
    from .procnodes import Lab
except ImportError:
    from procnodes import Lab

pytestmark = pytest.mark.processes

OK_MS = 5000.0  # request timeout for requests that must succeed (a loaded 2-core box is slow)


def _message_events(cluster, mid):
    """The journal's message events of request ``mid`` and of its reply, in journal order."""
    return [e for e in cluster.journal.filter(kind=("send", "deliver"))
            if e.id == mid or e.get("re") == mid]


def test_a_request_journals_send_deliver_reply_deliver_in_order_with_their_fields():
    with labkit.Cluster({"n1": Lab}, seed=31) as c:
        for i in range(20):                   # several: each one's four events, in order
            reply = c.request("n1", "echo", timeout=OK_MS, x=i)
            assert (reply.type, reply.body, reply.src, reply.dst) == \
                ("echo_ok", {"echo": i, "me": "n1"}, "n1", "client"), reply
            mid = reply.in_reply_to
            evs = _message_events(c, mid)
            assert [(e.kind, e.node) for e in evs] == \
                [("send", "client"), ("deliver", "n1"), ("send", "n1"), ("deliver", "client")], evs
            sent, delivered, answered, back = evs
            assert (sent.src, sent.dst, sent.type, sent.id, sent.get("re"), sent.body) == \
                ("client", "n1", "echo", mid, None, {"x": i}), sent.data
            assert delivered.data == sent.data, (delivered.data, sent.data)
            assert (back.src, back.dst, back.type, back.id, back.get("re"), back.body) == \
                ("n1", "client", "echo_ok", reply.id, mid, {"echo": i, "me": "n1"}), back.data
            assert back.data == answered.data, (back.data, answered.data)
            assert sent.t <= delivered.t <= answered.t <= back.t, [e.t for e in evs]
            assert back.get("at") == reply.sent_at == answered.get("at"), (back.data, reply)


def test_client_send_replies_are_journaled_and_called_back_once_each(wait_until):
    with labkit.Cluster({"n1": Lab, "n2": Lab}, seed=32) as c:
        got = []
        ids = [c.client_send(n, "echo", x=i, on_reply=got.append) for i in range(50) for n in ("n1", "n2")]
        wait_until(lambda: len(got) == len(ids), 20.0, cluster=c)
        assert sorted(e.get("re") for e in got) == sorted(ids), got
        assert all(e.kind == "deliver" and e.node == "client" for e in got), got
        sends = {e.id for e in c.journal.filter(kind="send", node="client")}
        backs = [e.get("re") for e in c.journal.filter(kind="deliver", node="client")]
        assert sends == set(ids) and sorted(backs) == sorted(ids), (len(sends), len(backs))


def test_a_node_killed_outside_labkit_refuses_the_next_request_at_once_in_every_incarnation(wait_until):
    """The request looks at the node's process before it sends (a poll of the process's
    sentinel): a node SIGKILLed behind labkit's back is known to be gone, the request is
    refused with NodeDown and journaled as dropped ("node down"), and the same holds for the
    next incarnation after a restart."""
    c = labkit.Cluster({"n1": Lab}, seed=33)
    c._rt.echo_crashes = False              # the crash is asserted on, not printed
    with c:
        for incarnation in (1, 2):
            assert c.request("n1", "get", timeout=OK_MS).body["incarnation"] == incarnation
            proc = psutil.Process(c.status()["n1"].pid)
            os.kill(proc.pid, signal.SIGKILL)
            gone, _ = psutil.wait_procs([proc], timeout=10)
            # ... and its exit status has reached the notebook: the forkserver that reaped it
            # writes it to the process's sentinel an instant later. Incarnation 1: seen there
            # (not read); incarnation 2: read already (Process.exitcode), the sentinel drained.
            node_proc = c._rt.records["n1"].proc
            if incarnation == 1:
                exited = select.select([node_proc.sentinel], [], [], 10.0)[0]
            else:
                exited = wait_until(lambda: node_proc.exitcode is not None, 10.0)
            assert gone and exited, "the node process did not exit"
            assert c._rt.records["n1"].state == "up"       # labkit has not looked yet
            with pytest.raises(labkit.NodeDown, match="n1 is crashed") as ei:
                c.request("n1", "echo", timeout=60_000)
            assert "refused at once" in str(ei.value), ei.value
            mid = c.journal.filter(kind="send", node="client")[-1].id
            assert [e.get("rule") for e in c.journal.filter(kind="drop", id=mid)] == ["node down"]
            crash = [e for e in c.crashes if e.get("incarnation") == incarnation]
            assert len(crash) == 1 and "exited with code -9" in crash[0].get("error"), crash
            c.restart("n1")
        assert c.request("n1", "get", timeout=OK_MS).body["incarnation"] == 3


def test_ctrl_c_during_a_request_stops_the_wait_not_the_cluster():
    """Ctrl-C while ``cluster.request`` waits (for a reply that never comes: n1 answers no
    client "ping") ends the wait with KeyboardInterrupt; the request is forgotten, its send
    stays journaled, and the cluster goes on serving requests."""
    with labkit.Cluster({"n1": Lab}, seed=34) as c:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                c.request("n1", "ping", timeout=60_000)
        finally:
            timer.cancel()
            timer.join()
        (sent,) = c.journal.filter(kind="send", node="client", type="ping").events
        assert sent.id not in c._rt._awaiting, "an interrupted request must not wait on"
        assert c.status()["n1"].state == "up"
        assert c.request("n1", "echo", timeout=OK_MS, x=7).body["echo"] == 7


def test_requests_while_another_thread_reads_status_and_counters():
    """A panel's thread calls ``status()`` and ``counters()`` while the notebook's thread makes
    requests: both look at the node processes (and the inbox) at once; neither fails, every
    request gets its own reply, and the journal has each request and reply once."""
    with labkit.Cluster({"n1": Lab, "n2": Lab}, seed=35) as c:
        stop, errors, looks = threading.Event(), [], [0]

        def panel():
            try:
                while not stop.is_set():
                    assert set(c.status()) == {"n1", "n2"}
                    c.counters()
                    looks[0] += 1
            except BaseException as e:       # reported by the main thread's assertion
                errors.append(e)

        t = threading.Thread(target=panel, daemon=True)
        t.start()
        try:
            for i in range(300):
                node = ("n1", "n2")[i % 2]
                assert c.request(node, "echo", timeout=OK_MS, x=i).body == {"echo": i, "me": node}
        finally:
            stop.set()
            t.join(30)
        assert not t.is_alive() and errors == [] and looks[0] > 0, (errors, looks)
        assert len(c.journal.filter(kind="send", node="client")) == 300
        assert len(c.journal.filter(kind="deliver", node="client")) == 300


def test_requests_from_several_threads_at_once_each_get_their_own_reply():
    """Four threads make requests at once, a fifth runs ``run_for`` and reads the journal: one
    thread at a time reads the client inbox (the others wait until it has journaled a reply),
    so every request gets its own reply promptly -- none waits out its timeout -- and the
    journal has each request and reply once."""
    with labkit.Cluster({"n1": Lab, "n2": Lab}, seed=36) as c:
        errors: list = []
        stop = threading.Event()

        def requester(k: int) -> None:
            try:
                for i in range(150):
                    node = ("n1", "n2")[(i + k) % 2]
                    x = k * 1000 + i
                    assert c.request(node, "echo", timeout=OK_MS, x=x).body == {"echo": x, "me": node}
            except BaseException as e:       # reported by the main thread's assertion
                errors.append(e)

        def runner() -> None:
            try:
                while not stop.is_set():
                    c.run_for(0.002)
                    len(c.journal)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=requester, args=(k,), daemon=True) for k in range(4)]
        background = threading.Thread(target=runner, daemon=True)
        background.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        background.join(30)
        assert errors == [] and not any(t.is_alive() for t in threads + [background]), errors
        sends = c.journal.filter(kind="send", node="client").events
        delivers = c.journal.filter(kind="deliver", node="client").events
        assert len(sends) == len(delivers) == 600
        assert {e.get("re") for e in delivers} == {e.id for e in sends}


def test_closing_the_cluster_while_another_thread_waits_for_a_reply():
    """close() from one thread while another waits in the inbox for a reply: close waits for
    the reader to leave ZeroMQ's recv (a socket closed under a blocked recv is undefined
    behaviour in libzmq) and the waiting request ends at once with an error, not its timeout."""
    c = labkit.Cluster(Lab, n=1, seed=37)
    outcome: list = []

    def wait() -> None:
        t0 = time.monotonic()
        try:
            c.request("n1", "echo", timeout=20_000, x=1)
            outcome.append(("reply", time.monotonic() - t0))
        except BaseException as e:
            outcome.append((type(e).__name__, time.monotonic() - t0))

    try:
        c.pause("n1")                           # the request waits: nobody answers it
        t = threading.Thread(target=wait, daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while not c._rt._awaiting and time.monotonic() < deadline:   # (the request is sent)
            time.sleep(0.005)
        assert c._rt._awaiting
    finally:
        c.close()
    t.join(15)
    assert not t.is_alive() and outcome, outcome
    kind, waited = outcome[0]
    assert kind == "NodeDown" and waited < 15, outcome
