"""labkit.checkers.elle on hand-built histories: each anomaly FAILs the history that has it
and PASSes the nearest valid one; histories of an atomic executor always pass."""
from __future__ import annotations

import random

import pytest

from labkit.checkers.elle import (CONSISTENCY_MODELS, check_list_append, check_rw_register, check_txn,
                                  forbidden_anomalies)
from labkit.history import History, Op


def serial(*txns):
    """History of txns run one after another: each (type, mops) with reads filled in."""
    ops = []
    for p, (t, mops) in enumerate(txns):
        inv = [[m[0], m[1], None] if m[0] == "r" else list(m) for m in mops]
        ops.append(Op(p, "invoke", "txn", inv))
        ops.append(Op(p, t, "txn", mops if t == "ok" else inv))
    return History(ops)


def types(v):
    return set(v.details["anomaly_types"])


def A(k, v):
    return ["append", k, v]


def R(k, v):
    return ["r", k, v]


def W(k, v):
    return ["w", k, v]


# -- list append: one test per anomaly, failing and nearest-valid ------------------------------

def test_g0_write_cycle():
    bad = serial(("ok", [A("x", 1), A("y", 2)]), ("ok", [A("x", 2), A("y", 1)]),
                 ("ok", [R("x", [1, 2]), R("y", [1, 2])]))
    v = check_list_append(bad)
    assert v.valid is False and "G0" in types(v)
    g0 = v.details["anomalies"]["G0"][0]
    assert g0["cycle"] in ("T0 < ww T2 < ww T0", "T2 < ww T0 < ww T2")
    assert "read-uncommitted" in v.details["not"]
    good = serial(("ok", [A("x", 1), A("y", 2)]), ("ok", [A("x", 2), A("y", 1)]),
                  ("ok", [R("x", [1, 2]), R("y", [2, 1])]))
    assert check_list_append(good).valid is True


def test_g1a_aborted_read():
    bad = serial(("fail", [A("x", 1)]), ("ok", [R("x", [1])]))
    v = check_list_append(bad)
    assert v.valid is False and types(v) == {"G1a"}
    assert check_list_append(bad, "read-uncommitted").valid is True
    good = serial(("ok", [A("x", 1)]), ("ok", [R("x", [1])]))
    assert check_list_append(good).valid is True


def test_g1b_intermediate_read():
    bad = serial(("ok", [A("x", 1), A("x", 2)]), ("ok", [R("x", [1])]))
    v = check_list_append(bad, "read-committed")
    assert v.valid is False and "G1b" in types(v)
    good = serial(("ok", [A("x", 1), A("x", 2)]), ("ok", [R("x", [1, 2])]))
    assert check_list_append(good, "read-committed").valid is True


def test_g1c_circular_information_flow():
    bad = serial(("ok", [A("x", 1), R("y", [1])]), ("ok", [A("y", 1), R("x", [1])]))
    v = check_list_append(bad, "read-committed")
    assert v.valid is False and "G1c" in types(v)
    assert "wr" in v.details["anomalies"]["G1c"][0]["cycle"]
    good = serial(("ok", [A("x", 1), R("y", [1])]), ("ok", [A("y", 1), R("x", [])]))
    assert check_list_append(good, "read-committed").valid is True


def test_g_single_read_skew():
    bad = serial(("ok", [A("x", 1), A("y", 1)]), ("ok", [R("x", []), R("y", [1])]))
    v = check_list_append(bad)
    assert v.valid is False and types(v) == {"G-single"}
    cyc = v.details["anomalies"]["G-single"][0]["cycle"]
    assert cyc.count("rw") == 1 and cyc == "T2 < rw T0 < wr T2"
    assert check_list_append(bad, "read-committed").valid is True      # RC allows read skew
    assert check_list_append(bad, "snapshot-isolation").valid is False
    good = serial(("ok", [A("x", 1), A("y", 1)]), ("ok", [R("x", [1]), R("y", [1])]))
    assert check_list_append(good).valid is True


def test_g2_item_write_skew():
    bad = serial(("ok", [R("x", []), A("y", 1)]), ("ok", [R("y", []), A("x", 1)]),
                 ("ok", [R("x", [1]), R("y", [1])]))
    v = check_list_append(bad)
    assert v.valid is False and types(v) == {"G2-item"}
    assert v.details["anomalies"]["G2-item"][0]["cycle"].count("rw") == 2
    assert check_list_append(bad, "snapshot-isolation").valid is True  # SI allows write skew
    good = serial(("ok", [R("x", []), A("y", 1)]), ("ok", [R("y", [1]), A("x", 1)]),
                  ("ok", [R("x", [1]), R("y", [1])]))
    assert check_list_append(good).valid is True


def _rw_in_a_row(cycle: str) -> bool:
    labels = [part.split()[0] for part in cycle.split(" < ")[1:]]
    return any(x == y == "rw" for x, y in zip(labels, labels[1:] + labels[:1]))


@pytest.mark.parametrize("register", [False, True])
def test_g_nonadjacent_long_fork_is_forbidden_by_snapshot_isolation(register):
    """A long fork: T2 sees x's write and not y's, T3 sees y's and not x's. Its cycle has two
    rw edges that are never in a row -- G-nonadjacent, which snapshot isolation forbids
    (unlike write skew, G2-item). Before, it was reported as G2-item and passed under SI."""
    w, r, none = (W, R, None) if register else (A, R, None)
    seen = (lambda v: v) if register else (lambda v: [v])
    bad = serial(("ok", [w("x", 1)]), ("ok", [w("y", 1)]),
                 ("ok", [r("x", seen(1)), r("y", none)]), ("ok", [r("x", none), r("y", seen(1))]))
    check = check_rw_register if register else check_list_append
    for model in ("snapshot-isolation", "repeatable-read", "serializable", "strict-serializable"):
        v = check(bad, model)
        assert v.valid is False and "G-nonadjacent" in types(v), (model, v.details)
    (a,) = v.details["anomalies"]["G-nonadjacent"]
    assert a["cycle"].count("rw") == 2 and not _rw_in_a_row(a["cycle"]), a["cycle"]
    assert check(bad, "read-committed").valid is True                 # RC allows it
    good = serial(("ok", [w("x", 1)]), ("ok", [w("y", 1)]),
                  ("ok", [r("x", seen(1)), r("y", none)]), ("ok", [r("x", seen(1)), r("y", seen(1))]))
    assert check(good, "snapshot-isolation").valid is True and check(good).valid is True


def test_g_nonadjacent_is_found_beside_a_shorter_write_skew_in_the_same_component():
    """Every rw edge of a long fork is also on a write skew (rw, rw: in a row, allowed by SI),
    the shortest cycle through it with two rw edges. SI must still fail: the search for the
    long fork has to skip cycles with rw edges in a row, not just classify the shortest."""
    bad = serial(("ok", [A("x", 1), R("w", [])]),                     # T0: rw -> T6 (w)
                 ("ok", [A("y", 1), R("z", [])]),                     # T2: rw -> T4 (z)
                 ("ok", [R("x", [1]), R("y", []), A("z", 1)]),        # T4: rw -> T2 (y)
                 ("ok", [R("x", []), R("y", [1]), A("w", 1)]))        # T6: rw -> T0 (x)
    v = check_list_append(bad, "snapshot-isolation")
    assert v.valid is False and "G-nonadjacent" in types(v), v.details
    assert not _rw_in_a_row(v.details["anomalies"]["G-nonadjacent"][0]["cycle"])
    assert "G2-item" in types(check_list_append(bad, "serializable"))
    assert "G-nonadjacent" in forbidden_anomalies("snapshot-isolation")
    assert "G-nonadjacent" not in forbidden_anomalies("read-committed")


def test_internal_inconsistency():
    bad = serial(("ok", [A("x", 1), R("x", [])]))
    v = check_list_append(bad)
    assert v.valid is False and types(v) == {"internal"}
    assert check_list_append(serial(("ok", [A("x", 1), R("x", [1])]))).valid is True
    bad2 = serial(("ok", [A("x", 5)]), ("ok", [R("x", [5]), A("x", 6), R("x", [6])]))
    assert "internal" in types(check_list_append(bad2))


def test_duplicate_elements():
    bad = serial(("ok", [A("x", 1)]), ("ok", [R("x", [1, 1])]))
    v = check_list_append(bad, "read-uncommitted")
    assert v.valid is False and "duplicate-elements" in types(v)
    assert check_list_append(serial(("ok", [A("x", 1)]), ("ok", [R("x", [1])])), "read-uncommitted").valid


def test_incompatible_order():
    bad = serial(("ok", [A("x", 1)]), ("ok", [A("x", 2)]), ("ok", [R("x", [1, 2])]), ("ok", [R("x", [2])]))
    v = check_list_append(bad)
    assert v.valid is False and "incompatible-order" in types(v)
    good = serial(("ok", [A("x", 2)]), ("ok", [A("x", 1)]), ("ok", [R("x", [2, 1])]), ("ok", [R("x", [2])]))
    assert check_list_append(good).valid is True


def test_garbage_read():
    v = check_list_append(serial(("ok", [A("x", 1)]), ("ok", [R("x", [1, 9])])))
    assert v.valid is False and "garbage-read" in types(v)
    assert check_list_append(serial(("ok", [A("x", 1), A("x", 9)]), ("ok", [R("x", [1, 9])]))).valid is True


def test_realtime_only_with_strict_serializable():
    # T0 completes, then T1 starts and misses T0's append: serializable, not strict.
    bad = serial(("ok", [A("x", 1)]), ("ok", [R("x", [])]))
    assert check_list_append(bad).valid is True
    v = check_list_append(bad, "strict-serializable")
    assert v.valid is False and types(v) == {"G-single-realtime"}
    assert "rt" in v.details["anomalies"]["G-single-realtime"][0]["cycle"]
    good = serial(("ok", [A("x", 1)]), ("ok", [R("x", [1])]))
    assert check_list_append(good, "strict-serializable").valid is True
    # concurrent txns have no rt edge: T1 may be ordered first
    conc = History([Op(0, "invoke", "txn", [A("x", 1)]), Op(1, "invoke", "txn", [R("x", None)]),
                    Op(0, "ok", "txn", [A("x", 1)]), Op(1, "ok", "txn", [R("x", [])])])
    assert check_list_append(conc, "strict-serializable").valid is True


def test_info_txn_writes_count_failed_do_not():
    h = History([Op(0, "invoke", "txn", [A("x", 1)]), Op(0, "info", "txn", [A("x", 1)], error="timeout"),
                 Op(1, "invoke", "txn", [R("x", None)]), Op(1, "ok", "txn", [R("x", [1])])])
    assert check_list_append(h, "strict-serializable").valid is True


# -- rw-register -------------------------------------------------------------------------------

def test_register_g_single():
    bad = serial(("ok", [W("x", 1), W("y", 1)]), ("ok", [R("x", None), R("y", 1)]))
    v = check_rw_register(bad)
    assert v.valid is False and types(v) == {"G-single"}
    good = serial(("ok", [W("x", 1), W("y", 1)]), ("ok", [R("x", 1), R("y", 1)]))
    assert check_rw_register(good).valid is True


def test_register_lost_update_and_g2():
    bad = serial(("ok", [R("x", None), W("x", 1)]), ("ok", [R("x", None), W("x", 2)]))
    v = check_rw_register(bad)
    assert v.valid is False and {"lost-update", "G2-item"} <= types(v)
    assert check_rw_register(bad, "read-committed").valid is True
    good = serial(("ok", [R("x", None), W("x", 1)]), ("ok", [R("x", 1), W("x", 2)]))
    assert check_rw_register(good).valid is True


def test_register_g1a_g1b_internal_cyclic():
    assert types(check_rw_register(serial(("fail", [W("x", 1)]), ("ok", [R("x", 1)])))) == {"G1a"}
    assert check_rw_register(serial(("fail", [W("x", 1)]), ("ok", [R("x", None)]))).valid is True
    assert "G1b" in types(check_rw_register(serial(("ok", [W("x", 1), W("x", 2)]), ("ok", [R("x", 1)]))))
    assert check_rw_register(serial(("ok", [W("x", 1), W("x", 2)]), ("ok", [R("x", 2)]))).valid is True
    assert types(check_rw_register(serial(("ok", [W("x", 1), R("x", None)])))) == {"internal"}
    assert check_rw_register(serial(("ok", [W("x", 1), R("x", 1)]))).valid is True
    cyc = serial(("ok", [R("x", 2), W("x", 1)]), ("ok", [R("x", 1), W("x", 2)]))
    v = check_rw_register(cyc)
    assert v.valid is False and "cyclic-versions" in types(v)
    assert check_rw_register(serial(("ok", [W("x", 1)]), ("ok", [R("x", 1), W("x", 2)]))).valid is True


def test_register_g0_through_wfr():
    # T0 and T1 each read the other's write of one key and overwrite it: ww both ways.
    bad = serial(("ok", [W("x", 1), R("y", 2), W("y", 1)]), ("ok", [R("x", 1), W("x", 2), W("y", 2)]))
    assert {"G0", "G1c"} & types(check_rw_register(bad, "read-uncommitted"))


# -- API and bad input -------------------------------------------------------------------------

def test_models_and_errors():
    from labkit.checkers.elle import ANOMALIES, INFERABLE
    assert INFERABLE["list-append"] <= set(ANOMALIES) and INFERABLE["rw-register"] <= set(ANOMALIES)
    v = check_rw_register(serial(("ok", [W("x", 1)])))
    assert "incompatible-order" in v.details["not_inferable"]       # said, not silently passed
    assert "G2-item" not in forbidden_anomalies("snapshot-isolation")
    assert forbidden_anomalies("strict-serializable") >= CONSISTENCY_MODELS["serializable"]
    with pytest.raises(ValueError, match="known: read-uncommitted"):
        check_list_append(serial(("ok", [A("x", 1)])), "linearizable")
    with pytest.raises(ValueError, match="unique"):
        check_list_append(serial(("ok", [A("x", 1)]), ("ok", [A("x", 1)])))
    with pytest.raises(ValueError, match="micro-op"):
        check_list_append(serial(("ok", [["put", "x", 1]])))
    with pytest.raises(ValueError, match="workload"):
        check_txn(History(), "bank")
    assert check_list_append(History()).valid is None
    assert check_txn(serial(("ok", [W("x", 1)])), "txn-rw-register").valid is True


def test_budget_exhaustion_is_unknown_not_pass():
    bad = serial(("ok", [R("x", []), A("y", 1)]), ("ok", [R("y", []), A("x", 1)]),
                 ("ok", [R("x", [1]), R("y", [1])]))
    v = check_list_append(bad, search_budget=1)
    assert v.valid is None and v.details["truncated"] is True


# -- property: an atomic executor's histories always pass --------------------------------------

def atomic_history(rng: random.Random, n: int, register: bool) -> History:
    """Concurrent clients; each txn takes effect atomically at one instant between its
    invocation and completion (or never, for fail; maybe, for info)."""
    state: dict = {}
    ops: list[Op] = []
    open_: dict[int, list] = {}
    counter = 0
    next_proc = 4
    procs = list(range(4))
    done = 0
    while done < n or open_:
        p = rng.choice(procs)
        if p not in open_ and done < n:
            mops = []
            for _ in range(rng.randint(1, 4)):
                k = rng.choice("abc")
                if rng.random() < 0.5:
                    mops.append(["r", k, None])
                else:
                    counter += 1
                    mops.append(["w" if register else "append", k, counter])
            ops.append(Op(p, "invoke", "txn", mops))
            open_[p] = [mops, None]
            done += 1
        elif p in open_:
            mops, applied = open_[p]
            if applied is None and rng.random() < 0.7:   # take effect now
                out = []
                for f, k, v in mops:
                    if f == "r":
                        out.append(["r", k, state.get(k) if register else list(state.get(k, []))])
                    elif register:
                        state[k] = v
                        out.append([f, k, v])
                    else:
                        state.setdefault(k, []).append(v)
                        out.append([f, k, v])
                open_[p][1] = out
                continue
            del open_[p]
            if applied is None:
                ops.append(Op(p, rng.choice(["fail", "info"]), "txn", mops))
            elif rng.random() < 0.1:
                ops.append(Op(p, "info", "txn", mops))
            else:
                ops.append(Op(p, "ok", "txn", applied))
                continue
            if ops[-1].type == "info":
                procs[procs.index(p)] = next_proc
                next_proc += 1
    return History(ops)


@pytest.mark.parametrize("register", [False, True])
def test_atomic_executor_histories_are_strict_serializable(register):
    rng = random.Random(7)
    for _ in range(60):
        h = atomic_history(rng, rng.randint(5, 60), register)
        v = check_txn(h, "rw-register" if register else "list-append", "strict-serializable")
        assert v.valid is not False, (str(v), str(h))
