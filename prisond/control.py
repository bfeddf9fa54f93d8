"""The control socket server: bounded lines, bounded clients, answers in request order.

Malformed input gets an error reply; an oversized line or an idle half-request ends only
that connection; nothing a client sends can stop the daemon or delay other clients.

A connection is an asyncio Protocol: lines are cut from what arrives and answered at once
when the method is synchronous (every read), so a request costs no task and no coroutine;
a method that waits (start, stop, reload) is run in a task, and the lines after it on that
connection wait for it, so that replies keep the order of the requests.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct

from .api import Peer
from .errors import PrisonError, ProtocolError
from .protocol import MAX_LINE, decode_request, reply_error, reply_ok

log = logging.getLogger("prisond.control")

MAX_CLIENTS = 2048
IDLE_TIMEOUT = 30.0
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
HIGH_WATER = 256 * 1024  # replies a client does not read: stop reading its requests beyond this
MAX_QUEUED = 256  # lines queued behind a method that waits: stop reading beyond this


class ControlServer:
    def __init__(self, path: str, handler, *, mode: int = 0o660, gid: int | None = None,
                 max_clients: int = MAX_CLIENTS, idle_timeout: float = IDLE_TIMEOUT, prison_of=lambda pid: None):
        """handler(request, peer) -> a result, or a coroutine that gives one."""
        self.path = path
        self.handler = handler
        self.prison_of = prison_of
        self.mode = mode
        self.gid = gid
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.clients = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        _remove_stale(self.path)
        loop = asyncio.get_running_loop()
        old = os.umask(0o077)
        try:
            self._server = await loop.create_unix_server(lambda: _Connection(self), self.path, backlog=1024)
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.path, 0, self.gid)
        os.chmod(self.path, self.mode)

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def answer(self, line: bytes, peer: Peer):
        """The reply to one line: bytes, or a coroutine giving them (a method that waits)."""
        rid = None
        try:
            req = decode_request(line)
            rid = req.id
            result = self.handler(req, peer)
        except PrisonError as exc:
            return reply_error(getattr(exc, "request_id", rid), exc)
        except Exception as exc:  # a bug answers this request with an error, and nothing else
            log.exception("internal error handling a request")
            return reply_error(rid, PrisonError(f"internal error: {type(exc).__name__}", "internal"))
        if asyncio.iscoroutine(result):
            return self._finish(rid, result)
        return reply_ok(rid, result)

    async def _finish(self, rid, coro) -> bytes:
        try:
            return reply_ok(rid, await coro)
        except PrisonError as exc:
            return reply_error(getattr(exc, "request_id", rid), exc)
        except Exception as exc:
            log.exception("internal error handling a request")
            return reply_error(rid, PrisonError(f"internal error: {type(exc).__name__}", "internal"))


class _Connection(asyncio.Protocol):
    def __init__(self, server: ControlServer):
        self.server = server
        self.buf = bytearray()
        self.lines: collections.deque[bytes] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.waiting = False  # a method that waits is running: later lines queue behind it
        self.closing = False
        self.write_paused = False
        self.active = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport
        srv = self.server
        srv.clients += 1
        if srv.clients > srv.max_clients:
            transport.write(reply_error(None, PrisonError("too many clients", "busy")))
            self._close()
            return
        try:
            self.peer = _peer(transport.get_extra_info("socket"), srv.prison_of)
        except OSError:
            self._close()
            return
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self._arm()

    def connection_lost(self, exc) -> None:
        self.server.clients -= 1
        self.closing = True
        if self.timer:
            self.timer.cancel()

    def _arm(self) -> None:
        """Drop a connection that sends nothing (or half a request) for idle_timeout: one timer
        per connection, which looks at the last activity when it fires (no new timer per line)."""
        self.active = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_later(self.server.idle_timeout, self._idle)

    def _idle(self) -> None:
        left = self.active + self.server.idle_timeout - self.loop.time()
        if left > 0 or self.waiting:
            self.timer = self.loop.call_later(max(left, 1.0), self._idle)
        elif self.transport and not self.closing:
            self.transport.abort()

    def _close(self) -> None:
        self.closing = True
        if self.timer:
            self.timer.cancel()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buf += data
        end = self.buf.find(b"\n")
        while 0 <= end <= MAX_LINE:
            line = bytes(self.buf[:end + 1])
            del self.buf[:end + 1]
            if line.strip():
                self.lines.append(line)
            end = self.buf.find(b"\n")
        self._flush()
        if len(self.lines) > MAX_QUEUED:  # behind a start or a reload: read more when it is done
            self.transport.pause_reading()
        if end > MAX_LINE or (end < 0 and len(self.buf) > MAX_LINE):
            self.transport.write(reply_error(None, ProtocolError(f"request longer than {MAX_LINE} bytes",
                                                                 "too_large")))
            self._close()
            return
        self._arm()

    def _flush(self) -> None:
        """Answer queued lines in order, until one needs to wait."""
        while self.lines and not self.waiting and not self.closing:
            reply = self.server.answer(self.lines.popleft(), self.peer)
            if isinstance(reply, bytes):
                self.transport.write(reply)
            else:
                self.waiting = True
                task = self.loop.create_task(reply)
                task.add_done_callback(self._resume)

    def _resume(self, task: asyncio.Task) -> None:
        self.waiting = False
        if self.closing or task.cancelled():
            return
        self.transport.write(task.result())
        self._arm()
        self._flush()
        if not self.waiting and not self.closing and not self.write_paused:
            self.transport.resume_reading()

    def pause_writing(self) -> None:  # the client does not read its replies: stop reading its requests
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.waiting:
            self.transport.resume_reading()


def _peer(sock, prison_of) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        groups = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
        gids = struct.unpack(f"{len(groups) // 4}I", groups)
    except OSError:  # more than 256 groups, or an old kernel: the primary group only
        gids = ()
    return Peer(pid, uid, gid, gids, prison_of(pid))


def _remove_stale(path: str) -> None:
    """A socket file nobody answers on is left from a dead daemon; a live one is an error."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise PrisonError(f"another prisond is already serving {path}", "busy")
