"""The event log: each prison's share, and reading after an id."""
from prisond.engine.events import EventLog


def test_a_prison_that_floods_evicts_only_its_own():
    log = EventLog(per_prison=4)
    log.add("quiet", "started", "jid 1")
    for i in range(100):
        log.add("loud", "refused", f"#{i}")
    assert [e["text"] for e in log.since(0, "quiet")] == ["jid 1"]
    assert [e["text"] for e in log.since(0, "loud")] == ["#96", "#97", "#98", "#99"]
    assert [e["prison"] for e in log.since(0)] == ["quiet", "loud", "loud", "loud", "loud"]


def test_since_an_id_in_order_across_prisons():
    log = EventLog()
    for i in range(6):
        log.add("ab"[i % 2], "k", str(i))
    assert [e["text"] for e in log.since(3)] == ["3", "4", "5"]
    assert [e["text"] for e in log.since(0, "b", limit=2)] == ["1", "3"]
    assert log.since(log.last_id) == [] and log.since(0, "nosuch") == []


def test_round_robin_takes_turns_within_its_budget():
    from prisond.engine.events import RoundRobin
    turn = RoundRobin(4)
    items = list(range(10))
    slices = [turn.next(items) for _ in range(3)]
    assert slices == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]] and turn.wrapped
    assert turn.next(items[:6]) == [2, 3, 4, 5]  # the list shrank: it goes on from where it was
    assert turn.next([1, 2]) == [1, 2] and turn.wrapped  # within the budget: all, every time
