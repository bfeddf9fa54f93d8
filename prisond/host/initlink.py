"""The daemon's end of a prison's init: the only way a process gets into a prison.

A prison's init (`prisonjail init`, prisond/native/jail/init.c) listens on a SOCK_SEQPACKET unix
socket in a directory only root can reach.  The daemon connects, says hello (and learns what
init started that still runs and what ended while no daemon listened), then asks it to spawn
processes; init answers with each one's pidfd (and a terminal's master), and later with its
wait status.  init also passes on what the prison's services write (log messages).  The
daemon keeps one descriptor per prison: this connection.

Records (jail/msg.c): one packet is "op=NAME\\0" then "key=value\\0" records, descriptors
attached with SCM_RIGHTS.  `encode`/`decode` are pure (tests/test_initlink.py); every
integration test that starts a prison speaks them with the C side.
"""
from __future__ import annotations

import array
import asyncio
import errno
from collections.abc import Sequence
from typing import Any
import logging
import os
import socket
from dataclasses import dataclass, field

from prisond.model.contract import (INIT_MSG_MAX, STAGE_CWD, STAGE_EXEC, STAGE_IDS, STAGE_LIMIT, STAGE_TTY,
                                     STAGE_USER)
from prisond.model.errors import SystemLayerError

log = logging.getLogger("prisond.init")

MSG_MAX = INIT_MSG_MAX
MAX_FDS = 250
STAGES = {0: "start", STAGE_USER: "user", STAGE_IDS: "user ids", STAGE_CWD: "working directory",
          STAGE_LIMIT: "limits", STAGE_TTY: "terminal", STAGE_EXEC: "exec"}


def encode(op: str, records: list[tuple[str, str]]) -> bytes:
    """One message.  Values must not hold NUL (argv and environment strings cannot)."""
    out = [f"op={op}".encode()]
    for key, value in records:
        v = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if b"\0" in v:
            raise ValueError(f"{key}: a value cannot contain NUL")
        out.append(key.encode() + b"=" + v)
    data = b"\0".join(out) + b"\0"
    if len(data) >= MSG_MAX:
        raise ValueError(f"message of {len(data)} bytes is over {MSG_MAX}")
    return data


def decode(data: bytes) -> tuple[str, list[tuple[str, Any]]]:
    """(op, records) of one message; records without '=' are skipped, as the C side does.
    A log message's last record (data=) runs to the end of the packet: its value is bytes."""
    raw = None
    if data.startswith(b"op=log\0"):
        data, _, raw = data.partition(b"\0data=")
    records: list[tuple[str, Any]] = []
    for rec in data.split(b"\0"):
        key, eq, value = rec.partition(b"=")
        if eq:
            records.append((key.decode(errors="replace"), value.decode("utf-8", "surrogateescape")))
    op = next((v for k, v in records if k == "op"), "")
    records = [(k, v) for k, v in records if k != "op"]
    if raw is not None:
        records.append(("data", raw))
    return op, records


@dataclass
class SpawnRequest:
    argv: list[str]
    env: dict[str, str]
    user: str | None = None
    cwd: str | None = None
    login: bool = False
    nofile: int | None = None
    tty: bool = False
    rows: int = 0
    cols: int = 0
    stdio: str = "null"  # "fds" (three descriptors sent), "log" (the prison's log pipes), "null"
    lifeline: bool = False  # the last descriptor sent: its other end closing hangs the process up
    identity: bool = False  # HOME, USER, LOGNAME of the user it runs as (from the prison's passwd)

    def records(self, ident: str) -> list[tuple[str, str]]:
        recs = [("id", ident)] + [("arg", a) for a in self.argv] + [("env", f"{k}={v}") for k, v in self.env.items()]
        for key, value in (("user", self.user), ("cwd", self.cwd), ("nofile", self.nofile)):
            if value is not None:
                recs.append((key, str(value)))
        if self.login:
            recs.append(("login", "1"))
        if self.identity:
            recs.append(("identity", "1"))
        if self.tty:
            recs += [("tty", "1"), ("rows", str(self.rows)), ("cols", str(self.cols))]
        recs.append(("stdio", self.stdio))
        if self.lifeline:
            recs.append(("lifeline", "1"))
        return recs


class SpawnError(SystemLayerError):
    """init could not start the process: stage and errno say where and why."""

    def __init__(self, stage: int, err: int, argv0: str, user: str | None):
        self.stage, self.errno = stage, err
        if stage == STAGE_EXEC:
            what = "command not found" if err == errno.ENOENT else os.strerror(err)
            msg = f"exec: {argv0}: {what}"
        elif stage == STAGE_USER:
            msg = f"no user {user} in the prison"
        else:
            msg = f"cannot start {argv0}: {STAGES.get(stage, 'start')}: {os.strerror(err)}"
        super().__init__(msg, "exec_failed")

    @property
    def exit_status(self) -> int:
        """What a shell would exit with: 127 not found, 126 found but not runnable, else 1
        (sent with the error, for `prisonctl exec` to exit with)."""
        if self.stage == STAGE_EXEC:
            return 127 if self.errno == errno.ENOENT else 126
        return 1


def pid_of(pidfd: int) -> int | None:
    """The pid (in the daemon's namespace) of the process a pidfd refers to; None if it was
    already reaped (a service that exits at once: init may reap it before this looks)."""
    with open(f"/proc/self/fdinfo/{pidfd}") as fh:
        for line in fh:
            if line.startswith("Pid:"):
                pid = int(line.split()[1])
                return pid if pid > 0 else None
    raise SystemLayerError("cannot read a pidfd's pid", "exec_failed")


@dataclass
class Child:
    """A process init started: its pid here, and its wait status when it ends.  Signals go
    through init, whose child it is: until init reaps it, its pid cannot be anyone else's."""
    ident: str
    pid: int | None  # None: it ended before its pid was read
    exited: asyncio.Future = field(repr=False)
    link: InitLink | None = field(default=None, repr=False)

    def signal(self, sig: int) -> bool:
        if self.exited.done() or self.link is None or not self.link.connected:
            return False
        try:
            self.link._send(encode("signal", [("id", self.ident), ("sig", str(sig))]), [])
            return True
        except OSError:
            return False


@dataclass
class Hello:
    init_pid: int | None
    live: dict[str, Child]
    exited: dict[str, int]  # id -> wait status


class InitLink:
    """One connection to one prison's init, driven by the event loop."""

    _loop: asyncio.AbstractEventLoop  # set by connect; nothing else runs before it

    def __init__(self, path: str, name: str, on_lost=None, on_log=None):
        self.path = path
        self.name = name
        self.on_lost = on_lost  # called once when the connection ends
        self.on_log = on_log    # on_log(stream, data: bytes, dropped: int): the services' output
        self.sock: socket.socket | None = None
        self.init_pid: int | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._hello: asyncio.Future | None = None
        self._exits: dict[str, asyncio.Future] = {}
        self._syncs: list[asyncio.Future] = []
        self.lost_status: int | None = None  # set when the prison is being killed: its processes' end
        self._seq = 0

    @property
    def connected(self) -> bool:
        return self.sock is not None

    async def connect(self, timeout: float = 10.0) -> Hello:
        loop = self._loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        address, dirfd = short_address(self.path)
        try:
            await asyncio.wait_for(loop.sock_connect(s, address), timeout)
        except (TimeoutError, OSError) as exc:
            s.close()
            raise SystemLayerError(f"cannot reach the prison's init ({self.path}): "
                                   f"{getattr(exc, 'strerror', None) or 'no answer'}", "init_gone") from None
        finally:
            if dirfd is not None:
                os.close(dirfd)
        self.sock = s
        loop.add_reader(s.fileno(), self._readable)
        self._hello = loop.create_future()
        ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)  # init's proof that this is the daemon
        try:
            self._send(encode("hello", []), [ns])
        finally:
            os.close(ns)
        try:
            return await asyncio.wait_for(self._hello, timeout)
        except TimeoutError:
            self.close()
            raise SystemLayerError("the prison's init did not answer", "init_gone") from None

    async def spawn(self, req: SpawnRequest, fds: Sequence[int] = (), *, prefix: str = "x",
                    timeout: float = 30.0) -> tuple[Child, int | None]:
        """Start a process; (its Child, the terminal's master or None).  The descriptors in fds
        are sent (the caller still closes its copies)."""
        if self.sock is None:
            raise SystemLayerError(f"prison {self.name}: its init is gone", "init_gone")
        self._seq += 1
        ident = f"{prefix}{os.getpid():x}.{self._seq}"
        fut = self._loop.create_future()
        self._pending[ident] = fut
        exited = self._exits[ident] = self._loop.create_future()  # init tells "spawned" before "exit"
        try:
            self._send(encode("spawn", req.records(ident)), list(fds))
            op, recs, got = await asyncio.wait_for(fut, timeout)
        except (TimeoutError, ValueError, OSError) as exc:
            self._pending.pop(ident, None)
            self._exits.pop(ident, None)
            raise SystemLayerError(f"prison {self.name}: cannot start {req.argv[:1]}: {exc}", "exec_failed") from None
        if op == "error":
            self._exits.pop(ident, None)
            rec = dict(recs)
            raise SpawnError(int(rec.get("stage", 0)), int(rec.get("errno", 0)),
                             req.argv[0] if req.argv else "the user's shell", req.user)
        pidfd, master = got[0], (got[1] if len(got) > 1 else None)
        try:
            pid = pid_of(pidfd)
        finally:
            os.close(pidfd)
        return Child(ident, pid, exited, self), master

    async def sync(self, timeout: float = 5.0) -> None:
        """Returns once every message init sent before now has been dispatched (init answers
        in order, and reaps its dead children before it reads a request)."""
        if self.sock is None:
            return
        fut = self._loop.create_future()
        self._syncs.append(fut)
        try:
            self._send(encode("sync", []), [])
            await asyncio.wait_for(fut, timeout)
        except (TimeoutError, OSError, SystemLayerError):
            pass

    def watch(self, ident: str, pidfd: int) -> Child:
        """A Child for a process a previous daemon started (from hello's live list)."""
        fut = self._exits.get(ident) or self._loop.create_future()
        self._exits[ident] = fut
        try:
            return Child(ident, pid_of(pidfd), fut, self)
        finally:
            os.close(pidfd)

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, RuntimeError):
            pass
        self.sock.close()
        self.sock = None
        gone = SystemLayerError(f"prison {self.name}: its init is gone", "init_gone")
        for fut in list(self._pending.values()) + self._syncs + ([self._hello] if self._hello else []):
            if not fut.done():
                fut.set_exception(gone)
        self._pending.clear()
        self._syncs.clear()
        # processes whose end can no longer be heard from init: killed with the prison, or
        # (init itself died) unknown
        for fut in self._exits.values():
            if not fut.done():
                if self.lost_status is not None:
                    fut.set_result(self.lost_status)
                else:
                    fut.set_exception(gone)
        self._exits.clear()
        if self.on_lost:
            cb, self.on_lost = self.on_lost, None
            cb()

    # ------------------------------------------------------------ I/O

    def _send(self, data: bytes, fds: Sequence[int]) -> None:
        if self.sock is None:
            raise OSError(errno.EPIPE, "the prison's init is gone")
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([data], anc)
        except BlockingIOError:
            # a packet that does not fit now means init has stopped reading: treat as gone
            self.close()
            raise OSError(errno.EAGAIN, "the prison's init does not read") from None

    def _readable(self) -> None:
        while self.sock is not None:
            try:
                data, anc, _, _ = self.sock.recvmsg(MSG_MAX, socket.CMSG_SPACE(4 * MAX_FDS),
                                                        socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("prison %s: init link: %s", self.name, exc)
                self.close()
                return
            fds = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                    fds += list(a)
            if not data:
                self.close()
                return
            self._dispatch(*decode(data), fds)

    def _dispatch(self, op: str, recs: list[tuple[str, str]], fds: list[int]) -> None:
        rec = dict(recs)
        if op == "hello" and self._hello and not self._hello.done():
            self._hello.set_result(self._hello_from(recs, fds))
            return
        if op == "log":
            if self.on_log:
                self.on_log(rec.get("stream", "out"), rec.get("data", b""), int(rec.get("dropped", "0")))
            return
        if op == "sync":
            while self._syncs:
                fut = self._syncs.pop(0)
                if not fut.done():
                    fut.set_result(None)
                    break
        if op in ("spawned", "error"):
            fut = self._pending.pop(rec.get("id", ""), self._loop.create_future())
            if fut and not fut.done():
                fut.set_result((op, recs, fds))
                return
        elif op == "exit":
            self._finish(rec.get("id", ""), int(rec.get("status", "0")))
        for fd in fds:  # nobody asked for these
            os.close(fd)

    def _finish(self, ident: str, status: int) -> None:
        fut = self._exits.pop(ident, None)
        if fut is not None and not fut.done():  # None: nobody watches it (an earlier daemon's exec)
            fut.set_result(status)

    def _hello_from(self, recs: list[tuple[str, str]], fds: list[int]) -> Hello:
        it = iter(fds)
        live, exited = {}, {}
        init_pid = self.init_pid
        for key, value in recs:  # descriptors come in the order of their records
            if key == "init":
                fd = next(it)
                init_pid = self.init_pid = pid_of(fd)
                os.close(fd)
            elif key == "live":
                live[value] = self.watch(value, next(it))
            elif key == "exited":
                ident, _, status = value.rpartition(":")
                exited[ident] = int(status)
        return Hello(init_pid, live, exited)


def short_address(path: str) -> tuple[str, int | None]:
    """A unix socket path must fit in 108 bytes: a longer one is reached through a descriptor
    of its directory, which the caller closes once bound or connected."""
    if len(path.encode()) < 100:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def wait_status(status: int) -> dict:
    """{"exit": code} or {"signal": n} of a wait status."""
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1}


def status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        import signal
        try:
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        except ValueError:
            return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.WEXITSTATUS(status)}"
