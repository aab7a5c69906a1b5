#!/usr/bin/env python3
"""Maelstrom's broadcast workload: acknowledged, batched gossip along the given topology.

Each node keeps, per neighbour, the values that neighbour has not acknowledged; every
INTERVAL ms it sends them (those unacknowledged for RETRY ms again), and relays values it
learns from one neighbour to the others. Survives partitions (values stay pending until
acknowledged). Arguments: [interval_ms] (default 200; 0 sends each value at once)."""
import sys
import time

from maelstrom import Node

INTERVAL = float(sys.argv[1]) if len(sys.argv) > 1 else 200.0
RETRY = 1000.0
node = Node()
values = set()
neighbours = []
pending = {}          # neighbour -> {value: last sent (ms, loop clock) or None}


def now_ms():
    return time.monotonic() * 1000.0


def learn(new_values, source=None):
    new = [v for v in new_values if v not in values]
    values.update(new)
    for n in neighbours:
        if n != source and new:
            if INTERVAL:
                pending[n].update({v: None for v in new})
            else:
                pending[n].update({v: now_ms() for v in new})
                node.send(n, {"type": "gossip", "messages": new})


def tick():
    t = now_ms()
    for n, vals in pending.items():
        due = sorted(v for v, sent in vals.items() if sent is None or sent <= t - RETRY)
        if due:
            node.send(n, {"type": "gossip", "messages": due})
            for v in due:
                vals[v] = t


@node.on_init
def started():
    node.every(INTERVAL or RETRY, tick)


@node.on("topology")
def topology(msg):
    global neighbours
    neighbours = list(msg["body"]["topology"].get(node.node_id, []))
    for n in neighbours:
        pending.setdefault(n, {})
    node.reply(msg, {"type": "topology_ok"})


@node.on("broadcast")
def broadcast(msg):
    learn([msg["body"]["message"]])
    node.reply(msg, {"type": "broadcast_ok"})


@node.on("read")
def read(msg):
    node.reply(msg, {"type": "read_ok", "messages": sorted(values)})


@node.on("gossip")
def gossip(msg):
    learn(msg["body"]["messages"], source=msg["src"])
    node.send(msg["src"], {"type": "gossip_ok", "messages": msg["body"]["messages"]})


@node.on("gossip_ok")
def gossip_ok(msg):
    vals = pending.get(msg["src"], {})
    for v in msg["body"]["messages"]:
        vals.pop(v, None)


node.run()
