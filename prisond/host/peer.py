"""Who is at the other end of a control connection: judged once, at accept, failing closed.

The kernel records the peer's credentials when it connects (SO_PEERCRED) and, since Linux 6.5,
hands out a pidfd of that very process (SO_PEERPIDFD).  The daemon reads the process's cgroup
and namespaces from /proc, then checks through the pidfd that the process is still there: if
it is, the pid was not reused in between, so what was read is the peer's.  A peer that is gone,
that cannot be read, that sits in another PID namespace, or whose cgroup or UTS namespace is a
prison's, is a prison's caller (`""`: one whose prison is not known); only a peer proved to be
outside every prison is the host's (None).

On kernels without SO_PEERPIDFD the pidfd is opened from the pid after accept: a peer that
exits and whose pid is taken by a host process in that window would pass for the host's.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
SO_PEERPIDFD = 77
UNKNOWN = ""  # a prison's caller whose prison is not known: the least rights
_libc = ctypes.CDLL(None, use_errno=True)
NR_PIDFD_OPEN, NR_PIDFD_SEND_SIGNAL = 434, 424


@dataclass(frozen=True)
class Credentials:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]


def credentials(sock: socket.socket) -> tuple[Credentials, int | None]:
    """The peer's credentials as the kernel recorded them at connect, and a pidfd of it (None
    when none can be had; the caller closes it)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        groups = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
        gids = struct.unpack(f"{len(groups) // 4}I", groups)
    except OSError:  # more than 256 groups, or an old kernel: the primary group only
        gids = ()
    try:
        pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:  # before Linux 6.5
        pidfd = _libc.syscall(NR_PIDFD_OPEN, pid, 0) if pid > 0 else -1
    return Credentials(pid, uid, gid, tuple(gids)), (pidfd if pidfd >= 0 else None)


def alive(pidfd: int | None) -> bool:
    """Is the process behind the pidfd still there (a zombie counts: its pid is not free)?"""
    if pidfd is None:
        return False
    if _libc.syscall(NR_PIDFD_SEND_SIGNAL, pidfd, 0, None, 0) == 0:
        return True
    return ctypes.get_errno() == errno.EPERM  # there, but not ours to signal (never as root)


@dataclass(frozen=True)
class Facts:
    """What /proc said of the peer, read before the liveness check."""
    cgroup_prison: str | None  # the prison whose cgroup holds it
    uts: tuple[int, int]       # its UTS namespace (st_dev, st_ino)
    pidns: int                 # its PID namespace (inode)


def read_facts(pid: int, prison_of_cgroup) -> Facts | None:
    """None when anything cannot be read."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            text = fh.read()
        st = os.stat(f"/proc/{pid}/ns/uts")
        uts = (st.st_dev, st.st_ino)
        pidns = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None
    return Facts(prison_of_cgroup(text), uts, pidns)


def judge(facts: Facts | None, is_alive: bool, own_pidns: int, uts_owner) -> str | None:
    """The peer's prison: a name, UNKNOWN, or None for a peer proved to be outside. Pure."""
    if facts is None or not is_alive:
        return UNKNOWN
    if facts.cgroup_prison:
        return facts.cgroup_prison
    owner = uts_owner(facts.uts)
    if owner is not None:
        return owner
    if facts.pidns != own_pidns:  # a confined prison, or a container prisond knows nothing of
        return UNKNOWN
    return None


class PeerJudge:
    """identify(sock) -> (Credentials, prison) for the control server."""

    def __init__(self, prison_of_cgroup, uts_owner):
        """prison_of_cgroup(/proc/PID/cgroup text) -> name or None; uts_owner((dev, ino)) -> name or None."""
        self.prison_of_cgroup = prison_of_cgroup
        self.uts_owner = uts_owner
        self.own_pidns = os.stat("/proc/self/ns/pid").st_ino

    def identify(self, sock: socket.socket) -> tuple[Credentials, str | None]:
        cred, pidfd = credentials(sock)
        try:
            facts = read_facts(cred.pid, self.prison_of_cgroup)
            return cred, judge(facts, alive(pidfd), self.own_pidns, self.uts_owner)
        finally:
            if pidfd is not None:
                os.close(pidfd)
