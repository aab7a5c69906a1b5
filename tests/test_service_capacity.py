"""Services and capacity together: an HTTP request holds one of the service's workers from
admission to its response (labkit.capacity), waits FIFO beyond ``workers``, is shed with 503
and ``Retry-After`` beyond ``queue_limit``, and a slow node stretches its service time -- in
the simulator exactly, in processes as a ratio."""
from __future__ import annotations

import pytest

import labkit

WORK_MS = 20.0


class Shop(labkit.Service):
    workers = 2
    queue_limit = 2

    @labkit.get("/item/{n}")
    async def item(self, ctx, req):
        await ctx.work(WORK_MS)
        return labkit.json_response({"n": int(req.match_info["n"]), "done": ctx.now})


class Caller(labkit.Service):
    """Calls the shop and waits on it: its own single worker is held meanwhile
    (thread-per-request), so a second request queues behind the first."""
    workers = 1

    @labkit.get("/via/{n}")
    async def via(self, ctx, req):
        r = await ctx.http.get("shop", f"/item/{req.match_info['n']}", timeout=5000)
        return labkit.json_response({"status": r.status})


def _burst(cluster, node, k, timeout=5000.0):
    """Send ``k`` requests at once from k clients; run until every one is answered."""
    out: dict[int, object] = {}
    for i in range(k):
        cluster.http(node, as_client=f"c{i}").send(
            "GET", f"/item/{i}", timeout=timeout,
            on_response=lambda r, i=i: out.__setitem__(i, r), on_error=lambda e, i=i: out.__setitem__(i, e))
    for _ in range(200):
        if len(out) == k:
            break
        cluster.run_for(0.05)
    assert len(out) == k, f"only {len(out)} of {k} requests finished"
    return out


def test_sim_two_workers_two_queued_the_rest_shed_with_503():
    with labkit.Cluster({"shop": Shop}, runtime="sim", seed=3) as cluster:
        out = _burst(cluster, "shop", 7)
        statuses = sorted(r.status for r in out.values())
        assert statuses == [200] * 4 + [503] * 3, statuses
        shed = [r for r in out.values() if r.status == 503]
        assert all(r.headers.get("Retry-After") for r in shed), "a shed request must say when to retry"
        done = sorted(r.json()["done"] for r in out.values() if r.status == 200)
        # two at once, then the two queued ones: service ends in two waves WORK_MS apart
        assert done[1] - done[0] < 1 and done[3] - done[2] < 1, done
        assert done[2] - done[0] == pytest.approx(WORK_MS, abs=1.0), done
        counters = cluster.counters("shop")["counters"]
        assert counters.get("shed") == 3 and counters.get("http_shed") == 3, counters


def test_sim_a_caller_waiting_on_a_dependency_holds_its_worker():
    with labkit.Cluster({"caller": Caller, "shop": Shop}, runtime="sim", seed=1) as cluster:
        cluster.slow("shop", 10)                       # 200 ms of service time per request
        t0 = cluster.now
        a = cluster.http("caller", as_client="c0")
        got = {}
        a.send("GET", "/via/1", timeout=5000, on_response=lambda r: got.__setitem__("a", cluster.now))
        cluster.http("caller", as_client="c1").send("GET", "/via/2", timeout=5000,
                                                    on_response=lambda r: got.__setitem__("b", cluster.now))
        for _ in range(100):
            if len(got) == 2:
                break
            cluster.run_for(0.05)
        assert len(got) == 2, got
        first, second = sorted(got.values())
        # the second request waited for the caller's only worker, which waited on the shop
        assert first - t0 >= 10 * WORK_MS, first - t0
        assert second - first >= 10 * WORK_MS - 1, (first - t0, second - t0)


def test_processes_shedding_and_slow_node_latency_ratio():
    import time
    with labkit.Cluster({"shop": Shop}, seed=2) as cluster:
        out = _burst(cluster, "shop", 7)
        statuses = sorted(getattr(r, "status", type(r).__name__) for r in out.values())
        # real arrival times spread a little: at least the 2 + 2 admitted ones are served,
        # and a burst of 7 into 2 workers + 2 places must shed some
        assert statuses.count(200) >= 4 and statuses.count(503) >= 1, statuses
        assert set(statuses) <= {200, 503}, statuses
        http = cluster.http("shop")

        def mean_wall_ms(n=3):
            t = time.perf_counter()
            for i in range(n):
                r = http.get(f"/item/{i}", timeout=10_000)
                assert r.status == 200, r
            return (time.perf_counter() - t) / n * 1000

        cluster.slow("shop", 5)
        slow = mean_wall_ms()
        cluster.unslow("shop")
        fast = mean_wall_ms()
        # 100 ms of service time vs 20 ms: the slow node is never early; the ratio is loose
        # (a shared machine adds latency to both, which pulls the ratio towards 1)
        assert slow >= 5 * WORK_MS, slow
        assert slow / fast > 2.0, (slow, fast)
