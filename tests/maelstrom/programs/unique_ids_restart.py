#!/usr/bin/env python3
"""BROKEN unique-ids: ids "<node>-<counter>" with the counter in memory, so a restarted node
counts from 0 again and repeats ids it gave out before (duplicates under restart/kill)."""
from maelstrom import Node

node = Node()
counter = 0


@node.on("generate")
def generate(msg):
    global counter
    counter += 1
    node.reply(msg, {"type": "generate_ok", "id": f"{node.node_id}-{counter}"})


node.run()
