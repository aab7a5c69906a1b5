"""labkit's strict JSON encoder: what may cross a process or reach a file, and what not.

Everything labkit encodes -- message bodies, replies, notes, storage values, client requests,
control frames, journal lines -- goes through a ``make_dumps`` encoder: compact JSON with
the C encoder, refusing what JSON would carry wrongly or not at all (a type JSON lacks, a
non-str dict key that JSON would silently turn into a string, NaN and infinities, nesting
deeper than ``MAX_NESTING``, a cycle) with an ``EncodeError`` naming the path to it.
(Split from ``labkit.message``, which re-exports these names.)
"""
from __future__ import annotations

import gc
import json
from itertools import compress
from typing import Any, Callable

#: How deeply dicts and lists may nest in anything labkit encodes (message bodies, replies,
#: notes, storage values, client requests): a body is level 1, a list inside it level 2, ...
#: Deeper values are refused with an error naming the path. Every reader of the JSON (nodes,
#: the journal, the notebook) parses it recursively, so a bound keeps them all safe.
MAX_NESTING = 100


class EncodeError(TypeError, ValueError):
    """A value JSON cannot carry faithfully: ``path`` (keys and indexes from the value's root)
    leads to the culprit and ``problem`` says what is wrong. ``at(root)`` phrases both, e.g.
    ``at("body")`` -> ``body['a'][1] is a set, which JSON cannot carry``."""

    def __init__(self, path: list, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(self.at("value"))

    def at(self, root: str) -> str:
        return f"{format_path(root, self.path)} {self.problem}"


def format_path(root: str, path: list) -> str:
    """``root`` followed by Python-style subscripts, shortened in the middle when very deep."""
    parts = [f"[{k!r}]" for k in path]
    if len(parts) > 12:
        parts = parts[:6] + [f"...({len(parts) - 9} more)..."] + parts[-3:]
    return root + "".join(parts)


def _problem_of_leaf(o: Any, allow_nan: bool) -> str | None:
    if o is None or isinstance(o, (str, bool, int)):
        return None
    if isinstance(o, float):
        if not allow_nan and (o != o or o in (float("inf"), float("-inf"))):
            return f"is {o!r}, which JSON cannot carry (no NaN or infinities); send None or a string"
        return None
    name = type(o).__name__
    hint = {"set": "convert it to a sorted list", "frozenset": "convert it to a sorted list",
            "bytes": "decode it to a str", "bytearray": "decode it to a str"}.get(name, "convert it to a dict, list, str or number")
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"is {article} {name}, which JSON cannot carry: {hint}"


def find_unencodable(o: Any, allow_nan: bool = False, limit: int = MAX_NESTING) -> EncodeError | None:
    """The first thing in ``o`` that labkit refuses to encode, as an EncodeError, or None.

    Refused: a type JSON lacks (set, bytes, objects), a dict key that is not a str (JSON
    would silently turn ``1`` into ``"1"``, so ``{1: "a", "1": "b"}`` would lose a value),
    NaN and infinities (unless ``allow_nan``), nesting deeper than ``limit`` levels, and a
    container that holds itself. Walks with an explicit stack: never raises RecursionError."""
    if not isinstance(o, (dict, list, tuple)):
        p = _problem_of_leaf(o, allow_nan)
        return EncodeError([], p) if p else None
    path: list = []
    open_ids = {id(o)}
    stack: list = [(o, iter(o.items()) if isinstance(o, dict) else enumerate(o))]
    if limit < 1:
        return EncodeError([], f"is nested too deeply (limit {limit})")
    while stack:
        container, it = stack[-1]
        for key, value in it:
            if isinstance(container, dict) and not isinstance(key, str):
                return EncodeError(path[:], _key_problem(key, container))
            if isinstance(value, (dict, list, tuple)):
                if id(value) in open_ids:
                    return EncodeError(path + [key], "holds itself (a circular reference); send a copy without the cycle")
                if len(stack) >= limit:
                    return EncodeError(path + [key], f"is nested too deeply (limit {limit}): dicts and lists may nest {limit} levels")
                path.append(key)
                open_ids.add(id(value))
                stack.append((value, iter(value.items()) if isinstance(value, dict) else enumerate(value)))
                break
            p = _problem_of_leaf(value, allow_nan)
            if p:
                return EncodeError(path + [key], p)
        else:
            stack.pop()
            open_ids.discard(id(container))
            if path:
                path.pop()
    return None


def _key_problem(key: Any, container: dict) -> str:
    try:
        as_json = next(iter(json.loads(json.dumps({key: 0}))))   # what JSON would make of the key
    except (TypeError, ValueError):
        return f"has the key {key!r} ({type(key).__name__}), but dict keys must be strings; use str keys"
    clash = ", a key the dict already has (one value would be lost)" if as_json in container else ""
    return (f"has the key {key!r} ({type(key).__name__}), but dict keys must be strings: JSON would "
            f"turn it into {as_json!r}{clash}; use str keys")


def _not_json(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _on_fresh_stack(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a new thread (a new, empty Python stack) and return its result: for
    recursive C code (the json module) called from a stack that is already nearly full."""
    import threading
    out: list = []

    def run() -> None:
        try:
            out.append((True, fn()))
        except BaseException as e:  # handed back to the caller's thread
            out.append((False, e))
    t = threading.Thread(target=run, name="labkit-json", daemon=True)
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


_STR_ONLY = frozenset({str})
_CONTAINER = (dict, list, tuple)
#: Dict keys whose text a non-str key could also have made (``1`` -> ``"1"``, ``True`` ->
#: ``"true"``, ...): a checked text holding one cannot vouch for another value's keys.
_KEY_LOOKALIKES = frozenset({"true", "false", "null", "NaN", "Infinity", "-Infinity"})
_NUMERIC_START = frozenset("-0123456789")


def _plain_depth(o: Any, room: int = MAX_NESTING - 1, keys: set | None = None) -> int:
    """How deeply ``o`` (a dict, list or tuple) nests -- 1 when it holds no container --
    if every dict in it has only exact-``str`` keys and it nests at most ``room`` more
    levels below itself; else -1 (``find_unencodable`` explains). One pass checks keys and
    depth (a Raft AppendEntries body holds thousands of brackets but nests four levels).
    ``keys``: a set that collects every dict key seen."""
    if isinstance(o, dict):
        if not set(map(type, o)) <= _STR_ONLY:
            return -1
        if keys is not None:
            keys.update(o)
        items: Any = o.values()
    else:
        items = o
    deepest = 0
    for v in items:
        if isinstance(v, _CONTAINER):
            if room <= 0:
                return -1
            d = _plain_depth(v, room - 1, keys)
            if d < 0:
                return -1
            if d > deepest:
                deepest = d
    return deepest + 1


_EXACT_CONTAINER = frozenset({dict, list, tuple}).__contains__
_EXACT_DICT = frozenset({dict}).__contains__
_SCALARS = frozenset({str, int, float, bool, type(None)})
_JSON_TYPES = _SCALARS | {dict, list, tuple}


def _levels(o: Any, limit: int = MAX_NESTING, keys: set | None = None) -> int:
    """``_plain_depth`` of an exact dict, list or tuple, a level at a time and in C loops,
    about twice as fast: ``gc.get_referents`` gives a level's contents in one call -- a
    list's or tuple's items, a dict's values, and its keys too when they are not all exact
    ``str`` (CPython then keeps the dict in its general layout and visits keys as well), so
    a level with more contents than its containers' lengths holds such a dict. Anything but
    exact JSON types (a subclass) sends the value to the slow, explaining path (-1)."""
    level = [o]
    depth = 0
    if keys is not None and type(o) is dict:
        keys.update(o)
    while level:
        depth += 1
        if depth > limit:
            return -1
        contents = _referents(*level)
        if len(contents) != sum(map(len, level)):
            return -1
        kinds = set(map(type, contents))
        if kinds <= _SCALARS:             # the last level (usually the largest): nothing below
            return depth
        if not kinds <= _JSON_TYPES:
            return -1
        types = list(map(type, contents))
        level = list(compress(contents, map(_EXACT_CONTAINER, types)))
        if keys is not None and dict in kinds:
            keys.update(*compress(contents, map(_EXACT_DICT, types)))
    return depth


def _referents_show_keys() -> bool:
    """Does ``gc.get_referents`` behave as ``_levels`` needs (CPython 3.10 to 3.13 do)?"""
    try:
        return (len(_referents({"a": 1, "b": 2})) == 2 and len(_referents({"a": 1, 2: 3})) == 4
                and len(_referents({1.5: 1})) == 2 and len(_referents({"a": [1], "b": (2,)})) == 2)
    except Exception:   # noqa: BLE001 -- an interpreter without it: use the plain walk
        return False


_referents = gc.get_referents
if not _referents_show_keys():
    def _levels(o: Any, limit: int = MAX_NESTING, keys: set | None = None) -> int:  # noqa: F811
        return _plain_depth(o, limit - 1, keys)


def _anchor(v: Any) -> tuple:
    """What a value is recognised by when its text may be among the recently checked ones:
    a list or tuple by its length and the ids of its first and last items (a slice of a Raft
    log holds the same entry objects), a dict by its id and length. Only a hint of where to
    look: the text itself decides."""
    t = type(v)
    if (t is list or t is tuple) and v:
        return (len(v), id(v[0]), id(v[-1]))
    return (len(v) if t is dict else -1, id(v), 0)


def make_dumps(allow_nan: bool = False) -> Callable[[Any], str]:
    """A compact JSON encoder (``ensure_ascii=False``), built once; strict about NaN and
    infinities unless ``allow_nan``; raises EncodeError (a TypeError and a ValueError)
    naming the path to anything ``find_unencodable`` refuses -- non-str dict keys and
    nesting deeper than ``MAX_NESTING`` included.

    ``json.dumps`` builds a new C encoder on every call, which is most of its cost for the
    small bodies messages carry; here the C encoder is built once and reused. The C encoder
    itself refuses types JSON lacks, NaN (unless allowed) and cycles, but turns non-str keys
    into strings and nests as deep as the stack allows, so keys and depth are checked here:

    * not at all when the encoded text shows nothing to find: no ``{`` below the top (no
      dict whose keys were not yet looked at) and at most ``MAX_NESTING`` brackets;
    * not again for a value whose text was checked moments ago: a Raft leader encodes each
      batch of entries for its log, its journal note and every follower. The texts of the
      last few values walked (``RECENT``, each ``RECENT_MIN_CHARS`` or longer) are kept with
      their depth; a text that holds one of them as a value -- the value itself or one of its
      top-level values, recognised by ``_anchor`` -- needs only its remainder checked (no
      other dict in it, and its brackets plus that depth within the limit). Only texts
      whose keys no non-str key could have written are kept (no ``"1"``, ``"true"``, ...),
      so a text vouches for whatever object encodes to it;
    * otherwise by one walk of the value (``_levels``, or ``_plain_depth`` for subclasses),
      explained by ``find_unencodable`` when it finds something.

    The C encoder, the walk and ``find_unencodable`` decide; the shortcuts only skip a walk
    whose answer is known."""
    from json import encoder as _enc
    make = getattr(_enc, "c_make_encoder", None)
    if make is None:  # pure-Python json: correct, slower
        fast = json.JSONEncoder(ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"),
                                check_circular=False).iterencode
        fast = (lambda f: lambda o, _lvl: f(o))(fast)
    else:
        fast = make(None, _not_json, _enc.encode_basestring, None, ":", ",", False, False, allow_nan)
    join = "".join
    limit = MAX_NESTING
    # (text, depth, anchor, held): newest first. ``anchor`` picks which texts to look for
    # in a new text (searching for one that is not there costs as much as a walk):
    # ``_anchor`` of the value, whose objects ``held`` keeps alive so their ids stay theirs.
    recent: list[tuple[str, int, tuple, tuple]] = []

    def refuse(o: Any, e: BaseException) -> EncodeError:
        bad = find_unencodable(o, allow_nan)
        return bad if bad is not None else EncodeError([], f"cannot be encoded as JSON ({e})")

    def vouched(s: str, o: Any) -> bool:
        """Does ``s``, the text of ``o``, hold a recently checked text as one of its values,
        with nothing to check around it? Looked for: the texts of ``o`` itself and of its
        top-level values, recognised by ``_anchor``. (Without backslashes in ``s`` a quote
        always delimits a string, so an even number of quotes before the text means it
        starts outside any string: there it is a whole value, written by an object that
        encodes to it -- whichever object that is.)"""
        if "\\" in s:
            return False
        anchors = {_anchor(o)}
        if type(o) is dict and len(o) <= 16:
            anchors.update(map(_anchor, o.values()))
        for text, depth, anchor, _held in tuple(recent):
            if anchor not in anchors or len(text) > len(s):
                continue
            head = text[:64]                  # found by its head, then compared whole: a long
            i = s.find(head)                  # needle costs more to look for than to compare
            for _ in range(8):
                if i < 0:
                    break
                if s.startswith(text, i) and not s.count('"', 0, i) % 2:
                    rest = s[:i] + "0" + s[i + len(text):]
                    if rest.find("{", 1) == -1 and rest.count("[") + rest.count("{") + depth <= limit:
                        return True
                    break
                i = s.find(head, i + 1)
        return False

    def walked(s: str, o: Any) -> bool:
        """Walk ``o`` (the value whose text is ``s``): True if nothing was found; then keep
        ``s`` as a recently checked text if no non-str key could have written its keys."""
        keys: set = set()
        depth = _levels(o, limit, keys)
        if depth < 0:
            return False
        if len(keys) <= RECENT_MAX_KEYS and not any(k[:1] in _NUMERIC_START or k in _KEY_LOOKALIKES for k in keys):
            held = (o[0], o[-1]) if type(o) is not dict and o else (o,)
            recent.insert(0, (s, depth, _anchor(o), held))
            del recent[RECENT:]
        return True

    def dumps(o: Any, keys_checked: bool = False) -> str:
        """``keys_checked``: the caller knows ``o``'s own keys are str (a ``**kwargs`` dict)."""
        try:
            s = join(fast(o, 0))
        except RecursionError:
            # Too deep or circular -- or the caller's stack is nearly full: then encode afresh.
            bad = find_unencodable(o, allow_nan)
            if bad is not None:
                raise bad from None
            return _on_fresh_stack(lambda: join(fast(o, 0)))
        except (TypeError, ValueError) as e:
            raise refuse(o, e) from None
        t = type(o)
        if t is dict:
            top_ok = keys_checked or not o or set(map(type, o)) <= _STR_ONLY
            look = not top_ok or s.find("{", 1) != -1
        elif t is list or t is tuple:
            top_ok = True
            look = "{" in s
        elif t is str or t is int or t is float or o is None or t is bool:
            return s
        else:
            top_ok, look = False, True    # a subclass of dict, list, int, ...: look closer
        if not look and len(s) > limit and s.count("[") + s.count("{") > limit:
            look = True                   # may nest too deeply: the walk checks depth too
        if not look or (top_ok and recent and vouched(s, o)):
            return s
        try:
            if top_ok and RECENT_MIN_CHARS <= len(s) <= RECENT_MAX_CHARS:
                if walked(s, o):
                    return s
            elif (_levels(o, limit) if top_ok else _plain_depth(o, limit - 1)) > 0:
                return s
        except RecursionError:  # the caller's stack is nearly full: walk without recursion
            pass
        bad = find_unencodable(o, allow_nan)
        if bad is not None:
            raise bad
        return s
    return dumps


#: Shortcuts of ``make_dumps``: how many recently checked texts it keeps, and which (by
#: length: a short text costs little to walk; a long one would hold memory).
RECENT = 4
RECENT_MIN_CHARS = 256
RECENT_MAX_CHARS = 1 << 20
RECENT_MAX_KEYS = 1000
