"""One PySyncObj node holding a replicated counter (a helper of benchmarks/raft.py, not a benchmark).

    python _pysyncobj_node.py SELF_PORT PEER_PORT [PEER_PORT ...] [--drive INFLIGHT SECONDS SINGLES]

Every node runs until its stdin closes (the benchmark holds the other end, so a dead
benchmark never leaves a node behind). With ``--drive`` (given to every node), the node that
is elected leader is also the client -- commands submitted in-process, the way PySyncObj's own
benchmarks drive it, and without a forwarding hop: it waits until it leads, then

* keeps INFLIGHT ``incr`` commands outstanding (``sync=False`` with callbacks) for SECONDS
  and counts the committed ones per second;
* then issues SINGLES commands one at a time (``sync=True``) and records each latency;

and prints one JSON line. PySyncObj runs with its default configuration, as users run it.
"""
from __future__ import annotations

import json
import sys
import threading
import time

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.syncobj import FAIL_REASON


class Counter(SyncObj):
    def __init__(self, self_addr: str, partners: list[str]) -> None:
        super().__init__(self_addr, partners, SyncObjConf())
        self.value = 0

    @replicated
    def incr(self) -> int:
        self.value += 1
        return self.value


def drive(node: Counter, inflight: int, seconds: float, singles: int) -> dict | None:
    """Drive the cluster if this node leads once it settles; None if another node leads."""
    deadline = time.monotonic() + 30
    while node._getLeader() is None or not node.isReady():
        if time.monotonic() > deadline:
            return {"error": "no PySyncObj leader within 30 s"}
        time.sleep(0.01)
    time.sleep(0.5)                                   # let the cluster settle after the election
    if not node._isLeader():
        return None
    lock = threading.Lock()
    state = {"ok": 0, "err": 0, "open": 0, "stop": False}
    done = threading.Event()

    def submit() -> None:
        state["open"] += 1
        node.incr(callback=on_done)

    def on_done(result, error) -> None:               # runs on PySyncObj's tick thread
        with lock:
            state["open"] -= 1
            if error == FAIL_REASON.SUCCESS:
                state["ok"] += 1
            else:
                state["err"] += 1
            if state["stop"]:
                if state["open"] == 0:
                    done.set()
                return
            submit()

    t0 = time.perf_counter()
    with lock:
        for _ in range(inflight):
            submit()
    time.sleep(seconds)
    with lock:
        state["stop"] = True
        ok, err = state["ok"], state["err"]
        elapsed = time.perf_counter() - t0
        if state["open"] == 0:
            done.set()
    done.wait(30)
    lat = []
    for _ in range(singles):
        s = time.perf_counter()
        node.incr(sync=True, timeout=10)
        lat.append((time.perf_counter() - s) * 1e3)
    return {"ops_per_s": ok / elapsed, "ok": ok, "errors": err, "seconds": elapsed,
            "latencies_ms": lat, "value": node.value}


def main(argv: list[str]) -> None:
    drive_args = None
    if "--drive" in argv:
        i = argv.index("--drive")
        drive_args = (int(argv[i + 1]), float(argv[i + 2]), int(argv[i + 3]))
        argv = argv[:i]
    me, peers = argv[0], argv[1:]
    node = Counter(f"127.0.0.1:{me}", [f"127.0.0.1:{p}" for p in peers])
    if drive_args:
        result = drive(node, *drive_args)
        if result is not None:
            print(json.dumps(result), flush=True)
    sys.stdin.read()                                   # until the benchmark closes our stdin
    node.destroy()


if __name__ == "__main__":
    main(sys.argv[1:])
