"""Command line: check history files.

    python -m labkit.check linearizable --model MODEL [--timeout S] [--memory SIZE] [--progress] FILE...

Each FILE (``.edn`` -- Jepsen/Maelstrom, one op map per line -- or ``.jsonl`` -- labkit's
JSON lines) is checked on its own; one line is printed per file::

    FILE: linearizable
    FILE: NOT linearizable -- key 0: read 3 by process 2 (op #17) cannot be linearized
    FILE: unknown -- timed out after 10 s (of CPU time): ...
    FILE: error -- line 4: malformed EDN: ...

Exit status (Maelstrom's 0/1/2, plus one for bad input):

* 0 -- every file is linearizable;
* 1 -- at least one file is NOT linearizable (other files may be unknown or bad);
* 2 -- none is NOT linearizable, but at least one is unknown (the search timed out);
* 3 -- bad input: an unknown model or bad option (nothing is checked), or a file that could
  not be read or parsed, has no client operations, or holds a value the model cannot use
  (and none is NOT linearizable). A bad file never counts as linearizable, nor as merely
  unknown.

``--timeout`` is per file, in seconds of CPU time (default 60); ``--memory`` is per file too (bytes, or
``1G``, ``512M``; default 1 GiB or half the available memory): a check that reaches either
budget is unknown (exit 2), never a crash. ``--progress`` shows keys done and configurations
explored on stderr for checks longer than 2 s (default: on when stderr is a terminal and
``$CI`` is not set; ``--no-progress`` turns it off). ``--explain`` prints the full
explanation of each violation after its line.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence, TextIO

from .checkers.linearizable import ModelValueError, check_linearizable, parse_size
from .checkers.models import MODELS
from .history import History, HistoryError

EXIT_OK, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_INPUT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, which would read as "unknown"
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m labkit.check", description="Check Jepsen-style histories.",
                epilog="exit status: 0 all valid, 1 some invalid, 2 some unknown, 3 bad input")
    sub = p.add_subparsers(dest="checker", required=True, parser_class=_Parser)
    lin = sub.add_parser("linearizable", help="Wing & Gong / Lowe linearizability search, per key")
    lin.add_argument("--model", required=True, choices=sorted(MODELS), metavar="MODEL",
                     help=f"one of: {', '.join(MODELS)}")
    lin.add_argument("--timeout", type=float, default=60.0, metavar="S",
                     help="seconds of CPU time per file (default 60)")
    lin.add_argument("--memory", default=None, metavar="SIZE",
                     help="memory budget per file, e.g. 1G or 512M (default: 1 GiB or half the free memory)")
    lin.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show progress on stderr (default: when stderr is a terminal)")
    lin.add_argument("--explain", action="store_true", help="print the explanation of each violation")
    lin.add_argument("files", nargs="+", metavar="FILE", help=".edn or .jsonl history")
    return p


def check_file(path: str, model: str, timeout: float, explain: bool = False,
               out: TextIO = sys.stdout, memory: int | None = None, progress: bool | None = None) -> int:
    """Check one file, print its line, return its exit status (0, 1, 2 or 3)."""
    history = None
    try:
        history = History.load(path)
        if not history.pairs():
            what = "operations" if not len(history) else "client operations (only non-client processes)"
            print(f"{path}: error -- no {what} in {path}: nothing to check", file=out)
            return EXIT_BAD_INPUT
        verdict = check_linearizable(history, model, timeout=timeout, memory=memory, progress=progress)
    except MemoryError:
        print(f"{path}: unknown -- ran out of memory (set a smaller --memory budget)", file=out)
        return EXIT_UNKNOWN
    except ModelValueError as e:
        line = history.line_of(e.index) if history is not None else None
        print(f"{path}: error -- {f'line {line}: ' if line else ''}{e}", file=out)
        return EXIT_BAD_INPUT
    except OSError as e:
        print(f"{path}: error -- cannot read: {e.strerror or e}", file=out)
        return EXIT_BAD_INPUT
    except HistoryError as e:
        msg = str(e)
        if msg.startswith(path + ": "):
            msg = msg[len(path) + 2:]
        print(f"{path}: error -- {msg}", file=out)
        return EXIT_BAD_INPUT
    except (ValueError, TypeError) as e:
        print(f"{path}: error -- {e}", file=out)
        return EXIT_BAD_INPUT
    if verdict.valid is True:
        print(f"{path}: linearizable", file=out)
        return EXIT_OK
    if verdict.valid is False:
        print(f"{path}: NOT linearizable -- {verdict.summary}", file=out)
        if explain:
            for e in verdict.explanations:
                print("    " + str(e).replace("\n", "\n    "), file=out)
        return EXIT_INVALID
    print(f"{path}: unknown -- {verdict.summary}", file=out)
    return EXIT_UNKNOWN


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.timeout <= 0:
        print("python -m labkit.check: error: --timeout must be > 0 seconds", file=sys.stderr)
        return EXIT_BAD_INPUT
    memory = None
    if args.memory is not None:
        try:
            memory = parse_size(args.memory)
        except ValueError as e:
            print(f"python -m labkit.check: error: --memory: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    progress = args.progress
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("CI")
    codes = [check_file(f, args.model, args.timeout, args.explain, memory=memory, progress=progress)
             for f in args.files]
    if EXIT_INVALID in codes:
        return EXIT_INVALID
    if EXIT_BAD_INPUT in codes:
        return EXIT_BAD_INPUT
    if EXIT_UNKNOWN in codes:
        return EXIT_UNKNOWN
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
