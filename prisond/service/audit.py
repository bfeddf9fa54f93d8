"""The shim's reports of what it coerced or refused: datagrams on `events.sock` beside the
control socket, turned into events of the sender's prison.

The sender is the kernel's word, not the datagram's (SO_PASSCRED: the pid, then its cgroup),
so a process cannot report for another prison.  Reading never blocks the loop, a datagram is
at most 512 bytes, and each prison gets at most RATE events a second (the rest are counted in
the next event's "suppressed"): a program that loops on a refused call costs the daemon little
and the shim nothing (it sends without waiting).  Reading itself is bounded: BUDGET datagrams a
second in all, the sender's prison remembered for a second (no /proc read per datagram).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket

from prisond.service.control import refuse_descriptors
import struct
import time

log = logging.getLogger("prisond.service.audit")
RATE = 20
KINDS = ("coerced", "refused")


def parse(data: bytes) -> tuple[str, str] | None:
    """b"coerced bind 0.0.0.0 -> 127.0.2.1" -> ("coerced", "bind 0.0.0.0 -> 127.0.2.1"). Pure."""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    kind, _, rest = text.partition(" ")
    if kind not in KINDS or not rest or not rest.isprintable():
        return None
    return kind, rest[:200]


BUDGET = 2000      # datagrams read a second, all prisons together: the rest waits in the socket
PID_TTL = 1.0      # seconds a sender's prison is remembered (one /proc read per flood, not per datagram)


class AuditSocket:
    loop: asyncio.AbstractEventLoop  # set by start

    def __init__(self, path: str, prison_of, emit, *, budget: int = BUDGET):
        """prison_of(pid) -> name or None; emit(name, kind, text, **data)."""
        self.path = path
        self.prison_of = prison_of
        self.emit = emit
        self.budget = budget
        self.sock: socket.socket | None = None
        self.window: dict[str, tuple[int, int, int]] = {}  # prison -> (second, sent, suppressed)
        self.senders: dict[int, tuple[float, str | None]] = {}  # pid -> (when, prison)
        self.second, self.read = 0, 0
        self.paused = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        refuse_descriptors(s)  # a datagram with a lingering socket in it stalled the loop (control.py)
        s.bind(self.path)
        os.chmod(self.path, 0o666)  # any prison process, of any uid, may report
        self.sock = s
        self.loop = loop
        loop.add_reader(s.fileno(), self._readable)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock:
            if not self.paused:
                loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _readable(self) -> None:
        """At most `budget` datagrams a second: beyond it the socket is not read until the next
        second, the kernel's buffer fills and the shims' sends (never waiting) are dropped, so
        a flood costs the daemon a bounded share of a CPU."""
        sock = self.sock
        if sock is None:
            return
        for _ in range(256):  # then let the loop breathe; the rest stays queued
            now_s = int(time.monotonic())
            if now_s != self.second:
                self.second, self.read = now_s, 0
            if self.read >= self.budget:
                self._pause()
                return
            try:
                data, anc, _, _ = sock.recvmsg(512, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("events socket: %s", exc)
                return
            self.read += 1
            pid = next((struct.unpack("3i", d)[0] for level, kind, d in anc
                        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(d) >= 12), None)
            what = parse(data)
            name = self._sender(pid) if pid and what else None
            if what is None or name is None:
                continue  # not a prison's, or not a report
            now = now_s
            second, sent, suppressed = self.window.get(name, (now, 0, 0))
            if second != now:
                second, sent = now, 0
            if sent >= RATE:
                self.window[name] = (second, sent, suppressed + 1)
                continue
            self.window[name] = (second, sent + 1, 0)
            extra = {"suppressed": suppressed} if suppressed else {}
            self.emit(name, what[0], f"shim: {what[1]}", source="shim", pid=pid, **extra)

    def _sender(self, pid: int) -> str | None:
        """The sender's prison, remembered for PID_TTL: an event names the prison, nothing is
        decided on it (the shim reports what it did; the kernel's credentials say who)."""
        now = time.monotonic()
        hit = self.senders.get(pid)
        if hit and now - hit[0] < PID_TTL:
            return hit[1]
        if len(self.senders) > 4096:
            self.senders.clear()
        name = self.prison_of(pid)
        self.senders[pid] = (now, name)
        return name

    def _pause(self) -> None:
        if not self.paused and self.sock is not None:
            self.paused = True
            self.loop.remove_reader(self.sock.fileno())
            self.loop.call_later(1.0 - (time.monotonic() % 1.0), self._resume)

    def _resume(self) -> None:
        self.paused = False
        if self.sock is not None:
            self.loop.add_reader(self.sock.fileno(), self._readable)
