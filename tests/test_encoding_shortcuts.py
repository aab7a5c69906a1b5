"""The encoder's shortcuts (issue 20: the key/depth check cost a Raft leader a third of its
throughput) skip only walks whose answer is known: every value they let through is one the
full check accepts, and everything it refuses is still refused with the same message."""
from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit.encoding as encoding
import labkit.message as message
from labkit.message import MAX_NESTING, EncodeError, find_unencodable, make_dumps


def batch(base: int, n: int = 40) -> list:
    """A Raft batch: [[term, command], ...], long enough to be remembered."""
    return [[3, {"op": "write", "key": f"k{i % 7}", "value": i, "client": "c1", "seq": i}] for i in range(base, base + n)]


@pytest.fixture
def walks(monkeypatch):
    """Counts the walks of the values (the cost the shortcuts save)."""
    count = {"n": 0}
    real = encoding._levels

    def counted(*args, **kw):
        count["n"] += 1
        return real(*args, **kw)
    monkeypatch.setattr(encoding, "_levels", counted)
    return count


def test_a_batch_is_walked_once_for_its_log_its_note_and_every_follower(walks):
    dumps = make_dumps()
    entries = batch(0)
    stored = dumps(entries)                                                  # the log write: walked
    assert walks["n"] == 1
    note = dumps({"what": "log", "index": 1, "entries": entries})
    sends = [dumps({"term": 3, "prev_index": 0, "prev_term": 0, "entries": entries, "commit": 0}, True)
             for _ in range(4)]
    assert walks["n"] == 1                                                   # ... and no more
    assert stored in note and all(stored in s for s in sends)


@pytest.mark.parametrize("bad, path", [
    ({1: "x"}, "['entries'][3][1]"),
    ({True: "x"}, "['entries'][3][1]"),
    ({None: "x"}, "['entries'][3][1]"),
    ({1.5: "x"}, "['entries'][3][1]"),
])
def test_a_non_str_key_next_to_a_remembered_batch_is_still_refused(walks, bad, path):
    dumps = make_dumps()
    entries = batch(0)
    dumps(entries)
    changed = [list(e) for e in entries]
    changed[3][1] = {**changed[3][1], **bad}                                # one command gains a bad key
    with pytest.raises(EncodeError) as e:
        dumps({"entries": changed})
    assert e.value.at("body").startswith(f"body{path} has the key")
    with pytest.raises(EncodeError):                                         # beside the remembered text too
        dumps({"entries": entries, "extra": [bad]})


def test_a_text_whose_keys_a_number_could_have_written_is_never_remembered():
    dumps = make_dumps()
    lookalike = [{"1": "a", "op": i} for i in range(40)]                     # str keys "1": allowed ...
    dumps(lookalike)
    with pytest.raises(EncodeError, match=r"has the key 1 \(int\)"):         # ... but vouch for nothing
        dumps({"x": [{1: "a", "op": i} for i in range(40)]})
    for word, key in (("true", True), ("null", None)):
        dumps([{word: i} for i in range(60)])
        with pytest.raises(EncodeError, match="dict keys must be strings"):
            dumps({"x": [{key: i} for i in range(60)]})


def test_a_remembered_dict_whose_own_keys_look_like_numbers_vouches_for_nothing():
    dumps = make_dumps()
    d = {"1": [{"a": i} for i in range(40)], "b": 2}
    dumps(d)
    d[1] = d.pop("1")                                  # the same dict, the same text, now an int key
    d["b"] = d.pop("b")
    with pytest.raises(EncodeError, match=r"\['x'\] has the key 1 \(int\)"):
        dumps({"x": d})


def test_a_batch_changed_after_it_was_remembered_is_checked_again():
    dumps = make_dumps()
    entries = batch(0)
    dumps(entries)
    entries[5][1][7] = "seven"                        # same list, same first and last entries
    with pytest.raises(EncodeError) as e:
        dumps({"entries": entries}, True)
    assert e.value.at("body").startswith("body['entries'][5][1] has the key 7 (int)")


def test_depth_counts_what_surrounds_a_remembered_text():
    dumps = make_dumps()
    deep_batch = [[1, {"a": [[i]]}] for i in range(60)]                     # nests 5 levels
    dumps(deep_batch)
    ok, too_deep = deep_batch, deep_batch
    for _ in range(MAX_NESTING - 6):
        ok = [ok]
    for _ in range(MAX_NESTING - 5):
        too_deep = [too_deep]
    dumps({"v": ok})                                                         # 1 + 94 + 5 = 100 levels
    with pytest.raises(EncodeError, match="nested too deeply"):
        dumps({"v": too_deep})                                               # 101


def test_a_remembered_text_inside_a_string_vouches_for_nothing():
    dumps = make_dumps()
    entries = batch(0)
    text = dumps(entries)
    with pytest.raises(EncodeError, match=r"\['t'\]\[0\] has the key 2"):
        dumps({"s": text, "t": [{2: "x"}]})


def test_dict_subclasses_inside_a_value_have_their_keys_checked():
    dumps = make_dumps()
    with pytest.raises(EncodeError, match=r"value\['x'\]\['a'\] has the key 1 \(int\)"):
        dumps({"x": OrderedDict(a={1: 2})})
    assert dumps({"x": OrderedDict(a={"b": 2})}) == '{"x":{"a":{"b":2}}}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=3) | st.integers() | st.booleans() | st.none(), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6), st.data())
def test_the_shortcuts_agree_with_the_full_check(history, data):
    """Whatever was encoded before (remembered or not), a value is refused exactly when
    find_unencodable finds something, with its message."""
    dumps = make_dumps()
    seen: list = []
    for v in history:
        shapes = [v, [v] * 10, {"e": [v] * 10, "n": 1}]
        if seen:
            p = data.draw(st.sampled_from(seen))
            shapes += [{"e": [p] * 10, "x": v}, [[p] * 10, v], {"x": v, "e": [p] * 10}]
        value = data.draw(st.sampled_from(shapes))
        bad = find_unencodable(value)
        if bad is None:
            assert dumps(value) == message.json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            seen.append(value)
        else:
            with pytest.raises(EncodeError) as e:
                dumps(value)
            assert str(e.value) == str(bad)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_level_walk_agrees_with_the_plain_walk(value):
    if type(value) not in (dict, list):
        value = [value]
    keys_a: set = set()
    keys_b: set = set()
    a = encoding._levels(value, MAX_NESTING, keys_a)
    b = encoding._plain_depth(value, MAX_NESTING - 1, keys_b)
    assert a == b
    if a > 0:
        assert keys_a == keys_b
