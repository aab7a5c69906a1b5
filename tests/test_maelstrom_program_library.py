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
