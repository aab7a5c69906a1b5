#!/usr/bin/env node
// A transaction store for Maelstrom's txn-list-append and txn-rw-register workloads in plain
// JavaScript (node.js, no packages). The whole database is one key of the lin-kv service:
// each txn reads it, runs on a copy, and cas-es it back, retrying on a lost race --
// serializable (strict, since it answers after its cas). With --no-isolation each micro-op
// is its own lin-kv read (a write: read then write): no isolation.
"use strict";
const readline = require("readline");

const NO_ISOLATION = process.argv.slice(2).includes("--no-isolation");
const ROOT = "db";
let nodeId = null;
let nextId = 0;
const pending = new Map(); // msg_id -> resolve

function send(dest, body) {
  process.stdout.write(JSON.stringify({ src: nodeId, dest, body }) + "\n");
}

function reply(req, body) {
  body.msg_id = ++nextId;
  body.in_reply_to = req.body.msg_id;
  send(req.src, body);
}

// An RPC: resolves with the reply body (an error body too), or {type: "error", code: 0} after 1 s.
function rpc(dest, body) {
  return new Promise((resolve) => {
    const id = ++nextId;
    const timer = setTimeout(() => {
      pending.delete(id);
      resolve({ type: "error", code: 0, text: "timeout" });
    }, 1000);
    pending.set(id, (b) => { clearTimeout(timer); resolve(b); });
    send(dest, Object.assign({}, body, { msg_id: id }));
  });
}

class Fail extends Error {
  constructor(code, text) { super(text); this.code = code; }
}

async function read(key) {
  const r = await rpc("lin-kv", { type: "read", key });
  if (r.type === "read_ok") return [r.value, true];
  if (r.code === 20) return [null, false];
  throw new Fail(r.code, `lin-kv read: ${r.text}`);
}

function apply(db, txn) {
  return txn.map(([f, k, v]) => {
    const sk = JSON.stringify(k);
    if (f === "r") return [f, k, db[sk] === undefined ? null : db[sk]];
    db[sk] = f === "append" ? (db[sk] || []).concat([v]) : v;
    return [f, k, v];
  });
}

async function runTxn(txn) {
  if (NO_ISOLATION) {
    const out = [];
    for (const [f, k, v] of txn) {
      const [cur] = await read(JSON.stringify(k));
      if (f === "r") { out.push([f, k, cur]); continue; }
      const value = f === "append" ? (cur || []).concat([v]) : v;
      const w = await rpc("lin-kv", { type: "write", key: JSON.stringify(k), value });
      if (w.type !== "write_ok") throw new Fail(w.code, `lin-kv write: ${w.text}`);
      out.push([f, k, v]);
    }
    return out;
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const [old, exists] = await read(ROOT);
    const db = Object.assign({}, old || {});
    const out = apply(db, txn);
    const c = await rpc("lin-kv", { type: "cas", key: ROOT, from: old, to: db, create_if_not_exists: !exists });
    if (c.type === "cas_ok") return out;
    if (c.code !== 20 && c.code !== 22) throw new Fail(c.code, `lin-kv cas: ${c.text}`);
  }
  throw new Fail(30, "gave up after 100 conflicting attempts");
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
      reply(msg, { type: "init_ok" });
      break;
    case "txn":
      runTxn(body.txn).then(
        (txn) => reply(msg, { type: "txn_ok", txn }),
        (e) => reply(msg, { type: "error", code: e.code === undefined ? 13 : e.code, text: String(e.message) }));
      break;
    default:
      reply(msg, { type: "error", code: 10, text: `unsupported type ${body.type}` });
  }
});
rl.on("close", () => process.exit(0));
