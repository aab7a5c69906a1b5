"""The Gossip Glomers challenges (Fly.io and Kyle Kingsbury, https://fly.io/dist-sys/) as presets.

Each ``Preset`` is the Maelstrom command line the challenge page gives, and the targets it
publishes; ``run_preset(name, node)`` runs it and says pass/fail against each target:

====================  ======================================================================
``echo``              #1  https://fly.io/dist-sys/1/ -- ``-w echo --node-count 1 --time-limit 10``
``unique-ids``        #2  https://fly.io/dist-sys/2/ -- ``-w unique-ids --time-limit 30 --rate 1000
                      --node-count 3 --availability total --nemesis partition`` ("totally available")
``broadcast-single``  #3a https://fly.io/dist-sys/3a/ -- ``--node-count 1 --time-limit 20 --rate 10``
``broadcast-multi``   #3b https://fly.io/dist-sys/3b/ -- ``--node-count 5 --time-limit 20 --rate 10``
``broadcast-fault-tolerant``  #3c https://fly.io/dist-sys/3c/ -- ``--node-count 5 --time-limit 20
                      --rate 10 --nemesis partition``
``broadcast-efficiency``  #3d https://fly.io/dist-sys/3d/ -- ``--node-count 25 --time-limit 20
                      --rate 100 --latency 100``: msgs-per-op < 30, median latency < 400 ms,
                      maximum latency < 600 ms
``broadcast-efficiency-2``  #3e https://fly.io/dist-sys/3e/ -- the same command: msgs-per-op
                      < 20, median latency < 1 s, maximum latency < 2 s
``g-counter``         #4  https://fly.io/dist-sys/4/ -- ``-w g-counter --node-count 3 --rate 100
                      --time-limit 20 --nemesis partition`` (on the ``seq-kv`` service)
``kafka-single``      #5a https://fly.io/dist-sys/5a/ -- ``-w kafka --node-count 1 --concurrency 2n
                      --time-limit 20 --rate 1000``
``kafka-multi``       #5b https://fly.io/dist-sys/5b/ -- ``--node-count 2`` otherwise as 5a
``txn-single``        #6a https://fly.io/dist-sys/6a/ -- ``-w txn-rw-register --node-count 1
                      --time-limit 20 --rate 1000 --concurrency 2n --consistency-models
                      read-uncommitted --availability total``
``txn-read-uncommitted``  #6b https://fly.io/dist-sys/6b/ -- ``--node-count 2`` as 6a, plus
                      ``--nemesis partition``
``txn-read-committed``  #6c https://fly.io/dist-sys/6c/ -- as 6b with ``--consistency-models
                      read-committed``
====================  ======================================================================

Options a page leaves out take Maelstrom's defaults where known (``--latency 0``); the
echo page gives no ``--rate``, labkit uses 10 ops/s there.

"Latency" in the broadcast efficiency targets is Maelstrom's stable latency of the
broadcast workload's set-full checker (``:stable-latencies``; see
``labkit.maelstrom.workloads.broadcast``); msgs-per-op is ``:net :servers :msgs-per-op``.
Every preset also requires the test itself to be valid ("Everything looks good!").
The kafka and txn presets need the elle helper's workloads (``labkit.maelstrom.workloads``
``kafka``, ``txn-rw-register``); ``consistency_models`` is passed to the txn workload.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ArgumentError
from .result import Result

__all__ = ["Target", "Preset", "PresetResult", "PRESETS", "run_preset", "UnknownPreset"]


class UnknownPreset(ArgumentError, KeyError):
    """``run_preset`` was given a name that is not in ``PRESETS``."""

    def __str__(self) -> str:   # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Target:
    """One published target: ``measure(result)`` is the number (or None when it cannot be
    measured), which must be below ``limit`` (strictly, as the pages say "below")."""

    name: str
    unit: str
    limit: float
    measure: Callable[[Result], float | None]

    def judge(self, result: Result) -> tuple[float | None, bool | None]:
        value = self.measure(result)
        return value, (None if value is None else value < self.limit)


MSGS_PER_OP = lambda lim: Target("msgs-per-op", "", lim, lambda r: r.msgs_per_op)            # noqa: E731
MEDIAN = lambda lim: Target("median latency", "ms", lim, lambda r: r.stable_latency(0.5))     # noqa: E731
MAX = lambda lim: Target("maximum latency", "ms", lim, lambda r: r.stable_latency(1.0))       # noqa: E731


@dataclass(frozen=True)
class Preset:
    """A Gossip Glomers challenge: the test options of its Maelstrom command and its targets."""

    name: str
    challenge: str
    url: str
    workload: str
    options: dict[str, Any]
    targets: tuple[Target, ...] = ()
    workload_opts: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The equivalent command line (``python -m labkit.maelstrom test ...``)."""
        parts = [f"-w {self.workload}"]
        for k, v in self.options.items():
            if k == "concurrency_per_node":
                parts.append(f"--concurrency {v}n")
            elif k == "nemesis":
                parts.append(f"--nemesis {','.join(v)}")
            else:
                parts.append(f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else
                             f"--{k.replace('_', '-')} {v}")
        for k, v in self.workload_opts.items():
            parts.append(f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, (list, tuple)) else v}")
        return "python -m labkit.maelstrom test " + " ".join(parts) + " --bin PROGRAM"

    def test_kwargs(self) -> dict[str, Any]:
        kw = {k: v for k, v in self.options.items() if k != "concurrency_per_node"}
        if "concurrency_per_node" in self.options:
            kw["concurrency"] = self.options["concurrency_per_node"] * self.options.get("node_count", 1)
        return {**kw, **self.workload_opts}


@dataclass
class PresetResult:
    """A preset's run: the test ``result`` and, per target, ``(value, passed)``. ``passed``
    is True when the test is valid and every target is met, False when either fails, None
    when something could not be measured."""

    preset: Preset
    result: Result
    targets: dict[str, tuple[float | None, bool | None]]

    @property
    def passed(self) -> bool | None:
        verdicts = [self.result.valid] + [ok for _, ok in self.targets.values()]
        if any(v is False for v in verdicts):
            return False
        if any(v is None for v in verdicts):
            return None
        return True

    def __str__(self) -> str:
        p = self.preset
        lines = [f"Gossip Glomers {p.challenge} ({p.url}): "
                 + {True: "PASS", False: "FAIL", None: "UNKNOWN"}[self.passed],
                 f"  test valid: {self.result.valid!r}"]
        for t in p.targets:
            value, ok = self.targets[t.name]
            shown = "n/a" if value is None else f"{value:.1f}{(' ' + t.unit) if t.unit else ''}"
            lines.append(f"  {t.name}: {shown} (target < {t.limit:g}{(' ' + t.unit) if t.unit else ''}) "
                         + {True: "pass", False: "FAIL", None: "unknown"}[ok])
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html
        return "<pre>" + html.escape(str(self)) + "</pre>" + self.result._repr_html_()


def _p(name: str, challenge: str, slug: str, workload: str, targets: tuple[Target, ...] = (),
       workload_opts: dict | None = None, **options: Any) -> Preset:
    options.setdefault("latency", 0.0)   # Maelstrom's --latency default (core.clj opt-spec)
    return Preset(name, challenge, f"https://fly.io/dist-sys/{slug}/", workload, options, targets,
                  workload_opts or {})


#: The challenges by name. Options are ``labkit.maelstrom.test`` keywords.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    _p("echo", "#1 Echo", "1", "echo", node_count=1, time_limit=10.0, rate=10.0),
    _p("unique-ids", "#2 Unique ID Generation", "2", "unique-ids", node_count=3, time_limit=30.0, rate=1000.0,
       availability="total", nemesis=("partition",)),
    _p("broadcast-single", "#3a Single-Node Broadcast", "3a", "broadcast", node_count=1, time_limit=20.0,
       rate=10.0),
    _p("broadcast-multi", "#3b Multi-Node Broadcast", "3b", "broadcast", node_count=5, time_limit=20.0, rate=10.0),
    _p("broadcast-fault-tolerant", "#3c Fault Tolerant Broadcast", "3c", "broadcast", node_count=5,
       time_limit=20.0, rate=10.0, nemesis=("partition",)),
    _p("broadcast-efficiency", "#3d Efficient Broadcast, Part I", "3d", "broadcast",
       (MSGS_PER_OP(30.0), MEDIAN(400.0), MAX(600.0)), node_count=25, time_limit=20.0, rate=100.0, latency=100.0),
    _p("broadcast-efficiency-2", "#3e Efficient Broadcast, Part II", "3e", "broadcast",
       (MSGS_PER_OP(20.0), MEDIAN(1000.0), MAX(2000.0)), node_count=25, time_limit=20.0, rate=100.0,
       latency=100.0),
    _p("g-counter", "#4 Grow-Only Counter", "4", "g-counter", node_count=3, rate=100.0, time_limit=20.0,
       nemesis=("partition",)),
    _p("kafka-single", "#5a Single-Node Kafka-Style Log", "5a", "kafka", node_count=1, concurrency_per_node=2,
       time_limit=20.0, rate=1000.0),
    _p("kafka-multi", "#5b Multi-Node Kafka-Style Log", "5b", "kafka", node_count=2, concurrency_per_node=2,
       time_limit=20.0, rate=1000.0),
    _p("txn-single", "#6a Single-Node, Totally-Available Transactions", "6a", "txn-rw-register",
       workload_opts={"consistency_models": ("read-uncommitted",)}, node_count=1, time_limit=20.0, rate=1000.0,
       concurrency_per_node=2, availability="total"),
    _p("txn-read-uncommitted", "#6b Totally-Available, Read Uncommitted Transactions", "6b", "txn-rw-register",
       workload_opts={"consistency_models": ("read-uncommitted",)}, node_count=2, time_limit=20.0, rate=1000.0,
       concurrency_per_node=2, availability="total", nemesis=("partition",)),
    _p("txn-read-committed", "#6c Totally-Available, Read Committed Transactions", "6c", "txn-rw-register",
       workload_opts={"consistency_models": ("read-committed",)}, node_count=2, time_limit=20.0, rate=1000.0,
       concurrency_per_node=2, availability="total", nemesis=("partition",)),
)}


def run_preset(name: str, node: Any, **overrides: Any) -> PresetResult:
    """Run preset ``name`` against ``node`` (a Node class or Program); ``overrides`` replace
    options (e.g. ``seed=1``, ``runtime="processes"``, or a shorter ``time_limit`` -- the
    targets are still judged, but say so when you report a pass). ``UnknownPreset`` (a
    ``labkit.ArgumentError`` and a ``KeyError``) naming the presets for an unknown name."""
    if not isinstance(name, str) or name not in PRESETS:
        raise UnknownPreset(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    from .harness import test
    p = PRESETS[name]
    kwargs = {**p.test_kwargs(), **overrides}
    result = test(node, p.workload, **kwargs)
    return PresetResult(p, result, {t.name: t.judge(result) for t in p.targets})
