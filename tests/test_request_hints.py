"""A request that gets no reply says why when labkit knows it (issue 19, item 8): the node is
down or paused -- not a guess at its handler."""
from __future__ import annotations

import pytest

import labkit


class Quiet(labkit.Node):
    def on_message(self, ctx, msg):
        if msg.type == "ping":
            ctx.reply(msg)                  # "ignore" gets no reply: the handler's fault


@pytest.mark.parametrize("runtime", ["sim", pytest.param("processes", marks=pytest.mark.processes)])
def test_no_reply_names_what_labkit_knows(runtime):
    with labkit.Cluster(Quiet, n=2, runtime=runtime, seed=1) as c:
        c.run_for(0.05)
        with pytest.raises(labkit.RequestTimeout) as up:
            c.request("n1", "ignore", timeout=50)
        assert "on_message" in str(up.value)                     # up: the handler is the suspect

        c.pause("n1")
        with pytest.raises(labkit.RequestTimeout) as paused:
            c.request("n1", "ping", timeout=50)
        assert "paused" in str(paused.value) and "cluster.resume('n1')" in str(paused.value)
        assert "on_message" not in str(paused.value)
        c.resume("n1")

        c.kill("n2")
        with pytest.raises((labkit.RequestTimeout, labkit.NodeCrashed)) as down:   # (or fails fast)
            c.request("n2", "ping", timeout=50)
        assert "n2" in str(down.value) and "down" in str(down.value)
        assert "cluster.restart('n2')" in str(down.value) and "on_message" not in str(down.value)
