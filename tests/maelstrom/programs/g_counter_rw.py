#!/usr/bin/env python3
"""BROKEN g-counter on seq-kv: add reads key "counter" and writes back value + delta. Two
adds that read the same value overwrite each other, so updates are lost and the final reads
are below the sum of the acknowledged adds."""
from maelstrom import Node, RPCError

node = Node()


async def current():
    try:
        r = await node.rpc("seq-kv", {"type": "read", "key": "counter"})
        return r["body"]["value"]
    except RPCError as e:
        if e.code == 20:          # key-does-not-exist: nothing added yet
            return 0
        raise


@node.on("add")
async def add(msg):
    value = await current()
    await node.rpc("seq-kv", {"type": "write", "key": "counter", "value": value + msg["body"]["delta"]})
    node.reply(msg, {"type": "add_ok"})


@node.on("read")
async def read(msg):
    node.reply(msg, {"type": "read_ok", "value": await current()})


node.run()
