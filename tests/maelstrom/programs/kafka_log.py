#!/usr/bin/env python3
"""Maelstrom's kafka workload: every log lives on n0; other nodes forward each request to n0
and relay its answer (correct while n0 is up). With --reuse-offsets, each node numbers its
own sends per key and n0 stores them by that offset, a later send replacing an earlier one:
offsets are reused across nodes -> inconsistent offsets and lost writes.
Uses labkit's Maelstrom library (imported as `maelstrom`)."""
import sys

from maelstrom import Node

REUSE = "--reuse-offsets" in sys.argv[1:]
LEADER = "n0"
node = Node()
logs = {}        # key -> sorted list of [offset, msg]
committed = {}   # key -> offset
mine = {}        # key -> next offset this node hands out (--reuse-offsets)


def handle(body):
    typ = body["type"]
    if typ == "send":
        k = body["key"]
        log = logs.setdefault(k, [])
        o = body.get("offset")
        if o is None:
            o = log[-1][0] + 1 if log else 0
        for p in log:
            if p[0] == o:
                p[1] = body["msg"]
                break
        else:
            log.append([o, body["msg"]])
            log.sort()
        return {"type": "send_ok", "offset": o}
    if typ == "poll":
        msgs = {}
        for k, start in body["offsets"].items():
            got = [list(p) for p in logs.get(k, []) if p[0] >= start][:10]
            if got:
                msgs[k] = got
        return {"type": "poll_ok", "msgs": msgs}
    if typ == "commit_offsets":
        for k, o in body["offsets"].items():
            committed[k] = max(o, committed.get(k, -1))
        return {"type": "commit_offsets_ok"}
    return {"type": "list_committed_offsets_ok",
            "offsets": {k: committed[k] for k in body["keys"] if k in committed}}


async def serve(msg):
    body = {k: v for k, v in msg["body"].items() if k not in ("msg_id", "in_reply_to")}
    if REUSE and body["type"] == "send" and "offset" not in body:
        body["offset"] = mine.get(body["key"], 0)
        mine[body["key"]] = body["offset"] + 1
    if node.node_id == LEADER:
        node.reply(msg, handle(body))
        return
    r = await node.rpc(LEADER, body)
    node.reply(msg, {k: v for k, v in r["body"].items() if k not in ("msg_id", "in_reply_to")})


for t in ("send", "poll", "commit_offsets", "list_committed_offsets"):
    node.on(t, serve)

node.run()
