"""The control socket server: one task per connection, bounded lines, bounded clients.

Malformed input gets an error reply; an oversized line or an idle half-request ends only
that connection; nothing a client sends can stop the daemon or delay other clients.
"""
from __future__ import annotations

import asyncio
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


class ControlServer:
    def __init__(self, path: str, handler, *, mode: int = 0o660, gid: int | None = None,
                 max_clients: int = MAX_CLIENTS, idle_timeout: float = IDLE_TIMEOUT, prison_of=lambda pid: None):
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
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE + 1,
                                                           backlog=1024)
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

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        try:
            if self.clients > self.max_clients:
                writer.write(reply_error(None, PrisonError("too many clients", "busy")))
                return
            peer = _peer(writer, self.prison_of)
            await self._serve(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.clients -= 1
            try:
                await writer.drain()
            except (ConnectionError, RuntimeError):
                pass
            writer.close()

    async def _serve(self, reader, writer, peer: Peer) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
            except asyncio.TimeoutError:
                return  # a half request that never ends is dropped
            except (ValueError, asyncio.LimitOverrunError):
                writer.write(reply_error(None, ProtocolError(f"request longer than {MAX_LINE} bytes", "too_large")))
                return
            if not line or not line.endswith(b"\n"):
                return  # the client went away, perhaps mid-request
            if not line.strip():
                continue
            writer.write(await self._answer(line, peer))
            await writer.drain()

    async def _answer(self, line: bytes, peer: Peer) -> bytes:
        rid = None
        try:
            req = decode_request(line)
            rid = req.id
            return reply_ok(rid, await self.handler(req, peer))
        except PrisonError as exc:
            return reply_error(getattr(exc, "request_id", rid), exc)
        except Exception as exc:  # a bug answers this request with an error, and nothing else
            log.exception("internal error handling a request")
            return reply_error(rid, PrisonError(f"internal error: {type(exc).__name__}", "internal"))


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


def _peer(writer: asyncio.StreamWriter, prison_of) -> Peer:
    sock = writer.get_extra_info("socket")
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
