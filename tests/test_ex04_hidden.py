"""Hidden checks of chapter 04's exercises (solutions/04_replication.ipynb).

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each check
cell's ``### BEGIN HIDDEN TESTS`` block, which defines ``<exercise>_hidden(seed)``: more clients,
more loss, duplication and reordering; this module sweeps each over 200-300 seeds. Other tests make
sure the checks are not vacuous: a quorum store with R + W <= N must be caught serving stale reads,
and each requirement of a statement, broken alone, must fail the visible check.
"""
from __future__ import annotations

import pytest
from solutionnb import HIDDEN, SolutionNotebook
from visiblecheck import visible_report

NB = SolutionNotebook("04_replication.ipynb")


@pytest.fixture(scope="module")
def namespace():
    ns = NB.run_setup()
    for i in range(3):
        NB.run_hidden(i, ns)
    return ns


def test_every_check_cell_has_hidden_tests_and_enough_seeds():
    assert len(NB.checks) == 3
    assert all(HIDDEN.search(src) for src in NB.checks)
    assert "range(100)" in NB.checks[0] and "range(100)" in NB.checks[1] and "range(200)" in NB.checks[2]


@pytest.mark.parametrize("name, seeds", [("sync_hidden", range(1000, 1200)), ("quorum_hidden", range(1000, 1300)),
                                         ("versions_hidden", range(1000, 1200))])
def test_hidden(namespace, name, seeds):
    namespace["sweep"](namespace[name], seeds=seeds)


@pytest.mark.parametrize("r, w", [(1, 1), (1, 2), (2, 1)])
def test_r_plus_w_at_most_n_is_caught_losing_freshness(namespace, r, w):
    weak = type("Weak", (namespace["QuorumKV"],), {"R": r, "W": w})
    with pytest.raises(AssertionError, match=r"stale read.*R \+ W > N"):
        namespace["sweep"](lambda seed: namespace["quorum_hidden"](seed, weak), seeds=range(1000, 1300),
                           quiet=True, stop_after=1)


def test_an_async_primary_that_waits_is_caught_not_losing(namespace):
    """The check proves async loses a write: a store that always waits must fail it."""
    class AlwaysWaits(namespace["Backup"]):
        SYNC = True

    ns = dict(namespace)
    ns["Backup"] = AlwaysWaits
    visible = HIDDEN.sub("", NB.checks[0]).replace("sweep(sync_scenario, seeds=range(100))", "")
    with pytest.raises(AssertionError, match="asynchronous replication should lose"):
        exec(compile(visible, "check0", "exec"), ns)


# -- every requirement of a statement is exercised by the visible check --------------------------

def _subclass(name, **methods):
    return lambda ns: {name: type("Wrong", (ns[name],), methods)}


def _acks_at_once(self, ctx, msg):                          # ignores SYNC
    index = self.append(ctx, {"f": msg.type, "key": str(msg["key"]), "value": msg["value"]})
    self.ship_soon(ctx)
    ctx.reply(msg, index=index)


def _release_on_one(self, ctx):                             # semi-synchronous
    for index in sorted(self.pending):
        if not any(self.match.get(p, 0) >= index for p in self.sync_set):
            break
        ctx.reply(self.pending.pop(index), index=index)


def _match_follows_last_reply(self, ctx, msg):               # a late reply lowers match
    if msg["ok"]:
        self.match[msg.src] = msg["applied"]
        self.release(ctx)
    else:
        self.next_index[msg.src] = msg["applied"] + 1
        self.ship(ctx, msg.src)


def _no_gap_check(self, ctx, msg):                          # appends whatever arrives
    for entry in msg["entries"]:
        self.append(ctx, entry)
    ctx.reply(msg, epoch=self.epoch, ok=True, applied=self.applied)


def _no_read_repair(self, ctx, op):
    msg = op["msg"]
    if msg.type == "write":
        if not op["done"] and len(op["acks"]) >= self.W:
            op["done"] = True
            ctx.reply(msg)
        return
    versions = [v for v in op["replies"].values() if v is not None]
    newest = max(versions, key=lambda v: v[:2]) if versions else None
    if not op["done"] and len(op["replies"]) >= self.R:
        op["done"] = True
        ctx.reply(msg, value=newest[2] if newest else None)


def _first_reply_wins(self, ctx, op):                        # answers the read from its own copy
    msg = op["msg"]
    if msg.type == "read" and not op["done"]:
        op["done"] = True
        mine = op["replies"].get(ctx.id)
        return ctx.reply(msg, value=mine[2] if mine else None)
    if msg.type == "write" and not op["done"] and len(op["acks"]) >= self.W:
        op["done"] = True
        ctx.reply(msg)


def _merge_min(self, other):
    return type(self)({k: min(self.counts.get(k, 0), other.counts.get(k, 0)) for k in set(self.counts) | set(other.counts)})


def _compare_says_before(self, other):                       # never "concurrent"
    keys = set(self.counts) | set(other.counts)
    if all(self.counts.get(k, 0) == other.counts.get(k, 0) for k in keys):
        return "equal"
    return "before" if sum(self.counts.values()) <= sum(other.counts.values()) else "after"


def _timer_only_forgets(self, ctx, name):                   # no error answer at the timeout
    op = self.ops.get(name)
    for mid in [m for m, o in self.ops.items() if o is op]:
        del self.ops[mid]


def _merge_in_place(self, other):                            # mutates self, and returns it
    for k, v in other.counts.items():
        self.counts[k] = max(self.counts.get(k, 0), v)
    return self


def _increment_past_the_max(self, node):                     # a Lamport clock, not a vector entry
    counts = dict(self.counts)
    counts[node] = max(counts.values(), default=0) + 1
    return type(self)(counts)


def _compare_equal_is_before(self, other):                   # "before" also for equal vectors
    keys = set(self.counts) | set(other.counts)
    le = all(self.counts.get(k, 0) <= other.counts.get(k, 0) for k in keys)
    ge = all(self.counts.get(k, 0) >= other.counts.get(k, 0) for k in keys)
    return "before" if le else "after" if ge else "concurrent"


WRONG = {   # requirement -> (check cell, wrong answer, what the report must say)
    "a sync write waits for the replicas": (0, _subclass("SyncBackup", client_write=_acks_at_once),
                                            "must not be acknowledged before"),
    "sync waits for every replica": (0, _subclass("SyncBackup", release=_release_on_one), "semi-synchronous"),
    "match is never lowered": (0, _subclass("SyncBackup", on_replicate_ok=_match_follows_last_reply), "never lower match"),
    "a replica refuses a gap": (0, _subclass("Backup", on_replicate=_no_gap_check), "gap"),
    "read repair": (1, _subclass("QuorumKV", progress=_no_read_repair), "read repair"),
    "R replies before answering": (1, _subclass("QuorumKV", progress=_first_reply_wins), "failed on"),
    "a timeout answers an error": (1, _subclass("QuorumKV", on_op_timer=_timer_only_forgets), "timeout:"),
    "merge is the maximum": (2, _subclass("VersionVector", merge=_merge_min), "upper bound"),
    "merge returns a new vector": (2, _subclass("VersionVector", merge=_merge_in_place), "changed the vector itself"),
    "increment raises only its node's entry": (2, _subclass("VersionVector", increment=_increment_past_the_max),
                                               "only n2's entry"),
    "equal vectors compare equal": (2, _subclass("VersionVector", compare=_compare_equal_is_before), "is 'equal'"),
    "compare finds concurrency": (2, _subclass("VersionVector", compare=_compare_says_before), "concurrent"),
}


@pytest.mark.parametrize("requirement", list(WRONG))
def test_visible_check_catches(requirement):
    check, wrong, says = WRONG[requirement]
    assert says in visible_report(NB, check, wrong)
