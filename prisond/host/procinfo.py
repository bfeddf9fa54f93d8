"""What a prison's processes are and which addresses they hold, read from /proc.

`prisonctl show` displays what each process actually bound: a server configured for 0.0.0.0
that ended up on the prison's address should not surprise anyone.  Parsing is pure
(`parse_net_table`); reading is cheap and synchronous.
"""
from __future__ import annotations

import ipaddress
import os
import struct

from prisond.host import sockinfo

_TCP_LISTEN = "0A"


def parse_net_table(text: str, proto: str, v6: bool) -> dict[int, dict]:
    """/proc/net/{tcp,udp}{,6} -> {inode: {"proto", "local", "state"}} for bound sockets."""
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        addr_hex, port_hex = f[1].split(":")
        inode = int(f[9])
        port = int(port_hex, 16)
        if inode == 0 or port == 0:
            continue
        raw = bytes.fromhex(addr_hex)
        if v6:
            ip6 = ipaddress.IPv6Address(b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw)))
            local = f"{ip6.ipv4_mapped}:{port}" if ip6.ipv4_mapped else f"[{ip6}]:{port}"
        else:
            ip = ipaddress.IPv4Address(struct.pack("<I", int(addr_hex, 16)))
            local = f"{ip}:{port}"
        state = "listen" if proto == "tcp" and f[3] == _TCP_LISTEN else ("bound" if proto == "udp" else "connected")
        out[inode] = {"proto": proto + ("6" if v6 else ""), "local": local, "state": state}
    return out


def socket_table() -> dict[int, dict]:
    table = {}
    for name, proto, v6 in (("tcp", "tcp", False), ("tcp6", "tcp", True), ("udp", "udp", False),
                            ("udp6", "udp", True)):
        try:
            with open(f"/proc/net/{name}") as fh:
                table.update(parse_net_table(fh.read(), proto, v6))
        except OSError:
            pass
    return table


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(4096)
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a) or "?"


def user_of(pid: int) -> str:
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return "?"
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


FD_BUDGET = 8192  # descriptors looked at per `show`/`ps`, all processes together


def socket_inodes(pid: int, budget: list[int]) -> dict[int, str | None] | None:
    """{inode: protocol name} of the sockets among pid's descriptors (the name is the socket's
    system.sockprotoname: TCP, TCPv6, UDP, UNIX, ...; None if it could not be read); None once
    budget[0] (descriptors left to look at) ran out: a prison holding 300,000 descriptors must
    not stall the daemon."""
    out: dict[int, str | None] = {}
    try:
        with os.scandir(f"/proc/{pid}/fd") as entries:
            for entry in entries:
                if budget[0] <= 0:
                    return None
                budget[0] -= 1
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    out[inode] = _protocol(entry.path, inode)
    except OSError:
        pass
    return out


def _protocol(fd_path: str, inode: int) -> str | None:
    """The protocol of the socket a /proc/PID/fd entry is, read from the socket's inode (the
    socket itself is not touched).  The descriptor is pinned first (O_PATH, which opens
    nothing) and checked to be that socket still: the prison may have put another file in
    its place meanwhile, and a getxattr of a file on the tenant's FUSE mount would wait on
    the tenant's server, with the event loop (helper-36)."""
    try:
        fd = os.open(fd_path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pinned = f"/proc/self/fd/{fd}"
        if os.readlink(pinned) != f"socket:[{inode}]":
            return None
        return os.getxattr(pinned, "system.sockprotoname").rstrip(b"\0").decode()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def look_at(pid: int, budget: list[int]) -> dict:
    """What show tells of one process that is read from the process itself: its user, its
    command line and the sockets among its descriptors ({inode: protocol}; None past the
    budget).  These reads can be made to wait by the tenant (looker.py runs them)."""
    return {"pid": pid, "user": user_of(pid), "command": command_of(pid), "sockets": socket_inodes(pid, budget)}


def processes(pids: list[int], fd_budget: int = FD_BUDGET, cgroup_dir: str | None = None,
              book: sockinfo.SocketBook | None = None) -> list[dict]:
    """describe() of look_at() of each pid, here and now (the daemon looks through looker.py)."""
    budget = [fd_budget]
    return describe([look_at(pid, budget) for pid in pids], cgroup_dir, book)


def describe(looked: list[dict], cgroup_dir: str | None = None, book: sockinfo.SocketBook | None = None) -> list[dict]:
    """For each process looked at: command, user and the inet sockets it holds (listening and
    bound ones); "sockets" is None for the processes past the descriptor budget or not read.
    cgroup_dir: the cgroup v2 directory the processes are in, whose sockets the kernel then
    tells alone (sockinfo.py; book: what earlier shows found); without it, or where the kernel
    cannot, every socket of the network namespace is read from /proc/net."""
    kinds = {i: k for one in looked if one["sockets"] for i, k in one["sockets"].items()}
    table = None
    if kinds:
        if cgroup_dir is not None:
            try:
                with sockinfo.Diag() as diag:
                    table = (book or sockinfo.SocketBook()).sockets(diag, os.stat(cgroup_dir).st_ino, kinds)
            except OSError:
                table = None
        if table is None:
            table = socket_table()
    table = table or {}
    out = []
    for one in looked:
        found = one["sockets"]
        socks = None if found is None else sorted(
            (table[i] for i in found if i in table and table[i]["state"] != "connected"),
            key=lambda s: (s["proto"], s["local"]))
        out.append(dict(one, sockets=socks))
    return out


def nspids(pid: int) -> list[int]:
    """The pid in each PID namespace from the host's down (NSpid in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


NS_GET_TGID_FROM_PIDNS = 0x8004B707  # _IOR(0xb7, 0x7, int): Linux 6.10


def host_tgid(pidns: str, inner: int) -> int | None:
    """The host's pid of the process that the PID namespace at pidns (/proc/PID/ns/pid) calls
    inner, asked of the kernel: nothing of the process is read (a read of its /proc/PID/status
    takes a hold of its memory, which the tenant can make slow or make the daemon's to drop: a
    last drop unmaps it, closing what it mapped, which can wait out a socket's linger or the
    tenant's FUSE server).  None: no such process there.  OSError ENOTTY or EINVAL: the kernel
    is older than 6.10 (inner_pids then)."""
    import errno
    import fcntl
    fd = os.open(pidns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, NS_GET_TGID_FROM_PIDNS, inner) or None
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return None
        raise
    finally:
        os.close(fd)


def inner_pids(pids: list[int]) -> dict[int, int]:
    """{the pid a confined prison's processes see: the host's} (NSpid's last and first)."""
    out = {}
    for pid in pids:
        ns = nspids(pid)
        if len(ns) >= 2:
            out[ns[-1]] = pid
    return out


def end_session(sid: int, pids: list[int]) -> list[int]:
    """SIGKILL to those of pids whose session is sid (what a service that ended left behind:
    it was started as a session of its own); the pids signalled."""
    import signal
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[3]) != sid:
                    continue
            os.kill(pid, signal.SIGKILL)
            out.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return out
