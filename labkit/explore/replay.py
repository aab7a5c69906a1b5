"""Replay: a trace found by the search, run again in labkit's simulator, step by step.

``ScriptedSim`` is the simulator (``labkit.runtime.sim.SimRuntime``, subclassed here, its
module unchanged) with scripted delivery: a message a node sends is journaled and kept in a
pool instead of being scheduled, and nothing runs by itself -- each step of the trace takes
the named message out of the pool and hands it to the simulator's own ``_arrive`` (so a
delivery, a client reply or a drop at a down node is exactly the simulator's), fires the
named timer through the context's own ``_fire``, or kills and restarts a node as ``Cluster``
does. Step ``i`` happens at ``t = i`` ms. Every node's clock reads 0 (time is frozen in
the search; the clock offset cancels the simulator's time) and ``ctx.rng`` is seeded per
(seed, node, incarnation, event) as in the search, so the run is the searched one.

The journal is a plain labkit ``Journal``: ``labkit.plots.spacetime`` draws it, checkers
read it.
"""
from __future__ import annotations

import json
import random
from typing import Any, Callable

from ..journal import Event, Journal
from ..runtime.network import NetworkModel
from ..runtime.sim import SimRuntime, _SimHost
from ..runtime.storage import Storage
from ..context import Context
from ..message import encode_body
from .context import MIDPOINT
from .state import Envelope, Step, StateView


class ScriptedSim(SimRuntime):
    """The simulator with scripted delivery (see the module docstring)."""

    def __init__(self, factories: dict[str, Callable[[], Any]], seed: int, ids_in_state: bool) -> None:
        super().__init__(factories, seed, NetworkModel(tuple(factories)), [])
        self.pool: list[tuple] = []
        self.echo_crashes = False
        self.ids_in_state = ids_in_state

    # -- the network: into the pool, not onto the heap ------------------------------------------
    def _transmit(self, ctx: Context, mid: str, dst: str, type: str, re: str | None, body: Any) -> None:
        # (the simulator's transmit takes the body as JSON text or, for a flat body, the dict)
        body_json = body if body.__class__ is str else encode_body(ctx.id, dst, type, body)
        w = (ctx.id, dst, type, mid, re, 0.0, body_json)
        self.events.append(Event(self.t, "send", ctx.id, mid, None, w))
        self.pool.append(w)

    def _transmit_client(self, client: str, node: str, type: str, mid: str, body_json: str) -> None:
        w = (client, node, type, mid, None, 0.0, body_json)
        self.events.append(Event(self.t, "send", client, mid, wire=w))
        self.pool.append(w)

    # -- nodes: seeded per event, clock frozen ------------------------------------------------
    def _seed(self, rec: Any, event: str) -> None:
        ctx = rec.ctx
        ctx._set_clock(-self.t, 1.0)
        base = f"{self.seed}/{rec.id}/{rec.incarnation}/{event}"
        ctx.rng = random.Random(base)
        ctx._timer_rng = MIDPOINT

    def _start_node(self, rec: Any) -> None:       # SimRuntime._start_node, seeded
        host = _SimHost(self, rec)
        storage = Storage(rec.id, self._stores[rec.id])
        rec.offset_ms = -self.t
        rec.ctx = Context(host, rec.id, self.factories[rec.id](), self.peers_of(rec.id),
                          incarnation=rec.incarnation, storage=storage,
                          offset_ms=rec.offset_ms, rate=rec.rate, guard=self.guard, slow=rec.slow)
        rec.state = "up"
        rec.deferred = []
        self._seed(rec, "start")
        rec.ctx._start()

    def _take(self, key: tuple) -> tuple:
        src, dst, type, body = key[:4]
        for i, w in enumerate(self.pool):
            if w[0] == src and w[1] == dst and w[2] == type and w[6] == body and \
                    (len(key) == 4 or (w[3], w[4]) == tuple(key[4:6])):
                return self.pool.pop(i)
        raise KeyError(f"message {type!r} {src}->{dst} {body} is not in flight")

    def step(self, ev: tuple) -> None:
        """Apply one event of a trace (the executor's event keys)."""
        kind = ev[0]
        if kind == "d":
            w = self._take(ev[1:])
            rec = self.records.get(w[1])
            if rec is not None and rec.state == "up":
                self._seed(rec, f"deliver {w[0]}>{w[1]} {w[2]} {w[6]}")
            self._arrive(w)
        elif kind == "t":
            rec = self.records[ev[1]]
            entry = rec.ctx._timers.get(ev[2])
            if entry is None:
                raise KeyError(f"timer {ev[2]!r} is not armed at {ev[1]}")
            self._sched.cancel(entry)
            self._seed(rec, f"timer {ev[2]}")
            rec.ctx._fire(ev[2])
        elif kind == "c":
            rec = self.records[ev[1]]
            self.kill(rec)
            rec.state = "down"
            self.record(Event(self.t, "kill", rec.id, None, {"incarnation": rec.incarnation}))
        elif kind == "r":
            rec = self.records[ev[1]]
            rec.incarnation += 1
            self.record(Event(self.t, "restart", rec.id, None, {"incarnation": rec.incarnation}))
            self._start_node(rec)
        elif kind == "x":
            w = self._take(ev[1:])
            self.events.append(Event(self.t, "drop", w[1], w[3], wire=w, extra={"rule": "explore: dropped"}))
        elif kind == "2":
            w = self._take(ev[1:])
            self.pool.extend((w, w))
        else:
            raise ValueError(f"unknown event {ev!r}")

    def drop_to(self, node: str) -> None:
        """A crashed node that will not restart: what is on its way to it is lost."""
        keep = []
        for w in self.pool:
            if w[1] == node:
                self.events.append(Event(self.t, "drop", node, w[3], wire=w, extra={"rule": "node down"}))
            else:
                keep.append(w)
        self.pool = keep

    def view(self, depth: int, history: Any) -> StateView:
        ids = self.node_ids
        recs = self.records
        status = {n: ("up" if recs[n].state == "up" else "down") for n in ids}
        return StateView(
            ids, lambda n: recs[n].ctx._node if status[n] == "up" else None, status,
            {n: recs[n].incarnation for n in ids},
            {n: (tuple(recs[n].ctx._timers) if status[n] == "up" else ()) for n in ids},
            lambda: {n: {k: json.loads(v) for k, v in self._stores[n].items()} for n in ids},
            lambda: tuple(Envelope(w[0], w[1], w[2], json.loads(w[6])) for w in self.pool),
            lambda: history, depth)


class Replay:
    """A trace run in the simulator: ``journal``, the final ``state`` (a ``StateView``),
    ``reproduced`` (the search's finding happened again) and ``message``."""

    def __init__(self, journal: Journal, state: StateView, reproduced: bool, message: str, crashes: list) -> None:
        self.journal, self.state, self.reproduced, self.message, self.crashes = \
            journal, state, reproduced, message, crashes

    def __repr__(self) -> str:
        return (f"replayed {self.state.depth} steps in the simulator ({len(self.journal)} journal events): "
                f"{self.message}")


def run_trace(factories: dict[str, Callable[[], Any]], *, seed: int, ids_in_state: bool, restart: bool,
              requests: list[tuple], history: tuple[Any, Callable] | None, path: list[tuple]) -> tuple[ScriptedSim, Any]:
    """Run ``path`` in a ``ScriptedSim``; returns the runtime and the final history value."""
    rt = ScriptedSim(factories, seed, ids_in_state)
    rt.start()
    for k, (client, node, type, body) in enumerate(requests, 1):
        rt._transmit_client(client, node, type, f"{client}.1.{k}", encode_body(client, node, type, body))
    h = None
    if history is not None:
        import copy
        h = copy.deepcopy(history[0])
    for i, ev in enumerate(path, 1):
        rt.t = float(i)
        m = None
        if ev[0] in ("d", "x", "2"):
            m = ev
        rt.step(ev)
        if ev[0] == "c" and len(ev) > 2:         # a crash with no restart to come: messages lost
            rt.drop_to(ev[1])
        if history is not None:
            h = history[1](h, Step.of(ev, m))
    return rt, h
