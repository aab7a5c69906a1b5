"""``Verdict``: what every checker returns -- a yes, a no, or an honest "unknown".

A checker that runs out of time or lacks the data to decide says ``valid=None``; it never
passes by default. Because ``if verdict:`` would be an easy way to mistake "unknown" for a
pass (or a failure), ``bool(verdict)`` is True only for a pass, False for a failure, and
*raises* ``UnknownVerdict`` for unknown: decide explicitly with ``verdict.valid is True``,
``verdict.passed`` or ``verdict.unknown``.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import LabkitError

__all__ = ["Verdict", "UnknownVerdict"]


class UnknownVerdict(LabkitError, ValueError):
    """``bool()`` of a verdict whose checker could not decide."""


@dataclass(frozen=True)
class Verdict:
    """The result of a checker.

    * ``valid``: ``True`` (the property holds), ``False`` (it is violated), ``None``
      (unknown: timed out, or not enough data).
    * ``checker``: the checker's name, e.g. ``"linearizable(kv)"``.
    * ``summary``: one sentence saying what was found.
    * ``details``: figures (counts, quantiles, ...), JSON-friendly where possible.
    * ``explanations``: for failures, objects that explain them (their ``str`` reads as
      prose), smallest first; may also hold the reason for an unknown.
    """

    valid: bool | None
    checker: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    explanations: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.valid not in (True, False, None):
            raise TypeError(f"valid must be True, False or None, got {self.valid!r}")
        object.__setattr__(self, "explanations", tuple(self.explanations))

    @property
    def passed(self) -> bool:
        return self.valid is True

    @property
    def failed(self) -> bool:
        return self.valid is False

    @property
    def unknown(self) -> bool:
        return self.valid is None

    @property
    def outcome(self) -> str:
        """``"pass"``, ``"FAIL"`` or ``"unknown"``."""
        return {True: "pass", False: "FAIL", None: "unknown"}[self.valid]

    def __bool__(self) -> bool:
        if self.valid is None:
            raise UnknownVerdict(
                f"{self.checker} could not decide ({self.summary}); an unknown verdict is neither "
                f"a pass nor a failure -- test verdict.valid is True / verdict.unknown explicitly")
        return self.valid

    @staticmethod
    def combine(checker: str, verdicts: Iterable["Verdict"], summary: str | None = None) -> "Verdict":
        """One verdict for several: False if any failed, else None if any is unknown, else True.
        Explanations of the failed (or unknown) parts are kept, in order."""
        vs = list(verdicts)
        if any(v.valid is False for v in vs):
            valid: bool | None = False
        elif any(v.valid is None for v in vs):
            valid = None
        else:
            valid = True
        bad = [v for v in vs if v.valid is valid] if valid is not True else []
        expl = tuple(e for v in bad for e in v.explanations)
        if summary is None:
            summary = "; ".join(f"{v.checker}: {v.summary}" for v in (bad or vs)) or "nothing to check"
        return Verdict(valid, checker, summary, {v.checker: v.details for v in vs}, expl)

    def __str__(self) -> str:
        lines = [f"{self.checker}: {self.outcome} -- {self.summary}"]
        for e in self.explanations[:5]:
            text = str(e).rstrip()
            lines.append("  " + text.replace("\n", "\n  "))
        if len(self.explanations) > 5:
            lines.append(f"  ... and {len(self.explanations) - 5} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}[self.valid]
        parts = [f'<div><b style="color:{color}">{html.escape(self.checker)}: {self.outcome}</b> '
                 f'&mdash; {html.escape(self.summary)}']
        for e in self.explanations[:5]:
            parts.append(f"<pre>{html.escape(str(e))}</pre>")
        if self.details:
            rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_short(v))}</td></tr>"
                           for k, v in self.details.items())
            parts.append(f"<details><summary>details</summary><table>{rows}</table></details>")
        return "".join(parts) + "</div>"


def _short(v: Any, n: int = 200) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."
