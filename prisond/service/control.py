"""The control socket server: bounded lines, bounded clients, answers in request order.

Malformed input gets an error reply; an oversized line or an idle half-request ends only
that connection; nothing a client sends can stop the daemon or delay other clients.

Each connection's caller is judged once, at accept (peer.py), and belongs to a principal: the
host (operators and readers) or one prison.  Each principal has its own share: a number of
connections, and for prisons small lines, small buffers and a request rate, so that a prison
that floods the daemon slows only itself, and an operator always gets through.

A connection is an asyncio Protocol: lines are cut from what arrives and answered at once
when the method is synchronous (every read), so a request costs no task and no coroutine;
a method that waits (start, stop, reload) is run in a task, and the lines after it on that
connection wait for it, so that replies keep the order of the requests.  prison.exec is a
session (api.ExecSession): its first reply carries descriptors, and exec.signal lines are
answered while it runs.
"""
from __future__ import annotations

import array
import asyncio
import collections
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from prisond.model.errors import PrisonError, ProtocolError
from prisond.model.protocol import JAILED_OK, MAX_LINE, SESSION_METHODS, decode_request, reply_error, reply_ok

log = logging.getLogger("prisond.service.control")

IDLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Share:
    """What one principal may hold of the daemon."""
    clients: int
    max_line: int
    high_water: int    # unread replies beyond this stop the reading of its requests
    max_queued: int    # lines queued behind a waiting method
    rate: float        # requests a second (0: unlimited)
    burst: int


HOST = Share(clients=4096, max_line=MAX_LINE, high_water=256 * 1024, max_queued=256, rate=0, burst=0)
PRISON = Share(clients=16, max_line=4096, high_water=16 * 1024, max_queued=16, rate=500, burst=500)


class _Principal:
    def __init__(self, share: Share):
        self.share = share
        self.clients = 0
        self.tokens = float(share.burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        """One request's worth of the rate; False when the principal is over it."""
        if not self.share.rate:
            return True
        now = time.monotonic()
        self.tokens = min(self.share.burst, self.tokens + (now - self.at) * self.share.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait(self) -> float:
        return (1 - self.tokens) / self.share.rate


SO_PASSRIGHTS = 83  # Linux 6.16: may descriptors be sent to this socket (SCM_RIGHTS)
_warned_rights = False


def refuse_descriptors(sock) -> bool:
    """Have the kernel refuse descriptors sent to this Unix socket (the sender gets EPERM).
    The daemon takes none on its sockets, and one it is sent is closed by the daemon's thread
    when the message is read or dropped: a TCP socket with SO_LINGER and a peer that never
    reads made that close, and the event loop, wait for as long as the sender chose.  False
    on kernels before 6.16, which cannot (said once in the log)."""
    global _warned_rights
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS, 0)
        return True
    except OSError:
        if not _warned_rights:
            _warned_rights = True
            log.warning("this kernel cannot refuse descriptors sent to the daemon's sockets (SO_PASSRIGHTS, "
                        "Linux 6.16): a caller that sends one lingering socket can stall the daemon")
        return False


class ControlServer:
    def __init__(self, path: str, handler, *, identify, mode: int = 0o660, gid: int | None = None,
                 idle_timeout: float = IDLE_TIMEOUT, jailed_only: bool = False,
                 host_share: Share = HOST, prison_share: Share = PRISON):
        """handler(request, peer) -> a result, a coroutine that gives one, or a session;
        identify(sock) -> api.Peer."""
        self.path = path
        self.handler = handler
        self.identify = identify
        self.mode = mode
        self.gid = gid
        self.idle_timeout = idle_timeout
        self.jailed_only = jailed_only  # the socket prisons see: their methods only, whoever asks
        self.host_share, self.prison_share = host_share, prison_share
        self.principals: dict[str | None, _Principal] = {}
        self._server: asyncio.AbstractServer | None = None

    @property
    def clients(self) -> int:
        return sum(p.clients for p in self.principals.values())

    async def start(self) -> None:
        _remove_stale(self.path)
        loop = asyncio.get_running_loop()
        old = os.umask(0o077)
        try:
            self._server = await loop.create_unix_server(lambda: _Connection(self), self.path, backlog=1024)
        finally:
            os.umask(old)
        for sock in self._server.sockets:
            refuse_descriptors(sock)
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

    def principal(self, prison: str | None) -> _Principal:
        p = self.principals.get(prison)
        if p is None:
            p = self.principals[prison] = _Principal(self.host_share if prison is None else self.prison_share)
        return p

    def release(self, prison: str | None) -> None:
        p = self.principals.get(prison)
        if p is not None:
            p.clients -= 1
            if p.clients <= 0:
                del self.principals[prison]

    def answer(self, line: bytes, peer):
        """The reply to one line: bytes, a coroutine giving them (a method that waits), or a
        (request id, session) pair."""
        rid, flat = None, False
        try:
            req = decode_request(line)
            rid, flat = req.id, req.flat
            if self.jailed_only and req.method not in JAILED_OK:
                raise PrisonError(f"{req.method}: this socket answers prisons' questions only", "permission_denied")
            result = self.handler(req, peer)
        except PrisonError as exc:
            return reply_error(getattr(exc, "request_id", rid), exc, flat)
        except Exception as exc:  # a bug answers this request with an error, and nothing else
            log.exception("internal error handling a request")
            return reply_error(rid, PrisonError(f"internal error: {type(exc).__name__}", "internal"), flat)
        if asyncio.iscoroutine(result):
            return self._finish(rid, result, flat)
        if hasattr(result, "run") and hasattr(result, "request"):
            return rid, result
        return reply_ok(rid, result, flat)

    async def _finish(self, rid, coro, flat: bool) -> bytes:
        try:
            return reply_ok(rid, await coro, flat)
        except PrisonError as exc:
            return reply_error(getattr(exc, "request_id", rid), exc, flat)
        except Exception as exc:
            log.exception("internal error handling a request")
            return reply_error(rid, PrisonError(f"internal error: {type(exc).__name__}", "internal"), flat)


class _Connection(asyncio.Protocol):
    # set by connection_made, before anything else is called
    transport: asyncio.Transport
    peer: Any  # api.Peer
    principal: _Principal

    def __init__(self, server: ControlServer):
        self.server = server
        self.buf = bytearray()
        self.lines: collections.deque[bytes] = collections.deque()
        self.share = server.host_share
        self.counted = False  # in its principal's count
        self.waiting = False  # a method that waits is running: later lines queue behind it
        self.session: Any = None  # a running prison.exec (api.ExecSession)
        self.closing = False
        self.write_paused = False
        self.throttled = False
        self.active = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport
        srv = self.server
        try:
            refuse_descriptors(transport.get_extra_info("socket"))  # the listener's is inherited; to be sure
            self.peer = srv.identify(transport.get_extra_info("socket"))
        except OSError:
            self.closing = True
            transport.abort()
            return
        self.principal = srv.principal(self.peer.prison)
        self.principal.clients += 1
        self.counted = True
        self.share = self.principal.share
        if self.principal.clients > self.share.clients:
            who = "operators" if self.peer.prison is None else "this prison"
            transport.write(reply_error(None, PrisonError(f"too many connections from {who}", "busy")))
            self._close()
            return
        transport.set_write_buffer_limits(high=self.share.high_water)
        self._arm()

    def connection_lost(self, exc) -> None:
        if self.counted:
            self.server.release(self.peer.prison)
            self.counted = False
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
        self._serve()
        if self.closing:
            return
        if self.buf.find(b"\n") >= 0:  # lines it cannot take now: nothing more is read meanwhile
            self.transport.pause_reading()
        self._arm()

    def _serve(self) -> None:
        """Lines from the buffer into the queue, at most max_queued at a time (what a client
        pipelines waits in the socket, not in the daemon's memory), and answered."""
        max_line = self.share.max_line
        while not self.closing:
            taken = False
            while len(self.lines) < self.share.max_queued:
                end = self.buf.find(b"\n", 0, max_line + 1)
                if end < 0:
                    break
                line = bytes(self.buf[:end + 1])
                del self.buf[:end + 1]
                taken = True
                if line.strip() and not self._session_line(line):
                    self.lines.append(line)
            if self.buf.find(b"\n", 0, max_line + 1) < 0 and len(self.buf) > max_line:
                self._write(reply_error(None, ProtocolError(f"request longer than {max_line} bytes", "too_large")))
                self._close()
                return
            self._flush()
            if not taken or self.waiting or self.throttled or self.write_paused or self.lines:
                return

    def _write(self, data: bytes) -> None:
        """Nothing to a connection that is gone (asyncio would log each such write)."""
        if not self.closing and not self.transport.is_closing():
            self.transport.write(data)

    def _session_line(self, line: bytes) -> bool:
        """A line for the running exec (exec.signal) is answered now, ahead of the queue."""
        if self.session is None:
            return False
        try:
            req = decode_request(line)
        except PrisonError:
            return False
        if req.method not in SESSION_METHODS:
            return False
        try:
            reply = reply_ok(req.id, self.session.request(req))
        except PrisonError as exc:
            reply = reply_error(req.id, exc)
        self._write(reply)
        return True

    def _flush(self) -> None:
        """Answer queued lines in order, until one needs to wait (or the principal's rate)."""
        while self.lines and not self.waiting and not self.closing and not self.write_paused:
            if not self.principal.take():
                self._throttle()
                return
            reply = self.server.answer(self.lines.popleft(), self.peer)
            if isinstance(reply, bytes):
                self._write(reply)
            elif isinstance(reply, tuple):
                self.waiting = True
                rid, self.session = reply
                self._task(self._run_session(rid, self.session))
            else:
                self.waiting = True
                self._task(reply)

    def _task(self, coro) -> None:
        task = self.loop.create_task(coro)
        task.add_done_callback(self._resume)

    def _throttle(self) -> None:
        """Over its rate: read nothing more from it until the rate allows one more request."""
        if self.throttled:
            return
        self.throttled = True
        self.transport.pause_reading()
        self.loop.call_later(self.principal.wait(), self._unthrottle)

    def _unthrottle(self) -> None:
        self.throttled = False
        self._go_on()

    def _resume(self, task: asyncio.Task) -> None:
        self.waiting = False
        self.session = None
        if self.closing or task.cancelled():
            return
        self._write(task.result())
        self._arm()
        self._go_on()

    def _go_on(self) -> None:
        """After a wait (a method, the rate, the client's reading): what is queued and buffered,
        then more from the socket if nothing holds it back."""
        if self.closing:
            return
        self._serve()
        if (not self.closing and not self.waiting and not self.throttled and not self.write_paused
                and not self.lines and self.buf.find(b"\n") < 0):
            self.transport.resume_reading()

    async def _run_session(self, rid, session) -> bytes:
        """An exec: its first reply (with descriptors) from inside, its last as the result."""
        async def started(result: dict, fds: list[int]) -> None:
            await self._send_fds(reply_ok(rid, result), fds)
        try:
            return reply_ok(rid, await session.run(started))
        except PrisonError as exc:
            return reply_error(rid, exc)
        except Exception as exc:
            log.exception("internal error in an exec")
            return reply_error(rid, PrisonError(f"internal error: {type(exc).__name__}", "internal"))

    async def _send_fds(self, data: bytes, fds: list[int]) -> None:
        """data with fds attached, in order after every reply written before it: sent by hand
        once the transport has nothing left to write (asyncio's transports carry no
        descriptors)."""
        deadline = self.loop.time() + 10.0
        while self.transport.get_write_buffer_size():
            if self.closing or self.loop.time() > deadline:
                raise PrisonError("the client does not read its replies", "broken")
            await asyncio.sleep(0.005)
        sock = self.transport.get_extra_info("socket")
        dup = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            while data:
                try:
                    sent = dup.sendmsg([data], anc)
                except BlockingIOError:
                    if self.closing or self.loop.time() > deadline:
                        raise PrisonError("the client does not read its replies", "broken") from None
                    await asyncio.sleep(0.005)
                    continue
                data, anc = data[sent:], []
        except OSError as exc:
            raise PrisonError(f"cannot hand the client its descriptors: {exc.strerror}", "broken") from None
        finally:
            dup.close()

    def pause_writing(self) -> None:  # the client does not read its replies: stop reading its requests
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._go_on()


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
