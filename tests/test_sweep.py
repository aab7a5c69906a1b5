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


# -- crashes and unwritten exercises (a stub's NotImplementedError) ------------------------

def test_a_node_crashing_with_a_stub_stops_the_sweep_and_shows_the_traceback_once(capsys):
    import labkit

    class Stub(labkit.Node):
        def on_message(self, ctx, msg):
            raise NotImplementedError("Exercise: write on_message")

    def scenario(seed):
        with labkit.Cluster(Stub, n=2, runtime="sim", seed=seed) as c:
            c.request("n1", "x", timeout=100)

    with pytest.raises(SweepFailed) as err:
        sweep(scenario, seeds=range(100))
    out, errs = capsys.readouterr()
    assert err.value.result.seeds == [0], "a NotImplementedError must stop the sweep after the first seed"
    assert "NotImplementedError: Exercise: write on_message" in out and "stopped after this seed" in out
    assert out.count("Traceback (most recent call last)") == 1, out
    assert "Traceback" not in errs, "the crash's traceback is shown once, in the report, not on stderr per seed"


def test_a_crash_that_fails_a_seed_is_named_in_the_report_and_other_seeds_go_on(capsys):
    import labkit

    class Odd(labkit.Node):
        def on_message(self, ctx, msg):
            if msg["seed"] % 2:
                raise KeyError("missing")
            ctx.reply(msg)

    def scenario(seed):
        with labkit.Cluster(Odd, n=1, runtime="sim", seed=seed) as c:
            c.request("n1", "x", seed=seed, timeout=100)

    with pytest.raises(SweepFailed) as err:
        sweep(scenario, seeds=range(6))
    out, errs = capsys.readouterr()
    assert err.value.result.seeds == list(range(6)) and list(err.value.result.failures) == [1, 3, 5]
    assert "a node crashed: n1" in out and "KeyError" in out
    assert out.count("Traceback (most recent call last)") == 1 and "Traceback" not in errs


def test_an_exception_raised_while_handling_another_names_its_cause(capsys):
    def scenario(seed):
        try:
            raise NotImplementedError("Exercise: implement owner()")
        except NotImplementedError:
            raise RuntimeError("the check could not place keys")

    with pytest.raises(SweepFailed) as err:
        sweep(scenario, seeds=range(10))
    out = capsys.readouterr().out
    assert err.value.result.seeds == [0]
    assert "caused by NotImplementedError: Exercise: implement owner()" in out


def test_a_stub_called_through_a_fake_context_stops_the_sweep_too(capsys):
    import labkit
    from labkit.testing import FakeContext

    class Stub(labkit.Node):
        def on_message(self, ctx, msg):
            raise NotImplementedError("Exercise: serve")

    def scenario(seed):
        ctx = FakeContext("n1")
        node = Stub()
        ctx.start(node)
        ctx.deliver(node, "read", src="c1", key="k")

    with pytest.raises(SweepFailed) as err:
        sweep(scenario, seeds=range(50))
    assert err.value.result.seeds == [0] and "Exercise: serve" in capsys.readouterr().out

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
