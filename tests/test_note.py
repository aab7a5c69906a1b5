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


def test_note_line_matches_the_generic_encoding_and_reloads():
    import json
    from labkit.journal import Event, event_line, Journal
    ctx = FakeContext()
    ctx.note("apply", index=7, command={"op": "write", "key": "x", "value": [1, "é"]})
    ctx.note("empty")
    for ev in [e for e in ctx.events if e.kind == "note"]:
        line = event_line(ev)
        assert json.loads(line) == Event.from_dict(json.loads(line)).to_dict() == json.loads(
            json.dumps(ev.to_dict()))
    notes = [e for e in ctx.events if e.kind == "note"]
    assert notes[0]["command"]["value"] == [1, "é"] and notes[1].data == {"what": "empty"}


@pytest.mark.parametrize("field", ["what", "t", "kind", "node", "id"])
def test_note_reserved_field_names(field):
    with pytest.raises(TypeError, match="reserved"):
        FakeContext().note("x", **{field: 1})
