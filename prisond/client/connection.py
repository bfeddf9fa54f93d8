"""A small synchronous client for the control socket.

Imports stay lean (`_socket`, not `socket`; `leanjson`, not `json`): prisonctl exec is on the
path of every command a user runs in a prison, and those modules' imports cost tens of ms.
"""
from __future__ import annotations

import _socket

from prisond.client import leanjson
from prisond.model.contract import PROTOCOL_VERSION

AF_UNIX, SOCK_STREAM, SOCK_CLOEXEC = _socket.AF_UNIX, _socket.SOCK_STREAM, _socket.SOCK_CLOEXEC

VERSION = PROTOCOL_VERSION


class ClientError(Exception):
    """Raised for transport problems; `kind` is not_running, permission_denied or broken."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class DaemonError(Exception):
    """The daemon answered with an error."""

    def __init__(self, code: str, message: str, problems=None):
        super().__init__(message)
        self.code = code
        self.problems = problems or []


class Client:
    def __init__(self, path: str, timeout: float | None = 120.0):
        self.path = path
        self.timeout = timeout
        self._sock: _socket.socket | None = None
        self._buf = b""
        self._next = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self) -> _socket.socket:
        s = _socket.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            raise ClientError("not_running", f"prisond is not running (nothing listens on {self.path})") from None
        except PermissionError:
            s.close()
            raise ClientError("permission_denied", f"permission denied connecting to {self.path}") from None
        except OSError as exc:
            s.close()
            raise ClientError("broken", f"cannot connect to {self.path}: {exc.strerror}") from None
        self._sock = s
        return s

    def close(self) -> None:
        """Closed; the next call connects again."""
        if self._sock:
            self._sock.close()
            self._sock = None
        self._buf = b""

    def call(self, method: str, **params):
        sock = self._sock or self.connect()
        rid = self._next
        self._next += 1
        line = leanjson.dumps({"v": VERSION, "id": rid, "method": method, "params": params}).encode() + b"\n"
        try:
            sock.sendall(line)
            reply = self._read_line(sock)
        except _socket.timeout:
            raise ClientError("broken", "prisond did not answer in time") from None
        except OSError as exc:
            raise ClientError("broken", f"connection to prisond failed: {exc.strerror or exc}") from None
        try:
            msg = leanjson.loads(reply.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ClientError("broken", "prisond sent a malformed reply") from None
        if not msg.get("ok"):
            err = msg.get("error") or {}
            raise DaemonError(err.get("code", "internal"), err.get("message", "unknown error"), err.get("problems"))
        return msg.get("result")

    def _read_line(self, sock: _socket.socket) -> bytes:
        while b"\n" not in self._buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ClientError("broken", "prisond closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line
