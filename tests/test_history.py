"""Histories: ops, pairing, JSON lines and EDN files, the recorder and the workload generator."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

import labkit
from labkit import edn
from labkit.checkers import check_linearizable
from labkit.history import History, HistoryError, Op
from labkit.recorder import ERROR_CODES, KVProtocol, Recorder, workload

try:
    from .kvnodes import KVStore, LeaderKV, SlowKV
except ImportError:
    from kvnodes import KVStore, LeaderKV, SlowKV


def inv(p, f, v=None, key=None, t=None):
    return Op(p, "invoke", f, v, key, t)


def done(p, type, f, v=None, key=None, t=None, error=None):
    return Op(p, type, f, v, key, t, error=error)


# -- ops and pairing ----------------------------------------------------------------------

def test_op_rejects_unknown_type_and_freezes_values():
    with pytest.raises(HistoryError):
        Op(0, "done", "read")
    op = Op(0, "ok", "read", [1, [2, 3]], key=["a", 1])
    assert op.value == (1, (2, 3)) and op.key == ("a", 1)
    hash(op)  # frozen values make ops hashable


def test_history_numbers_ops_and_pairs_them_per_process():
    h = History([inv(0, "write", 1), inv(1, "read"), done(1, "ok", "read", 1), done(0, "ok", "write", 1),
                 inv(0, "read"), Op("nemesis", "info", "start")])
    assert [o.index for o in h] == list(range(6))
    pairs = h.pairs()
    assert [(p.process, p.f, p.type, p.value) for p in pairs] == [
        (0, "write", "ok", 1), (1, "read", "ok", 1), (0, "read", "info", None)]
    assert pairs[2].completion is None and pairs[2].latency is None
    assert h.processes == [0, 1]
    assert h.counts() == {"ok": 2, "fail": 0, "info": 1}


def test_sub_histories_keep_indices_and_split_by_key():
    h = History([inv(0, "write", 1, key="a"), inv(1, "write", 2, key="b"),
                 done(0, "ok", "write", 1, key="a"), done(1, "ok", "write", 2, key="b")])
    by = h.by_key()
    assert set(by) == {"a", "b"}
    assert [o.index for o in by["b"]] == [1, 3]
    assert h.filter(key="a", type="ok")[0].index == 2


@pytest.mark.parametrize("ops, needle", [
    ([done(0, "ok", "read", 1)], "never invoked"),
    ([inv(0, "read"), inv(0, "write", 1)], "still open"),
    ([inv(0, "read"), done(0, "ok", "write", 1)], "completes 'write'"),
])
def test_malformed_histories_name_the_op(ops, needle):
    with pytest.raises(HistoryError, match=needle):
        History(ops).pairs()


# -- files --------------------------------------------------------------------------------

def sample() -> History:
    return History([
        inv(0, "write", 3, key=1, t=1.5), inv(1, "cas", (3, 4), key="k", t=2.0),
        done(0, "ok", "write", 3, key=1, t=2.25), done(1, "fail", "cas", (3, 4), key="k", t=3.0,
                                                      error="precondition-failed: had 0"),
        inv(2, "append", "x\"y\n", key=1, t=4.0), done(2, "info", "append", "x\"y\n", key=1, t=9.0,
                                                       error="timeout"),
        inv(3, "read", None, key=1, t=10.0), done(3, "ok", "read", (3, 5.5, None, True), key=1, t=11.0),
    ])


def test_jsonl_round_trip(tmp_path):
    h = sample()
    path = str(tmp_path / "h.jsonl")
    h.save_jsonl(path)
    assert History.load_jsonl(path) == h
    assert History.load(path) == h


@pytest.mark.parametrize("independent", [True, False])
def test_edn_round_trip(tmp_path, independent):
    h = sample()
    path = str(tmp_path / "h.edn")
    h.save_edn(path, independent=independent)
    text = open(path).read()
    assert text.splitlines()[0].startswith("{:process 0, :type :invoke, :f :write, :value ")
    assert (":value [1 3]" in text) == independent
    assert ":time 1500000" in text  # ns
    assert History.load_edn(path) == h
    assert History.load(path) == h


def test_unkeyed_edn_round_trip_keeps_nemesis_ops():
    h = History([Op("nemesis", "info", "start", None, time=1.0), inv(0, "read", t=2.0),
                 done(0, "ok", "read", 7, t=3.0), Op("nemesis", "info", "stop", ["n1"], time=4.0)])
    text = h.to_edn()
    assert ":process :nemesis" in text
    assert History.from_edn(text) == h


MAELSTROM = """\
{:type :invoke, :f :read, :value [0 nil], :time 11913651, :process 0, :index 0}
{:type :invoke, :f :write, :value [0 4], :time 12021112, :process 1, :index 1}
{:type :ok, :f :write, :value [0 4], :time 13497862, :process 1, :index 2}
{:type :fail, :f :read, :value [0 nil], :time 13498470, :process 0, :error [:key-does-not-exist "key does not exist"], :index 3}
{:type :invoke, :f :cas, :value [0 [4 1]], :time 14034005, :process 1, :index 4}
{:type :info, :f :cas, :value [0 [4 1]], :time 1014143240, :process 1, :error :net-timeout, :index 5}
{:type :invoke, :f :read, :value [0 nil], :time 1014912000, :process 6, :index 6}
{:type :ok, :f :read, :value [0 1], :time 1016000000, :process 6, :index 7}
"""


def test_load_maelstrom_lin_kv_history(tmp_path):
    path = tmp_path / "history.edn"
    path.write_text(MAELSTROM)
    h = History.load(str(path))
    assert len(h) == 8 and {o.key for o in h} == {0}
    cas = h.pairs()[2]
    assert cas.f == "cas" and cas.value == (4, 1) and cas.type == "info" and cas.completion.error == "net-timeout"
    assert h[3].error == ("key-does-not-exist", "key does not exist")
    assert h[0].time == pytest.approx(11.913651)
    assert check_linearizable(h, "kv").valid is True  # the info cas took effect before the read


def test_load_jepsen_tagged_ops_in_one_vector():
    text = ('[#jepsen.history.Op{:index 0, :time 5, :type :invoke, :process 0, :f :read, :value nil}\n'
            ' #jepsen.history.Op{:index 1, :time 9, :type :ok, :process 0, :f :read, :value 2}]')
    h = History.from_edn(text)
    assert [(o.type, o.value) for o in h] == [("invoke", None), ("ok", 2)]


@pytest.mark.parametrize("text, line, needle", [
    ('{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok :f :read, :value [1 2}\n', 2, "unexpected '}' where ']' should close"),
    ('{:process 0, :type :invoke, :f :read}\n\n{:process 0, :type :bogus, :f :read}\n', 3, "op type"),
    ('{:process 0, :type :invoke, :f :read}\n[1 2]\n', 2, "expected an op map"),
    ('{:process 0 :type}\n', 1, "even number"),
])
def test_bad_edn_names_the_line(text, line, needle):
    with pytest.raises(HistoryError, match=rf"f\.edn: line {line}: .*{needle}"):
        History.from_edn(text, "f.edn")


def test_bad_jsonl_names_the_line():
    with pytest.raises(HistoryError, match=r"f\.jsonl: line 2: "):
        History.from_jsonl('{"process":0,"type":"invoke","f":"read"}\n{"process":0,"type":\n', "f.jsonl")
    with pytest.raises(HistoryError, match=r"line 1: op lacks f"):
        History.from_jsonl('{"process":0,"type":"invoke"}\n', "f.jsonl")


def test_edn_reader_subset():
    got = edn.loads('{:a/b [1 -2 3N 1.5 -2e3 2.5M "s\\t\\"q\\u00e9" nil true false] '
                    '(:x sym) #{1 2} #_ 99 ; comment\n :k {[1 2] :v}}')
    assert got == {"a/b": [1, -2, 3, 1.5, -2000.0, 2.5, 's\t"qé', None, True, False],
                   ("x", "sym"): frozenset({1, 2}), "k": {(1, 2): "v"}}
    assert isinstance(next(iter(got)), edn.Keyword)
    assert edn.loads_all("1 [2 #_ 3] 4") == [1, [2], 4]
    with pytest.raises(edn.EdnError, match="line 2: unterminated string"):
        edn.loads('1\n"abc')
    with pytest.raises(edn.EdnError, match="bad number"):
        edn.loads("12abc")
    # an unclosed collection is reported where it was opened, not at the end of the text
    with pytest.raises(edn.EdnError, match=r"line 2: unexpected end of input: the '\{' opened on this line is "
                                           r"never closed \(a '\}' is missing\)"):
        edn.loads_all('{:type :invoke}\n{:type :ok :value [1 2]\n\n\n')
    with pytest.raises(edn.EdnError, match=r"line 1: .*the '\[' opened on this line"):
        edn.loads_all('[{:a 1}\n {:a 2}\n {:a 3}\n')
    with pytest.raises(TypeError):
        edn.dumps(math.nan)


edn_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.from_regex(r"[a-z][a-z0-9\-]{0,6}", fullmatch=True).map(edn.Keyword))
edn_values = st.recursive(edn_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True).map(edn.Keyword), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(edn_values)
def test_edn_dumps_loads_round_trip(v):
    back = edn.loads(edn.dumps(v))
    assert back == v
    assert edn.dumps(back) == edn.dumps(v)


# -- reply classification -----------------------------------------------------------------

@pytest.mark.parametrize("f, reply, body, want", [
    ("read", "read_ok", {"value": 3}, ("ok", 3, None)),
    ("write", "write_ok", {}, ("ok", 5, None)),
    ("read", "error", {"code": 20}, ("ok", None, None)),
    ("cas", "error", {"code": 22, "text": "expected 1"}, ("fail", 5, "precondition-failed: expected 1")),
    ("write", "error", {"code": 11}, ("fail", 5, "temporarily-unavailable")),
    ("write", "error", {"code": 0}, ("info", 5, "timeout")),
    ("write", "error", {"code": 13}, ("info", 5, "crash")),
    ("write", "error", {"code": 1001}, ("info", 5, "error 1001")),
    ("write", "error", {"code": 1001, "definite": True}, ("fail", 5, "error 1001")),
    ("write", "error", {"code": 22, "definite": False}, ("info", 5, "precondition-failed")),
    ("write", "write_ok", {"error": 14}, ("fail", 5, "abort")),
    ("write", "write_ok", {"error": "disk full"}, ("info", 5, "error: disk full")),
    ("write", "read_ok", {}, ("info", 5, "unexpected reply 'read_ok'")),
])
def test_reply_classification(f, reply, body, want):
    assert KVProtocol().outcome(f, 5, reply, body) == want


def test_error_codes_follow_maelstrom():
    assert {c for c, (_, definite) in ERROR_CODES.items() if not definite} == {0, 13}


def test_requests_use_lin_kv_shapes():
    p = KVProtocol()
    assert p.request("read", "k", None) == ("read", {"key": "k"})
    assert p.request("cas", 1, (2, 3)) == ("cas", {"key": 1, "from": 2, "to": 3})
    assert p.request("write", None, (1, 2)) == ("write", {"value": [1, 2]})


# -- the recorder -------------------------------------------------------------------------

def test_client_call_records_ok_and_definite_fail():
    with labkit.Cluster(KVStore, n=1, runtime="sim", seed=1) as c:
        cl = Recorder(c, timeout_ms=100).client()
        assert cl.call("write", 1, key="x").type == "ok"
        assert cl.call("read", key="x").value == 1
        assert cl.call("read", key="y").value is None           # key does not exist -> empty
        bad = cl.call("cas", (0, 2), key="x")
        assert (bad.type, bad.completion.error[:19]) == ("fail", "precondition-failed")
        assert cl.process == 0                                  # fail keeps the process
        h = cl.recorder.history
        assert [o.type for o in h] == ["invoke", "ok"] * 3 + ["invoke", "fail"]
        assert all(h[i].time <= h[i + 1].time for i in range(len(h) - 1))


def test_timeout_is_info_a_new_process_and_the_late_reply_is_ignored():
    with labkit.Cluster(SlowKV, n=1, runtime="sim", seed=2) as c:
        rec = Recorder(c, timeout_ms=100)
        cl = rec.client()
        seen = []
        cl.invoke("read", key="x", then=seen.append)
        c.run_for(0.15)
        assert len(seen) == 1 and seen[0].type == "info" and seen[0].completion.error == "timeout"
        assert seen[0].completion.time == pytest.approx(100.0)
        assert cl.process == 1 and not cl.busy
        cl.invoke("write", 7, key="x", then=seen.append)
        c.run_for(0.5)                                          # the late read reply arrives meanwhile
        assert [p.type for p in seen] == ["info", "ok"]
        assert [o.process for o in rec.history] == [0, 0, 1, 1]
        late = [e for e in c.journal.filter(kind="deliver") if e.node == "c0"]
        assert [(e.type, e["body"]) for e in late] == [("read_ok", {"value": 7})]   # journaled only
        assert len(rec.history) == 4
        cl.invoke("read", key="x")
        with pytest.raises(RuntimeError, match="already has an operation open"):
            cl.invoke("read", key="x")


def test_workload_is_deterministic_in_the_simulator():
    def run():
        with labkit.Cluster(KVStore, n=1, runtime="sim", seed=5) as c:
            return workload(c, clients=4, rate=100, duration=1.0, keys=2, timeout_ms=100)
    a, b = run(), run()
    assert a == b and len(a) > 100
    assert {o.f for o in a} == {"read", "write", "cas"}
    assert {o.key for o in a} == {0, 1}
    c = a.counts()
    assert c["ok"] > 0 and c["fail"] > 0 and c["info"] == 0    # cas precondition failures


def test_workload_nodes_given_as_one_name_or_unknown():
    with labkit.Cluster(KVStore, n=2, runtime="sim", seed=5) as c:
        h = workload(c, clients=2, rate=100, duration=0.3, nodes="n2", timeout_ms=100)   # not 'n' and '2'
        assert len(h) > 0
        assert {e.dst for e in c.journal.filter(kind="send") if e.src.startswith("c")} == {"n2"}
        with pytest.raises(ValueError, match=r"nodes \['n9'\] are not nodes of this cluster"):
            workload(c, nodes=["n9"], duration=0.1)


def test_workload_rate_and_mix_are_respected():
    with labkit.Cluster(KVStore, n=1, runtime="sim", seed=6) as c:
        h = workload(c, clients=3, rate=50, duration=4.0, keys=None, mix={"write": 1, "append": 1},
                     timeout_ms=100)
    pairs = h.pairs()
    assert 150 <= len(pairs) <= 250                             # 50/s for 4 s, give or take
    assert {p.f for p in pairs} == {"write", "append"} and {p.key for p in pairs} == {None}
    appends = [p.value for p in pairs if p.f == "append"]
    assert len(set(appends)) == len(appends)                    # unique append values
    with pytest.raises(ValueError, match="mix"):
        with labkit.Cluster(KVStore, n=1, runtime="sim", seed=6) as c:
            workload(c, mix={"frobnicate": 1})


def test_info_ops_move_the_client_to_a_new_process():
    with labkit.Cluster(LeaderKV, n=3, runtime="sim", seed=7) as c:
        c.set_link(delay=5)
        c.call_at(300, c.isolate, "n1")       # the leader: forwarded ops time out
        h = workload(c, clients=3, rate=60, duration=1.5, keys=1, timeout_ms=250)
    pairs = h.pairs()
    infos = [p for p in pairs if p.type == "info"]
    assert infos
    for p in infos:                            # no op after an info reuses its process
        assert not [q for q in pairs if q.process == p.process and q.invoke.index > p.invoke.index]
    assert 3 < len(h.processes) <= 3 + len(infos)   # a client's last fresh id may stay unused
    assert check_linearizable(h, "kv").valid is True


@pytest.mark.processes
def test_workload_in_the_processes_runtime():
    with labkit.Cluster(LeaderKV, n=3, seed=11) as c:
        h = workload(c, clients=4, rate=80, duration=1.0, keys=2, timeout_ms=2000)
        clients = {e.node for e in c.journal.filter(kind="deliver") if e.node.startswith("c")}
    pairs = h.pairs()
    assert len(pairs) >= 20 and all(p.completion is not None for p in pairs)
    assert clients <= {f"c{p}" for p in h.processes}
    assert all(p.start <= p.end for p in pairs)
    assert check_linearizable(h, "kv").valid is True


def test_requests_that_cannot_be_sent_leave_no_trace():
    with labkit.Cluster(KVStore, n=1, runtime="sim", seed=3) as c:
        rec = Recorder(c, timeout_ms=100)
        cl = rec.client()
        with pytest.raises(labkit.UnknownNode):
            cl.invoke("read", key="x", node="n9")
        with pytest.raises(labkit.MessageError):
            cl.call("write", object(), key="x")
        assert len(rec.history) == 0 and not cl.busy
        assert cl.call("write", 1, key="x").type == "ok"
    with pytest.raises(labkit.ClusterClosed):
        cl.call("read", key="x")
    assert len(rec.history) == 2


def test_edn_writes_micro_ops_as_keywords_and_times_read_back_equal():
    """Elle's and jepsen.tests.kafka's micro-ops are keywords in Jepsen's files; any time (ms,
    however many decimals it came with) reads back equal -- ops keep it to the ns, EDN's unit."""
    txn = [["append", 1, 2], ["r", 1, None]]
    h = History([Op(0, "invoke", "txn", txn, time=1.000_000_4), Op(0, "ok", "txn", [["append", 1, 2], ["r", 1, [2]]],
                                                               time=2 / 3),
                 Op(1, "invoke", "send", [["send", "k", 5]], time=100.123_456_789),
                 Op(1, "ok", "send", [["send", "k", [0, 5]]], time=1e9 + 0.1)])
    text = h.to_edn()
    assert ":value [[:append 1 2] [:r 1 nil]]" in text and "[[:send \"k\" [0 5]]]" in text
    assert ":time 1000000," in text or ":time 1000000}" in text
    back = History.from_edn(text)
    assert back == h and [o.time for o in back] == [o.time for o in h]
    assert back[1].value == (("append", 1, 2), ("r", 1, (2,)))


def test_a_recorded_transactional_history_reads_back_from_edn_unchanged():
    from labkit.maelstrom import test as run_test
    from maelstrom_elle_nodes import TxnStore
    r = run_test(TxnStore, workload="txn-list-append", node_count=2, time_limit=5, rate=20, runtime="sim", seed=3)
    assert len(r.history) > 10
    text = r.history.to_edn()
    assert "[:append " in text and History.from_edn(text) == r.history
