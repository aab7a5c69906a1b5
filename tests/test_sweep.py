"""labkit.sweep.sweep: what an exercise's check cell reports."""
import pytest

from labkit.sweep import SweepFailed, sweep


def test_all_seeds_pass(capsys):
    r = sweep(lambda seed: None, seeds=range(10), name="ok")
    assert r.passed and r.seeds == list(range(10))
    assert "passed on all 10 seeds" in capsys.readouterr().out


def test_failures_report_rate_first_seed_message_and_replay(capsys):
    def scenario(seed):
        assert seed % 4 != 3, f"seed {seed} is bad"

    with pytest.raises(SweepFailed) as ei:
        sweep(scenario, seeds=range(20))
    text = str(ei.value)
    assert isinstance(ei.value, AssertionError)
    assert ei.value.result.first_failing_seed == 3 and list(ei.value.result.failures) == [3, 7, 11, 15, 19]
    assert "failed on 5 of 20 seeds (25.0%)" in text
    assert "first failing seed 3" in text and "seed 3 is bad" in text and "replay: scenario(3)" in text
    assert text in capsys.readouterr().out


def test_a_crash_is_a_failure_not_a_pass():
    def scenario(seed):
        raise KeyError("n9")

    with pytest.raises(AssertionError, match=r"KeyError: 'n9' \(at test_sweep.py:\d+\)"):
        sweep(scenario, seeds=[1], quiet=True)


def test_no_seeds_is_not_a_pass():
    with pytest.raises(AssertionError, match="no seeds"):
        sweep(lambda s: None, seeds=[], quiet=True)


def test_stop_after():
    calls = []

    def scenario(seed):
        calls.append(seed)
        assert False, "always"

    with pytest.raises(AssertionError, match="failed on 2 of 2 seeds"):
        sweep(scenario, seeds=range(100), stop_after=2, quiet=True, executor="inline")   # calls: this process
    assert calls == [0, 1]


def test_labkit_checks_is_a_deprecated_alias_naming_the_new_import():
    import importlib
    import sys
    import warnings

    import labkit.sweep
    sys.modules.pop("labkit.checks", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("labkit.checks")
    (w,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert "from labkit.sweep import sweep" in str(w.message) and w.filename == __file__
    assert old.sweep is labkit.sweep.sweep and old.SweepFailed is labkit.sweep.SweepFailed
