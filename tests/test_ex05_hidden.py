"""Hidden checks of chapter 05's exercises (solutions/05_raft.ipynb): build Raft in four stages.

Runs the notebook's code cells in order (skipping the check cells a reader runs), then each
stage's ``### BEGIN HIDDEN TESTS`` block: 200 more seeds per stage, with denser and more varied
faults (delay, duplication, reordering; for stages 3 and 4 kills and whole-cluster restarts).
Other tests make sure the visible checks are not vacuous: a node that breaks one rule of the
paper must fail the check of its stage.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "solutions" / "05_raft.ipynb"
HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n(.*?)^### END HIDDEN TESTS", re.M | re.S)


def _cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = [c.source for c in code if "check" not in c.metadata.get("tags", [])]
    checks = [c.source for c in code if "check" in c.metadata.get("tags", [])]
    return setup, checks


@pytest.fixture(scope="module")
def namespace():
    setup, _ = _cells()
    ns = {"__name__": "__main__"}
    for i, src in enumerate(setup):
        exec(compile(src, f"{NOTEBOOK.name}[{i}]", "exec"), ns)
    return ns


def test_every_stage_check_has_hidden_tests():
    _, checks = _cells()
    assert len(checks) == 5                       # four stages and the real-process run
    assert all(HIDDEN.search(src) for src in checks[:4])


@pytest.mark.parametrize("stage", [0, 1, 2, 3], ids=["election", "replication", "persistence", "kv"])
def test_hidden(namespace, stage):
    _, checks = _cells()
    block = HIDDEN.search(checks[stage]).group(1)
    assert "range(1000, 1200)" in block          # 200 seeds per stage
    exec(compile(block, f"{NOTEBOOK.name}:hidden[{stage}]", "exec"), namespace)


def _fails(namespace, scenario, node_class, seeds=range(40)):
    with pytest.raises(AssertionError):
        namespace["sweep"](lambda seed: namespace[scenario](seed, node_class), seeds=seeds, quiet=True,
                           stop_after=1)


def test_checks_catch_a_node_that_ignores_heartbeats(namespace):
    base = namespace["Election"]

    class Restless(base):                         # never resets its timer: elections all the time
        def on_append_entries(self, ctx, msg):
            if msg["term"] > self.term:
                self.set_term(ctx, msg["term"])
            self.leader = msg["leader"]
            if self.role != "follower":
                self.become(ctx, "follower")
            ctx.reply(msg, term=self.term, success=True, match=0)

    namespace["Election"] = Restless
    try:
        with pytest.raises(AssertionError):
            namespace["sweep"](namespace["election_scenario"], seeds=range(20), quiet=True, stop_after=1)
    finally:
        namespace["Election"] = base


def test_checks_catch_a_follower_that_truncates_on_stale_messages(namespace):
    base = namespace["Replication"]

    class Truncating(base):                       # writes from prev_index + 1 on every message
        def on_append_entries(self, ctx, msg):
            if msg["term"] < self.term:
                ctx.reply(msg, term=self.term, success=False, last_index=self.last_index())
                return
            if msg["term"] > self.term:
                self.set_term(ctx, msg["term"])
            self.leader = msg["leader"]
            self.become(ctx, "follower")
            self.reset_election_timer(ctx)
            prev = msg["prev_index"]
            if prev > self.last_index() or self.term_at(prev) != msg["prev_term"]:
                ctx.reply(msg, term=self.term, success=False, last_index=self.last_index())
                return
            if prev >= self.commit_index:
                self.set_log_from(ctx, prev + 1, msg["entries"])
            match = prev + len(msg["entries"])
            self.set_commit(ctx, min(msg["commit"], match))
            ctx.reply(msg, term=self.term, success=True, match=match)

    _fails(namespace, "replication_scenario", Truncating)


def test_checks_catch_a_node_that_forgets_its_vote(namespace):
    base = namespace["Durable"]

    class Forgetful(base):                        # saves the log but not term and vote
        def save(self, ctx, log_from=None):
            if log_from is not None:
                for i in range(log_from, self.last_index() + 1):
                    ctx.storage[f"log/{i}"] = self.log[i - 1]
                ctx.storage["log_len"] = self.last_index()

    class Volatile(namespace["Replication"]):     # saves nothing at all
        pass

    _fails(namespace, "persistence_scenario", Volatile, seeds=range(10))
    _fails(namespace, "persistence_scenario", Forgetful)


def test_checks_catch_a_store_without_sessions(namespace):
    base = namespace["RaftKV"]

    class NoSessions(base):
        def apply_command(self, command):
            return self.execute(command["op"])

    _fails(namespace, "kv_scenario", NoSessions, seeds=range(5))
