"""labkit.plots: every figure renders to valid SVG and PNG, says when it samples, shows drops,
and draws less when filtered. Headless (Agg); no pyplot anywhere."""
from __future__ import annotations

import io
import re
import threading
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

import labkit  # noqa: E402
from labkit import Event, Journal, plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- journals ---------------------------------------------------------------------------------

def _msg(t, kind, src, dst, type, mid, re=None, **extra):
    node = {"send": src}.get(kind, dst)
    return {"t": t, "kind": kind, "node": node, "id": mid, "src": src, "dst": dst, "type": type,
            "re": re, "at": t, "body": {}, **extra}


TINY = [
    *({"t": 0, "kind": "start", "node": n, "incarnation": 1} for n in ("n1", "n2", "n3")),
    _msg(1, "send", "n1", "n2", "ping", "n1.1.1"), _msg(2, "deliver", "n1", "n2", "ping", "n1.1.1"),
    _msg(2.5, "send", "n2", "n1", "pong", "n2.1.1", re="n1.1.1"),
    _msg(3.5, "deliver", "n2", "n1", "pong", "n2.1.1", re="n1.1.1"),
    _msg(4, "deliver", "n2", "n1", "pong", "n2.1.1", re="n1.1.1"),          # a duplicate
    _msg(5, "send", "client", "n3", "read", "client.1.1"), _msg(5.1, "deliver", "client", "n3", "read", "client.1.1"),
    _msg(5.2, "send", "n3", "client", "read_ok", "n3.1.1", re="client.1.1"),
    _msg(5.3, "deliver", "n3", "client", "read_ok", "n3.1.1", re="client.1.1"),
    {"t": 6, "kind": "partition", "node": "cluster", "groups": [["n1"], ["n2", "n3"]]},
    _msg(7, "send", "n1", "n3", "ping", "n1.1.2"), _msg(7, "drop", "n1", "n3", "ping", "n1.1.2", rule="partition"),
    {"t": 8, "kind": "heal", "node": "cluster"},
    {"t": 9, "kind": "kill", "node": "n2", "incarnation": 1},
    {"t": 10, "kind": "pause", "node": "n3"}, {"t": 11, "kind": "resume", "node": "n3"},
    {"t": 12, "kind": "restart", "node": "n2", "incarnation": 2},
    {"t": 12, "kind": "start", "node": "n2", "incarnation": 2},
    {"t": 13, "kind": "stats", "node": "n1", "counters": {}, "status": {"role": "leader", "term": 2}},
    _msg(14, "send", "n1", "n2", "append", "n1.1.3"), _msg(15, "deliver", "n1", "n2", "append", "n1.1.3"),
]


@pytest.fixture(scope="module")
def tiny() -> Journal:
    return Journal([Event.from_dict(d) for d in TINY])


@pytest.fixture(scope="module")
def empty() -> Journal:
    return Journal([])


class Pinger(labkit.Node):
    def on_start(self, ctx):
        ctx.set_timer("tick", between=(20, 40))
        ctx.report(role="leader" if ctx.id == "n1" else "follower")

    def on_timer(self, ctx, name):
        ctx.broadcast("ping")
        ctx.set_timer("tick", between=(20, 40))

    def on_message(self, ctx, msg):
        if msg.type == "ping":
            ctx.reply(msg, type="pong")
        elif msg.type == "read":
            ctx.reply(msg, value=ctx.now)


def big_journal(seed: int = 3) -> Journal:
    """A seeded sim run with every common fault, >10,000 events (benchmarks/spacetime.py
    draws the same scenario, without the client reads)."""
    with labkit.Cluster(Pinger, n=5, runtime="sim", seed=seed) as c:
        c.set_link(delay=5, jitter=3, drop=0.05)
        c.run_for(1.5)
        for i in range(10):
            c.request(f"n{i % 5 + 1}", "read", as_client=f"c{i % 2}")
        c.partition(["n1", "n2"])
        c.run_for(1.0)
        c.heal()
        c.kill("n4")
        c.run_for(0.7)
        c.restart("n4")
        c.pause("n2")
        c.run_for(0.3)
        c.resume("n2")
        c.run_for(0.6)
    return Journal(c.journal.events, seed=seed)


@pytest.fixture(scope="module")
def big() -> Journal:
    j = big_journal()
    assert len(j) >= 10_000
    return j


HISTORY = [
    {"process": 0, "type": "invoke", "f": "write", "value": 1, "time": 0.0},
    {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 2.0},
    {"process": 0, "type": "ok", "f": "write", "value": 1, "time": 5.0},
    {"process": 1, "type": "ok", "f": "read", "value": 1, "time": 6.0},
    {"process": 2, "type": "invoke", "f": "cas", "value": [1, 2], "key": "x", "time": 7.0},
    {"process": 0, "type": "invoke", "f": "write", "value": 3, "time": 8.0},
    {"process": 0, "type": "fail", "f": "write", "value": 3, "time": 9.0},
    {"process": 2, "type": "info", "f": "cas", "value": [1, 2], "key": "x", "time": 12.0},
    {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 13.0},
    {"process": 1, "type": "ok", "f": "read", "value": 2, "time": 15.0},
]


# -- helpers ----------------------------------------------------------------------------------

def check_renders(fig) -> str:
    svg = plots.to_svg(fig)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(PNG_SIGNATURE)
    return svg


def texts(fig) -> str:
    """Every piece of text in the figure (titles, labels, legend), one per line."""
    out = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    return "\n".join(out)


def arrows(fig) -> int:
    return sum(q.N for q in fig.findobj(Quiver))


FIGURES = {
    "spacetime": lambda j: plots.spacetime(j),
    "timeline": lambda j: plots.timeline(j),
    "latency": lambda j: plots.latency(j),
    "rate": lambda j: plots.rate(j),
    "cluster_view": lambda j: plots.cluster_view(j),
}


# -- every figure, every journal --------------------------------------------------------------

@pytest.mark.parametrize("which", ["empty", "tiny", "big"])
@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_renders_to_svg_and_png(name, which, request):
    journal = request.getfixturevalue(which)
    fig = FIGURES[name](journal)
    assert isinstance(fig, matplotlib.figure.Figure)
    check_renders(fig)
    assert repr(fig).startswith("<") and "Figure size" not in repr(fig)   # the text summary


@pytest.mark.parametrize("name", ["timeline", "latency", "rate"])
def test_history_figures_take_dicts_objects_and_empty_histories(name):
    fn = getattr(plots, name)
    check_renders(fn(HISTORY))
    check_renders(fn([SimpleNamespace(**{"key": None, **h}) for h in HISTORY]))
    check_renders(fn([]))


# -- spacetime ----------------------------------------------------------------------------------

def test_spacetime_tiny_draws_every_delivery_the_drop_and_the_faults(tiny):
    fig = plots.spacetime(tiny)
    assert arrows(fig) == 6              # ping, pong twice (duplicate), read, read_ok, append
    labels = texts(fig)
    assert "dropped: partition (1)" in labels
    assert "partition n1 | n2,n3" in labels
    for what in ("kill", "restart", "node down (killed)", "node paused"):
        assert what in labels
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["clients", "n1", "n2", "n3"]
    # the drop happened at send time: its cross is on the way from n1 (y=1) to n3 (y=3), not on n2
    crosses = [c for c in fig.findobj(PathCollection) if (c.get_offsets() == [[7.0, 1.4]]).all(axis=1).any()]
    assert crosses
    assert "showing" not in labels


def test_spacetime_draws_a_message_never_delivered_dotted_towards_its_receiver(tiny):
    from matplotlib.collections import LineCollection
    none_in_flight = [c for c in plots.spacetime(tiny).findobj(LineCollection) if c.get_linestyle()[0][1]]
    journal = Journal(list(tiny) + [Event.from_dict(_msg(14.5, "send", "n2", "n3", "append", "n2.2.1"))])
    fig = plots.spacetime(journal)
    assert arrows(fig) == 6, "an undelivered message gets no arrow"
    assert "not delivered by the end: in flight, or lost with a node (1)" in texts(fig)
    assert "1 neither delivered nor dropped" in repr(fig)
    lanes = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    dotted = [seg for c in fig.findobj(LineCollection) if c.get_linestyle()[0][1] and c not in none_in_flight
              for seg in c.get_segments()]
    # from n2 at its send time to n3's lane at the end of the window
    assert any(seg[0][0] == 14.5 and seg[0][1] == lanes.index("n2") and seg[1][1] == lanes.index("n3")
               and seg[1][0] >= 14.5 for seg in dotted), dotted


def test_spacetime_samples_large_journals_and_says_so(big):
    sent = big.count()["send"]
    fig = plots.spacetime(big, max_messages=500)
    note = re.search(r"showing ([\d,]+) of ([\d,]+) messages \(every (\d+)(st|nd|rd|th)\)", texts(fig))
    assert note, texts(fig)
    shown, total, step = (int(note.group(i).replace(",", "")) for i in (1, 2, 3))
    assert total == sent and shown <= 500 and step == -(-total // 500)
    assert arrows(fig) <= shown * 2      # a duplicate adds a second arrow
    assert note.group(0) in plots.to_svg(fig)   # the note is real text in the SVG
    full = plots.spacetime(big, max_messages=10**6)
    assert "showing" not in texts(full) and arrows(full) > arrows(fig)


def test_spacetime_filters_reduce_what_is_drawn(tiny, big):
    everything = arrows(plots.spacetime(tiny))
    assert arrows(plots.spacetime(tiny, types=["ping"])) == 1
    only = plots.spacetime(tiny, nodes=["n1", "n2"])
    assert [t.get_text() for t in only.axes[0].get_yticklabels()] == ["n1", "n2"]
    assert arrows(only) == 4 < everything
    assert "dropped" not in texts(only)
    window = plots.spacetime(tiny, since=6, until=15)
    assert arrows(window) == 1 and window.axes[0].get_xlim() == (6, 15)
    assert "dropped: partition (1)" in texts(window)
    n = 10**6
    assert arrows(plots.spacetime(big, since=1000, until=1500, max_messages=n)) < arrows(
        plots.spacetime(big, max_messages=n))
    assert arrows(plots.spacetime(big, types=["ping"], max_messages=n)) < arrows(plots.spacetime(big, max_messages=n))


def test_spacetime_and_rate_refuse_what_would_draw_nonsense(tiny):
    """A str is one node (one type), not its characters; a node with no events is named, not
    drawn as an empty lifeline; NaN windows and a zero bin are refused."""
    one = plots.spacetime(tiny, nodes="n1")
    assert [t.get_text() for t in one.axes[0].get_yticklabels()] == ["n1"]
    assert arrows(plots.spacetime(tiny, types="ping")) == arrows(plots.spacetime(tiny, types=["ping"])) == 1
    with pytest.raises(ValueError, match=r"\['n9'\] has no events in this journal; its nodes are \['n1'"):
        plots.spacetime(tiny, nodes=["n1", "n9"])
    with pytest.raises(labkit.ArgumentError, match="spacetime\\(since\\)"):
        plots.spacetime(tiny, since=float("nan"))
    with pytest.raises(labkit.ArgumentError, match="rate\\(bin_ms\\)"):
        plots.rate(tiny, bin_ms=0)


# -- fault spans --------------------------------------------------------------------------------

def test_fault_spans_of_the_tiny_journal(tiny, empty):
    spans = plots.fault_spans(tiny)
    assert [s[:4] for s in spans] == [(6, 8, "partition", "n1 | n2,n3"), (9, 12, "down", "n2"),
                                      (10, 11, "paused", "n3")]
    assert [(s.node, s.open) for s in spans] == [(None, False), ("n2", False), ("n3", False)]
    assert plots.fault_spans(empty) == []


def test_open_fault_spans_end_at_the_last_event():
    j = Journal([Event.from_dict(d) for d in [
        {"t": 1, "kind": "cut", "node": "cluster", "a": "n1", "b": "n2", "one_way": True},
        {"t": 2, "kind": "link", "node": "cluster", "src": "*", "dst": "*", "drop": 0.2},
        {"t": 3, "kind": "crash", "node": "n1", "id": "n2.1.7", "error": "boom"},
        {"t": 4, "kind": "nemesis", "node": "cluster", "op": "start", "faults": ["kill"]},
        {"t": 5, "kind": "skew", "node": "n2", "offset_ms": 50.0, "rate": 1.0},
        {"t": 9, "kind": "log", "node": "n2", "text": "hi"}]])
    spans = plots.fault_spans(j)
    assert [s[:4] for s in spans] == [(1, 9, "cut", "n1→n2"), (2, 9, "link", "*→* drop=0.2"),
                                      (3, 9, "crashed", "n1"), (4, 9, "nemesis", "nemesis: kill"),
                                      (5, 9, "skew", "n2 +50 ms")]
    assert all(s.open for s in spans) and spans[0].covers(10**9)


# -- timeline, latency, rate --------------------------------------------------------------------

def test_timeline_bars_labels_info_and_highlight():
    fig = plots.timeline(HISTORY, highlight=HISTORY[4])
    ax = fig.axes[0]
    labels = texts(fig)
    assert "cas x [1, 2]" in labels and "read 1" in labels
    assert [t.get_text() for t in ax.get_yticklabels()] == ["process 0", "process 1", "process 2"]
    outlined = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_linewidth() >= 2.5]
    assert len(outlined) == 1
    x, w = outlined[0].get_x(), outlined[0].get_width()
    assert x == 7.0 and x + w == ax.get_xlim()[1]        # info runs to the end of the plot
    assert "info (may have happened, any time later) (1)" in labels and "fail (did not happen) (1)" in labels
    # an operation can also be named by process and time, or several at once
    two = plots.timeline(HISTORY, highlight=[{"process": 1, "time": 2.0}, HISTORY[0]])
    assert sum(1 for p in two.axes[0].patches if p.get_linewidth() >= 2.5) == 2


def test_operations_pair_invocations_with_completions(tiny):
    ops = plots.operations(HISTORY)
    assert [(o.process, o.f, o.type, o.start, o.end) for o in ops] == [
        (0, "write", "ok", 0.0, 5.0), (1, "read", "ok", 2.0, 6.0), (2, "cas", "info", 7.0, None),
        (0, "write", "fail", 8.0, 9.0), (1, "read", "ok", 13.0, 15.0)]
    (op,) = plots.operations(tiny)               # the journal's one client request
    assert (op.process, op.f, op.type, op.start, op.end) == ("client", "read", "ok", 5.0, 5.3)


def test_latency_and_rate_shade_faults_from_a_journal(tiny):
    for fn in (plots.latency, plots.rate):
        fig = fn(HISTORY, faults=tiny)
        labels = texts(fig)
        assert "partition" in labels and "node down (killed)" in labels and "node paused" in labels
        assert "partition" not in texts(fn(HISTORY))
    assert "rolling median" in texts(plots.latency(HISTORY * 1 + [
        {"process": 9, "type": t, "f": "read", "time": float(i + (t == "ok"))}
        for i in range(20, 30) for t in ("invoke", "ok")]))


# -- cluster view -------------------------------------------------------------------------------

def test_cluster_view_states_roles_and_partitions(tiny):
    during = plots.cluster_view(tiny, at=7)
    assert "partition n1 | n2,n3" in repr(during) and "group 1: n1" in texts(during)
    assert "1 down" in repr(plots.cluster_view(tiny, at=9.5))
    assert "1 paused" in repr(plots.cluster_view(tiny, at=10.5))
    end = plots.cluster_view(tiny)
    assert "3 up" in repr(end) and "leader" in texts(end)


def test_cluster_view_of_a_live_sim_cluster():
    with labkit.Cluster(Pinger, n=3, runtime="sim", seed=5) as c:
        c.run_for(0.5)
        c.kill("n2")
        c.cut("n1", "n3", one_way=True)
        fig = plots.cluster_view(c)
        assert "2 up, 1 down" in repr(fig)
        assert "cut: n1→n3" in texts(fig)
        check_renders(fig)


# -- display and threads ------------------------------------------------------------------------

def test_figures_display_as_svg_and_build_from_threads(tiny):
    fig = plots.spacetime(tiny)
    assert fig._repr_svg_().lstrip().startswith(("<?xml", "<svg"))
    results: list = []

    def work():
        results.append(check_renders(plots.spacetime(tiny)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1     # deterministic SVG, from any thread


# -- fit: every figure fits a ~950-px notebook column, legend included (issue 19, item 2) ----

COLUMN_PX = 950      # JupyterLab's output column at a 1,400-px window with the file browser open


def _svg_px(svg: str) -> tuple[float, float]:
    root = ET.fromstring(svg)
    return tuple(float(root.get(k).removesuffix("pt")) * 96 / 72 for k in ("width", "height"))


def _crowded_journal() -> Journal:
    """Many message types, every fault kind, client requests: the longest legends."""
    class Chatty(labkit.Node):
        TYPES = [f"message_type_{i}" for i in range(12)]

        def on_start(self, ctx):
            ctx.set_timer("t", between=(10, 30))
            ctx.report(role="candidate of a long role name" if ctx.id == "n2" else "follower")

        def on_timer(self, ctx, name):
            ctx.send(ctx.rng.choice(ctx.peers), ctx.rng.choice(self.TYPES))
            ctx.set_timer("t", between=(10, 30))

        def on_message(self, ctx, msg):
            if msg.type in ("read", "write"):
                ctx.reply(msg, value=1)

    with labkit.Cluster(Chatty, n=5, runtime="sim", seed=5) as c:
        c.run_for(0.2)
        c.nemesis(["partition"], every=(0.05, 0.1), duration=(0.05, 0.1))
        c.set_link("n1", "*", delay=3, drop=0.2)
        c.skew("n5", 50)
        c.cut("n2", "n3")
        c.kill("n4")
        c.pause("n3")
        for i in range(20):
            try:
                c.request(f"n{1 + i % 5}", "read" if i % 3 else "write", timeout=30, as_client=f"c{i % 4}")
            except labkit.RequestTimeout:
                pass
        c.nemesis(None)
        c.run_for(0.2)
    return Journal(c.journal.events)


def _each_plot_kind():
    j = _crowded_journal()
    long_history = [dict(e, process=f"client process with a long name {e['process']}") for e in HISTORY]
    return {"spacetime": plots.spacetime(j), "spacetime_window": plots.spacetime(j, since=100, until=150),
            "timeline": plots.timeline(j), "timeline_history": plots.timeline(long_history, highlight=HISTORY[3]),
            "latency": plots.latency(j), "rate": plots.rate(j), "cluster_view": plots.cluster_view(j),
            "empty": plots.spacetime(Journal([]))}


def test_every_plot_kind_fits_the_column_with_its_legend_inside():
    figs = _each_plot_kind()
    summary = figs["cluster_view"].summary
    assert sum(int(n) for n in re.findall(r"(\d+) (?:up|paused|down|crashed)", summary)) == 5, summary
    assert "nemesis" not in [t.get_text() for t in figs["spacetime"].axes[0].get_yticklabels()]
    for name, fig in figs.items():
        width, height = _svg_px(fig._repr_svg_())
        assert width <= COLUMN_PX, f"{name}: {width:.0f} px wide, the column is {COLUMN_PX} px"
        fig.draw_without_rendering()
        box = fig.bbox
        assert fig.legends or name == "empty", f"{name}: no legend"
        for legend in fig.legends:
            lb = legend.get_window_extent()
            inside = box.x0 - 0.5 <= lb.x0 and lb.x1 <= box.x1 + 0.5 and box.y0 - 0.5 <= lb.y0 and lb.y1 <= box.y1 + 0.5
            assert inside, f"{name}: legend {lb} is not inside the figure {box}"
            for ax in fig.axes:       # below the axes, never over the data
                assert lb.y1 <= ax.get_window_extent().y0 + 0.5, f"{name}: the legend overlaps the axes"


def test_a_wide_figure_made_in_a_chapter_is_scaled_down_to_the_column():
    fig = plots.PlotFigure(figsize=(14, 7), layout="constrained")
    fig.subplots().plot([0, 1], [0, 1], label="a line")
    fig.axes[0].legend(loc="upper right")
    raw, shown = _svg_px(plots.to_svg(fig)), _svg_px(fig._repr_svg_())
    assert raw[0] > COLUMN_PX >= shown[0]
    assert abs(shown[1] / shown[0] - raw[1] / raw[0]) < 1e-3        # scaled as a whole
    assert ET.fromstring(fig._repr_svg_()).get("viewBox") == ET.fromstring(plots.to_svg(fig)).get("viewBox")
