"""Raw aiohttp baseline for ``http_rtt.py``: an aiohttp server and client in two plain Python
processes, no labkit in between.

    python _raw_http.py server PORTFILE       # aiohttp web.Application on 127.0.0.1:0, GET /ping -> "pong"
    python _raw_http.py client PORT N WARMUP  # N sequential GETs on one ClientSession; prints JSON

The server leaves when its stdin closes. Timing uses ``time.monotonic``, as labkit's does.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time


async def _server(portfile: str) -> None:
    from aiohttp import web

    async def ping(request):
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(portfile + ".tmp", portfile)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done
    await runner.cleanup()


async def _client(port: int, n: int, warmup: int) -> None:
    import aiohttp
    url = f"http://127.0.0.1:{port}/ping"
    clock = time.monotonic
    samples = []
    cpu0 = time.process_time()
    async with aiohttp.ClientSession() as s:
        for i in range(warmup + n):
            t0 = clock()
            async with s.get(url) as r:
                await r.read()
            if i >= warmup:
                samples.append(round((clock() - t0) * 1e6, 1))
    print(json.dumps({"samples": samples, "cpu_s": time.process_time() - cpu0}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(_server(sys.argv[2]))
    else:
        asyncio.run(_client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
