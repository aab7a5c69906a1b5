"""Bring your own node: Maelstrom-protocol programs, workloads and checkers in a labkit cluster.

* ``labkit.maelstrom.test(node_or_program, workload="broadcast", ...)`` -> ``Result`` -- run
  one of Maelstrom's workloads (``labkit.maelstrom.workloads.names()``) against a labkit
  ``Node`` class (sim or processes) or a ``labkit.Program`` (processes) and check it.
* ``labkit.maelstrom.PRESETS`` -- the Gossip Glomers challenges with their published targets;
  ``labkit.maelstrom.run_preset(name, node_or_program)``.
* ``python -m labkit.maelstrom test -w broadcast --bin ./prog ...`` -- Maelstrom's command line.

Imports are lazy: ``import labkit`` does not load this package's modules.
"""
from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module (relative to this package) that defines it.
_LAZY = {
    "test": "harness", "Result": "harness", "NEMESES": "harness",
    "PRESETS": "presets", "Preset": "presets", "run_preset": "presets",
    "workloads": "workloads",
}

__all__ = sorted(_LAZY)


#: Submodules, importable as attributes (``labkit.maelstrom.harness``).
_SUBMODULES = frozenset({"harness", "presets", "workloads", "nemesis", "result", "protocol", "services",
                         "program", "node", "export"})


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name) or (name if name in _SUBMODULES else None)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    m = importlib.import_module(f"{__name__}.{mod}")
    value = m if name == mod else getattr(m, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
