#!/usr/bin/env python3
"""Maelstrom's unique-ids workload: ids "<node>-<boot>-<counter>", where <boot> is a random
token drawn at start-up, so a restarted node never repeats an id (labkit's maelstrom library)."""
import secrets

from maelstrom import Node

node = Node()
boot = secrets.token_hex(4)
counter = 0


@node.on("generate")
def generate(msg):
    global counter
    counter += 1
    node.reply(msg, {"type": "generate_ok", "id": f"{node.node_id}-{boot}-{counter}"})


node.run()
