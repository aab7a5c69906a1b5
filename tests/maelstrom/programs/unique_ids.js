#!/usr/bin/env node
// Maelstrom's unique-ids workload: ids "<node>-<boot>-<counter>", <boot> random per start.
"use strict";
const crypto = require("crypto");
const { Node } = require("./lib.js");

const node = new Node();
const boot = crypto.randomBytes(4).toString("hex");
let counter = 0;
node.on("generate", (msg) => {
  counter += 1;
  node.reply(msg, { type: "generate_ok", id: `${node.nodeId}-${boot}-${counter}` });
});
node.run();
