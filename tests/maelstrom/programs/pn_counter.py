#!/usr/bin/env python3
"""Maelstrom's pn-counter workload: a state-based PN-counter (per-node increment and decrement
totals, merged by max), gossiped in full every 200 ms."""
from maelstrom import Node

node = Node()
inc, dec = {}, {}


def sync():
    for n in node.node_ids:
        if n != node.node_id:
            node.send(n, {"type": "replicate", "inc": inc, "dec": dec})


@node.on_init
def started():
    node.every(200, sync)


@node.on("add")
def add(msg):
    d = msg["body"]["delta"]
    side = inc if d >= 0 else dec
    side[node.node_id] = side.get(node.node_id, 0) + abs(d)
    node.reply(msg, {"type": "add_ok"})


@node.on("read")
def read(msg):
    node.reply(msg, {"type": "read_ok", "value": sum(inc.values()) - sum(dec.values())})


@node.on("replicate")
def replicate(msg):
    for mine, theirs in ((inc, msg["body"]["inc"]), (dec, msg["body"]["dec"])):
        for k, v in theirs.items():
            mine[k] = max(mine.get(k, 0), v)


node.run()
