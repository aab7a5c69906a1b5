"""labkit.Program: Maelstrom programs as real cluster nodes (processes runtime)."""
from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

import labkit
from labkit.maelstrom.program import Program
from labkit.maelstrom.services import LinKV

pytestmark = pytest.mark.processes

PROGRAMS = Path(__file__).parent / "maelstrom" / "programs"
ECHO_PY = PROGRAMS / "echo.py"
ECHO_JS = PROGRAMS / "echo.js"


def program(tmp_path, name, code):
    """A Python program written for one test (it imports labkit's library as `maelstrom`)."""
    p = tmp_path / name
    p.write_text(textwrap.dedent(code))
    return [sys.executable, str(p)]


def journal(c, kind, node=None):
    return [e for e in c.journal if e.kind == kind and (node is None or e.node == node)]


def program_procs(c, node, watchdog=True):
    """The node's program and everything it started (the node process's descendants), and
    the watchdog that leads the program's process group unless ``watchdog=False``."""
    procs = psutil.Process(c.status()[node].pid).children(recursive=True)
    return [p for p in procs if watchdog or "kill -KILL 0" not in " ".join(p.cmdline())]


def gone(procs, timeout=3.0):
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_echo_programs_in_python_and_javascript_answer():
    with labkit.Cluster({"n0": Program(ECHO_PY), "n1": Program(ECHO_JS),
                         "n2": Program({"n2": ["node", str(ECHO_JS)]})}, seed=1) as c:
        for n in ("n0", "n1", "n2"):
            r = c.request(n, "echo", timeout=5000, echo=f"hi {n}")
            assert (r.type, r.body, r.src) == ("echo_ok", {"echo": f"hi {n}"}, n)
        # the journal shows the exchange as labkit messages; init is the program's own business
        delivered = [e for e in journal(c, "deliver", "n0") if e.get("type") == "echo"]
        assert len(delivered) == 1 and delivered[0].get("body") == {"echo": "hi n0"}
        inits = [e.get("text") for e in journal(c, "log") if "init_ok" in e.get("text", "")]
        assert len(inits) == 3


def test_one_program_for_n_nodes_names_them_as_maelstrom_does():
    with labkit.Cluster(Program(ECHO_PY), n=3, seed=1) as c:
        assert list(c.status()) == ["n0", "n1", "n2"]
        assert c.request("n0", "echo", timeout=5000, echo="first").body == {"echo": "first"}


def test_program_calls_a_service_and_a_labkit_node_by_rpc(tmp_path):
    """msg_ids map both ways: the program's rpc to lin-kv gets its reply, a labkit node's rpc
    to the program gets the program's reply."""
    cmd = program(tmp_path, "kv.py", """
        from maelstrom import Node
        node = Node()

        @node.on("put")
        async def put(msg):
            await node.rpc("lin-kv", {"type": "write", "key": "k", "value": msg["body"]["value"]})
            r = await node.rpc("lin-kv", {"type": "read", "key": "k"})
            node.reply(msg, {"type": "put_ok", "read": r["body"]["value"]})

        node.run()
    """)

    class Asker(labkit.Node):
        async def on_message(self, ctx, msg):
            r = await ctx.rpc("n0", "put", timeout=3000, value=msg.body["value"])
            ctx.reply(msg, got=r.body["read"])

    with labkit.Cluster({"n0": Program(cmd), "n1": Asker, "lin-kv": LinKV}, seed=2) as c:
        assert c.request("n0", "put", timeout=5000, value=7).body == {"read": 7}
        assert c.request("n1", "go", timeout=5000, value=8).body == {"got": 8}
        assert c.request("lin-kv", "read", timeout=5000, key="k").body == {"value": 8}


def test_restart_starts_a_fresh_program_and_inits_it_again(tmp_path):
    cmd = program(tmp_path, "who.py", """
        import os
        from maelstrom import Node
        node = Node()
        seen = []

        @node.on_init
        def hello():
            seen.append(node.node_id)

        @node.on("who")
        def who(msg):
            node.reply(msg, {"type": "who_ok", "pid": os.getpid(), "inits": seen, "ids": node.node_ids})

        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd), "n1": Program(cmd), "lin-kv": LinKV}, seed=3) as c:
        first = c.request("n0", "who", timeout=5000).body
        assert first["inits"] == ["n0"] and first["ids"] == ["n0", "n1"]     # services are not nodes
        old = program_procs(c, "n0")
        c.restart("n0")
        assert gone(old) == []
        second = c.request("n0", "who", timeout=5000).body
        assert second["inits"] == ["n0"] and second["pid"] != first["pid"]
        starts = [e for e in journal(c, "log", "n0") if "init_ok" in e.get("text", "")]
        assert len(starts) == 2


TICKER = """
    from maelstrom import Node
    node = Node()
    n = [0]

    def tick():
        n[0] += 1
        node.send("n1", {"type": "tick", "n": n[0]})

    @node.on_init
    def start():
        node.every(10, tick)

    node.run()
"""


class Sink(labkit.Node):
    def on_message(self, ctx, msg):
        pass


def test_pause_freezes_the_program_and_resume_thaws_it(tmp_path, wait_until):
    with labkit.Cluster({"n0": Program(program(tmp_path, "tick.py", TICKER)), "n1": Sink}, seed=4) as c:
        ticks = lambda: len([e for e in journal(c, "send", "n0") if e.get("type") == "tick"])  # noqa: E731
        assert wait_until(lambda: ticks() >= 5, timeout=10, cluster=c)
        procs = program_procs(c, "n0", watchdog=False)
        assert len(procs) == 1
        node = psutil.Process(c.status()["n0"].pid)
        c.pause("n0")
        # SIGSTOP takes effect when the kernel next schedules the process: wait for it to show
        stopped = lambda: all(p.status() == psutil.STATUS_STOPPED for p in [node, *procs])  # noqa: E731
        assert wait_until(stopped, timeout=5)
        before = ticks()
        c.run_for(0.3)
        assert ticks() == before
        assert all(p.status() == psutil.STATUS_STOPPED for p in procs)
        c.resume("n0")
        assert wait_until(lambda: ticks() >= before + 5, timeout=10, cluster=c)
        # the program went on counting where it stopped: no ticks were made while paused
        ns = [e.get("body")["n"] for e in journal(c, "send", "n0") if e.get("type") == "tick"]
        assert ns == list(range(1, len(ns) + 1))
        assert all(p.status() != psutil.STATUS_STOPPED for p in procs)


def test_kill_takes_the_program_and_its_children(tmp_path):
    cmd = program(tmp_path, "forks.py", """
        import subprocess
        from maelstrom import Node
        child = subprocess.Popen(["sleep", "600"])
        node = Node()
        node.on("pid", lambda m: node.reply(m, {"type": "pid_ok", "child": child.pid}))
        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd), "n1": Program(ECHO_PY)}, seed=5) as c:
        child = c.request("n0", "pid", timeout=5000).body["child"]
        procs = program_procs(c, "n0")
        assert child in {p.pid for p in procs} and len(procs) == 3     # watchdog, program, sleep
        assert c.kill("n0")
        assert gone(procs) == []
        with pytest.raises(labkit.NodeDown):
            c.request("n0", "pid", timeout=1000)
        assert c.request("n1", "echo", timeout=5000, echo="still here").body == {"echo": "still here"}
        c.restart("n0")
        assert c.request("n0", "pid", timeout=5000).body["child"] != child
        procs = program_procs(c, "n0")
    assert gone(procs) == []                                          # close() takes them too


def test_bad_output_is_named_skipped_and_the_node_goes_on(tmp_path, capfd):
    cmd = program(tmp_path, "noisy.py", """
        import json, sys
        from maelstrom import Node
        node = Node()

        @node.on("echo")
        def echo(msg):
            sys.stdout.write("hello, I am not JSON\\n")
            sys.stdout.write(json.dumps({"src": node.node_id, "dest": msg["src"], "body": {"no": "type"}}) + "\\n")
            sys.stdout.write(json.dumps({"src": node.node_id, "dest": "nowhere", "body": {"type": "x"}}) + "\\n")
            sys.stdout.flush()
            node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd)}, seed=6) as c:
        assert c.request("n0", "echo", timeout=5000, echo="a").body == {"echo": "a"}
        assert c.request("n0", "echo", timeout=5000, echo="b").body == {"echo": "b"}
        c.run_for(0.3)
        bad = journal(c, "malformed", "n0")
        assert [e.get("line") for e in bad[:3]] == [
            "hello, I am not JSON", '{"src": "n0", "dest": "client", "body": {"no": "type"}}',
            '{"src": "n0", "dest": "nowhere", "body": {"type": "x"}}']
        assert "not JSON" in bad[0].get("error") and "'body.type'" in bad[1].get("error")
        assert "'nowhere', which is no node of this cluster" in bad[2].get("error")
        assert c.status()["n0"].state == "up"
    err = capfd.readouterr().err
    assert "labkit: n0: its program wrote a line that is not a Maelstrom message" in err
    assert "'hello, I am not JSON'" in err


def test_a_program_that_never_answers_init_is_a_named_crash(tmp_path, capfd):
    cmd = program(tmp_path, "mute.py", """
        import sys, time
        print("booting, slowly", file=sys.stderr, flush=True)
        time.sleep(600)
    """)
    with labkit.Cluster({"n0": Program(cmd, init_timeout=800), "n1": Program(ECHO_PY)}, seed=7) as c:
        assert c.status()["n0"].state == "crashed"
        crash = journal(c, "crash", "n0")[0]
        assert "n0: its program" in crash.get("error") and "did not answer init with init_ok within 0.8 s" in crash.get("error")
        assert "booting, slowly" in crash.get("traceback")                 # the stderr tail
        assert c.request("n1", "echo", timeout=5000, echo="x").body == {"echo": "x"}
    assert "did not answer init with init_ok" in capfd.readouterr().err


def test_a_program_that_exits_crashes_its_node_with_its_stderr(tmp_path, wait_until):
    cmd = program(tmp_path, "dies.py", """
        import sys
        from maelstrom import Node
        node = Node()

        @node.on("die")
        def die(msg):
            print("about to fail", file=sys.stderr, flush=True)
            sys.exit(3)

        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd)}, seed=8) as c:
        with pytest.raises((labkit.NodeCrashed, labkit.NodeDown, labkit.RequestTimeout)):
            c.request("n0", "die", timeout=3000)
        assert wait_until(lambda: c.status()["n0"].state == "crashed", timeout=10, cluster=c)
        crash = journal(c, "crash", "n0")[0]
        assert "exited with code 3" in crash.get("error")
        assert "about to fail" in crash.get("traceback")
        c.restart("n0")
        assert c.status()["n0"].state == "up"


def test_stderr_is_journaled_and_shown_rate_limited(tmp_path, capfd):
    cmd = program(tmp_path, "chatty.py", """
        from maelstrom import Node
        node = Node()

        @node.on_init
        def chat():
            for i in range(50):
                node.log(f"line {i}")

        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd)}, seed=9) as c:
        c.run_for(1.5)                      # the notices' window ends: what it left out is said
        lines = [e.get("text") for e in journal(c, "log", "n0") if e.get("stream") == "stderr"]
        assert lines == [f"line {i}" for i in range(50)]
    err = capfd.readouterr().err
    shown = [ln for ln in err.splitlines() if ln.startswith("n0 stderr: line")]
    assert shown[:3] == ["n0 stderr: line 0", "n0 stderr: line 1", "n0 stderr: line 2"]
    assert len(shown) < 50                  # at most 10 a second (two windows if the machine is slow)
    left_out = [int(n) for n in re.findall(r"labkit: n0: (\d+) more stderr/output notices not shown", err)]
    assert left_out and sum(left_out) == 50 - len(shown)


def test_a_program_that_stops_reading_for_a_while_misses_nothing(tmp_path, wait_until):
    """More than a pipe holds waits in the node process until the program reads again."""
    cmd = program(tmp_path, "dozy.py", """
        import time
        from maelstrom import Node
        node = Node()
        got = []

        @node.on("doze")
        def doze(msg):
            time.sleep(1.0)                    # reads nothing meanwhile
            node.reply(msg, {"type": "doze_ok"})

        @node.on("put")
        def put(msg):
            got.append(msg["body"]["i"])

        node.on("count", lambda m: node.reply(m, {"type": "count_ok", "n": len(got), "sorted": got == sorted(got)}))
        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd)}, seed=12) as c:
        c.client_send("n0", "doze")
        pad = "x" * 200
        for i in range(1500):                  # ~330 KB: five times a pipe's 64 KB
            c.client_send("n0", "put", i=i, pad=pad)
        counted = lambda: c.request("n0", "count", timeout=5000).body  # noqa: E731
        assert wait_until(lambda: counted()["n"] == 1500, timeout=20, cluster=c)
        assert counted()["sorted"] and c.status()["n0"].state == "up"


def test_notices_are_capped_for_the_whole_cluster(tmp_path, capfd):
    """Many chatty programs (a Go Maelstrom node logs every message) do not flood the notebook."""
    cmd = program(tmp_path, "chatty.py", """
        from maelstrom import Node
        node = Node()
        node.on_init(lambda: [node.log(f"line {i}") for i in range(50)])
        node.run()
    """)
    with labkit.Cluster(Program(cmd), n=4, seed=10) as c:
        c.run_for(1.2)
        assert len([e for e in c.journal if e.kind == "log" and e.get("stream") == "stderr"]) == 200
    err = capfd.readouterr().err
    shown = [ln for ln in err.splitlines() if " stderr: line " in ln]
    assert 10 <= len(shown) <= 60                       # 20 a second for the cluster, not 10 a node
    assert "more program notices not shown" in err


def test_program_arguments_are_checked_in_the_notebook(tmp_path):
    with pytest.raises(labkit.ArgumentError, match="no such file"):
        Program(tmp_path / "missing")
    with pytest.raises(labkit.ArgumentError, match="not on PATH"):
        Program(["no-such-command-here"])
    with pytest.raises(labkit.ArgumentError, match="empty"):
        Program([])
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    with pytest.raises(labkit.ArgumentError, match="not executable"):
        Program(plain)
    assert Program(str(ECHO_JS)).command_for("n1") == [str(ECHO_JS)]       # executable: run as it is
    js = tmp_path / "echo.js"
    js.write_text(ECHO_JS.read_text())                                     # not executable: run by node
    assert Program(js).command_for("n1")[1:] == [str(js)] and Program(js).command_for("n1")[0].endswith("node")
    with pytest.raises(labkit.ArgumentError, match="no command for node 'n9'"):
        Program({"n0": ECHO_PY}).command_for("n9")


def test_the_simulator_refuses_a_program():
    with pytest.raises(labkit.LabkitError, match="runtime=\"processes\""):
        labkit.Cluster(Program(ECHO_PY), n=2, runtime="sim")


def test_import_labkit_does_not_load_the_bridge():
    code = "import sys, labkit; print(any(m.startswith('labkit.maelstrom') for m in sys.modules)); " \
           "labkit.Program; print('labkit.maelstrom.program' in sys.modules, 'labkit.maelstrom._bridge' in sys.modules)"
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.stdout.split() == ["False", "True", "False"], out.stderr


def test_an_over_long_line_is_reported_once_and_skipped_whole(tmp_path, capfd):
    """A 40 MB line (over labkit's 16 MB message limit): one notice naming the limit and the line's
    start -- before, one per 16 MB and the later ones showed only its middle -- and the node goes on."""
    cmd = program(tmp_path, "huge.py", """
        import sys
        from maelstrom import Node
        node = Node()

        @node.on("echo")
        def echo(msg):
            if msg["body"]["echo"] == "big":
                sys.stdout.write('{"src": "n0", "dest": "c1", "body": {"pad": "' + "x" * 40_000_000 + '"}}\\n')
                sys.stdout.flush()
            node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd)}, seed=6) as c:
        assert c.request("n0", "echo", timeout=10000, echo="big").body == {"echo": "big"}
        assert c.request("n0", "echo", timeout=5000, echo="after").body == {"echo": "after"}
        c.run_for(0.2)
        bad = journal(c, "malformed", "n0")
        assert len(bad) == 1, [e.get("error")[:200] for e in bad]
        assert "longer than labkit's limit of 16,777,216 bytes" in bad[0].get("error")
        assert bad[0].get("line").startswith('{"src": "n0", "dest": "c1", "body": {"pad": "xxx')
        assert c.status()["n0"].state == "up"
    err = capfd.readouterr().err
    assert err.count("longer than labkit's limit") == 1


def test_an_init_ok_without_in_reply_to_is_named_at_once(tmp_path, capfd):
    """A hand-written program that answers init with a bare {"type": "init_ok"}: before, it was
    sent on to the client silently and the node timed out with 'did not answer init'."""
    cmd = program(tmp_path, "bare.py", """
        import json, sys
        for line in sys.stdin:
            m = json.loads(line)
            if m["body"]["type"] == "init":
                print(json.dumps({"src": m["dest"], "dest": m["src"], "body": {"type": "init_ok"}}), flush=True)
    """)
    with labkit.Cluster({"n0": Program(cmd, init_timeout=1000)}, seed=9) as c:
        assert c.status()["n0"].state == "crashed"
        bad = journal(c, "malformed", "n0")
        assert len(bad) == 1 and 'an init_ok must carry "in_reply_to": 1' in bad[0].get("error")
        crash = journal(c, "crash", "n0")[0].get("error")
        assert "did not answer init with init_ok (it sent an init_ok, but without \"in_reply_to\"" in crash
        assert not journal(c, "send", "n0")          # the bare init_ok was not sent on to c0
    assert 'an init_ok must carry "in_reply_to": 1' in capfd.readouterr().err


def test_a_message_to_a_service_the_test_does_not_run_says_how_to_add_it(tmp_path, capfd):
    cmd = program(tmp_path, "uses_kv.py", """
        from maelstrom import Node
        node = Node()

        @node.on("echo")
        def echo(msg):
            node.send("lin-kv", {"type": "read", "key": "k"})
            node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

        node.run()
    """)
    with labkit.Cluster({"n0": Program(cmd)}, seed=10) as c:
        assert c.request("n0", "echo", timeout=5000, echo="x").body == {"echo": "x"}
        c.run_for(0.2)
        err = journal(c, "malformed", "n0")[0].get("error")
    assert "this cluster runs no lin-kv service: labkit.maelstrom.test(..., services=['lin-kv'])" in err
    assert "--services lin-kv" in err
    capfd.readouterr()


def test_the_program_class_itself_is_named_before_any_process_starts():
    """Cluster(labkit.Program, n=2): was a TypeError traceback from inside each node process."""
    with pytest.raises(labkit.ArgumentError, match=r"Program cannot be made without arguments .*'cmd'.*"
                                                   r"labkit.Program\('./prog'\)"):
        labkit.Cluster(labkit.Program, n=2)

    class Needy(labkit.Node):
        def __init__(self, size):
            self.size = size
    with pytest.raises(labkit.ArgumentError, match=r"Needy cannot be made without arguments.*e.g. Needy\(...\)"):
        labkit.Cluster(Needy, n=1, runtime="sim")
