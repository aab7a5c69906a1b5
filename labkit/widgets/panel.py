"""The ``Panel`` widget and its refresher thread.

Theory of operation. Three parties touch the panel:

* the main thread builds and displays it, and runs button callbacks (ipykernel runs comm
  messages there), which call the cluster's fault methods;
* one refresher thread (``labkit-panel-<seed>``) reads ``status()``, ``counters()`` and
  ``cluster.net`` at ``refresh_hz`` -- at most 10 Hz, and slower when reading is costly (it
  keeps to ~10% duty) -- and only sets widget traits: no ``Output`` widget, no pyplot (the
  chart is an SVG string in an ``HTML`` widget). An action wakes it, so a tile follows a click
  at once. It is the only writer of tiles, matrix, chart and header; actions write only the
  status line;
* the panel lock: every action (the fault call and its status line) and every refresh (read
  and render) holds it, so a refresh never reads a node half-way through a panel action. A
  refresh also holds the processes runtime's own RLock while it reads, which narrows (but
  cannot close) its races with kill / restart / close called from notebook cells: see ``_read``.

Lifetime: the panel holds the cluster by weak reference, and the thread holds the panel by
weak reference, so neither keeps a forgotten or closed cluster alive. The thread ends when
the cluster closes (it polls ``cluster.closed``; the panel then freezes with its controls
off), when ``Panel.close()`` is called, or when the panel is garbage.
"""
from __future__ import annotations

import html
import re
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

import ipywidgets as W

from ..capacity import METRICS as CAPACITY_METRICS
from ..errors import ClusterClosed
from ..nemesis import SLOW_FACTOR
from .chart import NO_METRIC, strip_chart

MAX_HZ = 10.0
DUTY = 0.1                # the refresher reads the cluster at most ~this share of the time
RECOST = 50               # a node's counters are re-read at most every RECOST x the last read's cost
HISTORY = 160             # chart samples kept (40 s at 4 Hz)
MATRIX_MAX = 12           # bigger clusters get no link matrix (their network line stays)
CLOSED_COLOUR = "#9e9e9e"   # every tile of a closed cluster: nothing runs any more
STATE_COLOURS = {"up": "#2e7d32", "down": "#757575", "paused": "#f9a825", "crashed": "#c62828",
                 "starting": "#1565c0"}
CELLS = {None: ("✓", "#c8e6c9"), "cut": ("✕", "#ef9a9a"), "partition": ("∥", "#ffcc80")}


def check_args(metric: Any, refresh_hz: Any) -> None:
    if isinstance(refresh_hz, bool) or not isinstance(refresh_hz, (int, float)) or not 0 < refresh_hz <= MAX_HZ:
        raise ValueError(f"refresh_hz must be a number in (0, {MAX_HZ:g}], got {refresh_hz!r}")
    if metric is not None and not callable(metric):
        raise TypeError(f"metric must be a function metric(cluster) -> float, got {metric!r}")


def _button(label: str, tip: str, fn: Callable[[], None]) -> W.Button:
    b = W.Button(description=label, tooltip=tip, layout=W.Layout(width="auto", height="28px", margin="1px"))
    b.on_click(lambda _b: fn())
    return b


class Panel(W.VBox):
    """The live control panel of one cluster (see ``labkit.widgets.panel``).

    Its controls are attributes, for tests and power users: ``tiles[node].buttons[name]``
    (name: kill / restart / pause / resume / slow -- slow toggles ``cluster.slow(node, 10)``
    and ``cluster.unslow(node)``), ``cells[(src, dst)]``, ``two_way``, ``target``,
    ``isolate_btn``, ``split_btn``, ``heal_btn``, ``delay``, ``drop``, ``apply_btn``,
    ``metric_menu``, ``chart``, ``status_line``. ``last_action`` is ``(label, ok, message)``
    of the last button action; ``thread`` is the refresher. ``close()`` stops it."""

    def __init__(self, cluster: Any, *, metric: Callable[[Any], float] | None = None,
                 refresh_hz: float = 4) -> None:
        check_args(metric, refresh_hz)
        if cluster.closed:
            raise ClusterClosed("this cluster is closed; a panel needs a running cluster")
        self._cluster = weakref.ref(cluster)
        self._ids: tuple[str, ...] = tuple(cluster.ids)
        self._metric_fn = metric
        self._metric_label = f"{getattr(metric, '__name__', 'metric')}(cluster)" if metric else None
        self._lock = threading.Lock()
        self._stop, self._wake = threading.Event(), threading.Event()
        self._history: deque = deque(maxlen=HISTORY)
        self._names: set[str] = set()
        self._counter_cache: dict[str, tuple] = {}
        self._finished = False
        self.last_action: tuple[str, bool, str] | None = None
        self._title = f"labkit · Cluster({cluster.runtime}, {len(self._ids)} nodes, seed={cluster.seed})"

        self.header = W.HTML()
        self.tiles = {n: _Tile(n, self) for n in self._ids}
        self.cells: dict[tuple[str, str], W.Button] = {}
        self.two_way = W.ToggleButtons(options=["one-way", "two-way"], style={"button_width": "84px"},
                                       tooltips=["a click cuts src→dst only", "a click cuts both directions"])
        self.net_line = W.HTML()
        self.target = W.Dropdown(options=self._ids, description="node", layout=W.Layout(width="140px"),
                                 style={"description_width": "36px"})
        self.isolate_btn = _button("isolate", "cut the node off from every other node", self._isolate)
        self.split_btn = _button("minority split", "partition: the node (and its next neighbours, a "
                                 "minority) | the rest", self._split)
        self.heal_btn = _button("heal all", "heal() + clear_links(): every link healthy and perfect",
                                self._heal_all)
        self.delay = W.IntSlider(0, min=0, max=1000, step=10, description="delay ms", continuous_update=False)
        self.drop = W.FloatSlider(0.0, min=0.0, max=1.0, step=0.01, description="drop p",
                                  continuous_update=False)
        self.apply_btn = _button("apply to all links", 'set_link("*", "*", delay=…, drop=…)', self._apply_link)
        self.metric_menu = W.Dropdown(options=[NO_METRIC] + ([self._metric_label] if metric else []),
                                      value=self._metric_label or NO_METRIC, description="chart",
                                      layout=W.Layout(width="300px"), style={"description_width": "40px"})
        self.metric_menu.observe(lambda _change: self._wake.set(), "value")
        self.chart = W.HTML()
        self.status_line = W.HTML("<i>ready</i>")
        controls = W.VBox([W.HTML("<b>presets</b>"), W.HBox([self.target, self.isolate_btn, self.split_btn]),
                           self.heal_btn, W.HTML("<b>every link</b>"), self.delay, self.drop, self.apply_btn],
                          layout=W.Layout(margin="0 0 0 24px"))
        tiles = W.HBox([t.box for t in self.tiles.values()], layout=W.Layout(flex_flow="row wrap"))
        super().__init__([self.header, tiles, W.HBox([self._matrix(), controls]), self.metric_menu,
                          self.chart, self.status_line], layout=W.Layout(border="1px solid #ddd", padding="6px"))
        self.add_class("labkit-panel")
        self.status_line.add_class("labkit-status-line")
        self._tick()  # the first picture, drawn on the main thread before the thread exists
        self.thread = threading.Thread(target=_refresh_loop, name=f"labkit-panel-{cluster.seed}", daemon=True,
                                       args=(weakref.ref(self), self._stop, self._wake, 1.0 / refresh_hz))
        self.thread.start()

    def _matrix(self) -> W.Widget:
        n = len(self._ids)
        if n > MATRIX_MAX:
            return W.VBox([W.HTML(f"<i>the link matrix is shown for up to {MATRIX_MAX} nodes</i>"), self.net_line])
        kids: list[W.Widget] = [W.HTML("<small>src ╲ dst</small>")] + [W.HTML(f"<b>{html.escape(d)}</b>") for d in self._ids]
        for s in self._ids:
            kids.append(W.HTML(f"<b>{html.escape(s)}</b>"))
            for d in self._ids:
                b = W.Button(description="·", disabled=s == d,
                             layout=W.Layout(width="36px", height="28px", margin="1px", padding="0"))
                if s != d:
                    b.on_click(lambda _b, s=s, d=d: self._toggle_link(s, d))
                    self.cells[(s, d)] = b
                kids.append(b)
        grid = W.GridBox(kids, layout=W.Layout(grid_template_columns=f"64px repeat({n}, 38px)",
                                               align_items="center"))
        return W.VBox([W.HTML("<b>links</b> <small>row → column; click: cut / restore</small>"),
                       grid, self.two_way, self.net_line])

    # -- actions: main thread (button callbacks) -------------------------------------------
    def _act(self, label: str, fn: Callable[[Any], Any]) -> None:
        """Run ``fn(cluster)`` under the panel lock and show its result or error; never raise.
        ``fn`` may return a string to show instead of "ok"."""
        with self._lock:
            self.status_line.value = f"<i>{html.escape(label)} …</i>"
            c = self._cluster()
            try:
                if c is None or c.closed:
                    raise ClusterClosed("the cluster is closed")
                out = fn(c)
                ok, msg = True, out if isinstance(out, str) else "ok"
            except Exception as e:
                ok, msg = False, f"{type(e).__name__}: {e}"
            self.last_action = (label, ok, msg)
            self.status_line.value = (
                f"last action: <b>{html.escape(label)}</b> → <span style='color:{'#2e7d32' if ok else '#c62828'}'>"
                f"{'✓' if ok else '✗'} {html.escape(msg)}</span>")
        self._wake.set()

    def _toggle_link(self, s: str, d: str) -> None:
        both = self.two_way.value == "two-way"

        def go(c: Any) -> str:
            rule = c.net.blocked(s, d)
            if rule == "partition":
                raise ValueError(f"{s}→{d} is blocked by a partition, not a cut: use 'heal all'")
            if rule is None:
                c.cut(s, d, one_way=not both)
                return "cut"
            if hasattr(c, "uncut"):  # the exact inverse of cut(), if labkit has it
                c.uncut(s, d, one_way=not both)
                return "restored"
            # With public calls only: heal, then put the partition and the other cuts back.
            groups: dict[int, list[str]] = {}
            for node, g in c.net.groups.items():
                groups.setdefault(g, []).append(node)
            keep = sorted(c.net.cuts - {(s, d), (d, s) if both else (s, d)})
            c.heal()
            if groups:
                c.partition(*(groups[g] for g in sorted(groups)))
            for a, b in keep:
                c.cut(a, b, one_way=True)
            return "restored"
        self._act(f"link {s}{'↔' if both else '→'}{d}", go)

    def _isolate(self) -> None:
        node = self.target.value
        self._act(f"isolate {node}", lambda c: c.isolate(node))

    def _split(self) -> None:
        ids, node = list(self._ids), self.target.value
        i = ids.index(node)
        minority = [ids[(i + k) % len(ids)] for k in range(max(1, (len(ids) - 1) // 2))]
        majority = [n for n in ids if n not in minority]
        self._act(f"partition {','.join(minority)} | {','.join(majority)}",
                  lambda c: c.partition(minority, majority))

    def _heal_all(self) -> None:
        def heal_all(c: Any) -> None:
            c.heal()
            c.clear_links()
        self._act("heal all", heal_all)
        if self.last_action and self.last_action[1]:
            self.delay.value, self.drop.value = 0, 0.0

    def _apply_link(self) -> None:
        delay, drop = self.delay.value, round(self.drop.value, 4)
        def apply(c: Any) -> str:
            link = c.set_link("*", "*", delay=delay, drop=drop)
            return f"every link: delay {link.delay:g} ms, drop {link.drop:g}"
        self._act(f"set_link('*', '*', delay={delay}, drop={drop:g})", apply)

    # -- refreshing: the refresher thread (and once from __init__) --------------------------
    def _tick(self) -> bool:
        """Read the cluster and redraw. False when there is nothing more to show."""
        c = self._cluster()
        with self._lock:
            if self._finished:
                return False
            try:
                snap = _read(c, self._metric_fn, self._counter_cache)
            except Exception as e:
                if c is None or c.closed or isinstance(e, ClusterClosed):
                    self._finish()
                    return False
                self.status_line.value = (f"<span style='color:#c62828'>the panel could not read the cluster: "
                                          f"{html.escape(type(e).__name__)}: {html.escape(str(e))}</span>")
                return True
            if snap is not None:
                self._render(snap)
        return True

    def _render(self, snap: dict) -> None:
        self.header.value = f"<b>{html.escape(self._title)}</b> &nbsp; t = {snap['now'] / 1000:.1f} s"
        for n, tile in self.tiles.items():
            tile.show(snap["state"][n], snap["inc"][n], snap["status"][n], snap["counters"][n], snap["slow"][n])
        for (s, d), b in self.cells.items():
            rule = snap["links"][(s, d)]
            b.description, b.style.button_color = CELLS[rule]
            b.tooltip = f"{s} → {d}: {rule or 'healthy'}"
        self.net_line.value = f"<small>network: {html.escape(snap['net'])}</small>"
        names = {k for cs in snap["counters"].values() for k in cs}
        if not names <= self._names:
            menu, keep, first = self.metric_menu, self.metric_menu.value, not self._names
            self._names |= names
            menu.options = [NO_METRIC] + ([self._metric_label] if self._metric_label else []) + sorted(self._names)
            menu.value = sorted(self._names)[0] if first and keep == NO_METRIC else keep  # chart from the start
        if not self._history or snap["now"] > self._history[-1]["now"]:
            self._history.append(snap)
        error = snap["metric_error"]
        self.chart.value = strip_chart(self._history, self.metric_menu.value, self._metric_label, self._ids) + (
            f"<br><small style='color:#c62828'>metric failed: {html.escape(error)}</small>" if error else "")

    def _finish(self) -> None:
        """The cluster is closed (or gone): freeze the panel with its controls off."""
        self._finished = True
        self._metric_fn = None  # a metric closing over the cluster must not keep it alive
        for b in [*self.cells.values(), self.isolate_btn, self.split_btn, self.heal_btn, self.apply_btn,
                  *(b for t in self.tiles.values() for b in t.buttons.values())]:
            b.disabled = True
        for tile in self.tiles.values():
            tile.close_out()
        for cell in self.cells.values():                # no link is "ok" any more either
            cell.style.button_color = "#eeeeee"
        self.header.value = f"<b>{html.escape(self._title)}</b> &nbsp; <i>cluster closed</i>"

    def close(self) -> None:
        """Stop the refresher (waiting up to 5 s for it) and close the panel's widgets."""
        t = getattr(self, "thread", None)
        if t is not None:  # (absent when __init__ failed and ipywidgets' __del__ closes us)
            self._stop.set()
            self._wake.set()
            if t is not threading.current_thread():
                t.join(5)
            with self._lock:
                self._finished, self._metric_fn = True, None
                for w in list(_descendants(self)):
                    for part in (getattr(w, "layout", None), getattr(w, "style", None), w):
                        if part is not None:
                            part.close()
                self.layout.close()
        super().close()

    def __repr__(self) -> str:  # the text/plain fallback where widgets are not drawn
        return f"<labkit Panel of {self._title[len('labkit · '):]}>"


class _Tile:
    """One node: state, incarnation and role; a few counters; four buttons."""

    def __init__(self, node: str, p: Panel) -> None:
        self.node, self.state = node, None
        self.title, self.body = W.HTML(), W.HTML()
        self.buttons = {
            "kill": _button("kill", "SIGKILL: volatile state is lost, ctx.storage kept",
                            lambda: p._act(f"kill {node}", lambda c: None if c.kill(node) else "was already down")),
            "restart": _button("restart", "a new incarnation, with its durable storage",
                               lambda: p._act(f"restart {node}", lambda c: c.restart(node))),
            "pause": _button("pause", "SIGSTOP: frozen until resumed",
                             lambda: p._act(f"pause {node}", lambda c: c.pause(node))),
            "resume": _button("resume", "SIGCONT: handles its backlog",
                              lambda: p._act(f"resume {node}", lambda c: None if c.resume(node) else "was not paused")),
            "slow": _button(f"slow ×{SLOW_FACTOR:g}", f"the gray failure: up and answering, but its ctx.work "
                            f"takes {SLOW_FACTOR:g}x as long (click again: normal speed)", self._toggle_slow),
        }
        self._panel = weakref.ref(p)
        self.slow = 1.0
        self.box = W.VBox([self.title, self.body, W.HBox(list(self.buttons.values()))],
                          layout=W.Layout(border="2px solid #999", padding="4px", margin="3px", min_width="240px"))
        self.box.add_class("labkit-tile")
        self.box.add_class(f"labkit-tile-{node}")

    def _toggle_slow(self) -> None:
        p, node = self._panel(), self.node
        if p is None:
            return
        if self.slow != 1:
            p._act(f"unslow {node}", lambda c: c.unslow(node))
        else:
            p._act(f"slow {node} ×{SLOW_FACTOR:g}", lambda c: c.slow(node, SLOW_FACTOR))

    def show(self, state: str, incarnation: int, status: dict, counters: dict, slow: float = 1.0) -> None:
        colour = STATE_COLOURS.get(state, "#555")
        live = state in ("up", "paused")
        role = status.get("role") if live else None
        self.state, self.slow = state, slow
        self.title.value = (f"<b style='font-size:1.1em'>{html.escape(self.node)}</b> "
                            f"<span class='labkit-state' style='color:{colour};font-weight:bold'>● {state}</span>"
                            f" <small>#{incarnation}</small>" + (f" · <b>{html.escape(str(role))}</b>" if role else "")
                            + (f" <span class='labkit-slow' style='color:#d62728'>· ×{slow:g} slow</span>"
                               if slow != 1 else ""))
        facts = [f"{k}={v}" for k, v in status.items() if k != "role"][:2] if live else []
        facts += [f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                  for k, v in sorted(counters.items()) if k not in CAPACITY_METRICS][:4]
        if "utilization" in counters:      # a node that serves work (labkit.capacity): its USE line
            facts.append(f"in flight {counters.get('in_flight', 0):g} · queued {counters.get('queued', 0):g} · "
                         f"util {counters['utilization']:.0%} · shed {counters.get('shed', 0):g}")
        self.body.value = "<small>" + html.escape(" · ".join(facts) or "no counters yet") + "</small>"
        self.box.layout.border = f"2px solid {colour}"
        b = self.buttons
        b["kill"].disabled = not live
        b["restart"].disabled = state not in ("down", "crashed")
        b["pause"].disabled = state != "up"
        b["resume"].disabled = state != "paused"
        b["slow"].description = "unslow" if slow != 1 else f"slow ×{SLOW_FACTOR:g}"


    def close_out(self) -> None:
        """The cluster is closed: grey the tile out -- no node runs any more, whatever it showed
        last (a green "up" under "cluster closed" would be a lie); its last counters stay, greyed."""
        self.state = "closed"
        self.title.value = (f"<span style='color:{CLOSED_COLOUR}'><b style='font-size:1.1em'>{html.escape(self.node)}</b> "
                            f"<span class='labkit-state' style='font-weight:bold'>○ closed</span></span>")
        self.body.value = f"<small style='color:{CLOSED_COLOUR}'>{_strip_tags(self.body.value)}</small>"
        self.box.layout.border = f"2px dashed {CLOSED_COLOUR}"
        for b in self.buttons.values():
            b.disabled = True


def _strip_tags(text: str) -> str:
    return re.sub(r"<[^>]*>", "", text)


def _counters(c: Any, node: str, key: tuple, cache: dict) -> dict:
    """``c.counters(node)``, re-read when the node's incarnation or state changed, else at most
    every ``RECOST`` times what the last read cost. (In the processes runtime, a node that has
    published no stats for a while costs a backward scan of the whole journal: ~0.3 us per
    event, so a quiet node in a 1M-event journal would take ~0.3 s at every tick.)"""
    hit = cache.get(node)
    now = time.monotonic()
    if hit is None or hit[0] != key or now - hit[3] >= RECOST * hit[2]:
        value = c.counters(node)
        hit = cache[node] = (key, value, time.monotonic() - now, now)
    return hit[1]


def _read(c: Any, metric: Any, cache: dict) -> dict | None:
    """One look at the cluster (under the panel lock), or None to skip a tick while the
    runtime stays busy (a restart can take a while).

    In the processes runtime this holds the runtime's RLock (``status()`` re-enters it) for
    the whole read and checks ``closed`` inside it. Reads from another thread race with
    labkit's kill / restart / close called from cells: ``Cluster.kill`` and
    ``ProcessRuntime.close`` mark a SIGKILLed node "down" outside that lock, so a read landing
    in between sees it "crashed" and journals (and prints) a crash that never happened; a read
    during a restart sees the state "starting". Holding the lock narrows those windows; only
    labkit can close them (by changing the state inside its lock)."""
    if c is None:
        raise ClusterClosed("the cluster is gone")
    rt_lock = getattr(getattr(c, "_rt", None), "lock", None)
    if rt_lock is not None and not rt_lock.acquire(timeout=0.5):
        return None
    try:
        if c.closed:
            raise ClusterClosed("the cluster is closed")
        st = c.status()
        cn = {n: _counters(c, n, (s.incarnation, s.state), cache) for n, s in st.items()}
        snap = {"now": c.now, "state": {n: s.state for n, s in st.items()},
                "inc": {n: s.incarnation for n, s in st.items()}, "slow": {n: s.slow for n, s in st.items()},
                "status": {n: cn[n]["status"] for n in st}, "counters": {n: cn[n]["counters"] for n in st},
                "links": {(s, d): c.net.blocked(s, d) for s in st for d in st if s != d},
                "net": c.net.describe(), "metric": None, "metric_error": None}
        if metric is not None:
            try:
                snap["metric"] = float(metric(c))
            except Exception as e:  # shown under the chart; the panel goes on
                snap["metric_error"] = f"{type(e).__name__}: {e}"
        return snap
    finally:
        if rt_lock is not None:
            rt_lock.release()


def _descendants(w: W.Widget):
    for k in getattr(w, "children", ()):
        yield from _descendants(k)
        yield k


def _refresh_loop(panel_ref: "weakref.ref[Panel]", stop: threading.Event, wake: threading.Event,
                  period: float) -> None:
    """Tick, then wait ``period`` (longer if a tick is costly; shorter when an action wakes
    it, but never less than 1 / MAX_HZ between ticks)."""
    while not stop.is_set():
        p = panel_ref()
        if p is None:
            return
        started = time.monotonic()
        alive = p._tick()
        del p
        if not alive:
            return
        cost = time.monotonic() - started
        wake.wait(max(period, cost / DUTY) - cost)
        wake.clear()
        stop.wait(max(0.0, started + 1.0 / MAX_HZ - time.monotonic()))
