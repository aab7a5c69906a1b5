"""Raft: a reference implementation (Ongaro & Ousterhout, the extended paper, 2014).

Theory of operation. Every node is a ``follower``, a ``candidate`` or the ``leader`` of a
*term*. A follower that hears nothing from a leader for a randomized election timeout
becomes a candidate, votes for itself and asks the others for their votes (§5.2). A
candidate with a majority of votes leads its term: it appends client commands to its log
and replicates them with AppendEntries (§5.3). An entry is *committed* once the leader has
stored an entry of its own term on a majority, and then every entry before it is committed
too (§5.3, §5.4.2); committed entries are applied, in index order, to the state machine.
Votes go only to candidates whose log is at least as up to date as the voter's (§5.4.1),
which is what makes every future leader hold every committed entry (§5.4).

Durability (Figure 2, "Persistent state on all servers"): ``currentTerm``, ``votedFor`` and
the log are written to ``ctx.storage`` *before* the node sends anything that depends on
them. The log is stored as *chunks*: each append writes its entries under one key named by
the index of the first, so an append costs one write of the new entries, not of the log:

    raft/term     -> [currentTerm, votedFor]    one write, so term and vote change together
    raft/len      -> number of entries          with the chunk when appending; alone, first,
                                                when truncating
    raft/log/i    -> [[term, command], ...]     a chunk: entries i, i+1, ...

An append is one atomic ``storage.update`` of the chunk and the length. A truncation at
index i first shrinks the length, then deletes the chunks that start at i or later; a chunk
that starts before i keeps its stale tail, which the next chunk (starting at i) covers. On
restart the chunks are laid down in order of their first index and cut to the length, so a
crash between any two writes leaves the old log or a prefix of it, never a mix of two logs.

Replication: the leader replicates a new command at once (it does not wait for the next
heartbeat) and keeps up to ``MAX_INFLIGHT`` AppendEntries in flight per follower, each
starting where the one before ended (pipelining, as etcd does); when one is answered,
everything that piled up meanwhile goes in the next (batching). A rejection of an awaited
AppendEntries drops the pipeline and starts again from where the follower's log agrees; it
carries a conflict term and index, so the leader skips a whole term of mismatched entries
at a time (the "fast backup" of §5.3's last paragraphs). Client commands that arrive
together are appended together (*group commit*, as etcd does): they queue until the end
of the node's current round of inputs (a 0 ms timer) and then go to the log, to storage and
to the followers as one batch -- one write, not one per command -- unless more than
``MAX_UNCOMMITTED`` entries already wait for a majority (flow control). Every
``HEARTBEAT_MS`` each follower hears from the leader: an empty AppendEntries while batches
are on their way, else whatever it lacks; a batch unanswered for two heartbeats is taken as
lost and sent again. A new leader appends a no-op entry of its term (§8), so older entries
commit without waiting for a client.

Clients (§8) and ``RaftKV``: any node accepts a request; a follower forwards it to the
leader it knows and retries (to a newer leader) on timeout. Every command carries a client
id and an int sequence number ``seq``, so one request may reach the log more than once (a
retried forward, a duplicated message, a node that forwarded and then led) and requests of
one client may reach it out of order (one forwarded, one sent straight to the leader).
Sessions follow the Raft dissertation §6.3, not the "last seq only" table of the paper's
§8: the replicated state machine keeps, per client, the result of *every* request it
executed at or above the session's ``floor``. A command whose ``seq`` has a result is a
copy: not executed again, answered with that result. Any other command at or above the
floor is executed, whatever its order relative to the client's other requests -- so every
committed request is executed exactly once and answered. The floor bounds the memory:

* a client (or request) may send ``lowest_awaited``, the lowest seq it still awaits an
  answer for (§6.3); the session then forgets the results below it and the floor rises;
* without that, a session keeps ``SESSION_LIMIT`` to twice as many results, forgetting the
  oldest when it holds more.

A command below the floor without a result is not executed (its client no longer awaits it,
or more than ``SESSION_LIMIT`` newer requests were executed meanwhile) and is answered with
error 13, *indefinite*: an older copy may have been executed. Every node applies the same
log in the same order, so every node keeps the same sessions; like the key-value store they
live in memory and are rebuilt after a restart by replaying the log (no snapshots). The
``apply`` notes list the entries applied without executing them (``skipped``), and
``labkit.checkers.raft.applied_exactly_once`` checks the rule above on the journal.
A definite error (11) goes to a client only when no copy of its request can be in a log:
a request queued when leadership is lost is answered from the session if it was executed,
and kept waiting if a copy is in the log, uncommitted. A definite error speaks for the request
*message* it answers: a client that resends a seq to another node must wait for the other
attempts (or time out) before it counts the request as failed. Reads go through the log too: the
simplest way to make them linearizable (no leases, no ReadIndex).

PreVote (dissertation §9.6, off by default: ``PRE_VOTE = True`` turns it on): a node whose
election timer fires first asks the others whether they *would* vote for it in the next
term (``pre_vote``, answered ``pre_vote_ok``), without changing its term; they say yes only
if its log is up to date and they have not heard from a leader for the minimum election
timeout. Only with a majority of yeses does it start a real election. So a node cut off
from the others does not raise its term again and again, and does not depose a working
leader when it rejoins.

Messages are named as in chapter 05's exercise skeleton, by Maelstrom's convention (the reply
to ``t`` is ``t_ok``, what ``ctx.reply`` sends by default): ``request_vote`` /
``request_vote_ok``, ``append_entries`` / ``append_entries_ok``, ``pre_vote`` / ``pre_vote_ok``,
and ``forward`` (a follower passing a client's command to the leader). The bodies differ a
little: the reference takes the candidate or leader from the sender (``msg.src``) where the
skeleton also sends it in the body (``candidate``, ``leader``), and its rejections carry a
conflict term and index for the fast backup.

Observations for the checkers (``labkit.checkers.raft`` documents the schema):
``ctx.note("state" | "log" | "commit" | "apply", ...)``; status for the panel with
``ctx.report(role=, term=, commit_index=, log_len=, leader=)``.
"""
from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable

from ..context import Context
from ..errors import RpcTimeout
from ..message import Message
from ..node import Node

__all__ = ["Raft", "RaftKV"]

TERM_KEY, LEN_KEY, ENTRY_KEY = "raft/term", "raft/len", "raft/log/"
RAFT_TYPES = ("request_vote", "request_vote_ok", "append_entries", "append_entries_ok", "forward",
              "pre_vote", "pre_vote_ok")
Entry = list  # [term, command]


class Raft(Node):
    """A Raft server with a pluggable state machine: override ``apply(ctx, command)``."""

    ELECTION_TIMEOUT: tuple[float, float] = (150.0, 300.0)   # ms, drawn anew at every reset
    HEARTBEAT_MS: float = 50.0
    MAX_BATCH: int = 2048                 # entries per AppendEntries
    MAX_INFLIGHT: int = 4                 # AppendEntries with entries awaited per follower (pipelining)
    MAX_UNCOMMITTED: int = 4096           # flow control: queued commands wait beyond this many
    CLIENT_PATIENCE_MS: float = 900.0     # give up on a client request (clients wait 1000 ms)
    FORWARD_TIMEOUT_MS: float = 300.0     # wait this long for the leader before retrying
    RETRY_MS: float = 25.0                # no leader known: look again after this long
    NOOP_ON_ELECTION: bool = True         # §8: a new leader commits a blank entry of its term
    PRE_VOTE: bool = False                # §9.6: ask "would you vote for me?" before a new term
    SESSION_LIMIT: int = 1024             # results a session keeps (up to 2x) without lowest_awaited

    # ---- the state machine: override these ----------------------------------------------
    def apply(self, ctx: Context, command: Any) -> Any:
        """Apply a committed command; the result goes back to the client. Default: no-op.

        A client's command is a dict: the request (``op`` and its fields) plus ``client``,
        ``seq`` and maybe ``lowest_awaited``; copies of a request never get here (the session
        table answers them). No-ops don't."""
        return None

    def on_client(self, ctx: Context, msg: Message) -> Any:
        """A message that is not Raft's own. Default: submit ``msg.body["command"]``."""
        if "command" in msg.body:
            try:
                session = self.session_of(msg)
            except ValueError as e:
                ctx.reply(msg, "error", code=12, text=str(e))
                return None
            return self.submit(ctx, msg, {"op": msg.body["command"], **session})
        ctx.reply(msg, "error", code=10, text=f"unsupported request {msg.type!r}")

    def client_reply(self, ctx: Context, msg: Message, result: Any) -> None:
        """Answer the client's ``msg`` with the state machine's ``result``."""
        ctx.reply(msg, result=result)

    # ---- start and recovery ---------------------------------------------------------------
    def on_start(self, ctx: Context) -> None:
        self.queued: deque[tuple[Any, Callable, Callable[[], None]]] = deque()  # (command, answer, refuse)
        self.term, self.voted_for = ctx.storage.get(TERM_KEY, [0, None])
        self.log: list[Entry] = self.load_log(ctx)
        self.role, self.leader = "follower", None
        self.commit_index = self.last_applied = 0           # volatile: relearned from the leader
        self.votes: set[str] = set()
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.inflight: dict[str, dict[str, float]] = {}     # peer -> {AppendEntries awaited: sent at}
        self.sessions: dict[Any, Session] = {}             # client -> its session (§6.3)
        self.waiting: dict[tuple, list[Callable[[Any], None]]] = {}  # (client, seq) -> answer it
        self.uncertain: dict[tuple, float] = {}             # (client, seq) -> when a forward of it timed out
        self.prevotes: set[str] | None = None               # PreVote: the yeses so far, while asking
        self.heard_leader_at = float("-inf")                # PreVote: when a leader last spoke to us
        ctx.note("state", role="follower", term=self.term)
        ctx.note("log", index=1, entries=self.log)
        self._report(ctx)
        self._reset_election_timer(ctx)

    # ---- small helpers --------------------------------------------------------------------
    @property
    def last_index(self) -> int:
        return len(self.log)

    def term_at(self, index: int) -> int:
        return self.log[index - 1][0] if 1 <= index <= len(self.log) else 0

    def majority(self, ctx: Context) -> int:
        return (len(ctx.peers) + 1) // 2 + 1

    def _report(self, ctx: Context) -> None:
        ctx.report(role=self.role, term=self.term, commit_index=self.commit_index,
                   log_len=len(self.log), leader=self.leader)

    def _reset_election_timer(self, ctx: Context) -> None:
        ctx.set_timer("election", between=self.ELECTION_TIMEOUT)

    def _become(self, ctx: Context, role: str, term: int, voted_for: str | None) -> None:
        """Change role, term and vote: durable before anything that depends on them is sent
        (Figure 2), then noted once."""
        assert term >= self.term, f"{ctx.id}: term went backwards ({self.term} -> {term})"
        if (term, voted_for) != (self.term, self.voted_for):
            self.persist_vote(ctx, term, voted_for)
        changed = (role, term) != (self.role, self.term)
        self.role, self.term, self.voted_for = role, term, voted_for
        if changed:
            ctx.note("state", role=role, term=term)
        self._report(ctx)

    def persist_vote(self, ctx: Context, term: int, voted_for: str | None) -> None:
        ctx.storage[TERM_KEY] = [term, voted_for]

    @staticmethod
    def chunk_starts(ctx: Context) -> list[int]:
        """First indices of the stored log chunks, in order."""
        n = len(ENTRY_KEY)
        return sorted(int(k[n:]) for k in ctx.storage if k.startswith(ENTRY_KEY))

    def load_log(self, ctx: Context) -> list[Entry]:
        """The durable log: chunks in order of their first index, cut to the stored length."""
        log: list[Entry] = []
        for first in self.chunk_starts(ctx):
            chunk = ctx.storage[f"{ENTRY_KEY}{first}"]
            assert first <= len(log) + 1, f"log chunk at {first} leaves a gap after {len(log)} entries"
            log[first - 1:] = chunk
        return log[:ctx.storage.get(LEN_KEY, 0)]

    def _write_log(self, ctx: Context, index: int, entries: list[Entry]) -> None:
        """Make the log from ``index`` on exactly ``entries`` (durably), and note it."""
        assert index > self.commit_index, (
            f"{ctx.id}: would overwrite committed entry {index} (commit index {self.commit_index})")
        if index <= len(self.log):                        # truncate first: a crash leaves a prefix
            ctx.storage[LEN_KEY] = index - 1
            for first in self.chunk_starts(ctx):
                if first >= index:
                    del ctx.storage[f"{ENTRY_KEY}{first}"]
            del self.log[index - 1:]
        self.log.extend(entries)                          # one chunk and the length, atomically
        if entries:
            ctx.storage.update({f"{ENTRY_KEY}{index}": entries, LEN_KEY: len(self.log)})
        ctx.note("log", index=index, entries=entries)
        self._report(ctx)

    def _step_down(self, ctx: Context, term: int) -> None:
        """§5.1: a message with a higher term makes any server a follower of that term."""
        if self.role == "leader":
            ctx.cancel_timer("heartbeat")
            if self.queued:
                ctx.set_timer("group_commit", after=0)     # refuse what flow control held back
        self.leader, self.prevotes = None, None
        self._become(ctx, "follower", term, None)
        self._reset_election_timer(ctx)

    # ---- messages -------------------------------------------------------------------------
    def on_message(self, ctx: Context, msg: Message) -> Any:
        if msg.type not in RAFT_TYPES:
            if msg.src in ctx.peers:                       # e.g. a late reply to a forward
                return None
            return self.on_client(ctx, msg)
        term = msg.body.get("term", 0)
        if term > self.term and msg.type != "pre_vote":   # a pre-vote's term is only proposed
            self._step_down(ctx, term)
        return getattr(self, "_on_" + msg.type)(ctx, msg)

    def on_timer(self, ctx: Context, name: str) -> None:
        if name == "group_commit":
            self._group_commit(ctx)
        elif name == "election" and self.role != "leader":
            if self.PRE_VOTE:
                self._start_prevote(ctx)
            else:
                self._start_election(ctx)
        elif name == "heartbeat" and self.role == "leader":
            for peer in ctx.peers:
                waiting = self.inflight[peer]
                if waiting and ctx.now - min(waiting.values()) >= 2 * self.HEARTBEAT_MS:
                    waiting.clear()                        # lost (or very late): resend from what
                    self.next_index[peer] = self.match_index[peer] + 1   # the follower surely has
                if waiting:
                    self._send_append(ctx, peer, heartbeat_only=True)   # entries are on their way
                elif self.next_index[peer] <= self.last_index:
                    self._replicate(ctx, peer)
                else:
                    self._send_append(ctx, peer)           # an empty AppendEntries: "still here"
            ctx.set_timer("heartbeat", after=self.HEARTBEAT_MS)

    # ---- §9.6 PreVote ----------------------------------------------------------------------
    def _start_prevote(self, ctx: Context) -> None:
        """Ask whether a majority would vote for us in the next term; the term stays as it is
        (nothing is persisted). The election timer runs on: no majority, ask again later."""
        self.leader = None
        self.prevotes = {ctx.id}
        self._reset_election_timer(ctx)
        ctx.broadcast("pre_vote", term=self.term + 1, last_log_index=self.last_index,
                      last_log_term=self.term_at(self.last_index))
        if len(self.prevotes) >= self.majority(ctx):       # a cluster of one
            self._start_election(ctx)

    def _on_pre_vote(self, ctx: Context, msg: Message) -> None:
        """Yes only for a term above ours, from a log at least as up to date as ours (§5.4.1),
        and if no leader has spoken to us for the minimum election timeout (a leader we hear
        is alive: no reason to replace it). Changes nothing here: no term, no vote."""
        b = msg.body
        recent = self.role == "leader" or ctx.now - self.heard_leader_at < self.ELECTION_TIMEOUT[0]
        mine = (self.term_at(self.last_index), self.last_index)
        granted = b["term"] > self.term and not recent and (b["last_log_term"], b["last_log_index"]) >= mine
        ctx.reply(msg, "pre_vote_ok", term=self.term, granted=granted)

    def _on_pre_vote_ok(self, ctx: Context, msg: Message) -> None:
        if self.prevotes is None or self.role == "leader" or msg["term"] > self.term or not msg["granted"]:
            return
        self.prevotes.add(msg.src)
        if len(self.prevotes) >= self.majority(ctx):
            self._start_election(ctx)

    # ---- §5.2 leader election ---------------------------------------------------------------
    def _start_election(self, ctx: Context) -> None:
        self.prevotes = None
        self._become(ctx, "candidate", self.term + 1, ctx.id)   # vote for self, durably, then ask
        self.leader = None
        self.votes = {ctx.id}
        self._reset_election_timer(ctx)
        ctx.broadcast("request_vote", term=self.term, last_log_index=self.last_index,
                      last_log_term=self.term_at(self.last_index))
        if len(self.votes) >= self.majority(ctx):          # a cluster of one
            self._become_leader(ctx)

    def may_grant_vote(self, candidate: str, last_log_index: int, last_log_term: int) -> bool:
        """§5.2: one vote per term; §5.4.1: only to a candidate whose log is at least as up
        to date as ours (higher last term, or the same last term and at least as long)."""
        mine = self.term_at(self.last_index)
        up_to_date = (last_log_term, last_log_index) >= (mine, self.last_index)
        return self.voted_for in (None, candidate) and up_to_date

    def _on_request_vote(self, ctx: Context, msg: Message) -> None:
        b = msg.body
        granted = b["term"] == self.term and self.may_grant_vote(msg.src, b["last_log_index"], b["last_log_term"])
        if granted:
            self._become(ctx, self.role, self.term, msg.src)   # durable before the reply says so
            self._reset_election_timer(ctx)
        ctx.reply(msg, "request_vote_ok", term=self.term, granted=granted)

    def _on_request_vote_ok(self, ctx: Context, msg: Message) -> None:
        if self.role != "candidate" or msg["term"] != self.term or not msg["granted"]:
            return
        self.votes.add(msg.src)
        if len(self.votes) >= self.majority(ctx):
            self._become_leader(ctx)

    def _become_leader(self, ctx: Context) -> None:
        assert self.role == "candidate" and len(self.votes) >= self.majority(ctx)
        self.leader = ctx.id
        self._become(ctx, "leader", self.term, self.voted_for)
        ctx.cancel_timer("election")
        self.next_index = {p: self.last_index + 1 for p in ctx.peers}
        self.match_index = {p: 0 for p in ctx.peers}
        self.inflight = {p: {} for p in ctx.peers}
        if self.NOOP_ON_ELECTION:
            self._write_log(ctx, self.last_index + 1, [[self.term, None]])
        self.on_timer(ctx, "heartbeat")                    # announce the term at once
        self._advance_commit(ctx)                          # a cluster of one commits alone

    # ---- §5.3 log replication: the leader's side -------------------------------------------
    def propose(self, ctx: Context, *commands: Any) -> int | None:
        """Append ``commands`` now (durably) if this node leads and start replicating them;
        returns the last one's index (None if not leader)."""
        if self.role != "leader":
            return None
        self._write_log(ctx, self.last_index + 1, [[self.term, c] for c in commands])
        for peer in ctx.peers:
            self._replicate(ctx, peer)
        self._advance_commit(ctx)
        return self.last_index

    def enqueue(self, ctx: Context, command: Any, answer: Callable[[Any], None],
                refuse: Callable[[], None]) -> None:
        """Group commit: queue ``command`` for the batch proposed at the end of this round;
        ``answer(result)`` is called when it is applied. If leadership is lost before then,
        ``refuse()`` tells the asker it was not appended -- unless a copy of it may be (see
        ``_unqueue``)."""
        self._wait_for(command, answer)
        self.queued.append((command, answer, refuse))
        if len(self.queued) == 1:
            ctx.set_timer("group_commit", after=0)

    def _group_commit(self, ctx: Context) -> None:
        if self.role == "leader":
            # Flow control (etcd's MaxUncommittedEntriesSize): a leader far ahead of its
            # commit index takes no more for now; _commit calls again as entries commit.
            room = self.MAX_UNCOMMITTED - (self.last_index - self.commit_index)
            if room > 0:
                queued = self.queued
                self.propose(ctx, *(queued.popleft()[0] for _ in range(min(room, len(queued)))))
            return
        queued, self.queued = self.queued, deque()
        in_log = self._uncommitted_requests()
        for command, answer, refuse in queued:             # this copy was never appended
            self._unqueue(ctx, command, answer, refuse, in_log)

    def _uncommitted_requests(self) -> set[tuple]:
        """(client, seq) of the client commands in our log past the commit index."""
        return {_request_key(c) for _, c in self.log[self.commit_index:] if _is_request(c)}

    def _unqueue(self, ctx: Context, command: Any, answer: Callable[[Any], None], refuse: Callable[[], None],
                 in_log: set[tuple]) -> None:
        """A request that was never appended here: say so (``refuse``) only if that is the
        whole truth -- it was not executed, no copy waits in our log, no forward of it timed
        out. Otherwise answer it from its session, or keep it waiting for its copy."""
        if not _is_request(command):
            refuse()
            return
        key = _request_key(command)
        known = self._session_result(command)
        if known is not _UNKNOWN:
            self._unwait(key, answer)
            answer(known)                                  # executed (or expired) already
        elif key not in in_log and key not in self.uncertain:
            self._unwait(key, answer)
            refuse()
        # else: a copy may commit; answer() runs when it is applied (or the client times out)

    def _replicate(self, ctx: Context, peer: str) -> None:
        """Send ``peer`` what it lacks, up to ``MAX_INFLIGHT`` AppendEntries at once: while a
        batch is on its way the next one goes out after it (pipelining, as etcd does), and
        what piles up in between goes in one batch."""
        while len(self.inflight[peer]) < self.MAX_INFLIGHT and self.next_index[peer] <= self.last_index:
            self._send_append(ctx, peer)

    def _send_append(self, ctx: Context, peer: str, heartbeat_only: bool = False) -> None:
        """AppendEntries from ``next_index``, which then moves past the entries sent (it is
        optimistic: a rejection moves it back). ``heartbeat_only`` sends no entries, from the
        follower's known match (so it cannot fail), and is not awaited."""
        prev = self.match_index[peer] if heartbeat_only else self.next_index[peer] - 1
        entries = [] if heartbeat_only else self.log[prev:prev + self.MAX_BATCH]
        mid = ctx.send(peer, "append_entries", term=self.term, prev_index=prev, prev_term=self.term_at(prev),
                       entries=entries, commit=self.commit_index)
        if not heartbeat_only:
            self.inflight[peer][mid] = ctx.now
            self.next_index[peer] = prev + len(entries) + 1

    def _on_append_entries_ok(self, ctx: Context, msg: Message) -> None:
        b, peer = msg.body, msg.src
        if self.role != "leader" or b["term"] != self.term:
            return
        awaited = self.inflight[peer].pop(msg.in_reply_to, None) is not None
        if b["success"]:
            self.match_index[peer] = max(self.match_index[peer], b["match_index"])
            self.next_index[peer] = max(self.next_index[peer], self.match_index[peer] + 1)
            self._advance_commit(ctx)
        elif awaited:                                      # the pipeline ran ahead of a mismatch:
            self.inflight[peer].clear()                    # drop it, back up, start again there
            self.next_index[peer] = self._backup(b["conflict_index"], b["conflict_term"], peer, b["prev_index"])
        self._replicate(ctx, peer)                         # (a stale rejection says nothing new)

    def _backup(self, conflict_index: int, conflict_term: int | None, peer: str, prev: int) -> int:
        """Fast backup: skip past the follower's whole conflicting term, or to its log's end."""
        nxt = conflict_index
        if conflict_term is not None:
            i = self.last_index                            # terms only grow along a log
            while i > 0 and self.term_at(i) > conflict_term:
                i -= 1
            if i > 0 and self.term_at(i) == conflict_term:
                nxt = i + 1                                # just past our last entry of that term
        return max(self.match_index[peer] + 1, min(nxt, prev))

    def commit_counts(self, index: int) -> bool:
        """§5.4.2: a leader counts replicas only for entries of its own term."""
        return self.term_at(index) == self.term

    def _advance_commit(self, ctx: Context) -> None:
        matches = sorted([self.last_index, *self.match_index.values()], reverse=True)
        n = matches[self.majority(ctx) - 1]                # the highest index on a majority
        if n > self.commit_index and self.commit_counts(n):
            self._commit(ctx, n)

    # ---- §5.3 log replication: the follower's side ------------------------------------------
    def _on_append_entries(self, ctx: Context, msg: Message) -> None:
        b = msg.body
        if b["term"] < self.term:                           # a stale leader: tell it the term
            ctx.reply(msg, "append_entries_ok", term=self.term, success=False, prev_index=b["prev_index"],
                      conflict_index=0, conflict_term=None)
            return
        assert self.role != "leader", f"{ctx.id}: two leaders in term {self.term}"
        self.leader, self.heard_leader_at, self.prevotes = msg.src, ctx.now, None
        self._become(ctx, "follower", self.term, self.voted_for)   # a candidate yields to the leader
        self._reset_election_timer(ctx)
        prev, prev_term, entries = b["prev_index"], b["prev_term"], b["entries"]
        if prev > self.last_index or self.term_at(prev) != prev_term:
            if prev > self.last_index:                     # too short: resume at our end
                ci, ct = self.last_index + 1, None
            else:                                          # conflict: skip its whole term
                ct = self.term_at(prev)
                ci = prev
                while ci > 1 and self.term_at(ci - 1) == ct:
                    ci -= 1
            ctx.reply(msg, "append_entries_ok", term=self.term, success=False, prev_index=prev,
                      conflict_index=ci, conflict_term=ct)
            return
        for k, entry in enumerate(entries):                # Log Matching: keep what agrees,
            index = prev + 1 + k                           # cut at the first conflict
            if self.term_at(index) != entry[0]:            # (0 past the end of the log)
                self._write_log(ctx, index, entries[k:])   # durable before the reply
                break
        match = prev + len(entries)
        if b["commit"] > self.commit_index:
            self._commit(ctx, min(b["commit"], match))
        ctx.reply(msg, "append_entries_ok", term=self.term, success=True, match_index=match)

    # ---- committing and applying ------------------------------------------------------------
    def _commit(self, ctx: Context, index: int) -> None:
        if index <= self.commit_index:
            return
        assert index <= self.last_index, f"{ctx.id}: commit {index} beyond the log ({self.last_index})"
        self.commit_index = index
        ctx.note("commit", index=index)
        self._report(ctx)
        first = self.last_applied + 1
        skipped: list[int] = []
        while self.last_applied < self.commit_index:
            self.last_applied += 1
            term, command = self.log[self.last_applied - 1]
            result, executed = self._apply_entry(ctx, command)
            if not executed and command is not None:
                skipped.append(self.last_applied)
            self.on_applied(ctx, self.last_applied, command, result)
        # entries first..last, in order; the state machine did not execute the skipped ones
        ctx.note("apply", index=first, last=self.last_applied, skipped=skipped)
        if self.queued and self.role == "leader":
            ctx.set_timer("group_commit", after=0)          # flow control: room again

    def _apply_entry(self, ctx: Context, command: Any) -> tuple[Any, bool]:
        """Apply one committed entry: ``(result, executed)``. §6.3: a client request runs
        once -- a copy gets the result of the first, a request below its session's floor
        without a result gets ``Expired`` (see the module docstring)."""
        if command is None:                                # a leader's no-op
            return None, False
        if type(command) is not dict or "seq" not in command or "client" not in command:
            return self.apply(ctx, command), True
        client, seq = command["client"], command["seq"]    # (the hot path: Session's rules, inlined)
        session = self.sessions.get(client)
        if session is None:
            session = self.sessions[client] = Session(client)
        low = command.get("lowest_awaited")
        if low is not None and low > session.floor:
            session.release_below(low)
        results = session.results
        if seq in results:
            return results[seq], False                     # a copy: the first one's result
        if seq < session.floor:
            return Expired(client, seq, session.floor), False
        result = results[seq] = self.apply(ctx, command)
        if len(results) > 2 * self.SESSION_LIMIT:
            session.trim(self.SESSION_LIMIT)
        return result, True

    def _session_result(self, command: dict) -> Any:
        """What the session says of a request now: its result, ``Expired``, or ``_UNKNOWN``."""
        session = self.sessions.get(command["client"])
        return _UNKNOWN if session is None else session.lookup(command["seq"])

    def on_applied(self, ctx: Context, index: int, command: Any, result: Any) -> None:
        """Answer whoever waits for this command (a client here, or a forwarding node)."""
        if type(command) is dict and "seq" in command and "client" in command:
            key = (command["client"], command["seq"])
            if self.uncertain:
                self.uncertain.pop(key, None)
            answers = self.waiting.pop(key, None)
            if answers:
                for answer in answers:
                    answer(result)

    # ---- §8 client interaction ------------------------------------------------------------
    @staticmethod
    def session_of(msg: Message) -> dict:
        """The session fields of a request: ``client`` and ``seq`` (explicit fields, else the
        client's id and the number that ends its message id -- labkit numbers client
        messages in order), and ``lowest_awaited`` if the request carries it (§6.3).

        Raises ``ValueError`` (the caller answers error 12) for a ``seq`` that is not an int
        >= 0, a ``client`` that is not a non-empty string, or a ``lowest_awaited`` that is
        not an int <= ``seq``."""
        b = msg.body
        client = b.get("client", msg.src)
        seq = b.get("seq")
        if seq is None:
            tail = msg.id.rsplit(".", 1)[-1]
            if not tail.isdigit():
                raise ValueError(f"request {msg.id!r} has no seq: send seq=<int>, numbering the client's requests")
            seq = int(tail)
        if not isinstance(client, str) or not client:
            raise ValueError(f"client must be a non-empty string, got {client!r}")
        if type(seq) is not int or seq < 0:
            raise ValueError(f"seq must be an int >= 0 numbering the client's requests, got {seq!r}")
        out = {"client": client, "seq": seq}
        low = b.get("lowest_awaited")
        if low is not None:
            if type(low) is not int or not 0 <= low <= seq:
                raise ValueError(f"lowest_awaited is the lowest seq the client still awaits: an int between 0 "
                                 f"and this request's seq {seq}, got {low!r}")
            out["lowest_awaited"] = low
        return out

    def _wait_for(self, command: dict, answer: Callable[[Any], None]) -> None:
        self.waiting.setdefault(_request_key(command), []).append(answer)

    def _unwait(self, key: tuple, answer: Callable[[Any], None]) -> None:
        answers = self.waiting.get(key, [])
        if answer in answers:
            answers.remove(answer)
        if not answers:
            self.waiting.pop(key, None)

    def _on_forward(self, ctx: Context, msg: Message) -> None:
        command = msg["command"]
        if self.role != "leader":
            ctx.reply(msg, "not_leader", leader=self.leader)
            return

        def answer(result: Any) -> None:
            if isinstance(result, Expired):
                ctx.reply(msg, "forward_expired", text=result.text)
            else:
                ctx.reply(msg, "forward_ok", result=result)
        self.enqueue(ctx, command, answer, lambda: ctx.reply(msg, "not_leader", leader=self.leader))

    def submit(self, ctx: Context, msg: Message, command: dict) -> Any:
        """Get ``command`` committed and answer ``msg`` with its result. The leader appends
        it (with whatever else arrived in the same round); anyone else forwards it to the
        leader, retrying until ``CLIENT_PATIENCE_MS`` (a coroutine, returned to the runtime).
        Without an answer by then the client gets none (it may yet happen), except error
        11 when the command certainly was not appended."""
        if self.role == "leader":                          # the common case: no coroutine
            self._lead(ctx, msg, command)
            return None
        return self._forward(ctx, msg, command)

    def _lead(self, ctx: Context, msg: Message, command: dict) -> None:
        self.enqueue(ctx, command, lambda result: self._answer(ctx, msg, result),
                     lambda: ctx.reply(msg, "error", code=11, text="lost leadership before appending"))

    def _answer(self, ctx: Context, msg: Message, result: Any) -> None:
        if isinstance(result, Expired):                    # indefinite: an older copy may have run
            ctx.reply(msg, "error", code=13, text=result.text)
        else:
            self.client_reply(ctx, msg, result)

    async def _forward(self, ctx: Context, msg: Message, command: dict) -> None:
        deadline = ctx.now + self.CLIENT_PATIENCE_MS
        maybe_appended = False
        while ctx.now < deadline:
            if self.role == "leader":
                self._lead(ctx, msg, command)
                return
            leader = self.leader
            if leader is None or leader == ctx.id:
                await ctx.sleep(self.RETRY_MS)
                continue
            try:
                reply = await ctx.rpc(leader, "forward", timeout=min(self.FORWARD_TIMEOUT_MS,
                                      max(1.0, deadline - ctx.now)), command=command)
            except RpcTimeout:
                maybe_appended = True                      # the leader may have appended it
                self.uncertain[_request_key(command)] = ctx.now
                continue
            if reply.type == "forward_ok":
                self.client_reply(ctx, msg, reply["result"])
                return
            if reply.type == "forward_expired":
                ctx.reply(msg, "error", code=13, text=reply["text"])
                return
            if reply.get("leader") in (None, leader, ctx.id):   # "not_leader": it has no idea
                await ctx.sleep(self.RETRY_MS)
            elif self.leader == leader:
                self.leader = reply["leader"]              # a hint: try the leader it knows
        self._forget_uncertain(ctx)
        if maybe_appended:
            return                                         # it may yet happen: no answer
        known = self._session_result(command)
        if known is not _UNKNOWN:                          # a copy got through after all
            self._answer(ctx, msg, known)
        elif _request_key(command) not in self._uncommitted_requests() | set(self.uncertain):
            ctx.reply(msg, "error", code=11, text="no leader could be reached")

    def _forget_uncertain(self, ctx: Context) -> None:
        """Forget timed-out forwards older than twice the patience: no one awaits them now."""
        old = ctx.now - 2 * self.CLIENT_PATIENCE_MS
        for key in [k for k, t in self.uncertain.items() if t < old]:
            del self.uncertain[key]


# ---- §6.3 client sessions ----------------------------------------------------------------------
_UNKNOWN = object()                                        # "not executed": run it


class Expired:
    """The result of a request below its session's floor that has no result: not executed
    now, and an older copy may or may not have been (an indefinite error, code 13)."""

    def __init__(self, client: Any, seq: int, floor: int) -> None:
        self.text = (f"request {seq} of client {client!r} is older than its session keeps (it keeps seq >= "
                     f"{floor}): not executed now; an earlier copy may have been")

    def __repr__(self) -> str:
        return f"Expired({self.text!r})"


class Session:
    """One client's session (§6.3): the results of the requests it executed at or above
    ``floor``; every seq below ``floor`` is settled (executed before, or never will be)."""

    __slots__ = ("client", "floor", "results")

    def __init__(self, client: Any = None) -> None:
        self.client, self.floor, self.results = client, 0, {}

    def lookup(self, seq: int) -> Any:
        """The result of request ``seq``; ``Expired`` below the floor; else ``_UNKNOWN``."""
        if seq in self.results:
            return self.results[seq]
        return Expired(self.client, seq, self.floor) if seq < self.floor else _UNKNOWN

    def release_below(self, lowest_awaited: int | None) -> None:
        """The client awaits nothing below ``lowest_awaited``: forget those results."""
        if lowest_awaited is not None and lowest_awaited > self.floor:
            self.floor = lowest_awaited
            self.results = {s: r for s, r in self.results.items() if s >= lowest_awaited}

    def trim(self, limit: int) -> None:
        """Keep the ``limit`` newest results; the floor rises to the oldest kept."""
        keep = sorted(self.results)[-limit:]
        self.floor = keep[0]
        self.results = {s: self.results[s] for s in keep}


def _is_request(command: Any) -> bool:
    return isinstance(command, dict) and "client" in command and "seq" in command


def _request_key(command: dict) -> tuple:
    return (command["client"], command["seq"])


def _store_key(key: Any) -> Any:
    """A dict key for a JSON key: str and int as they are (0 and "0" stay apart), anything
    else (lists, floats, bools) by its canonical JSON text, tagged so it meets no str key."""
    if type(key) is str or type(key) is int:
        return key
    return ("json", json.dumps(key, sort_keys=True))


class RaftKV(Raft):
    """Raft replicating a key-value store; speaks Maelstrom's lin-kv (read, write, cas,
    append), so ``labkit.workload`` and ``check_linearizable(model="kv")`` work unchanged."""

    OPS = ("read", "write", "cas", "append")

    def on_start(self, ctx: Context) -> None:
        self.store: dict[str, Any] = {}                    # rebuilt by replaying the log
        super().on_start(ctx)

    def on_client(self, ctx: Context, msg: Message) -> Any:
        if msg.type not in self.OPS or "key" not in msg.body:
            ctx.reply(msg, "error", code=10, text=f"unsupported request {msg.type!r}")
            return None
        try:
            session = self.session_of(msg)
        except ValueError as e:
            ctx.reply(msg, "error", code=12, text=str(e))
            return None
        command = {"op": msg.type, **{k: msg.body[k] for k in ("key", "value", "from", "to") if k in msg.body},
                   **session}
        return self.submit(ctx, msg, command)

    def apply(self, ctx: Context, command: Any) -> dict:
        op, key = command["op"], _store_key(command["key"])
        store = self.store
        if op == "read":
            if key not in store:
                return {"type": "error", "code": 20, "text": "key does not exist"}
            return {"type": "read_ok", "value": store[key]}
        if op == "write":
            store[key] = command["value"]
            return {"type": "write_ok"}
        if op == "cas":
            if key not in store:
                return {"type": "error", "code": 20, "text": "key does not exist"}
            if store[key] != command["from"]:
                return {"type": "error", "code": 22, "text": f"expected {command['from']!r}, had {store[key]!r}"}
            store[key] = command["to"]
            return {"type": "cas_ok"}
        value, old = command["value"], store.get(key)
        if isinstance(value, str):
            store[key] = (old or "") + value
        else:
            store[key] = [*(old or []), value]
        return {"type": "append_ok"}

    def client_reply(self, ctx: Context, msg: Message, result: Any) -> None:
        body = {k: v for k, v in result.items() if k != "type"}
        ctx.reply(msg, result["type"], **body)
