"""labkit's EDN reader against the ``edn_format`` package (the referee) on generated
Jepsen-style op maps: keywords, nested vectors, strings with escapes, nil, negative and big
numbers, floats, sets and tagged literals."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from labkit import edn

edn_format = pytest.importorskip("edn_format")

KW = st.from_regex(r"[a-z][a-z0-9\-]{0,8}(/[a-z][a-z0-9]{0,5})?", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


def _kw(name: str) -> str:
    return ":" + name


def _str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") \
        .replace("\r", "\\r") + '"'


scalars = st.one_of(
    st.just(("nil", None)),
    st.booleans().map(lambda b: ("true" if b else "false", b)),
    st.integers(-2**70, 2**70).map(lambda n: (str(n), n)),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda x: (repr(x), x)),
    TEXT.map(lambda s: (_str(s), s)),
    KW.map(lambda k: (_kw(k), ("kw", k))),
)


def _vec(items):
    return ("[" + " ".join(t for t, _ in items) + "]", ("vec", tuple(v for _, v in items)))


def _set(items):
    uniq = {}
    for t, v in items:
        uniq.setdefault(v, t)
    return ("#{" + " ".join(uniq.values()) + "}", ("set", frozenset(uniq)))


values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(_vec),
    st.lists(st.one_of(st.integers(-50, 50).map(lambda n: (str(n), n)), KW.map(lambda k: (_kw(k), ("kw", k)))),
             max_size=4).map(_set)), max_leaves=10)


@st.composite
def op_maps(draw):
    """One Jepsen op line, and the value both readers must agree on (in a neutral form)."""
    fields = [(":process", draw(st.one_of(st.integers(0, 10**6).map(lambda n: (str(n), n)),
                                           st.just((":nemesis", ("kw", "nemesis")))))),
              (":type", draw(st.sampled_from(["invoke", "ok", "fail", "info"]).map(lambda k: (_kw(k), ("kw", k))))),
              (":f", draw(KW.map(lambda k: (_kw(k), ("kw", k))))),
              (":value", draw(values)),
              (":time", draw(st.integers(0, 2**63).map(lambda n: (str(n), n)))),
              (":index", draw(st.integers(0, 10**9).map(lambda n: (str(n), n))))]
    if draw(st.booleans()):
        fields.append((":error", draw(values)))
    text = "{" + ", ".join(f"{k} {t}" for k, (t, _) in fields) + "}"
    if draw(st.booleans()):
        text = "#jepsen.history.Op" + text
    return text


def norm_labkit(x):
    if isinstance(x, edn.Keyword):
        return ("kw", str(x))
    if isinstance(x, dict):
        return {norm_labkit(k): norm_labkit(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return ("vec", tuple(norm_labkit(v) for v in x))
    if isinstance(x, frozenset):
        return ("set", frozenset(norm_labkit(v) for v in x))
    return x


def norm_ref(x):
    if isinstance(x, edn_format.Keyword):
        return ("kw", x.name)
    if isinstance(x, edn_format.TaggedElement):
        return norm_ref(x.value)
    if isinstance(x, dict) or type(x).__name__ == "ImmutableDict":
        return {norm_ref(k): norm_ref(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)) or type(x).__name__ == "ImmutableList":
        return ("vec", tuple(norm_ref(v) for v in x))
    if isinstance(x, (set, frozenset)):
        return ("set", frozenset(norm_ref(v) for v in x))
    if type(x).__name__ == "Decimal":
        return float(x)
    return x


@edn_format.tag("jepsen.history.Op")
class _OpTag(edn_format.TaggedElement):
    def __init__(self, value):
        self.value = value


@settings(max_examples=300, deadline=None)
@given(op_maps())
def test_labkit_reads_what_edn_format_reads(text):
    ours = norm_labkit(edn.loads(text))
    ref = norm_ref(edn_format.loads(text))
    assert ours == ref
