"""Which inet sockets a prison's processes hold, from the kernel's socket diagnostics
(NETLINK_SOCK_DIAG), at a cost that does not grow with the host's sockets.

`prisonctl show` lists what each process of a prison has bound: its TCP listeners and its UDP
sockets.  /proc/net/tcp lists every socket of the network namespace, which the prisons share:
with 10,000 prisons listening it is a 1.5 MB text to make and parse for each `show` (70 ms).
A dump filtered on the prison's cgroup (INET_DIAG_BC_CGROUP_COND, Linux 5.10) answers with
the prison's sockets alone, but the kernel still visits every listener of the namespace and
looks up each one's cgroup: 5.9 ms with 10,000 prisons listening, most of `show`.

So SocketBook keeps what the dumps found, and asks the kernel again about one socket at a time:
a listener is looked up by its own address, port and cookie (5.6 µs; the kernel's hash lookup,
as for an incoming connection), and the answer, with its inode and cgroup, is taken only if it
is still the same socket; it is listed if it is the prison's cgroup's.  What show lists of a
known listener is therefore what the kernel says now.  A dump is needed only for a TCP socket
the book does not know: one filtered on the prison's cgroup, which decodes only the sockets
asked about; and, after WHOLE_AFTER of those and WHOLE_EVERY since the last, one of the
namespace's every listener, in a thread (70 ms with 10,000 prisons listening), whose findings
(at most EXACT_MAX a cgroup) then cover every prison.  A prison with more listeners than
EXACT_MAX gets its filtered dump at every show, and the book keeps none of them.  A TCP
socket that no dump found listening (a connection, or one bound and not yet listening) is not
asked about again for OTHERS_TTL, while the prison holds it: a socket that starts listening
later shows after at most that long.  UDP sockets are few, and a connect() changes their address: they
are dumped, filtered, at every show of a prison that holds one.  Which protocol a socket is
comes from its system.sockprotoname attribute (procinfo.py), so a prison holding only Unix
sockets costs no dump at all.

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
import threading
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
# system.sockprotoname of a socket -> its protocol; other names (UNIX-STREAM, NETLINK, ...) are not inet
KINDS = {"TCP": "tcp", "TCPv6": "tcp", "UDP": "udp", "UDPv6": "udp"}
FAMILIES = (socket.AF_INET, socket.AF_INET6)
WHOLE_AFTER = 8     # filtered TCP dumps (for sockets the book did not know) before one of every listener
WHOLE_EVERY = 10.0  # seconds at least between two dumps of every listener
OTHERS_TTL = 1.0    # seconds a TCP socket no dump found listening is taken not to be listening
EXACT_MAX = 32      # known listeners of one prison asked about one by one; more cost more than its dump
OTHERS_CGROUPS = 64  # cgroups whose quiet sockets are kept, at least, before the expired ones are dropped


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


def _both(diag: Diag, proto: str, cgroup_id: int | None = None, wanted: set[int] | None = None) -> dict[int, Found]:
    """diag.dump of both families."""
    return {i: f for family in FAMILIES for i, f in diag.dump(proto, family, cgroup_id, wanted).items()}


class SocketBook:
    """What the dumps found, kept between shows (see the module's docstring).  Used from the
    event loop; the dump of every listener runs in a thread of its own (run), and what it
    found replaces the book's listeners when it is done.

    Bounded: the listeners are those of the last dump of every listener and those shows found
    since, at most EXACT_MAX a cgroup (a prison with more gets its filtered dump at each show,
    and none of them is kept); the quiet sockets (TCP, not listening) are those each cgroup's
    processes held at its last show, kept for the cgroups shown in the last OTHERS_TTL and at
    most as many others."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, whole_after: int = WHOLE_AFTER,
                 others_ttl: float = OTHERS_TTL, run: Callable[[Callable[[], None]], None] | None = None,
                 open_diag: Callable[[], Diag] = Diag):
        self.clock = clock
        self.open_diag = open_diag
        self.whole_after = whole_after
        self.others_ttl = others_ttl
        self.run = run or (lambda job: threading.Thread(target=job, name="prisond-sockets", daemon=True).start())
        self.listeners: dict[int, Found] = {}                   # inode -> as last found
        self.others: dict[int, tuple[float, set[int]]] = {}     # cgroup -> (when, its quiet sockets)
        self.partial = 0                                        # filtered dumps since the last whole one
        self.prune_at = OTHERS_CGROUPS                          # cgroups in others that make it prune
        self.whole_at = -WHOLE_EVERY                            # when the last whole one began
        self.whole_busy = False
        self.whole_done: dict[int, Found] | None = None         # a finished whole dump, not yet taken

    def sockets(self, diag: Diag, cgroup_id: int, kinds: dict[int, str | None]) -> dict[int, dict]:
        """{inode: show's entry} of the inet sockets among kinds ({inode: its sockprotoname,
        None where it could not be read}) that the cgroup made: TCP listeners, UDP sockets."""
        now = self.clock()
        if self.whole_done is not None:
            self.listeners, self.whole_done = self.whole_done, None
        since, quiet = self.others.get(cgroup_id, (now, set()))
        if now - since >= self.others_ttl:
            since, quiet = now, set()
        out: dict[int, dict] = {}
        unknown: set[int] = set()
        udp = False
        for inode, kind in kinds.items():
            proto = KINDS.get(kind, "") if kind is not None else "?"
            udp = udp or proto in ("udp", "?")
            if proto not in ("tcp", "?") or inode in quiet:
                continue
            known = self.listeners.get(inode)
            if known is not None:
                now_found = diag.exact(known)
                if now_found is not None:
                    self.listeners[inode] = now_found
                    if now_found.cgroup == cgroup_id:
                        out[inode] = now_found.entry()
                    continue  # another cgroup's (handed in): not this prison's, and no dump tells more
                del self.listeners[inode]
            unknown.add(inode)
        if unknown:
            # both families whatever the name says: IPV6_ADDRFORM turns a TCPv6 socket into an AF_INET one
            found = _both(diag, "tcp", cgroup_id, unknown)
            out.update((i, f.entry()) for i, f in found.items())
            quiet = (quiet & kinds.keys()) | (unknown - found.keys())
            if len(found) <= EXACT_MAX:  # a prison with more gets its dump each time: none kept (helper-38)
                self.listeners.update(found)
                self._count_partial(now)
        self._keep_quiet(cgroup_id, since, quiet, now)
        if udp:
            out.update((i, f.entry()) for i, f in _both(diag, "udp", cgroup_id, set(kinds)).items())
        return out

    def _keep_quiet(self, cgroup_id: int, since: float, quiet: set[int], now: float) -> None:
        if quiet:
            self.others[cgroup_id] = (since, quiet)
        else:
            self.others.pop(cgroup_id, None)
        if len(self.others) > self.prune_at:  # those of cgroups gone (a restart makes a new one)
            self.others = {c: v for c, v in self.others.items() if now - v[0] < self.others_ttl}
            self.prune_at = max(OTHERS_CGROUPS, 2 * len(self.others))

    def _count_partial(self, now: float) -> None:
        """After WHOLE_AFTER filtered dumps for sockets the book did not know (and WHOLE_EVERY
        since the last), a dump of every listener, in a thread."""
        self.partial += 1
        if self.partial < self.whole_after or self.whole_busy or now - self.whole_at < WHOLE_EVERY:
            return
        self.partial, self.whole_at, self.whole_busy = 0, now, True

        def whole() -> None:
            try:
                with self.open_diag() as diag:
                    found = _both(diag, "tcp")
                per: dict[int | None, int] = {}
                for f in found.values():
                    per[f.cgroup] = per.get(f.cgroup, 0) + 1
                self.whole_done = {i: f for i, f in found.items()
                                   if f.cgroup is not None and per[f.cgroup] <= EXACT_MAX}
            except OSError:
                pass
            finally:
                self.whole_busy = False
        self.run(whole)
