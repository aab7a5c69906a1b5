"""labkit.maelstrom.test with real programs (labkit.Program, processes runtime): the Python and
JavaScript test programs in tests/maelstrom/programs/ pass their workloads, the broken ones
fail with the right finding, and no program process is left behind.

Runs are short (a few seconds of workload each): they check verdicts, not speed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import labkit.maelstrom as m
from labkit.maelstrom.program import Program

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "maelstrom", "programs")
NODE_JS = shutil.which("node")
needs_node = pytest.mark.skipif(NODE_JS is None, reason="node.js is not installed")


def prog(name: str) -> Program:
    return Program(os.path.join(PROGRAMS, name))


def _running(marker: str) -> list[str]:
    """Command lines of live processes whose command line holds ``marker`` and that this test
    run started: under pytest-xdist, only those of this worker (a program keeps the worker's
    ``PYTEST_XDIST_WORKER`` in its environment even when orphaned, so an orphan still counts;
    another worker's programs, running now, do not)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if marker not in cmd:
                continue
            if worker is not None:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if f"PYTEST_XDIST_WORKER={worker}".encode() not in f.read().split(b"\0"):
                        continue
        except OSError:
            continue
        out.append(f"{pid}: {cmd}")
    return out


def _running_programs() -> list[str]:
    """Live processes running one of the test programs (see ``_running``)."""
    return _running(PROGRAMS)


@pytest.fixture(autouse=True)
def no_program_left():
    yield
    assert _running_programs() == []


SHORT = dict(time_limit=3.0, rate=20.0, quiet=1.0, seed=5)


@pytest.mark.parametrize("name,workload,kw", [
    ("unique_ids.py", "unique-ids", dict(node_count=3, nemesis=["restart"], nemesis_interval=1.0)),
    pytest.param("unique_ids.js", "unique-ids", dict(node_count=3, nemesis=["partition"], nemesis_interval=1.0,
                                                      availability="total"), marks=needs_node),
    # quiet 3 s: values a partition dropped are re-sent after 1 s, then relayed
    ("broadcast.py", "broadcast", dict(node_count=3, latency=20.0, nemesis=["partition"], nemesis_interval=1.0,
                                       quiet=3.0)),
    pytest.param("broadcast.js", "broadcast", dict(node_count=3, latency=20.0, topology="line"), marks=needs_node),
    ("g_set.py", "g-set", dict(node_count=2)),
    pytest.param("g_set.js", "g-set", dict(node_count=2), marks=needs_node),
    ("pn_counter.py", "pn-counter", dict(node_count=2)),
    pytest.param("pn_counter.js", "pn-counter", dict(node_count=2), marks=needs_node),
    ("g_counter.py", "g-counter", dict(node_count=2)),
])
def test_programs_pass_their_workloads(name, workload, kw):
    r = m.test(prog(name), workload, **{**SHORT, **kw})
    assert r.opts["runtime"] == "processes"
    assert r.valid is True, str(r)
    if kw.get("nemesis"):
        assert r.nemesis


@needs_node
def test_a_cluster_mixing_python_and_javascript():
    nodes = {"n0": prog("broadcast.py"), "n1": prog("broadcast.js"), "n2": prog("broadcast.py")}
    r = m.test(nodes, "broadcast", latency=20.0, topology="line", **{**SHORT, "quiet": 2.0})
    assert r.valid is True and r.opts["runtime"] == "processes", str(r)
    # n1 (JavaScript) relays between n0 and n2 on the line: gossip flows both ways through it
    relayed = {(e.node, e.dst) for e in r.journal if e.kind == "send" and e.get("type") == "gossip"}
    assert {("n1", "n0"), ("n1", "n2")} <= relayed


def test_broadcast_that_never_gossips_loses_elements():
    # given as a path, like Maelstrom's --bin: made a labkit.Program
    r = m.test(os.path.join(PROGRAMS, "broadcast_nogossip.py"), "broadcast", node_count=3, **SHORT)
    assert r.valid is False and r.checks["set-full"].details["lost"]


@needs_node
def test_broadcast_js_that_never_gossips_loses_elements():
    r = m.test(prog("broadcast_nogossip.js"), "broadcast", node_count=3, **SHORT)
    assert r.valid is False and r.checks["set-full"].details["lost"]


def test_unique_id_counter_restarting_at_zero_duplicates():
    # three clients per node and a 1 s client timeout: a request caught by a restart costs its
    # client 1 s, and the node's other clients keep asking the restarted program for ids
    r = m.test(prog("unique_ids_restart.py"), "unique-ids", node_count=2, nemesis=["restart"],
               nemesis_interval=0.7, concurrency=6, timeout=1000.0, **{**SHORT, "rate": 50.0})
    assert any(op["op"] == "restart" for _, op in r.nemesis)
    v = r.checks["unique-ids"]
    assert v.valid is False and v.details["duplicated_count"] > 0, str(r)


def test_read_then_write_counter_on_seq_kv_loses_updates():
    r = m.test(prog("g_counter_rw.py"), "g-counter", node_count=3, **{**SHORT, "rate": 50.0})
    v = r.checks["g-counter"]
    assert v.valid is False, str(r)
    assert all(x < v.details["definite_sum"] for x in v.details["final_reads"])


def test_cli_runs_a_program_and_exits_with_maelstroms_code(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "labkit.maelstrom", "test", "-w", "broadcast", "--bin",
           os.path.join(PROGRAMS, "broadcast_nogossip.py"), "--node-count", "2", "--time-limit", "2",
           "--rate", "20", "--quiet", "0.5", "--seed", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "lost" in p.stdout and "Analysis invalid" in p.stdout


def _tmp_program(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(code)
    return str(path)


def _left_in(tmp_path) -> list[str]:
    """Command lines of live processes running a program from ``tmp_path``."""
    return _running(str(tmp_path))


def test_a_program_that_crashes_on_init_is_a_setup_error_not_a_verdict(tmp_path, capsys):
    """Before: the test ran on a dead node and said 'invalid: no echo (timeout)'. Now: SetupError
    naming the node and the exit, no verdict, nothing left running; the CLI exits 2."""
    path = _tmp_program(tmp_path, "boom.py", "import sys\nsys.stdin.readline()\nraise RuntimeError('boom at init')\n")
    with pytest.raises(m.harness.SetupError) as e:
        m.test(path, "echo", node_count=2, time_limit=2, rate=10, quiet=0.5, seed=1)
    text = str(e.value)
    assert text.startswith("2 of 2 nodes did not start, so the test was not run -- n0: its program")
    assert "exited with code 1 before it answered init" in text and "ProgramError" not in text
    assert _left_in(tmp_path) == []
    from labkit.maelstrom.__main__ import main
    assert main(["test", "-w", "echo", "--bin", path, "--node-count", "1", "--time-limit", "1"]) == 2
    assert "SetupError: 1 of 1 nodes did not start" in capsys.readouterr().err


def test_a_program_that_exits_mid_run_is_named_in_the_summary(tmp_path):
    path = _tmp_program(tmp_path, "quits.py", """
import sys
from maelstrom import Node
node = Node()
seen = 0

@node.on("echo")
def echo(msg):
    global seen
    seen += 1
    if seen == 3:
        print("giving up", file=sys.stderr, flush=True)
        sys.exit(3)
    node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

node.run()
""")
    r = m.test(path, "echo", node_count=1, time_limit=2, rate=10, quiet=0.5, timeout=500, seed=1)
    assert r.valid is False
    (t, node, error), = r.stats["crashes"]
    assert node == "n0" and "exited with code 3" in error
    assert f"  crashed: n0 at {t:.0f} ms -- its program `" in str(r)
    assert f"<div>crashed: n0 at {t:.0f} ms -- its program `" in r._repr_html_()      # shown when displayed too
    assert _left_in(tmp_path) == []


def test_a_program_printing_debug_lines_to_stdout_is_counted_in_the_summary(tmp_path):
    path = _tmp_program(tmp_path, "chatty.py", """
from maelstrom import Node
node = Node()

@node.on("echo")
def echo(msg):
    print("debug: got", msg["body"]["echo"], flush=True)      # stdout is the protocol's
    node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

node.run()
""")
    r = m.test(path, "echo", node_count=1, time_limit=2, rate=10, quiet=0.5, seed=1)
    assert r.valid is True
    assert r.stats["malformed_lines"] == {"n0": r.stats["ops"]}
    assert f"skipped stdout lines that were not Maelstrom messages: n0: {r.stats['ops']}" in str(r)


def test_cli_ctrl_c_stops_the_run_cleanly_with_130(tmp_path):
    """SIGINT mid-run: before, a KeyboardInterrupt traceback through zmq's poll; now one line,
    exit 130 (the shell's code for SIGINT), and no program left running."""
    import signal
    import time
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "labkit.maelstrom", "test", "-w", "echo", "--bin", os.path.join(PROGRAMS, "echo.py"),
           "--node-count", "2", "--time-limit", "60", "--rate", "10"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60          # wait until both programs run (the workload has begun)
        while len(_running_programs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_running_programs()) >= 2
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("python -m labkit.maelstrom: interrupted; the test's nodes and "
                                            "programs were stopped")
    assert "Traceback" not in err
