"""labkit.checkers.kafka on hand-built histories: each anomaly FAILs the history that has it
and PASSes the nearest valid one; a correct log's random histories always pass."""
from __future__ import annotations

import random

import pytest

from labkit.checkers.kafka import check_kafka
from labkit.history import History, Op


class B:
    """History builder: each call appends an invoke and its completion (sequential)."""

    def __init__(self):
        self.ops = []

    def _add(self, p, f, inv, typ, ok):
        self.ops += [Op(p, "invoke", f, inv), Op(p, typ, f, ok if typ == "ok" else inv)]
        return self

    def send(self, p, k, v, o, typ="ok"):
        return self._add(p, "send", [["send", k, v]], typ, [["send", k, [o, v]]])

    def poll(self, p, msgs):
        return self._add(p, "poll", [["poll"]], "ok", [["poll", msgs]])

    def commit(self, p, offsets):
        return self._add(p, "commit_offsets", offsets, "ok", offsets)

    def listc(self, p, keys, result):
        return self._add(p, "list_committed_offsets", keys, "ok", result)

    def h(self):
        return History(self.ops)


def kinds(v):
    return set(v.details["anomaly_types"])


def base():
    return B().send(0, "a", 10, 0).send(0, "a", 11, 1).send(0, "a", 12, 2)


def test_valid_log():
    v = check_kafka(base().poll(1, {"a": [[0, 10], [1, 11]]}).poll(1, {"a": [[2, 12]]}).h())
    assert v.valid is True, str(v)
    assert v.details["sends_ok"] == 3 and v.details["polls_ok"] == 2


def test_lost_write():
    v = check_kafka(base().poll(1, {"a": [[0, 10]]}).poll(2, {"a": [[2, 12]]}).h())
    assert v.valid is False and "lost-write" in kinds(v)
    assert v.details["anomalies"]["lost-write"][0]["offset"] == 1
    ok = check_kafka(base().poll(1, {"a": [[0, 10], [1, 11]]}).h())
    assert ok.valid is True and ok.details["unseen"] == {"a": 1}      # not yet polled is not lost


def test_poll_skip_external_and_internal():
    v = check_kafka(base().poll(1, {"a": [[0, 10], [1, 11]]}).poll(1, {"a": []}).poll(2, {"a": [[0, 10]]})
                    .poll(2, {"a": [[2, 12]]}).h())
    assert kinds(v) == {"poll-skip"}
    assert v.details["anomalies"]["poll-skip"][0]["skipped"] == [1]
    v = check_kafka(base().poll(1, {"a": [[0, 10], [2, 12]]}).poll(2, {"a": [[1, 11]]}).h())
    assert kinds(v) == {"int-poll-skip"}
    # an assign (list_committed_offsets) in between resets the order: no skip
    ok = base().poll(2, {"a": [[0, 10]]}).listc(2, ["a"], {"a": 1}).poll(2, {"a": [[2, 12]]}) \
        .poll(3, {"a": [[1, 11]]}).h()
    assert check_kafka(ok).valid is True


def test_nonmonotonic_poll():
    v = check_kafka(base().poll(1, {"a": [[0, 10], [1, 11], [2, 12]]}).poll(1, {"a": [[1, 11]]}).h())
    assert kinds(v) == {"nonmonotonic-poll"}
    v = check_kafka(base().poll(1, {"a": [[1, 11], [0, 10], [1, 11], [2, 12]]}).h())
    assert "int-nonmonotonic-poll" in kinds(v)
    # another process may read from the start again; so may this one after an assign
    ok = base().poll(1, {"a": [[0, 10], [1, 11], [2, 12]]}).poll(2, {"a": [[1, 11]]}) \
        .listc(1, ["a"], {}).poll(1, {"a": [[0, 10]]}).h()
    assert check_kafka(ok).valid is True


def test_duplicate_and_inconsistent_offsets():
    v = check_kafka(base().poll(1, {"a": [[0, 10], [1, 11], [2, 12], [3, 11]]}).h())
    assert kinds(v) == {"duplicate"}
    v = check_kafka(B().send(0, "a", 10, 0).send(1, "a", 20, 0).poll(2, {"a": [[0, 10]]}).h())
    assert "inconsistent-offsets" in kinds(v)
    assert v.details["anomalies"]["inconsistent-offsets"][0]["msgs"] == [10, 20]
    assert check_kafka(B().send(0, "a", 10, 0).send(1, "a", 20, 1).poll(2, {"a": [[0, 10], [1, 20]]}).h()).valid


def test_nonmonotonic_send_and_aborted_read():
    v = check_kafka(B().send(0, "a", 10, 5).send(0, "a", 11, 3).h())
    assert kinds(v) == {"nonmonotonic-send"}
    assert check_kafka(B().send(0, "a", 10, 5).send(1, "a", 11, 3).h()).valid is True   # two processes
    v = check_kafka(B().send(0, "a", 10, 0, typ="fail").poll(1, {"a": [[0, 10]]}).h())
    assert kinds(v) == {"aborted-read"}
    assert check_kafka(B().send(0, "a", 10, 0, typ="info").poll(1, {"a": [[0, 10]]}).h()).valid is True


def test_committed_offsets_regression():
    bad = base().commit(1, {"a": 2}).listc(2, ["a"], {"a": 1}).h()
    v = check_kafka(bad)
    assert kinds(v) == {"committed-offset-regression"}
    assert check_kafka(bad, committed_monotonic=False).valid is True
    assert check_kafka(base().commit(1, {"a": 2}).listc(2, ["a"], {"a": 2}).h()).valid is True
    assert "committed-offset-regression" in kinds(
        check_kafka(base().commit(1, {"a": 1}).listc(2, ["a"], {}).h()))


def test_bad_input_and_empty():
    with pytest.raises(ValueError, match="micro-ops"):
        check_kafka(History([Op(0, "invoke", "send", 5), Op(0, "ok", "send", 5)]))
    with pytest.raises(ValueError, match="offset, msg"):
        check_kafka(B().poll(0, {"a": [[0]]}).h())
    assert check_kafka(History()).valid is None


def test_correct_log_random_histories_pass():
    """Processes send and poll (from their positions, as Maelstrom's client does) on a
    correct log with sparse offsets; some sends fail before or time out after taking effect."""
    rng = random.Random(3)
    for _ in range(30):
        logs: dict = {"a": [], "b": []}
        committed: dict = {}
        pos: dict = {}
        b = B()
        nxt = 0
        for _ in range(rng.randint(5, 80)):
            p = rng.randrange(4)
            k = rng.choice("ab")
            r = rng.random()
            if r < 0.45:
                nxt += 1
                o = (logs[k][-1][0] if logs[k] else -1) + rng.choice([1, 1, 2])
                if rng.random() < 0.1:
                    b.send(p, k, nxt, o, typ="fail")
                    continue
                logs[k].append((o, nxt))
                b.send(p, k, nxt, o, typ=rng.choice(["ok"] * 9 + ["info"]))
            elif r < 0.85:
                start = pos.get((p, k), 0)
                got = [[o, m] for o, m in logs[k] if o >= start][: rng.randint(0, 3)]
                b.poll(p, {k: got} if got else {})
                if got:
                    pos[(p, k)] = got[-1][0] + 1
                    committed[k] = max(committed.get(k, -1), got[-1][0])
                    b.commit(p, {k: got[-1][0]})
            else:
                b.listc(p, [k], {k: committed[k]} if k in committed else {})
                pos[(p, k)] = committed.get(k, 0)
        v = check_kafka(b.h())
        assert v.valid is not False, str(v)
