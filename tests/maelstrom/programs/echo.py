#!/usr/bin/env python3
"""Maelstrom's echo workload, written with labkit's Maelstrom library (labkit/maelstrom/node.py,
imported as `maelstrom`: labkit.Program puts it on PYTHONPATH). Run by labkit.Program, or by
Maelstrom with node.py copied next to this file as maelstrom.py."""
from maelstrom import Node

node = Node()


@node.on("echo")
def echo(msg):
    node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})


node.run()
