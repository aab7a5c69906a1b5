"""What invariants, goals, prunes and history reducers see: ``Step`` and ``StateView``.

A search state (see ``executor``) is a tuple of bytes and tuples; the functions a reader
writes get a read-only view of it instead, with the names of a cluster:

* ``s.nodes[id]`` -- the node object, or None while the node is down (read it, do not change
  it: views of several states may share one unchanged node); ``s.status[id]`` -- ``"up"`` or ``"down"``;
  ``s.incarnation[id]``; ``s.timers[id]`` -- the names of its armed timers;
* ``s.storage[id]`` -- its durable storage as a dict of JSON values;
* ``s.network`` -- the messages in flight, as ``Envelope(src, dst, type, body)``;
* ``s.history`` -- the value of the optional history reducer; ``s.depth`` -- steps so far.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Mapping, NamedTuple

_KINDS = {"d": "deliver", "t": "timer", "c": "crash", "r": "restart", "x": "drop", "2": "duplicate"}


class Envelope(NamedTuple):
    """A message in flight: ``src``, ``dst``, ``type`` and its ``body`` (a dict)."""
    src: str
    dst: str
    type: str
    body: dict

    def __getitem__(self, key: Any) -> Any:          # type: ignore[override]
        if isinstance(key, str):
            return self.body[key]
        return tuple.__getitem__(self, key)


class Step(NamedTuple):
    """One step of a trace: ``kind`` (deliver | timer | crash | restart | drop | duplicate),
    the ``node`` it happens at, and for message steps ``src``, ``dst``, ``type``, ``body``;
    for a timer, ``name``."""
    kind: str
    node: str
    src: str | None = None
    dst: str | None = None
    type: str | None = None
    body: dict | None = None
    name: str | None = None

    @staticmethod
    def of(ev: tuple, m: tuple | None = None) -> "Step":
        kind = _KINDS[ev[0]]
        if ev[0] in ("d", "x", "2"):
            src, dst, type, body_json = ev[1:5]
            return Step(kind, dst, src, dst, type, json.loads(body_json))
        if ev[0] == "t":
            return Step(kind, ev[1], name=ev[2])
        return Step(kind, ev[1])

    def __str__(self) -> str:
        if self.kind in ("deliver", "drop", "duplicate"):
            body = json.dumps(self.body, separators=(",", ":"))
            if len(body) > 80:
                body = body[:77] + "..."
            return f"{self.kind} {self.type} {self.src}->{self.dst} {body}"
        if self.kind == "timer":
            return f"timer {self.name!r} fires at {self.node}"
        return f"{self.kind} {self.node}"


class _LazyNodes(Mapping):
    def __init__(self, load: Callable[[str], Any], ids: tuple[str, ...]) -> None:
        self._load, self._ids, self._cache = load, ids, {}

    def __getitem__(self, k: str) -> Any:
        c = self._cache
        if k not in c:
            if k not in self._ids:
                raise KeyError(f"no node {k!r}; nodes are {list(self._ids)}")
            c[k] = self._load(k)
        return c[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class StateView:
    """A read-only view of one state (see the module docstring)."""

    def __init__(self, ids: tuple[str, ...], load: Callable[[str], Any], status: Mapping[str, str],
                 incarnation: Mapping[str, int], timers: Mapping[str, tuple[str, ...]],
                 storage: Callable[[], dict[str, dict]], network: Callable[[], tuple[Envelope, ...]],
                 history: Callable[[], Any], depth: int) -> None:
        self.ids = ids
        self.nodes: Mapping[str, Any] = _LazyNodes(load, ids)
        self.status, self.incarnation, self.timers, self.depth = status, incarnation, timers, depth
        self._storage, self._network, self._history = storage, network, history
        self._up: dict[str, Any] | None = None

    @property
    def storage(self) -> dict[str, dict]:
        v = self._storage
        if callable(v):
            v = self._storage = v()
        return v

    @property
    def network(self) -> tuple[Envelope, ...]:
        v = self._network
        if callable(v):
            v = self._network = v()
        return v

    @property
    def history(self) -> Any:
        v = self._history
        if callable(v):
            v = self._history = v()
        return v

    def up(self) -> dict[str, Any]:
        """The nodes that are up: {id: node}."""
        u = self._up
        if u is None:
            st, nodes = self.status, self.nodes
            u = self._up = {n: nodes[n] for n in self.ids if st[n] == "up"}
        return u

    def __repr__(self) -> str:
        return (f"<StateView depth={self.depth} status={self.status} in flight={len(self.network)}>")


def view_of(ex: Any, s: tuple, depth: int) -> StateView:
    """The view of executor state ``s``."""
    return _ExecView(ex, s, depth)


class _ExecNodes(Mapping):
    """``s.nodes`` of an executor state: each node loaded on first use (through the
    executor's cache of node objects by their bytes)."""

    __slots__ = ("_ex", "_slots", "_cache")

    def __init__(self, ex: Any, slots: tuple) -> None:
        self._ex, self._slots, self._cache = ex, slots, {}

    def __getitem__(self, k: str) -> Any:
        c = self._cache
        n = c.get(k, c)
        if n is c:
            i = self._ex.index.get(k)
            if i is None:
                raise KeyError(f"no node {k!r}; nodes are {list(self._ex.ids)}")
            n = c[k] = self._ex.load(k, self._slots[i][2])
        return n

    def __iter__(self) -> Iterator[str]:
        return iter(self._ex.ids)

    def __len__(self) -> int:
        return len(self._ex.ids)


class _ExecView(StateView):
    """The ``StateView`` of an executor state: every part computed on first use, from the
    state's tuples (most invariants read one or two parts of most states)."""

    def __init__(self, ex: Any, s: tuple, depth: int) -> None:   # (StateView.__init__ not called)
        self._ex, self._s = ex, s
        self.ids = ex.ids
        self.depth = depth
        self.nodes = _ExecNodes(ex, s[0])
        self._up = None
        self._parts: dict[str, Any] = {}

    def _part(self, name: str, make: Callable[[], Any]) -> Any:
        p = self._parts
        v = p.get(name)
        if v is None:
            v = p[name] = make()
        return v

    @property  # type: ignore[override]
    def status(self) -> dict[str, str]:
        return self._part("status", lambda: {n: ("up" if sl[0] else "down") for n, sl in zip(self.ids, self._s[0])})

    @property  # type: ignore[override]
    def incarnation(self) -> dict[str, int]:
        return self._part("incarnation", lambda: {n: sl[1] for n, sl in zip(self.ids, self._s[0])})

    @property  # type: ignore[override]
    def timers(self) -> dict[str, tuple[str, ...]]:
        return self._part("timers", lambda: {n: tuple(t[0] for t in sl[3]) for n, sl in zip(self.ids, self._s[0])})

    @property
    def storage(self) -> dict[str, dict]:
        return self._part("storage", lambda: {n: {k: json.loads(v) for k, v in sl[4]}
                                              for n, sl in zip(self.ids, self._s[0])})

    @property
    def network(self) -> tuple[Envelope, ...]:
        return self._part("network", lambda: tuple(Envelope(m[0], m[1], m[2], json.loads(m[3])) for m in self._s[1]))

    @property
    def history(self) -> Any:
        hist = self._s[3]
        if hist is None:
            return None
        from .encoding import decode
        return self._part("history", lambda: decode(hist[0]))

    def up(self) -> dict[str, Any]:
        """The nodes that are up: {id: node}."""
        u = self._up
        if u is None:
            u = self._up = {}
            c, load = self.nodes._cache, self._ex.load
            for n, sl in zip(self.ids, self._s[0]):
                if sl[0]:
                    v = c.get(n)
                    if v is None:
                        v = c[n] = load(n, sl[2])
                    u[n] = v
        return u


class _Lazy(Mapping):
    """A dict computed on first use."""

    def __init__(self, make: Callable[[], dict]) -> None:
        self._make, self._d = make, None

    def _get(self) -> dict:
        if self._d is None:
            self._d = self._make()
        return self._d

    def __getitem__(self, k: str) -> Any:
        return self._get()[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


def judge(fn: Callable[[StateView], Any], view: StateView, what: str) -> str | None:
    """Run an invariant: None if it holds, else the message of its violation."""
    r = fn(view)
    if r is True:
        return None
    if isinstance(r, str):
        return r or f"{_name(fn)} failed"
    if r is None:
        raise TypeError(f"{what} {_name(fn)}(s) returned None: return True when it holds, and False or a "
                        f"string saying what is wrong when it does not")
    return None if r else f"{_name(fn)} failed"


def reached(fn: Callable[[StateView], Any], view: StateView) -> str | None:
    """Run a goal or a prune: a description (truthy) if it holds, else None."""
    r = fn(view)
    if not r:
        return None
    return r if isinstance(r, str) else _name(fn)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
