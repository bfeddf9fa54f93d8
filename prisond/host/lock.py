"""One daemon per state directory, runtime directory and cgroup parent.

Taken before the daemon touches anything: a second prisond that would share any of the three
with a running one exits with a message naming the first one's pid, having changed nothing
(no leftover ended, no socket or shim replaced, no alias removed).  flock(2) locks, so a
daemon that dies (SIGKILL, a crash) frees them with its descriptors; each lock file holds the
pid of the daemon that holds it, for the message.
"""
from __future__ import annotations

import errno
import fcntl
import os

from prisond.model.errors import PrisonError

CGROUP_LOCKS = "/run/lock/prisond"


class Busy(PrisonError):
    code = "busy"


def lock_paths(state_dir: str, runtime_dir: str, cgroup_parent: str, lock_dir: str = CGROUP_LOCKS) -> dict[str, str]:
    """What each lock guards -> its file.  Pure."""
    parent = cgroup_parent.strip("/").replace("%", "%25").replace("/", "%2F")
    return {f"the cgroup parent {cgroup_parent}": os.path.join(lock_dir, f"{parent}.lock"),
            f"the state directory {state_dir}": os.path.join(state_dir, "prisond.lock"),
            f"the runtime directory {runtime_dir}": os.path.join(runtime_dir, "prisond.lock")}


class DaemonLock:
    def __init__(self, paths: dict[str, str]):
        self.paths = paths
        self.fds: list[int] = []

    def take(self) -> DaemonLock:
        """All the locks, or none (Busy names the daemon that holds one)."""
        try:
            for what, path in self.paths.items():
                self.fds.append(_lock(what, path))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _lock(what: str, path: str) -> int:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise Busy(f"another prisond (pid {holder}) is using {what}; this one changed nothing") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
