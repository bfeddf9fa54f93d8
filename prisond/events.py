"""What happened to prisons, kept for `prisonctl events` and written to the log.

Each event: {"id", "time", "prison", "kind", "text", ...}.  Kinds: started, stopped, failed,
and the limit hits oom_kill, pids_max, cpu_throttled (with "count": how many since the last
one).  A bounded ring: a slow reader misses the oldest, the daemon's memory stays flat.
"""
from __future__ import annotations

import logging
import time
from collections import deque

LIMIT_KINDS = ("oom_kill", "pids_max", "cpu_throttled")
log = logging.getLogger("prisond.prison")


class EventLog:
    def __init__(self, keep: int = 4096):
        self.items: deque[dict] = deque(maxlen=keep)
        self.last_id = 0

    def add(self, prison: str, kind: str, text: str, **data) -> dict:
        self.last_id += 1
        ev = {"id": self.last_id, "time": time.time(), "prison": prison, "kind": kind, "text": text, **data}
        self.items.append(ev)
        level = logging.WARNING if kind in LIMIT_KINDS or kind == "failed" else logging.DEBUG
        log.log(level, "%s: %s", kind, text, extra={"prison": prison})
        return ev

    def since(self, after: int = 0, prison: str | None = None, limit: int = 1000) -> list[dict]:
        out = [e for e in self.items if e["id"] > after and (prison is None or e["prison"] == prison)]
        return out[:limit]


class LimitWatch:
    """Turns a prison's cumulative counters into events: each increase of the OOM kills or the
    refused forks is one event; throttling, which goes on while a CPU hog runs, at most one
    event a minute per prison.  Pure: counters in, (kind, count) out."""

    THROTTLE_EVERY = 60.0

    def __init__(self):
        self.seen: dict[str, dict] = {}
        self.throttle_reported: dict[str, tuple[float, int]] = {}

    def check(self, prison: str, stats: dict, now: float) -> list[tuple[str, int]]:
        before = self.seen.get(prison)
        self.seen[prison] = stats
        throttled = stats.get("cpu_throttled") or 0
        if before is None:
            self.throttle_reported[prison] = (None, throttled)
            return []
        hits = []
        for key, kind in (("oom_kills", "oom_kill"), ("pids_refused", "pids_max")):
            n = (stats.get(key) or 0) - (before.get(key) or 0)
            if n > 0:
                hits.append((kind, n))
        last, count = self.throttle_reported[prison]
        n = throttled - count
        if n > 0 and (last is None or now - last >= self.THROTTLE_EVERY):
            hits.append(("cpu_throttled", n))
            self.throttle_reported[prison] = (now, throttled)
        return hits

    def forget(self, prison: str) -> None:
        self.seen.pop(prison, None)
        self.throttle_reported.pop(prison, None)
