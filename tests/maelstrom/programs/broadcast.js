#!/usr/bin/env node
// Maelstrom's broadcast workload: acknowledged, batched gossip along the given topology
// (the same algorithm as broadcast.py). Argument: [interval_ms] (default 200; 0: at once).
"use strict";
const { Node } = require("./lib.js");

const INTERVAL = process.argv.length > 2 ? Number(process.argv[2]) : 200;
const RETRY = 1000;
const node = new Node();
const values = new Set();
let neighbours = [];
const pending = new Map();   // neighbour -> Map(value -> last sent ms, or null)

function learn(newValues, source) {
  const fresh = newValues.filter((v) => !values.has(v));
  for (const v of fresh) values.add(v);
  if (!fresh.length) return;
  for (const n of neighbours) {
    if (n === source) continue;
    const p = pending.get(n);
    for (const v of fresh) p.set(v, INTERVAL ? null : Date.now());
    if (!INTERVAL) node.send(n, { type: "gossip", messages: fresh });
  }
}

function tick() {
  const t = Date.now();
  for (const [n, p] of pending) {
    const due = [...p].filter(([, sent]) => sent === null || sent <= t - RETRY).map(([v]) => v);
    if (due.length) {
      node.send(n, { type: "gossip", messages: due.sort((a, b) => a - b) });
      for (const v of due) p.set(v, t);
    }
  }
}

node.onInit(() => node.every(INTERVAL || RETRY, tick));
node.on("topology", (msg) => {
  neighbours = msg.body.topology[node.nodeId] || [];
  for (const n of neighbours) if (!pending.has(n)) pending.set(n, new Map());
  node.reply(msg, { type: "topology_ok" });
});
node.on("broadcast", (msg) => {
  learn([msg.body.message], null);
  node.reply(msg, { type: "broadcast_ok" });
});
node.on("read", (msg) => {
  node.reply(msg, { type: "read_ok", messages: [...values].sort((a, b) => a - b) });
});
node.on("gossip", (msg) => {
  learn(msg.body.messages, msg.src);
  node.send(msg.src, { type: "gossip_ok", messages: msg.body.messages });
});
node.on("gossip_ok", (msg) => {
  const p = pending.get(msg.src);
  if (p) for (const v of msg.body.messages) p.delete(v);
});
node.run();
