"""One clear report per check (issue 19, item 11): a sweep's report appears once in a notebook,
whether it passes (no long ``SweepResult(...)`` repr after it) or fails (no traceback repeating
it), and a checker's verdict does not repeat its first violation."""
from __future__ import annotations

import pytest

from labkit.checkers import counter_bounds
from labkit.sweep import SweepFailed, SweepResult, sweep
from labkit.history import History

try:                                   # tests/ as a package, or as a plain directory
    from .kernelutil import Kernel
except ImportError:
    from kernelutil import Kernel


def _passes(seed):
    assert seed >= 0


def _fails_on_odd(seed):
    assert seed % 2 == 0, f"seed {seed} is odd"


def test_sweep_result_repr_is_one_short_line():
    result = sweep(_passes, seeds=range(200), quiet=True)
    text = repr(result)
    assert "\n" not in text and len(text) < 120, text
    assert "0..199" in text and "passed" in text and "[0, 1" not in text


def test_failure_is_reported_once_in_ipython_and_in_full_elsewhere(capsys):
    with pytest.raises(SweepFailed) as info:
        sweep(_fails_on_odd, seeds=range(10))
    printed = capsys.readouterr().out
    assert printed.count("✗ _fails_on_odd") == 1 and "seed 1 is odd" in printed
    rendered = "\n".join(info.value._render_traceback_())
    assert "seed 1 is odd" not in rendered and "report is printed above" in rendered
    assert "5 of 10 seeds failed (first: seed 1)" in rendered
    assert "seed 1 is odd" in str(info.value)                 # pytest, logs: the full report
    with pytest.raises(SweepFailed) as quiet:                  # nothing printed: IPython shows it all
        sweep(_fails_on_odd, seeds=range(10), quiet=True)
    assert "seed 1 is odd" in "\n".join(quiet.value._render_traceback_())


def test_counter_bounds_names_each_violation_once():
    ops = []
    for i, (f, value, reply) in enumerate([("add", 1, None), ("read", None, 5), ("read", None, 7)]):
        ops.append({"process": 0, "type": "invoke", "f": f, "value": value, "time": 10 * i})
        ops.append({"process": 0, "type": "ok", "f": f, "value": reply if f == "read" else value, "time": 10 * i + 5})
    verdict = counter_bounds(History(ops))
    assert verdict.valid is False
    lines = str(verdict).splitlines()
    assert len(lines) == 3 and lines[0].startswith("counter_bounds: FAIL -- 2 of 2 reads out of bounds"), lines
    assert len(set(lines)) == len(lines) and "read 5" in lines[1] and "read 7" in lines[2]
    assert sum("read 5" in line for line in lines) == 1


CELL = '''
from labkit.sweep import sweep
def echo_seed(seed):
    assert seed < {limit}, f"seed {{seed}} is too big"
sweep(echo_seed, seeds=range(50))
'''


@pytest.mark.processes                    # a real Jupyter kernel
def test_a_check_cell_shows_one_report(tmp_path):
    kernel = Kernel(tmp_path)
    try:
        for limit, expect in ((100, "✓ echo_seed: passed on all 50 seeds"), (40, "✗ echo_seed: failed on 10 of 50")):
            msgs: list[dict] = []
            kernel.kc.execute_interactive(CELL.format(limit=limit), output_hook=msgs.append, timeout=60)
            shown = []
            for m in msgs:
                c = m["content"]
                if m["msg_type"] == "stream":
                    shown.append(c["text"])
                elif m["msg_type"] in ("execute_result", "display_data"):
                    shown.append(c["data"].get("text/plain", ""))
                elif m["msg_type"] == "error":
                    shown.append("\n".join(c["traceback"]))
            text = "".join(shown)
            assert text.count(expect) == 1, text
            assert "SweepResult(" not in text and "seeds=[" not in text, text
            if limit == 40:
                assert text.count("seed 40 is too big") == 1, text
                assert "Traceback" not in text and "report is printed above" in text, text
            else:
                assert text.strip() == expect.split(" (")[0] or text.strip().startswith(expect), text
                assert len(text.strip().splitlines()) == 1, text
        # kept in a variable, the result shows itself when asked in a later cell
        for cell, shown in (("r = sweep(echo_seed, seeds=range(3))", 1), ("r", 1), ("r", 1)):
            msgs = []
            kernel.kc.execute_interactive(cell, output_hook=msgs.append, timeout=60)
            text = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
            assert text.count("passed on all 3 seeds") == shown, (cell, msgs)
    finally:
        kernel.close()
