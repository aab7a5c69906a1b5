#!/usr/bin/env python3
"""A transaction store for txn-list-append and txn-rw-register on Maelstrom's lin-kv service.

Default: the whole database is one lin-kv key; each txn reads it, runs on a copy and cas-es it
back, retrying on a lost race -- serializable (strict: it answers after its cas).
With --no-isolation: each micro-op is its own lin-kv read (a write: read then write), so
concurrent txns interleave: no isolation, and Elle names the anomalies.
Uses labkit's Maelstrom library (imported as `maelstrom`)."""
import json
import sys

from maelstrom import Node, RPCError

NO_ISOLATION = "--no-isolation" in sys.argv[1:]
ROOT = "db"
node = Node()


def apply(db, txn):
    out = []
    for f, k, v in txn:
        sk = json.dumps(k)
        if f == "r":
            out.append([f, k, db.get(sk)])
        elif f == "append":
            db[sk] = list(db.get(sk) or []) + [v]
            out.append([f, k, v])
        else:
            db[sk] = v
            out.append([f, k, v])
    return out


async def read(key):
    try:
        return (await node.rpc("lin-kv", {"type": "read", "key": key}))["body"]["value"], True
    except RPCError as e:
        if e.code == 20:
            return None, False
        raise


@node.on("txn")
async def txn(msg):
    ops = msg["body"]["txn"]
    if NO_ISOLATION:
        out = []
        for f, k, v in ops:
            cur, _ = await read(json.dumps(k))
            if f == "r":
                out.append([f, k, cur])
                continue
            new = (list(cur or []) + [v]) if f == "append" else v
            await node.rpc("lin-kv", {"type": "write", "key": json.dumps(k), "value": new})
            out.append([f, k, v])
        node.reply(msg, {"type": "txn_ok", "txn": out})
        return
    for _ in range(100):
        old, exists = await read(ROOT)
        db = dict(old or {})
        out = apply(db, ops)
        try:
            await node.rpc("lin-kv", {"type": "cas", "key": ROOT, "from": old, "to": db,
                                      "create_if_not_exists": not exists})
        except RPCError as e:
            if e.code in (20, 22):
                continue
            raise
        node.reply(msg, {"type": "txn_ok", "txn": out})
        return
    raise RPCError(30, "gave up after 100 conflicting attempts")


node.run()
