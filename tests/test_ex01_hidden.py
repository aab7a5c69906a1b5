"""Hidden checks of chapter 01's exercises (solutions/01_time.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block: 200 seeds per scenario, with duplicates, drops
and partitions on top of the delay/jitter/reorder faults of the visible checks. A test also
makes sure the checks are not vacuous: a buffer that delivers on arrival must fail them.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook

NB = SolutionNotebook("01_time.ipynb")


@pytest.fixture(scope="module")
def namespace():
    return NB.run_setup()


def test_every_check_cell_has_hidden_tests():
    checks = NB.checks
    assert len(checks) == 3
    assert all(HIDDEN.search(src) for src in checks)


@pytest.mark.parametrize("exercise", [0, 1, 2], ids=["lamport", "vector_clocks", "causal_buffer"])
def test_hidden(namespace, exercise):
    block = NB.hidden(exercise)
    assert "range(1000, 1200)" in block       # >= 200 seeds per scenario
    NB.run_hidden(exercise, namespace)


def test_checks_catch_wrong_buffers(namespace):
    """A buffer that delivers everything on arrival, and one that forgets duplicates, both fail."""
    sweep, good = namespace["sweep"], namespace["CausalBuffer"]

    class Eager(good):
        def receive(self, sender, vc, payload):
            self.vc = namespace["merge"](self.vc, vc)
            return [payload]

    class NoDedupe(good):
        def receive(self, sender, vc, payload):
            if vc[sender] <= self.vc[sender]:
                self.vc[sender] = vc[sender] - 1       # forget: deliver the copy again
            return super().receive(sender, vc, payload)

    labkit = namespace["labkit"]

    def with_duplicates(seed):
        with labkit.Cluster(namespace["BufferedChat"], n=3, runtime="sim", seed=seed) as cluster:
            cluster.set_link("*", "*", delay=10, jitter=10, reorder=0.6, duplicate=0.4)
            namespace["check_causal"](cluster, seconds=3.0)

    try:
        for bad, scenario in ((Eager, namespace["causal_scenario"]), (NoDedupe, with_duplicates)):
            namespace["CausalBuffer"] = bad
            with pytest.raises(AssertionError):
                sweep(scenario, seeds=range(2000, 2050), quiet=True, stop_after=1)
    finally:
        namespace["CausalBuffer"] = good


def test_checks_catch_a_lamport_clock_without_the_plus_one(namespace):
    good = namespace["LamportNode"]

    class NoTick(good):
        def receive(self, ctx, msg):
            self.clock = max(self.clock, msg["ts"])
            self.events.append(["receive", self.clock, msg.id])

    namespace["LamportNode"] = NoTick
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace["lamport_scenario"], seeds=range(20), quiet=True, stop_after=1)
    finally:
        namespace["LamportNode"] = good


# -- every requirement of a statement is exercised by the visible check (issue 19, item 5) ------

from visiblecheck import visible_report  # noqa: E402


def _lamport(**methods):
    return lambda ns: {"LamportNode": type("Wrong", (ns["LamportNode"],), methods)}


def _local_without_tick(self, ctx):
    self.events.append(["local", self.clock, None])


def _send_without_tick(self, ctx, peer):
    self.events.append(["send", self.clock, ctx.send(peer, "ping", ts=self.clock)])


def _send_stamped_before_tick(self, ctx, peer):
    mid = ctx.send(peer, "ping", ts=self.clock)
    self.clock += 1
    self.events.append(["send", self.clock, mid])


def _receive_ignoring_ts(self, ctx, msg):
    self.clock += 1
    self.events.append(["receive", self.clock, msg.id])


def _merge_in_place(ns):
    def merge(a, b):
        for k, v in b.items():
            a[k] = max(a.get(k, 0), v)
        return a
    return {"merge": merge}


def _compare_without_missing_zeros(ns):
    def compare(a, b):
        keys = a.keys() & b.keys()
        le, ge = all(a[k] <= b[k] for k in keys), all(a[k] >= b[k] for k in keys)
        return "equal" if le and ge else "before" if le else "after" if ge else "concurrent"
    return {"compare": compare}


def _buffer(**methods):
    return lambda ns: {"CausalBuffer": type("Wrong", (ns["CausalBuffer"],), methods)}


def _redeliver_duplicates(self, sender, vc, payload):
    if vc[sender] <= self.vc[sender]:
        self.vc[sender] = vc[sender] - 1                  # forget it was delivered
    return type(self).__mro__[1].receive(self, sender, vc, payload)


def _hold_duplicates_again(self, sender, vc, payload):
    if vc[sender] <= self.vc[sender]:
        return []
    self.held.append((sender, vc, payload))               # a copy of a held one is held twice
    out = []
    while (ready := next((h for h in self.held if self._deliverable(h[0], h[1])), None)) is not None:
        self.held.remove(ready)
        self.vc[ready[0]] += 1
        out.append(ready[2])
    return out


def _deliver_on_arrival(self, sender, vc, payload):
    self.vc = {k: max(self.vc.get(k, 0), vc.get(k, 0)) for k in self.vc}
    return [payload]


def _stamp_without_copy(self):
    self.vc[self.me] += 1
    return self.vc


WRONG = {   # requirement of the statement -> (check cell, wrong answer, what the report must say)
    "local_event ticks": (0, _lamport(local_event=_local_without_tick), "strictly increase"),
    "send ticks": (0, _lamport(send=_send_without_tick), "strictly increase"),
    "a message carries the send's time": (0, _lamport(send=_send_stamped_before_tick), "carries ts="),
    "receive jumps past msg ts": (0, _lamport(receive=_receive_ignoring_ts), "clock after receipt"),
    "merge leaves its arguments alone": (1, _merge_in_place, "modified its arguments"),
    "a missing entry counts as 0": (1, _compare_without_missing_zeros, "should be"),
    "a delivered duplicate is never delivered again": (2, _buffer(receive=_redeliver_duplicates), "twice"),
    "a held duplicate is never delivered again": (2, _buffer(receive=_hold_duplicates_again), "still holds"),
    "hold back until deliverable": (2, _buffer(receive=_deliver_on_arrival), "causal violations"),
    "stamp returns a copy": (2, _buffer(stamp=_stamp_without_copy), "two stamps"),
}


@pytest.mark.parametrize("requirement", list(WRONG))
def test_visible_check_catches(requirement):
    check, wrong, says = WRONG[requirement]
    assert says in visible_report(NB, check, wrong)


def _never_rechecks_held(self, sender, vc, payload):
    if vc[sender] <= self.vc[sender] or any(h[0] == sender and h[1][sender] == vc[sender] for h in self.held):
        return []
    if self._deliverable(sender, vc):                  # what it held may be deliverable now: not looked at
        self.vc[sender] += 1
        return [payload]
    self.held.append((sender, vc, payload))
    return []


# -- the check cell's labkit.explore (every order of a 2-question chat, one duplicate) -----------
@pytest.mark.parametrize("wrong, says", [
    (_redeliver_duplicates, "delivered a message twice"),
    (_hold_duplicates_again, "the buffers still hold"),
    (_deliver_on_arrival, "causal violations"),
    (_never_rechecks_held, r"the buffers still hold .*: \(sender, vc\) \{'n\d': \[\('n\d', \{.*\}\)\]\}, while the "
                           r"buffers' own vc are \{'n\d': \{"),
], ids=["redelivers duplicates", "holds a duplicate again", "delivers on arrival", "never rechecks what it holds"])
def test_the_search_catches_wrong_buffers(namespace, wrong, says):
    """Not vacuous: each of these fails the search (the sweep before it catches them too; no
    buffer bug was found that only the search catches -- the chat's sweep is dense)."""
    good = namespace["CausalBuffer"]
    namespace["CausalBuffer"] = type("Wrong", (good,), {"receive": wrong})
    try:
        with pytest.raises(AssertionError, match=says):
            namespace["explore_chat"]()
    finally:
        namespace["CausalBuffer"] = good


def test_the_search_proves_the_reference_buffer(namespace):
    res = namespace["explore_chat"]()
    assert res.outcome == "exhausted" and res.states > 1000, res


def _removes_what_it_never_held(self, sender, vc, payload):
    if vc[sender] <= self.vc[sender]:
        return []
    if self._deliverable(sender, vc):
        self.held.remove((sender, vc, payload))           # ValueError: it was never held
        self.vc[sender] += 1
        return [payload]
    self.held.append((sender, vc, payload))
    return []


def test_the_search_names_a_handler_that_raised(namespace):
    """A cold review: the search's report of a buffer that raises was introduced as "it found
    this -- the shortest such run" (of a violation); it must say a handler raised, and show
    the traceback."""
    good = namespace["CausalBuffer"]
    namespace["CausalBuffer"] = type("Wrong", (good,), {"receive": _removes_what_it_never_held})
    try:
        with pytest.raises(AssertionError, match=r"a handler raised(.|\n)*ValueError: list.remove"):
            namespace["explore_chat"]()
    finally:
        namespace["CausalBuffer"] = good


def test_a_search_that_did_not_finish_is_not_reported_as_a_finding(namespace, monkeypatch):
    """A buffer whose receive() never returns keeps the search from ending; the reader stops it
    (Ctrl-C) and the search answers 'unknown'. That must read as "did not finish, proves
    nothing", not as a run that breaks a property. A state budget stands in for the interrupt."""
    import functools
    import types
    real = namespace["labkit"]
    monkeypatch.setitem(namespace, "labkit", types.SimpleNamespace(explore=functools.partial(real.explore,
                                                                                              max_states=50)))
    with pytest.raises(AssertionError, match=r"did not finish, so this proves nothing(.|\n)*state budget"):
        namespace["explore_chat"]()


def test_the_search_explores_a_buffer_with_a_lambda_default(namespace):
    """A cold reader's *correct* buffer, with ``defaultdict(lambda: set())`` for the copies it
    holds: the sweep passed it, and the search refused it (pickle cannot find a lambda by name)
    until labkit.explore copied capture-free functions by name."""
    import collections

    class Defaulted(namespace["CausalBuffer"]):
        def __init__(self, me, members):
            super().__init__(me, members)
            self.pending = collections.defaultdict(lambda: set())

        def receive(self, sender, vc, payload):
            if vc[sender] <= self.vc[sender] or vc[sender] in self.pending[sender]:
                return []
            self.pending[sender].add(vc[sender])
            self.held.append((sender, vc, payload))
            out = []
            while (ready := next((h for h in self.held if self._deliverable(h[0], h[1])), None)) is not None:
                self.held.remove(ready)
                self.pending[ready[0]].discard(ready[1][ready[0]])
                self.vc[ready[0]] += 1
                out.append(ready[2])
            return out

    good = namespace["CausalBuffer"]
    namespace["CausalBuffer"] = Defaulted
    try:
        res = namespace["explore_chat"]()
    finally:
        namespace["CausalBuffer"] = good
    assert res.outcome == "exhausted" and res.states > 1000, res
