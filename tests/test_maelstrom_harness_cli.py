"""Gossip Glomers presets and the ``python -m labkit.maelstrom`` command line (simulator)."""
from __future__ import annotations

import pytest

import labkit.maelstrom as m
import maelstromnodes as mn
from labkit.maelstrom.__main__ import USAGE_ERROR, main


def test_preset_numbers_are_the_published_ones():
    p1, p2 = m.PRESETS["broadcast-efficiency"], m.PRESETS["broadcast-efficiency-2"]
    for p in (p1, p2):
        assert p.options == {"node_count": 25, "time_limit": 20.0, "rate": 100.0, "latency": 100.0}
    assert [(t.name, t.limit) for t in p1.targets] == [("msgs-per-op", 30), ("median latency", 400),
                                                        ("maximum latency", 600)]
    assert [(t.name, t.limit) for t in p2.targets] == [("msgs-per-op", 20), ("median latency", 1000),
                                                        ("maximum latency", 2000)]
    u = m.PRESETS["unique-ids"]
    assert u.options["availability"] == "total" and u.options["nemesis"] == ("partition",)
    assert u.options["rate"] == 1000 and u.options["node_count"] == 3 and u.options["time_limit"] == 30
    assert m.PRESETS["g-counter"].options["nemesis"] == ("partition",)
    assert m.PRESETS["kafka-multi"].test_kwargs()["concurrency"] == 4      # --concurrency 2n, 2 nodes
    assert "--node-count 25 --time-limit 20 --rate 100 --latency 100" in p1.command


def test_efficiency_presets_pass_and_fail_against_the_targets():
    eager = m.run_preset("broadcast-efficiency", mn.FlatGossip, seed=3)
    assert eager.passed is True, str(eager)
    mpo, ok = eager.targets["msgs-per-op"]
    assert ok and 20 < mpo < 30                       # 24 peers, each acknowledging: ~24 per op
    lazy2 = m.run_preset("broadcast-efficiency-2", mn.LazyFlatGossip, seed=3)
    assert lazy2.passed is True, str(lazy2)
    assert lazy2.targets["msgs-per-op"][0] < 20 and 400 < lazy2.targets["median latency"][0] < 1000
    # batching once a second is too slow for part I; grid gossip relays too slowly for it too
    assert m.run_preset("broadcast-efficiency", mn.LazyFlatGossip, seed=3).targets["median latency"][1] is False
    grid = m.run_preset("broadcast-efficiency", mn.Gossip, seed=3)
    assert grid.passed is False and grid.result.valid is True
    assert "FAIL" in str(grid) and "maximum latency" in str(grid)


def test_other_presets_run():
    assert m.run_preset("echo", mn.Echo, seed=1, time_limit=3).passed is True
    assert m.run_preset("unique-ids", mn.UniqueIds, seed=1, time_limit=5).passed is True
    assert m.run_preset("broadcast-fault-tolerant", mn.Gossip, seed=1).passed is True
    assert m.run_preset("broadcast-fault-tolerant", mn.NoGossip, seed=1).passed is False
    assert m.run_preset("g-counter", mn.KVCounter, seed=1, time_limit=8).passed is True
    with pytest.raises(KeyError, match="unknown preset 'broadcast-3d'"):
        m.run_preset("broadcast-3d", mn.Gossip)


def cli(*args: str) -> int:
    return main(["test", *args])


def test_cli_exit_codes(capsys):
    assert cli("-w", "broadcast", "--node", "maelstromnodes:Gossip", "--node-count", "3", "--time-limit", "4",
               "--rate", "20", "--latency", "10", "--nemesis", "partition", "--nemesis-interval", "1",
               "--seed", "1", "--quiet", "1") == 0
    out = capsys.readouterr().out
    assert "Everything looks good" in out and "nemesis partition" in out
    assert cli("-w", "broadcast", "--node", "maelstromnodes:NoGossip", "--node-count", "3", "--time-limit", "3",
               "--rate", "20", "--seed", "1", "--quiet", "1") == 1
    assert "lost" in capsys.readouterr().out
    assert cli("--preset", "broadcast-efficiency", "--node", "maelstromnodes:FlatGossip", "--seed", "2") == 0
    assert "#3d Efficient Broadcast, Part I" in capsys.readouterr().out
    assert cli("-w", "echo", "--node", "maelstromnodes:Echo", "--node-count", "2", "--concurrency", "3n",
               "--time-limit", "1", "--rate", "10", "--log-stderr", "--seed", "1", "--services", "lin-tso") == 0
    assert "echo: 2 nodes" in capsys.readouterr().out


class TiredCounter(mn.PNCounter):
    """Refuses reads (error 11, definite) after 2 s: no final read succeeds."""

    def on_message(self, ctx, msg):
        if msg.type == "read" and ctx.now > 2000:
            ctx.reply(msg, type="error", code=11, text="tired")
        else:
            super().on_message(ctx, msg)


def test_cli_unknown_result_exits_2(capsys):
    # reads succeed early on, so the stats pass, but no final read does: the counter
    # checker cannot decide
    assert cli("-w", "pn-counter", "--node", "test_maelstrom_harness_cli:TiredCounter", "--node-count", "2",
               "--time-limit", "3", "--rate", "20", "--quiet", "1", "--seed", "1") == 2
    out = capsys.readouterr().out
    assert "no ok final reads" in out and ":valid? None  exit code 2" in out


@pytest.mark.parametrize("args,needle", [
    (("-w", "broadcast", "--node", "maelstromnodes:Gossip", "--nemesis", "partition,bogus"), "bogus"),
    (("-w", "broadcast", "--node", "maelstromnodes:Gossip", "--topology", "star"), "star"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--key-count", "3"), "unknown option(s) --key-count for workload 'echo'"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--concurrency", "lots"), "--concurrency"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--concurrency", "0n"), "--concurrency"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--availability", "most"), "--availability"),
    (("-w", "echo", "--node", "nosuchmodule:Echo"), "nosuchmodule"),
    (("-w", "echo"), "--bin"),
    (("-w", "echo", "--bin", "/nonexistent/prog"), "/nonexistent/prog"),
    (("--node", "maelstromnodes:Echo",), "--workload"),
    (("--preset", "nope", "--node", "maelstromnodes:Echo"), "unknown --preset 'nope'"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--time-limit", "-1"), "--time-limit must be"),
    # the command line's words, not the Python keywords (was "node_count must be ...")
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--time-limit", "0"), "--time-limit must be"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--node-count", "0"), "--node-count must be"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--rate", "0"), "--rate must be"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--latency", "-5"), "--latency must be"),
    (("-w", "echo", "--bin", "/nonexistent/prog"), "--bin: no such file"),
    (("-w", "echo", "--node", "maelstromnodes:Echo", "--services", "lin-kv,redis"), "unknown service(s) ['redis']"),
])
def test_cli_bad_options_name_the_option(capsys, args, needle):
    assert cli(*args) == USAGE_ERROR
    assert needle in capsys.readouterr().err


def test_cli_argparse_errors_use_the_usage_code(capsys):
    with pytest.raises(SystemExit) as e:
        cli("-w", "gossip", "--node", "maelstromnodes:Echo")
    assert e.value.code == USAGE_ERROR
    assert "invalid choice: 'gossip'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli("-w", "echo", "--node-count", "three")
    assert e.value.code == USAGE_ERROR


def test_cli_suggests_a_scripts_own_interpreter(tmp_path, capsys):
    script = tmp_path / "node.sh"
    script.write_text("#!/bin/sh\nexec cat\n")          # not executable
    assert cli("-w", "echo", "--bin", str(script)) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "is not executable: `chmod +x` it" in err and f"['sh', '{script}']" in err
