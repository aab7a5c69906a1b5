"""Render a space-time diagram of a 10,000-event journal to SVG and PNG.

The journal comes from a seeded simulator run (5 nodes pinging each other over lossy,
delayed links, with a partition, a kill and restart, and a pause), cut to its first 10,000
events. One round = ``plots.spacetime(journal)`` (default ``max_messages``, so it samples and
says so) rendered once to SVG and once to PNG; the figure is the median of 5 rounds.

Baseline, same run: an empty figure of the same size (one axes, no data) rendered to SVG and
PNG -- matplotlib's fixed cost, for context. Target: median <= 3 s.
"""
from __future__ import annotations

import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import labkit  # noqa: E402
from labkit import plots  # noqa: E402

from _common import emit, info, median  # noqa: E402

ROUNDS = 5
EVENTS = 10_000
TARGET_S = 3.0


class Pinger(labkit.Node):
    def on_start(self, ctx):
        ctx.set_timer("tick", between=(20, 40))

    def on_timer(self, ctx, name):
        ctx.broadcast("ping")
        ctx.set_timer("tick", between=(20, 40))

    def on_message(self, ctx, msg):
        if msg.type == "ping":
            ctx.reply(msg, type="pong")


def journal(seed: int = 3) -> labkit.Journal:
    with labkit.Cluster(Pinger, n=5, runtime="sim", seed=seed) as c:
        c.set_link(delay=5, jitter=3, drop=0.05)
        c.run_for(1.5)
        c.partition(["n1", "n2"])
        c.run_for(1.0)
        c.heal()
        c.kill("n4")
        c.run_for(0.7)
        c.restart("n4")
        c.pause("n2")
        c.run_for(0.3)
        c.resume("n2")
        c.run_for(1.0)
    events = c.journal.events
    assert len(events) >= EVENTS, len(events)
    return labkit.Journal(events[:EVENTS], seed=seed)


def render(fig) -> None:
    plots.to_svg(fig)
    fig.savefig(io.BytesIO(), format="png")


def main() -> None:
    j = journal()
    info(j.summary())
    times, base = [], []
    fig = None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fig = plots.spacetime(j)
        render(fig)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        empty = plots.PlotFigure(figsize=fig.get_size_inches(), layout="constrained")
        empty.add_subplot()
        render(empty)
        base.append(time.perf_counter() - t0)
    info(repr(fig))
    info("rounds (s):", [round(t, 3) for t in times], "baseline (s):", [round(t, 3) for t in base])
    seconds, baseline = median(times), median(base)
    emit({"name": "spacetime_10k_events_svg_png", "seconds": seconds, "target": TARGET_S,
          "pass": seconds <= TARGET_S, "baseline": baseline, "ratio": seconds / baseline,
          "events": len(j)})


if __name__ == "__main__":
    main()
