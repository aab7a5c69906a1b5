"""Raw pyzmq baselines: what plain Python processes do over ipc with no labkit in between.

Imported by the benchmarks (the orchestration functions) and run as a script for the
processes themselves::

    python _raw.py pong PATH                      # PAIR, bind, echo every frame back
    python _raw.py ping PATH N SIZE WARMUP        # PAIR, connect, N blocking round trips
    python _raw.py mesh DIR I K WINDOW SIZE       # PULL inbox + PUSH to K-1 peers, windowed
    python _raw.py push PATH SIZE / pull PATH     # one-way pipelined stream

Each measuring process prints one JSON line on stdout. Timing uses ``time.monotonic`` (the
same system-wide clock labkit stamps its journal with) so windows agree across processes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


# -- the processes ------------------------------------------------------------------------------
def _pong(path: str) -> None:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.setsockopt(zmq.LINGER, 0)
    s.bind("ipc://" + path)
    print("ready", flush=True)
    cpu0 = time.process_time()
    count = 0
    while True:
        m = s.recv()
        if m == b"quit":
            break
        s.send(m)
        count += 1
    print(json.dumps({"cpu_s": time.process_time() - cpu0, "count": count}), flush=True)
    s.close(0)
    ctx.term()


def _ping(path: str, n: int, size: int, warmup: int) -> None:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("ipc://" + path)
    msg = b"x" * size
    clock = time.monotonic
    for _ in range(warmup):
        s.send(msg)
        s.recv()
    samples = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = clock()
        s.send(msg)
        s.recv()
        samples.append((clock() - t0) * 1e6)
    cpu = time.process_time() - cpu0
    s.send(b"quit")
    print(json.dumps({"samples_us": samples, "cpu_s": cpu}), flush=True)
    s.close(0)
    ctx.term()


def _mesh(d: str, i: int, k: int, window: int, size: int) -> None:
    import zmq
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.setsockopt(zmq.RCVTIMEO, 1000)
    pull.bind(f"ipc://{d}/{i}")
    peers = []
    for j in range(k):
        if j != i:
            p = ctx.socket(zmq.PUSH)
            p.setsockopt(zmq.LINGER, 0)
            p.connect(f"ipc://{d}/{j}")
            peers.append(p)
    print("ready", flush=True)
    start_at, t_from, t_to = map(float, sys.stdin.readline().split())
    clock = time.monotonic
    while clock() < start_at:
        time.sleep(0.001)
    msg = b"x" * size
    np_ = len(peers)
    for w in range(window):
        peers[w % np_].send(msg)
    count = 0
    j = 0
    while True:
        try:
            m = pull.recv()
        except zmq.Again:
            break
        t = clock()
        if t >= t_from:
            if t > t_to:
                break
            count += 1
        peers[j].send(m)
        j += 1
        if j == np_:
            j = 0
    print(json.dumps({"count": count}), flush=True)
    for s in [pull, *peers]:
        s.close(0)
    ctx.term()


def _push(path: str, size: int) -> None:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("ipc://" + path)
    msg = b"x" * size
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        while True:
            s.send(msg)
    except zmq.ZMQError:
        pass


def _pull(path: str, t_from: float, t_to: float) -> None:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 2000)
    s.bind("ipc://" + path)
    print("ready", flush=True)
    clock = time.monotonic
    count = 0
    while True:
        try:
            s.recv()
        except zmq.Again:
            break
        t = clock()
        if t >= t_from:
            if t > t_to:
                break
            count += 1
    print(json.dumps({"count": count}), flush=True)


# -- orchestration (called from the benchmarks) -------------------------------------------------
def _spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen([PY, os.path.join(HERE, "_raw.py"), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _reap(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(5)
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()


def rtt(n: int, size: int, warmup: int = 200) -> tuple[list[float], float]:
    """Round-trip samples (us) of ``n`` blocking PAIR request/replies between two processes,
    and the CPU time (us, both processes, all threads) per round trip."""
    d = tempfile.mkdtemp(prefix="lkb-")
    path = os.path.join(d, "pair")
    procs = []
    try:
        pong = _spawn("pong", path)
        procs.append(pong)
        pong.stdout.readline()
        ping = _spawn("ping", path, n, size, warmup)
        procs.append(ping)
        out = json.loads(ping.stdout.readline())
        pong_out = json.loads(pong.stdout.readline())
        pong.wait(10)
        cpu_us = (out["cpu_s"] * 1e6) / n + (pong_out["cpu_s"] * 1e6) / max(1, pong_out["count"])
        return out["samples_us"], cpu_us
    finally:
        _reap(procs)
        shutil.rmtree(d, ignore_errors=True)


def mesh(k: int, window: int, size: int, seconds: float, warm: float = 0.3) -> float:
    """Delivered messages per second among ``k`` processes sending to each other pipelined."""
    d = tempfile.mkdtemp(prefix="lkb-")
    procs = [_spawn("mesh", d, i, k, window, size) for i in range(k)]
    try:
        for p in procs:
            p.stdout.readline()
        start = time.monotonic() + 0.1
        line = f"{start} {start + warm} {start + warm + seconds}\n"
        for p in procs:
            p.stdin.write(line)
            p.stdin.flush()
        total = sum(json.loads(p.stdout.readline())["count"] for p in procs)
        return total / seconds
    finally:
        _reap(procs)
        shutil.rmtree(d, ignore_errors=True)


def stream(size: int, seconds: float, warm: float = 0.3) -> float:
    """Messages per second of one PUSH process streaming to one PULL process."""
    d = tempfile.mkdtemp(prefix="lkb-")
    path = os.path.join(d, "s")
    start = time.monotonic() + 0.3
    procs = []
    try:
        pull = _spawn("pull", path, start + warm, start + warm + seconds)
        procs.append(pull)
        pull.stdout.readline()
        push = _spawn("push", path, size)
        procs.append(push)
        push.stdout.readline()
        while time.monotonic() < start:
            time.sleep(0.005)
        push.stdin.write("go\n")
        push.stdin.flush()
        return json.loads(pull.stdout.readline())["count"] / seconds
    finally:
        _reap(procs)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    mode, *a = sys.argv[1:]
    if mode == "pong":
        _pong(a[0])
    elif mode == "ping":
        _ping(a[0], int(a[1]), int(a[2]), int(a[3]))
    elif mode == "mesh":
        _mesh(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]))
    elif mode == "push":
        _push(a[0], int(a[1]))
    elif mode == "pull":
        _pull(a[0], float(a[1]), float(a[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
