"""labkit.maelstrom.export: a labkit.Node run as a Maelstrom program answers as the node does."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import labkit
from labkit.maelstrom.export import load_node_class
from labkit.maelstrom.program import Program
from labkit.maelstrom.services import LinKV

ROOT = Path(__file__).parent.parent

NODES_FILE = Path(__file__).parent / "maelstrom_export_nodes.py"


@pytest.fixture
def nodes_file():
    return NODES_FILE


def exported(path, name):
    return Program([sys.executable, "-m", "labkit.maelstrom.export", f"{path}:{name}"],
                   env={"PYTHONPATH": str(ROOT)})


def answers(c):
    out = [c.request("n0", "echo", timeout=10000, echo="same").body]
    for n, to in (("n1", "n2"), ("n2", "n1")):
        r = c.request(n, "relay", timeout=10000, to=to, n=len(n))
        out.append((r.type, r.body))
    return out


@pytest.mark.processes
def test_an_exported_node_answers_as_the_node_does(nodes_file):
    try:                                   # tests/ as a package, or as a plain directory
        from . import maelstrom_export_nodes as course
    except ImportError:
        import maelstrom_export_nodes as course
    with labkit.Cluster({"n0": course.Echo, "n1": course.Relay, "n2": course.Relay,
                         "lin-kv": LinKV}, seed=11) as c:
        native = answers(c)
    with labkit.Cluster({"n0": exported(nodes_file, "Echo"), "n1": exported(nodes_file, "Relay"),
                         "n2": exported(nodes_file, "Relay"), "lin-kv": LinKV}, seed=11) as c:
        assert answers(c) == native
        # a crash in an exported node ends its program: the node crashes, with the traceback
        with pytest.raises((labkit.NodeCrashed, labkit.RequestTimeout)):
            c.request("n1", "boom", timeout=3000)
        c.run_for(0.3)
        assert c.status()["n1"].state == "crashed"
        crash = [e for e in c.journal if e.kind == "crash" and e.node == "n1"][0]
        assert "exited with code 1" in crash.get("error") and "RuntimeError: boom" in crash.get("traceback")
    assert native[1] == ("relay_ok", {"peer": "n2", "kv": 2, "ticked": True, "peers": ["n0", "n2"]})


def test_export_speaks_maelstrom_on_stdin_and_stdout(nodes_file):
    """The export run by hand, as Maelstrom runs it: init, then a request; exit on EOF."""
    lines = [{"src": "c0", "dest": "n5", "body": {"type": "init", "msg_id": 1, "node_id": "n5", "node_ids": ["n5"]}},
             {"src": "c3", "dest": "n5", "body": {"type": "echo", "msg_id": 42, "echo": [1, {"a": None}]}}]
    out = subprocess.run([sys.executable, "-m", "labkit.maelstrom.export", f"{nodes_file}:Echo"],
                         input="".join(json.dumps(m) + "\n" for m in lines), capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    got = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert got == [{"src": "n5", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1}},
                   {"src": "n5", "dest": "c3", "body": {"type": "echo_ok", "msg_id": 1, "in_reply_to": 42,
                                                        "echo": [1, {"a": None}]}}]


def test_load_node_class_errors(nodes_file, tmp_path):
    assert load_node_class(f"{nodes_file}:Echo").__name__ == "Echo"
    with pytest.raises(labkit.LabkitError, match="defines 2 labkit.Node classes"):
        load_node_class(str(nodes_file))
    with pytest.raises(labkit.LabkitError, match="has no 'Nope'"):
        load_node_class(f"{nodes_file}:Nope")
    with pytest.raises(labkit.LabkitError, match="not a labkit.Node subclass"):
        load_node_class("json:dumps")
    one = tmp_path / "one.py"
    one.write_text("import labkit\nclass Only(labkit.Node):\n    pass\n")
    assert load_node_class(str(one)).__name__ == "Only"
    out = subprocess.run([sys.executable, "-m", "labkit.maelstrom.export", f"{tmp_path}/missing.py:X"],
                         capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "cannot load" in out.stderr and "missing.py" in out.stderr


def test_a_package_module_given_as_a_file_says_to_give_its_module_name(tmp_path):
    """A course node inside a package (relative imports) given as a file path: before, a bare
    'attempted relative import with no known parent package'; now the module form to use."""
    pkg = tmp_path / "course" / "nodes"
    pkg.mkdir(parents=True)
    (tmp_path / "course" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("GREETING = 'hi'\n")
    (pkg / "kv.py").write_text("import labkit\nfrom .helpers import GREETING\n\n"
                               "class KV(labkit.Node):\n    pass\n")
    with pytest.raises(labkit.LabkitError, match=r"part of a package.*give it as a module, course\.nodes\.kv:KV"):
        load_node_class(f"{pkg / 'kv.py'}:KV")
    sys.path.insert(0, str(tmp_path))
    try:
        assert load_node_class("course.nodes.kv:KV").__name__ == "KV"
    finally:
        sys.path.remove(str(tmp_path))
        for mod in [m for m in sys.modules if m == "course" or m.startswith("course.") or m == "kv"]:
            del sys.modules[mod]
