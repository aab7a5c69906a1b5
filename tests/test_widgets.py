"""The live control panel (labkit.widgets): buttons change the cluster, the refresher follows
it and stops when it should, and without a front end the panel is deterministic text.

The widgets are built without a front end (ipywidgets 8 then uses a dummy comm), and the
buttons are pressed with ``Button.click()``, which runs the on_click callbacks as a browser
click would. The real-browser test is test_browser.py.
"""
from __future__ import annotations

import gc
import sys
import types
import weakref

import pytest

import labkit
from labkit import widgets
from labkit.widgets import Panel, panel, text_summary

try:                                   # tests/ as a package, or as a plain directory
    from .panelnodes import Reporter
except ImportError:
    from panelnodes import Reporter


@pytest.fixture
def sim():
    c = labkit.Cluster(Reporter, n=3, runtime="sim", seed=5)
    c.run_for(1.0)
    yield c
    c.close()


@pytest.fixture
def make_panel():
    made = []

    def make(cluster, **kw):
        p = Panel(cluster, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()
        assert not p.thread.is_alive()


# -- headless ----------------------------------------------------------------------------
def test_headless_panel_prints_a_deterministic_summary(monkeypatch, capsys):
    monkeypatch.delenv("LABKIT_PANEL", raising=False)
    texts = []
    for _ in range(2):
        with labkit.Cluster(Reporter, n=3, runtime="sim", seed=5) as c:
            c.run_for(0.5)
            c.kill("n2")
            c.pause("n3")
            c.partition(["n1"], ["n2", "n3"])
            assert panel(c) is None
            texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] == (
        "labkit panel: Cluster(sim, 3 nodes, seed=5)\n"
        "  n1     up       incarnation 1  role leader\n"
        "  n2     down     incarnation 1\n"
        "  n3     paused   incarnation 1  role follower\n"
        "  network: partition n1 | n2,n3\n")


def test_headless_summary_of_a_closed_cluster(sim):
    sim.close()
    assert text_summary(sim) == "labkit panel: Cluster(sim, seed=5) is closed"


def test_frontend_detection(monkeypatch):
    monkeypatch.delenv("LABKIT_PANEL", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not widgets.has_frontend()                      # pytest: no IPython kernel
    shell = types.SimpleNamespace(kernel=object(), user_ns={})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert not widgets.has_frontend()                      # a bare kernel: nbval, nbconvert
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/ch1.ipynb")
    assert widgets.has_frontend()                          # Jupyter Server (JupyterLab, Binder)
    monkeypatch.delenv("JPY_SESSION_NAME")
    shell.user_ns["__vsc_ipynb_file__"] = "ch1.ipynb"
    assert widgets.has_frontend()                          # VS Code
    shell.kernel = None
    assert not widgets.has_frontend()                      # terminal IPython
    monkeypatch.setenv("LABKIT_PANEL", "widget")
    assert widgets.has_frontend()
    monkeypatch.setenv("LABKIT_PANEL", "text")
    shell.kernel = object()
    assert not widgets.has_frontend()


def test_panel_returns_the_widget_when_there_is_a_front_end(sim, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PANEL", "widget")
    p = panel(sim)
    try:
        assert isinstance(p, Panel) and capsys.readouterr().out == ""
        assert "Cluster(sim, 3 nodes, seed=5)" in repr(p)
    finally:
        p.close()


@pytest.mark.parametrize("kw", [{"refresh_hz": 0}, {"refresh_hz": 11}, {"refresh_hz": True}])
def test_refresh_rate_is_bounded(sim, kw):
    with pytest.raises(ValueError, match="refresh_hz"):
        panel(sim, **kw)


def test_metric_must_be_callable(sim):
    with pytest.raises(TypeError, match="metric"):
        Panel(sim, metric="pings")


# -- the simulator -----------------------------------------------------------------------
def test_tiles_show_state_role_and_counters(sim, make_panel):
    p = make_panel(sim)
    n1 = p.tiles["n1"]
    assert n1.state == "up" and "● up" in n1.title.value and "leader" in n1.title.value
    assert "pings" in n1.body.value and "ticks" in n1.body.value
    assert n1.buttons["kill"].disabled is False and n1.buttons["restart"].disabled is True
    assert n1.buttons["pause"].disabled is False and n1.buttons["resume"].disabled is True
    assert {"pings", "ticks"} <= set(p.metric_menu.options)
    assert p.metric_menu.value == "pings" and "<svg" in p.chart.value  # a counter is charted at once


def test_node_buttons_change_the_cluster(sim, make_panel, wait_until):
    p = make_panel(sim)
    t2, t3 = p.tiles["n2"], p.tiles["n3"]
    t2.buttons["kill"].click()
    assert sim.status()["n2"].state == "down" and p.last_action == ("kill n2", True, "ok")
    assert wait_until(lambda: t2.state == "down"), "the tile did not follow the kill"
    assert t2.buttons["kill"].disabled and t2.buttons["pause"].disabled and not t2.buttons["restart"].disabled
    assert "role" not in t2.title.value and "follower" not in t2.title.value
    t2.buttons["restart"].click()
    assert sim.status()["n2"].state == "up" and sim.status()["n2"].incarnation == 2
    assert wait_until(lambda: t2.state == "up" and "#2" in t2.title.value)
    t3.buttons["pause"].click()
    assert sim.status()["n3"].state == "paused"
    assert wait_until(lambda: t3.state == "paused" and not t3.buttons["resume"].disabled)
    assert t3.buttons["pause"].disabled
    t3.buttons["resume"].click()
    assert sim.status()["n3"].state == "up"


def test_errors_are_shown_not_raised(sim, make_panel):
    p = make_panel(sim)
    sim.kill("n1")
    p.tiles["n1"].buttons["pause"].click()       # disabled in the page, but clickable from Python
    label, ok, msg = p.last_action
    assert (label, ok) == ("pause n1", False) and "cannot pause n1" in msg
    assert "✗" in p.status_line.value and "cannot pause n1" in p.status_line.value
    p.tiles["n1"].buttons["kill"].click()
    assert p.last_action == ("kill n1", True, "was already down")


def test_link_matrix_cycles_one_way_and_two_way_cuts(sim, make_panel, wait_until):
    p = make_panel(sim)
    net = sim.net
    cell = p.cells[("n1", "n2")]
    assert cell.description == "✓"
    cell.click()
    assert net.blocked("n1", "n2") == "cut" and net.blocked("n2", "n1") is None
    assert p.last_action == ("link n1→n2", True, "cut")
    assert wait_until(lambda: cell.description == "✕" and p.cells[("n2", "n1")].description == "✓")
    p.cells[("n3", "n1")].click()                  # another cut, which restoring n1->n2 must keep
    cell.click()
    assert net.blocked("n1", "n2") is None and net.blocked("n3", "n1") == "cut"
    assert p.last_action == ("link n1→n2", True, "restored")
    assert wait_until(lambda: cell.description == "✓")
    p.two_way.value = "two-way"
    p.cells[("n2", "n3")].click()
    assert net.blocked("n2", "n3") == net.blocked("n3", "n2") == "cut"
    p.cells[("n3", "n2")].click()
    assert net.blocked("n2", "n3") is None and net.blocked("n3", "n2") is None
    assert net.describe() == "cut n3->n1"


def test_presets_isolate_split_and_heal_all(make_panel):
    with labkit.Cluster(Reporter, n=5, runtime="sim", seed=2) as c:
        p = make_panel(c)
        p.target.value = "n2"
        p.isolate_btn.click()
        assert c.net.describe() == "partition n2 | n1,n3,n4,n5"
        p.split_btn.click()
        assert p.last_action == ("partition n2,n3 | n1,n4,n5", True, "ok")
        assert c.net.blocked("n2", "n1") == "partition" and c.net.blocked("n2", "n3") is None
        p.cells[("n2", "n1")].click()              # a partition is not a cut: say so
        assert not p.last_action[1] and "heal all" in p.last_action[2]
        p.delay.value, p.drop.value = 40, 0.25
        p.apply_btn.click()
        link = c.net.link("n4", "n5")
        assert (link.delay, link.drop) == (40, 0.25)
        assert p.last_action[2] == "every link: delay 40 ms, drop 0.25"
        p.heal_btn.click()
        assert c.net.describe() == "healthy" and c.net.link("n4", "n5").perfect
        assert (p.delay.value, p.drop.value) == (0, 0.0)


def test_chart_follows_a_metric_function(sim, make_panel, wait_until):
    def delivered(c):
        return len(c.journal.filter(kind="deliver"))
    p = make_panel(sim, metric=delivered)
    assert p.metric_menu.value == "delivered(cluster)"
    sim.run_for(0.5)
    assert wait_until(lambda: "<polyline" in p.chart.value and "delivered(cluster)" in p.chart.value)
    p.metric_menu.value = "ticks"
    assert wait_until(lambda: ">n1 " in p.chart.value and ">n3 " in p.chart.value)


def test_a_failing_metric_is_shown_and_the_panel_goes_on(sim, make_panel, wait_until):
    p = make_panel(sim, metric=lambda c: 1 / 0)
    assert "metric failed: ZeroDivisionError" in p.chart.value
    p.tiles["n1"].buttons["kill"].click()
    assert wait_until(lambda: p.tiles["n1"].state == "down") and p.thread.is_alive()


# -- the refresher's lifetime ----------------------------------------------------------------
def test_refresher_stops_when_the_cluster_closes(make_panel):
    c = labkit.Cluster(Reporter, n=3, runtime="sim", seed=1)
    p = make_panel(c, refresh_hz=10)
    assert p.thread.is_alive() and p.thread.daemon
    c.close()
    p.thread.join(timeout=5)
    assert not p.thread.is_alive()
    assert "cluster closed" in p.header.value
    assert all(b.disabled for b in [*p.cells.values(), p.heal_btn, *p.tiles["n1"].buttons.values()])
    for tile in p.tiles.values():                   # greyed out: no tile still says "up" in green
        assert tile.state == "closed" and "○ closed" in tile.title.value and "● up" not in tile.title.value
        assert "#2e7d32" not in tile.title.value + str(tile.box.layout.border)
    assert {c.style.button_color for c in p.cells.values()} == {"#eeeeee"}
    p.heal_btn.click()                              # still shows, never raises
    assert p.last_action == ("heal all", False, "ClusterClosed: the cluster is closed")


def test_refresher_stops_when_the_panel_closes(sim):
    p = Panel(sim, refresh_hz=10)
    p.close()
    p.thread.join(timeout=5)
    assert not p.thread.is_alive() and sim.status()["n1"].state == "up"


def test_panel_does_not_keep_the_cluster_alive(make_panel):
    c = labkit.Cluster(Reporter, n=2, runtime="sim", seed=1)
    p = make_panel(c)
    ref = weakref.ref(c)
    c.close()
    del c
    gc.collect()
    assert ref() is None, "the panel kept a closed cluster alive"
    p.thread.join(timeout=5)
    assert not p.thread.is_alive()


# -- real processes --------------------------------------------------------------------------
@pytest.mark.processes
def test_panel_drives_a_processes_cluster(make_panel, wait_until):
    with labkit.Cluster(Reporter, n=3, seed=11) as c:
        p = make_panel(c, refresh_hz=10)
        t1 = p.tiles["n1"]
        assert wait_until(lambda: "pings" in t1.body.value and "leader" in t1.title.value, timeout=10)
        assert wait_until(lambda: "pings" in p.metric_menu.options)
        t1.buttons["kill"].click()
        assert p.last_action == ("kill n1", True, "ok") and c.status()["n1"].state == "down"
        assert wait_until(lambda: t1.state == "down" and not t1.buttons["restart"].disabled)
        t1.buttons["restart"].click()
        assert c.status()["n1"].state == "up" and c.status()["n1"].incarnation == 2
        assert wait_until(lambda: t1.state == "up" and "#2" in t1.title.value)
        p.tiles["n2"].buttons["pause"].click()
        assert c.status()["n2"].state == "paused"
        assert wait_until(lambda: p.tiles["n2"].state == "paused")
        p.tiles["n2"].buttons["resume"].click()
        assert c.status()["n2"].state == "up"
        p.cells[("n3", "n1")].click()
        assert c.net.blocked("n3", "n1") == "cut" and c.net.blocked("n1", "n3") is None
        assert wait_until(lambda: p.cells[("n3", "n1")].description == "✕")
        p.delay.value, p.drop.value = 30, 0.1
        p.apply_btn.click()
        assert (c.net.link("n1", "n2").delay, c.net.link("n1", "n2").drop) == (30, 0.1)
        p.heal_btn.click()
        assert c.net.describe() == "healthy"
        assert wait_until(lambda: p.cells[("n3", "n1")].description == "✓")
        kinds = [e.kind for e in c.journal]
        for kind in ("kill", "restart", "pause", "resume", "cut", "link", "heal", "clear_links"):
            assert kind in kinds
        assert "crash" not in kinds                  # a panel kill is a kill, never a crash
        assert not c.crashes
    p.thread.join(timeout=5)
    assert not p.thread.is_alive() and "cluster closed" in p.header.value


@pytest.mark.processes
def test_panel_kills_never_race_the_refresher_into_a_crash(make_panel):
    """A kill from the panel and a refresh are serialised by the panel lock: the refresher
    never sees the SIGKILLed process before the cluster has marked the node down."""
    with labkit.Cluster(Reporter, n=1, seed=3) as c:
        p = make_panel(c, refresh_hz=10)
        seen = set()
        for _ in range(25):
            p.tiles["n1"].buttons["kill"].click()
            seen.add(p.tiles["n1"].state)
            p._tick()                                   # a refresh between the two actions, too
            seen.add(p.tiles["n1"].state)
            p.tiles["n1"].buttons["restart"].click()
            assert p.last_action[1], p.last_action
        assert not c.crashes and c.status()["n1"].incarnation == 26
        assert seen <= {"up", "down"}


@pytest.mark.processes
def test_detection_in_real_kernels(tmp_path):
    """A kernel started by jupyter_client alone (as nbval starts one) prints the text; the
    same kernel with Jupyter Server's JPY_SESSION_NAME builds the widget."""
    try:
        from .kernelutil import Kernel, kill_leftovers
    except ImportError:
        from kernelutil import Kernel, kill_leftovers
    k = Kernel(tmp_path)
    procs = []
    try:
        k.ok("import os; os.environ.pop('LABKIT_PANEL', None); os.environ.pop('JPY_SESSION_NAME', None)")
        out = k.ok("import labkit, labkit.widgets\n"
                   "c = labkit.Cluster(labkit.Node, n=2, runtime='sim', seed=1)\n"
                   "print(labkit.widgets.panel(c))")
        assert out["stdout"] == ("labkit panel: Cluster(sim, 2 nodes, seed=1)\n"
                                 "  n1     up       incarnation 1\n"
                                 "  n2     up       incarnation 1\n"
                                 "  network: healthy\n"
                                 "None\n")
        k.ok("os.environ['JPY_SESSION_NAME'] = 'chapter.ipynb'")
        out = k.ok("p = labkit.widgets.panel(c)\n"
                   "print(type(p).__name__, p.thread.is_alive())\n"
                   "c.close(); p.thread.join(5)\n"
                   "print('closed', p.thread.is_alive())")
        assert out["stdout"] == "Panel True\nclosed False\n"
        procs = k.descendants()
    finally:
        k.close()
        kill_leftovers(procs)
