"""Regenerate docs/spacetime.png, the README's picture (a seeded simulator run, so the same
picture every time):  .venv/bin/python docs/make_spacetime.py"""
from pathlib import Path

import labkit
from labkit.plots import spacetime


class Gossip(labkit.Node):
    def on_start(self, ctx):
        self.heard = set()
        ctx.set_timer("gossip", between=(80, 120))

    def on_timer(self, ctx, name):
        peer = ctx.rng.choice(ctx.peers)
        ctx.send(peer, "rumour", seen=sorted(self.heard | {ctx.id}))
        ctx.set_timer("gossip", between=(80, 120))

    def on_message(self, ctx, msg):
        self.heard.update(msg["seen"])


with labkit.Cluster(Gossip, n=3, runtime="sim", seed=7) as cluster:
    cluster.set_link("*", "*", delay=25, jitter=10)   # ms: arrows slant with the delay
    cluster.run_for(0.4)
    cluster.partition(["n1"], ["n2", "n3"])     # n1 is cut off: its messages are dropped
    cluster.run_for(0.4)
    cluster.heal()
    cluster.run_for(0.4)
    fig = spacetime(cluster.journal, title="3 nodes gossiping; n1 partitioned away for 400 ms (seed 7)")
    fig.savefig(Path(__file__).with_name("spacetime.png"), dpi=110, bbox_inches="tight")
    print(fig)
