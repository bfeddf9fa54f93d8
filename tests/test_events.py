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
