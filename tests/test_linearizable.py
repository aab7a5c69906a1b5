"""The linearizability checker: known histories per model, Jepsen's info/fail meaning,
properties over generated histories, timeouts, and workloads against real node code."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import labkit
from labkit.checkers import (KV, MODELS, NIL, ModelBase, UnknownVerdict, Violation, check_linearizable,
                             synthetic_history)
from labkit.history import History, HistoryError, Op
from labkit.recorder import workload

try:
    from .kvnodes import AsyncReplicaKV, KVStore
except ImportError:
    from kvnodes import AsyncReplicaKV, KVStore


def H(*rows) -> History:
    """Rows ``(process, type, f, value[, key])`` in real-time order."""
    return History(Op(r[0], r[1], r[2], r[3] if len(r) > 3 else None, r[4] if len(r) > 4 else None)
                   for r in rows)


def valid(h, model, **kw):
    return check_linearizable(h, model, **kw).valid


# -- known histories ----------------------------------------------------------------------

REGISTER_CASES = [
    # (name, rows, linearizable)
    ("sequential", [(0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "read"), (1, "ok", "read", 1)], True),
    ("empty register reads nil", [(0, "invoke", "read"), (0, "ok", "read", None)], True),
    ("read concurrent with write sees new", [(0, "invoke", "write", 1), (1, "invoke", "read"),
                                             (1, "ok", "read", 1), (0, "ok", "write", 1)], True),
    ("read concurrent with write sees old", [(0, "invoke", "write", 1), (1, "invoke", "read"),
                                             (1, "ok", "read", None), (0, "ok", "write", 1)], True),
    ("stale read after write completed", [(0, "invoke", "write", 1), (0, "ok", "write", 1),
                                          (0, "invoke", "write", 2), (0, "ok", "write", 2),
                                          (1, "invoke", "read"), (1, "ok", "read", 1)], False),
    ("value never written", [(0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "read"),
                             (1, "ok", "read", 3)], False),
    # Knossos's classic: two readers see the two concurrent writes in opposite orders.
    ("readers disagree on order", [(0, "invoke", "write", 1), (1, "invoke", "write", 2),
                                   (0, "ok", "write", 1), (1, "ok", "write", 2),
                                   (2, "invoke", "read"), (2, "ok", "read", 1),
                                   (3, "invoke", "read"), (3, "ok", "read", 2),
                                   (2, "invoke", "read"), (2, "ok", "read", 1)], False),
    ("new-old inversion", [(0, "invoke", "write", 1), (1, "invoke", "read"), (1, "ok", "read", 1),
                           (2, "invoke", "read"), (2, "ok", "read", None), (0, "ok", "write", 1)], False),
]


@pytest.mark.parametrize("name, rows, want", REGISTER_CASES, ids=[c[0] for c in REGISTER_CASES])
@pytest.mark.parametrize("model", ["register", "cas-register", "kv"])
def test_register_histories(name, rows, want, model):
    assert valid(H(*rows), model) is want


@pytest.mark.parametrize("rows, want", [
    ([(0, "invoke", "write", 0), (0, "ok", "write", 0), (1, "invoke", "cas", (0, 1)), (1, "ok", "cas", (0, 1)),
      (2, "invoke", "cas", (0, 2)), (2, "ok", "cas", (0, 2))], False),      # both cas from 0 succeeded
    ([(0, "invoke", "write", 0), (0, "ok", "write", 0), (1, "invoke", "cas", (0, 1)), (2, "invoke", "cas", (0, 2)),
      (1, "ok", "cas", (0, 1)), (2, "fail", "cas", (0, 2)), (3, "invoke", "read"), (3, "ok", "read", 1)], True),
    ([(0, "invoke", "write", 0), (0, "ok", "write", 0), (1, "invoke", "cas", (0, 1)), (2, "invoke", "cas", (1, 2)),
      (1, "ok", "cas", (0, 1)), (2, "ok", "cas", (1, 2)), (3, "invoke", "read"), (3, "ok", "read", 2)], True),
    ([(1, "invoke", "cas", (None, 1)), (1, "ok", "cas", (None, 1))], True),  # cas from the empty register
])
def test_cas_register_histories(rows, want):
    assert valid(H(*rows), "cas-register") is want


def test_kv_empty_key_and_appends():
    assert valid(H((0, "invoke", "read", None, "k"), (0, "ok", "read", "", "k")), "kv") is True
    assert valid(H((0, "invoke", "read", None, "k"), (0, "ok", "read", [], "k")), "kv") is True
    ok = [(0, "invoke", "append", 1, "k"), (0, "ok", "append", 1, "k"), (0, "invoke", "append", 2, "k"),
          (0, "ok", "append", 2, "k")]
    assert valid(H(*ok, (1, "invoke", "get", None, "k"), (1, "ok", "get", [1, 2], "k")), "kv") is True
    assert valid(H(*ok, (1, "invoke", "get", None, "k"), (1, "ok", "get", [2, 1], "k")), "kv") is False
    strings = [(0, "invoke", "append", "ab", 1), (0, "ok", "append", "ab", 1), (0, "invoke", "append", "c", 1),
               (0, "ok", "append", "c", 1), (1, "invoke", "read", None, 1)]
    assert valid(H(*strings, (1, "ok", "read", "abc", 1)), "kv") is True
    assert valid(H(*strings, (1, "ok", "read", "cab", 1)), "kv") is False


def test_counter_set_queue_mutex_histories():
    add = [(0, "invoke", "add", 1), (0, "ok", "add", 1), (1, "invoke", "add", 2), (1, "ok", "add", 2)]
    assert valid(H(*add, (2, "invoke", "read"), (2, "ok", "read", 3)), "counter") is True
    assert valid(H(*add, (2, "invoke", "read"), (2, "ok", "read", 4)), "counter") is False
    s = [(0, "invoke", "add", "a"), (0, "ok", "add", "a"), (1, "invoke", "add", "b"), (2, "invoke", "read"),
         (2, "ok", "read", ["a"]), (1, "ok", "add", "b")]
    assert valid(H(*s, (2, "invoke", "read"), (2, "ok", "read", ["b", "a"])), "set") is True
    assert valid(H(*s, (2, "invoke", "read"), (2, "ok", "read", ["a"])), "set") is False   # b lost
    # FIFO: sequential enqueues must dequeue in order; concurrent ones in either order.
    seq = [(0, "invoke", "enqueue", 1), (0, "ok", "enqueue", 1), (0, "invoke", "enqueue", 2), (0, "ok", "enqueue", 2)]
    assert valid(H(*seq, (1, "invoke", "dequeue"), (1, "ok", "dequeue", 1)), "fifo-queue") is True
    assert valid(H(*seq, (1, "invoke", "dequeue"), (1, "ok", "dequeue", 2)), "fifo-queue") is False
    conc = [(0, "invoke", "enqueue", 1), (2, "invoke", "enqueue", 2), (0, "ok", "enqueue", 1), (2, "ok", "enqueue", 2)]
    assert valid(H(*conc, (1, "invoke", "dequeue"), (1, "ok", "dequeue", 2)), "fifo-queue") is True
    assert valid(H((1, "invoke", "dequeue"), (1, "ok", "dequeue", None)), "fifo-queue") is True  # saw it empty
    # Mutex: a double grant.
    grant = [(0, "invoke", "acquire"), (0, "ok", "acquire"), (1, "invoke", "acquire"), (1, "ok", "acquire")]
    assert valid(H(*grant), "mutex") is False
    assert valid(H(*grant[:2], (0, "invoke", "release"), (0, "ok", "release"), *grant[2:]), "mutex") is True
    assert valid(H(*grant[:2], (0, "invoke", "release"), *grant[2:], (0, "ok", "release")), "mutex") is True


# -- Jepsen's info and fail ---------------------------------------------------------------

W1 = [(0, "invoke", "write", 1), (0, "ok", "write", 1)]


@pytest.mark.parametrize("outcome, seen, want", [
    ("info", 2, True),      # an info write may have happened...
    ("info", 1, True),      # ...or not
    (None, 2, True),        # an unanswered invocation is an info
    (None, 1, True),
    ("fail", 2, False),     # a failed write never happened
    ("fail", 1, True),
])
def test_info_and_fail_writes(outcome, seen, want):
    rows = [*W1, (1, "invoke", "write", 2)] + ([(1, outcome, "write", 2)] if outcome else [])
    rows += [(2, "invoke", "read"), (2, "ok", "read", seen)]
    assert valid(H(*rows), "register") is want


def test_info_write_takes_effect_only_after_its_invocation():
    rows = [*W1, (2, "invoke", "read"), (2, "ok", "read", 2), (1, "invoke", "write", 2), (1, "info", "write", 2)]
    assert valid(H(*rows), "register") is False


def test_info_write_may_take_effect_long_after_the_client_gave_up():
    rows = [(1, "invoke", "write", 2), (1, "info", "write", 2), *W1, (2, "invoke", "read"), (2, "ok", "read", 1),
            (2, "invoke", "read"), (2, "ok", "read", 2)]
    assert valid(H(*rows), "register") is True


def test_info_reads_and_info_dequeues():
    assert valid(H(*W1, (1, "invoke", "read"), (1, "info", "read", None)), "register") is True
    q = [(0, "invoke", "enqueue", 1), (0, "ok", "enqueue", 1), (0, "invoke", "enqueue", 2), (0, "ok", "enqueue", 2),
         (1, "invoke", "dequeue"), (1, "info", "dequeue")]
    assert valid(H(*q, (2, "invoke", "dequeue"), (2, "ok", "dequeue", 2)), "fifo-queue") is True   # 1 taken
    assert valid(H(*q, (2, "invoke", "dequeue"), (2, "ok", "dequeue", 1)), "fifo-queue") is True   # or not


# -- explanations, keys, models -----------------------------------------------------------

def test_violation_names_the_op_the_states_and_the_concurrent_ops():
    rows = [*W1, (1, "invoke", "write", 2), (3, "invoke", "write", 3), (1, "ok", "write", 2),
            (2, "invoke", "read"), (3, "ok", "write", 3), (2, "ok", "read", 1)]
    v = check_linearizable(H(*rows), "register")
    assert v.valid is False and not v.passed and v.failed
    (x,) = v.explanations
    assert isinstance(x, Violation)
    assert (x.op.f, x.op.value, x.op.process) == ("read", 1, 2)
    assert set(x.states) == {2, 3}
    assert {(p.f, p.value) for p in x.concurrent} == {("write", 3)}
    assert [p.f for p in x.window] == ["write", "read"]
    text = str(v)
    assert "read 1" in text and "cannot be placed" in text and "2, 3" in text
    assert "cannot be linearized" in v.summary and "linearizable(register): FAIL" in text
    assert "FAIL" in v._repr_html_()


def test_keys_are_checked_independently():
    rows = [(0, "invoke", "write", 1, "a"), (0, "ok", "write", 1, "a"), (1, "invoke", "write", 2, "b"),
            (1, "ok", "write", 2, "b"), (2, "invoke", "read", None, "a"), (2, "ok", "read", 1, "a")]
    v = check_linearizable(H(*rows), "register")
    assert v.valid is True and v.details["keys"] == 2
    unkeyed = History(Op(o.process, o.type, o.f, o.value, None) for o in H(*rows))
    assert valid(unkeyed, "register") is False          # as one register it would be stale
    bad = check_linearizable(H(*rows[:4], (2, "invoke", "read", None, "b"), (2, "ok", "read", 1, "b")), "register")
    assert bad.valid is False and bad.details["failed_keys"] == ["b"] and bad.explanations[0].key == "b"


def test_custom_model_and_unknown_operations():
    class Toggle(ModelBase):
        name = "toggle"
        fs = frozenset({"flip", "read"})
        reads = frozenset({"read"})

        def init(self):
            return False

        def step(self, state, f, value):
            return (not state) if f == "flip" else (state if value == state else None)

    rows = [(0, "invoke", "flip"), (0, "ok", "flip"), (1, "invoke", "read"), (1, "ok", "read", True)]
    assert check_linearizable(H(*rows), Toggle()).valid is True
    assert check_linearizable(H(*rows[:2], (1, "invoke", "read"), (1, "ok", "read", False)), Toggle()).valid is False
    with pytest.raises(ValueError, match="no operation"):
        check_linearizable(H(*rows), "mutex")
    with pytest.raises(ValueError, match="unknown model"):
        check_linearizable(H(*rows), "raft")
    with pytest.raises(HistoryError):
        check_linearizable(H((0, "ok", "read", 1)), "register")
    assert repr(NIL) == "nil" and KV().step(NIL, "read", "") is NIL


# -- timeouts -----------------------------------------------------------------------------

def pathological(n: int = 14) -> History:
    """n concurrent writes, then reads of 0, 1 and 0 again (0 was written once): no order
    works, and the search must try every subset of the writes to find out."""
    rows = [(p, "invoke", "write", p) for p in range(n)] + [(p, "ok", "write", p) for p in range(n)]
    for v in (0, 1, 0):
        rows += [(n, "invoke", "read"), (n, "ok", "read", v)]
    return H(*rows)


def never_written(n: int) -> History:
    """n concurrent writes, then a read of a value none wrote."""
    rows = [(p, "invoke", "write", p) for p in range(n)] + [(p, "ok", "write", p) for p in range(n)]
    return H(*rows, (n, "invoke", "read"), (n, "ok", "read", -1))


@pytest.mark.parametrize("memo", [True, False])
def test_timeout_gives_unknown_never_a_pass(memo):
    v = check_linearizable(pathological(), "register", timeout=0.001, memo=memo)
    assert v.valid is None and v.unknown and not v.passed
    assert "timed out" in v.summary and v.details["unchecked_keys"] == [None]
    with pytest.raises(UnknownVerdict):
        bool(v)
    with pytest.raises(UnknownVerdict):
        assert v


def test_a_small_pathological_history_is_decided():
    v = check_linearizable(never_written(6), "register", timeout=None, algorithm="reference")
    assert v.valid is False and v.explanations[0].n_states == 6
    v = check_linearizable(pathological(6), "register", timeout=None)
    assert v.valid is False and v.explanations[0].op.value == 1     # after reading 0, 1 is gone


def test_a_read_no_write_could_satisfy_fails_without_a_search():
    v = check_linearizable(never_written(30), "register", timeout=5)
    assert v.valid is False and v.details["configs"] == 0
    x = v.explanations[0]
    assert x.op.value == -1 and x.n_states == 0 and "No state it could read" in str(x)


def test_a_surely_overwritten_read_is_named_even_when_the_search_is_hopeless():
    """40 concurrent info writes, then write 0 and write 1 in turn, then reads of 1 and 0: the
    read of 0 is stale whatever the order. The checker names it at once, after a bounded try
    at a fuller explanation."""
    n = 40
    rows = [(p, "invoke", "write", p + 2) for p in range(n)] + [(p, "info", "write", p + 2) for p in range(n)]
    rows += [(n, "invoke", "write", 0), (n, "ok", "write", 0), (n, "invoke", "write", 1), (n, "ok", "write", 1)]
    rows += [(n + 1, "invoke", "read"), (n + 1, "ok", "read", 1), (n + 1, "invoke", "read"), (n + 1, "ok", "read", 0)]
    v = check_linearizable(H(*rows), "register", timeout=60)
    assert v.valid is False and v.explanations[0].op.value == 0


def test_a_violation_on_one_key_wins_over_a_timeout_on_another():
    slow = [Op(o.process, o.type, o.f, o.value, "slow") for o in pathological(18)]
    bad = [Op(100, "invoke", "write", 1, "bad"), Op(100, "ok", "write", 1, "bad"),
           Op(101, "invoke", "read", None, "bad"), Op(101, "ok", "read", 2, "bad")]
    v = check_linearizable(History(bad + slow), "register", timeout=0.05)
    assert v.valid is False and v.details["failed_keys"] == ["bad"]


# -- properties ---------------------------------------------------------------------------

KEYED = {"register", "cas-register", "kv"}
FLIPPABLE = {"register": 99, "cas-register": 99, "kv": 99, "counter": -1, "set": ("never-added",)}

histories = st.builds(
    lambda model, ops, clients, seed, info, fail: (model, synthetic_history(
        model, ops=ops, clients=clients, keys=2 if model in KEYED else None, seed=seed,
        info=info if model not in ("set", "fifo-queue") else 0.0, fail=fail)),
    st.sampled_from(sorted(MODELS)), st.integers(1, 40), st.integers(1, 6), st.integers(0, 10**6),
    st.sampled_from([0.0, 0.1, 0.2]), st.sampled_from([0.0, 0.1]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_generated_histories_are_linearizable(mh):
    model, h = mh
    assert check_linearizable(h, model, timeout=20).valid is True


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(FLIPPABLE)), st.integers(2, 40), st.integers(1, 5), st.integers(0, 10**6),
       st.sampled_from([0.0, 0.1]), st.data())
def test_a_read_of_an_impossible_value_is_caught(model, ops, clients, seed, info, data):
    h = synthetic_history(model, ops=ops, clients=clients, keys=2 if model in KEYED else None, seed=seed, info=info)
    reads = [o for o in h if o.type == "ok" and o.f == "read"]
    assume(reads)
    target = data.draw(st.sampled_from(reads))
    flipped = History(Op(o.process, o.type, o.f, FLIPPABLE[model], o.key, o.time, o.index) if o is target else o
                      for o in h)
    v = check_linearizable(flipped, model, timeout=20)
    assert v.valid is False
    assert v.explanations[0].op.completion.index == target.index


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 25), st.integers(1, 4), st.integers(0, 10**6), st.sampled_from(["info", "fail"]),
       st.booleans())
def test_info_may_be_visible_fail_never(ops, clients, seed, outcome, visible):
    """Append to a correct history a write of a fresh value that ends info or fail, then a read
    that does or does not see it: visible is fine only for info; invisible is always fine."""
    h = synthetic_history("register", ops=ops, clients=clients, seed=seed)
    after = max(o.process for o in h) + 1
    last = [p for p in h.pairs() if p.f == "write" and p.type == "ok"]
    before = check_linearizable(h, "register")
    assert before.valid is True
    rows = list(h) + [Op(after, "invoke", "write", 777), Op(after, outcome, "write", 777),
                      Op(after + 1, "invoke", "read")]
    # The invisible read returns what some final state allows: try each state the model may end in.
    if visible:
        want = outcome == "info"
        assert valid(History(rows + [Op(after + 1, "ok", "read", 777)]), "register") is want
    else:
        candidates = {p.value for p in last} | {None}
        results = [valid(History(rows + [Op(after + 1, "ok", "read", c)]), "register") for c in candidates]
        assert any(results)                 # the value before the info/fail write is still readable


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["register", "cas-register", "mutex", "counter"]), st.integers(1, 14),
       st.integers(1, 4), st.integers(0, 10**6), st.booleans())
def test_memo_does_not_change_the_answer(model, ops, clients, seed, flip):
    h = synthetic_history(model, ops=ops, clients=clients, seed=seed, info=0.1)
    if flip:
        reads = [o for o in h if o.type == "ok" and o.f == "read"]
        if reads:
            h = History(Op(o.process, o.type, o.f, -5, o.key, o.time) if o is reads[-1] else o for o in h)
    assert check_linearizable(h, model, memo=True).valid == check_linearizable(h, model, memo=False).valid


# -- workloads against node code in the simulator -----------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_correct_single_node_kv_is_linearizable(seed):
    with labkit.Cluster(KVStore, n=1, runtime="sim", seed=seed) as c:
        h = workload(c, clients=5, rate=300, duration=2.0, keys=3, timeout_ms=200)
    v = check_linearizable(h, "kv")
    assert len(h.pairs()) > 400 and v.valid is True, str(v)


def test_async_replicas_under_a_partition_are_not_linearizable():
    with labkit.Cluster(AsyncReplicaKV, n=3, runtime="sim", seed=4) as c:
        c.call_at(300, c.partition, ["n1"], ["n2", "n3"])
        c.call_at(1300, c.heal)
        h = workload(c, clients=6, rate=200, duration=1.6, keys=2, timeout_ms=200)
    v = check_linearizable(h, "kv")
    assert v.valid is False
    x = v.explanations[0]
    assert x.op.f == "read" and 300 <= x.op.start <= 1300       # the stale read is in the partition
    assert x.op.value not in x.states                           # it saw none of the possible states
    assert "cannot be placed" in str(x)


def test_timeline_highlights_the_operation_a_violation_could_not_place():
    import matplotlib
    matplotlib.use("Agg")
    from labkit import plots
    from labkit.history import History, Op
    h = History([Op(0, "invoke", "write", 1, time=0), Op(0, "ok", "write", 1, time=1),
                 Op(1, "invoke", "read", None, time=2), Op(1, "ok", "read", 2, time=3)])
    v = labkit.check_linearizable(h, "register")
    assert v.valid is False
    fig = plots.timeline(h, highlight=v)
    from matplotlib.text import Text
    assert "highlighted" in [t.get_text() for t in fig.findobj(Text)]
    assert "highlighted" not in [t.get_text() for t in plots.timeline(h).findobj(Text)]


# -- contended histories, budgets, the reference search -----------------------------------

from labkit.checkers.synthetic import contended_kv_history  # noqa: E402


@pytest.mark.parametrize("style", ["porcupine", "list-append"])
@pytest.mark.parametrize("clients", [1, 10])
def test_contended_kv_histories_are_decided(style, clients):
    good = contended_kv_history(clients=clients, ops=400, keys=4, style=style, seed=3)
    assert check_linearizable(good, "kv", timeout=60).valid is True
    bad = contended_kv_history(clients=clients, ops=400, keys=4, style=style, seed=3, violation=True)
    v = check_linearizable(bad, "kv", timeout=60)
    assert v.valid is False
    x = v.explanations[0]
    assert x.op.f == "get" and x.op.value not in x.states and "cannot be placed" in str(x)
    changed = [(a, b) for a, b in zip(good, bad) if a != b]
    assert len(changed) == 1 and changed[0][1].index == x.op.completion.index   # the stale get is named


def test_contended_generator_is_deterministic_and_checks_its_arguments():
    assert contended_kv_history(ops=50, seed=5) == contended_kv_history(ops=50, seed=5)
    with pytest.raises(ValueError, match="style"):
        contended_kv_history(style="queue")


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 24), st.integers(1, 6), st.integers(0, 10**6), st.sampled_from(["porcupine", "list-append"]),
       st.booleans())
def test_the_search_agrees_with_the_reference_search(ops, clients, seed, style, flip):
    """The read reduction and compact keys never change a verdict (the reference: the search
    as it was, with and without Lowe's cache)."""
    h = contended_kv_history(ops=ops, clients=clients, keys=1, style=style, seed=seed, slow=0.3,
                             slow_latency=(10.0, 40.0))
    if flip:
        gets = [o for o in h if o.type == "ok" and o.f == "get"]
        if gets:
            g = gets[seed % len(gets)]
            h = History(Op(o.process, o.type, o.f, o.value[:-1] if o.value else ("x",), o.key, o.time)
                        if o is g else o for o in h)
    want = check_linearizable(h, "kv", algorithm="reference", memo=False, timeout=None).valid
    assert check_linearizable(h, "kv", algorithm="reference", timeout=None).valid is want
    assert check_linearizable(h, "kv", timeout=None).valid is want


def test_a_memory_budget_answers_unknown_never_memoryerror():
    v = check_linearizable(pathological(16), "register", timeout=60, memory=4096)
    assert v.valid is None and "memory budget of 4 kB reached after" in v.summary
    assert v.details["unchecked_keys"] == [None] and v.details["memory_budget"] == 4096
    v = check_linearizable(pathological(16), "register", timeout=60, memory="4k", algorithm="reference")
    assert v.valid is None and "memory budget" in v.summary
    with pytest.raises(ValueError, match="memory"):
        check_linearizable(pathological(3), "register", memory="lots")


def test_progress_calls_back_for_long_checks(monkeypatch):
    import labkit._progress
    import labkit.checkers.linearizable as lin
    monkeypatch.setattr(lin, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(labkit._progress, "MIN_INTERVAL_S", 0.0)
    seen = []
    v = check_linearizable(pathological(12), "register", timeout=60, progress=seen.append)
    assert v.valid is False and len(seen) >= 2
    assert all(d["label"] == "linearizability" and d["keys"] == 1 and d["unit"] == "keys" for d in seen)
    assert seen[0]["keys_done"] == 0 and seen[0]["key"] is None and seen[0]["configs"] > 0
    assert seen[-1]["keys_done"] == 1 and seen[-1]["configs"] == v.details["configs"]   # the final update
    assert [d["configs"] for d in seen] == sorted(d["configs"] for d in seen)
    monkeypatch.setenv("CI", "1")
    assert lin._progress_bar(None, 3) is None and lin._progress_bar(True, 3) is not None


@pytest.mark.parametrize("clients, seed", [(5, 1), (10, 2), (15, 2)])
def test_etcd_style_register_histories_and_their_stale_read(clients, seed):
    from labkit.checkers.synthetic import etcd_register_history
    good = etcd_register_history(clients=clients, seed=seed)
    assert check_linearizable(good, "cas-register", timeout=60).valid is True
    bad = etcd_register_history(clients=clients, seed=seed, violation=True)
    (changed,) = [b for a, b in zip(good, bad) if a != b]
    v = check_linearizable(bad, "cas-register", timeout=60)
    assert v.valid is False and v.explanations[0].op.completion.index == changed.index
    assert check_linearizable(bad, "cas-register", timeout=60, algorithm="reference").valid is False
