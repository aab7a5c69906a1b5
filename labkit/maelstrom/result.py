"""``Result``: what ``labkit.maelstrom.test`` returns, shaped like Maelstrom's ``results.edn``.

``checks`` maps a checker name to its ``Verdict`` -- the workload's own (e.g. ``"set-full"``,
``"unique-ids"``), combined as ``"workload"``; ``"availability"``; ``"latency"`` (quantiles of
ok operations, ms); ``"net"`` (Maelstrom's ``:net`` stats: server-server messages per client
operation); ``"stats"`` (Jepsen's stats checker: every kind of operation succeeded at least
once). ``valid`` is False if any check failed, else None if any is unknown, else True, and
``exit_code`` is Maelstrom's: 0 valid, 1 invalid, 2 unknown.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from ..checkers.verdict import Verdict
from ..history import History

__all__ = ["Result", "combine_valid"]


def combine_valid(verdicts: Any) -> bool | None:
    """False if any verdict failed, else None if any is unknown, else True (Jepsen's merge)."""
    vs = list(verdicts)
    if any(v.valid is False for v in vs):
        return False
    if any(v.valid is None for v in vs):
        return None
    return True


@dataclass
class Result:
    """One test run. ``valid``: True / False / None (unknown); ``checks``: name -> Verdict;
    ``history``: the recorded ``History``; ``journal``: the cluster's ``Journal`` (messages,
    faults; it outlives the closed cluster); ``stats``: counts (ops by type and f,
    ``msgs_per_op``, ``crashes`` as ``(t_ms, node, error)``: nodes that crashed, e.g. a
    program that exited; ``malformed_lines``: node -> stdout lines skipped); ``opts``: the test's options; ``nemesis``: the fault operations
    applied, as ``(t_ms, op)``."""

    workload: str
    valid: bool | None
    checks: dict[str, Verdict]
    history: History
    journal: Any
    stats: dict[str, Any]
    opts: dict[str, Any]
    nemesis: list[tuple[float, dict]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """Maelstrom's exit code: 0 valid, 1 invalid, 2 unknown."""
        return {True: 0, False: 1, None: 2}[self.valid]

    @property
    def msgs_per_op(self) -> float | None:
        """Server-server messages per client operation (Maelstrom's ``:net :servers :msgs-per-op``)."""
        return self.stats.get("net", {}).get("servers", {}).get("msgs_per_op")

    def stable_latency(self, q: float) -> float | None:
        """Quantile ``q`` (0.5 median, 1.0 max) of the set-full stable latencies (ms), for
        broadcast and g-set; None for other workloads or when nothing became stable."""
        for v in self.checks.values():
            lat = (v.details or {}).get("stable_latency_ms")
            if lat:
                return lat.get(str(float(q)))
        return None

    def faults_text(self) -> str:
        """``"faults injected: 3 partition"``: the nemesis's faults by kind (its undo operations --
        heal, resume, restoring links -- are not counted)."""
        kinds: dict[str, int] = {}
        for _, op in self.nemesis:
            if "fault" in op:
                kinds[op["fault"]] = kinds.get(op["fault"], 0) + 1
        return "faults injected: " + (", ".join(f"{k} {f}" for f, k in kinds.items()) or "none")

    @property
    def verdict_line(self) -> str:
        """Maelstrom's closing line."""
        return {True: "Everything looks good! ヽ(‘ー`)ノ",
                False: "Analysis invalid! (ﾉಥ益ಥ）ﾉ ┻━┻",
                None: "Errors occurred during analysis, but no anomalies found. ಠ~ಠ"}[self.valid]

    def _header(self) -> list[str]:
        """The summary's lines above the checks: options, op counts, crashes, reasons, bad output."""
        o = self.opts
        lines = [f"maelstrom test -w {self.workload}: {o.get('node_count')} nodes, {o.get('time_limit'):g} s, "
                 f"{o.get('rate'):g} ops/s, latency {o.get('latency'):g} ms, runtime {o.get('runtime')}, "
                 f"nemesis {','.join(o.get('nemesis') or ()) or 'none'}, seed {o.get('seed')}"]
        s = self.stats
        lines.append(f"  ops: {s.get('ops', 0)} ({s.get('ok', 0)} ok, {s.get('fail', 0)} fail [certainly not done], "
                     f"{s.get('info', 0)} info [outcome unknown]); {self.faults_text()}")
        for t, node, error in list(s.get("crashes") or ())[:3]:
            said = error.splitlines()[0].removeprefix(f"{node}: ") if error else "no message"
            lines.append(f"  crashed: {node} at {t:.0f} ms -- {said}")
        if len(s.get("crashes") or ()) > 3:
            lines.append(f"  ... {len(s['crashes']) - 3} more crashes (result.journal has them as 'crash' events)")
        errors: dict[str, int] = {}
        for op in self.history:
            if op.is_client and op.type in ("fail", "info") and op.error is not None:
                errors[str(op.error)] = errors.get(str(op.error), 0) + 1
        if errors:
            top = sorted(errors.items(), key=lambda kv: -kv[1])
            lines.append("  ops not ok, by reason: " + "; ".join(f"{k} x {e}" for e, k in top[:3])
                         + (f"; {len(top) - 3} other reasons" if len(top) > 3 else ""))
        bad = s.get("malformed_lines") or {}
        if bad:
            lines.append("  skipped stdout lines that were not Maelstrom messages: "
                         + ", ".join(f"{n}: {k}" for n, k in bad.items()) + " (result.journal 'malformed' events)")
        return lines

    def __str__(self) -> str:
        lines = self._header()
        for name, v in self.checks.items():
            lines.append(f"  {name:<14} {v.outcome:<7} {v.summary}")
            for e in list(v.explanations)[:3] if v.valid is not True and name != "workload" else []:
                lines.append(f"  {'':<14}   - {e}")
        lines.append(f":valid? {self.valid!r}  exit code {self.exit_code}")
        lines.append(self.verdict_line)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<maelstrom Result {self.workload}: valid={self.valid!r}, {self.stats.get('ops', 0)} ops>"

    def _repr_html_(self) -> str:
        color = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}[self.valid]
        rows = "".join(
            f"<tr><td><code>{html.escape(n)}</code></td><td style='color:{ {True: '#1a7f37', False: '#cf222e', None: '#9a6700'}[v.valid]}'>"
            f"<b>{v.outcome}</b></td><td>{html.escape(v.summary)}</td></tr>" for n, v in self.checks.items())
        head = "".join(f"<div>{html.escape(line.strip())}</div>" for line in self._header())
        return (f"<div>{head}<table>{rows}</table>"
                f"<div style='color:{color}'><b>:valid? {self.valid!r}</b> (exit code {self.exit_code}) — "
                f"{html.escape(self.verdict_line)}</div></div>")
