"""A prison's service output, line by line, into the daemon's log with the prison's name.

Services write to pipes their prison's init holds and reads; init passes the bytes on as they
come (initlink.py), never waiting for the daemon, so a service never blocks on its output.
Here the bytes become lines: a line is cut at MAX_LINE, and a prison that writes faster than
RATE lines a second has the rest counted, not logged, so that one prison's flood costs the
daemon a bounded share.  Lines are made printable (text.printable): no terminal sequence
reaches whoever reads the log.  Pure but for the logging.
"""
from __future__ import annotations

import logging
import time

from prisond.model.text import printable

MAX_LINE = 4096
RATE = 1000  # lines a second per prison

log = logging.getLogger("prisond.service")


class ServiceLog:
    def __init__(self, name: str, *, label: str = "", rate: int = RATE, clock=time.monotonic,
                 sink=None, echo: bool = True):
        self.name = name
        self.sink = sink  # where each line goes besides (or instead of) the daemon's log (host/output.py)
        self.echo = echo
        self.label = f"{label}: " if label else ""  # a host hook's lines: "exec.prestart: ..."
        self.rate = rate
        self.clock = clock
        self.partial = {"out": b"", "err": b""}
        self.second, self.logged, self.dropped = 0, 0, 0

    def feed(self, stream: str, data: bytes, dropped_bytes: int = 0) -> None:
        """Bytes from a stream; dropped_bytes: what init could not pass on before these."""
        if dropped_bytes:
            log.warning("%d bytes of %s lost while no daemon listened", dropped_bytes, stream,
                        extra={"prison": self.name})
        buf = self.partial.get(stream, b"") + data
        *lines, rest = buf.split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[stream] = rest
        for line in lines:
            self._line(stream, line[:MAX_LINE])

    def close(self) -> None:
        """A last line without its newline, and the count of what was dropped."""
        for stream, rest in self.partial.items():
            if rest:
                self._line(stream, rest)
        self.partial = {"out": b"", "err": b""}
        self._report_dropped()

    def _line(self, stream: str, raw: bytes) -> None:
        now = int(self.clock())
        if now != self.second:
            self._report_dropped()
            self.second, self.logged = now, 0
        if self.logged >= self.rate:
            self.dropped += 1
            return
        self.logged += 1
        text = printable(raw.rstrip(b"\r").decode("utf-8", "replace"))
        if self.sink is not None:
            self.sink(stream, self.label + text)
        if self.echo:
            log.info("%s%s", self.label, text, extra={"prison": self.name, "stream": stream})

    def _report_dropped(self) -> None:
        if self.dropped:
            log.warning("%d lines of output dropped (more than %d a second)", self.dropped, self.rate,
                        extra={"prison": self.name})
            self.dropped = 0
