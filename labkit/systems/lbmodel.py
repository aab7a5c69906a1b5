"""A fast queueing model of a balancer in front of N servers, for sweeps and tail numbers.

Theory of operation. Requests arrive as a Poisson process at ``load`` x the servers' total
capacity; each server is one worker with a FIFO queue (an M/M/1 queue when service times are
exponential -- Kleinrock, *Queueing Systems* vol. 1, section 3.2) whose mean service time is
1 time unit x its ``slow`` factor. The balancer picks a server with a ``labkit.systems.lbpolicy``
policy -- the very objects ``labkit.systems.balancer.Balancer`` uses -- given what it knows:

* fresh: the true number of requests in flight at each server (one balancer, which counts
  its own connections);
* ``refresh=S``: a snapshot of the in-flight counts taken every ``S`` mean service times
  (load reports, a metrics scrape): between snapshots every pick sees the same numbers;
* ``balancers=k``: k balancers share the arrivals round robin and each counts only the
  requests *it* has in flight -- it sees 1/k of the load.

Latencies are in units of the mean service time (multiply by your service time in ms). The
first ``warmup`` fraction of requests is dropped. This model does in a second what the
simulator's HTTP services do in minutes; ``notebooks/07_load_balancing.ipynb`` checks the
two agree on an ordering at one point.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from .lbpolicy import Policy, make_policy


@dataclass
class ModelResult:
    """What ``simulate`` measured: ``latency`` per kept request (mean service times), the
    count of requests each server got, and ``trace``: ``(time, [in flight per server])``
    samples (every ``sample_every`` time units, for the per-backend load plot), and the
    times of the load reports (``refresh``)."""

    policy: str
    latency: list[float]
    per_server: list[int]
    trace: list[tuple[float, list[int]]] = field(default_factory=list)
    #: When the balancer's snapshot of the load was refreshed (with ``refresh=S``).
    reports: list[float] = field(default_factory=list)
    #: How many hedge copies were sent (``hedge_after``), over all requests.
    hedges: int = 0

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100) of ``latency``, nearest rank."""
        xs = sorted(self.latency)
        if not xs:
            raise ValueError("no latencies measured")
        i = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
        return xs[i]

    def share(self, server: int) -> float:
        """The fraction of all requests ``server`` (an index) received."""
        return self.per_server[server] / max(1, sum(self.per_server))


class _View:
    def __init__(self, counts: list[float], ewma: list[float], weights: list[float]) -> None:
        self.counts, self.ewma, self.weights = counts, ewma, weights

    def in_flight(self, b: int) -> float:
        return self.counts[b]

    def ewma_ms(self, b: int) -> float:
        return self.ewma[b]

    def weight(self, b: int) -> float:
        return self.weights[b]


def simulate(policy: Any, *, servers: int = 10, load: float = 0.9, requests: int = 20_000, seed: int = 0,
             slow: dict[int, float] | None = None, weights: Sequence[float] | None = None,
             refresh: float | None = None, balancers: int = 1, service: str = "exponential",
             warmup: float = 0.1, sample_every: float = 0.0, clients: int = 1000,
             ewma_alpha: float = 0.2, hedge_after: float | None = None) -> ModelResult:
    """Run ``requests`` through a balancer using ``policy`` (a name or a ``Policy``; one fresh
    instance per balancer) in front of ``servers`` single-worker servers at utilisation ``load``.

    ``slow={i: f}``: server i takes f times as long (the offered load counts its lower
    capacity). ``weights``: what weighted policies are told about each server's capacity
    (default 1 each -- right for equal servers, wrong for a slow one). ``refresh`` (mean service
    times) and ``balancers`` make the load information stale (module docstring).
    ``service``: ``"exponential"`` or ``"constant"``. Hash policies get one of ``clients``
    client keys per request. ``hedge_after`` (mean service times): a request not answered by then
    is sent again to another server (picked by the same policy) and its latency is the first
    answer's; the loser is not cancelled, so the copy is extra load (Dean and Barroso, "The Tail
    at Scale", CACM 2013: hedge after the 95th-percentile delay). ``per_server`` counts copies
    too. Raises ``ValueError`` for an impossible setting."""
    if hedge_after is not None and not hedge_after > 0:
        raise ValueError(f"hedge_after is in mean service times and must be > 0, got {hedge_after!r}")
    if not (isinstance(servers, int) and servers >= 1):
        raise ValueError(f"servers must be a whole number >= 1, got {servers!r}")
    if not 0 < load < 1:
        raise ValueError(f"load must be in (0, 1) (utilisation; 1 or more never drains), got {load!r}")
    if refresh is not None and refresh <= 0:
        raise ValueError(f"refresh is in mean service times and must be > 0, got {refresh!r}")
    if not (isinstance(balancers, int) and balancers >= 1):
        raise ValueError(f"balancers must be a whole number >= 1, got {balancers!r}")
    if service not in ("exponential", "constant"):
        raise ValueError(f"service must be 'exponential' or 'constant', got {service!r}")
    factor = [1.0] * servers
    for i, f in (slow or {}).items():
        if not (0 <= i < servers) or f <= 0:
            raise ValueError(f"slow={{server index: factor > 0}}, got {{{i!r}: {f!r}}}")
        factor[i] = float(f)
    w = [1.0] * servers if weights is None else [float(x) for x in weights]
    if len(w) != servers or min(w) <= 0:
        raise ValueError(f"weights needs {servers} positive numbers, got {weights!r}")
    rng = random.Random(seed)
    pick_rng = random.Random(seed * 7919 + 1)
    policies: list[Policy] = [make_policy(policy) for _ in range(balancers)]
    name = getattr(policies[0], "name", type(policies[0]).__name__)
    capacity = sum(1 / f for f in factor)
    rate = load * capacity
    true_count = [0] * servers
    own = [[0] * servers for _ in range(balancers)]
    snapshot = [0] * servers
    ewma = [0.0] * servers
    free_at = [0.0] * servers
    departures: list[tuple[float, int, int, float]] = []   # (time, server, balancer, latency)
    views = [_View(own[k] if balancers > 1 else true_count, ewma, w) for k in range(balancers)]
    stale_view = _View(snapshot, ewma, w)
    candidates = list(range(servers))
    per_server = [0] * servers
    trace: list[tuple[float, list[int]]] = []
    reports: list[float] = []
    skip = int(requests * warmup)
    clock = {"refresh": 0.0, "sample": 0.0}
    lat_of: list[float] = []
    hedges: list[tuple[float, int, float, int]] = []       # (send time, request, arrival time, first server)
    hedged = 0

    def dispatch(t: float, k: int, exclude: int | None = None) -> tuple[int, float]:
        while departures and departures[0][0] <= t:
            _, s, kk, lat = heapq.heappop(departures)
            true_count[s] -= 1
            if balancers > 1:
                own[kk][s] -= 1
            ewma[s] = lat if ewma[s] == 0 else ewma_alpha * lat + (1 - ewma_alpha) * ewma[s]
        if refresh is not None and t >= clock["refresh"]:
            snapshot[:] = true_count
            clock["refresh"] = t + refresh
            reports.append(t)
        if sample_every and t >= clock["sample"]:
            trace.append((t, list(true_count)))
            clock["sample"] = t + sample_every
        view = stale_view if refresh is not None else views[k]
        pol = policies[k]
        key = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(clients) % 256}" \
            if getattr(pol, "uses_key", False) else None
        cands = candidates if exclude is None else [c for c in candidates if c != exclude]
        s = pol.pick(cands, view, pick_rng, key)
        work = (rng.expovariate(1.0) if service == "exponential" else 1.0) * factor[s]
        start = free_at[s] if free_at[s] > t else t
        free_at[s] = start + work
        heapq.heappush(departures, (free_at[s], s, k, free_at[s] - t))
        true_count[s] += 1
        if balancers > 1:
            own[k][s] += 1
        return s, free_at[s]

    def send_hedges(until: float) -> None:
        nonlocal hedged
        while hedges and hedges[0][0] <= until:
            th, i, ta, first = heapq.heappop(hedges)
            s, done = dispatch(th, i % balancers, exclude=first)
            hedged += 1
            lat_of[i] = min(lat_of[i], done - ta)
            if i >= skip:
                per_server[s] += 1

    t = 0.0
    for n in range(requests):
        t += rng.expovariate(rate)
        send_hedges(t)
        s, done = dispatch(t, n % balancers)
        lat_of.append(done - t)
        if hedge_after is not None and done - t > hedge_after and servers > 1:
            heapq.heappush(hedges, (t + hedge_after, n, t, s))
        if n >= skip:
            per_server[s] += 1
    send_hedges(float("inf"))
    latency = lat_of[skip:]
    return ModelResult(name, latency, per_server, trace, reports, hedged)
