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
    n = 18       # n concurrent writes, then reads of 0, 1, 0: every subset must be tried
    slow = [Op(p, "invoke", "write", p) for p in range(n)] + [Op(p, "ok", "write", p) for p in range(n)]
    for v in (0, 1, 0):
        slow += [Op(n, "invoke", "read"), Op(n, "ok", "read", v)]
    History(slow).save_jsonl(str(d / "slow.jsonl"))
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


# -- honesty: nothing unchecked may exit 0 or 1 -----------------------------------------------

def _write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    (p.write_bytes if mode == "wb" else p.write_text)(text)
    return str(p)


@pytest.mark.parametrize("name, text", [
    ("empty.edn", ""), ("blank.jsonl", "\n   \n\n"), ("blank.edn", "\n\n"),
    ("nemesis-only.edn", "{:process :nemesis, :type :info, :f :start, :value nil}\n"),
])
def test_a_file_without_operations_exits_3(tmp_path, name, text):
    path = _write(tmp_path, name, text)
    r = run("linearizable", "--model", "register", path)
    assert r.returncode == 3, r.stdout
    assert r.stdout.startswith(f"{path}: error -- no ") and f"in {path}" in r.stdout


@pytest.mark.parametrize("process, line", [('"0"', 3), ("nil", 3), ("1.0", 3), ("true", 3), ("[0]", 3)])
def test_bad_process_ids_exit_3_naming_the_line(tmp_path, process, line):
    rows = ["{:process 0, :type :invoke, :f :write, :value 1}", "{:process 0, :type :ok, :f :write, :value 1}",
            f"{{:process {process}, :type :invoke, :f :read, :value nil}}",
            f"{{:process {process}, :type :ok, :f :read, :value 7}}"]
    path = _write(tmp_path, "p.edn", "\n".join(rows) + "\n")
    r = run("linearizable", "--model", "register", path)
    assert r.returncode == 3 and f"line {line}: process must be an integer" in r.stdout


def test_json_process_ids(tmp_path):
    ok = '{"process":"nemesis","type":"info","f":"start"}\n{"process":0,"type":"invoke","f":"read"}\n' \
         '{"process":0,"type":"ok","f":"read","value":null}\n'
    assert run("linearizable", "--model", "register", _write(tmp_path, "a.jsonl", ok)).returncode == 0
    bad = ok.replace('"process":0,"type":"ok"', '"process":"0","type":"ok"')
    r = run("linearizable", "--model", "register", _write(tmp_path, "b.jsonl", bad))
    assert r.returncode == 3 and "line 3: process must be an integer" in r.stdout


def _stale_rows():
    """write 1 done, then write 2 done, then a read of 1: stale (NOT linearizable) in real order."""
    return [(0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "write", 2), (1, "ok", "write", 2),
            (2, "invoke", "read", None), (2, "ok", "read", 1)]


def _edn(rows, order, index=True, time=True):
    out = []
    for n in order:
        p, t, f, v = rows[n]
        extra = (f", :index {n}" if index else "") + (f", :time {1000 * (n + 1)}" if time else "")
        out.append(f"{{:process {p}, :type :{t}, :f :{f}, :value {'nil' if v is None else v}{extra}}}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("index, time", [(True, True), (True, False), (False, True)])
def test_lines_out_of_order_are_put_in_order_by_index_or_time(tmp_path, index, time):
    # The read's invocation is written first: by line order it would be concurrent and pass.
    order = [4, 0, 1, 2, 3, 5]
    path = _write(tmp_path, "o.edn", _edn(_stale_rows(), order, index, time))
    r = run("linearizable", "--model", "register", path)
    assert r.returncode == 1 and "read 1" in r.stdout


def test_lines_out_of_order_that_cannot_be_repaired_exit_3(tmp_path):
    text = _edn(_stale_rows(), [4, 0, 1, 2, 3, 5], index=False, time=True).splitlines()
    text[3] = text[3].replace(", :time 3000", "")          # one op without a time: no full order
    path = _write(tmp_path, "o.edn", "\n".join(text) + "\n")
    r = run("linearizable", "--model", "register", path)
    assert r.returncode == 3 and "line 2: time 0.001 ms goes backwards (line 1 has 0.005 ms)" in r.stdout


@pytest.mark.parametrize("model, value, needle", [
    ("cas-register", "5", "expects a [from to] pair for cas, got 5"),
    ("cas-register", "[1 2 3]", "expects a [from to] pair for cas"),
    ("register", "{:a 1}", "expects a value that can be compared"),
    ("register", "##NaN", "expects a value that equals itself (NaN equals nothing)"),
    ("counter", ":x", "expects a number"),
])
def test_values_the_model_cannot_use_exit_3_naming_op_and_line(tmp_path, model, value, needle):
    f = "cas" if model == "cas-register" else ("add" if model == "counter" else "write")
    rows = ["{:process 0, :type :invoke, :f :read, :value nil}", "{:process 0, :type :ok, :f :read, :value nil}",
            f"{{:process 1, :type :invoke, :f :{f}, :value {value}}}", f"{{:process 1, :type :ok, :f :{f}, :value {value}}}"]
    if model == "counter":
        rows[1] = "{:process 0, :type :ok, :f :read, :value 0}"
    path = _write(tmp_path, "v.edn", "\n".join(rows) + "\n")
    r = run("linearizable", "--model", model, path)
    assert r.returncode == 3, r.stdout
    assert f"{path}: error -- line 4: op #3 (process 1 ok {f}): model '{model}' {needle}" in r.stdout


def test_a_file_that_is_not_utf8_exits_3_naming_the_line(tmp_path):
    data = b'{"process":0,"type":"invoke","f":"read"}\n{"process":0,"type":"ok","f":"read","value":"\xff"}\n'
    path = _write(tmp_path, "x.jsonl", data, "wb")
    r = run("linearizable", "--model", "register", path)
    assert r.returncode == 3 and "line 2: not UTF-8 text (byte 0xff" in r.stdout


def test_a_tiny_memory_budget_answers_unknown_with_the_reason(files):
    r = run("linearizable", "--model", "register", "--memory", "2k", "--timeout", "60", files["slow.jsonl"])
    assert r.returncode == 2, r.stdout
    assert "unknown -- memory budget of 2 kB reached after" in r.stdout and "configurations" in r.stdout
    r = run("linearizable", "--model", "register", "--memory", "lots", files["slow.jsonl"])
    assert r.returncode == 3 and "--memory" in r.stderr


def test_progress_goes_to_stderr_only_when_asked(files):
    r = run("linearizable", "--model", "register", "--progress", "--timeout", "3", files["slow.jsonl"])
    assert r.returncode == 2 and "linearizability: 0/1 keys" in r.stderr
    r = run("linearizable", "--model", "register", "--timeout", "3", files["slow.jsonl"])
    assert r.returncode == 2 and r.stderr == ""            # not a terminal: no progress
