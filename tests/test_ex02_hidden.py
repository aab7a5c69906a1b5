"""Hidden checks of chapter 02's exercises (solutions/02_consistency.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block: 200 seeds per scenario, five nodes, heavier
loss plus duplication and reordering, and (for sessions) a replica with a slow clock. Other
tests make sure the checks are not vacuous: a counter that merges by adding, a store with no
anti-entropy and a store without sessions must each fail them.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook

NB = SolutionNotebook("02_consistency.ipynb")


@pytest.fixture(scope="module")
def namespace():
    return NB.run_setup()


def test_every_check_cell_has_hidden_tests():
    checks = NB.checks
    assert len(checks) == 3
    assert all(HIDDEN.search(src) for src in checks)
    assert all("range(100)" in src for src in checks)          # >= 100 visible seeds each


@pytest.mark.parametrize("exercise", [0, 1, 2], ids=["counters", "anti_entropy", "sessions"])
def test_hidden(namespace, exercise):
    block = NB.hidden(exercise)
    assert "range(1000, 1200)" in block                         # >= 200 seeds per scenario
    NB.run_hidden(exercise, namespace)


def _fails(namespace, name, scenario, replacement, seeds=range(50)):
    good = namespace[name]
    namespace[name] = replacement
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace[scenario], seeds=seeds, quiet=True, stop_after=1)
    finally:
        namespace[name] = good


def test_a_counter_that_merges_by_adding_fails(namespace):
    class Adding(namespace["GCounter"]):
        def merge(self, other):
            for r, c in other.counts.items():
                if r != "self":
                    self.counts[r] = self.counts.get(r, 0) + c

    _fails(namespace, "GCounter", "counter_scenario", Adding)


def test_a_counter_that_forgets_decrements_fails(namespace):
    class NoMinus(namespace["PNCounter"]):
        def add(self, replica, delta):
            self.p.increment(replica, abs(delta))

    _fails(namespace, "PNCounter", "counter_scenario", NoMinus)


def test_no_anti_entropy_fails(namespace):
    class Lazy(namespace["PushOnlyKV"]):
        pass

    _fails(namespace, "AntiEntropyKV", "anti_entropy_scenario", Lazy)


def test_anti_entropy_that_overwrites_without_comparing_versions_fails(namespace):
    """Replicas that take whatever a peer syncs converge -- on an older write than the newest."""
    class Blind(namespace["PushOnlyKV"]):
        def on_timer(self, ctx, name):
            ctx.send(ctx.rng.choice(ctx.peers), "sync", store=self.store)
            ctx.set_timer("gossip", between=self.GOSSIP)

        def on_message(self, ctx, msg):
            if msg.type != "sync":
                return super().on_message(ctx, msg)
            for key, version in msg["store"].items():
                self.store[key] = list(version)
                ctx.note("state", value=sorted([k, v[2]] for k, v in self.store.items()))

    _fails(namespace, "AntiEntropyKV", "anti_entropy_scenario", Blind)


def test_sessions_without_tokens_fail(namespace):
    class Forgetful(namespace["Session"]):
        def fields(self, f, key):
            return {}

    _fails(namespace, "Session", "session_scenario", Forgetful, seeds=range(100))


def test_sessions_that_refuse_everything_fail(namespace):
    base = namespace["SessionKV"]

    class Refuser(base):
        def on_message(self, ctx, msg):
            if msg.type == "read":
                return ctx.reply(msg, "error", code=11, text="no")
            super().on_message(ctx, msg)

    namespace["SessionKV"] = Refuser
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace["session_scenario"], seeds=range(5), quiet=True, stop_after=1)
    finally:
        namespace["SessionKV"] = base


# -- every requirement of a statement is exercised by the visible check (issue 19, item 5) ------

from visiblecheck import visible_report  # noqa: E402


def _subclass(name, **methods):
    return lambda ns: {name: type("Wrong", (ns[name],), methods)}


def _g_merge_own_keys(self, other):                   # forgets replicas only the other side knows
    for r in list(self.counts):
        self.counts[r] = max(self.counts[r], other.counts.get(r, 0))


def _g_merge_overwrites(self, other):                 # takes the other's counts, even smaller ones
    self.counts.update(other.counts)


def _g_increment_shared(self, replica, n=1):          # not "only its own entry"
    self.counts["everyone"] = self.counts.get("everyone", 0) + n


def _pn_negative_into_p(self, replica, delta):        # decrements into p, as negative counts
    self.p.counts[replica] = self.p.counts.get(replica, 0) + delta


def _one_key_per_round(self, ctx, name):              # repairs, but too slowly for the 1 s bound
    if self.store:
        key = ctx.rng.choice(sorted(self.store))
        ctx.send(ctx.rng.choice(ctx.peers), "push", key=key, version=self.store[key])
    ctx.set_timer("gossip", between=self.GOSSIP)


def _reads_without_after(self, f, key):
    return {"after": self.seen} if f == "write" and self.seen is not None else {}


def _writes_without_after(self, f, key):
    return {"after": self.written[key]} if f == "read" and key in self.written else {}


def _write_ignoring_after(self, ctx, msg):
    if msg.type != "write":
        return type(self).__mro__[1].on_message(self, ctx, msg)
    version = [ctx.now, ctx.id, msg["value"]]           # the slow clock's stamp, as it is
    self.apply(ctx, str(msg["key"]), version)
    ctx.broadcast("push", key=str(msg["key"]), version=version)
    ctx.reply(msg, "write_ok", version=version[:2])


def _read_never_gives_up(self, ctx, msg):
    if msg.type != "read":
        return type(self).__mro__[1].on_message(self, ctx, msg)
    self.waiting.append(msg)                              # no timer: waits forever
    self.caught_up(ctx)


def _read_refused_at_once(self, ctx, msg):
    if msg.type != "read":
        return type(self).__mro__[1].on_message(self, ctx, msg)
    self.waiting.append(msg)
    self.caught_up(ctx)
    if msg in self.waiting:                               # not caught up: refuse without waiting
        self.waiting.remove(msg)
        ctx.reply(msg, "error", code=11, text="not caught up")


def _give_up_with_code_0(self, ctx, name):           # "timeout": indefinite, not error 11
    if name == "gossip":
        return type(self).__mro__[1].on_timer(self, ctx, name)
    msg = next(m for m in self.waiting if m.id == name)
    self.waiting.remove(msg)
    ctx.reply(msg, "error", code=0, text="gave up")


WRONG = {   # requirement of the statement -> (check cell, wrong answer, what the report must say)
    "G-counter merge covers every replica": (0, _subclass("GCounter", merge=_g_merge_own_keys), "counter_bounds"),
    "G-counter merge is the maximum": (0, _subclass("GCounter", merge=_g_merge_overwrites), "counter_bounds"),
    "G-counter increments only its own entry": (0, _subclass("GCounter", increment=_g_increment_shared),
                                                "counter_bounds"),
    "PN-counter decrements go to n": (0, _subclass("PNCounter", add=_pn_negative_into_p), "counter_bounds"),
    "anti-entropy converges within 1 s": (1, _subclass("AntiEntropyKV", on_timer=_one_key_per_round),
                                          "convergence"),
    "reads send their own write's version": (2, _subclass("Session", fields=_reads_without_after),
                                             "read-your-writes"),
    "writes send the largest version seen": (2, _subclass("Session", fields=_writes_without_after),
                                             "read-your-writes"),
    "a write is stamped after its session's versions": (2, _subclass("SessionKV", on_message=_write_ignoring_after),
                                                        "read-your-writes"),
    "a waiting read gives up after 300 ms": (2, _subclass("SessionKV", on_message=_read_never_gives_up),
                                             "no reply at all"),
    "a read waits before giving up": (2, _subclass("SessionKV", on_message=_read_refused_at_once),
                                      "refused after less than 300 ms"),
    "giving up is error 11": (2, _subclass("SessionKV", on_timer=_give_up_with_code_0),
                              "not a definite refusal"),
}


@pytest.mark.parametrize("requirement", list(WRONG))
def test_visible_check_catches(requirement):
    check, wrong, says = WRONG[requirement]
    assert says in visible_report(NB, check, wrong)
