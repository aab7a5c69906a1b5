"""Storage as a write-ahead log: no acknowledged write is ever lost.

A torn tail (a write cut short by a kill) is cut back to the last whole record and journaled;
corruption anywhere before the tail stops the node with an error naming the file and offset;
a write that cannot be made durable (file-size limit, full disk) raises and stores nothing.
Deterministic cases first, then properties over random writes and cuts, then real SIGKILLs
and real clusters.
"""
from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit
from labkit.errors import LabkitError, StorageCorrupt, StorageError
from labkit.runtime.storage import MAGIC, FileBackedData, Storage, frame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def open_store(path, **kw):
    back = FileBackedData(str(path), **kw)
    return back, Storage("n1", back.data, back.write)


def contents(path):
    back, st = open_store(path)
    try:
        return dict(st.items()), back.repair
    finally:
        back.close()


def record_offsets(path):
    """Byte offset where each record starts (after the header)."""
    data = open(path, "rb").read()
    offs, pos = [], len(MAGIC)
    while pos < len(data):
        offs.append(pos)
        pos += 18 + int(data[pos:pos + 8], 16) + 1
    return offs


# ---- the torn tail ---------------------------------------------------------------------------
def test_the_issue_case_torn_tail_then_new_writes_then_restart(tmp_path):
    """put a; a kill mid-write of b; restart; put c (acknowledged); restart: a and c are there.
    (Before the fix c was glued to the torn bytes and lost on every later restart.)"""
    path = tmp_path / "s.wal"
    back, s = open_store(path)
    s["a"] = 1
    s["b"] = 2
    back.close()
    path.write_bytes(path.read_bytes()[:-5])           # the kill: b's record cut short
    back, s = open_store(path)
    assert dict(s.items()) == {"a": 1}
    assert back.repair["bytes_cut"] == len(frame(b'{"m":{"b":2}}')) - 5
    assert back.repair["reason"].startswith("torn tail")
    s["c"] = 3                                         # acknowledged
    back.close()
    state, repair = contents(path)
    assert state == {"a": 1, "c": 3} and repair is None
    back, s = open_store(path)                         # and again: nothing drifts
    s["d"] = 4
    back.close()
    assert contents(path)[0] == {"a": 1, "c": 3, "d": 4}


def test_repair_reports_offset_and_bytes_cut(tmp_path):
    path = tmp_path / "s.wal"
    back, s = open_store(path)
    s["a"] = "x" * 100
    back.close()
    good = path.stat().st_size
    with open(path, "ab") as f:
        f.write(frame(b'{"m":{"b":1}}')[:11])
    back, s = open_store(path)
    assert back.repair == {"file": "s.wal", "offset": good, "bytes_cut": 11,
                           "reason": back.repair["reason"]}
    assert path.stat().st_size == good                 # cut on open, before anything is appended
    back.close()


@pytest.mark.parametrize("tail", [b"\0" * 300, b"0000", b"00000010 ab", b"\n"[:0] + b"0000000d 121f1aec {\"m\":{"])
def test_zero_runs_and_partial_headers_at_the_end_are_torn_tails(tmp_path, tail):
    path = tmp_path / "s.wal"
    back, s = open_store(path)
    s["a"] = 1
    back.close()
    with open(path, "ab") as f:
        f.write(tail)
    state, repair = contents(path)
    assert state == {"a": 1} and repair["bytes_cut"] == len(tail)


def test_a_torn_header_line_starts_an_empty_store(tmp_path):
    path = tmp_path / "s.wal"
    path.write_bytes(MAGIC[:7])
    state, repair = contents(path)
    assert state == {} and repair["offset"] == 0
    assert path.read_bytes() == MAGIC


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.integers(), st.text(max_size=30), st.lists(st.integers(), max_size=5)),
                       min_size=1, max_size=12),
       cut=st.floats(min_value=0, max_value=1, exclude_max=True), more=st.integers(0, 3))
def test_a_kill_anywhere_inside_the_last_write_loses_only_that_write(tmp_path_factory, values, cut, more):
    path = tmp_path_factory.mktemp("wal") / "s.wal"
    back, s = open_store(path)
    states = []
    for i, v in enumerate(values):
        s.update({f"k{i % 4}": v, "n": i})
        states.append(dict(s.items()))
    back.close()
    last = record_offsets(path)[-1]
    size = path.stat().st_size
    at = last + int(cut * (size - last))               # somewhere inside the last record
    os.truncate(path, at)
    back, s = open_store(path)
    expect = states[-2] if len(states) > 1 else {}
    assert dict(s.items()) == expect
    assert (back.repair is not None) == (at > last)
    for j in range(more):                              # writes after the repair are kept
        s[f"new{j}"] = j
        expect[f"new{j}"] = j
    back.close()
    assert contents(path) == (expect, None)


# ---- corruption before the tail: refuse, never skip ---------------------------------------
def two_records_then(path, n=5):
    back, s = open_store(path)
    for i in range(n):
        s[f"k{i}"] = "v" * 20
    back.close()
    return record_offsets(path)


@pytest.mark.parametrize("damage", ["flip", "nul_run", "blank_line", "length"])
def test_damage_in_the_middle_refuses_to_start_naming_file_and_offset(tmp_path, damage):
    path = tmp_path / "s.wal"
    offs = two_records_then(path)
    data = bytearray(path.read_bytes())
    at = offs[2]
    if damage == "flip":
        data[at + 25] ^= 0x01
    elif damage == "nul_run":
        data[at:at + 10] = b"\0" * 10
    elif damage == "blank_line":
        data[at:at] = b"\n"
    else:
        data[at:at + 8] = b"%08x" % 100000                # a length that runs past the end
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(StorageCorrupt) as e:
        FileBackedData(str(path))
    msg = str(e.value)
    assert str(path) in msg and f"byte {at}" in msg and "record 3" in msg and "os.truncate" in msg
    assert path.read_bytes() == before                 # nothing was cut


def test_a_whole_last_record_with_a_bad_checksum_is_corruption_not_a_tear(tmp_path):
    path = tmp_path / "s.wal"
    offs = two_records_then(path, 3)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x02                                   # inside the last payload
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorrupt, match="checksum mismatch"):
        FileBackedData(str(path))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 8), pick=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_a_flipped_bit_is_never_silently_skipped(tmp_path_factory, n, pick, bit):
    """Any single flipped bit: the store refuses to open, or -- only when the bit is in the last
    record and makes it look cut short -- reports a repair that drops exactly that record."""
    path = tmp_path_factory.mktemp("wal") / "s.wal"
    back, s = open_store(path)
    states = []
    for i in range(n):
        s[f"k{i}"] = i
        states.append(dict(s.items()))
    back.close()
    data = bytearray(path.read_bytes())
    at = int(pick * len(data))
    data[at] ^= 1 << bit
    path.write_bytes(bytes(data))
    try:
        back = FileBackedData(str(path))
    except StorageCorrupt:
        return
    last = record_offsets_from(bytes(data), n)
    assert back.repair is not None and at >= last, (at, last)
    assert back.data == {k: json.dumps(v) for k, v in states[-2].items()}
    back.close()


def record_offsets_from(data, n):
    pos = len(MAGIC)
    for _ in range(n - 1):
        pos += 18 + int(data[pos:pos + 8], 16) + 1
    return pos


@pytest.mark.parametrize("content", [b'{"a": 1}\n', b'[1, 2, 3]\n', b'{"m":{"a":1}}\n{"m":{"b":2}}\n', b"hello"])
def test_a_file_that_is_not_a_storage_file_is_refused_with_a_clear_error(tmp_path, content):
    path = tmp_path / "s.wal"
    path.write_bytes(content)
    with pytest.raises(StorageCorrupt, match="not a labkit storage file.*Move it aside"):
        FileBackedData(str(path))


def test_a_checksummed_record_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "s.wal"
    path.write_bytes(MAGIC + frame(b'{"m":[1,2]}') + frame(b'{"m":{"a":1}}'))
    with pytest.raises(StorageCorrupt, match="not a storage record"):
        FileBackedData(str(path))


# ---- writes that cannot be made durable ----------------------------------------------------
def test_a_failed_write_changes_nothing_in_memory():
    def refuse(changes):
        raise StorageError("disk full")
    s = Storage("n1", {"a": "1"}, refuse)
    for op in (lambda: s.__setitem__("a", 2), lambda: s.update(b=1), lambda: s.__delitem__("a")):
        with pytest.raises(StorageError):
            op()
    assert dict(s.items()) == {"a": 1}


def test_short_writes_are_completed(tmp_path, monkeypatch):
    """os.write may write fewer bytes than asked (a signal, a size limit): every byte must land."""
    back, s = open_store(tmp_path / "s.wal")
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, buf: real(fd, bytes(buf)[:7]))
    s.update({f"k{i}": "x" * 50 for i in range(20)})
    monkeypatch.undo()
    back.close()
    assert contents(tmp_path / "s.wal")[0] == {f"k{i}": "x" * 50 for i in range(20)}


def run_script(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def test_a_file_size_limit_makes_the_write_fail_and_keeps_the_file_whole(tmp_path):
    """Under ``ulimit -f`` a write comes back short and then EFBIG: the write raises, nothing of
    it stays in the file, and every acknowledged write is still there after reopening."""
    path = tmp_path / "s.wal"
    p = run_script(f"""
        import resource, json
        from labkit.runtime.storage import FileBackedData, Storage
        from labkit.errors import StorageError
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        back = FileBackedData({str(path)!r}); s = Storage("n1", back.data, back.write)
        acked = 0
        try:
            for i in range(1000):
                s[f"k{{i}}"] = "x" * 700
                acked = i + 1
        except StorageError as e:
            print(json.dumps({{"acked": acked, "error": str(e), "len": len(s)}}))
        """)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert "EFBIG" in out["error"] and "ulimit -f" in out["error"] and "nothing of this write" in out["error"]
    assert out["len"] == out["acked"] > 0                    # memory did not take the failed write
    assert path.stat().st_size <= 20000
    state, repair = contents(path)
    assert repair is None and len(state) == out["acked"]      # the half record was taken back


# ---- real SIGKILLs during large writes -------------------------------------------------------
def test_sigkill_at_random_moments_during_large_writes_loses_no_acknowledged_write(tmp_path):
    """A child writes 256 KB-1 MB records and reports each acknowledgement on a pipe; the
    parent SIGKILLs it at a random moment, reopens (a new incarnation), writes more, and checks
    every acknowledged write -- over many trials, each continuing the same file."""
    path = str(tmp_path / "s.wal")
    rng = random.Random(7)
    acked: dict[str, int] = {}
    repairs = 0
    for trial in range(30):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                         # the node
            try:
                os.close(r)
                back = FileBackedData(path)
                s = Storage("n1", back.data, back.write)
                os.write(w, b"ready\n")
                i = 0
                while True:
                    i += 1
                    size = rng.randrange(128 << 10, 1 << 20)
                    s.update({f"t{trial}/{i}": "v" * size, "last": [trial, i]})
                    os.write(w, f"{trial}/{i} {size}\n".encode())
            finally:
                os._exit(0)
        os.close(w)
        got = b""
        while b"ready\n" not in got:                  # the child has replayed the file
            chunk = os.read(r, 4096)
            assert chunk, "the child died before it was ready"
            got += chunk
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(r) as f:
            for line in (got.decode() + f.read()).splitlines():
                if line != "ready":
                    key, size = line.split()
                    acked["t" + key] = int(size)
        back, s = open_store(path)
        repairs += back.repair is not None
        missing = [k for k, n in acked.items() if k not in s or len(s[k]) != n]
        assert not missing, f"trial {trial}: acknowledged writes lost: {missing[:5]}"
        back.close()
    assert len(acked) >= 30, f"only {len(acked)} writes acknowledged in 30 trials: the test did not test much"
    print(f"{len(acked)} acknowledged writes over 30 kills; {repairs} torn tails repaired")


def test_compaction_keeps_mode_0600(tmp_path, monkeypatch):
    monkeypatch.setattr(FileBackedData, "COMPACT_BYTES", 2000)
    path = tmp_path / "s.wal"
    back, s = open_store(path)
    compacted = []
    real = back._compact
    monkeypatch.setattr(back, "_compact", lambda: (compacted.append(1), real()))
    for i in range(500):
        s["hot"] = "x" * 50
    assert compacted and stat.S_IMODE(path.stat().st_mode) == 0o600
    back.close()
    assert contents(path)[0] == {"hot": "x" * 50}


def test_fsync_option_flushes_every_write(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    back, s = open_store(tmp_path / "s.wal", fsync=True)
    n = len(calls)
    s["a"] = 1
    s.update(b=2, c=3)
    del s["a"]
    assert len(calls) == n + 3
    back.close()
    with pytest.raises(TypeError, match="fsync must be True or False"):
        labkit.Cluster(Keeper, n=1, runtime="sim", fsync="yes")


# ---- real clusters -----------------------------------------------------------------------------
class Keeper(labkit.Node):
    """put / get on ctx.storage; a put is acknowledged only after the write returned."""

    def on_message(self, ctx, msg):
        if msg.type == "put":
            ctx.storage[msg["key"]] = msg["value"]
            ctx.reply(msg, type="put_ok")
        elif msg.type == "get":
            ctx.reply(msg, type="get_ok", value=ctx.storage.get(msg["key"]))


def storage_file(c, node):
    return os.path.join(c._rt.dir, f"storage-{node}.jsonl")


@pytest.mark.processes
@pytest.mark.parametrize("fsync", [False, True])
def test_processes_torn_tail_is_repaired_and_journaled(fsync):
    with labkit.Cluster(Keeper, n=1, seed=3, fsync=fsync) as c:
        c.request("n1", "put", key="a", value=1)
        c.kill("n1")
        with open(storage_file(c, "n1"), "ab") as f:   # the kill tore a write of b
            f.write(frame(b'{"m":{"b":2}}')[:9])
        c.restart("n1")
        c.request("n1", "put", key="c", value=3)
        c.kill("n1")
        c.restart("n1")
        got = {k: c.request("n1", "get", key=k).body["value"] for k in "abc"}
        assert got == {"a": 1, "b": None, "c": 3}
        repairs = c.journal.filter(kind="repair")
        assert len(repairs) == 1 and repairs[0].get("bytes_cut") == 9 and repairs[0].node == "n1"


@pytest.mark.processes
def test_processes_corrupt_storage_refuses_restart_with_a_clear_error():
    with labkit.Cluster(Keeper, n=2, seed=3) as c:
        for i in range(4):
            c.request("n1", "put", key=f"k{i}", value=i)
        c.kill("n1")
        path = storage_file(c, "n1")
        data = bytearray(open(path, "rb").read())
        data[len(MAGIC) + 20] ^= 0x01                   # inside the first record
        open(path, "wb").write(bytes(data))
        with pytest.raises(LabkitError) as e:
            c.restart("n1")
        msg = str(e.value)
        assert msg.startswith("node n1 could not start: ") and "is corrupt at byte" in msg
        assert "os.truncate" in msg and "Traceback" not in msg
        assert c.request("n2", "put", key="x", value=1).type == "put_ok"   # the rest goes on


@pytest.mark.processes
def test_processes_file_size_limit_crashes_the_node_with_the_reason():
    """A node whose write hits ``ulimit -f`` crashes; the request is not acknowledged and the
    crash text names EFBIG (before: "exited with code 4" and nothing in the journal)."""
    p = run_script("""
        import resource, json, labkit
        from labkit.errors import NodeCrashed, RequestTimeout
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        class Keeper(labkit.Node):
            def on_message(self, ctx, msg):
                ctx.storage[msg["key"]] = msg["value"]
                ctx.reply(msg, type="put_ok")
        with labkit.Cluster(Keeper, n=1, seed=1) as c:
            ok = c.request("n1", "put", key="small", value="x" * 1000).type
            try:
                c.request("n1", "put", key="big", value="x" * 300_000, timeout=5_000)
                print(json.dumps({"acked_big": True}))
            except (NodeCrashed, RequestTimeout):
                crash = c.journal.filter(kind="crash")[-1]
                print(json.dumps({"acked_big": False, "ok": ok, "error": crash.get("error"),
                                  "tb": crash.get("traceback")}))
        """)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["acked_big"] is False and out["ok"] == "put_ok"
    assert "EFBIG" in out["error"] + out["tb"], out


def _can_mount_tmpfs(where: str) -> str | None:
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return "needs root on Linux to mount a small tmpfs"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", where], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot mount a tmpfs here: {r.stderr.strip()}"


@pytest.mark.processes
def test_processes_full_disk_is_named_in_the_crash():
    import tempfile
    disk = tempfile.mkdtemp(prefix="lk-disk-", dir="/tmp")   # short: labkit keeps ipc paths short
    why = _can_mount_tmpfs(disk)
    if why:
        os.rmdir(disk)
        pytest.skip(why)
    try:
        p = run_script("""
            import json, labkit
            from labkit.errors import NodeCrashed, RequestTimeout
            class Keeper(labkit.Node):
                def on_message(self, ctx, msg):
                    ctx.storage[msg["key"]] = msg["value"]
                    ctx.reply(msg, type="put_ok")
            with labkit.Cluster(Keeper, n=1, seed=1) as c:
                acked = []
                try:
                    for i in range(100):
                        c.request("n1", "put", key=f"k{i}", value="x" * 50_000, timeout=10_000)
                        acked.append(i)
                except (NodeCrashed, RequestTimeout) as e:
                    pass
                crash = [e for e in c.journal.filter(kind="crash")]
                print(json.dumps({"acked": len(acked), "errors": [e.get("error") + " " + (e.get("traceback") or "")
                                                                  for e in crash]}))
            """, env={"TMPDIR": disk})
    finally:
        subprocess.run(["umount", "-l", disk], capture_output=True)
        os.rmdir(disk)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert 0 < out["acked"] < 12
    assert any("ENOSPC" in e for e in out["errors"]), out


@pytest.mark.processes
def test_processes_raft_keeps_every_acknowledged_write_after_sigkill_of_all_with_torn_tails():
    """Chapter 05's durability check, with torn tails: a workload, SIGKILL of every node, a
    torn last write added to every node's storage file (what a kill mid-write leaves), restart:
    every acknowledged append is read back and each node journaled its repair."""
    from labkit.checkers.raft import check_raft
    from labkit.systems.raft import RaftKV
    from test_raft import acked_survive_a_full_restart
    rng = random.Random(5)

    def tear_every_last_write(c):
        for n in c.ids:
            torn = frame(json.dumps({"m": {"raft/log/999": [[9, {"op": "append"}]], "raft/len": 999}}).encode())
            with open(storage_file(c, n), "ab") as f:
                f.write(torn[:rng.randrange(1, len(torn) - 1)])

    with labkit.Cluster(RaftKV, n=3, seed=12) as c:
        c.run_for(1.0)
        acked_survive_a_full_restart(c, seconds=1.5, while_down=tear_every_last_write)
        assert sorted(e.node for e in c.journal.filter(kind="repair")) == list(c.ids)
        assert check_raft(c.journal).valid is True
