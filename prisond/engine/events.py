"""What happened to prisons, kept for `prisonctl events` and written to the log.

Each event: {"id", "time", "prison", "kind", "text", ...}.  Kinds: a prison's states: started,
adopted, exited, restarting, restarted, stopped, failed (states.py); the limit hits oom_kill,
pids_max, cpu_throttled; what the kernel layer and the shim coerced,
refused or dropped: coerced, refused, dropped (with "count": how many since the last one of
the kind, and "source": kernel or shim).  Bounded: each prison keeps its last PER_PRISON
events, so a slow reader misses the oldest, the daemon's memory stays flat, and a prison that
floods evicts only its own.  Kept on disk too (host/eventfile.py): a new daemon goes on from
the last id, and `prisonctl events --follow` across a daemon's restart.

An event's JSON form (stable; fields may be added, never changed): id (increasing across
daemons), time (Unix seconds), prison, kind, text, and for the counted kinds count and source.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

LIMIT_KINDS = ("oom_kill", "pids_max", "cpu_throttled")
AUDIT_KINDS = ("coerced", "refused", "dropped")
log = logging.getLogger("prisond.engine.prison")


PER_PRISON = 128


class EventLog:
    """past: what earlier daemons recorded (ids go on from theirs); record: where each new
    event is kept (host/eventfile.py), if anywhere."""

    def __init__(self, per_prison: int = PER_PRISON, past: Iterable[dict] = (), record=None):
        self.per_prison = per_prison
        self.by_prison: dict[str, deque[dict]] = {}
        self.last_id = 0
        self.record = record
        for ev in past:
            self._keep(ev)
            self.last_id = max(self.last_id, ev["id"])

    def _keep(self, ev: dict) -> None:
        kept = self.by_prison.get(ev["prison"])
        if kept is None:
            kept = self.by_prison[ev["prison"]] = deque(maxlen=self.per_prison)
        kept.append(ev)

    def add(self, prison: str, kind: str, text: str, **data) -> dict:
        self.last_id += 1
        ev = {"id": self.last_id, "time": time.time(), "prison": prison, "kind": kind, "text": text, **data}
        self._keep(ev)
        if self.record is not None:
            self.record(ev)
        # a failure is logged once, as an error, by the prison's change of state
        level = logging.WARNING if kind in LIMIT_KINDS else logging.INFO if kind in AUDIT_KINDS else logging.DEBUG
        log.log(level, "%s: %s", kind, text, extra={"prison": prison})
        return ev

    def since(self, after: int = 0, prison: str | None = None, limit: int = 1000) -> list[dict]:
        """Events after id `after`, oldest first: only the prisons with newer ones are looked at,
        each from its newest back (what `events --follow` asks twice a second)."""
        shares = [self.by_prison.get(prison, deque())] if prison is not None else list(self.by_prison.values())
        out = []
        for kept in shares:
            if kept and kept[-1]["id"] > after:
                for ev in reversed(kept):
                    if ev["id"] <= after:
                        break
                    out.append(ev)
        out.sort(key=lambda e: e["id"])
        return out[:limit]


# counter -> (event kind, seconds between two events of that kind for one prison: 0 = each)
WATCHED = {
    "oom_kills": ("oom_kill", 0),
    "pids_refused": ("pids_max", 0),
    "cpu_throttled": ("cpu_throttled", 60.0),  # goes on while a CPU hog runs
    "rewritten": ("coerced", 10.0),            # the kernel layer's counters
    "denied": ("refused", 10.0),
    "egress_dropped": ("dropped", 10.0),
    "ingress_dropped": ("dropped", 10.0),
}


class CounterWatch:
    """Turns a prison's cumulative counters into events: an increase is reported at once, then
    at most once per the kind's period, with how many since the last report.  Pure: counters
    in, (kind, counter, count) out."""

    def __init__(self, watched: dict = WATCHED):
        self.watched = watched
        self.reported: dict[str, dict[str, tuple[float | None, int]]] = {}

    def check(self, prison: str, counters: dict, now: float) -> list[tuple[str, str, int]]:
        seen = self.reported.get(prison)
        if seen is None:  # first sight: what happened before is not news
            self.reported[prison] = {k: (None, counters.get(k) or 0) for k in self.watched}
            return []
        hits = []
        for key, (kind, every) in self.watched.items():
            value = counters.get(key)
            if value is None:
                continue
            last, count = seen[key]
            n = value - count
            if n > 0 and (last is None or every == 0 or now - last >= every):
                hits.append((kind, key, n))
                seen[key] = (now, value)
            elif n < 0:  # counters started again (a new cgroup)
                seen[key] = (last, value)
        return hits

    def forget(self, prison: str) -> None:
        self.reported.pop(prison, None)


class RoundRobin:
    """At most `budget` items per call, taking turns: next(items) gives the next slice of the
    current list (which may change between calls), wrapping around.  Pure."""

    def __init__(self, budget: int):
        self.budget = budget
        self.pos = 0
        self.wrapped = False  # the last slice reached the end of the list

    def next(self, items: list) -> list:
        if len(items) <= self.budget:
            self.pos, self.wrapped = 0, True
            return list(items)
        start = self.pos % len(items)
        out = items[start:start + self.budget]
        if len(out) < self.budget:
            out += items[:self.budget - len(out)]
        self.pos = start + self.budget
        self.wrapped = self.pos >= len(items)
        if self.wrapped:
            self.pos -= len(items)
        return out
