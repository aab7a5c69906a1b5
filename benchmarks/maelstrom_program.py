"""Messages per second through a Maelstrom program (labkit.Program) vs a labkit node.

One cluster (processes runtime, no faults): a driver node n0 and two echo servers, n1 a
plain ``labkit.Node`` that replies ``echo_ok``, and n2 a ``labkit.Program`` running
``tests/maelstrom/programs/echo.py`` (labkit's Python Maelstrom library). On a ``bench``
request the driver keeps WINDOW echo requests in flight to one target until N have been
answered and replies with the elapsed time (node clock). Rounds alternate n1 / n2 so both see
the same noise; the figure is the median of the per-round ratios of program to node rate.

What the program path adds per message: the node process writes a JSON line to the
program's stdin and reads, validates and re-encodes its reply line; the program is a second
Python process parsing and writing JSON.

Target: program rate / labkit node rate >= 0.5.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402

from _common import cpu_seconds, emit, info, median  # noqa: E402

ROUNDS = 7
N = 5000
WARMUP = 500
WINDOW = 64
TARGET = 0.5
ECHO_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "tests", "maelstrom", "programs", "echo.py")


class Driver(labkit.Node):
    """n0: on ``bench {to, n}`` keep WINDOW echoes in flight to ``to`` until ``n`` answered."""

    def on_message(self, ctx, msg):
        if msg.type == "bench":
            self.req, self.to, self.n = msg, msg.body["to"], msg.body["n"]
            self.sent = self.done = 0
            self.t0 = ctx.now
            for _ in range(min(WINDOW, self.n)):
                self._next(ctx)
        elif msg.type == "echo_ok":
            self.done += 1
            if self.sent < self.n:
                self._next(ctx)
            elif self.done == self.n:
                ctx.reply(self.req, elapsed_ms=ctx.now - self.t0)

    def _next(self, ctx):
        self.sent += 1
        ctx.send(self.to, "echo", echo=self.sent)


class Echo(labkit.Node):
    """n1: the labkit node doing what the program does."""

    def on_message(self, ctx, msg):
        ctx.reply(msg, type="echo_ok", echo=msg.body["echo"])


def rate(cluster: labkit.Cluster, to: str, n: int) -> tuple[float, float]:
    """(messages per second, CPU us per message of the driver, target node and its program)."""
    pids = [cluster.status()[x].pid for x in ("n0", to)]
    import psutil
    procs = pids + [p.pid for p in psutil.Process(pids[1]).children(recursive=True)]
    cpu0 = sum(cpu_seconds(p) for p in procs)
    r = cluster.request("n0", "bench", timeout=300_000, to=to, n=n)
    cpu = sum(cpu_seconds(p) for p in procs) - cpu0
    return n / (r.body["elapsed_ms"] / 1000.0), cpu * 1e6 / n


def main() -> None:
    nodes = {"n0": Driver, "n1": Echo, "n2": labkit.Program([sys.executable, ECHO_PY])}
    lab, prog, ratios, lab_cpu, prog_cpu = [], [], [], [], []
    with labkit.Cluster(nodes, seed=1) as cluster:
        cluster.journal.set_limits(max_events=10_000_000)
        rate(cluster, "n1", WARMUP)
        rate(cluster, "n2", WARMUP)
        for r in range(ROUNDS):
            a, ac = rate(cluster, "n1", N)
            b, bc = rate(cluster, "n2", N)
            lab.append(a)
            prog.append(b)
            lab_cpu.append(ac)
            prog_cpu.append(bc)
            ratios.append(b / a)
            info(f"round {r + 1}: labkit node {a:,.0f} msg/s  program {b:,.0f} msg/s  ratio {b / a:.2f}  | "
                 f"CPU/message: node path {ac:.0f} us, program path {bc:.0f} us")
        crashes = len(cluster._rt.crashes)
    ratio = median(ratios)
    info(f"labkit node {median(lab):,.0f} msg/s, Python echo program {median(prog):,.0f} msg/s; "
         f"ratio {ratio:.2f} (target >= {TARGET})")
    emit({
        "name": "maelstrom_program",
        "what": "echo requests answered per second (WINDOW in flight from a driver node), through a "
                "labkit.Program running tests/maelstrom/programs/echo.py vs a labkit.Node echo",
        "rounds": ROUNDS, "messages_per_round": N, "window": WINDOW,
        "labkit_node_msgs_per_s": median(lab), "program_msgs_per_s": median(prog),
        "per_round_ratio": ratios, "ratio": ratio,
        "ratio_note": "median of per-round ratios program/node (rounds alternate node, program)",
        "target": f">= {TARGET}", "pass": ratio >= TARGET,
        "node_path_cpu_us_per_msg": median(lab_cpu), "program_path_cpu_us_per_msg": median(prog_cpu),
        "cpu_note": "CPU (user+sys) of the driver and the target node process (+ its program) per message",
        "crashes": crashes,
    })


if __name__ == "__main__":
    main()
