"""The causal-consistency checker: passes causal histories, fails and explains violating ones."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from labkit.checkers import CausalViolation, check_causal, check_linearizable
from labkit.history import History, Op


def seq(*steps) -> History:
    """Sequential steps ``(process, f, key, value)``: each op completes before the next begins."""
    ops, t = [], 0.0
    for p, f, k, v in steps:
        ops.append(Op(p, "invoke", f, v if f == "write" else None, k, t))
        ops.append(Op(p, "ok", f, v, k, t + 1))
        t += 2
    return History(ops)


def test_a_sequential_history_is_causal_and_linearizable():
    h = seq((0, "write", "x", 1), (1, "read", "x", 1), (1, "write", "y", 2), (0, "read", "y", 2),
            (0, "read", "x", 1))
    v = check_causal(h)
    assert v.valid is True and v.details["violations"] == 0, v
    assert check_linearizable(h, model="kv").valid is True


def test_concurrent_writes_may_be_seen_in_either_order():
    # two sessions write x concurrently; observers disagree on the order: causal, not linearizable
    h = seq((0, "write", "x", "a"), (1, "write", "x", "b"),
            (2, "read", "x", "a"), (2, "read", "x", "b"),
            (3, "read", "x", "b"), (3, "read", "x", "a"))
    assert check_causal(h).valid is True
    assert check_linearizable(h, model="kv").valid is False


def test_read_your_writes_violation_is_named():
    h = seq((0, "write", "x", 1), (0, "read", "x", None))
    v = check_causal(h)
    assert v.valid is False
    e = v.explanations[0]
    assert isinstance(e, CausalViolation) and e.guarantee == "read-your-writes"
    assert e.missed.value == 1 and e.returned is None and e.op.f == "read"
    assert "read-your-writes violated on key 'x'" in str(v)


def test_monotonic_reads_violation():
    h = seq((0, "write", "x", 1), (0, "write", "x", 2),
            (1, "read", "x", 2), (1, "read", "x", 1))
    v = check_causal(h)
    assert v.valid is False and v.explanations[0].guarantee == "monotonic reads"
    assert v.explanations[0].missed.value == 2 and v.explanations[0].returned.value == 1


def test_effect_before_cause():
    # p0 writes a question then an answer; p1 sees the answer, then reads no question
    h = seq((0, "write", "q", "question"), (0, "write", "a", "answer"),
            (1, "read", "a", "answer"), (1, "read", "q", None))
    v = check_causal(h)
    assert v.valid is False
    e = v.explanations[0]
    assert e.guarantee == "writes-follow-reads"
    assert [how for _, how in e.chain] == ["", "session", "reads-from", "session"]
    assert [p.value for p, _ in e.chain] == ["question", "answer", "answer", None]
    assert v.details["by_guarantee"] == {"writes-follow-reads": 1}


def test_overwritten_value_in_causal_past_even_across_keys():
    # x=1 then (p0) y=1; p1 reads y=1 then writes x=2; p2 reads x=2 then x=1: stale
    h = seq((0, "write", "x", 1), (1, "read", "x", 1), (1, "write", "x", 2),
            (2, "read", "x", 2), (2, "read", "x", 1))
    assert check_causal(h).valid is False


def test_phantom_and_failed_writes_are_caught():
    h = seq((0, "read", "x", 42))
    v = check_causal(h)
    assert v.valid is False and v.explanations[0].guarantee == "phantom"
    h2 = History([Op(0, "invoke", "write", 7, "x", 0.0), Op(0, "fail", "write", 7, "x", 1.0),
                  Op(1, "invoke", "read", None, "x", 2.0), Op(1, "ok", "read", 7, "x", 3.0)])
    v2 = check_causal(h2)
    assert v2.valid is False and "failed write" in str(v2)


def test_info_writes_may_be_read():
    h = History([Op(0, "invoke", "write", 7, "x", 0.0), Op(0, "info", "write", 7, "x", 1.0, error="timeout"),
                 Op(1, "invoke", "read", None, "x", 2.0), Op(1, "ok", "read", 7, "x", 3.0),
                 Op(1, "invoke", "read", None, "x", 4.0), Op(1, "ok", "read", None, "x", 5.0)])
    v = check_causal(h)
    assert v.valid is False and v.explanations[0].guarantee == "monotonic reads"


def test_an_info_write_orders_nothing_after_it_in_its_session():
    # the session goes on after a timed-out write (a history whose process was not retired):
    # the write may never have happened, so reading the initial value is no violation ...
    timed_out = [Op(0, "invoke", "write", 7, "x", 0.0), Op(0, "info", "write", 7, "x", 1.0, error="timeout"),
                 Op(0, "invoke", "read", None, "x", 2.0), Op(0, "ok", "read", None, "x", 3.0)]
    assert check_causal(History(timed_out)).valid is True
    # ... nor is reading an older value of the session's own
    older = [Op(0, "invoke", "write", 1, "x", -2.0), Op(0, "ok", "write", 1, "x", -1.0), *timed_out[:2],
             Op(0, "invoke", "read", None, "x", 2.0), Op(0, "ok", "read", 1, "x", 3.0)]
    assert check_causal(History(older)).valid is True
    # but once the session has read it, it is in the causal past like any other write
    seen = older[:4] + [Op(0, "invoke", "read", None, "x", 2.0), Op(0, "ok", "read", 7, "x", 3.0),
                        Op(0, "invoke", "read", None, "x", 4.0), Op(0, "ok", "read", 1, "x", 5.0)]
    v = check_causal(History(seen))
    assert v.valid is False and v.explanations[0].missed.value == 7
    # and the ops before it still come before it: x=1, then (info) y=2; p1 reads y=2, then x=None
    before = [Op(0, "invoke", "write", 1, "x", 0.0), Op(0, "ok", "write", 1, "x", 1.0),
              Op(0, "invoke", "write", 2, "y", 2.0), Op(0, "info", "write", 2, "y", 3.0),
              Op(1, "invoke", "read", None, "y", 4.0), Op(1, "ok", "read", 2, "y", 5.0),
              Op(1, "invoke", "read", None, "x", 6.0), Op(1, "ok", "read", None, "x", 7.0)]
    v = check_causal(History(before))
    assert v.valid is False and v.explanations[0].guarantee == "writes-follow-reads"


def test_tricky_histories_that_are_causal():
    # concurrent writes to one key: a reader may even go back and forth between them (CC allows
    # it; a store that converges would not, but that is more than causal consistency asks)
    assert check_causal(seq((0, "write", "x", "a"), (1, "write", "x", "b"), (2, "read", "x", "a"),
                            (2, "read", "x", "b"), (2, "read", "x", "a"))).valid is True
    # your own write overwritten by a concurrent one is not a read-your-writes violation
    assert check_causal(seq((0, "write", "x", "a"), (1, "write", "x", "b"), (0, "read", "x", "b"))).valid is True
    # a read of the initial value concurrent with the first write (invoked before it completed)
    h = History([Op(0, "invoke", "write", 7, "x", 0.0), Op(1, "invoke", "read", None, "x", 0.5),
                 Op(1, "ok", "read", None, "x", 1.5), Op(0, "ok", "write", 7, "x", 2.0)])
    assert check_causal(h).valid is True
    # a failed write in the session is not the session's write
    h = History([Op(0, "invoke", "write", 7, "x", 0.0), Op(0, "fail", "write", 7, "x", 1.0),
                 Op(0, "invoke", "read", None, "x", 2.0), Op(0, "ok", "read", None, "x", 3.0)])
    assert check_causal(h).valid is True
    # a write still open when the history ends may have happened, so it may be read
    h = History([Op(0, "invoke", "write", 7, "x", 0.0), Op(1, "invoke", "read", None, "x", 1.0),
                 Op(1, "ok", "read", 7, "x", 2.0)])
    assert check_causal(h).valid is True


def test_a_session_spanning_keys_carries_its_past_along():
    # p0 writes x then y; p1 reads y, then x (fine); p2 reads y, writes z; p3 reads z, then x=None
    ok = seq((0, "write", "x", 1), (0, "write", "y", 2), (1, "read", "y", 2), (1, "read", "x", 1))
    assert check_causal(ok).valid is True
    bad = seq((0, "write", "x", 1), (0, "write", "y", 2), (2, "read", "y", 2), (2, "write", "z", 3),
              (3, "read", "z", 3), (3, "read", "x", None))
    v = check_causal(bad)
    assert v.valid is False and v.explanations[0].guarantee == "writes-follow-reads"
    assert [p.value for p, _ in v.explanations[0].chain] == [1, 2, 2, 3, 3, None]


def test_a_causal_cycle_is_reported():
    # p0 reads y=1 then writes x=1; p1 reads x=1 then writes y=1: each read saw the other's future
    h = History([Op(0, "invoke", "read", None, "y", 0.0), Op(1, "invoke", "read", None, "x", 0.5),
                 Op(0, "ok", "read", 1, "y", 1.0), Op(1, "ok", "read", 1, "x", 1.5),
                 Op(0, "invoke", "write", 1, "x", 2.0), Op(1, "invoke", "write", 1, "y", 2.5),
                 Op(0, "ok", "write", 1, "x", 3.0), Op(1, "ok", "write", 1, "y", 3.5)])
    v = check_causal(h)
    assert v.valid is False and v.explanations[0].guarantee == "cycle"


def test_duplicate_write_values_make_it_unknown():
    h = seq((0, "write", "x", 1), (1, "write", "x", 1), (2, "read", "x", 1))
    v = check_causal(h)
    assert v.unknown and "unique" in v.summary
    assert check_causal(seq((0, "write", "x", 1))).unknown        # no reads


def _causal_store_run(rng: random.Random, causal: bool = True, steps: int = 60) -> History:
    """A model of replicas with sticky sessions: writes apply locally and spread one message
    at a time, in causal order (vector clocks) or, with ``causal=False``, in any order."""
    replicas = 3
    state = [dict() for _ in range(replicas)]            # key -> (lamport, origin, value)
    vc = [[0] * replicas for _ in range(replicas)]
    inbox: list[list[tuple]] = [[] for _ in range(replicas)]
    sessions = {p: p % replicas for p in range(5)}
    ops, t, n = [], 0.0, 0

    def apply(r, key, version):
        if key not in state[r] or state[r][key][:2] < version[:2]:
            state[r][key] = version

    for _ in range(steps):
        choice = rng.random()
        if choice < 0.45:
            p = rng.randrange(len(sessions))
            r, key = sessions[p], rng.choice("xyz")
            if rng.random() < 0.5:
                n += 1
                lam = 1 + max([v[0] for s in state for v in s.values()] + [0]) if rng.random() < 0.3 else \
                    1 + max([v[0] for v in state[r].values()] + [0])
                vc[r][r] += 1
                version = (lam, r, f"{p}.{n}")
                apply(r, key, version)
                for o in range(replicas):
                    if o != r:
                        inbox[o].append((r, list(vc[r]), key, version))
                ops += [Op(p, "invoke", "write", version[2], key, t), Op(p, "ok", "write", version[2], key, t + 1)]
            else:
                value = state[r][key][2] if key in state[r] else None
                ops += [Op(p, "invoke", "read", None, key, t), Op(p, "ok", "read", value, key, t + 1)]
            t += 2
        else:
            r = rng.randrange(replicas)
            ready = [m for m in inbox[r] if not causal or (
                m[1][m[0]] == vc[r][m[0]] + 1 and all(m[1][k] <= vc[r][k] for k in range(replicas) if k != m[0]))]
            if ready:
                # out of order: favour the newest message, as a reordering network might
                m = ready[-1] if not causal and rng.random() < 0.7 else rng.choice(ready)
                inbox[r].remove(m)
                vc[r][m[0]] = max(vc[r][m[0]], m[1][m[0]])
                apply(r, m[2], m[3])
    return History(ops)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9))
def test_histories_of_a_causal_store_pass(seed):
    v = check_causal(_causal_store_run(random.Random(seed)))
    assert v.valid is not False, v


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.data())
def test_forgetting_your_own_write_always_fails(seed, data):
    h = _causal_store_run(random.Random(seed))
    ops = list(h)
    # reads whose session wrote the same key earlier
    wrote = set()
    candidates = []
    for i, o in enumerate(ops):
        if o.type == "ok" and o.f == "write":
            wrote.add((o.process, o.key))
        if o.type == "ok" and o.f == "read" and (o.process, o.key) in wrote:
            candidates.append(i)
    if not candidates:
        return
    i = data.draw(st.sampled_from(candidates))
    o = ops[i]
    ops[i] = Op(o.process, o.type, o.f, None, o.key, o.time)
    v = check_causal(History(ops))
    assert v.valid is False
    assert any(e.op.invoke.index == i - 1 for e in v.explanations) or v.details["violations"] >= 1


def test_an_unordered_store_is_caught_on_some_runs():
    bad = sum(check_causal(_causal_store_run(random.Random(s), causal=False, steps=120)).valid is False
              for s in range(100))
    good = sum(check_causal(_causal_store_run(random.Random(s), causal=True, steps=200)).valid is False
               for s in range(100))
    assert good == 0 and bad >= 3, (good, bad)


def test_thousands_of_ops_check_fast():
    import time
    h = _causal_store_run(random.Random(1), steps=6000)
    t0 = time.perf_counter()
    v = check_causal(h)
    assert v.valid is True and time.perf_counter() - t0 < 5.0


def test_only_the_guarantees_asked_for():
    mono = seq((0, "write", "x", 1), (0, "write", "x", 2), (1, "read", "x", 2), (1, "read", "x", 1))
    assert check_causal(mono, guarantees=["read-your-writes"]).valid is True
    assert check_causal(mono, guarantees=["monotonic reads"]).valid is False
    # a read that misses both its own write and an earlier read is a read-your-writes violation
    both = seq((1, "write", "x", 0), (0, "read", "x", 0), (0, "write", "x", 1), (0, "read", "x", None))
    v = check_causal(both, guarantees=["read-your-writes"])
    assert v.valid is False and v.explanations[0].missed.value == 1
    with pytest.raises(ValueError):
        check_causal(mono, guarantees=["linearizable"])
