#!/usr/bin/env python3
"""Maelstrom's lin-kv workload served by relaying read / write / cas to the lin-kv service
(linearizable). With --stale, reads are answered from a per-node cache filled by reads and
by this node's own writes: stale once another node writes, so not linearizable.
Uses labkit's Maelstrom library (imported as `maelstrom`; labkit.Program puts it on PYTHONPATH)."""
import sys

from maelstrom import Node

STALE = "--stale" in sys.argv[1:]
node = Node()
cache = {}


async def relay(msg):
    body = dict(msg["body"])
    typ = body.pop("type")
    body.pop("msg_id", None)
    if STALE and typ == "read" and body["key"] in cache:
        node.reply(msg, {"type": "read_ok", "value": cache[body["key"]]})
        return
    r = await node.rpc("lin-kv", dict(body, type=typ))       # RPCError propagates as the reply
    if typ == "read":
        cache[body["key"]] = r["body"]["value"]
    elif typ == "write":
        cache[body["key"]] = body["value"]
    else:
        cache[body["key"]] = body["to"]
    out = {k: v for k, v in r["body"].items() if k not in ("msg_id", "in_reply_to")}
    node.reply(msg, out)


for t in ("read", "write", "cas"):
    node.on(t, relay)

node.run()
