#!/usr/bin/env node
// Maelstrom's g-set workload: a state-based grow-only set, whole set gossiped every 200 ms.
"use strict";
const { Node } = require("./lib.js");

const node = new Node();
const elements = new Set();
node.onInit(() => node.every(200, () => {
  for (const n of node.nodeIds) {
    if (n !== node.nodeId) node.send(n, { type: "replicate", value: [...elements] });
  }
}));
node.on("add", (msg) => {
  elements.add(msg.body.element);
  node.reply(msg, { type: "add_ok" });
});
node.on("read", (msg) => node.reply(msg, { type: "read_ok", value: [...elements] }));
node.on("replicate", (msg) => { for (const x of msg.body.value) elements.add(x); });
node.run();
