"""labkit.explore: outcomes, faults, refusals, reductions and replay on small protocols.

The acceptance cases of the course's own node classes (chapter 01's causal buffer, chapter
05's Raft election) are in test_explore_course.py. Golden counts are pinned from this
implementation: a change in them is a change in what is explored, to be explained.
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap

import pytest

import labkit
from labkit.explore import ExploreRefused
from labkit.explore.examples import Paxos, TwoPhaseCommit, agreement, atomic_decision, blocked


class NoVoter(TwoPhaseCommit):
    NO_VOTERS = frozenset({"n4"})


class FirstYes(NoVoter):
    COMMIT_ON_FIRST_YES = True


class IgnoresAccepted(Paxos):
    IGNORE_ACCEPTED = True


# -- two-phase commit: the acceptance cases ---------------------------------------------------
def test_2pc_exhausts_with_a_crash():
    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision], faults={"crash": 1})
    assert res.outcome == "exhausted" and res.passed, res
    assert (res.states, res.depth) == (1251, 10)
    assert "exhausted: 1,251 states" in repr(res)


def test_2pc_commit_on_first_yes_is_caught_at_depth_4():
    res = labkit.explore(FirstYes, n=4, invariants=[atomic_decision])
    assert res.outcome == "violation" and not res.passed
    assert len(res.path) == 4 and len(res.trace) == 4
    assert [str(s) for s in res.trace] == [
        "deliver prepare n1->n2 {}", "deliver prepare n1->n4 {}", 'deliver vote n2->n1 {"yes":true}',
        'deliver decide n1->n2 {"decision":"commit"}']
    assert res.message == "participants decided differently: {'n2': 'commit', 'n4': 'abort'}"
    assert res.invariant == "atomic_decision"
    assert "violation at depth 4" in repr(res)


def test_2pc_coordinator_crash_blocking_is_a_goal():
    res = labkit.explore(TwoPhaseCommit, n=4, goals=[blocked], faults={"crash": 1})
    assert res.outcome == "goal"
    assert [s.kind for s in res.trace] == ["deliver", "crash"] and res.trace[-1].node == "n1"
    assert "voted yes and wait forever" in res.message


def test_2pc_coordinator_without_a_durable_decision_breaks_on_restart():
    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision], faults={"crash": 1, "restart": True})
    assert res.outcome == "violation" and len(res.path) == 11 and res.states == 9265
    assert [str(s) for s in res.trace[7:]] == ["crash n1", "restart n1", "timer 'timeout' fires at n1",
                                               'deliver decide n1->n3 {"decision":"abort"}']
    assert res.replay().reproduced


# -- replay and the journal -----------------------------------------------------------------
def test_replay_reproduces_the_violation_in_the_simulator():
    res = labkit.explore(FirstYes, n=4, invariants=[atomic_decision])
    rep = res.replay()
    assert rep.reproduced, rep
    assert rep.message.startswith("violation reproduced: participants decided differently")
    j = res.journal
    assert isinstance(j, labkit.Journal)
    delivers = [(e.src, e.dst, e.type) for e in j.filter(kind="deliver")]
    assert delivers == [("n1", "n2", "prepare"), ("n1", "n4", "prepare"), ("n2", "n1", "vote"),
                        ("n1", "n2", "decide")]
    assert [e.t for e in j.filter(kind="deliver")] == [1.0, 2.0, 3.0, 4.0]
    assert rep.state.nodes["n4"].decision == "abort" and rep.state.nodes["n2"].decision == "commit"


def test_spacetime_draws_the_trace():
    import matplotlib
    matplotlib.use("Agg")
    from labkit.plots import spacetime
    res = labkit.explore(TwoPhaseCommit, n=4, goals=[blocked], faults={"crash": 1})
    fig = spacetime(res.journal)
    assert fig is not None
    assert [e.kind for e in res.journal.filter(kind=("kill",))] == ["kill"]


def test_replay_of_a_pass_is_refused():
    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision])
    with pytest.raises(ValueError, match="no trace to replay"):
        res.replay()


# -- Paxos ---------------------------------------------------------------------------------
def test_paxos_exhausts():
    res = labkit.explore(Paxos, n=3, invariants=[agreement])
    assert (res.outcome, res.states, res.depth) == ("exhausted", 2030, 14)


def test_paxos_proposer_ignoring_accepted_values_is_caught():
    res = labkit.explore(IgnoresAccepted, n=3, invariants=[agreement])
    assert res.outcome == "violation" and len(res.path) == 8
    assert res.message == "two values chosen: {'n1': 'n1', 'n2': 'n2'}"
    assert res.replay().reproduced


# -- outcomes: budgets, exceptions, interrupts -----------------------------------------------
def test_a_budget_answers_unknown_never_a_pass():
    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision], faults={"crash": 1}, max_states=100)
    assert res.outcome == "unknown" and not res.passed
    assert res.states == 100
    assert "unknown -- explored 100 states to depth" in repr(res) and "max_states=100" in repr(res)


def test_a_time_budget_answers_unknown():
    res = labkit.explore(TwoPhaseCommit, n=4, faults={"drop": True, "duplicate": 3}, max_seconds=0.3)
    assert res.outcome == "unknown" and "max_seconds=0.3" in res.message


def test_a_memory_budget_answers_unknown():
    res = labkit.explore(TwoPhaseCommit, n=4, faults={"drop": True, "duplicate": 3}, max_memory_mb=1e-9)
    assert res.outcome == "unknown" and "max_memory_mb=1e-09" in res.message


def test_progress_reports_states_depth_rate_and_memory():
    seen = []
    res = labkit.explore(TwoPhaseCommit, n=4, faults={"drop": True, "duplicate": 3}, max_seconds=1.6,
                         progress=seen.append)
    assert res.outcome == "unknown" and seen
    last = seen[-1]
    assert last["unit"] == "states" and last["states"] > 0 and last["depth"] > 0
    assert last["rate"] > 0 and "memory_mb" in last


class Raises(labkit.Node):
    def on_start(self, ctx):
        self.seen = 0
        if ctx.id == "n1":
            ctx.send("n2", "ping")
            ctx.send("n2", "ping")

    def on_message(self, ctx, msg):
        self.seen += 1
        if self.seen == 2:
            raise RuntimeError("second ping")


def test_a_raising_handler_is_an_exception_with_its_traceback():
    res = labkit.explore(Raises, n=2)
    assert res.outcome == "exception"
    assert res.message == "RuntimeError: second ping"
    assert 'raise RuntimeError("second ping")' in res.traceback and "test_explore.py" in res.traceback
    assert len(res.path) == 2
    assert res.replay().reproduced


def test_ctrl_c_returns_the_partial_result():
    calls = [0]

    def interrupting(s):
        calls[0] += 1
        if calls[0] == 50:
            raise KeyboardInterrupt
        return True

    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[interrupting], faults={"crash": 1})
    assert res.outcome == "unknown" and "interrupt" in res.message
    assert res.states == 50          # the 50th was counted, then judged when the interrupt came


class Spins(labkit.Node):
    """n2's handler stands for one that never returns: Ctrl-C lands in it (here, at once)."""

    def on_start(self, ctx):
        if ctx.id == "n1":
            ctx.send("n2", "spin")

    def on_message(self, ctx, msg):
        self.wait_for_more(msg)

    def wait_for_more(self, msg):
        raise KeyboardInterrupt


def test_ctrl_c_inside_a_handler_says_which_handler_and_line():
    """A cold reader's causal buffer looped forever in receive(); stopped with Ctrl-C, the search
    said only "stopped by an interrupt". It names the node, the event and the lines now."""
    res = labkit.explore(Spins, n=2)
    assert res.outcome == "unknown", res
    assert "n2 was handling deliver n1>n2 spin" in res.message, res.message
    assert "in wait_for_more, from " in res.message and " in on_message (does that handler ever return?)" \
        in res.message, res.message

def test_invariants_that_are_not_functions_are_named():
    for bad in (5, "agreement"):
        with pytest.raises(labkit.ArgumentError, match="invariants must be a function of the state view s, or a list"):
            labkit.explore(TwoPhaseCommit, n=3, invariants=bad)
    with pytest.raises(labkit.ArgumentError, match="goals must be functions"):
        labkit.explore(TwoPhaseCommit, n=3, goals=[5])


def test_an_invariant_returning_none_is_an_error():
    with pytest.raises(TypeError, match="returned None"):
        labkit.explore(TwoPhaseCommit, n=3, invariants=[lambda s: None])


# -- faults and timers -----------------------------------------------------------------------
class Counter(labkit.Node):
    """n1 sends one increment to n2; n2 counts what it gets and keeps the count durably."""

    def on_start(self, ctx):
        self.count = ctx.storage.get("count", 0)
        if ctx.id == "n1":
            ctx.send("n2", "inc")

    def on_message(self, ctx, msg):
        self.count += 1
        ctx.storage["count"] = self.count


def at_most_once(s):
    n2 = s.nodes["n2"]
    return n2 is None or n2.count <= 1 or f"n2 counted {n2.count}"


def test_duplicates_are_explored_only_when_asked():
    assert labkit.explore(Counter, n=2, invariants=[at_most_once]).outcome == "exhausted"
    res = labkit.explore(Counter, n=2, invariants=[at_most_once], faults={"duplicate": 1})
    assert res.outcome == "violation" and [s.kind for s in res.trace] == ["duplicate", "deliver", "deliver"]


def test_restart_keeps_storage_and_drops_volatile_state():
    def recovered(s):
        n2 = s.nodes["n2"]
        return n2 is not None and s.incarnation["n2"] == 2 and n2.count == 1 and s.storage["n2"] == {"count": 1}

    res = labkit.explore(Counter, n=2, goals=[recovered], faults={"crash": 1, "restart": True})
    assert res.outcome == "goal" and [s.kind for s in res.trace] == ["deliver", "crash", "restart"]
    assert res.replay().reproduced


def test_drops():
    def lost(s):
        return not s.network and s.nodes["n2"].count == 0

    assert labkit.explore(Counter, n=2, goals=[lost]).outcome == "exhausted"
    res = labkit.explore(Counter, n=2, goals=[lost], faults={"drop": True})
    assert res.outcome == "goal" and [s.kind for s in res.trace] == ["drop"]
    assert res.replay().reproduced


class TwoTimers(labkit.Node):
    def on_start(self, ctx):
        self.fired = []
        ctx.set_timer("short", after=10)
        ctx.set_timer("long", between=(50, 80))

    def on_timer(self, ctx, name):
        self.fired.append(name)


def test_timers_any_or_ordered():
    def long_first(s):
        return s.nodes["n1"].fired[:1] == ["long"]

    assert labkit.explore(TwoTimers, n=1, goals=[long_first]).outcome == "goal"
    assert labkit.explore(TwoTimers, n=1, goals=[long_first], timers="ordered").outcome == "exhausted"


# -- strategies and minimisation ---------------------------------------------------------------
def test_dfs_finds_and_minimises():
    res = labkit.explore(FirstYes, n=4, invariants=[atomic_decision], strategy="dfs")
    assert res.outcome == "violation" and len(res.path) == 4
    assert res.replay().reproduced


def test_random_walks_find_and_minimise():
    res = labkit.explore(FirstYes, n=4, invariants=[atomic_decision], strategy="random", max_depth=20, walks=200,
                         seed=3)
    assert res.outcome == "violation" and len(res.path) == 4
    assert res.replay().reproduced


def test_random_walks_that_find_nothing_prove_nothing():
    res = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision], strategy="random", max_depth=20, walks=20)
    assert res.outcome == "unknown" and not res.passed


# -- reductions and the digest -----------------------------------------------------------------
@pytest.mark.parametrize("case", ["2pc-crash", "2pc-drop", "paxos"])
def test_sleep_sets_do_not_change_state_counts(case):
    kw = {"2pc-crash": dict(nodes=TwoPhaseCommit, n=4, faults={"crash": 1}),
          "2pc-drop": dict(nodes=NoVoter, n=4, faults={"drop": True}, max_depth=6),
          "paxos": dict(nodes=Paxos, n=3)}[case]
    on = labkit.explore(sleep_sets=True, **kw)
    off = labkit.explore(sleep_sets=False, **kw)
    assert (on.outcome, on.states, on.depth) == (off.outcome, off.states, off.depth)
    assert on.transitions < off.transitions        # the reduction skips steps, not states
    assert on.fingerprint == off.fingerprint


def _voted(s):
    return any(n.vote for n in s.up().values())


def _two_decided(s):
    return sum(1 for n in s.up().values() if n.decision) >= 2


def _accepted(s):
    return any(getattr(n, "accepted", None) for n in s.up().values())


@pytest.mark.parametrize("case", ["2pc-voted", "2pc-two-decided", "paxos-accepted"])
def test_sleep_sets_with_prunes_keep_state_counts(case):
    # Each case lost states (153 -> 121, 943 -> 925, 82 -> 68) when a step into a pruned state
    # was put to sleep in its siblings' children and sleep sets were inherited through it.
    kw = {"2pc-voted": dict(nodes=TwoPhaseCommit, n=4, prunes=[_voted], faults={"crash": 1}),
          "2pc-two-decided": dict(nodes=TwoPhaseCommit, n=4, prunes=[_two_decided], faults={"crash": 1}),
          "paxos-accepted": dict(nodes=Paxos, n=3, prunes=[_accepted])}[case]
    on = labkit.explore(sleep_sets=True, **kw)
    off = labkit.explore(sleep_sets=False, **kw)
    assert (on.outcome, on.states, on.depth, on.fingerprint) == (off.outcome, off.states, off.depth, off.fingerprint)
    assert on.states == {"2pc-voted": 153, "2pc-two-decided": 943, "paxos-accepted": 82}[case]
    assert on.transitions < off.transitions


def test_prunes_end_random_walks_and_depth_first_search():
    walks = labkit.explore(TwoPhaseCommit, n=4, prunes=[_voted], strategy="random", max_depth=10, walks=20)
    assert (walks.outcome, walks.states, walks.depth) == ("unknown", 25, 3)   # a walk stops where one voted
    dfs = labkit.explore(TwoPhaseCommit, n=4, prunes=[_voted], faults={"crash": 1}, strategy="dfs")
    assert (dfs.outcome, dfs.states) == ("exhausted", 153)


class CountsCalls(TwoPhaseCommit):
    calls: list = []

    def on_message(self, ctx, msg):
        CountsCalls.calls.append((ctx.id, msg.src, msg.type))
        super().on_message(ctx, msg)


def test_a_handler_runs_once_per_node_state_and_event():
    CountsCalls.calls.clear()
    res = labkit.explore(CountsCalls, n=4, invariants=[atomic_decision], sleep_sets=False)
    plain = labkit.explore(TwoPhaseCommit, n=4, invariants=[atomic_decision], sleep_sets=False)
    assert (res.states, res.transitions, res.fingerprint) == (plain.states, plain.transitions, plain.fingerprint)
    # each participant gets prepare and decide in a few local states; the coordinator votes in
    # a few more: the thousands of deliveries reuse a few dozen handler runs
    assert 0 < len(CountsCalls.calls) < res.transitions / 10


@pytest.mark.parametrize("sleep_sets", [True, False])
def test_depth_first_reaches_the_same_states_as_breadth_first(sleep_sets):
    for kw in (dict(nodes=Paxos, n=3), dict(nodes=NoVoter, n=4, faults={"drop": True}, max_depth=5),
               dict(nodes=Paxos, n=3, max_depth=7)):
        bfs = labkit.explore(sleep_sets=sleep_sets, **kw)
        dfs = labkit.explore(strategy="dfs", sleep_sets=sleep_sets, **kw)
        assert (dfs.outcome, dfs.states, dfs.fingerprint) == (bfs.outcome, bfs.states, bfs.fingerprint)


def test_digests_are_the_same_under_another_hash_seed():
    code = textwrap.dedent("""
        import labkit
        from labkit.explore.examples import Paxos, TwoPhaseCommit
        a = labkit.explore(TwoPhaseCommit, n=4, faults={"crash": 1})
        b = labkit.explore(Paxos, n=3)
        print(a.states, a.fingerprint, b.states, b.fingerprint)
    """)
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        outs.add(out.stdout)
    here = labkit.explore(TwoPhaseCommit, n=4, faults={"crash": 1})
    assert len(outs) == 1 and outs.pop().split()[:2] == [str(here.states), here.fingerprint]


class ReadsIds(labkit.Node):
    def on_start(self, ctx):
        self.got = []
        if ctx.id == "n1":
            ctx.send("n2", "x")
            ctx.send("n2", "x")

    def on_message(self, ctx, msg):
        self.got.append(msg.id)


def test_handlers_that_read_ids_get_ids_in_the_state():
    res = labkit.explore(ReadsIds, n=2)
    assert res.outcome == "exhausted" and res.states == 5
    assert any("message ids are part of the state" in n and "msg.id" in n for n in res.notes)
    with pytest.raises(ExploreRefused, match="ids=False"):
        labkit.explore(ReadsIds, n=2, ids=False)


# -- refusals -----------------------------------------------------------------------------------
class Async(labkit.Node):
    async def on_message(self, ctx, msg):
        await ctx.rpc("n2", "x")


class KeepsCtx(labkit.Node):
    def on_start(self, ctx):
        self.ctx = ctx


class Unpicklable(labkit.Node):
    def on_start(self, ctx):
        step = len(ctx.peers)
        self.fn = lambda x: x + step               # a closure: its cell is state of its own


class DefaultDicts(labkit.Node):
    """Capture-free functions on self (a defaultdict's factory): copied by name, explored."""

    def on_start(self, ctx):
        self.seen = collections.defaultdict(lambda: set())
        self.key = lambda m: m.src
        if ctx.id == "n1":
            ctx.send("n2", "hi")

    def on_message(self, ctx, msg):
        self.seen[self.key(msg)].add(msg.type)
        if msg.type == "hi":
            ctx.reply(msg, "ho")


class ReadsNow(labkit.Node):
    def on_start(self, ctx):
        self.t = ctx.now


def test_async_nodes_are_refused():
    with pytest.raises(ExploreRefused, match="async def.*cannot be copied"):
        labkit.explore(Async, n=2)


class Slotted(labkit.Node):
    __slots__ = ("x",)

    def on_start(self, ctx):
        self.x = 1


class StartFails(labkit.Node):
    def on_start(self, ctx):
        if ctx.id == "n2":
            raise ValueError("bad config")


def test_services_and_slots_are_refused():
    class Svc(labkit.Service):
        @labkit.get("/x")
        async def x(self, ctx, req):
            return {}

    with pytest.raises(ExploreRefused, match="labkit.Service"):
        labkit.explore(Svc, n=2)
    with pytest.raises(ExploreRefused, match="__slots__"):
        labkit.explore(Slotted, n=2)


def test_programs_are_refused():
    with pytest.raises(ExploreRefused, match="labkit.Program"):
        labkit.explore(labkit.Program([sys.executable, "-c", "pass"]), n=2)


def test_on_start_raising_is_an_exception_at_depth_0():
    res = labkit.explore(StartFails, n=2)
    assert res.outcome == "exception" and res.message == "ValueError: bad config" and res.path == []
    assert res.replay().reproduced


def test_ctx_on_self_is_refused():
    with pytest.raises(ExploreRefused, match="keeps its ctx on self"):
        labkit.explore(KeepsCtx, n=2)


def test_unpicklable_state_is_refused():
    with pytest.raises(ExploreRefused, match=r"state cannot be copied: self\.fn = function"):
        labkit.explore(Unpicklable, n=2)


def test_functions_that_capture_nothing_are_copied_by_name():
    """A cold reader's correct causal buffer kept ``defaultdict(lambda: set())``; the search
    refused it (pickle cannot find a lambda by name) while the sweep passed it."""
    res = labkit.explore(DefaultDicts, n=2, invariants=[
        lambda s: s.nodes["n1"].seen.default_factory() == set() and s.nodes["n2"].key.__name__ == "<lambda>"])
    assert res.outcome == "exhausted" and res.states == 3, res
    assert dict(labkit.explore(DefaultDicts, n=2, goals=[lambda s: s.nodes["n1"].seen]).replay().state.nodes["n1"].seen) \
        == {"n2": {"ho"}}


def test_reading_ctx_now_is_flagged():
    res = labkit.explore(ReadsNow, n=2)
    assert res.outcome == "exhausted"
    assert any("read ctx.now" in n for n in res.notes) and "frozen" in repr(res)


@pytest.mark.parametrize("kw, match", [
    (dict(strategy="bogus"), "strategy must be one of"),
    (dict(faults={"crash": -1}), r"faults\['crash'\] must be a whole number"),
    (dict(faults={"explode": 1}), "unknown fault 'explode'"),
    (dict(timers="soon"), "timers must be 'any' or 'ordered'"),
    (dict(strategy="random"), "needs max_depth"),
    (dict(requests=[("n9", "x", {})]), r"requests\[0\]"),
    (dict(max_seconds=0), "max_seconds must be a positive number"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(labkit.ArgumentError, match=match):
        labkit.explore(TwoPhaseCommit, n=3, **kw)


# -- staged searches, requests, histories ---------------------------------------------------------
def test_staged_search_continues_from_a_goal():
    def prepared(s):
        return all(s.nodes[n].vote for n in ("n2", "n3"))

    first = labkit.explore(TwoPhaseCommit, n=3, goals=[prepared])
    assert first.outcome == "goal" and len(first.path) == 2
    second = labkit.explore(TwoPhaseCommit, n=3, goals=[blocked], faults={"crash": 1},
                            start=first.stage(drop_messages=True))
    assert second.outcome == "goal"
    kinds = [s.kind for s in second.trace]
    assert kinds[:2] == ["deliver", "deliver"] and "drop" in kinds and kinds[-1] == "crash"
    assert second.replay().reproduced


class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        ctx.reply(msg, n=msg["n"])


def test_client_requests_and_a_history():
    def record(h, step):
        return h + [step.body["n"]] if step.kind == "deliver" and step.dst.startswith("c") else h

    def in_order(s):
        return s.history == sorted(s.history) or f"replies out of order: {s.history}"

    res = labkit.explore(Echo, n=1, requests=[("n1", "echo", {"n": 1}), ("n1", "echo", {"n": 2})],
                         history=([], record), invariants=[in_order])
    assert res.outcome == "violation" and res.message == "replies out of order: [2, 1]"
    assert res.replay().reproduced


class Empty(labkit.Node):
    pass


class AlsoEmpty(labkit.Node):
    def on_start(self, ctx):
        if ctx.id == "b":
            ctx.send("a", "hi")


def test_different_classes_per_node():
    seen = []

    def classes(s):
        seen.append((type(s.nodes["a"]).__name__, type(s.nodes["b"]).__name__))
        return True

    res = labkit.explore({"a": Empty, "b": AlsoEmpty}, invariants=[classes])
    assert res.outcome == "exhausted" and res.states == 2
    assert set(seen) == {("Empty", "AlsoEmpty")}


def test_the_module_is_callable_and_import_stays_lazy():
    out = subprocess.run([sys.executable, "-c", "import sys, labkit; print('labkit.explore' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    from labkit.explore import explore
    assert callable(labkit.explore) and labkit.explore.explore is explore
