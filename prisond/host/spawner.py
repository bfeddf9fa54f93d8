"""Starting prisons' inits from a process with few descriptors.

A daemon running 10,000 prisons holds tens of thousands of descriptors (a link to each init,
their log pipes).  Every program it starts pays for all of them in the kernel: the child gets
a copy of the descriptor table (posix_spawn's vfork shares memory, not descriptors) and exec
then closes each close-on-exec one.  Per prison start that was O(prisons): the 10,000th start
cost ~10 ms of system time in dup_fd and the closes alone.

So the daemon starts this helper once, at its start, while it holds a handful of descriptors,
and asks it to run each `prisonjail init` (launcher.run_starter).  A request is one
SOCK_SEQPACKET message on the helper's socket: the argv (JSON), the init socket as stdin and
the socket the answer goes to (SCM_RIGHTS).  The helper answers on that socket with the exit
status and the program's output, and serves requests in threads of its own (prisons start
side by side).  It ends when the daemon's end of its socket closes.

The inits still end up as the daemon's children: `prisonjail init` exits once the init is
ready, and an orphan goes to the nearest subreaper above it, the daemon (the helper is not one).
"""
from __future__ import annotations

import array
import json
import logging
import os
import socket
import subprocess
import sys
import threading

log = logging.getLogger("prisond.host.spawner")
MAX_MSG = 1 << 20
LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from prisond.host.spawner import main; sys.exit(main())"


def _send(sock: socket.socket, payload: bytes, fds: list[int]) -> None:
    sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])


def _recv(sock: socket.socket, nfds: int) -> tuple[bytes, list[int]]:
    # close-on-exec at once: no descriptor of a request reaches another request's program
    data, anc, _, _ = sock.recvmsg(MAX_MSG, socket.CMSG_SPACE(nfds * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(raw[:len(raw) - len(raw) % a.itemsize])
            fds += list(a)
    return data, fds


class Spawner:
    """The daemon's end: start() once, early; run(argv, stdin, timeout) from any thread."""

    def __init__(self):
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            # -I: nothing from the working directory, the environment or a user's site may be
            # imported (`-m` put the directory the daemon was started in first on the path: a
            # prisond/ package in /tmp ran as root); this very prisond, from where the daemon
            # imported it, is put first instead
            here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            self.proc = subprocess.Popen([sys.executable, "-I", "-c", LAUNCH, here], stdin=theirs.fileno(),
                                         stdout=subprocess.DEVNULL, close_fds=True, cwd="/",
                                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        finally:
            theirs.close()
        self.sock = ours

    def run(self, argv: list[str], stdin: int, timeout: float) -> tuple[int, bytes, bytes] | None:
        """(exit status, stdout, stderr) of argv run by the helper; None if the helper is gone
        (the caller then runs it itself)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            with self._lock:  # the socket is read and dropped under the lock: starts run side by side
                if self.sock is None:
                    return None
                try:
                    _send(self.sock, json.dumps({"argv": argv, "timeout": timeout}).encode(),
                          [stdin, theirs.fileno()])
                except OSError as exc:
                    log.error("the spawner is gone (%s): prisons' inits are started by the daemon itself",
                              exc.strerror)
                    self.sock.close()
                    self.sock = None
                    return None
            theirs.close()
            mine.settimeout(timeout + 10)
            try:
                data = mine.recv(MAX_MSG)
            except (OSError, TimeoutError):
                data = b""
            if not data:
                return -1, b"", b"the spawner did not answer"
            ans = json.loads(data)
            return ans["rc"], ans["out"].encode("latin-1"), ans["err"].encode("latin-1")
        finally:
            mine.close()
            if theirs.fileno() >= 0:
                theirs.close()

    def stop(self) -> None:
        with self._lock:
            if self.sock is not None:
                self.sock.close()
                self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _serve_one(req: bytes, fds: list[int]) -> None:
    from prisond.host.launcher import run_starter
    stdin, reply = fds
    try:
        r = json.loads(req)
        rc, out, err = run_starter(r["argv"], stdin, float(r["timeout"]))
    except Exception as exc:  # the answer must come, whatever happened
        rc, out, err = -1, b"", f"spawner: {exc}".encode()
    finally:
        os.close(stdin)
    try:
        os.write(reply, json.dumps({"rc": rc, "out": out.decode("latin-1"), "err": err.decode("latin-1")}).encode())
    except OSError:
        pass
    finally:
        os.close(reply)


def main() -> int:
    chan = socket.socket(fileno=0)
    while True:
        try:
            req, fds = _recv(chan, 2)
        except OSError:
            return 0
        if not req:
            return 0  # the daemon's end closed
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        threading.Thread(target=_serve_one, args=(req, fds), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
