"""Course-style labkit nodes for tests/test_maelstrom_program_export.py: run natively and
exported as Maelstrom programs (python -m labkit.maelstrom.export)."""
import labkit


class Echo(labkit.Node):
    def on_message(self, ctx, msg):
        ctx.reply(msg, type="echo_ok", echo=msg.body["echo"])


class Relay(labkit.Node):
    """Asks a peer, the lin-kv service and its own timer before it answers: rpc ids, replies
    and timers all cross the export's stdin/stdout."""

    def on_start(self, ctx):
        self.ticks = 0
        ctx.set_timer("tick", after=5)

    def on_timer(self, ctx, name):
        self.ticks += 1

    async def on_message(self, ctx, msg):
        if msg.type == "get":
            ctx.reply(msg, v=ctx.id)
        elif msg.type == "relay":
            peer = await ctx.rpc(msg.body["to"], "get", timeout=2000)
            await ctx.rpc("lin-kv", "write", timeout=2000, key=ctx.id, value=msg.body["n"])
            kv = await ctx.rpc("lin-kv", "read", timeout=2000, key=ctx.id)
            await ctx.sleep(10)
            ctx.reply(msg, type="relay_ok", peer=peer.body["v"], kv=kv.body["value"],
                      ticked=self.ticks > 0, peers=[p for p in ctx.peers if p != "lin-kv"])
        elif msg.type == "boom":
            raise RuntimeError("boom")
