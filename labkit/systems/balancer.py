"""A load balancer service: a reverse proxy in front of backends, with pluggable policies,
active and passive health checks, a panic threshold and session affinity.

    class LB(Balancer):
        backends = ("b0", "b1", "b2")
        policy = "power_of_two"            # or a Policy class (labkit.systems.lbpolicy)
        health_check_interval = 100        # ms; None: no active checks

    with labkit.Cluster({"lb": LB, "b0": Api, "b1": Api, "b2": Api}) as cluster:
        cluster.http("lb").get("/anything")     # forwarded to one backend; X-Backend says which

Theory of operation. Every request other than ``/lb/status`` is forwarded with
``ctx.http.request`` to one backend (method, path, query, body, content type and the
affinity headers), and the backend's answer is returned with ``X-Backend`` added. A refused
or reset connection is a 502, no answer within ``timeout`` ms a 504 -- what nginx and Envoy
answer. The balancer holds no worker limit of its own to speak of (``workers`` is large: it
waits, it does not compute), so the queueing happens where the work is.

Which backends may be picked (``candidates``):

* Active checks (``health_check_interval`` ms): ``GET health_path`` on every backend each
  interval (``health_timeout`` ms); ``unhealthy_threshold`` failures in a row mark it down,
  ``healthy_threshold`` successes in a row up again (nginx plus ``fails``/``passes``, HAProxy
  ``fall``/``rise``, Envoy ``unhealthy_threshold``/``healthy_threshold``). The default path is
  ``/readyz``, so a backend that drains (``ctx.ready(False)``) stops getting new requests.
* Passive checks (``outlier_consecutive_errors``): a backend whose answers are 5xx or
  connection errors that many times in a row is ejected for ``outlier_ejection_ms`` x the number of
  times it has been ejected -- Envoy's
  outlier detection (``consecutive_5xx``, default 5; ``base_ejection_time``), never more than
  ``max_ejection_percent`` of the backends at once.
* Panic threshold (Envoy, default 50 %): when fewer than ``panic_threshold`` percent of the
  backends are usable, the balancer ignores health and spreads over all of them -- a health
  check that fails everywhere is more likely wrong than the whole fleet dead.

Session affinity (``affinity``): ``"cookie"`` -- the first answer sets cookie
``lb_backend=<backend>``, later requests carrying it go there while it is a candidate (HAProxy
``cookie ... insert``, nginx plus ``sticky cookie``); ``"header"`` -- the key is the value of
``affinity_header``, hashed by the policy (use ``"ring_hash"`` or ``"mod_n"``); ``"ip"`` -- the
key is the ``X-Forwarded-For`` header or else the caller's node id (``policy = "ip_hash"``).

What it knows of load (``in_flight`` per backend, an EWMA of response time) is its own: the
requests it forwarded and has not had answered. ``GET /lb/status`` returns that, the health
of each backend, the requests sent to each (and when the last one was sent), the health
events so far and ``panics``: how many requests were balanced in panic mode (JSON). A subclass
with timers of its own calls ``await super().on_timer(ctx, name)`` for the ``hc:`` ones.
"""
from __future__ import annotations

from typing import Any

from .. import http_errors
from ..http_types import Response, json_response
from ..service import Service, get, route
from .lbpolicy import Policy, make_policy

COOKIE = "lb_backend"


class BalancerBase(Service):
    """``Balancer`` without its active-health logic: ``health_result`` and ``candidates`` raise
    ``NotImplementedError`` (chapter 07's exercise 2 writes them). Everything else -- probes on a
    timer, passive checks, policies, affinity, forwarding, ``/lb/status`` -- is here."""

    workers = 10_000
    queue_limit = 0
    #: Backend node ids; empty: every peer.
    backends: tuple[str, ...] = ()
    #: A policy name (``lbpolicy.POLICIES``), Policy class or factory; one instance per balancer.
    policy: Any = "round_robin"
    policy_options: dict = {}
    #: Capacity weights for weighted policies, ``{backend: weight}``; missing ones weigh 1.
    weights: dict = {}
    #: Upstream timeout, ms.
    timeout: float = 1000.0
    health_check_interval: float | None = None
    health_path: str = "/readyz"
    health_timeout: float = 100.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    outlier_consecutive_errors: int | None = None
    outlier_ejection_ms: float = 1000.0
    max_ejection_percent: float = 50.0
    panic_threshold: float = 50.0
    affinity: str | None = None
    affinity_header: str = "X-Session"
    #: EWMA weight of a new response time.
    ewma_alpha: float = 0.3

    # -- configuration ---------------------------------------------------------------------
    def on_start(self, ctx: Any) -> None:
        self.pool: tuple[str, ...] = tuple(self.backends) or tuple(p for p in ctx.peers)
        if not self.pool:
            raise ValueError(f"{ctx.id}: a Balancer needs backends (set `backends = (...)` in the class)")
        if self.affinity not in (None, "cookie", "header", "ip"):
            raise ValueError(f"{ctx.id}: affinity must be None, 'cookie', 'header' or 'ip', got {self.affinity!r}")
        self.picker: Policy = make_policy(self.policy, **dict(self.policy_options))
        self.flight = dict.fromkeys(self.pool, 0)
        self.ewma = dict.fromkeys(self.pool, 0.0)
        self.sent = dict.fromkeys(self.pool, 0)
        self.last_sent_at: dict[str, float | None] = dict.fromkeys(self.pool, None)
        self.up = dict.fromkeys(self.pool, True)           # active health
        self.streak = {b: 0 for b in self.pool}              # + successes / - failures in a row
        self.errors = dict.fromkeys(self.pool, 0)            # consecutive 5xx / connection errors
        self.ejected_until = dict.fromkeys(self.pool, -1.0)
        self.ejections = dict.fromkeys(self.pool, 0)
        self.events: list[dict] = []
        self.panics = 0
        if self.health_check_interval is not None:
            for i, b in enumerate(self.pool):
                ctx.set_timer(f"hc:{b}", after=self.health_check_interval * (i + 1) / len(self.pool))

    # -- the LoadView the policy reads -------------------------------------------------------
    def in_flight(self, b: str) -> float:
        return self.flight[b]

    def ewma_ms(self, b: str) -> float:
        return self.ewma[b]

    def weight(self, b: str) -> float:
        return float(self.weights.get(b, 1.0))

    # -- health ------------------------------------------------------------------------------
    def usable(self, ctx: Any, b: str) -> bool:
        return self.up[b] and self.ejected_until[b] <= ctx.now

    def _event(self, ctx: Any, what: str, b: str, why: str) -> None:
        self.events.append({"t": ctx.now, "event": what, "backend": b, "why": why})
        ctx.note(what, backend=b, why=why)

    def candidates(self, ctx: Any) -> list[str]:
        """The backends a request may go to (``Balancer``: the usable ones, or all in panic)."""
        raise NotImplementedError("BalancerBase.candidates is left to you (labkit's own is "
                                  "labkit.systems.balancer.Balancer.candidates)")

    def health_result(self, ctx: Any, b: str, ok: bool) -> None:
        """One active check of ``b`` came back ``ok`` or not (``Balancer``: with hysteresis)."""
        raise NotImplementedError("BalancerBase.health_result is left to you (labkit's own is "
                                  "labkit.systems.balancer.Balancer.health_result)")

    async def on_timer(self, ctx: Any, name: str) -> None:
        if not name.startswith("hc:"):
            return
        b = name[3:]
        ctx.set_timer(name, after=self.health_check_interval)
        try:
            r = await ctx.http.get(b, self.health_path, timeout=self.health_timeout)
            ok = 200 <= r.status < 300
        except http_errors.ClientError:
            ok = False
        self.health_result(ctx, b, ok)

    def passive_result(self, ctx: Any, b: str, failed: bool) -> None:
        """Outlier detection: ``failed`` (5xx or no answer) answers in a row eject ``b`` for
        ``outlier_ejection_ms`` x (its ejections so far + 1), unless ``max_ejection_percent`` are
        ejected already; after the ejection it is tried again (Envoy's outlier detection)."""
        if self.outlier_consecutive_errors is None:
            return
        if not failed:
            self.errors[b] = 0
            return
        self.errors[b] += 1
        if self.errors[b] >= self.outlier_consecutive_errors and self.ejected_until[b] <= ctx.now:
            ejected = sum(1 for x in self.pool if self.ejected_until[x] > ctx.now)
            if (ejected + 1) * 100 > self.max_ejection_percent * len(self.pool):
                return
            self.ejections[b] += 1
            self.ejected_until[b] = ctx.now + self.outlier_ejection_ms * self.ejections[b]
            self.errors[b] = 0
            self._event(ctx, "ejected", b, f"{self.outlier_consecutive_errors} errors in a row")

    # -- routing -----------------------------------------------------------------------------
    def key_of(self, req: Any) -> Any:
        if self.affinity == "header":
            return req.headers.get(self.affinity_header)
        if self.affinity == "ip":
            fwd = req.headers.get("X-Forwarded-For")
            return fwd.split(",")[0].strip() if fwd else req.remote
        return req.remote if getattr(self.picker, "uses_key", False) else None

    def choose(self, ctx: Any, req: Any) -> tuple[str, bool]:
        """(backend, whether to set the affinity cookie)."""
        cands = self.candidates(ctx)
        if self.affinity == "cookie":
            b = _cookie(req.headers.get("Cookie"), COOKIE)
            if b in cands:
                return b, False
            return self.picker.pick(cands, self, ctx.rng, self.key_of(req)), True
        key = self.key_of(req)
        if getattr(self.picker, "uses_key", False) and key is None:
            key = req.remote
        return self.picker.pick(cands, self, ctx.rng, key), False

    @get("/lb/status")
    async def status(self, ctx: Any, req: Any) -> Response:
        return json_response({
            "backends": {b: {"up": self.up[b], "ejected": self.ejected_until[b] > ctx.now,
                             "in_flight": self.flight[b], "ewma_ms": round(self.ewma[b], 3),
                             "sent": self.sent[b], "last_sent_at": self.last_sent_at[b]} for b in self.pool},
            "events": self.events, "panics": self.panics, "policy": getattr(self.picker, "name", "?")})

    @route("*", "/{path:.*}")
    async def forward(self, ctx: Any, req: Any) -> Response:
        b, set_cookie = self.choose(ctx, req)
        headers = {h: req.headers[h] for h in ("Content-Type", self.affinity_header, "X-Forwarded-For", "Cookie")
                   if h in req.headers}
        data = await req.read() if req.body_exists else None
        self.flight[b] += 1
        self.sent[b] += 1
        t0 = self.last_sent_at[b] = ctx.now
        try:
            r = await ctx.http.request(req.method, b, req.path_qs, data=data, headers=headers, timeout=self.timeout)
        except http_errors.ServerTimeoutError:
            self._done(ctx, b, t0, failed=True)
            return Response(status=504, text=f"{b} did not answer in {self.timeout:g} ms",
                            headers={"X-Backend": b})
        except http_errors.ClientError as e:
            self._done(ctx, b, t0, failed=True)
            return Response(status=502, text=f"{b}: {type(e).__name__}", headers={"X-Backend": b})
        self._done(ctx, b, t0, failed=r.status >= 500)
        out = {"X-Backend": b}
        if r.headers.get("Content-Type"):
            out["Content-Type"] = r.headers["Content-Type"]
        if set_cookie:
            out["Set-Cookie"] = f"{COOKIE}={b}; Path=/"
        return Response(body=await r.read(), status=r.status, headers=out)

    def _done(self, ctx: Any, b: str, t0: float, failed: bool) -> None:
        self.flight[b] -= 1
        lat = ctx.now - t0
        self.ewma[b] = lat if self.ewma[b] == 0 else self.ewma_alpha * lat + (1 - self.ewma_alpha) * self.ewma[b]
        self.passive_result(ctx, b, failed)


class Balancer(BalancerBase):
    """A reverse proxy over ``ctx.http``; configure it by subclassing (class attributes of
    ``BalancerBase``): active health with hysteresis and Envoy's panic threshold."""

    def candidates(self, ctx: Any) -> list[str]:
        """Usable backends, or all of them when fewer than ``panic_threshold`` % are (panic)."""
        ok = [b for b in self.pool if self.usable(ctx, b)]
        if len(ok) * 100 < self.panic_threshold * len(self.pool) or not ok:
            self.panics += 1
            ctx.count("panic")
            return list(self.pool)
        return ok

    def health_result(self, ctx: Any, b: str, ok: bool) -> None:
        """One active check of ``b`` came back ``ok`` or not: move it up or down after the
        thresholds (hysteresis, so one lost probe does not eject and one success does not
        readmit a flapping backend)."""
        s = self.streak[b]
        s = (s + 1 if s > 0 else 1) if ok else (s - 1 if s < 0 else -1)
        self.streak[b] = s
        if self.up[b] and s <= -self.unhealthy_threshold:
            self.up[b] = False
            self._event(ctx, "down", b, f"{-s} failed checks")
        elif not self.up[b] and s >= self.healthy_threshold:
            self.up[b] = True
            self._event(ctx, "up", b, f"{s} passed checks")

def _cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie:`` header, or None."""
    for part in (header or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None
