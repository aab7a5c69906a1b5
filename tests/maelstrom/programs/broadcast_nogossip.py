#!/usr/bin/env python3
"""BROKEN broadcast: keeps what its own clients broadcast and never tells the other nodes, so
reads on other nodes miss those values (set-full: lost elements)."""
from maelstrom import Node

node = Node()
values = set()


@node.on("topology")
def topology(msg):
    node.reply(msg, {"type": "topology_ok"})


@node.on("broadcast")
def broadcast(msg):
    values.add(msg["body"]["message"])
    node.reply(msg, {"type": "broadcast_ok"})


@node.on("read")
def read(msg):
    node.reply(msg, {"type": "read_ok", "messages": sorted(values)})


node.run()
