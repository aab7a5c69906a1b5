"""The journal file a node writes through a shared mapping (labkit.runtime.journal_file)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from labkit.runtime import journal_file
from labkit.runtime.journal_file import JournalWriter, append_line, readable_length

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="the mapped writer needs posix_fallocate")


def test_lines_written_across_many_reservations_read_back_whole(tmp_path):
    path = str(tmp_path / "j.jsonl")
    w = JournalWriter(path)
    lines = [f'{{"i":{i},"pad":"{"x" * (i % 300)}"}}\n'.encode() for i in range(5000)]
    for line in lines:
        w.write(line)
    size = os.path.getsize(path)
    # Only the part still to be written is mapped (from the page where the last reservation
    # found the writer): the written pages do not stay in the node's memory.
    assert w.base >= size // 4 and len(w.map) == size - w.base, (w.base, size)
    w.close()
    data = b"".join(lines)
    assert size > len(data)                        # room reserved ahead of the writer
    assert readable_length(path) == len(data)
    with open(path, "rb") as f:
        got = f.read()
    assert got[:len(data)] == data and set(got[len(data):]) <= {0}


def test_a_reopened_journal_continues_where_the_written_part_ends(tmp_path):
    path = str(tmp_path / "j.jsonl")
    w = JournalWriter(path)
    w.write(b'{"a":1}\n')
    w.close()
    w = JournalWriter(path)
    w.write(b'{"b":2}\n')
    w.close()
    with open(path, "rb") as f:
        assert f.read().rstrip(b"\0") == b'{"a":1}\n{"b":2}\n'


def test_the_emergency_line_lands_after_the_written_part_not_after_the_reserve(tmp_path):
    path = str(tmp_path / "j.jsonl")
    w = JournalWriter(path)
    w.write(b'{"a":1}\n')
    append_line(path, b'{"kind":"crash"}\n')       # (the writer's process is gone, say)
    assert readable_length(path) == len(b'{"a":1}\n{"kind":"crash"}\n')
    with open(path, "rb") as f:
        assert f.read().split(b"\0")[0] == b'{"a":1}\n{"kind":"crash"}\n'
    w.close()
    missing = str(tmp_path / "new.jsonl")
    append_line(missing, b'{"kind":"crash"}\n')
    assert readable_length(missing) == len(b'{"kind":"crash"}\n')


def test_a_reader_racing_the_writer_sees_only_whole_written_lines(tmp_path):
    """What a reader takes -- the whole lines before the first NUL -- is always a prefix of
    what was written, however the copy and the read interleave."""
    path = str(tmp_path / "j.jsonl")
    w = JournalWriter(path)
    lines = [f'{{"i":{i},"pad":"{"y" * (i % 97)}"}}\n'.encode() for i in range(20000)]
    data = b"".join(lines)
    done = threading.Event()

    def write() -> None:
        for line in lines:
            w.write(line)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    reads = 0
    while not done.is_set() or reads < 3:
        with open(path, "rb") as f:
            got = f.read()
        head = got.split(b"\0")[0]
        whole = head[:head.rfind(b"\n") + 1]
        assert data.startswith(whole)
        reads += 1
    t.join()
    w.close()
    assert readable_length(path) == len(data)


def test_a_file_size_limit_is_an_oserror_when_room_is_reserved_and_takes_what_fits(tmp_path):
    """Under ``ulimit -f`` the writer reserves exactly what a write needs once a whole chunk
    is refused; past the limit the write raises EFBIG -- no SIGBUS, nothing half-written."""
    path = str(tmp_path / "j.jsonl")
    script = textwrap.dedent(f"""
        import errno, json, resource
        from labkit.runtime.journal_file import JournalWriter, readable_length, FIRST_CHUNK
        resource.setrlimit(resource.RLIMIT_FSIZE, (FIRST_CHUNK + 5000, FIRST_CHUNK + 5000))
        w = JournalWriter({path!r})
        written = 0
        try:
            for i in range(10000):
                w.write(b"x" * 99 + b"\\n")
                written += 100
        except OSError as e:
            print(json.dumps({{"errno": errno.errorcode[e.errno], "written": written,
                               "readable": readable_length({path!r})}}))
        """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert p.returncode == 0, p.stderr
    import json
    out = json.loads(p.stdout)
    assert out["errno"] == "EFBIG"
    assert journal_file.FIRST_CHUNK < out["written"] <= journal_file.FIRST_CHUNK + 5000
    assert out["readable"] == out["written"]
