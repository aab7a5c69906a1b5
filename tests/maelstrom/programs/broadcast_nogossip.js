#!/usr/bin/env node
// BROKEN broadcast: keeps what its own clients broadcast, never tells the other nodes
// (set-full: lost elements).
"use strict";
const { Node } = require("./lib.js");

const node = new Node();
const values = new Set();
node.on("topology", (msg) => node.reply(msg, { type: "topology_ok" }));
node.on("broadcast", (msg) => {
  values.add(msg.body.message);
  node.reply(msg, { type: "broadcast_ok" });
});
node.on("read", (msg) => node.reply(msg, { type: "read_ok", messages: [...values] }));
node.run();
