"""Sequential specifications for the linearizability checker (Knossos's models, in Python).

A model is a deterministic state machine: ``init()`` gives the first state, ``step(state, f,
value)`` the state after an operation that completed ``ok`` with ``value`` (its result for a
read, its argument otherwise), or ``None`` when that operation is impossible in ``state``.
States must be hashable (they key the checker's cache) and values arrive frozen (lists as
tuples, see ``labkit.history.freeze``).

States are never ``None`` -- ``None`` means "impossible" -- so a register holding nothing is
in the state ``NIL`` (a read or write of ``None`` means ``NIL``).

``step_info(state, f, value)`` is used for ``info`` operations, whose result is unknown:
``value`` is then the invocation's argument. Pure reads (``is_read(f)``) that end in
``info`` tell nothing and are dropped before the search.

Every operation acts on one object; a history with keys is split per key by the checker,
each key an independent copy of the model (P-compositionality).
"""
from __future__ import annotations

from typing import Any, Hashable, Protocol, runtime_checkable

__all__ = ["NIL", "Model", "ModelBase", "Register", "CASRegister", "KV", "Counter", "SetModel", "FIFOQueue",
           "Mutex", "MODELS", "model"]


class _Nil:
    """The state of an empty register (a value of ``None``); prints as ``nil``."""

    _it: "_Nil | None" = None

    def __new__(cls) -> "_Nil":
        if cls._it is None:
            cls._it = super().__new__(cls)
        return cls._it

    def __repr__(self) -> str:
        return "nil"

    def __reduce__(self) -> str:
        return "NIL"


#: The state of a register or key that holds nothing.
NIL = _Nil()


def _s(value: Any) -> Any:
    """A value as a state: ``None`` becomes ``NIL``."""
    return NIL if value is None else value


@runtime_checkable
class Model(Protocol):
    """What the checker needs from a model."""

    name: str
    fs: frozenset

    def init(self) -> Hashable: ...
    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None: ...
    def step_info(self, state: Hashable, f: str, value: Any) -> Hashable | None: ...
    def is_read(self, f: str) -> bool: ...


class ModelBase:
    """Defaults: ``step_info = step``; reads are the functions listed in ``reads``."""

    name = "model"
    fs: frozenset = frozenset()
    reads: frozenset = frozenset()

    def init(self) -> Hashable:
        return NIL

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        raise NotImplementedError

    def step_info(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        return self.step(state, f, value)

    def is_read(self, f: str) -> bool:
        return f in self.reads

    def check_value(self, f: str, value: Any, info: bool) -> str | None:
        """What this model expects of ``value`` for ``f``, if ``value`` is not that; else None.
        The checker calls it before searching so that a bad value is named, not crashed on."""
        return None

    def __repr__(self) -> str:
        return f"<model {self.name}>"


class Register(ModelBase):
    """A read/write register, initially ``initial`` (``None``). ``read`` must return the
    current value -- ``None`` included: a read of ``None`` saw an empty register."""

    name = "register"
    fs = frozenset({"read", "write"})
    reads = frozenset({"read"})
    #: Ops that set the state whatever it was. Declaring them tells the checker that every
    #: other op observes the state, so an ``info`` op need only be placed right before an op
    #: that observes what it left (else the next op overwrites it unseen).
    blind_writes = frozenset({"write"})

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def init(self) -> Hashable:
        return _s(self.initial)

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "write":
            return _s(value)
        return state if state == _s(value) else None


    def may_read(self, state: Hashable, value: Any, writes: list) -> bool:
        """Can a read of ``value`` succeed after some of ``writes`` ((f, value) of ops not
        placed yet) are applied to ``state``? False only when certainly not (the checker's
        lookahead prunes on it); True is always a safe answer."""
        v = _s(value)
        if state == v:
            return True
        for f, x in writes:
            if (f == "write" and _s(x) == v) or (f == "cas" and isinstance(x, tuple) and len(x) == 2
                                                 and _s(x[1]) == v):
                return True
        return False


class CASRegister(Register):
    """A register with compare-and-set: ``cas`` with value ``(from, to)`` succeeds only when
    the register holds ``from``."""

    name = "cas-register"
    fs = frozenset({"read", "write", "cas"})

    def check_value(self, f: str, value: Any, info: bool) -> str | None:
        return _check_cas(f, value)

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "cas":
            old, new = value
            return _s(new) if state == _s(old) else None
        return super().step(state, f, value)


def _check_cas(f: str, value: Any) -> str | None:
    if f == "cas" and not (isinstance(value, tuple) and len(value) == 2):
        return "a [from to] pair for cas"
    return None


def _empty(x: Any) -> bool:
    return x is None or x is NIL or x == "" or x == ()


class KV(ModelBase):
    """One key of a key-value store: ``get``/``read``, ``put``/``write``, ``append``, ``cas``.

    A never-written key reads as empty: ``None``, ``""`` or ``[]`` all match. ``append`` of a
    string concatenates (from ``""``); of anything else, appends an element to a list (from
    ``[]``); ``cas (from, to)`` compares with the same empty-equals-empty rule."""

    name = "kv"
    fs = frozenset({"get", "read", "put", "write", "append", "cas"})
    reads = frozenset({"get", "read"})

    def check_value(self, f: str, value: Any, info: bool) -> str | None:
        return _check_cas(f, value)

    def may_read(self, state: Hashable, value: Any, writes: list) -> bool:
        """See ``Register.may_read``: only a put, a cas, or appends that extend the state to
        ``value`` (value starts with the state, then with one of the appends) can get there."""
        return _kv_may_read(state, value, writes)

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f in ("get", "read"):
            return state if _same(state, value) else None
        if f in ("put", "write"):
            return _s(value)
        if f == "append":
            if isinstance(value, str):
                if _empty(state):
                    return value
                return state + value if isinstance(state, str) else None
            if _empty(state):
                return (value,)
            return state + (value,) if isinstance(state, tuple) else None
        old, new = value  # cas
        return _s(new) if _same(state, old) else None


def _kv_may_read(state: Hashable, value: Any, writes: list) -> bool:
    if _same(state, value):
        return True
    appends = [x for f, x in writes if f == "append"]

    def grows_into(base: Any) -> bool:     # base + some appends == value?
        if not appends:
            return False
        if _empty(base):
            base = "" if isinstance(value, str) else ()
        if isinstance(base, str) and isinstance(value, str):
            n = len(base)
            return len(value) > n and value.startswith(base) and any(
                isinstance(a, str) and value.startswith(a, n) for a in appends)
        if isinstance(base, tuple) and isinstance(value, tuple):
            n = len(base)
            return len(value) > n and value[:n] == base and value[n] in appends
        return False

    if grows_into(state):
        return True
    for f, x in writes:
        if f == "cas":
            return True                     # not worth modelling: never prune past a cas
        if f in ("put", "write") and (_same(_s(x), value) or grows_into(_s(x))):
            return True
    return False


def _same(a: Any, b: Any) -> bool:
    return a == b or (_empty(a) and _empty(b))


class Counter(ModelBase):
    """A counter from 0: ``add``/``increment`` by ``value`` (1 when ``None``); ``read``."""

    name = "counter"
    fs = frozenset({"add", "increment", "read"})
    reads = frozenset({"read"})

    def init(self) -> Hashable:
        return 0

    def check_value(self, f: str, value: Any, info: bool) -> str | None:
        if f != "read" and value is None:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "a number" + (" to add" if f != "read" else " read back")
        return None

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "read":
            return state if value == state else None
        return state + (1 if value is None else value)  # type: ignore[operator]


class SetModel(ModelBase):
    """A grow-only set: ``add`` an element; ``read`` returns all elements (any order)."""

    name = "set"
    fs = frozenset({"add", "read"})
    reads = frozenset({"read"})

    def init(self) -> Hashable:
        return frozenset()

    def check_value(self, f: str, value: Any, info: bool) -> str | None:
        if f == "read" and not (value is None or isinstance(value, (tuple, frozenset))):
            return "a read's value to be a vector or set of the elements"
        return None

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "add":
            return state | {value}  # type: ignore[operator]
        seen = frozenset(value) if isinstance(value, (tuple, frozenset)) else None
        if value is None:
            seen = frozenset()
        return state if seen == state else None


class FIFOQueue(ModelBase):
    """A FIFO queue: ``enqueue`` a value; ``dequeue`` returns the head. An ``ok`` dequeue of
    ``None`` means the queue was seen empty. An ``info`` dequeue, if it happened, removed
    whatever was at the head."""

    name = "fifo-queue"
    fs = frozenset({"enqueue", "dequeue"})

    def init(self) -> Hashable:
        return ()

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "enqueue":
            return state + (value,)  # type: ignore[operator]
        if not state:
            return state if value is None else None
        return state[1:] if state[0] == value else None  # type: ignore[index]

    def step_info(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "dequeue":
            return state[1:] if state else None  # type: ignore[index]
        return self.step(state, f, value)


class Mutex(ModelBase):
    """A lock: ``acquire`` when free, ``release`` when held."""

    name = "mutex"
    fs = frozenset({"acquire", "release"})

    def init(self) -> Hashable:
        return False

    def step(self, state: Hashable, f: str, value: Any) -> Hashable | None:
        if f == "acquire":
            return True if not state else None
        return False if state else None


#: Model names accepted by ``model()`` and the CLI.
MODELS: dict[str, type[ModelBase]] = {
    "register": Register, "cas-register": CASRegister, "kv": KV, "counter": Counter,
    "set": SetModel, "fifo-queue": FIFOQueue, "mutex": Mutex,
}


def model(m: "str | Model") -> Model:
    """A model instance from a name in ``MODELS`` (or the instance itself)."""
    if isinstance(m, str):
        try:
            return MODELS[m]()
        except KeyError:
            raise ValueError(f"unknown model {m!r}; models are {', '.join(MODELS)}") from None
    if not isinstance(m, Model):
        raise TypeError(f"a model has init/step/step_info/is_read and fs; got {m!r}")
    return m
