"""Resident memory of node processes (processes runtime), 5 and 20 nodes.

Each node heartbeats (broadcast every 50 ms) and the cluster runs 1 s before measuring, so
the figures are those of a running node, not of a freshly forked one. Per node process:
RSS (VmRSS), and USS / PSS from /proc/<pid>/smaps (via psutil) -- node processes are forked
from multiprocess's forkserver and share its pages, so RSS counts shared pages once per
process while PSS splits them fairly and USS counts only what the node alone holds. The
forkserver itself (one per notebook kernel) is reported and included in the totals.

Baseline, same run, for context: a bare Python process that imports zmq (RSS/USS/PSS).

A loaded phase follows (5 nodes): RSS after a flood of messages, then after 20,000 RPCs in
a row, because some per-node state grows with traffic.

Targets: RSS per node <= 60 MB (judged on the largest node seen, loaded phase included); total for 20 nodes <= 1.5 GB
(judged on the sum of RSS of the 20 nodes plus the forkserver, the conservative sum; the PSS
sum is reported beside it).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402

from _common import PY, emit, info, median  # noqa: E402

MB = 1024 * 1024
REPS = 3
TARGET_NODE_MB = 60
TARGET_TOTAL20_MB = 1536


class Heartbeat(labkit.Node):
    def on_start(self, ctx):
        self.seen = {}
        ctx.set_timer("hb", after=50)

    def on_timer(self, ctx, name):
        ctx.broadcast("hb", at=ctx.now)
        ctx.set_timer("hb", after=50)

    def on_message(self, ctx, msg):
        self.seen[msg.src] = ctx.now


class Flood(labkit.Node):
    """Keep 100 messages in flight to the peers for ``run_ms``; answer ``ping`` RPCs; on
    ``rpcs`` make n RPCs to a peer (the loaded phase: journal buffers, the wire-encoding memo,
    stale RPC-timeout entries on the timer heap all grow with traffic)."""

    def __init__(self, run_ms: float = 2000.0) -> None:
        self.run_ms, self.stop_at, self.next = run_ms, float("inf"), 0

    def on_start(self, ctx):
        ctx.set_timer("go", after=200)

    def on_timer(self, ctx, name):
        self.stop_at = ctx.now + self.run_ms
        for k in range(100):
            ctx.send(ctx.peers[k % len(ctx.peers)], "m", k=k)

    async def on_message(self, ctx, msg):
        if msg.type == "m":
            if ctx.now < self.stop_at:
                self.next = (self.next + 1) % len(ctx.peers)
                ctx.send(ctx.peers[self.next], "m", k=msg.body["k"])
        elif msg.type == "ping":
            ctx.reply(msg)
        elif msg.type == "rpcs":
            for i in range(msg.body["n"]):
                await ctx.rpc(ctx.peers[0], "ping", timeout=5000, i=i)
            ctx.reply(msg)


def mem(pid: int) -> dict:
    """rss/uss/pss in bytes (uss/pss None when smaps is not readable)."""
    try:
        import psutil
        p = psutil.Process(pid)
        try:
            m = p.memory_full_info()
            return {"rss": m.rss, "uss": m.uss, "pss": getattr(m, "pss", None)}
        except psutil.AccessDenied:
            return {"rss": p.memory_info().rss, "uss": None, "pss": None}
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                vals = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ln.endswith("kB\n")}
            return {"rss": rss, "uss": vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0),
                    "pss": vals.get("Pss")}
        except OSError:
            return {"rss": rss, "uss": None, "pss": None}


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def cluster_memory(n: int) -> dict:
    with labkit.Cluster(Heartbeat, n=n, seed=3) as cluster:
        cluster.run_for(1.0)
        pids = [s.pid for s in cluster.status().values()]
        nodes = [mem(p) for p in pids]
        fs_pid = parent_pid(pids[0])
        forkserver = mem(fs_pid) if fs_pid != os.getpid() else {"rss": 0, "uss": 0, "pss": 0}
        delivered = cluster.journal.count(kind="deliver")["deliver"]
    if not delivered:
        raise RuntimeError("the heartbeat cluster delivered nothing")

    def tot(key: str, extra: dict | None = None) -> float | None:
        vals = [m[key] for m in nodes] + ([extra[key]] if extra else [])
        return None if any(v is None for v in vals) else sum(vals) / MB

    return {
        "rss_max_mb": max(m["rss"] for m in nodes) / MB,
        "rss_mean_mb": sum(m["rss"] for m in nodes) / len(nodes) / MB,
        "uss_mean_mb": (tot("uss") or 0) / n, "pss_mean_mb": (tot("pss") or 0) / n,
        "rss_total_mb": tot("rss", forkserver), "pss_total_mb": tot("pss", forkserver),
        "uss_total_mb": tot("uss", forkserver),
        "forkserver_rss_mb": forkserver["rss"] / MB,
        "forkserver_pss_mb": (forkserver["pss"] or 0) / MB,
    }


def loaded_memory(flood_s: float = 3.0, rpcs: int = 20_000) -> dict:
    """5 nodes: RSS after a flood (each node sending and receiving tens of thousands of
    messages), then after n1 made ``rpcs`` RPCs in a row (5 s timeouts)."""
    with labkit.Cluster(Flood(flood_s * 1000), n=5, seed=3) as cluster:
        pids = [s.pid for s in cluster.status().values()]
        before = [mem(p)["rss"] / MB for p in pids]
        cluster.run_for(0.2 + flood_s + 0.5)
        flood = [mem(p) for p in pids]
        cluster.request("n1", "rpcs", timeout=300_000, n=rpcs)
        after_rpc = mem(pids[0])
        per_node = cluster.journal.count(kind="deliver")["deliver"] / 5
    return {"rss_before_mb": max(before), "flood_rss_max_mb": max(m["rss"] for m in flood) / MB,
            "flood_uss_max_mb": max((m["uss"] or 0) for m in flood) / MB,
            "delivered_per_node": per_node, "rpcs": rpcs,
            "rss_n1_after_rpcs_mb": after_rpc["rss"] / MB}


def bare_memory() -> dict:
    code = "import sys, zmq; ctx = zmq.Context(); s = ctx.socket(zmq.PULL); print('ready', flush=True); sys.stdin.read()"
    p = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        time.sleep(0.1)
        m = mem(p.pid)
    finally:
        p.stdin.close()
        p.wait(10)
        p.stdout.close()
    return {k: (v / MB if v is not None else None) for k, v in m.items()}


def main() -> None:
    res: dict = {5: [], 20: []}
    bare = []
    for r in range(REPS):
        bare.append(bare_memory())
        for n in (5, 20):
            res[n].append(cluster_memory(n))
            x = res[n][-1]
            info(f"rep {r + 1} n={n}: per node RSS max {x['rss_max_mb']:.1f} MB mean {x['rss_mean_mb']:.1f}, "
                 f"USS {x['uss_mean_mb']:.1f}, PSS {x['pss_mean_mb']:.1f}; total (+forkserver "
                 f"{x['forkserver_rss_mb']:.1f} MB RSS) RSS {x['rss_total_mb']:.0f} MB, PSS "
                 f"{x['pss_total_mb']:.0f} MB | bare python+zmq RSS {bare[-1]['rss']:.1f} MB")
    f = {n: {k: median(x[k] for x in runs) for k in runs[0]} for n, runs in res.items()}
    b = {k: median(x[k] for x in bare) for k in bare[0]}
    loaded = loaded_memory()
    info(f"loaded, 5 nodes: RSS {loaded['rss_before_mb']:.1f} MB at start, {loaded['flood_rss_max_mb']:.1f} MB "
         f"after ~{loaded['delivered_per_node']:,.0f} messages delivered per node, n1 {loaded['rss_n1_after_rpcs_mb']:.1f} MB "
         f"after {loaded['rpcs']:,} more RPCs")
    idle_rss = max(f[5]["rss_max_mb"], f[20]["rss_max_mb"])
    node_rss = max(idle_rss, loaded["flood_rss_max_mb"], loaded["rss_n1_after_rpcs_mb"])
    total20 = f[20]["rss_total_mb"]
    emit({
        "name": "memory",
        "what": "resident memory of node processes after 1 s of heartbeats (median of reps)",
        "n5": f[5], "n20": f[20],
        "loaded_n5": loaded,
        "node_rss_mb": node_rss, "node_rss_heartbeat_mb": idle_rss,
        "node_rss_note": "largest node RSS seen: heartbeat clusters (5, 20 nodes) and the loaded phase", "n20_total_rss_mb": total20, "n20_total_pss_mb": f[20]["pss_total_mb"],
        "baseline_rss_mb": b["rss"], "baseline_uss_mb": b["uss"], "baseline_pss_mb": b["pss"],
        "baseline": "a bare Python process that imports zmq and opens one socket",
        "ratio": node_rss / b["rss"],
        "ratio_note": "largest node RSS / bare python+zmq RSS (context; the targets are absolute)",
        "target": f"node RSS <= {TARGET_NODE_MB} MB and 20-node total RSS (+forkserver) <= {TARGET_TOTAL20_MB} MB",
        "pass_node": node_rss <= TARGET_NODE_MB, "pass_total": total20 <= TARGET_TOTAL20_MB,
        "pass": node_rss <= TARGET_NODE_MB and total20 <= TARGET_TOTAL20_MB,
    })


if __name__ == "__main__":
    main()
