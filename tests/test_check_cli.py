"""``python -m labkit.check``: one line per file and the exit status, run as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labkit.checkers import synthetic_history
from labkit.history import History, Op

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.check", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("histories")
    good = synthetic_history("kv", ops=200, clients=5, keys=3, info=0.05, seed=1)
    good.save_edn(str(d / "good.edn"))
    good.save_jsonl(str(d / "good.jsonl"))
    reads = [o for o in good if o.type == "ok" and o.f == "read"]
    bad = History(Op(o.process, o.type, o.f, 42, o.key, o.time) if o is reads[5] else o for o in good)
    bad.save_edn(str(d / "bad.edn"))
    n = 16
    slow = [Op(p, "invoke", "write", p) for p in range(n)] + [Op(p, "ok", "write", p) for p in range(n)]
    History(slow + [Op(n, "invoke", "read"), Op(n, "ok", "read", -1)]).save_jsonl(str(d / "slow.jsonl"))
    (d / "broken.edn").write_text('{:process 0, :type :invoke, :f :read, :value nil}\n'
                                  '{:process 0, :type :ok, :f :read, :value [1 2}\n')
    (d / "broken.jsonl").write_text('{"process":0,"type":"invoke","f":"read"}\n\n{"process":0,"type":"ok",\n')
    (d / "orphan.jsonl").write_text('{"process":0,"type":"ok","f":"read","value":1}\n')
    return {p.name: str(p) for p in d.iterdir()}


def test_linearizable_files_exit_0(files):
    r = run("linearizable", "--model", "kv", files["good.edn"], files["good.jsonl"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{files['good.edn']}: linearizable", f"{files['good.jsonl']}: linearizable"]


def test_a_violation_exits_1_with_a_reason(files):
    r = run("linearizable", "--model", "kv", "--explain", files["good.edn"], files["bad.edn"])
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].endswith(": linearizable")
    assert lines[1].startswith(f"{files['bad.edn']}: NOT linearizable -- key ")
    assert "read 42" in lines[1] and "cannot be placed" in r.stdout


def test_a_timeout_exits_2_and_says_unknown(files):
    r = run("linearizable", "--model", "register", "--timeout", "0.001", files["slow.jsonl"])
    assert r.returncode == 2
    assert r.stdout.startswith(f"{files['slow.jsonl']}: unknown -- timed out")
    r = run("linearizable", "--model", "kv", "--timeout", "0.001", files["slow.jsonl"], files["bad.edn"])
    assert r.returncode == 1                        # a definite violation outranks an unknown


@pytest.mark.parametrize("name, needle", [
    ("broken.edn", "error -- line 2: malformed EDN"),
    ("broken.jsonl", "error -- line 3: "),
    ("orphan.jsonl", "error -- op #0: process 0 completes (ok) an op it never invoked"),
])
def test_bad_files_exit_3_and_never_look_linearizable(files, name, needle):
    r = run("linearizable", "--model", "kv", files["good.jsonl"], files[name])
    assert r.returncode == 3
    line = r.stdout.splitlines()[1]
    assert line.startswith(f"{files[name]}: {needle}") and "linearizable" not in line


def test_missing_file_and_bad_file_beside_a_violation(files, tmp_path):
    missing = str(tmp_path / "nope.edn")
    r = run("linearizable", "--model", "kv", missing)
    assert r.returncode == 3 and r.stdout.startswith(f"{missing}: error -- cannot read")
    r = run("linearizable", "--model", "kv", missing, files["bad.edn"])
    assert r.returncode == 1


@pytest.mark.parametrize("args, needle", [
    (["linearizable", "--model", "raft", "x.edn"], "invalid choice: 'raft'"),
    (["linearizable", "x.edn"], "--model"),
    (["linearizable", "--model", "kv"], "FILE"),
    (["serializable", "--model", "kv", "x.edn"], "invalid choice"),
    (["linearizable", "--model", "kv", "--timeout", "0", "x.edn"], "--timeout must be > 0"),
])
def test_usage_errors_exit_3(args, needle):
    r = run(*args)
    assert r.returncode == 3 and needle in r.stderr and r.stdout == ""


def test_model_of_the_wrong_kind_is_a_clear_error(files):
    r = run("linearizable", "--model", "mutex", files["good.edn"])
    assert r.returncode == 3 and "model 'mutex' has no operation" in r.stdout
