"""The network model: which messages arrive, when, and how often.

Theory of operation. Faults are rules over *directed links* between nodes:

* ``groups``: a partition. Nodes in different groups cannot talk (rule ``"partition"``).
* ``cuts``: directed links that are cut (rule ``"cut"``); a two-way cut is two one-way cuts.
* ``rules``: link settings (delay, jitter, distribution, drop, duplicate, reorder, bandwidth),
  each for a source and destination pattern where ``"*"`` matches any node. Later rules
  override the fields they set.

``route(src, dst, rng)`` is asked once per message when it enters the network and returns the
delays of the copies to deliver (none when dropped, two when duplicated) and the rule that
dropped it. ``blocked(src, dst)`` is asked again when a delayed copy is due, so a partition
applies to every message that has not yet been delivered when the call returns -- including
messages already queued for delay.

Bandwidth. A link with ``bandwidth`` (bytes per second) sends one message at a time: a
message of ``size`` bytes occupies it for ``size / bandwidth`` s (its serialization delay),
starting when the link is free -- so messages queue behind each other, first come first
served, and a burst leaves as a train. ``transmit(src, dst, size, now)`` keeps each directed
link's "busy until" time and returns how long the message waits and is sent (ms); the
link's delay is added after it (propagation). The size is the message's wire encoding (its
JSON line, in UTF-8 bytes). A duplicated copy is the network's, made after sending: it adds
no second transmission. This is the link of ns-3's point-to-point model (a device with a
``DataRate`` sends one packet at a time, each for size / rate, while the rest wait in its
queue). Who sends first is decided by when the model sees the message: the simulator at the
send, the processes runtime at the receiver, in arrival order.

Clients (the notebook) sit outside the model: faults apply between nodes, as in Jepsen and
Maelstrom, where client links are perfect so that anomalies are the system's, not the test's.
The same model drives both runtimes; ``state()``/``load_state()`` ship it to node processes.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Any, Iterable

from ..argcheck import MAX_MS
from ..errors import ArgumentError, UnknownNode

DISTRIBUTIONS = ("constant", "uniform", "exponential")
#: The largest link bandwidth, bytes per second (1 TB/s: faster than any real link).
MAX_BANDWIDTH = 1e12


@dataclass(frozen=True)
class Link:
    """Settings of one directed link. Times in ms, probabilities in [0, 1].

    * ``delay``: base one-way delay. ``distribution``:
      ``"constant"`` -- always ``delay``;
      ``"uniform"`` -- uniform in ``delay ± jitter``;
      left out, it is ``"uniform"`` when ``jitter`` > 0, else ``"constant"``;
      ``"exponential"`` -- exponential with mean ``delay`` (a long tail; ``jitter`` unused).
    * ``drop``: probability a message is lost.
    * ``duplicate``: probability a second copy is delivered (with its own delay).
    * ``reorder``: probability a message is held back an extra ``reorder_ms * U(0, 1)``,
      so that messages sent after it overtake it.
    * ``bandwidth``: bytes per second the link sends, one message at a time (messages queue
      behind each other); ``None`` (the default) is no limit. 125_000 is 1 Mbit/s.
    """

    delay: float = 0.0
    jitter: float = 0.0
    distribution: str | None = None
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 100.0
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        bw = self.bandwidth
        if bw is not None:
            if isinstance(bw, bool) or not isinstance(bw, (int, float)) or not math.isfinite(bw) \
                    or not 0 < bw <= MAX_BANDWIDTH:
                raise ArgumentError(f"link bandwidth is bytes per second: give a number in (0, {MAX_BANDWIDTH:g}] "
                                    f"(125_000 is 1 Mbit/s), or None for no limit; got {bw!r}")
            object.__setattr__(self, "bandwidth", float(bw))
        for name in ("delay", "jitter", "reorder_ms"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not 0 <= v <= MAX_MS:
                raise ArgumentError(f"link {name} must be a number of ms >= 0 (finite, at most {MAX_MS:g}), "
                                    f"got {v!r}")
        for name in ("drop", "duplicate", "reorder"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                raise ArgumentError(f"link {name} is a probability: give a number in [0, 1], got {v!r}")
        if self.distribution is None:
            object.__setattr__(self, "distribution", "uniform" if self.jitter else "constant")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if self.distribution == "constant" and self.jitter:
            raise ValueError("a constant delay has no jitter: give distribution='uniform' (delay ± jitter) "
                             "or leave jitter out")

    @property
    def perfect(self) -> bool:
        return self == PERFECT

    def sample_delay(self, rng: random.Random) -> float:
        d = self.delay
        if self.distribution == "uniform":
            d = max(0.0, rng.uniform(d - self.jitter, d + self.jitter))
        elif self.distribution == "exponential":
            d = rng.expovariate(1.0 / d) if d > 0 else 0.0
        if self.reorder and rng.random() < self.reorder:
            d += self.reorder_ms * rng.random()
        return d


PERFECT = Link()
_LINK_FIELDS = {f.name for f in fields(Link)}


class NetworkModel:
    """Partitions, cuts and link settings between the nodes ``nodes``."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes: tuple[str, ...] = tuple(nodes)
        self._node_set = frozenset(self.nodes)
        self.groups: dict[str, int] = {}
        self.cuts: set[tuple[str, str]] = set()
        self.rules: list[tuple[str, str, dict[str, Any]]] = []
        self._links: dict[tuple[str, str], Link] = {}
        self._faulty = False
        #: Some rule sets a bandwidth: callers ask ``transmit`` for each message that is routed.
        self.shaped = False
        self._busy_until: dict[tuple[str, str], float] = {}   # a link's sending ends then (ms)

    # -- changing the model ----------------------------------------------------------------
    def _check(self, *names: str, wildcard: bool = False) -> None:
        for n in names:
            if wildcard and n == "*":
                continue
            if n not in self._node_set:
                hint = " (faults apply between nodes; clients reach nodes directly)" if n.startswith("c") else ""
                raise UnknownNode(f"unknown node {n!r}{hint}; nodes are {list(self.nodes)}"
                                  + (" or '*'" if wildcard else ""))

    def partition(self, *groups: Iterable[str]) -> list[list[str]]:
        """Split the nodes into ``groups``; nodes named in no group form one more group."""
        if not groups:
            raise ValueError("partition needs at least one group, e.g. partition(['n1'], ['n2', 'n3'])")
        assign: dict[str, int] = {}
        out: list[list[str]] = []
        for i, g in enumerate(groups):
            if isinstance(g, str):
                g = [g]
            g = list(g)
            self._check(*g)
            for n in g:
                if n in assign:
                    raise ValueError(f"node {n!r} is in two groups of the partition")
                assign[n] = i
            out.append(g)
        rest = [n for n in self.nodes if n not in assign]
        if rest:
            for n in rest:
                assign[n] = len(groups)
            out.append(rest)
        self.groups = assign
        self._changed()
        return out

    def cut(self, a: str, b: str, one_way: bool = False) -> None:
        self._check(a, b, wildcard=True)
        for s in self._expand(a):
            for d in self._expand(b):
                if s != d:
                    self.cuts.add((s, d))
                    if not one_way:
                        self.cuts.add((d, s))
        self._changed()

    def uncut(self, a: str, b: str, one_way: bool = False) -> None:
        """Undo ``cut(a, b, one_way)``: restore a -> b (and b -> a unless ``one_way``)."""
        self._check(a, b, wildcard=True)
        for s in self._expand(a):
            for d in self._expand(b):
                self.cuts.discard((s, d))
                if not one_way:
                    self.cuts.discard((d, s))
        self._changed()

    def heal(self) -> None:
        """Remove partitions and cuts (link settings stay: see ``clear_links``)."""
        self.groups = {}
        self.cuts = set()
        self._changed()

    def set_link(self, src: str, dst: str, **settings: Any) -> Link:
        """Change settings of the links ``src -> dst`` (either may be ``"*"``)."""
        self._check(src, dst, wildcard=True)
        bad = set(settings) - _LINK_FIELDS
        if bad:
            raise TypeError(f"unknown link setting(s) {sorted(bad)}; known: {sorted(_LINK_FIELDS)}")
        self.rules.append((src, dst, dict(settings)))
        self._changed()
        try:  # validate every link the rule touches now, not at the next message
            links = [self.link(s, d) for s in self._expand(src) for d in self._expand(dst)]
        except (TypeError, ValueError):
            self.rules.pop()
            self._changed()
            raise
        return links[0]

    def clear_links(self) -> None:
        self.rules = []
        self._changed()

    def _expand(self, pattern: str) -> tuple[str, ...]:
        return self.nodes if pattern == "*" else (pattern,)

    def _changed(self) -> None:
        self._links.clear()
        self._faulty = bool(self.groups or self.cuts or self.rules)
        self.shaped = any(st.get("bandwidth") is not None for _, _, st in self.rules)

    # -- asking the model ------------------------------------------------------------------
    def blocked(self, src: str, dst: str) -> str | None:
        """The rule that stops ``src -> dst`` right now, or None."""
        if not self._faulty:
            return None
        if (src, dst) in self.cuts:
            return "cut"
        g = self.groups
        if g and src in g and dst in g and g[src] != g[dst]:
            return "partition"
        return None

    def link(self, src: str, dst: str) -> Link:
        key = (src, dst)
        lk = self._links.get(key)
        if lk is None:
            merged: dict[str, Any] = {}
            for s, d, settings in self.rules:
                if (s == "*" or s == src) and (d == "*" or d == dst):
                    merged.update(settings)
            lk = Link(**merged) if merged else PERFECT
            self._links[key] = lk
        return lk

    def route(self, src: str, dst: str, rng: random.Random) -> tuple[list[float], str | None]:
        """Delays (ms) of the copies of a message to deliver, and the rule if it was dropped."""
        if not self._faulty or src not in self._node_set or dst not in self._node_set:
            return [0.0], None  # client links sit outside the model
        rule = self.blocked(src, dst)
        if rule:
            return [], rule
        lk = self.link(src, dst)
        if lk is PERFECT:
            return [0.0], None
        if lk.drop and rng.random() < lk.drop:
            return [], "drop"
        delays = [lk.sample_delay(rng)]
        if lk.duplicate and rng.random() < lk.duplicate:
            delays.append(lk.sample_delay(rng))
        return delays, None

    def transmit(self, src: str, dst: str, size: int, now: float) -> float:
        """ms from ``now`` until a message of ``size`` bytes has left ``src -> dst``: the wait
        for the link, plus ``size / bandwidth``. 0 for a link without a bandwidth. The link
        stays busy until then (each directed link is one FIFO sender)."""
        if src not in self._node_set or dst not in self._node_set:
            return 0.0
        bw = self.link(src, dst).bandwidth
        if bw is None:
            return 0.0
        key = (src, dst)
        done = max(now, self._busy_until.get(key, 0.0)) + size * 1000.0 / bw
        self._busy_until[key] = done
        return done - now

    def describe(self) -> str:
        parts = []
        if self.groups:
            by: dict[int, list[str]] = {}
            for n, g in self.groups.items():
                by.setdefault(g, []).append(n)
            parts.append("partition " + " | ".join(",".join(v) for _, v in sorted(by.items())))
        if self.cuts:
            parts.append("cut " + ", ".join(f"{a}->{b}" for a, b in sorted(self.cuts)))
        for s, d, st in self.rules:
            parts.append(f"link {s}->{d} " + " ".join(f"{k}={v}" for k, v in st.items()))
        return "; ".join(parts) or "healthy"

    # -- shipping to node processes --------------------------------------------------------
    def state(self) -> dict:
        return {"groups": dict(self.groups), "cuts": [list(c) for c in sorted(self.cuts)],
                "rules": [[s, d, dict(st)] for s, d, st in self.rules]}

    def load_state(self, state: dict) -> None:
        self.groups = dict(state["groups"])
        self.cuts = {tuple(c) for c in state["cuts"]}  # type: ignore[misc]
        self.rules = [(s, d, dict(st)) for s, d, st in state["rules"]]
        self._changed()
