import labkit, pytest
from labkit.testing import FakeContext
from labkit.errors import MessageError

class N(labkit.Node):
    def on_start(self, ctx):
        ctx.note("leader", term=3, log=[1, 2])
        ctx.set_timer("t", after=5)
    def on_timer(self, ctx, name):
        ctx.note("tick")

def test_note_in_both_runtimes():
    for rt in ("sim", "processes"):
        with labkit.Cluster(N, n=2, runtime=rt, seed=1) as c:
            c.run_for(0.05)
            notes = c.journal.filter(kind="note")
            assert [e.get("what") for e in notes if e.node == "n1"] == ["leader", "tick"], rt
            assert notes[0].get("term") == 3 and notes[0].get("log") == [1, 2]

def test_note_bad_input():
    ctx = FakeContext()
    with pytest.raises(TypeError):
        ctx.note("")
    with pytest.raises(MessageError, match="set"):
        ctx.note("x", s={1})
