#!/usr/bin/env node
// Maelstrom's lin-kv workload served by Raft (Ongaro & Ousterhout, 2014), in plain JavaScript
// (node.js, no packages): leader election (5.2), log replication (5.3), the election
// restriction (5.4.1) and commitment of entries of the leader's own term only (5.4.2). Reads
// go through the log, so every operation is linearizable. A follower forwards a client's
// request to the leader it knows and relays the answer; with no leader it answers error 11
// (temporarily unavailable: definitely not done). State is in memory only (a Maelstrom node
// has no disk): safe under partitions, not under crash-restart.
// With --stale-reads, a follower answers reads from its own state machine: a classic broken
// "optimisation" -- it may lag the leader, so reads go stale and lin-kv is not linearizable.
"use strict";
const readline = require("readline");

const ELECTION_MS = [600, 1200];
const HEARTBEAT_MS = 100;
const RPC_TIMEOUT_MS = 1000;
const STALE_READS = process.argv.slice(2).includes("--stale-reads");

let nodeId = null;
let nodeIds = [];
let nextMsgId = 0;
const pending = new Map(); // msg_id -> resolve(reply body)

let term = 0;
let votedFor = null;
let role = "follower";
let leader = null;
const log = [{ term: 0, op: null }]; // log[0] is a sentinel; entries from index 1
let commitIndex = 0;
let lastApplied = 0;
let votes = new Set();
let nextIndex = {};
let matchIndex = {};
let electionDeadline = 0;
const waiting = new Map(); // log index -> {term, answer(body)}
const kv = new Map();      // JSON key -> value

function send(dest, body) {
  process.stdout.write(JSON.stringify({ src: nodeId, dest, body }) + "\n");
}

function reply(req, body) {
  body.msg_id = ++nextMsgId;
  body.in_reply_to = req.body.msg_id;
  send(req.src, body);
}

function rpc(dest, body, timeoutMs) {
  return new Promise((resolve) => {
    const id = ++nextMsgId;
    const timer = setTimeout(() => {
      pending.delete(id);
      resolve({ type: "error", code: 0, text: `no answer from ${dest}` });
    }, timeoutMs);
    pending.set(id, (b) => { clearTimeout(timer); resolve(b); });
    send(dest, Object.assign({}, body, { msg_id: id }));
  });
}

const others = () => nodeIds.filter((n) => n !== nodeId);
const majority = () => Math.floor(nodeIds.length / 2) + 1;
const lastIndex = () => log.length - 1;

function resetElectionTimer() {
  electionDeadline = Date.now() + ELECTION_MS[0] + Math.random() * (ELECTION_MS[1] - ELECTION_MS[0]);
}

function stepDown(newTerm) {
  if (newTerm > term) { term = newTerm; votedFor = null; }
  if (role !== "follower") {
    role = "follower";
    for (const w of waiting.values()) w.answer({ type: "error", code: 0, text: "lost leadership" });
    waiting.clear();
  }
}

// -- elections (5.2, 5.4.1) ------------------------------------------------------------------
function startElection() {
  role = "candidate";
  term += 1;
  votedFor = nodeId;
  leader = null;
  votes = new Set([nodeId]);
  resetElectionTimer();
  const myTerm = term;
  for (const peer of others()) {
    rpc(peer, { type: "request_vote", term: myTerm, candidate: nodeId, last_log_index: lastIndex(),
                last_log_term: log[lastIndex()].term }, HEARTBEAT_MS * 5).then((r) => {
      if (r.type !== "request_vote_ok") return;
      if (r.term > term) { stepDown(r.term); return; }
      if (role === "candidate" && term === myTerm && r.vote_granted) {
        votes.add(peer);
        if (votes.size >= majority()) becomeLeader();
      }
    });
  }
  if (votes.size >= majority()) becomeLeader();
}

function becomeLeader() {
  role = "leader";
  leader = nodeId;
  nextIndex = {};
  matchIndex = {};
  for (const p of others()) { nextIndex[p] = lastIndex() + 1; matchIndex[p] = 0; }
  log.push({ term, op: null }); // a no-op of this term, so earlier entries can commit (8)
  broadcastAppend();
}

function onRequestVote(msg) {
  const b = msg.body;
  if (b.term > term) stepDown(b.term);
  const upToDate = b.last_log_term > log[lastIndex()].term ||
    (b.last_log_term === log[lastIndex()].term && b.last_log_index >= lastIndex());
  const grant = b.term === term && (votedFor === null || votedFor === b.candidate) && upToDate;
  if (grant) { votedFor = b.candidate; resetElectionTimer(); }
  reply(msg, { type: "request_vote_ok", term, vote_granted: grant });
}

// -- replication (5.3) ------------------------------------------------------------------------
function broadcastAppend() {
  for (const peer of others()) replicate(peer);
}

function replicate(peer) {
  const myTerm = term;
  const prev = nextIndex[peer] - 1;
  const entries = log.slice(prev + 1, prev + 1 + 100);
  rpc(peer, { type: "append_entries", term: myTerm, leader: nodeId, prev_log_index: prev,
              prev_log_term: log[prev].term, entries, leader_commit: commitIndex }, HEARTBEAT_MS * 5).then((r) => {
    if (r.type !== "append_entries_ok") return;
    if (r.term > term) { stepDown(r.term); return; }
    if (role !== "leader" || term !== myTerm) return;
    if (r.success) {
      matchIndex[peer] = Math.max(matchIndex[peer], prev + entries.length);
      nextIndex[peer] = matchIndex[peer] + 1;
      advanceCommit();
    } else {
      nextIndex[peer] = Math.max(1, Math.min(nextIndex[peer] - 1, r.last_index + 1));
    }
  });
}

function onAppendEntries(msg) {
  const b = msg.body;
  if (b.term > term || (b.term === term && role !== "follower")) stepDown(b.term);
  if (b.term < term) {
    reply(msg, { type: "append_entries_ok", term, success: false, last_index: lastIndex() });
    return;
  }
  leader = b.leader;
  resetElectionTimer();
  if (b.prev_log_index > lastIndex() || log[b.prev_log_index].term !== b.prev_log_term) {
    reply(msg, { type: "append_entries_ok", term, success: false,
                 last_index: Math.min(lastIndex(), b.prev_log_index - 1) });
    return;
  }
  let i = b.prev_log_index + 1;
  for (const e of b.entries) {
    if (i <= lastIndex() && log[i].term !== e.term) log.length = i; // conflict: cut the rest
    if (i > lastIndex()) log.push(e);
    i += 1;
  }
  if (b.leader_commit > commitIndex) {
    commitIndex = Math.min(b.leader_commit, b.prev_log_index + b.entries.length);
    applyCommitted();
  }
  reply(msg, { type: "append_entries_ok", term, success: true });
}

function advanceCommit() {
  for (let n = lastIndex(); n > commitIndex; n--) {
    if (log[n].term !== term) break; // only entries of the current term count (5.4.2)
    const count = 1 + others().filter((p) => matchIndex[p] >= n).length;
    if (count >= majority()) { commitIndex = n; applyCommitted(); break; }
  }
}

// -- the state machine ------------------------------------------------------------------------
function applyOp(op) {
  const k = JSON.stringify(op.key);
  if (op.type === "read") {
    return kv.has(k) ? { type: "read_ok", value: kv.get(k) } : { type: "error", code: 20, text: "no such key" };
  }
  if (op.type === "write") { kv.set(k, op.value); return { type: "write_ok" }; }
  if (!kv.has(k)) return { type: "error", code: 20, text: "no such key" };
  if (JSON.stringify(kv.get(k)) !== JSON.stringify(op.from)) {
    return { type: "error", code: 22, text: `expected ${JSON.stringify(op.from)}` };
  }
  kv.set(k, op.to);
  return { type: "cas_ok" };
}

function applyCommitted() {
  while (lastApplied < commitIndex) {
    lastApplied += 1;
    const e = log[lastApplied];
    const result = e.op === null ? null : applyOp(e.op);
    const w = waiting.get(lastApplied);
    if (w) {
      waiting.delete(lastApplied);
      w.answer(w.term === e.term ? result : { type: "error", code: 0, text: "entry replaced" });
    }
  }
}

// -- clients (8) --------------------------------------------------------------------------------
function clientOp(body) {
  const op = { type: body.type, key: body.key };
  for (const f of ["value", "from", "to"]) if (f in body) op[f] = body[f];
  return op;
}

async function onClient(msg, answer) {
  if (role === "leader") {
    log.push({ term, op: clientOp(msg.body) });
    waiting.set(lastIndex(), { term, answer });
    broadcastAppend();
    if (others().length === 0) { commitIndex = lastIndex(); applyCommitted(); }
    return;
  }
  if (STALE_READS && msg.body.type === "read") {
    answer(applyOp(clientOp(msg.body)));
    return;
  }
  if (leader === null || leader === nodeId) {
    answer({ type: "error", code: 11, text: "no leader known" });
    return;
  }
  const fwd = Object.assign({}, msg.body, { type: "forward", op_type: msg.body.type });
  delete fwd.msg_id;
  const r = await rpc(leader, fwd, RPC_TIMEOUT_MS);
  const out = Object.assign({}, r);
  delete out.msg_id;
  delete out.in_reply_to;
  answer(out);
}

function answerTo(msg) {
  return (body) => reply(msg, Object.assign({}, body));
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  const body = msg.body;
  if (body.in_reply_to !== undefined) {
    const resolve = pending.get(body.in_reply_to);
    if (resolve) { pending.delete(body.in_reply_to); resolve(body); }
    return;
  }
  switch (body.type) {
    case "init":
      nodeId = body.node_id;
      nodeIds = body.node_ids;
      resetElectionTimer();
      setInterval(() => {
        if (role === "leader") broadcastAppend();
        else if (Date.now() >= electionDeadline) startElection();
      }, HEARTBEAT_MS);
      reply(msg, { type: "init_ok" });
      break;
    case "request_vote": onRequestVote(msg); break;
    case "append_entries": onAppendEntries(msg); break;
    case "read": case "write": case "cas":
      onClient(msg, answerTo(msg));
      break;
    case "forward": {
      const inner = { src: msg.src, body: Object.assign({}, body, { type: body.op_type }) };
      if (role !== "leader") { reply(msg, { type: "error", code: 11, text: "not the leader" }); break; }
      onClient(inner, answerTo(msg));
      break;
    }
    default:
      reply(msg, { type: "error", code: 10, text: `unsupported type ${body.type}` });
  }
});
rl.on("close", () => process.exit(0));
