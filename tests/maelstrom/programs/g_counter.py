#!/usr/bin/env python3
"""Maelstrom's g-counter workload on seq-kv (Gossip Glomers #4): each node owns the key
<node id> and writes its own running total there; nobody else writes it, so no update is
lost. seq-kv may answer reads from a stale state, but a client's own write brings it up to
date: a read first writes a fresh value to its sync key, then sums every node's key."""
from maelstrom import Node, RPCError

node = Node()
total = 0
syncs = 0


@node.on("add")
async def add(msg):
    global total
    total += msg["body"]["delta"]
    await node.rpc("seq-kv", {"type": "write", "key": node.node_id, "value": total})
    node.reply(msg, {"type": "add_ok"})


@node.on("read")
async def read(msg):
    global syncs
    syncs += 1
    await node.rpc("seq-kv", {"type": "write", "key": f"sync-{node.node_id}", "value": syncs})
    s = 0
    for n in node.node_ids:
        try:
            r = await node.rpc("seq-kv", {"type": "read", "key": n})
            s += r["body"]["value"]
        except RPCError as e:
            if e.code != 20:       # key-does-not-exist: that node has added nothing yet
                raise
    node.reply(msg, {"type": "read_ok", "value": s})


node.run()
