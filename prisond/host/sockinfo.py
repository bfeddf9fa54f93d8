"""Which inet sockets a prison's processes hold, from the kernel's socket diagnostics
(NETLINK_SOCK_DIAG), at a cost that does not grow with the host's sockets.

`prisonctl show` lists what each process of a prison has bound: its TCP listeners and its UDP
sockets.  /proc/net/tcp lists every socket of the network namespace, which the prisons share:
with 10,000 prisons listening it is a 1.5 MB text to make and parse for each `show` (70 ms).
A dump filtered on the prison's cgroup (INET_DIAG_BC_CGROUP_COND, Linux 5.10) answers with
the prison's sockets alone, but the kernel still visits every listener of the namespace and
looks up each one's cgroup: 5.9 ms with 10,000 prisons listening, most of `show`.

So SocketBook keeps what the dumps found, and asks the kernel again about one socket at a time:
a listener is looked up by its own address, port and cookie (5 µs; the kernel's hash lookup,
as for an incoming connection), and the answer, with its inode and cgroup, is taken only if it
is still the same socket of the same cgroup.  What show lists of a known listener is therefore
what the kernel says now.  A dump is needed only for a TCP socket the book does not know: one
filtered on the prison's cgroup, and, after WHOLE_AFTER of those, one of the namespace's every
listener (30 ms with 10,000), which then covers every prison.  A TCP socket that no dump found
listening (a connection, or one bound and not yet listening) is not asked about again for
OTHERS_TTL: a socket that starts listening later shows after at most that long.  UDP sockets
are few, and a connect() changes their address: they are dumped, filtered, every time, and
only where the prison holds one (the socket's protocol, from its system.sockprotoname
attribute, tells which of the four dumps a show needs).

A socket belongs to the cgroup of the process that made it, so a socket handed into a prison by
a process outside is not among the prison's.  Nothing of the prison's is touched: an earlier
way, a copy of each socket descriptor (pidfd_getfd) asked with getsockname, let a tenant make
the daemon's close of its copy the last one of a lingering TCP socket, which blocked the event
loop for as long as the tenant's SO_LINGER said; and getsockname ran the prison's own programs,
which show 127.0.0.1 where the prison's loopback is its address.

    with Diag() as diag:
        table = book.sockets(diag, cgroup_id, {inode: "TCP", ...})  # {inode: {"proto", "local", "state"}}
"""
from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_CGROUP_COND = 13
INET_DIAG_CGROUP_ID = 21  # an attribute of every answer (Linux 5.7)
TCP_LISTEN = 10
REQ = struct.Struct("=BBBBI48s")                  # inet_diag_req_v2
MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")    # inet_diag_msg
HDR = struct.Struct("=IHHII")                     # nlmsghdr
ATTR = struct.Struct("=HH")                       # rtattr
STATES = {"tcp": 1 << TCP_LISTEN, "udp": 0xFFFFFFFF}  # what show lists: TCP listeners, every UDP socket
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
# system.sockprotoname of a socket -> (protocol, family); other names (UNIX, NETLINK, ...) are not inet
KINDS = {"TCP": ("tcp", socket.AF_INET), "TCPv6": ("tcp", socket.AF_INET6),
         "UDP": ("udp", socket.AF_INET), "UDPv6": ("udp", socket.AF_INET6)}
FAMILIES = (socket.AF_INET, socket.AF_INET6)
WHOLE_AFTER = 8   # filtered TCP dumps before one of every listener (which costs about as many)
OTHERS_TTL = 1.0  # seconds a TCP socket no dump found listening is taken not to be listening
EXACT_MAX = 32    # known listeners of one prison asked about one by one; more cost more than its dump


@dataclass(frozen=True)
class Found:
    """One socket as the kernel described it: enough to ask about it again (exact)."""
    inode: int
    proto: str           # tcp, udp
    family: int
    state: int
    sport: bytes         # network order, as inet_diag_sockid holds it
    src: bytes           # 16 bytes
    ifindex: int
    cookie: bytes        # 8 bytes
    cgroup: int | None   # None: a kernel before 5.7 did not say

    def entry(self) -> dict:
        port = int.from_bytes(self.sport, "big")
        if self.family == socket.AF_INET:
            local = f"{ipaddress.IPv4Address(self.src[:4])}:{port}"
        else:
            ip6 = ipaddress.IPv6Address(self.src)
            local = f"{ip6.ipv4_mapped}:{port}" if ip6.ipv4_mapped else f"[{ip6}]:{port}"
        state = ("listen" if self.state == TCP_LISTEN else "connected") if self.proto == "tcp" else "bound"
        return {"proto": self.proto + ("6" if self.family == socket.AF_INET6 else ""), "local": local,
                "state": state}


def request(family: int, proto: int, states: int, cgroup_id: int | None, seq: int) -> bytes:
    """A dump request of one family and protocol; filtered on the cgroup unless it is None: one
    bytecode op, CGROUP_COND; true jumps to the end (accept), false past it (reject)."""
    body = REQ.pack(family, proto, 0, 0, states, b"")
    if cgroup_id is not None:
        bc = struct.pack("=BBHQ", INET_DIAG_BC_CGROUP_COND, 12, 16, cgroup_id)
        body += ATTR.pack(ATTR.size + len(bc), INET_DIAG_REQ_BYTECODE) + bc
    return HDR.pack(HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def exact_request(found: Found, seq: int) -> bytes:
    """A request about one socket: the kernel finds it as an incoming connection to its address
    and port would, and answers only if its cookie is the one given."""
    sockid = found.sport + b"\0\0" + found.src + bytes(16) + struct.pack("=I", found.ifindex) + found.cookie
    body = REQ.pack(found.family, PROTOCOLS[found.proto], 0, 0, STATES[found.proto], sockid)
    return HDR.pack(HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + body


def _cgroup(data: bytes, off: int, end: int) -> int | None:
    while off + ATTR.size <= end:
        length, kind = ATTR.unpack_from(data, off)
        if length < ATTR.size:
            break
        if kind == INET_DIAG_CGROUP_ID and length >= ATTR.size + 8:
            return struct.unpack_from("=Q", data, off + ATTR.size)[0]
        off += (length + 3) & ~3
    return None


def parse(data: bytes, proto: str, wanted: set[int] | None = None) -> tuple[dict[int, Found], bool, int]:
    """One read's messages -> ({inode: Found}, done, errno (0: none)); only the inodes in wanted,
    if given, and sockets with a port.  Pure."""
    out: dict[int, Found] = {}
    off = 0
    while off + HDR.size <= len(data):
        length, kind, _, _, _ = HDR.unpack_from(data, off)
        if length < HDR.size:
            break
        if kind == NLMSG_DONE:
            return out, True, 0
        if kind == NLMSG_ERROR:
            return out, True, -struct.unpack_from("=i", data, off + HDR.size)[0]
        if kind == SOCK_DIAG_BY_FAMILY and length >= HDR.size + MSG.size:
            family, state, _, _, sport, _, src, _, ifindex, cookie, *_, inode = MSG.unpack_from(data, off + HDR.size)
            if inode and sport != b"\0\0" and (wanted is None or inode in wanted):
                cgroup = _cgroup(data, off + HDR.size + MSG.size, off + length)
                out[inode] = Found(inode, proto, family, state, sport, src, ifindex, cookie, cgroup)
        off += (length + 3) & ~3
    return out, False, 0


class Diag:
    """A NETLINK_SOCK_DIAG socket of the daemon's network namespace.  OSError where the kernel
    cannot answer (a filter it does not know: before 5.10)."""

    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self.s.settimeout(5)
        self.seq = 0

    def __enter__(self) -> Diag:
        return self

    def __exit__(self, *exc) -> None:
        self.s.close()

    def dump(self, proto: str, family: int, cgroup_id: int | None = None,
             wanted: set[int] | None = None) -> dict[int, Found]:
        """The TCP listeners or UDP sockets of one family, of one cgroup or all."""
        self.seq += 1
        self.s.sendall(request(family, PROTOCOLS[proto], STATES[proto], cgroup_id, self.seq))
        out: dict[int, Found] = {}
        while True:
            got, done, err = parse(self.s.recv(1 << 20), proto, wanted)
            if err:
                raise OSError(err, f"sock_diag: {err}")
            out.update(got)
            if done:
                return out

    def exact(self, found: Found) -> Found | None:
        """The socket that now has found's address, port and cookie, as the kernel describes it
        now; None if there is none (closed, or another socket there now)."""
        self.seq += 1
        self.s.sendall(exact_request(found, self.seq))
        got, _, err = parse(self.s.recv(1 << 16), found.proto)
        return None if err else got.get(found.inode)


class SocketBook:
    """What the dumps found, kept between shows (see the module's docstring).  One per daemon,
    used from the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, whole_after: int = WHOLE_AFTER,
                 others_ttl: float = OTHERS_TTL):
        self.clock = clock
        self.whole_after = whole_after
        self.others_ttl = others_ttl
        self.listeners: dict[int, Found] = {}  # inode -> as last found
        self.others: dict[int, float] = {}     # inode -> when a dump did not find it listening
        self.partial = 0                       # filtered TCP dumps since the last whole one

    def sockets(self, diag: Diag, cgroup_id: int, kinds: dict[int, str | None]) -> dict[int, dict]:
        """{inode: show's entry} of the inet sockets among kinds ({inode: its sockprotoname,
        None where it could not be read}) that the cgroup made: TCP listeners, UDP sockets."""
        now = self.clock()
        out: dict[int, dict] = {}
        unknown: set[int] = set()
        tcp: set[int] = set()
        udp: set[int] = set()
        many = sum(1 for inode in kinds if inode in self.listeners) > EXACT_MAX
        for inode, kind in kinds.items():
            proto, family = KINDS.get(kind, ("", 0)) if kind is not None else ("?", 0)
            if proto == "udp" or proto == "?":
                udp |= {family} if family else set(FAMILIES)
            if proto not in ("tcp", "?"):
                continue
            known = self.listeners.get(inode)
            if known is not None and not many:
                now_found = diag.exact(known)
                if now_found is not None and now_found.cgroup == cgroup_id:
                    self.listeners[inode] = now_found
                    out[inode] = now_found.entry()
                    continue
                del self.listeners[inode]
            elif known is None and now - self.others.get(inode, -self.others_ttl - 1.0) < self.others_ttl:
                continue
            unknown.add(inode)
            tcp |= {family} if family else set(FAMILIES)
        if unknown:
            found = self._tcp(diag, cgroup_id, tcp, now, whole=not many)
            for inode in unknown:
                f = found.get(inode)
                if f is not None and f.cgroup == cgroup_id:
                    out[inode] = f.entry()
                else:
                    self.others[inode] = now
        for family in sorted(udp):
            out.update((i, f.entry()) for i, f in diag.dump("udp", family, cgroup_id, set(kinds)).items())
        return out

    def _tcp(self, diag: Diag, cgroup_id: int, families: set[int], now: float, whole: bool) -> dict[int, Found]:
        """The listeners of the cgroup, of the families given; or, every WHOLE_AFTER times it
        is asked with whole (for sockets the book did not know), every listener of the
        namespace (which the book then knows for every prison)."""
        if whole and self.partial >= self.whole_after:
            found = {i: f for family in FAMILIES for i, f in diag.dump("tcp", family).items()}
            self.listeners = {i: f for i, f in found.items() if f.cgroup is not None}
            self.others = {i: t for i, t in self.others.items() if now - t < self.others_ttl}
            self.partial = 0
            return found
        self.partial += whole
        found = {i: f for family in sorted(families) for i, f in diag.dump("tcp", family, cgroup_id).items()}
        self.listeners.update((i, f) for i, f in found.items() if f.cgroup is not None)
        return found
