"""What a prison's sockets are bound to, asked of the sockets themselves.

`prisonctl show` lists what each process of a prison has bound.  /proc/net/tcp lists every
socket of the network namespace, which the prisons share: with 10,000 prisons listening it is
a 1.5 MB text to make and parse for each `show` (70 ms); a sock_diag dump filtered on the
prison's cgroup still has the kernel walk every socket (2.6 ms at 10,000 prisons).  Instead
the daemon takes a copy of each socket descriptor the process holds (pidfd_getfd, Linux 5.6;
root's, as ptrace would be) and asks it: getsockname, its type and whether it listens.  The
cost is per socket of the prison, whatever else runs on the host.  The copy is closed at
once; the process never sees it.

    entries = process_sockets(pid, inodes)   # {inode: {"proto", "local", "state"}}, or None
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket

NR_PIDFD_OPEN, NR_PIDFD_GETFD = 434, 438
_libc = ctypes.CDLL(None, use_errno=True)
SO_PROTOCOL = getattr(socket, "SO_PROTOCOL", 38)


def describe(sock: socket.socket) -> dict | None:
    """The entry show lists for an inet socket, or None (not inet, not bound, or a connected
    TCP socket: those are clients, not what the prison serves)."""
    family = sock.family
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    proto = "tcp" if kind == socket.SOCK_STREAM else "udp" if kind == socket.SOCK_DGRAM else None
    if proto is None:
        return None
    if sock.getsockopt(socket.SOL_SOCKET, SO_PROTOCOL) not in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None  # UDP-Lite, SCTP: /proc/net/{tcp,udp} never listed them either
    addr = sock.getsockname()
    if not addr[1]:
        return None
    listening = proto == "tcp" and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if proto == "tcp" and not listening:
        return None
    if family == socket.AF_INET:
        local = f"{addr[0]}:{addr[1]}"
    elif addr[0].startswith("::ffff:") and "." in addr[0]:
        local = f"{addr[0][7:]}:{addr[1]}"
    else:
        local = f"[{addr[0]}]:{addr[1]}"
    return {"proto": proto + ("6" if family == socket.AF_INET6 else ""), "local": local,
            "state": "listen" if listening else "bound"}


def process_sockets(pid: int, fds: dict[int, int]) -> dict[int, dict] | None:
    """{inode: entry} for the sockets among fds ({fd number: inode}) of process pid; None
    where the kernel cannot copy descriptors (before 5.6): the caller reads /proc/net."""
    pidfd = _libc.syscall(NR_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        return {} if ctypes.get_errno() == errno.ESRCH else None
    out: dict[int, dict] = {}
    try:
        for fd, inode in fds.items():
            copy = _libc.syscall(NR_PIDFD_GETFD, pidfd, fd, 0)
            if copy < 0:
                if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
                    return None
                continue  # closed since
            try:
                sock = socket.socket(fileno=copy)
            except OSError:
                os.close(copy)
                continue
            try:
                if os.fstat(sock.fileno()).st_ino != inode:
                    continue  # the number was reused for another socket: not the one seen
                entry = describe(sock)
            except OSError:
                entry = None
            finally:
                sock.close()
            if entry is not None:
                out[inode] = entry
    finally:
        os.close(pidfd)
    return out
