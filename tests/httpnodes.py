"""Services and callers for the HTTP tests (a module, so node processes can import them)."""
from __future__ import annotations

import ssl

import labkit


class Inventory(labkit.Service):
    """A small stock service: routes of every kind, plus a message handler (it is a Node too)."""

    def __init__(self, cert_dir: str | None = None) -> None:
        self.cert_dir = cert_dir

    def on_start(self, ctx):
        self.stock = {"apple": 3}
        ctx.set_timer("tick", after=10_000)

    def on_message(self, ctx, msg):
        if msg.type == "count":
            ctx.reply(msg, n=self.stock.get(msg.body["item"]))

    @labkit.get("/stock/{item}")
    async def get_stock(self, ctx, req):
        n = self.stock.get(req.match_info["item"])
        if n is None:
            raise labkit.HTTPNotFound(text="no such item")
        return labkit.json_response({"count": n})

    @labkit.post("/stock/{item}")
    async def add_stock(self, ctx, req):
        body = await req.json()
        item = req.match_info["item"]
        self.stock[item] = self.stock.get(item, 0) + body["n"]
        ctx.storage[item] = self.stock[item]
        return labkit.json_response({"count": self.stock[item]}, status=201)

    @labkit.get(r"/slow/{ms:\d+}")
    async def slow(self, ctx, req):
        await ctx.sleep(int(req.match_info["ms"]))
        return labkit.Response(text="slow")

    @labkit.get("/boom")
    async def boom(self, ctx, req):
        return {}["missing"]

    @labkit.get("/echo")
    async def echo(self, ctx, req):
        return labkit.json_response({"remote": req.remote, "query": dict(req.query),
                                     "x": req.headers.get("x-test"), "method": req.method})

    @labkit.put("/ready/{flag}")
    async def set_ready(self, ctx, req):
        ctx.ready(req.match_info["flag"] == "1")
        return labkit.Response(status=204)

    def ssl_context(self, ctx):
        if self.cert_dir is None:
            return None
        s = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        s.load_cert_chain(f"{self.cert_dir}/server.pem")
        return s


class Caller(labkit.Node):
    """A client-only (plain) node: on a "call" message, makes the HTTP call described and
    replies with the outcome class: ok / 5xx / timeout / refused / reset / tls."""

    def __init__(self, cafile: str | None = None) -> None:
        self.cafile = cafile
        self._ssl = None

    async def on_message(self, ctx, msg):
        if msg.type != "call":
            return
        b = msg.body
        kw = {}
        if b.get("tls"):
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self.cafile)
            kw["ssl"] = self._ssl
        t0 = ctx.now
        try:
            r = await ctx.http.request(b.get("method", "GET"), b["to"], b["path"], json=b.get("json"),
                                       timeout=b.get("call_timeout", 300), **kw)
            ctx.reply(msg, outcome="ok" if r.status < 500 else "5xx", status=r.status, body=await r.text(),
                      ms=ctx.now - t0)
        except labkit.ServerTimeoutError as e:
            ctx.reply(msg, outcome="timeout", error=str(e), ms=ctx.now - t0)
        except labkit.ClientSSLError as e:
            ctx.reply(msg, outcome="tls", error=str(e))
        except labkit.ClientConnectorError as e:
            ctx.reply(msg, outcome="refused", error=str(e), ms=ctx.now - t0)
        except labkit.ServerDisconnectedError as e:
            ctx.reply(msg, outcome="reset", error=str(e), ms=ctx.now - t0)


class Proxy(labkit.Service):
    """A service that calls another service (both sides of HTTP in one node)."""

    @labkit.get("/via/{item}")
    async def via(self, ctx, req):
        try:
            r = await ctx.http.get("inv", f"/stock/{req.match_info['item']}", timeout=200)
        except labkit.ServerTimeoutError:
            raise labkit.HTTPGatewayTimeout(text="inventory timed out")
        except labkit.ClientConnectionError:
            raise labkit.HTTPBadGateway(text="inventory unreachable")
        return labkit.json_response(await r.json(content_type=None), status=r.status)


class SlowStart(labkit.Service):
    """A service whose ``on_start`` takes a while (it loads its data, say)."""

    def on_start(self, ctx):
        import time
        time.sleep(0.3)            # real start-up work, blocking like a data load would
        self.loaded = True

    @labkit.get("/loaded")
    async def loaded_(self, ctx, req):
        return labkit.json_response({"loaded": self.loaded})


class CallsAtStart(labkit.Node):
    """Calls the ``slow`` service from its own ``on_start`` and keeps what happened."""

    async def on_start(self, ctx):
        try:
            r = await ctx.http.get("slow", "/loaded", timeout=5000)
            ctx.storage["outcome"] = [r.status, await r.json()]
        except labkit.ClientConnectionError as e:
            ctx.storage["outcome"] = [type(e).__name__, str(e)]

    def on_message(self, ctx, msg):
        if msg.type == "outcome":
            ctx.reply(msg, outcome=ctx.storage.get("outcome"))


class Paths(labkit.Service):
    """Shows what a handler sees of the request target (percent-encoding parity)."""

    @labkit.get("/item/{name}")
    async def item(self, ctx, req):
        return labkit.json_response({"path": req.path, "match": req.match_info, "qs": req.query_string,
                                     "query": [list(kv) for kv in req.query.items()]})

    @labkit.get("/q")
    async def q(self, ctx, req):
        return await self.item(ctx, req)
