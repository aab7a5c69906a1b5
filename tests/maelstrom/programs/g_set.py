#!/usr/bin/env python3
"""Maelstrom's g-set workload: a state-based grow-only set; every 200 ms each node sends its
whole set to the others, who merge it (set union: commutative, idempotent)."""
from maelstrom import Node

node = Node()
elements = set()


def sync():
    for n in node.node_ids:
        if n != node.node_id:
            node.send(n, {"type": "replicate", "value": sorted(elements)})


@node.on_init
def started():
    node.every(200, sync)


@node.on("add")
def add(msg):
    elements.add(msg["body"]["element"])
    node.reply(msg, {"type": "add_ok"})


@node.on("read")
def read(msg):
    node.reply(msg, {"type": "read_ok", "value": sorted(elements)})


@node.on("replicate")
def replicate(msg):
    elements.update(msg["body"]["value"])


node.run()
