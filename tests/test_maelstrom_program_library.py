"""labkit/maelstrom/node.py, the Python library for Maelstrom programs (``from maelstrom import
Node``): handlers, reply, rpc with callback or await, timeouts, errors -- run in a real cluster."""
from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

import labkit
from labkit.maelstrom import node as libnode
from labkit.maelstrom.program import Program
from labkit.maelstrom.services import LinKV

LIB = textwrap.dedent("""
    import asyncio
    from maelstrom import Node, RPCError

    node = Node()

    @node.on("call_cb")                       # callback-style rpc; n1 never answers "silent"
    def call_cb(msg):
        def done(reply):
            node.reply(msg, {"type": "call_cb_ok", "got": reply["body"]})
        node.rpc("n1", {"type": "silent"}, callback=done, timeout=100)

    @node.on("call_await")                    # awaited rpc: an error reply raises RPCError
    async def call_await(msg):
        try:
            await node.rpc("lin-kv", {"type": "read", "key": "missing"})
        except RPCError as e:
            node.reply(msg, {"type": "call_await_ok", "code": e.code, "definite": e.definite})

    @node.on("call_timeout")
    async def call_timeout(msg):
        try:
            await node.rpc("n1", {"type": "silent"}, timeout=50)
        except RPCError as e:
            node.reply(msg, {"type": "call_timeout_ok", "code": e.code, "definite": e.definite})

    @node.on("refuse")
    def refuse(msg):
        raise RPCError(22, "not today")

    @node.on("oops")
    async def oops(msg):
        await asyncio.sleep(0.01)
        raise ValueError("bad value")

    ticks = []
    @node.on_init
    def start():
        node.after(20, lambda: ticks.append("after"))

    @node.on("ticks")
    def get_ticks(msg):
        node.reply(msg, {"type": "ticks_ok", "ticks": ticks, "me": node.node_id, "all": node.node_ids})

    node.run()
""")


class Silent(labkit.Node):
    def on_message(self, ctx, msg):
        pass


@pytest.mark.processes
def test_library_handlers_rpc_timeouts_and_errors(tmp_path):
    prog = tmp_path / "lib.py"
    prog.write_text(LIB)
    with labkit.Cluster({"n0": Program([sys.executable, str(prog)]), "n1": Silent, "lin-kv": LinKV}, seed=1) as c:
        r = c.request("n0", "call_cb", timeout=5000)
        assert r.body["got"]["code"] == 0 and r.body["got"]["type"] == "error"
        assert c.request("n0", "call_await", timeout=5000).body == {"code": 20, "definite": True}
        assert c.request("n0", "call_timeout", timeout=5000).body == {"code": 0, "definite": False}
        r = c.request("n0", "refuse", timeout=5000)
        assert (r.type, r.body) == ("error", {"code": 22, "text": "not today"})
        r = c.request("n0", "oops", timeout=5000)
        assert (r.type, r.body["code"]) == ("error", 13) and "ValueError: bad value" in r.body["text"]
        r = c.request("n0", "nobody_handles_this", timeout=5000)
        assert (r.type, r.body["code"]) == ("error", 10)
        assert c.request("n0", "ticks", timeout=5000).body == {"ticks": ["after"], "me": "n0", "all": ["n0", "n1"]}
        c.run_for(0.2)
        stderr = [e.get("text") for e in c.journal if e.kind == "log" and e.get("stream") == "stderr"]
        assert any("ValueError: bad value" in t for t in stderr)        # the traceback went to stderr
        assert c.status()["n0"].state == "up"


def test_library_is_stdlib_only():
    """A program file runs with any python3: node.py imports nothing outside the standard library."""
    tree = ast.parse(Path(libnode.__file__).read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert mods - {"__future__"} <= set(sys.stdlib_module_names), mods


def test_library_error_codes_match_protocol():
    from labkit.maelstrom import protocol
    assert {c: (e.name, e.definite) for c, e in protocol.ERRORS.items()} == libnode.ERROR_CODES


def _run_program(code_or_path, lines, tmp_path, expect):
    """Run a program by hand, as Maelstrom does: write ``lines``, read ``expect`` output
    lines, then close stdin (the program must then exit 0)."""
    import json
    import subprocess
    if isinstance(code_or_path, Path):
        path = code_or_path
    else:
        path = tmp_path / "p.py"
        path.write_text(textwrap.dedent(code_or_path))
    pylib = Path(libnode.__file__).parent / "pylib"
    p = subprocess.Popen([sys.executable, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(pylib), "PATH": "/usr/bin:/bin"})
    try:
        p.stdin.write("".join(json.dumps(m) + "\n" for m in lines))
        p.stdin.flush()
        got = [json.loads(p.stdout.readline()) for _ in range(expect)]
        p.stdin.close()
        assert p.wait(30) == 0, p.stderr.read()
        return got
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


INIT = {"src": "c0", "dest": "n3", "body": {"type": "init", "msg_id": 1, "node_id": "n3", "node_ids": ["n3", "n4"]}}


def test_library_answers_init_before_anything_else_and_knows_its_id(tmp_path):
    """Messages right behind init (as Maelstrom sends them) see node_id, and init_ok leads."""
    echo = Path(__file__).parent / "maelstrom" / "programs" / "echo.py"
    got = _run_program(echo, [INIT, {"src": "c1", "dest": "n3", "body": {"type": "echo", "msg_id": 2, "echo": 5}}],
                       tmp_path, 2)
    assert got == [{"src": "n3", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1}},
                   {"src": "n3", "dest": "c1", "body": {"type": "echo_ok", "echo": 5, "in_reply_to": 2}}]


def test_library_async_init_hook_delays_init_ok(tmp_path):
    got = _run_program("""
        import asyncio
        from maelstrom import Node
        node = Node()
        order = []

        @node.on_init
        async def warm_up():
            await asyncio.sleep(0.05)
            order.append("hook")

        @node.on("order")
        def report(msg):
            node.reply(msg, {"type": "order_ok", "order": order, "me": node.node_id})

        node.run()
    """, [INIT, {"src": "c1", "dest": "n3", "body": {"type": "order", "msg_id": 2}}], tmp_path, 2)
    # the request came while the hook slept: answered at once (node_id already set), init_ok after
    assert got[0]["body"] == {"type": "order_ok", "order": [], "me": "n3", "in_reply_to": 2}
    assert got[1]["body"] == {"type": "init_ok", "in_reply_to": 1}


def test_library_timers_set_before_run_start_with_it(tmp_path):
    """``node.every``/``node.after`` at module level (before ``run()``) wait for the loop
    instead of failing with AttributeError on a missing loop."""
    got = _run_program("""
        from maelstrom import Node
        node = Node()
        ticks = []
        node.every(10, lambda: ticks.append("every"))
        node.after(10, lambda: ticks.append("after"))

        @node.on("ticks")
        async def report(msg):
            import asyncio
            while len(ticks) < 3:
                await asyncio.sleep(0.01)
            node.reply(msg, {"type": "ticks_ok", "after": ticks.count("after"), "every": ticks.count("every") >= 2})

        node.run()
    """, [INIT, {"src": "c1", "dest": "n3", "body": {"type": "ticks", "msg_id": 2}}], tmp_path, 2)
    assert got[1]["body"] == {"type": "ticks_ok", "after": 1, "every": True, "in_reply_to": 2}


@pytest.mark.parametrize("call", ["node.rpc('n1', {'type': 'hi'})", "node.send('n1', {'type': 'hi'})"])
def test_library_sending_before_init_names_the_mistake(tmp_path, call):
    import subprocess
    path = tmp_path / "early.py"
    path.write_text(f"from maelstrom import Node\nnode = Node()\n{call}\nnode.run()\n")
    pylib = Path(libnode.__file__).parent / "pylib"
    done = subprocess.run([sys.executable, str(path)], input="", capture_output=True, text=True, timeout=30,
                          env={"PYTHONPATH": str(pylib), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "RuntimeError: node." in done.stderr and "before init" in done.stderr and "on_init" in done.stderr
    assert "NoneType" not in done.stderr


def test_library_every_refuses_a_non_positive_period():
    with pytest.raises(ValueError, match="positive number of milliseconds"):
        libnode.Node().every(0, lambda: None)


def test_library_rpc_used_without_await_says_to_await_it(tmp_path):
    """``reply = node.rpc(...)`` in a plain handler, then ``reply["body"]``: the error 13 the
    client gets says to await it (was "'Future' object is not subscriptable")."""
    got = _run_program("""
        from maelstrom import Node
        node = Node()

        @node.on("ask")
        def ask(msg):
            reply = node.rpc("n4", {"type": "ping"}, timeout=50)
            node.reply(msg, {"type": "ask_ok", "got": reply["body"]})

        node.run()
    """, [INIT, {"src": "c1", "dest": "n3", "body": {"type": "ask", "msg_id": 2}}], tmp_path, 3)
    err = got[2]["body"]
    assert got[1]["body"]["type"] == "ping"
    assert err["type"] == "error" and err["code"] == 13 and err["in_reply_to"] == 2
    assert "returns an awaitable" in err["text"] and "await node.rpc" in err["text"]
