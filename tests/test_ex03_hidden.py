"""Hidden checks of chapter 03's exercises (solutions/03_partitioning.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
check cell's ``### BEGIN HIDDEN TESTS`` block, which defines ``<exercise>_hidden(seed)``: more
seeds (200 rings; 300 stores with more partitions and loss; 300 scatter-gathers with heavier
duplication, reordering and up to three unreachable shards). Then the checks must not be
vacuous: rings, shards and gatherers that break one rule each must fail -- the fenced store's
also with its one-message rule checks switched off, so that the seeded runs alone catch them --
and every requirement of a statement must be caught by the check cell a reader runs.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook
from visiblecheck import visible_report

NB = SolutionNotebook("03_partitioning.ipynb")


@pytest.fixture(scope="module")
def namespace():
    return NB.run_setup()


def test_every_check_cell_has_hidden_tests():
    checks = NB.checks
    assert len(checks) == 3
    assert all(HIDDEN.search(src) for src in checks)
    assert "range(50)" in checks[0] and "range(100)" in checks[1] and "range(100)" in checks[2]


HIDDEN_SEEDS = {"ring": range(1000, 1200), "store": range(1000, 1300), "gather": range(1000, 1300)}


@pytest.mark.parametrize("exercise, name", [(0, "ring"), (1, "store"), (2, "gather")])
def test_hidden(namespace, exercise, name):
    NB.run_hidden(exercise, namespace)
    namespace["sweep"](namespace[f"{name}_hidden"], seeds=HIDDEN_SEEDS[name])


def _fails(namespace, scenario, seeds=range(30), **kw):
    with pytest.raises(AssertionError) as e:
        namespace["sweep"](lambda seed: namespace[scenario](seed, **kw), seeds=seeds, quiet=True, stop_after=1)
    return str(e.value)


# -- exercise 1: rings that break one property ------------------------------------------------------
def _beyond_placement(namespace, wrong):
    """``wrong`` but for the check's placement probe (3 nodes, vnodes=2), which gets the right ring: so a
    wrong ring built to break a later requirement must be caught by that requirement's own assertion."""
    right = namespace["Ring"]

    class Wrong(wrong):
        def __new__(cls, nodes=(), vnodes=100):
            return right(nodes, vnodes) if vnodes == 2 else object.__new__(cls)
    return Wrong


def _ring(namespace, **methods):
    return _beyond_placement(namespace, type("Wrong", (namespace["Ring"],), methods))


def _wrong_ring(**methods):
    return lambda ns: {"Ring": _ring(ns, **methods)}


def test_a_mod_n_ring_moves_too_much(namespace):
    stable_hash = namespace["stable_hash"]

    class ModN:
        def __init__(self, nodes=(), vnodes=100):
            self.nodes = sorted(nodes)

        def owner(self, key):
            return self.nodes[stable_hash(key) % len(self.nodes)]

        def add(self, node):
            self.nodes = sorted([*self.nodes, node])

        def remove(self, node):
            self.nodes.remove(node)

    assert "at most" in _fails(namespace, "ring_scenario", ring_class=_beyond_placement(namespace, ModN))


def _salted_add(self, node):                             # Python's hash(): salted per process
    pts = sorted([*zip(self.hashes, self.nodes_at), *((hash(f"{node}#{i}"), node) for i in range(self.vnodes))])
    self.hashes, self.nodes_at = [h for h, _ in pts], [n for _, n in pts]


def _salted_owner(self, key):
    import bisect
    return self.nodes_at[bisect.bisect_left(self.hashes, hash(key)) % len(self.hashes)]


def test_a_ring_with_a_salted_hash_fails_across_processes(namespace):
    ring = _ring(namespace, add=_salted_add, owner=_salted_owner)
    assert "salted" in _fails(namespace, "ring_scenario", seeds=[0], ring_class=ring)


def test_a_ring_that_ignores_vnodes_spreads_badly(namespace):
    base = namespace["Ring"]

    class OnePoint(base):
        def __init__(self, nodes=(), vnodes=100):
            super().__init__(nodes, vnodes=1)

    assert "spread too much" in _fails(namespace, "ring_scenario", ring_class=_beyond_placement(namespace, OnePoint))


def test_a_ring_that_forgets_to_remove_points_fails(namespace):
    assert "still belong" in _fails(namespace, "ring_scenario", ring_class=_ring(namespace, remove=lambda self, node: None))


# -- exercise 2: shards that break one rule -----------------------------------------------------------
def _shard(namespace, **methods):
    return type("Wrong", (namespace["FencedShard"],), methods)


async def _hand_off_without_fence(self, ctx, msg):
    to, batch = msg["to"], {}
    for s, epoch in ((int(s), e) for s, e in msg["slots"].items()):
        items = self.items_of(s)
        self.known[s] = [to, epoch]
        batch[str(s)] = [epoch, items]                  # copies, but keeps serving the slot
    await self.send_install(ctx, to, batch)
    ctx.reply(msg)


def _install_without_epochs(self, ctx, msg):
    for s, (epoch, items) in ((int(s), v) for s, v in msg["slots"].items()):
        self.owned[s] = epoch
        self.known[s] = [ctx.id, epoch]
        self.data.update(items)
    ctx.reply(msg)


BROKEN_SHARDS = {
    "no fence at all": lambda ns: ns["sharded"].UnfencedShard,
    "hand-off without the fence": lambda ns: _shard(ns, hand_off=_hand_off_without_fence),
    "install without epochs": lambda ns: _shard(ns, install=_install_without_epochs),
}


@pytest.mark.parametrize("bug", list(BROKEN_SHARDS))
def test_broken_shards_fail_the_rules(namespace, bug):
    with pytest.raises(AssertionError, match="rule"):
        namespace["fencing_rules"](BROKEN_SHARDS[bug](namespace))


@pytest.mark.parametrize("bug", list(BROKEN_SHARDS))
def test_the_seeded_runs_alone_catch_broken_shards(namespace, monkeypatch, bug):
    """With the one-message rule checks switched off, the nemesis runs must still fail them."""
    monkeypatch.setitem(namespace, "fencing_rules", lambda shard_class=None: None)
    _fails(namespace, "store_scenario", seeds=range(40), shard_class=BROKEN_SHARDS[bug](namespace))


# -- exercise 3: gatherers that break one rule ----------------------------------------------------------
def _gather(namespace, **methods):
    return type("Wrong", (namespace["Gather"],), methods)


def _on_timer_never(self, ctx, name):                    # no deadline: waits for every shard
    pass


def _counts_replies(self, ctx, msg):                     # counts replies, not shards: duplicates count twice
    if msg.type == "query":
        return type(self).__mro__[1].on_message(self, ctx, msg)
    if msg.type == "scan_ok" and msg.in_reply_to in self.scans:
        qid, shard = self.scans[msg.in_reply_to]
        q = self.queries.get(qid)
        if q is not None and q["waiting"]:
            q["waiting"].pop()
            q["items"].update(msg["items"])
            if not q["waiting"]:
                self.answer(ctx, qid)


def _silently_short(self, ctx, qid):
    q = self.queries.pop(qid)
    ctx.cancel_timer(qid)
    ctx.reply(q["msg"], items=q["items"], partial=False, missing=[])


def _answers_again(self, ctx, qid):                      # keeps the query open after answering
    q = self.queries[qid]
    ctx.cancel_timer(qid)
    missing = sorted(q["waiting"])
    ctx.reply(q["msg"], items=q["items"], partial=bool(missing), missing=missing)


BROKEN_GATHERS = {
    "no deadline": (dict(on_timer=_on_timer_never), "deadline"),
    "counts replies": (dict(on_message=_counts_replies), "every shard answering"),
    "silently short": (dict(answer=_silently_short), "never silently short"),
    "answers again on late replies": (dict(answer=_answers_again), "exactly once"),
}


@pytest.mark.parametrize("bug", list(BROKEN_GATHERS))
def test_broken_gatherers_fail(namespace, bug):
    methods, says = BROKEN_GATHERS[bug]
    assert says in _fails(namespace, "gather_scenario", gather_class=_gather(namespace, **methods))


# -- every requirement of a statement is exercised by the visible check (issue 19, item 5) -------------
def _wrong(name, **methods):
    return lambda ns: {name: type("Wrong", (ns[name],), methods)}


def _order_dependent_add(self, node):                    # point names from the insertion index
    k = len(set(self.nodes_at))
    stable_hash = __import__("labkit.systems.partitioning", fromlist=["stable_hash"]).stable_hash
    pts = sorted([*zip(self.hashes, self.nodes_at), *((stable_hash(f"{k}#{i}"), node) for i in range(self.vnodes))])
    self.hashes, self.nodes_at = [h for h, _ in pts], [n for _, n in pts]


def _flaky_owner(self, key):                             # sometimes the next point's node
    import bisect
    import random
    i = bisect.bisect_left(self.hashes, __import__("labkit.systems.partitioning", fromlist=["x"]).stable_hash(key))
    return self.nodes_at[(i + (random.random() < 0.01)) % len(self.hashes)]


class _ShufflesOnAdd:                                    # an add that also hands 1% of old points to a neighbour
    def __init__(self, nodes=(), vnodes=100):
        super().__init__(nodes, vnodes)
        self.built = True

    def add(self, node):
        super().add(node)
        if getattr(self, "built", False):
            for j in range(0, len(self.nodes_at) - 1, 100):
                if node not in (self.nodes_at[j], self.nodes_at[j + 1]):
                    self.nodes_at[j] = self.nodes_at[j + 1]


def _remove_that_shuffles(self, node):
    super(type(self).__mro__[1], self).remove(node)
    for j in range(0, len(self.nodes_at) - 1, 100):
        self.nodes_at[j] = self.nodes_at[j + 1]


def _remove_that_rehashes(self, node):                   # rebuilds every point with a new salt
    nodes = sorted(set(self.nodes_at) - {node})
    self.hashes, self.nodes_at, self.vnodes = [], [], self.vnodes
    for n in nodes:
        pts = sorted([*zip(self.hashes, self.nodes_at),
                      *((__import__("labkit.systems.partitioning", fromlist=["x"]).stable_hash(f"{n}/{i}"), n)
                        for i in range(self.vnodes))])
        self.hashes, self.nodes_at = [h for h, _ in pts], [x for _, x in pts]


def _serve_everything(self, ctx, msg):
    self.execute(ctx, msg)


def _refuse_without_moved(self, ctx, msg):
    s = __import__("labkit.systems.shardmap", fromlist=["x"]).slot_of(msg["key"], self.slots)
    if s in self.owned:
        return self.execute(ctx, msg)
    ctx.reply(msg, "error", code=11)


async def _hand_off_keeps_data(self, ctx, msg):
    to, batch = msg["to"], {}
    for s, epoch in ((int(s), e) for s, e in msg["slots"].items()):
        if s in self.owned and self.owned[s] < epoch:
            del self.owned[s]
            self.known[s] = [to, epoch]
            self.snapshots[f"{s}/{epoch}"] = self.items_of(s)       # a copy: data keeps them
        if f"{s}/{epoch}" in self.snapshots:
            batch[str(s)] = [epoch, self.snapshots[f"{s}/{epoch}"]]
    await self.send_install(ctx, to, batch)
    ctx.reply(msg)


def _fenced_batch(self, msg, fresh_only=False):
    to, batch = msg["to"], {}
    for s, epoch in ((int(s), e) for s, e in msg["slots"].items()):
        new = s in self.owned and self.owned[s] < epoch
        if new:
            del self.owned[s]
            self.known[s] = [to, epoch]
            items = self.items_of(s)
            for k in items:
                del self.data[k]
            self.snapshots[f"{s}/{epoch}"] = items
        if f"{s}/{epoch}" in self.snapshots and (new or not fresh_only):
            batch[str(s)] = [epoch, self.snapshots[f"{s}/{epoch}"]]
    return to, batch


async def _hand_off_replies_at_once(self, ctx, msg):
    to, batch = _fenced_batch(self, msg)
    ctx.reply(msg)
    await self.send_install(ctx, to, batch)


async def _hand_off_sends_once(self, ctx, msg):
    to, batch = _fenced_batch(self, msg)
    try:
        await ctx.rpc(to, "install", timeout=1000, slots=batch)
    except __import__("labkit").RpcTimeout:
        pass
    ctx.reply(msg)


async def _hand_off_forgets_retries(self, ctx, msg):
    to, batch = _fenced_batch(self, msg, fresh_only=True)
    await self.send_install(ctx, to, batch)
    ctx.reply(msg)


def _install_ignores_everything(self, ctx, msg):
    ctx.reply(msg)


def _install_acks_only_adopted(self, ctx, msg):
    adopted = False
    for s, (epoch, items) in ((int(s), v) for s, v in msg["slots"].items()):
        if epoch > self.known.get(s, ["", 0])[1]:
            self.owned[s], self.known[s], adopted = epoch, [ctx.id, epoch], True
            self.data.update(items)
    if adopted:
        ctx.reply(msg)


def _scatter_without_prefix(self, ctx, msg):
    if msg.type == "query":
        msg.body["prefix"] = None
    type(self).__mro__[1].on_message(self, ctx, msg)


def _always_partial(self, ctx, qid):
    q = self.queries.pop(qid)
    ctx.cancel_timer(qid)
    ctx.reply(q["msg"], items=q["items"], partial=True, missing=sorted(q["waiting"]))


def _one_query_at_a_time(self, ctx, msg):                # a new query replaces the open one
    if msg.type == "query":
        for qid in list(self.queries):
            self.queries.pop(qid)
    type(self).__mro__[1].on_message(self, ctx, msg)


def _missing_not_named(self, ctx, qid):
    q = self.queries.pop(qid)
    ctx.cancel_timer(qid)
    ctx.reply(q["msg"], items=q["items"], partial=bool(q["waiting"]), missing=[])


def _deadline_drops_items(self, ctx, qid):
    q = self.queries.pop(qid)
    ctx.cancel_timer(qid)
    missing = sorted(q["waiting"])
    ctx.reply(q["msg"], items={} if missing else q["items"], partial=bool(missing), missing=missing)


def _owner_without_wrap(self, key):                      # past the largest point: the last point, not the first
    import bisect
    i = bisect.bisect_left(self.hashes, __import__("labkit.systems.partitioning", fromlist=["x"]).stable_hash(key))
    return self.nodes_at[min(i, len(self.hashes) - 1)]


def _owner_counter_clockwise(self, key):                 # the point before the key, not after it
    import bisect
    i = bisect.bisect_left(self.hashes, __import__("labkit.systems.partitioning", fromlist=["x"]).stable_hash(key))
    return self.nodes_at[i - 1]


def _owner_one_past(self, key):                          # off by one: the point after the right one
    import bisect
    i = bisect.bisect_left(self.hashes, __import__("labkit.systems.partitioning", fromlist=["x"]).stable_hash(key))
    return self.nodes_at[(i + 1) % len(self.hashes)]


class _Rendezvous:                                       # highest random weight: meets 1-5, but is no ring
    def __init__(self, nodes=(), vnodes=100):
        self.nodes = set(nodes)

    def owner(self, key):
        h = __import__("labkit.systems.partitioning", fromlist=["x"]).stable_hash
        return max(sorted(self.nodes), key=lambda n: h(f"{n}/{key}"))

    def add(self, node):
        self.nodes.add(node)

    def remove(self, node):
        self.nodes.discard(node)


async def _hand_off_without_epoch_check(self, ctx, msg):  # hands off a slot whatever the epoch
    to, batch = msg["to"], {}
    for s, epoch in ((int(s), e) for s, e in msg["slots"].items()):
        if s in self.owned:
            del self.owned[s]
            self.known[s] = [to, epoch]
            items = self.items_of(s)
            for k in items:
                del self.data[k]
            self.snapshots[f"{s}/{epoch}"] = items
        if f"{s}/{epoch}" in self.snapshots:
            batch[str(s)] = [epoch, self.snapshots[f"{s}/{epoch}"]]
    await self.send_install(ctx, to, batch)
    ctx.reply(msg)


def _one_shared_timer(self, ctx, msg):                   # one deadline timer for every open query
    type(self).__mro__[1].on_message(self, ctx, msg)
    if msg.type == "query":
        ctx.cancel_timer(msg.id)
        ctx.set_timer("deadline", after=msg.get("deadline_ms") or 200)


def _shared_timer_fires(self, ctx, name):
    for qid in list(self.queries):
        self.answer(ctx, qid)


def _missing_unsorted(self, ctx, qid):
    q = self.queries.pop(qid)
    ctx.cancel_timer(qid)
    missing = sorted(q["waiting"], reverse=True)
    ctx.reply(q["msg"], items=q["items"], partial=bool(missing), missing=missing)


WRONG = {   # requirement of the statement -> (check cell, wrong answer, what the report must say)
    "ex1: owners are among the nodes": (0, _wrong_ring(remove=lambda self, node: None), "still belong"),
    "ex1: the same whatever the order": (0, _wrong_ring(add=_order_dependent_add), "in another order"),
    "ex1: the same answer twice": (0, _wrong_ring(owner=_flaky_owner), "two answers"),
    "ex1: spread within 2.5/sqrt(v)": (0, _wrong_ring(__init__=lambda self, nodes=(), vnodes=100:
                                                 super(type(self).__mro__[1], self).__init__(nodes, 3)), "spread too much"),
    "ex1: add moves only to the new node": (0, lambda ns: {"Ring": _beyond_placement(ns, type("Wrong", (_ShufflesOnAdd, ns["Ring"]), {}))},
                                            "only to the new node"),
    "ex1: remove moves at most 1/(N+1)+3%": (0, _wrong_ring(remove=_remove_that_rehashes), "may move"),
    "ex1: remove moves only the removed node's keys": (0, _wrong_ring(remove=_remove_that_shuffles),
                                                       "only the removed node's keys"),
    "ex1: owner wraps past the largest point": (0, _wrong("Ring", owner=_owner_without_wrap), "wraps around"),
    "ex1: owner is the next point clockwise": (0, _wrong("Ring", owner=_owner_counter_clockwise), "placement:"),
    "ex1: owner is the first point at or after": (0, _wrong("Ring", owner=_owner_one_past), "placement:"),
    "ex1: a ring, not rendezvous hashing": (0, lambda ns: {"Ring": _Rendezvous}, "first point at or after"),
    "ex1: two processes agree": (0, _wrong_ring(add=_salted_add, owner=_salted_owner), "salted"),
    "ex2 rule 1: refuse other slots": (1, _wrong("FencedShard", serve=_serve_everything), "rule 1"),
    "ex2 rule 1: say where it moved": (1, _wrong("FencedShard", serve=_refuse_without_moved), "moved=['n2', 1]"),
    "ex2 rule 2: the fence": (1, _wrong("FencedShard", hand_off=_hand_off_without_fence), "rule 2"),
    "ex2 rule 2: only an older epoch is handed off": (1, _wrong("FencedShard", hand_off=_hand_off_without_epoch_check),
                                                       "is not newer and must change nothing"),
    "ex2 rule 2: items leave data": (1, _wrong("FencedShard", hand_off=_hand_off_keeps_data), "must leave data"),
    "ex2 rule 2: answer after the ack": (1, _wrong("FencedShard", hand_off=_hand_off_replies_at_once),
                                         "only once the new owner acknowledged"),
    "ex2 rule 2: resend until acknowledged": (1, _wrong("FencedShard", hand_off=_hand_off_sends_once), "resent"),
    "ex2 rule 2: a retried hand-off resends": (1, _wrong("FencedShard", hand_off=_hand_off_forgets_retries),
                                               "same snapshot"),
    "ex2 rule 3: adopt a newer epoch": (1, _wrong("FencedShard", install=_install_ignores_everything), "must adopt"),
    "ex2 rule 3: only a newer epoch": (1, _wrong("FencedShard", install=_install_without_epochs), "overwrote"),
    "ex2 rule 3: acknowledge every install": (1, _wrong("FencedShard", install=_install_acks_only_adopted),
                                              "acknowledge every install"),
    "ex3: equals the oracle (prefix)": (2, _wrong("Gather", on_message=_scatter_without_prefix),
                                        "every shard answering"),
    "ex3: complete when healthy": (2, _wrong("Gather", answer=_always_partial), "every shard answering"),
    "ex3: duplicates do no harm": (2, _wrong("Gather", on_message=_counts_replies), "every shard answering"),
    "ex3: queries at once": (2, _wrong("Gather", on_message=_one_query_at_a_time), "two queries at once"),
    "ex3: answer by the deadline": (2, _wrong("Gather", on_timer=_on_timer_never), "deadline"),
    "ex3: say partial": (2, _wrong("Gather", answer=_silently_short), "never silently short"),
    "ex3: name the missing shard": (2, _wrong("Gather", answer=_missing_not_named), "missing="),
    "ex3: the items that arrived": (2, _wrong("Gather", answer=_deadline_drops_items), "outside"),
    "ex3: a deadline per query": (2, _wrong("Gather", on_message=_one_shared_timer, on_timer=_shared_timer_fires),
                                  "own deadline"),
    "ex3: missing is sorted": (2, _wrong("Gather", answer=_missing_unsorted), "missing="),
    "ex3: exactly one answer": (2, _wrong("Gather", answer=_answers_again), "exactly once"),
}


@pytest.mark.parametrize("requirement", list(WRONG))
def test_visible_check_catches(requirement):
    check, wrong, says = WRONG[requirement]
    report = visible_report(NB, check, wrong)
    assert says in report, report
