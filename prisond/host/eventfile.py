"""The event log on disk, so that events outlive the daemon (a restart, a crash, an upgrade):
one JSON object a line in STATE_DIR/events.jsonl, the form `prisonctl events --json` prints.
Bounded: past MAX_BYTES the file becomes events.jsonl.1 (the one before is dropped), so the
disk holds at most twice that.  A line a daemon died in the middle of is skipped."""
from __future__ import annotations

import json
import logging
import os
from typing import TextIO

NAME = "events.jsonl"
MAX_BYTES = 1 << 20

log = logging.getLogger("prisond.host.eventfile")


class EventFile:
    def __init__(self, directory: str, max_bytes: int = MAX_BYTES):
        self.path = os.path.join(directory, NAME)
        self.max_bytes = max_bytes
        self._fh: TextIO | None = None

    def load(self) -> list[dict]:
        """What earlier daemons recorded, oldest first."""
        out = []
        for path in (self.path + ".1", self.path):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        try:
                            ev = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(ev, dict) and isinstance(ev.get("id"), int):
                            out.append(ev)
            except FileNotFoundError:
                continue
        return out

    def append(self, ev: dict) -> None:
        try:
            fh = self._fh
            if fh is None:  # root's and its group's only (public_read may be false), never through a link
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
                fh = self._fh = os.fdopen(fd, "a", encoding="utf-8")
            fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
            fh.flush()
            if fh.tell() > self.max_bytes:
                fh.close()
                self._fh = None
                os.replace(self.path, self.path + ".1")
        except OSError as exc:
            log.error("cannot record an event in %s: %s", self.path, exc.strerror)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
