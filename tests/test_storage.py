"""Durable storage: atomic multi-key updates, torn writes, compaction that stays cheap."""
from __future__ import annotations

import os

import pytest

import labkit
from labkit.errors import StorageError
from labkit.runtime.storage import MAGIC, FileBackedData, Storage


def open_store(path):
    back = FileBackedData(str(path))
    return back, Storage("n1", back.data, back.write)


def test_update_is_one_record_and_survives_reload(tmp_path):
    back, st = open_store(tmp_path / "s.jsonl")
    st["a"] = 1
    st.update({"log/1": [1, "x"], "log/2": [1, "y"]}, len=2)
    del st["a"]
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert lines[0] == "labkit-storage 2"
    assert len(lines) == 4, lines                      # the header, then one record for the three-key update
    _, again = open_store(tmp_path / "s.jsonl")
    assert dict(again.items()) == {"log/1": [1, "x"], "log/2": [1, "y"], "len": 2}


def test_a_torn_update_leaves_none_of_its_keys(tmp_path):
    path = tmp_path / "s.jsonl"
    back, st = open_store(path)
    st["len"] = 0
    st.update({"log/1": [1, "x"], "len": 1})
    data = path.read_bytes()
    path.write_bytes(data[:-7])                        # SIGKILL in the middle of the write
    _, again = open_store(path)
    assert dict(again.items()) == {"len": 0}


def test_update_rejects_bad_values_and_writes_nothing(tmp_path):
    back, st = open_store(tmp_path / "s.jsonl")
    with pytest.raises(StorageError, match="'bad'"):
        st.update({"ok": 1, "bad": {1, 2}})
    with pytest.raises(StorageError, match="keys are strings"):
        st.update({3: 1})
    assert dict(st.items()) == {} and os.path.getsize(tmp_path / "s.jsonl") == len(MAGIC)


def test_compaction_is_amortised_when_live_data_is_large(tmp_path, monkeypatch):
    monkeypatch.setattr(FileBackedData, "COMPACT_BYTES", 2000)
    back, st = open_store(tmp_path / "s.jsonl")
    compactions = []
    real = back._compact
    monkeypatch.setattr(back, "_compact", lambda: (compactions.append(1), real()))
    for i in range(2000):                             # live data grows far past COMPACT_BYTES
        st[f"k{i}"] = "x" * 20
    assert len(compactions) < 20, f"{len(compactions)} compactions for 2000 writes"
    _, again = open_store(tmp_path / "s.jsonl")
    assert len(again) == 2000


class Appender(labkit.Node):
    def on_start(self, ctx):
        ctx.storage.setdefault("len", 0)

    def on_message(self, ctx, msg):
        n = ctx.storage["len"]
        ctx.storage.update({f"log/{n + 1}": msg["v"], "len": n + 1})
        ctx.reply(msg, len=n + 1)


@pytest.mark.parametrize("runtime", ["sim", "processes"])
def test_update_survives_restart_in_both_runtimes(runtime):
    with labkit.Cluster(Appender, n=1, runtime=runtime, seed=1) as c:
        for v in range(3):
            c.request("n1", "append", v=v)
        c.kill("n1")
        c.restart("n1")
        assert c.request("n1", "append", v=9).body["len"] == 4


def test_a_store_that_only_grows_is_never_rewritten(tmp_path, monkeypatch):
    """A Raft log appends and never overwrites: compacting it would free nothing and pause
    the node for as long as the store is big, so it must not happen."""
    monkeypatch.setattr(FileBackedData, "COMPACT_BYTES", 2000)
    back, st = open_store(tmp_path / "s.jsonl")
    compactions = []
    real = back._compact
    monkeypatch.setattr(back, "_compact", lambda: (compactions.append(1), real()))
    for i in range(0, 3000, 10):
        st.update({f"log/{i + k}": [1, {"op": "write", "value": i + k}] for k in range(10)}, len=i + 10)
    assert compactions == []
    for i in range(3000):                             # overwrites do get compacted away
        st["hot"] = "x" * 50
    assert compactions and os.path.getsize(tmp_path / "s.jsonl") < 2 * sum(
        len(k) + len(v) + 4 for k, v in back.data.items()) + 2000
