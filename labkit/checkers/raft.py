"""Raft's properties (Figure 3 of the extended paper), checked over the journal.

The checkers read what each node *says* it did, with ``ctx.note``. The schema is a contract
between any Raft implementation (``labkit.systems.raft``, the chapter's exercise) and these checkers:

* ``ctx.note("state", role=<"follower"|"candidate"|"leader">, term=<int>)`` -- on every
  change of role or term, after the term and vote are persisted.
* ``ctx.note("log", index=<i>, entries=[[term, command], ...])`` -- whenever the log
  changes: from 1-based index ``i`` on, the log is now exactly ``entries``; anything after
  them was truncated. An append at the end has ``index=len(log)+1``. On every start (and
  restart) a node notes its whole recovered log with ``index=1`` (maybe ``entries=[]``).
* ``ctx.note("commit", index=<i>)`` -- whenever the commit index advances.
* ``ctx.note("apply", index=<i>, term=<entry's term>, command=<command>)`` -- when an entry
  is applied to the state machine; or, for a run of entries, ``ctx.note("apply", index=<i>,
  last=<j>)`` -- entries ``i..j`` of the node's log (as its ``log`` notes describe it) were
  applied, in order (cheaper: the commands are not written again). Either form may carry
  ``skipped=[i, ...]``: the entries of the note that the state machine did *not* execute
  (a copy of a client request it had executed, or one its client no longer awaited). A
  node that writes ``skipped`` (an empty list too) declares what it executed, and
  ``applied_exactly_once`` checks it.

A *client request* is a command that is a dict with ``client`` and ``seq`` (an int numbering
that client's requests); it may carry ``lowest_awaited``, the lowest seq its client still
awaited when it sent it (Raft dissertation §6.3) -- requests below it are settled.

A node's notes are split into *incarnations* at its ``start`` events (a restart loses
volatile state: the log is known again only from the ``index=1`` note, the commit index
starts from 0). Every checker returns a ``Verdict`` whose explanations are
``RaftViolation``s: the property, the node(s), term, index, the conflicting entries and
times -- the smallest evidence, not a dump. ``check_raft`` runs the six safety checkers.
Liveness (``leader_within``, ``progress``) and cost (``message_budget``) take time bounds.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..journal import Event, Journal
from ..runtime.base import is_client_id
from .verdict import Verdict

__all__ = ["RaftViolation", "election_safety", "log_matching", "state_machine_safety", "leader_completeness",
           "commit_monotonic", "applied_exactly_once", "leader_within", "leaderless_ms", "progress", "message_budget",
           "check_raft"]

ROLES = ("follower", "candidate", "leader")


@dataclass(frozen=True)
class RaftViolation:
    """One violation of a Raft property; ``str()`` reads as prose."""

    property: str
    text: str
    t: float
    node: str
    term: int | None = None
    index: int | None = None
    evidence: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


# ---- reading the notes ---------------------------------------------------------------------
def _events(journal: Any) -> list[Event]:
    if isinstance(journal, Journal):
        return journal.events
    if isinstance(journal, (list, tuple)) and all(isinstance(e, Event) for e in journal):
        return list(journal)
    raise TypeError(f"Raft checkers take a labkit.Journal (e.g. cluster.journal) or a list of Events, "
                    f"got {type(journal).__name__}")


def _bad(e: Event, why: str) -> ValueError:
    return ValueError(f"malformed {e.get('what')!r} note from {e.node} at t={e.t:.1f} ms: {why} "
                      f"(see labkit.checkers.raft for the note schema); the note: {dict(e.data)}")


def _int(e: Event, name: str, lo: int) -> int:
    v = e.get(name)
    if type(v) is not int or v < lo:
        raise _bad(e, f"{name} must be an int >= {lo}, got {v!r}")
    return v


class _Node:
    """What one node incarnation has said so far."""

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation
        self.role: str | None = None
        self.term = 0
        self.log: list[tuple[int, Any]] = []
        self.commit = 0
        self.applied = 0            # state_machine_safety's own count
        self.applied_to = 0         # the highest index the node's apply notes reached


def _walk(journal: Any) -> Iterator[tuple[Event, str, _Node, dict]]:
    """Replay the notes in journal order. Yields ``(event, what, node state, info)`` after
    applying each note; ``info`` has ``old_len`` for log notes and ``old_commit`` for commits."""
    nodes: dict[str, _Node] = {}
    for e in _events(journal):
        if e.kind == "start":
            nodes[e.node] = _Node(e.get("incarnation", 1))
            continue
        if e.kind != "note" or e.get("what") not in NOTE_KINDS:
            continue
        what = e.get("what")
        n = nodes.setdefault(e.node, _Node(1))
        info: dict = {}
        if what == "state":
            role = e.get("role")
            if role not in ROLES:
                raise _bad(e, f"role must be one of {ROLES}, got {role!r}")
            n.role, n.term = role, _int(e, "term", 0)
        elif what == "log":
            index, entries = _int(e, "index", 1), e.get("entries")
            if not isinstance(entries, list) or not all(
                    isinstance(x, list) and len(x) == 2 and type(x[0]) is int for x in entries):
                raise _bad(e, "entries must be a list of [term, command] pairs")
            if index > len(n.log) + 1:
                raise _bad(e, f"index {index} leaves a gap: the log had {len(n.log)} entries")
            info["old_len"] = len(n.log)
            n.log[index - 1:] = [(t, c) for t, c in entries]
            info["index"] = index
        elif what == "commit":
            info["old_commit"] = n.commit
            n.commit = max(n.commit, _int(e, "index", 0))
        else:
            index = _int(e, "index", 1)
            if "last" in e.data:
                last = _int(e, "last", index)
                if last > len(n.log):
                    raise _bad(e, f"applies up to index {last} but the node's log has {len(n.log)} entries")
                info["applies"] = [(i, *n.log[i - 1]) for i in range(index, last + 1)]
            else:
                if "command" not in e.data:
                    raise _bad(e, "an apply note needs the command (or last=<index> for a run of entries)")
                info["applies"] = [(index, _int(e, "term", 0), e["command"])]
            n.applied_to = max(n.applied_to, info["applies"][-1][0])
        yield e, what, n, info


def _cmd(c: Any) -> str:
    return json.dumps(c, sort_keys=True)


def _at(e: Event) -> str:
    return f"{e.node} at t={e.t:.1f} ms"


def _verdict(name: str, violations: list[RaftViolation], ok: str, details: dict) -> Verdict:
    details = {**details, "violations": len(violations)}
    if violations:
        first = violations[0]
        more = f" ({len(violations) - 1} more)" if len(violations) > 1 else ""
        return Verdict(False, name, first.text.split("\n")[0] + more, details, tuple(violations))
    return Verdict(True, name, ok, details)


NOTE_KINDS = ("state", "log", "commit", "apply")


def _observed(check: Callable[[Any], Verdict]) -> Callable[[Any], Verdict]:
    """A safety checker over a journal with no Raft notes has nothing to check: it answers
    unknown, never pass (a node that forgot its notes must not look correct)."""
    @functools.wraps(check)
    def run(journal: Any) -> Verdict:
        evs = _events(journal)
        if not any(e.kind == "note" and e.get("what") in NOTE_KINDS for e in evs):
            return Verdict(None, check.__name__, "no Raft notes in the journal: do the nodes call "
                           "ctx.note('state' | 'log' | 'commit' | 'apply', ...)? (schema: labkit.checkers.raft)",
                           {"notes": 0})
        return check(evs)
    return run


# ---- §5.2 Election Safety ---------------------------------------------------------------------
@_observed
def election_safety(journal: Journal) -> Verdict:
    """At most one leader is elected in a given term (over every ``state`` note)."""
    leaders: dict[int, Event] = {}
    bad: list[RaftViolation] = []
    for e, what, n, _ in _walk(journal):
        if what != "state" or n.role != "leader":
            continue
        first = leaders.setdefault(n.term, e)
        if first.node != e.node:
            bad.append(RaftViolation("election safety", f"term {n.term} has two leaders: {first.node} became "
                                     f"leader at t={first.t:.1f} ms and {_at(e)}", e.t, e.node, n.term,
                                     evidence={"leaders": [first.node, e.node], "times": [first.t, e.t]}))
    return _verdict("election_safety", bad, f"one leader per term in {len(leaders)} term(s) with a leader",
                    {"terms_with_leader": len(leaders)})


# ---- §5.3 Log Matching ------------------------------------------------------------------------
@_observed
def log_matching(journal: Journal) -> Verdict:
    """If two logs contain an entry with the same index and term, the logs are identical in
    all entries up to that index -- checked at every log change of every node, against
    every entry any node ever held (an (index, term) pair names one entry and one prefix)."""
    seen: dict[tuple[int, int], tuple[int, Any, int, Event]] = {}   # -> (chain, command, prev term, where)
    chains: dict[str, list[int]] = {}
    bad: list[RaftViolation] = []
    for e, what, n, info in _walk(journal):
        if what != "log":
            continue
        chain = chains.setdefault(e.node, [])
        i = info["index"]
        del chain[i - 1:]
        for j in range(i, len(n.log) + 1):
            term, cmd = n.log[j - 1]
            prev_term = n.log[j - 2][0] if j > 1 else 0
            chain.append(hash((chain[-1] if chain else 0, term, _cmd(cmd))))
            rec = seen.setdefault((j, term), (chain[-1], cmd, prev_term, e))
            if rec[0] != chain[-1] and not any(v.node == e.node and v.index == j for v in bad):
                k = next(k for k in range(1, j + 1) if seen[(k, n.log[k - 1][0])][0] != chain[k - 1])
                t_k, c_k = n.log[k - 1]
                _, c2, p2, e2 = seen[(k, t_k)]
                p1 = n.log[k - 2][0] if k > 1 else 0
                why = (f"different commands {c2!r} and {c_k!r}" if _cmd(c2) != _cmd(c_k) else
                       f"the same command after different entries (index {k - 1} has term {p2} vs {p1})")
                bad.append(RaftViolation(
                    "log matching", f"log matching violated at index {k}, term {t_k}: {e2.node} (t={e2.t:.1f} ms) "
                    f"and {_at(e)} hold entries with this index and term but {why}", e.t, e.node, t_k, k,
                    {"nodes": [e2.node, e.node], "entries": [[t_k, c2], [t_k, c_k]], "times": [e2.t, e.t]}))
    return _verdict("log_matching", bad, f"{len(seen)} distinct (index, term) entries, each with one prefix",
                    {"entries": len(seen)})


# ---- §5.4.3 State Machine Safety ------------------------------------------------------------
@_observed
def state_machine_safety(journal: Journal) -> Verdict:
    """No two nodes (or incarnations) apply different entries at the same index; each
    incarnation applies committed entries only, in index order from 1, without gaps."""
    applied: dict[int, tuple[int, Any, Event]] = {}
    bad: list[RaftViolation] = []
    count = 0
    for e, what, n, info in _walk(journal):
        if what != "apply":
            continue
        for i, term, cmd in info["applies"]:
            count += 1
            _check_apply(e, n, i, term, cmd, applied, bad)
    return _verdict("state_machine_safety", bad, f"{count} applies agree on {len(applied)} indices",
                    {"applies": count, "indices": len(applied)})


def _check_apply(e: Event, n: _Node, i: int, term: int, cmd: Any, applied: dict, bad: list) -> None:
    if i != n.applied + 1:
        bad.append(RaftViolation("state machine safety", f"{_at(e)} (incarnation {n.incarnation}) applied "
                                 f"index {i} right after index {n.applied}: applies must go in index order "
                                 f"without gaps", e.t, e.node, term, i))
    if i > n.commit:
        bad.append(RaftViolation("state machine safety", f"{_at(e)} applied index {i} but had committed only "
                                 f"up to {n.commit}", e.t, e.node, term, i))
    n.applied = max(n.applied, i)
    first = applied.setdefault(i, (term, cmd, e))
    if (first[0], _cmd(first[1])) != (term, _cmd(cmd)):
        bad.append(RaftViolation(
            "state machine safety", f"index {i} was applied as [term {first[0]}, {first[1]!r}] by "
            f"{_at(first[2])} but as [term {term}, {cmd!r}] by {_at(e)}", e.t, e.node, term, i,
            {"nodes": [first[2].node, e.node], "entries": [[first[0], first[1]], [term, cmd]],
             "times": [first[2].t, e.t]}))


# ---- §5.4 Leader Completeness -----------------------------------------------------------------
@_observed
def leader_completeness(journal: Journal) -> Verdict:
    """An entry committed in term T (a ``commit`` note covering it, made by a node in term T,
    with the entry's term from that node's log) is in the log of every leader of a term
    after T at the moment it becomes leader."""
    committed: dict[int, tuple[int, Any, int, Event]] = {}    # index -> (entry term, command, commit term, where)
    elections: list[tuple[int, Event, tuple[int, ...]]] = []
    done: dict[tuple[str, int], int] = {}
    for e, what, n, info in _walk(journal):
        if what == "state" and n.role == "leader":
            elections.append((n.term, e, tuple(t for t, _ in n.log)))
        elif what == "commit":
            key = (e.node, n.incarnation)
            for j in range(done.get(key, 0) + 1, min(n.commit, len(n.log)) + 1):
                t, c = n.log[j - 1]
                if j not in committed or committed[j][2] > n.term:
                    committed[j] = (t, c, n.term, e)
            done[key] = max(done.get(key, 0), n.commit)
    bad: list[RaftViolation] = []
    order = sorted(committed)
    for term, e, terms in elections:
        for j in order:
            t, c, cterm, ce = committed[j]
            if cterm < term and (j > len(terms) or terms[j - 1] != t):
                has = f"has term {terms[j - 1]} there" if j <= len(terms) else f"has only {len(terms)} entries"
                bad.append(RaftViolation(
                    "leader completeness", f"{e.node} became leader of term {term} at t={e.t:.1f} ms without "
                    f"entry {j} [term {t}, {c!r}], committed in term {cterm} by {_at(ce)}; its log {has}",
                    e.t, e.node, term, j, {"committed": [t, c], "committed_by": ce.node, "committed_at": ce.t}))
                break
    return _verdict("leader_completeness", bad, f"{len(elections)} leader(s) held all {len(committed)} "
                    f"entries committed in earlier terms", {"elections": len(elections), "committed": len(committed)})


# ---- commit index: monotonic, and the committed prefix never changes ------------------------------
@_observed
def commit_monotonic(journal: Journal) -> Verdict:
    """Per incarnation the commit index never moves backwards nor past the log, and no log
    change touches a committed entry; across the cluster, an index commits to one entry."""
    bad: list[RaftViolation] = []
    committed: dict[int, tuple[int, Any, Event]] = {}
    commits = 0
    for e, what, n, info in _walk(journal):
        if what == "log" and info["index"] <= n.commit:
            bad.append(RaftViolation("commit", f"{_at(e)} rewrote its log from index {info['index']} although "
                                     f"it had committed up to {n.commit}", e.t, e.node, n.term, info["index"]))
        if what != "commit":
            continue
        commits += 1
        i = e["index"]
        if i < info["old_commit"]:
            bad.append(RaftViolation("commit", f"{_at(e)} moved its commit index back from {info['old_commit']} "
                                     f"to {i}", e.t, e.node, n.term, i))
        if i > len(n.log):
            bad.append(RaftViolation("commit", f"{_at(e)} committed index {i} but its log has {len(n.log)} "
                                     f"entries", e.t, e.node, n.term, i))
        for j in range(info["old_commit"] + 1, min(i, len(n.log)) + 1):
            t, c = n.log[j - 1]
            first = committed.setdefault(j, (t, c, e))
            if (first[0], _cmd(first[1])) != (t, _cmd(c)):
                bad.append(RaftViolation(
                    "commit", f"index {j} was committed as [term {first[0]}, {first[1]!r}] by {_at(first[2])} "
                    f"but as [term {t}, {c!r}] by {_at(e)}", e.t, e.node, t, j,
                    {"entries": [[first[0], first[1]], [t, c]], "nodes": [first[2].node, e.node]}))
                break
    return _verdict("commit_monotonic", bad, f"{commits} commit advances; {len(committed)} committed entries never "
                    f"changed", {"commits": commits, "committed": len(committed)})


# ---- completeness: every committed command applied, each client request executed once --------------
def _request(cmd: Any) -> tuple[Any, Any] | None:
    """``(client, seq)`` of a client request (§6.3), or None for any other command."""
    if isinstance(cmd, dict) and "client" in cmd and "seq" in cmd:
        return _cmd(cmd["client"]), _cmd(cmd["seq"])
    return None


class _Sessions:
    """What one incarnation's state machine executed, as its apply notes say."""

    def __init__(self) -> None:
        self.executed: dict[tuple, int] = {}     # (client, seq) -> index where it was executed
        self.floor: dict[Any, int] = {}          # client -> highest lowest_awaited seen so far
        self.reports = True                      # False once an apply note lacks ``skipped``


@_observed
def applied_exactly_once(journal: Journal) -> Verdict:
    """Completeness, where state machine safety checks agreement. (1) Every node up at the
    end of the journal has applied every entry it committed (Figure 2: commitIndex >
    lastApplied means apply). (2) For nodes whose ``apply`` notes say which entries they
    skipped: every committed client request is *executed* exactly once per incarnation
    (dissertation §6.3) -- a skipped entry must be a copy of a request executed before, or
    below a ``lowest_awaited`` its client sent earlier in the log; nothing is executed twice;
    and all nodes execute or skip the same indices."""
    bad: list[RaftViolation] = []
    sessions: dict[_Node, _Sessions] = {}                # incarnation -> its sessions (kept alive: no id reuse)
    verdicts: dict[int, tuple[bool, Event]] = {}         # index -> (executed?, first note saying so)
    last: dict[str, _Node] = {}
    checked = applies = 0
    for e, what, n, info in _walk(journal):
        last[e.node] = n
        if what != "apply":
            continue
        s = sessions.setdefault(n, _Sessions())
        skipped = e.get("skipped")
        if skipped is None:
            s.reports = False
        elif not (isinstance(skipped, list) and all(type(i) is int for i in skipped)):
            raise _bad(e, f"skipped must be a list of the note's indices that were not executed, got {skipped!r}")
        elif any(not info["applies"][0][0] <= i <= info["applies"][-1][0] for i in skipped):
            raise _bad(e, f"skipped {skipped} names indices outside the note's "
                          f"{info['applies'][0][0]}..{info['applies'][-1][0]}")
        for i, term, cmd in info["applies"]:
            applies += 1
            if cmd is None or not s.reports:
                continue
            checked += 1
            _check_execution(e, n, i, term, cmd, i in skipped, s, verdicts, bad)
    down = _down_at_end(journal)
    for node, n in sorted(last.items()):
        applied = n.applied_to
        if node not in down and n.commit > applied:
            bad.append(RaftViolation(
                "applied exactly once", f"{node} committed up to index {n.commit} but applied only up to {applied} "
                f"by the end of the journal: committed entries {applied + 1}..{n.commit} were never applied",
                0.0, node, n.term, applied + 1))
    if not any(s.reports for s in sessions.values()):
        note = ("; no node lists the entries it skipped (apply notes without 'skipped'), so "
                "exactly-once execution of client requests was not checked")
    else:
        note = f"; {checked} applies checked for exactly-once execution"
    return _verdict("applied_exactly_once", bad, f"every up node applied what it committed{note}",
                    {"applies": applies, "checked": checked})


def _down_at_end(journal: Any) -> set[str]:
    """Nodes whose last start was followed by a kill or a crash (a paused node is up)."""
    down: set[str] = set()
    for e in _events(journal):
        if e.kind == "start":
            down.discard(e.node)
        elif e.kind in ("kill", "crash"):
            down.add(e.node)
    return down


def _check_execution(e: Event, n: _Node, i: int, term: int, cmd: Any, skipped: bool, s: _Sessions,
                     verdicts: dict, bad: list) -> None:
    key = _request(cmd)
    first = verdicts.setdefault(i, (not skipped, e))
    if first[0] == skipped:
        bad.append(RaftViolation(
            "applied exactly once", f"index {i} [term {term}, {cmd!r}] was {'executed' if first[0] else 'skipped'} "
            f"by {_at(first[1])} but {'skipped' if skipped else 'executed'} by {_at(e)}: their state machines "
            f"diverge", e.t, e.node, term, i, {"nodes": [first[1].node, e.node], "times": [first[1].t, e.t]}))
    if key is None:
        if skipped:
            bad.append(RaftViolation("applied exactly once", f"{_at(e)} skipped committed entry {i} [term {term}, "
                                     f"{cmd!r}], which is not a client request (no client and seq): it must be "
                                     f"executed", e.t, e.node, term, i))
        return
    client, seq = cmd["client"], cmd["seq"]
    low = cmd.get("lowest_awaited")
    if type(low) is int:
        s.floor[key[0]] = max(s.floor.get(key[0], low), low)
    if skipped:
        if key in s.executed:
            return
        floor = s.floor.get(key[0])
        if type(seq) is int and floor is not None and seq < floor:
            return
        bad.append(RaftViolation(
            "applied exactly once", f"{_at(e)} (incarnation {n.incarnation}) applied committed entry {i} "
            f"[term {term}, {cmd!r}] without executing it, but request {seq!r} of client {client!r} was never "
            f"executed before and its client still awaited it (no lowest_awaited above {seq!r}): a committed "
            f"command was dropped", e.t, e.node, term, i, {"client": client, "seq": seq}))
    elif key in s.executed:
        bad.append(RaftViolation(
            "applied exactly once", f"{_at(e)} (incarnation {n.incarnation}) executed request {seq!r} of client "
            f"{client!r} twice: at index {s.executed[key]} and again at index {i}", e.t, e.node, term, i,
            {"client": client, "seq": seq, "indices": [s.executed[key], i]}))
    else:
        s.executed[key] = i


# ---- all of the safety properties -------------------------------------------------------------
def check_raft(journal: Journal) -> Verdict:
    """Election safety, log matching, state machine safety, leader completeness, commit
    monotonicity and applied exactly once, combined (failing if any fails)."""
    evs = _events(journal)
    return Verdict.combine("raft", [f(evs) for f in (election_safety, log_matching, state_machine_safety,
                                                       leader_completeness, commit_monotonic,
                                                       applied_exactly_once)])


# ---- liveness ---------------------------------------------------------------------------------
def _timeline(journal: Any) -> Iterator[tuple[Event, dict[str, tuple[str, int]], set[str]]]:
    """Events by time with each node's latest (role, term) and the set of nodes up."""
    state: dict[str, tuple[str, int]] = {}
    up: set[str] = set()
    for e in sorted(_events(journal), key=lambda e: e.t):
        if e.kind in ("start", "resume"):
            up.add(e.node)
            if e.kind == "start":
                state.pop(e.node, None)
        elif e.kind in ("kill", "crash", "pause"):
            up.discard(e.node)
        elif e.kind == "note" and e.get("what") == "state":
            state[e.node] = (e.get("role"), e.get("term"))
        yield e, state, up


def _leader(state: dict[str, tuple[str, int]], up: set[str]) -> str | None:
    """The up node that leads the highest term any up node knows, if there is one."""
    terms = [state[n][1] for n in up if n in state]
    if not terms:
        return None
    top = max(terms)
    return next((n for n in sorted(up) if state.get(n) == ("leader", top)), None)


def leader_within(journal: Journal, *, after_ms: float, within_ms: float) -> Verdict:
    """Some time in ``[after_ms, after_ms + within_ms]`` an up node leads the highest term
    any up node knows. Unknown if the journal ends before the deadline without one."""
    name, deadline, last = "leader_within", after_ms + within_ms, None
    for e, state, up in _timeline(journal):
        last = e
        if e.t < after_ms:
            continue
        if e.t > deadline:
            break
        who = _leader(state, up)
        if who is not None:
            return Verdict(True, name, f"{who} leads term {state[who][1]} at t={e.t:.1f} ms, {e.t - after_ms:.1f} ms "
                           f"after t={after_ms:g} ms", {"leader": who, "t": e.t, "after_ms": e.t - after_ms})
    if last is None or last.t < deadline:
        return Verdict(None, name, f"the journal ends before t={deadline:g} ms with no leader", {})
    states = {n: list(s) for n, s in sorted(state.items()) if n in up}
    return Verdict(False, name, f"no leader within {within_ms:g} ms of t={after_ms:g} ms", {"states": states},
                   (f"at t={deadline:g} ms the up nodes' (role, term) were {states}",))


def leaderless_ms(journal: Journal, *, since: float, until: float) -> float:
    """How many ms of ``[since, until]`` passed with no up node leading the highest term any
    up node knows (a measurement, e.g. of the disruption a rejoining node causes)."""
    if until < since:
        raise ValueError(f"until ({until:g} ms) is before since ({since:g} ms)")
    total, t_prev, had = 0.0, since, None
    for e, state, up in _timeline(journal):
        if e.t > until:
            break
        if e.t >= since and had is False:
            total += e.t - t_prev
        if e.t >= since:
            t_prev = e.t
        had = _leader(state, up) is not None
    if had is False or had is None:
        total += until - t_prev
    return total


def progress(journal: Journal, *, after_ms: float, within_ms: float) -> Verdict:
    """Some node commits an index higher than any committed before ``after_ms``, within
    ``within_ms`` of it (e.g. after a heal). Unknown if the journal ends too early."""
    name, deadline, best, last = "progress", after_ms + within_ms, 0, None
    for e in sorted(_events(journal), key=lambda e: e.t):
        last = e
        if e.kind != "note" or e.get("what") != "commit":
            continue
        if e.t < after_ms:
            best = max(best, e.get("index", 0))
        elif e.t <= deadline and e.get("index", 0) > best:
            return Verdict(True, name, f"{_at(e)} committed index {e['index']}, {e.t - after_ms:.1f} ms after "
                           f"t={after_ms:g} ms (highest before: {best})", {"t": e.t, "index": e["index"]})
    if last is None or last.t < deadline:
        return Verdict(None, name, f"the journal ends before t={deadline:g} ms without a new commit", {"before": best})
    return Verdict(False, name, f"no commit beyond index {best} within {within_ms:g} ms of t={after_ms:g} ms",
                   {"before": best})


# ---- cost -------------------------------------------------------------------------------------
def message_budget(journal: Journal, *, since: float, until: float | None = None,
                   per_second: float) -> Verdict:
    """Node-to-node messages sent in ``[since, until]`` ms are at most ``per_second`` per
    second (MIT 6.5840: an idle cluster sends few). ``until`` defaults to the last event; pass
    ``cluster.now`` to measure up to now. Unknown if the journal ends before ``since``."""
    evs = _events(journal)
    end = until if until is not None else (evs[-1].t if evs else since)
    name = "message_budget"
    if end <= since or not evs or evs[-1].t < since:
        return Verdict(None, name, f"the journal does not cover [{since:g}, {end:g}] ms", {})
    sends = [e for e in evs if e.kind == "send" and since <= e.t <= end
             and not is_client_id(e.node) and not is_client_id(e.dst or "")]
    rate = len(sends) / ((end - since) / 1000.0)
    by_type: dict[str, int] = {}
    for e in sends:
        by_type[e.type or "?"] = by_type.get(e.type or "?", 0) + 1
    ok = rate <= per_second
    return Verdict(ok, name, f"{rate:.1f} messages/s between nodes over {end - since:g} ms (budget "
                   f"{per_second:g}/s)", {"messages": len(sends), "per_second": rate, "by_type": by_type},
                   () if ok else (f"messages by type: {by_type}",))
