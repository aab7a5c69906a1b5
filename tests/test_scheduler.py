"""labkit.runtime.scheduler: the one heap behind every runtime's timers."""
from labkit.runtime.scheduler import Scheduler


def test_due_entries_come_in_time_then_scheduling_order():
    s = Scheduler()
    got = []
    for t, name in [(5, "c"), (1, "a"), (5, "d"), (3, "b")]:
        s.call_at(t, got.append, name)
    while (e := s.pop_due(4)) is not None:
        e[2](*e[3])
    assert got == ["a", "b"] and s.next_time() == 5
    while (e := s.pop_due(10)) is not None:
        e[2](*e[3])
    assert got == ["a", "b", "c", "d"] and s.next_time() is None


def test_cancelled_entries_never_run_and_are_swept():
    s = Scheduler()
    keep = [s.call_at(1000 + i, print) for i in range(10)]
    dead = [s.call_at(10 + i, print) for i in range(3000)]
    for e in dead:
        s.cancel(e)
    assert len(s) < 3010 // 2 + 1100           # swept once more than half were cancelled
    s.cancel(dead[0])                         # cancelling twice is harmless
    assert s.pop_due(999) is None             # only cancelled ones were due
    assert [s.pop_due(10**6) for _ in range(10)] == keep
