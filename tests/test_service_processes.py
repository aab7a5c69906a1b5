"""Services on real processes: a real URL that curl and urllib reach from outside, real TLS
with a test CA (trustme), restarts on new ports, many clusters at once, nothing left behind."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

import labkit

try:
    from .httpnodes import CallsAtStart, Caller, Inventory, SlowStart
except ImportError:
    from httpnodes import CallsAtStart, Caller, Inventory, SlowStart

pytestmark = pytest.mark.processes


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _node_procs() -> list:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE and "labkit" in " ".join(p.cmdline() or [p.name()])]


def test_curl_and_urllib_reach_the_url_from_outside():
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, seed=1) as c:
        url = c.url("inv")
        assert url.startswith("http://127.0.0.1:")
        out = subprocess.run(["curl", "-s", "-i", "-H", "X-Test: from-curl", url + "/echo?a=1"],
                             capture_output=True, text=True, timeout=30).stdout
        head, _, body = out.partition("\n\n")          # (text mode turned \r\n into \n)
        assert head.startswith("HTTP/1.1 200") and "application/json" in head
        assert json.loads(body) == {"remote": "client", "query": {"a": "1"}, "x": "from-curl", "method": "GET"}
        code = ("import json, sys, urllib.request as u\n"
                "req = u.Request(sys.argv[1] + '/stock/pear', data=b'{\"n\": 5}', method='POST',\n"
                "                headers={'Content-Type': 'application/json'})\n"
                "r = u.urlopen(req, timeout=10)\n"
                "print(r.status, r.read().decode())\n")
        out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60)
        assert out.stdout.split(" ", 1) == ["201", '{"count":5}\n'], out.stderr
        assert c.http("inv").get("/stock/pear").json() == {"count": 5}     # the same node state
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/nowhere"],
                             capture_output=True, text=True, timeout=30).stdout
        assert out == "404"
        c.run_for(0.1)
        got = [e for e in c.journal if e.node == "inv" and e.kind == "deliver"]
        assert [e.type for e in got][:2] == ["GET /echo", "POST /stock/pear"]
        assert got[1].body["body"] == '{"n": 5}'     # not labkit's compact JSON: journaled as the text sent
        with pytest.raises(labkit.LabkitError, match="plain labkit.Node"):
            c.url("caller")


def test_a_request_claiming_to_come_from_a_node_must_say_so_well():
    """A request with X-Labkit-* headers is a node's: an unknown sender, a bad message id or a
    bad send time is answered 400 and journaled as nothing; a good one is the node's request."""
    import urllib.error
    import urllib.request
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, seed=2) as c:
        url = c.url("inv") + "/stock/apple"

        def get(**headers):
            req = urllib.request.Request(url, headers={f"X-Labkit-{k}": v for k, v in headers.items()})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        bad = [dict(From="nobody", Id="x.1.1", At="1.5"), dict(From="caller", Id="has space", At="1.5"),
               dict(From="caller", Id="", At="1.5"), dict(From="caller", Id="a" * 101, At="1.5"),
               dict(From="caller", Id="x.1.1", At="soon"), dict(From="caller", Id="x.1.1", At="-1")]
        for headers in bad:
            assert get(**headers) == (400, "400: Bad Request: malformed X-Labkit-* headers"), headers
        assert get(From="caller", Id="a" * 100, At="1.5") == (200, '{"count":3}')
        c.run_for(0.1)
        got = [e for e in c.journal if e.node == "inv" and e.kind == "deliver" and e.type == "GET /stock/apple"]
        assert [(e.src, e.id) for e in got] == [("caller", "a" * 100)]


def test_on_start_may_call_a_service_started_with_it_even_a_slow_one():
    """Every service of a start listens before any node runs on_start; a call made while the
    service is still in its own on_start waits for it (it is not refused)."""
    with labkit.Cluster({"slow": SlowStart, "a": CallsAtStart, "b": CallsAtStart}, seed=4) as c:
        for node in ("a", "b"):
            deadline = 50
            while (out := c.request(node, "outcome").body["outcome"]) is None and deadline:
                deadline -= 1
                c.run_for(0.1)
            assert out == [200, {"loaded": True}], (node, out)


def test_restart_listens_on_a_new_port_that_callers_find():
    with labkit.Cluster({"inv": Inventory, "caller": Caller}, seed=2) as c:
        old = c.url("inv")
        c.kill("inv")
        assert _refused(_port(old))
        with pytest.raises(labkit.LabkitError, match="inv is down"):
            c.url("inv")
        assert c.request("caller", "call", to="inv", path="/stock/apple").body["outcome"] == "refused"
        c.restart("inv")
        new = c.url("inv")
        assert subprocess.run(["curl", "-s", new + "/healthz"], capture_output=True, text=True,
                              timeout=30).stdout == "ok"
        body = c.request("caller", "call", to="inv", path="/stock/apple", call_timeout=3000).body
        assert body["outcome"] == "ok" and body["status"] == 200


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    d = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("inv", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    return str(d)


def test_tls_node_to_node_and_from_curl(tls_dir):
    nodes = {"inv": Inventory(cert_dir=tls_dir), "caller": Caller(cafile=f"{tls_dir}/ca.pem"),
             "stranger": Caller(cafile=f"{tls_dir}/other-ca.pem")}
    with labkit.Cluster(nodes, seed=3) as c:
        url = c.url("inv")
        assert url.startswith("https://127.0.0.1:")
        body = c.request("caller", "call", to="inv", path="/stock/apple", tls=True, call_timeout=5000).body
        assert (body["outcome"], body["status"], body["body"]) == ("ok", 200, '{"count":3}')
        body = c.request("stranger", "call", to="inv", path="/stock/apple", tls=True, call_timeout=5000).body
        assert body["outcome"] == "tls" and "certificate" in body["error"].lower()
        body = c.request("caller", "call", to="inv", path="/stock/apple", call_timeout=5000).body
        assert body["outcome"] == "tls" and "serves HTTPS" in body["error"]
        out = subprocess.run(["curl", "-s", "--cacert", f"{tls_dir}/ca.pem", url + "/stock/apple"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == '{"count":3}', out.stderr
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/stock/apple"],
                             capture_output=True, text=True, timeout=30)     # no CA: refused by curl
        assert out.stdout == "000"


def test_eight_clusters_with_services_never_collide_and_leave_nothing():
    before = {p.pid for p in _node_procs()}
    clusters, urls = [], []
    try:
        for i in range(8):
            c = labkit.Cluster({"inv": Inventory}, seed=i)
            clusters.append(c)
            assert c.http("inv").post(f"/stock/mark{i}", json={"n": i}).status == 201
            urls.append(c.url("inv"))
        assert len(set(urls)) == 8
        for i, url in enumerate(urls):
            out = subprocess.run(["curl", "-s", url + f"/stock/mark{i}"], capture_output=True, text=True,
                                 timeout=30).stdout
            assert json.loads(out) == {"count": i}
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  url + f"/stock/mark{(i + 1) % 8}"], capture_output=True, text=True,
                                 timeout=30).stdout
            assert out == "404"                                   # another cluster's mark is not here
        dirs = [c._rt.dir for c in clusters]
    finally:
        for c in clusters:
            c.close()
    assert all(_refused(_port(u)) for u in urls)
    assert not any(os.path.exists(d) for d in dirs)
    assert {p.pid for p in _node_procs()} <= before


def test_services_leave_when_the_notebook_is_killed(tmp_path):
    """SIGKILL the process that owns the cluster: its service nodes leave (the watchdog pipe)
    and their ports close."""
    import signal
    import time
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time, labkit\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "from httpnodes import Inventory\n"
        "c = labkit.Cluster({'inv': Inventory, 'inv2': Inventory})\n"
        "print(c.url('inv'), c.url('inv2'), *[s.pid for s in c.status().values()], flush=True)\n"
        "time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        fields = p.stdout.readline().split()
        assert len(fields) == 4, fields
        urls, pids = fields[:2], [int(x) for x in fields[2:]]
        assert not any(_refused(_port(u)) for u in urls)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(psutil.pid_exists(x) and psutil.Process(x).status()
                                                   != psutil.STATUS_ZOMBIE for x in pids):
            time.sleep(0.1)                       # bounded wait for the nodes to notice and exit
        assert not any(psutil.pid_exists(x) and psutil.Process(x).status() != psutil.STATUS_ZOMBIE for x in pids)
        # a process that is exiting closes its listening socket as it goes: wait (bounded) for it
        while time.monotonic() < deadline and not all(_refused(_port(u)) for u in urls):
            time.sleep(0.1)
        assert all(_refused(_port(u)) for u in urls)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


class _Echo(labkit.Service):
    @labkit.get("/n/{i}")
    async def n(self, ctx, req):
        return labkit.json_response({"i": int(req.match_info["i"])})


class _Sequential(labkit.Node):
    """Awaits calls one after another (each started by the round that ends the one before,
    so they run on in one task), a timed-out one among them."""

    async def on_message(self, ctx, msg):
        got = []
        for i in range(msg.body["n"]):
            to = msg.body["slow"] if i == msg.body["at"] else "echo"
            try:
                r = await ctx.http.get(to, f"/n/{i}", timeout=300 if to != "echo" else 5000)
                got.append((await r.json())["i"])
            except labkit.ServerTimeoutError:
                got.append("timeout")
        ctx.reply(msg, got=got)


def test_sequential_calls_each_get_their_own_answer_around_a_timed_out_one():
    with labkit.Cluster({"echo": _Echo, "stuck": _Echo, "me": _Sequential}, seed=3) as c:
        c.pause("stuck")                     # the kernel accepts, nobody answers: the call is cancelled
        body = c.request("me", "go", timeout=30_000, n=40, at=17, slow="stuck").body
        assert body["got"] == [*range(17), "timeout", *range(18, 40)]
        c.resume("stuck")
        sends = [e for e in c.journal.filter(kind="send") if e.node == "me" and e.dst in ("echo", "stuck")]
        delivers = [e for e in c.journal.filter(kind="deliver") if e.node == "me" and e.type == "200"]
        assert len(sends) == 40 and len(delivers) == 39
        assert {e.get("re") for e in delivers} == {e.id for e in sends if e.dst == "echo"}
