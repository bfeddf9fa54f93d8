"""Where each prison's service output goes, line by line (engine/servicelog.py cuts the lines):

- under systemd, the journal, through its native protocol, each line with its fields:
  PRISON=, JID=, PRISOND_STREAM=out|err, PRIORITY (6 for stdout, 4 for stderr) and
  SYSLOG_IDENTIFIER=prisond, so `journalctl PRISON=web1` is one prison's log;
- otherwise a file per prison, LOG_DIR/NAME.log ("TIME STREAM text" lines), rotated by size:
  past max_bytes it becomes NAME.log.1 (.1 becomes .2, ... up to keep files).
Writes never wait on a reader: a datagram the journal does not take at once, or a write that
fails, is counted and dropped (the daemon's loop and the service go on).  `prisonctl logs`
reads either (the daemon says which: Output.where)."""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITY = {"out": "6", "err": "4"}

log = logging.getLogger("prisond.host.output")

Sink = Callable[[str, str], None]  # (stream, line)


def under_journal(env=os.environ) -> bool:
    """Is the daemon's stderr the journal (systemd sets JOURNAL_STREAM), and its socket there?"""
    return bool(env.get("JOURNAL_STREAM")) and os.path.exists(JOURNAL_SOCKET)


def journal_entry(fields: dict[str, str]) -> bytes:
    """The native protocol's datagram: KEY=value lines; a value with a newline in binary form."""
    out = bytearray()
    for key, value in fields.items():
        v = value.encode("utf-8", "replace")
        if b"\n" in v:
            out += key.encode() + b"\n" + len(v).to_bytes(8, "little") + v + b"\n"
        else:
            out += key.encode() + b"=" + v + b"\n"
    return bytes(out)


class RotatingFile:
    def __init__(self, path: str, max_bytes: int, keep: int):
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self.fd = -1
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
            self.size = os.fstat(self.fd).st_size
        if self.size + len(data) > self.max_bytes and self.size > 0:
            self.rotate()
            return self.write(data)
        os.write(self.fd, data)
        self.size += len(data)

    def rotate(self) -> None:
        self.close()
        for i in range(self.keep - 1, 0, -1):
            try:
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
            except FileNotFoundError:
                pass
        os.replace(self.path, f"{self.path}.1")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Output:
    def __init__(self, log_dir: str, max_bytes: int, keep: int, journal: bool):
        self.log_dir, self.max_bytes, self.keep, self.journal = log_dir, max_bytes, keep, journal
        self.files: dict[str, RotatingFile] = {}
        self.dropped = 0
        self._sock: socket.socket | None = None

    def where(self, name: str) -> dict:
        """Where a prison's output is: {"journal": true} or {"file": PATH}."""
        return {"journal": True} if self.journal else {"file": os.path.join(self.log_dir, f"{name}.log")}

    def sink(self, name: str, jid: int) -> tuple[Sink, bool]:
        """The sink for one prison's lines, and whether the daemon's own log should echo them
        (not under the journal: it holds them already)."""
        if self.journal:
            return (lambda stream, line: self._journal(name, jid, stream, line)), False
        return (lambda stream, line: self._file(name, stream, line)), True

    def forget(self, name: str) -> None:
        f = self.files.pop(name, None)
        if f is not None:
            f.close()

    def close(self) -> None:
        for name in list(self.files):
            self.forget(name)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _journal(self, name: str, jid: int, stream: str, line: str) -> None:
        entry = journal_entry({"MESSAGE": f"prison {name}: {line}", "PRIORITY": PRIORITY.get(stream, "6"),
                               "SYSLOG_IDENTIFIER": "prisond", "PRISON": name, "JID": str(jid),
                               "PRISOND_STREAM": stream})
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(entry, JOURNAL_SOCKET)
        except OSError:
            self.dropped += 1

    def _file(self, name: str, stream: str, line: str) -> None:
        f = self.files.get(name)
        if f is None:
            try:
                os.makedirs(self.log_dir, mode=0o750, exist_ok=True)
            except OSError:
                pass
            f = self.files[name] = RotatingFile(os.path.join(self.log_dir, f"{name}.log"), self.max_bytes, self.keep)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        try:
            f.write(f"{stamp} {stream} {line}\n".encode("utf-8", "replace"))
        except OSError as exc:
            if not self.dropped:
                log.error("cannot write %s: %s", f.path, exc.strerror)
            self.dropped += 1
