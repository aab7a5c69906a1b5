"""Fault spans: when each fault was in force, read from the journal.

One derivation for everything that shades or counts faults -- the plots' shading, the
availability and convergence checkers, the panel. A span is a fault's period in force:

* ``down`` (kill .. restart), ``crashed`` (crash .. restart), ``paused`` (pause .. resume),
  ``skew`` (skew .. skew back to offset 0, rate 1), ``slow`` (slow .. unslow, i.e. factor 1;
  like skew it outlives kill and restart) -- node faults, ``node`` set;
* ``partition`` (partition .. the next partition or heal), ``cut`` (cut .. uncut or heal),
  ``link`` (link settings .. clear_links), ``nemesis`` (nemesis start .. stop).

A span still in force when the journal ends is ``open`` and ends at the journal's last event.
"""
from __future__ import annotations

from typing import Any, Iterable, NamedTuple

_QUIET = frozenset(("send", "deliver", "drop", "timer_set", "timer_fire", "log", "stats", "start", "op",
                    "malformed"))


class FaultSpan(NamedTuple):
    """``(start_ms, end_ms, kind, detail)``, plus the ``node`` of a node fault and whether
    the fault was still in force (``open``) when the journal ended."""

    start: float
    end: float
    kind: str
    detail: str
    node: str | None = None
    open: bool = False

    def covers(self, t: float) -> bool:
        """Was the fault in force at time ``t``? (An open span covers all later times.)"""
        return self.start <= t and (self.open or t < self.end)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node,) if self.node else ()

    def __str__(self) -> str:
        end = "end" if self.open else f"{self.end:.1f}"
        who = f" {self.node}" if self.node else ""
        return f"{self.kind}{who} [{self.start:.1f} .. {end} ms]"


def _fmt_groups(groups: Any) -> str:
    return " | ".join(",".join(map(str, g)) for g in groups or ())


def fault_spans(journal: Any) -> list[FaultSpan]:
    """Every fault period in ``journal`` (a Journal, a Cluster or events), sorted by start."""
    journal = getattr(journal, "journal", journal)
    events = sorted(journal, key=lambda e: e.t)
    if not events:
        return []
    end = events[-1].t
    out: list[FaultSpan] = []
    open_: dict[tuple, tuple[float, str, str, str | None]] = {}   # key -> (start, kind, detail, node)

    def start(key: tuple, t: float, kind: str, detail: str, node: str | None = None) -> None:
        stop(key, t)
        open_[key] = (t, kind, detail, node)

    def stop(key: tuple, t: float) -> None:
        s = open_.pop(key, None)
        if s is not None:
            out.append(FaultSpan(s[0], t, s[1], s[2], s[3]))

    for e in events:
        k, n, t = e.kind, e.node, e.t
        if k in _QUIET:
            continue
        if k in ("kill", "crash"):
            stop(("paused", n), t)
            if ("down", n) not in open_:
                start(("down", n), t, "down" if k == "kill" else "crashed", n, n)
        elif k == "restart":
            stop(("down", n), t)
        elif k == "pause":
            start(("paused", n), t, "paused", n, n)
        elif k == "resume":
            stop(("paused", n), t)
        elif k == "partition":
            start(("partition",), t, "partition", _fmt_groups(e.get("groups")))
        elif k in ("cut", "uncut"):
            a, b = e.get("a"), e.get("b")
            pairs = [(a, b)] if e.get("one_way") else [(a, b), (b, a)]
            for p in pairs:
                if k == "cut":
                    start(("cut",) + p, t, "cut", f"{p[0]}→{p[1]}")
                else:
                    stop(("cut",) + p, t)
        elif k == "heal":
            for key in [x for x in open_ if x[0] in ("partition", "cut")]:
                stop(key, t)
        elif k == "link":
            d = e.data
            settings = " ".join(f"{a}={v:g}" if isinstance(v, (int, float)) else f"{a}={v}"
                                for a, v in d.items() if a not in ("src", "dst"))
            start(("link", d.get("src"), d.get("dst"), t), t, "link",
                  f"{d.get('src')}→{d.get('dst')} {settings}".strip())
        elif k == "clear_links":
            for key in [x for x in open_ if x[0] == "link"]:
                stop(key, t)
        elif k == "skew":
            off, rate = float(e.get("offset_ms", 0) or 0), float(e.get("rate", 1) or 1)
            stop(("skew", n), t)
            if off or rate != 1:
                start(("skew", n), t, "skew", f"{n} {off:+g} ms" + (f" ×{rate:g}" if rate != 1 else ""), n)
        elif k == "slow":
            factor = float(e.get("factor", 1) or 1)
            stop(("slow", n), t)
            if factor != 1:
                start(("slow", n), t, "slow", f"{n} ×{factor:g}", n)
        elif k == "nemesis":
            if e.get("op") == "start":
                start(("nemesis",), t, "nemesis", "nemesis: " + ", ".join(e.get("faults") or ()))
            elif e.get("op") == "stop":
                stop(("nemesis",), t)
    for s in open_.values():
        out.append(FaultSpan(s[0], end, s[1], s[2], s[3], True))
    out.sort(key=lambda x: (x.start, x.kind))
    return out
