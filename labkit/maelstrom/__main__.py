"""``python -m labkit.maelstrom test``: Maelstrom's command line, on labkit.

    python -m labkit.maelstrom test -w broadcast --bin ./prog --node-count 5 --time-limit 20 \\
        --rate 100 --latency 100 --nemesis partition

Options are Maelstrom's (``maelstrom test --help``), plus labkit's: ``--node MODULE:CLASS``
(a ``labkit.Node`` class instead of ``--bin``; runs in the simulator unless ``--runtime
processes``), ``--seed``, ``--runtime``, ``--quiet`` (recovery seconds before final reads),
``--timeout`` (client ms), ``--services`` (extra Maelstrom services), ``--preset NAME`` (a Gossip Glomers challenge: its options and
targets; options given explicitly override it). ``--nemesis`` takes Maelstrom's
``partition`` and labkit's faults (``kill``, ``pause``, ``restart``, ``skew``, ``drop``,
``duplicate``, ...), comma-separated. ``--concurrency`` is an int or ``<k>n`` (k per node).

Exit codes (Maelstrom's): 0 valid, 1 invalid, 2 unknown (also when the run could not be
judged, e.g. a node never answered its setup message); 254 for bad options (Jepsen's CLI
code for invalid arguments), with a message naming the option; 130 when interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
from typing import Any, Sequence

USAGE_ERROR = 254
#: Ctrl-C: the shell's code for a SIGINT (128 + 2).
INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:   # argparse's own exit code 2 means "unknown" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def _parser() -> argparse.ArgumentParser:
    from .nemesis import NEMESES
    from .workloads import names
    p = _Parser(prog="python -m labkit.maelstrom", description="Run Maelstrom workloads on labkit.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("test", help="run a workload against a program and check it")
    t.add_argument("-w", "--workload", choices=names(), help="what workload to run")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--bin", help="path to the program which runs a node (any language)")
    src.add_argument("--node", metavar="MODULE:CLASS", help="a labkit.Node class to run instead of --bin")
    t.add_argument("--preset", help="a Gossip Glomers challenge (labkit.maelstrom.PRESETS)")
    t.add_argument("--node-count", type=int, help="how many nodes to run (default 5)")
    t.add_argument("--time-limit", type=float, help="seconds to run the workload for (default 20)")
    t.add_argument("--rate", type=float, help="approximate requests per second, all clients (default 100)")
    t.add_argument("--latency", type=float, help="network latency between nodes, ms (default 100)")
    t.add_argument("--latency-dist", choices=("constant", "uniform", "exponential"),
                   help="latency distribution (default constant)")
    t.add_argument("--nemesis", help=f"comma-separated faults: {', '.join(sorted(NEMESES))}")
    t.add_argument("--nemesis-interval", type=float, help="seconds between nemesis operations, on average (10)")
    t.add_argument("--concurrency", help="clients: an int, or <k>n for k per node (default 1n)")
    t.add_argument("--availability", help="'total' (every op must succeed) or a fraction in [0, 1]")
    t.add_argument("--topology", help="broadcast topology: grid, line, total, tree2, tree3, tree4")
    t.add_argument("--key-count", type=int, help="keys per test (lin-kv, txn, kafka workloads)")
    t.add_argument("--max-txn-length", type=int, help="most micro-ops per transaction")
    t.add_argument("--max-writes-per-key", type=int, help="most writes to any single key")
    t.add_argument("--consistency-models", help="comma-separated consistency models to check (txn)")
    t.add_argument("--log-stderr", action="store_true",
                   help="accepted for Maelstrom compatibility: a program's stderr is always shown")
    t.add_argument("--services", help="comma-separated Maelstrom services to run besides the workload's "
                                      "(lin-kv, seq-kv, lww-kv, lin-tso); Maelstrom always runs all four")
    t.add_argument("--seed", type=int, help="random seed (replays a simulated run)")
    t.add_argument("--runtime", choices=("sim", "processes"), help="default: sim for --node, processes for --bin")
    t.add_argument("--timeout", type=float, help="client timeout, ms (default 5000)")
    t.add_argument("--quiet", type=float, help="seconds of recovery after healing, before final reads (10)")
    return p


WORKLOAD_OPTS = ("topology", "key_count", "max_txn_length", "max_writes_per_key", "consistency_models")


def _node(args: argparse.Namespace) -> Any:
    if args.node:
        mod, _, cls = args.node.partition(":")
        if not mod or not cls:
            raise ValueError(f"--node takes MODULE:CLASS (e.g. mynodes:Gossip), got {args.node!r}")
        try:
            return getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--node {args.node}: {e}") from None
    if not args.bin:
        raise ValueError("expected a --bin PROGRAM to test (or --node MODULE:CLASS)")
    from .program import Program
    argv = shlex.split(args.bin)
    return Program(argv if len(argv) > 1 else argv[0])


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for name in ("node_count", "time_limit", "rate", "latency", "latency_dist", "nemesis", "nemesis_interval",
                 "seed", "runtime", "timeout", "quiet", *WORKLOAD_OPTS):
        v = getattr(args, name)
        if v is not None:
            kw[name] = v
    if args.services is not None:
        kw["services"] = [x.strip() for x in args.services.split(",") if x.strip()]
    if "consistency_models" in kw:
        kw["consistency_models"] = tuple(x.strip() for x in kw["consistency_models"].split(",") if x.strip())
    if args.availability is not None:
        a = args.availability
        if a != "total":
            try:
                a = float(a)
            except ValueError:
                raise ValueError(f"--availability takes 'total' or a fraction in [0, 1], got {a!r}") from None
        kw["availability"] = a
    return kw


def _concurrency(text: str | None, node_count: int) -> int | None:
    """``--concurrency``: an int, or ``<k>n`` for k clients per node (Jepsen's form)."""
    if text is None:
        return None
    try:
        n = int(text[:-1]) * node_count if text.endswith("n") else int(text)
    except ValueError:
        raise ValueError(f"--concurrency takes an int or <k>n (k clients per node), got {text!r}") from None
    if n < 1:
        raise ValueError(f"--concurrency must give at least one client, got {text!r}")
    return n


#: ``labkit.maelstrom.test`` keywords the command line spells as flags.
_FLAGS = ("node_count", "time_limit", "rate", "latency_dist", "latency", "nemesis_interval", "nemesis",
          "concurrency", "availability", "timeout", "quiet", "seed", "runtime", *WORKLOAD_OPTS)


def _as_flags(text: str) -> str:
    """An error from ``labkit.maelstrom.test`` in the command line's words: ``node_count must
    be ...`` -> ``--node-count must be ...``, ``Program(cmd)`` -> ``--bin``."""
    text = text.replace("Program(cmd)", "--bin")
    for name in _FLAGS:
        text = re.sub(rf"(?<![\w-]){name}(?![\w-])", "--" + name.replace("_", "-"), text, count=1)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    from ..errors import LabkitError
    from .harness import test
    from .presets import PRESETS, run_preset
    try:
        if args.preset is not None and args.preset not in PRESETS:
            raise ValueError(f"unknown --preset {args.preset!r}; choose from {', '.join(PRESETS)}")
        if args.preset is None and args.workload is None:
            raise ValueError("give a workload with -w/--workload (or a --preset)")
        if args.preset is not None and args.workload not in (None, PRESETS[args.preset].workload):
            raise ValueError(f"--preset {args.preset} runs workload {PRESETS[args.preset].workload!r}, "
                             f"not -w {args.workload}")
        node = _node(args)
        kw = _kwargs(args)
        preset = PRESETS[args.preset] if args.preset is not None else None
        nodes = kw.get("node_count", preset.options.get("node_count", 5) if preset else 5)
        concurrency = _concurrency(args.concurrency, nodes)
        if concurrency is not None:
            kw["concurrency"] = concurrency
        if preset is not None:
            pr = run_preset(preset.name, node, **kw)
            print(pr.result)
            print(pr)
            return {True: 0, False: 1, None: 2}[pr.passed]
        result = test(node, args.workload, **kw)
    except (ValueError, TypeError) as e:       # bad options (ArgumentError is a ValueError)
        print(f"python -m labkit.maelstrom: error: {_as_flags(str(e))}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:                   # Ctrl-C: test() has closed the cluster on the way out
        print("python -m labkit.maelstrom: interrupted; the test's nodes and programs were stopped",
              file=sys.stderr)
        return INTERRUPTED
    except LabkitError as e:                    # the run could not be judged (e.g. a node never set up)
        print(f"python -m labkit.maelstrom: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(result)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
