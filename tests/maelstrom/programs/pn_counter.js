#!/usr/bin/env node
// Maelstrom's pn-counter workload: a state-based PN-counter (per-node increment and
// decrement totals, merged by max), gossiped in full every 200 ms.
"use strict";
const { Node } = require("./lib.js");

const node = new Node();
const inc = {};
const dec = {};
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
node.onInit(() => node.every(200, () => {
  for (const n of node.nodeIds) {
    if (n !== node.nodeId) node.send(n, { type: "replicate", inc, dec });
  }
}));
node.on("add", (msg) => {
  const d = msg.body.delta;
  const side = d >= 0 ? inc : dec;
  side[node.nodeId] = (side[node.nodeId] || 0) + Math.abs(d);
  node.reply(msg, { type: "add_ok" });
});
node.on("read", (msg) => node.reply(msg, { type: "read_ok", value: sum(inc) - sum(dec) }));
node.on("replicate", (msg) => {
  for (const [mine, theirs] of [[inc, msg.body.inc], [dec, msg.body.dec]]) {
    for (const [k, v] of Object.entries(theirs)) mine[k] = Math.max(mine[k] || 0, v);
  }
});
node.run();
