"""Sweeps on other processes (issue 20): labkit's own pool, any concurrent.futures executor and
a Dask cluster give the result the serial run gives -- the same seeds run, failures, messages
and first failing seed, the same stop under ``stop_after`` -- and leave no process behind."""
from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import labkit.sweep
from labkit import _parallel
from labkit.sweep import SweepError, SweepFailed, sweep

#: A notebook's cell: a node class and a scenario defined in ``__main__`` (they travel by
#: value, as in a notebook), run in the simulator; some seeds fail an assert, some crash.
CELL = '''
import labkit

class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        ctx.reply(msg, echo=msg["x"])

def echo_scenario(seed):
    with labkit.Cluster(Echo, n=2, runtime="sim", seed=seed) as c:
        c.set_link("*", "*", delay=5, jitter=5)
        got = c.request("n1", "echo", x=seed).body["echo"]
        print(f"seed {seed} echoed {got}")
        assert seed % 7 != 3, f"seed {seed}: the echo of {got} came back at {c.now:.3f} ms"
        if seed % 11 == 5:
            {}["missing"]
'''


@pytest.fixture(scope="module")
def notebook():
    ns: dict = {"__name__": "__main__"}
    exec(compile(CELL, "cell[1]", "exec"), ns)
    return ns


def outcome(scenario, seeds, **kw):
    try:
        r = sweep(scenario, seeds=seeds, quiet=True, **kw)
    except SweepFailed as e:
        r = e.result
    return r


def same(a, b):
    assert a.seeds == b.seeds and a.failures == b.failures and a.first_failing_seed == b.first_failing_seed
    assert str(a).split("\n", 1)[1:] == str(b).split("\n", 1)[1:]          # the report, but for the time


@pytest.fixture
def pool_always(monkeypatch):
    """The default executor hands seeds to a pool of two after the first seed, on any machine."""
    monkeypatch.setattr(labkit.sweep, "POOL_WORTH_S", 0.0)
    monkeypatch.setattr(_parallel, "usable_cores", lambda: 2)


@pytest.mark.parametrize("stop_after", [None, 1, 3])
def test_default_pool_and_an_executor_give_the_serial_result(notebook, pool_always, stop_after):
    scenario, seeds = notebook["echo_scenario"], range(40)
    serial = outcome(scenario, seeds, executor="inline", stop_after=stop_after)
    assert serial.ran_on == "inline" and serial.failures
    assert any("KeyError: 'missing' (at cell[1]:" in m for m in serial.failures.values()) or stop_after
    pooled = outcome(scenario, seeds, stop_after=stop_after)
    assert pooled.ran_on == "inline, then 2 processes"
    same(pooled, serial)
    with cf.ProcessPoolExecutor(3) as ex:
        same(outcome(scenario, seeds, executor=ex, stop_after=stop_after), serial)
    with cf.ThreadPoolExecutor(2) as ex:
        same(outcome(scenario, seeds, executor=ex, stop_after=stop_after), serial)


def test_a_generator_of_seeds_and_stop_after_run_the_same_seeds(notebook, pool_always):
    scenario = notebook["echo_scenario"]
    serial = outcome(scenario, (s * 2 + 1 for s in range(30)), executor="inline", stop_after=2)
    with cf.ProcessPoolExecutor(2) as ex:
        same(outcome(scenario, (s * 2 + 1 for s in range(30)), executor=ex, stop_after=2), serial)
    odd = [s * 2 + 1 for s in range(30)]
    failing = [s for s in odd if s % 7 == 3 or s % 11 == 5]
    assert serial.seeds == odd[:odd.index(failing[1]) + 1] and list(serial.failures) == failing[:2]


def test_what_seeds_print_is_printed_here_in_seed_order(notebook, pool_always, capsys):
    outcome(notebook["echo_scenario"], range(12), stop_after=2)      # fails on 3 and 5: stops at 5
    out = capsys.readouterr().out
    assert out == "".join(f"seed {s} echoed {s}\n" for s in range(6))


def test_a_scenario_that_cannot_travel_runs_here_or_is_refused(pool_always):
    numbers = (n for n in range(100))            # a generator: neither pickle nor dill can send it

    def uses_an_iterator(seed):
        assert next(numbers) == seed

    r = sweep(uses_an_iterator, seeds=range(20), quiet=True)
    assert r.passed and r.ran_on == "inline"
    with cf.ProcessPoolExecutor(2) as ex, pytest.raises(SweepError, match="cannot be sent to the executor"):
        sweep(uses_an_iterator, seeds=range(20), executor=ex, quiet=True)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="executor="):
        sweep(lambda s: None, seeds=range(3), executor="threads")
    with pytest.raises(ValueError, match="stop_after=0"):
        sweep(lambda s: None, seeds=range(3), stop_after=0)
    with pytest.raises(ValueError, match=r"sweep\(seeds=200\): give the seeds as an iterable, e.g. range\(200\)"):
        sweep(lambda s: None, seeds=200)
    with pytest.raises(ValueError, match="seeds='abc'"):
        sweep(lambda s: None, seeds="abc")          # a str is iterable, but not seeds
    with pytest.raises(ValueError, match="scenario=5.*function of one seed"):
        sweep(5, seeds=range(3))


def _sees_no_node_mark(seed):
    assert "LABKIT_NODE_PROCESS" not in os.environ, "a sweep worker was started as a node process"


def test_sweep_workers_are_not_marked_as_node_processes(pool_always):
    """Only node starts mark the environment (their forkserver skips numpy); a sweep's pool
    starts under the same start lock but unmarked, so its workers keep numpy preloaded."""
    from labkit.runtime.processes import _MainHidden
    with _MainHidden():
        assert "LABKIT_NODE_PROCESS" not in os.environ
    with _MainHidden(node=True):
        assert os.environ["LABKIT_NODE_PROCESS"] == "1"
    assert "LABKIT_NODE_PROCESS" not in os.environ
    r = sweep(_sees_no_node_mark, seeds=range(6), quiet=True)
    assert r.ran_on.endswith("2 processes") and not r.failures, (r.ran_on, r.failures)


def _exits(seed):
    if seed == 7:
        os._exit(3)                     # takes its worker with it


def test_a_worker_that_dies_is_a_sweep_error_not_a_result():
    with cf.ProcessPoolExecutor(2) as ex, pytest.raises(SweepError, match=r"the executor failed \(at seeds"):
        sweep(_exits, seeds=range(20), executor=ex, quiet=True)


def test_one_core_runs_everything_here(monkeypatch):
    monkeypatch.setattr(labkit.sweep, "POOL_WORTH_S", 0.0)
    monkeypatch.setattr(_parallel, "usable_cores", lambda: 1)
    assert sweep(_passes_slowly, seeds=range(5), quiet=True).ran_on == "inline"


def _passes_slowly(seed):
    assert seed >= 0


def test_usable_cores_is_at_least_one_and_at_most_the_affinity():
    assert 1 <= _parallel.usable_cores() <= len(os.sched_getaffinity(0))


def test_chunks_shrink_towards_the_end_and_cover_every_seed_once():
    sizes = [len(c) for c in _parallel.chunks(iter(range(1000)), 1000, 2)]
    assert sum(sizes) == 1000 and sizes[0] == _parallel.MAX_CHUNK and sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True)
    assert [len(c) for c in _parallel.chunks(iter(range(10)), None, 2)] == [4, 4, 2]


SCRIPT = '''
import os, sys, time
import labkit.sweep
from labkit import _parallel
labkit.sweep.POOL_WORTH_S = 0.0
_parallel.usable_cores = lambda: 2
PIDS = sys.argv[1]

def slow(seed):
    open(os.path.join(PIDS, str(os.getpid())), "w").close()
    t = time.monotonic()
    while time.monotonic() - t < 0.05:   # busy: a simulation's CPU work
        pass

if __name__ == "__main__":
    try:
        labkit.sweep.sweep(slow, seeds=range(2000), progress=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
'''


@pytest.mark.processes
def test_ctrl_c_stops_the_sweep_and_its_workers(tmp_path):
    script = tmp_path / "sweeper.py"
    script.write_text(SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    p = subprocess.Popen([sys.executable, str(script), str(pids)], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len({int(f) for f in os.listdir(pids)} - {p.pid}) < 2:      # both workers run seeds
            assert time.monotonic() < deadline and p.poll() is None, "the pool never started"
            time.sleep(0.05)
        workers = {int(f) for f in os.listdir(pids)} - {p.pid}
        os.killpg(p.pid, signal.SIGINT)             # as a terminal's Ctrl-C: the whole group
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert "interrupted" in out and p.returncode == 0
    alive = [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"workers left behind: {alive}"


def test_dask_distributed_gives_the_serial_result(notebook):
    distributed = pytest.importorskip(
        "distributed", reason="the Dask test needs `distributed` (pip install -e '.[dev]' installs it)")
    scenario, seeds = notebook["echo_scenario"], range(30)
    serial = outcome(scenario, seeds, executor="inline")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        ex = client.get_executor()
        same(outcome(scenario, seeds, executor=ex), serial)
        same(outcome(scenario, seeds, executor=ex, stop_after=2), outcome(scenario, seeds, executor="inline",
                                                                          stop_after=2))
        assert outcome(scenario, seeds, executor=ex).ran_on == "ClientExecutor"


KERNEL_SETUP = '''
import os, time, labkit, labkit.sweep
from labkit import _parallel
labkit.sweep.POOL_WORTH_S = 0.0          # a pool even for this quick sweep
_parallel.usable_cores = lambda: 2

class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        ctx.reply(msg, echo=msg["x"])

def echo(seed):
    with labkit.Cluster(Echo, n=2, runtime="sim", seed=seed) as c:
        assert c.request("n1", "e", x=seed).body["echo"] == seed
        assert seed != 17, "seventeen"

def slow(seed):
    open(os.path.join(PIDS, str(os.getpid())), "w").close()
    t = time.monotonic()
    while time.monotonic() - t < 0.05:
        pass
'''


def workers_of(kernel) -> list[str]:
    """The kernel's descendants other than multiprocessing's forkserver and resource tracker
    (they serve the whole session, as labkit's own do)."""
    cmds = [" ".join(p.cmdline()) for p in kernel.descendants()]
    return [c for c in cmds if "forkserver import main" not in c and "resource_tracker import main" not in c]


@pytest.mark.processes                    # a real Jupyter kernel
def test_a_notebook_sweeps_cell_defined_classes_on_a_pool_and_ctrl_c_stops_it(tmp_path):
    try:
        from .kernelutil import Kernel, kill_leftovers
    except ImportError:
        from kernelutil import Kernel, kill_leftovers
    pids = tmp_path / "pids"
    pids.mkdir()
    kernel = Kernel(tmp_path)
    try:
        kernel.ok(KERNEL_SETUP + f"PIDS = {str(pids)!r}\n")
        out = kernel.run("r = labkit.sweep.sweep(echo, seeds=range(40))")
        assert out["error"][0] == "SweepFailed" and "✗ echo: failed on 1 of 40 seeds" in out["stdout"]
        assert "seventeen" in out["stdout"] and "replay: echo(17)" in out["stdout"]
        kernel.ok("assert labkit.sweep.sweep(echo, seeds=range(17)).ran_on == 'inline, then 2 processes'")
        assert not workers_of(kernel)                                                   # none left

        kernel.kc.execute("labkit.sweep.sweep(slow, seeds=range(2000))")
        deadline = time.monotonic() + 60
        while len(os.listdir(pids)) < 3:                        # the kernel, then two workers
            assert time.monotonic() < deadline, "the pool never started"
            time.sleep(0.05)
        workers = [psutil.Process(int(f)) for f in os.listdir(pids) if int(f) != kernel.pid]
        kernel.km.interrupt_kernel()
        reply = kernel.kc.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        alive = [p.pid for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"workers left behind after Ctrl-C: {alive}"
        assert not workers_of(kernel)
        kernel.ok("assert labkit.sweep.sweep(echo, seeds=range(17)).passed")             # and it still works
    finally:
        leftovers = kernel.descendants()
        kernel.close()
        kill_leftovers(leftovers)


def test_where_processes_cannot_start_the_sweep_runs_here(monkeypatch, notebook):
    monkeypatch.setattr(labkit.sweep, "POOL_WORTH_S", 0.0)
    monkeypatch.setattr(_parallel, "usable_cores", lambda: 2)

    def no_processes(self, workers):
        raise PermissionError("sem_open: this sandbox has no /dev/shm")
    monkeypatch.setattr(_parallel.ProcessPool, "__init__", no_processes)
    r = outcome(notebook["echo_scenario"], range(20))
    assert r.ran_on == "inline"
    same(r, outcome(notebook["echo_scenario"], range(20), executor="inline"))
