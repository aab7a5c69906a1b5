// A tiny Maelstrom node library for the JavaScript test programs (node.js, no packages):
// handlers by message type, reply, send, rpc with a callback and a timeout, timers.
// Mirrors labkit's Python library (labkit/maelstrom/node.py) and Maelstrom's demo libraries.
"use strict";
const readline = require("readline");

class Node {
  constructor() {
    this.nodeId = null;
    this.nodeIds = [];
    this.handlers = {};
    this.initHooks = [];
    this.pending = new Map();   // msg_id -> [callback, timer]
    this.nextId = 0;
  }
  on(type, fn) { this.handlers[type] = fn; return this; }
  onInit(fn) { this.initHooks.push(fn); return this; }
  log(...parts) { process.stderr.write(parts.join(" ") + "\n"); }
  send(dest, body) {
    process.stdout.write(JSON.stringify({ src: this.nodeId, dest, body }) + "\n");
  }
  reply(req, body) {
    this.send(req.src, Object.assign({}, body, { in_reply_to: req.body.msg_id }));
  }
  rpc(dest, body, callback, timeoutMs = 1000) {
    const msgId = ++this.nextId;
    const timer = setTimeout(() => {
      if (this.pending.delete(msgId)) {
        callback({ src: dest, dest: this.nodeId,
                   body: { type: "error", code: 0, text: "timeout", in_reply_to: msgId } });
      }
    }, timeoutMs);
    this.pending.set(msgId, [callback, timer]);
    this.send(dest, Object.assign({}, body, { msg_id: msgId }));
  }
  every(ms, fn) { setInterval(fn, ms); }
  dispatch(msg) {
    const body = msg.body || {};
    if (body.in_reply_to !== undefined && this.pending.has(body.in_reply_to)) {
      const [cb, timer] = this.pending.get(body.in_reply_to);
      this.pending.delete(body.in_reply_to);
      clearTimeout(timer);
      cb(msg);
      return;
    }
    if (body.type === "init") {
      this.nodeId = body.node_id;
      this.nodeIds = body.node_ids;
      for (const hook of this.initHooks) hook();
      this.reply(msg, { type: "init_ok" });
      return;
    }
    const handler = this.handlers[body.type];
    if (!handler) {
      if (body.msg_id !== undefined && body.in_reply_to === undefined) {
        this.reply(msg, { type: "error", code: 10, text: `no handler for ${body.type}` });
      }
      return;
    }
    try {
      handler(msg);
    } catch (e) {
      this.log(e.stack || String(e));
      if (body.msg_id !== undefined) this.reply(msg, { type: "error", code: 13, text: String(e) });
    }
  }
  run() {
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    rl.on("line", (line) => {
      if (!line.trim()) return;
      let msg;
      try { msg = JSON.parse(line); } catch (e) { this.log(`not JSON on stdin: ${line}`); return; }
      this.dispatch(msg);
    });
    rl.on("close", () => process.exit(0));
  }
}

module.exports = { Node };
