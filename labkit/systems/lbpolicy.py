"""Load-balancing policies: which backend gets the next request.

Theory of operation. A policy is a small object with one method, ``pick(candidates, view,
rng, key=None) -> backend``: ``candidates`` are the backends a balancer may use now (healthy
ones, or all of them in panic), ``view`` is what the balancer knows about their load (a
``LoadView``: ``in_flight(b)``, ``ewma_ms(b)``, ``weight(b)`` -- possibly stale), ``rng`` is an
injected ``random.Random`` and ``key`` a client key for the hashing policies. The same
objects drive ``labkit.systems.balancer.Balancer`` (a real reverse proxy service) and
``labkit.systems.lbmodel`` (the fast queueing model used for sweeps), so a number measured
in one is a number about the other's policy.

Sources: round robin and smooth weighted round robin as nginx's ``ngx_http_upstream_round_robin.c``
(each pick adds every weight to its current value, takes the largest and subtracts the total);
least connections as nginx ``least_conn`` and HAProxy ``balance leastconn``; IP hash as nginx
``ip_hash`` (keys on the first three octets of an IPv4 address: one /24 lands on one
backend); least response time as an EWMA of observed latency (Envoy's and Finagle's "peak
EWMA" family); random; and power of two choices (Mitzenmacher, "The Power of Two Choices in
Randomized Load Balancing", IEEE TPDS 2001; HAProxy ``balance random(2)``, Envoy
``LEAST_REQUEST`` with ``choice_count: 2``).
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any, Callable, Protocol, Sequence

from .partitioning import HashRing, stable_hash


class LoadView(Protocol):
    """What a policy may read about a backend (all possibly stale)."""

    def in_flight(self, backend: str) -> float: ...   # requests sent and not yet answered
    def ewma_ms(self, backend: str) -> float: ...     # smoothed response time, ms (0 = unknown)
    def weight(self, backend: str) -> float: ...      # configured capacity share, > 0


class Policy:
    """Base class: ``pick`` one of ``candidates`` (a non-empty sequence of backend names)."""

    name = "policy"
    uses_key = False

    def pick(self, candidates: Sequence[str], view: LoadView, rng: random.Random, key: Any = None) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class RoundRobin(Policy):
    """Each candidate in turn (nginx's default without weights)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates, view, rng, key=None):
        b = candidates[self._next % len(candidates)]
        self._next += 1
        return b


class SmoothWeightedRoundRobin(Policy):
    """nginx's smooth weighted round robin: weights 5, 1, 1 give a a b a c a a, not a a a a a b c.
    Each pick: ``current[b] += weight(b)`` for every candidate; choose the largest current;
    subtract the sum of weights from it."""

    name = "weighted_round_robin"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates, view, rng, key=None):
        total = 0.0
        best = None
        for b in candidates:
            w = view.weight(b)
            total += w
            c = self._current.get(b, 0.0) + w
            self._current[b] = c
            if best is None or c > self._current[best]:
                best = b
        self._current[best] -= total
        return best


class Random(Policy):
    """A uniformly random candidate: no state, no information (the baseline)."""

    name = "random"

    def pick(self, candidates, view, rng, key=None):
        return candidates[rng.randrange(len(candidates))]


class LeastConnections(Policy):
    """The candidate with the fewest requests in flight per unit of weight (weights default to
    1); ties broken at random (a fixed tie order would send every tie to the first backend)."""

    name = "least_connections"

    def pick(self, candidates, view, rng, key=None):
        best: list[str] = []
        low = float("inf")
        for b in candidates:
            n = view.in_flight(b) / view.weight(b)
            if n < low:
                low, best = n, [b]
            elif n == low:
                best.append(b)
        return best[0] if len(best) == 1 else best[rng.randrange(len(best))]


class PowerOfTwoChoices(Policy):
    """Two distinct candidates at random; the one with fewer requests in flight per unit of
    weight (ties: the first drawn). ``d`` choices in general (Mitzenmacher: max load ln ln n / ln d + O(1))."""

    name = "power_of_two"

    def __init__(self, d: int = 2) -> None:
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"PowerOfTwoChoices: d must be a whole number >= 1, got {d!r}")
        self.d = d

    def pick(self, candidates, view, rng, key=None):
        if len(candidates) <= self.d:
            drawn = list(candidates)
            rng.shuffle(drawn)
        else:
            drawn = rng.sample(list(candidates), self.d)
        return min(drawn, key=lambda b: view.in_flight(b) / view.weight(b))


class LeastResponseTime(Policy):
    """The candidate with the lowest EWMA latency x (in flight + 1): fast backends win, but a
    queue builds their score up. An unmeasured backend (EWMA 0) is tried first."""

    name = "least_response_time"

    def pick(self, candidates, view, rng, key=None):
        scores = [(view.ewma_ms(b) * (view.in_flight(b) + 1), rng.random(), b) for b in candidates]
        return min(scores)[2]


def ipv4_prefix24(address: str) -> str:
    """The key nginx's ``ip_hash`` uses: the first three octets of an IPv4 address
    (``"10.1.2.3"`` -> ``"10.1.2"``); anything else (IPv6, a node id) is returned whole."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return ".".join(address.split(".")[:3]) if ip.version == 4 else address


class IPHash(Policy):
    """``hash(client address) mod N`` over the candidates; with ``prefix24`` (nginx's
    behaviour) only the first three octets count, so a whole /24 (one office behind NAT, one
    mobile carrier's gateway) lands on one backend."""

    name = "ip_hash"
    uses_key = True

    def __init__(self, prefix24: bool = True) -> None:
        self.prefix24 = prefix24

    def pick(self, candidates, view, rng, key=None):
        if key is None:
            raise ValueError("IPHash.pick needs key= (the client address)")
        k = ipv4_prefix24(str(key)) if self.prefix24 else str(key)
        return candidates[stable_hash(k) % len(candidates)]


class ModNAffinity(Policy):
    """Session affinity by ``hash(key) mod N``: cheap, and when N changes most keys move."""

    name = "mod_n"
    uses_key = True

    def pick(self, candidates, view, rng, key=None):
        if key is None:
            raise ValueError("ModNAffinity.pick needs key= (the session key)")
        return candidates[stable_hash(str(key)) % len(candidates)]


class RingAffinity(Policy):
    """Session affinity by consistent hashing (chapter 03's ``HashRing``): when a backend
    leaves only its ~1/N of the keys move. The ring is rebuilt when the candidate set
    changes; a key whose owner is not a candidate walks on to the next one."""

    name = "ring_hash"
    uses_key = True

    def __init__(self, vnodes: int = 100) -> None:
        self.vnodes = vnodes
        self._ring: HashRing | None = None
        self._members: tuple[str, ...] = ()

    def pick(self, candidates, view, rng, key=None):
        if key is None:
            raise ValueError("RingAffinity.pick needs key= (the session key)")
        members = tuple(sorted(candidates))
        if self._ring is None or members != self._members:
            self._ring, self._members = HashRing(members, vnodes=self.vnodes), members
        return self._ring.owner(str(key))


POLICIES: dict[str, Callable[..., Policy]] = {
    p.name: p for p in (RoundRobin, SmoothWeightedRoundRobin, Random, LeastConnections, PowerOfTwoChoices,
                        LeastResponseTime, IPHash, ModNAffinity, RingAffinity)}


def make_policy(policy: Any, **options: Any) -> Policy:
    """A fresh ``Policy`` from a name in ``POLICIES`` (``"round_robin"``, ``"weighted_round_robin"``,
    ``"random"``, ``"least_connections"``, ``"power_of_two"``, ``"least_response_time"``,
    ``"ip_hash"``, ``"mod_n"``, ``"ring_hash"``), a Policy subclass or factory, or an instance
    (returned as is). ``ValueError`` names the choices for an unknown name."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown load-balancing policy {policy!r}; choose one of {sorted(POLICIES)}")
        return POLICIES[policy](**options)
    if callable(policy):
        p = policy(**options)
        if not hasattr(p, "pick"):
            raise TypeError(f"policy factory {policy!r} returned {p!r}, which has no pick(candidates, view, rng, key)")
        return p
    raise TypeError(f"policy must be a name, a Policy or a factory of one, got {policy!r}")
