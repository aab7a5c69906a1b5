#!/usr/bin/env node
// Maelstrom's echo workload in plain JavaScript (node.js, no packages): one JSON message
// per stdin line; replies on stdout; logging on stderr.
"use strict";
const readline = require("readline");

let nodeId = null;
let nextId = 0;

function send(dest, body) {
  process.stdout.write(JSON.stringify({ src: nodeId, dest, body }) + "\n");
}

function reply(req, body) {
  body.msg_id = ++nextId;
  body.in_reply_to = req.body.msg_id;
  send(req.src, body);
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  const body = msg.body;
  switch (body.type) {
    case "init":
      nodeId = body.node_id;
      process.stderr.write(`echo.js: ${nodeId} of ${body.node_ids.join(",")}\n`);
      reply(msg, { type: "init_ok" });
      break;
    case "echo":
      reply(msg, { type: "echo_ok", echo: body.echo });
      break;
    default:
      if (body.msg_id !== undefined && body.in_reply_to === undefined) {
        reply(msg, { type: "error", code: 10, text: `unsupported type ${body.type}` });
      }
  }
});
rl.on("close", () => process.exit(0));
