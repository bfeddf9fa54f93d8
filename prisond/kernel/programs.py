"""The kernel layer's programs, written with asm.Program.  Pure: map fds in, bytecode out.

One set of programs serves every kernel prison.  Each reads its prison's policy from cgroup
local storage (BPF_MAP_TYPE_CGROUP_STORAGE keyed by cgroup id, shared by all the programs
attached to one cgroup): a pointer, no hashing, and always the cgroup of the socket the hook
runs for.  A policy change is a map update, and a thousand prisons share one verified set.
Until the daemon writes a prison's policy its storage is all zero: no address, so every socket
call is refused and every packet dropped; failing closed is the only safe default.

Policy value (little-endian, addresses in network byte order):
    0 flags  4 n4  8 n6  12 lo4  16 lo6[16]  32 ip4[16][4]  96 ip6[16][16]  352 owner (u64, the
    cgroup id: whose claims are whose)                                          = 360 bytes
Counter value (u64 each):
    0 egress_drop  8 ingress_drop  16 egress_pkts  24 egress_bytes  32 ingress_pkts
    40 ingress_bytes  48 denied  56 rewritten                                   = 64 bytes

What each program does (FreeBSD's rules for a jail's sockets, as jail(8) and in_pcb.c keep them):
  bind4/6     0.0.0.0 (and ::ffff:0.0.0.0) -> the primary IPv4 address, where the socket holds
              its port: a prison's AF_INET socket never holds a port on an address that is not
              its own; with several IPv4 addresses it is also marked a wildcard (steer.py).
              `::` stays `::` with port 0 (an ephemeral port nobody asked for) and is marked,
              unless the prison's IPv6 address is shared (then the primary, as before: v6only,
              and no steering).  127.0.0.1/::1 -> the loopback target (::1 in a prison
              without IPv6: ::1 with port 0, which receives nothing); a prison address stays;
              anything else EADDRNOTAVAIL.  v4-mapped addresses follow IPv4.
  connect4/6  destination 127.0.0.1/::1, and the unspecified 0.0.0.0/`::`/::ffff:0.0.0.0 (which
              the kernel itself turns into loopback after these programs ran) -> the loopback
              target; the source is set with bpf_bind() to the primary (::ffff:primary for
              v4-mapped destinations).  In a prison without IPv6, an IPv6 destination that is
              not v4-mapped fails ENETUNREACH (its AF_INET6 sockets carry IPv4 only).
  sendmsg4/6  the same for UDP: destination rewrite, source set unless the socket is bound;
              an IP_PKTINFO source that is not the prison's is refused.
  sock_create an allow-list: TCP stream and UDP datagram sockets of a family the prison has an
              address for, and AF_INET6 TCP/UDP in a prison with IPv4 only (they carry IPv4 as
              ::ffff:a.b.c.d: nginx's `listen [::]:80`); raw sockets with allow.raw_sockets (of
              a family it has an address for); anything else (UDP-Lite, whose connect runs no
              connect hook, ping sockets, whose bind and sendmsg run none, MPTCP, SCTP, ...)
              EPROTONOSUPPORT.  An IPv6-only prison's AF_INET sockets stay EPROTONOSUPPORT (an
              AF_INET socket cannot carry IPv6: nothing to mirror).
  sock_ops, sk_lookup
              the wildcard: steer.py.
  post_bind4/6, sock_release
              claims on shared addresses: see "Claims" below.
  getpeername4/6, getsockname4/6
              what the prison's own programs are told of a connection through localhost: see
              "Localhost" below (connect4/6 and sendmsg4/6 mark the sockets that addressed it).
  egress      drop every packet whose source is not a prison address, or whose destination is
              the host's own loopback (127.0.0.1, ::1) or unspecified, unless a prison address;
  ingress     drop every packet whose destination is not a prison address, and datagrams for
              a port of a shared address that another prison claims.  These two are the
              guarantee: listen() without bind, UDP autobind, raw sockets, io_uring and anything
              the rewrites miss still cannot use a foreign address.

Claims (SO_REUSEPORT groups and UDP SO_REUSEADDR pairs never span prisons).  Once every bind is
narrowed to a prison's own address (bind4/6), two prisons can meet on one address:port only
where the configuration gives both the same address (allowed when both have exactly one of
that family, as FreeBSD does).  The policy marks such a family `tracked` (F_TRACK4/6); for it:
  - post_bind4/6 (BPF_CGROUP_INET4/6_POST_BIND, after the kernel picked the port, also port 0's)
    records the owner of (address, port, protocol) in a hash map and refuses (EADDRINUSE) a
    bind whose key another prison holds.  Entries are reference-counted (fetch-add): the
    workers of one prison share a key freely (nginx `reuseport`).  The first of two racing
    prisons wins the BPF_NOEXIST insert; a key being released (count 0) is never joined.
  - the socket remembers its claim in socket storage (BPF_MAP_TYPE_SK_STORAGE, not cloned to
    accepted sockets: a connection never holds its listener's claim), and sock_release
    (BPF_CGROUP_INET_SOCK_RELEASE) drops the count and deletes the key with the last one.
  - the kernel hashes a UDP socket before post_bind runs, so a refused socket could catch a
    datagram in between; and a connected UDP socket's autobind is no bind at all.  The ingress
    filter therefore drops a datagram for a claimed key delivered to any other prison.
  - what is not recorded, and why that is safe: bpf_bind() in connect4/6 takes no port (the
    port comes at connect, from ports no bind holds, and a connected socket takes its own
    4-tuple first); TCP listen() on an unbound socket picks a port no socket uses.
  - a full map (1M keys: eight shared addresses' whole port space) refuses binds on shared
    addresses with ENOBUFS: fail-closed, and only prisons with shared addresses meet it.
These three programs are attached only to prisons that hold a shared address (enforce.py):
the others pay nothing for them.

Wildcards: bind4/6 mark a wildcard socket (below); steer.py puts its listener in a sockhash
and hands it its prison's connections (sk_lookup), and says what is and is not covered.

Localhost (beyond FreeBSD, whose jails see their own address there).  A connection, or a
datagram, that addressed 127.0.0.1 / ::1 (or the unspecified address, which the kernel takes
for loopback) goes to the loopback target, the primary, from the primary: on the wire, and to
the host and every other prison, it is the prison's own address at both ends.  To the prison's
own programs it looks like localhost:
  - connect4/6 and sendmsg4/6, on their loopback rewrite only, mark the socket (socket storage,
    not cloned to accepted sockets: the prison's owner, and a bit per loopback: L_V4 for
    127.0.0.1 and ::ffff:127.0.0.1, L_V6 for ::1);
  - getpeername4/6 and getsockname4/6 (one program: accept() reports its peer through the
    getpeername hook) look only at a socket whose two ends are both the loopback target of
    their family (::ffff:primary on a v6 socket).  It reports 127.0.0.1 (::1,
    ::ffff:127.0.0.1) for the address asked for if the socket carries this prison's mark, or
    (TCP) if its peer socket does: found with bpf_sk_lookup_tcp on the reversed 4-tuple,
    established only (a listener the lookup falls back to does not count).  A TCP socket that
    was found to be such keeps the mark itself: its next calls need no lookup, and the answer
    stays the same after the client closed;
  - not UDP: a datagram's sender can be known only by its address and port
    (bpf_sk_lookup_udp), and any host user can send from the prison's address and a port of
    its choosing (IP_PKTINFO, from a socket bound to another local address): a recvmsg
    program that judged by them made a host user's datagrams 127.0.0.1's.  A datagram keeps
    its real source (the primary, for one through 127.0.0.1).
What never looks like localhost: the host (an unbound host socket takes the prison's address
as its source towards it, and host users may bind it), a neighbour prison, a prison sharing the
address (its own 127.0.0.1 leads to the same address; its marks carry its own owner), and the
prison's own connections to its address by name.  The limits, each within the prison itself
or towards its real address:
  - TCP: the server's side is judged when it first asks (accept with an address, getpeername,
    getsockname); a client socket already closed by then (a timewait socket has no storage)
    leaves the server seeing the prison's address;
  - only connections between the primary and itself: a client bound to another address of the
    prison that connects to 127.0.0.1 shows that address to the server (as Linux would), and
    the server's getsockname shows the primary; a listener, or any socket not connected,
    reports the address it holds (the primary for one bound to 127.0.0.1);
  - a mark is the socket's, not its destination's: a socket bound to the primary by name that
    then connects to 127.0.0.1 reports 127.0.0.1 as its own address;
  - a client that addressed localhost sees loopback as its peer whoever holds the prison's
    address and port (a host server squatting it, as a client of 127.0.0.1 anywhere sees
    whoever holds that port); the server's side, which services trust, is the one checked.
"""
from __future__ import annotations

import itertools
import struct
from errno import EADDRINUSE, EADDRNOTAVAIL, EEXIST, ENETUNREACH, ENOBUFS, EPERM, EPROTONOSUPPORT
from typing import NamedTuple

from prisond.model.contract import MAX_ADDRESSES
from prisond.kernel.asm import R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Program

# helpers (include/uapi/linux/bpf.h)
MAP_LOOKUP, MAP_UPDATE, MAP_DELETE = 1, 2, 3
SKB_LOAD_BYTES, BIND, GET_LOCAL_STORAGE, SK_STORAGE_GET, SET_RETVAL = 26, 64, 81, 107, 187
SOCK_HASH_UPDATE, SK_RELEASE, SK_ASSIGN = 70, 86, 124
NOEXIST, SK_STORAGE_CREATE = 1, 1  # BPF_NOEXIST; BPF_SK_STORAGE_GET_F_CREATE

MAX_ADDRS = MAX_ADDRESSES  # the policy map holds this many per family (contract.py)
# the policy value: u32 flags, n4, n6; lo4 (4 bytes); lo6 (16); ip4[MAX_ADDRS] (4 each);
# ip6[MAX_ADDRS] (16 each); u64 owner.  Another MAX_ADDRS is another layout: rename POLICY_MAP
# (enforce.py), so that no daemon adopts a map it would read wrong.
FLAGS, N4, N6, LO4, LO6, IP4 = 0, 4, 8, 12, 16, 32
IP6 = IP4 + 4 * MAX_ADDRS
OWNER = IP6 + 16 * MAX_ADDRS
POLICY_SIZE = OWNER + 8
F_RAW, F_TRACK4, F_TRACK6, F_TAINT4, F_TAINT6 = 1, 2, 4, 8, 16
C_EGRESS_DROP, C_INGRESS_DROP, C_EGRESS_PKTS, C_EGRESS_BYTES = 0, 8, 16, 24
C_INGRESS_PKTS, C_INGRESS_BYTES, C_DENIED, C_REWRITTEN = 32, 40, 48, 56
COUNTER_SIZE = 64
COUNTERS = ("egress_dropped", "ingress_dropped", "egress_packets", "egress_bytes", "ingress_packets",
            "ingress_bytes", "denied", "rewritten")

# Claims: key = address (16 bytes, IPv4 as ::ffff:a.b.c.d so that an AF_INET socket and an
# AF_INET6 one on the same v4 address meet on one key), port (network order), protocol (u16);
# value = owner (u64 cgroup id), holders (u64).  A socket's storage: the key, then `held`.
CLAIM_KEY_SIZE, CLAIM_VALUE_SIZE, CLAIM_STORE_SIZE = 20, 16, 24
CK_PORT, CK_PROTO, CV_OWNER, CV_COUNT, CS_HELD = 16, 18, 0, 8, 20
MAX_CLAIMS = 1 << 20  # 8 shared addresses x 2 protocols x 65536 ports: never full below that
CLAIM_TRIES = 3

LOOPBACK4 = 0x0100007F  # 127.0.0.1 as the little-endian load of its network-order bytes
LOOPBACK6_W3 = 0x01000000
V4MAPPED_W2 = 0xFFFF0000

# struct bpf_sock_addr / bpf_sock / __sk_buff offsets (checked against the kernel's own BTF:
# `bpftool btf dump file /sys/kernel/btf/vmlinux format c`)
SA_USER_IP4, SA_USER_IP6, SA_MSG_SRC_IP4, SA_MSG_SRC_IP6, SA_SK = 4, 8, 40, 44, 64
SK_FAMILY, SK_TYPE, SK_PROTOCOL, SK_SRC_IP4, SK_SRC_IP6, SK_SRC_PORT = 4, 8, 12, 24, 28, 44
SA_USER_PORT = 24
# struct bpf_sock_ops (op, family, local_ip4, local_ip6, local_port in host order, sk) and
# struct bpf_sk_lookup (sk, family, protocol, local_ip4, local_ip6, local_port in host order)
SO_OP, SO_FAMILY, SO_LOCAL_IP4, SO_LOCAL_IP6, SO_LOCAL_PORT, SO_SK = 0, 20, 28, 48, 68, 184
SL_FAMILY, SL_PROTOCOL, SL_LOCAL_IP4, SL_LOCAL_IP6, SL_LOCAL_PORT = 8, 12, 40, 44, 60
SOCK_OPS_TCP_LISTEN_CB, SK_PASS = 11, 1
SKB_LEN = 0
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, AF_INET, AF_INET6 = 1, 2, 3, 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17


# Wildcard steering (steer.py).  A socket's wildcard mark (socket storage):
# u16 port asked for (host order), u8 kind (4: an AF_INET socket, 6: an AF_INET6 one).
# Listener key (sockhash, 24 bytes): 16 bytes of address (IPv4 as ::ffff:a.b.c.d) for an exact
# listener, or the prison's cgroup id (u64) and 8 zero bytes for a wildcard one; then the port
# (u16, host order), the protocol (u8), the kind (u8: 1 exact, 4 or 6 wildcard), 4 zero bytes.
WILD_SIZE, W_PORT, W_KIND = 4, 0, 2
LISTEN_KEY_SIZE, LK_PORT, LK_PROTO, LK_KIND = 24, 16, 18, 19
K_EXACT, K_WILD4, K_WILD6 = 1, 4, 6
ADDR_KEY_SIZE = 16  # address -> prison (u64 cgroup id): the prison addresses only one prison holds
MAX_LISTENERS, MAX_STEERED = 1 << 16, 1 << 16


class Maps(NamedTuple):
    """The fds the programs use: the policy and counters (cgroup storage), the claims (hash),
    each socket's claim and wildcard mark (socket storage), the listeners (sockhash) and the
    steered addresses (hash)."""
    policy: int
    counters: int
    claims: int = 0
    sockets: int = 0
    wild: int = 0
    listeners: int = 0
    localhost: int = 0
    addresses: int = 0


def encode_policy(ip4: list[bytes], ip6: list[bytes], lo4: bytes, lo6: bytes, raw: bool,
                  flags: int = 0, owner: int = 0) -> bytes:
    """The map value for one prison; addresses as packed network-order bytes."""
    if len(ip4) > MAX_ADDRS or len(ip6) > MAX_ADDRS:
        raise ValueError(f"at most {MAX_ADDRS} addresses per family")
    out = bytearray(POLICY_SIZE)
    struct.pack_into("<III", out, 0, (F_RAW if raw else 0) | (flags & ~F_RAW), len(ip4), len(ip6))
    out[LO4:LO4 + 4] = lo4 or bytes(4)
    out[LO6:LO6 + 16] = lo6 or bytes(16)
    for i, a in enumerate(ip4):
        out[IP4 + 4 * i:IP4 + 4 * i + 4] = a
    for i, a in enumerate(ip6):
        out[IP6 + 16 * i:IP6 + 16 * i + 16] = a
    struct.pack_into("<Q", out, OWNER, owner)
    return bytes(out)


def decode_policy(raw: bytes) -> dict:
    """flags, the addresses (packed bytes) and the owner of a policy value."""
    flags, n4, n6 = struct.unpack_from("<III", raw, 0)
    n4, n6 = min(n4, MAX_ADDRS), min(n6, MAX_ADDRS)
    return {"flags": flags, "ip4": [raw[IP4 + 4 * i:IP4 + 4 * i + 4] for i in range(n4)],
            "ip6": [raw[IP6 + 16 * i:IP6 + 16 * i + 16] for i in range(n6)],
            "owner": struct.unpack_from("<Q", raw, OWNER)[0] if len(raw) >= POLICY_SIZE else 0}


def decode_counters(raw: bytes, ncpus: int = 1) -> dict:
    """Sum a per-CPU counter value (ncpus copies of COUNTER_SIZE bytes)."""
    values = struct.unpack_from(f"<{8 * ncpus}Q", raw)  # one unpack: the watcher reads 250 a second
    return dict(zip(COUNTERS, (sum(values[i::8]) for i in range(8)), strict=True))


def claims_btf(value_size: int = CLAIM_STORE_SIZE) -> bytes:
    """The BTF a socket-storage map must be created with (the kernel wants key and value
    types, "for userspace sk dumping"): [1] int, [2] int[value_size / 4] (the 24-byte claim a
    socket keeps; the 4-byte wildcard mark)."""
    strings = b"\0int\0"
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)            # INT "int", signed, 32 bits
    types += struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 1, 1, value_size // 4)  # ARRAY
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


class _Gen(Program):
    """Program plus the pieces every prisond program shares."""

    _ids = itertools.count()

    def __init__(self, maps: Maps):
        super().__init__()
        self.maps = maps

    def uniq(self, stem: str) -> str:
        return f"{stem}_{next(self._ids)}"

    def prologue(self) -> _Gen:
        """r6 = ctx, r7 = the policy: the cgroup storage of the prison cgroup the program is
        attached to (never NULL; all zero, which refuses everything, until the daemon writes it)."""
        self.movr(R6, R1)
        return self.policy()

    def policy(self) -> _Gen:
        self.ld_map_fd(R1, self.maps.policy).mov(R2, 0).call(GET_LOCAL_STORAGE).movr(R7, R0)
        return self

    def _counters(self) -> _Gen:
        """r0 = this CPU's counters (per-CPU cgroup storage: plain adds, never NULL); clobbers r0-r5."""
        return self.ld_map_fd(R1, self.maps.counters).mov(R2, 0).call(GET_LOCAL_STORAGE)

    def _bump(self, off: int, src: int | None = None) -> _Gen:
        self.ldx(8, R1, R0, off)
        if src is None:
            self.add(R1, 1)
        else:
            self.addr(R1, src)
        return self.stx(8, R0, off, R1)

    def count(self, off: int) -> _Gen:
        """Count one event; looked up only on the paths that count (clobbers r0-r5)."""
        return self._counters()._bump(off)

    def count_bytes(self, pkts_off: int, bytes_off: int) -> _Gen:
        self._counters()._bump(pkts_off)
        return self.ldx(4, R2, R6, SKB_LEN)._bump(bytes_off, R2)

    def in4(self, addr_reg: int, found: str, notfound: str) -> _Gen:
        """Jump to found if the u32 in addr_reg is a prison IPv4 address (clobbers r0, r1)."""
        self.ldx(4, R0, R7, N4)
        for i in range(MAX_ADDRS):
            self.jeq(R0, i, notfound).ldx(4, R1, R7, IP4 + 4 * i).jeq32r(addr_reg, R1, found)
        return self.jmp(notfound)

    def in6(self, found: str, notfound: str) -> _Gen:
        """Jump to found if r2..r5 (the four words) are a prison IPv6 address (clobbers r0, r1)."""
        self.ldx(4, R0, R7, N6)
        for i in range(MAX_ADDRS):
            nxt = self.uniq("next6")
            base = IP6 + 16 * i
            self.jeq(R0, i, notfound)
            for w, reg in enumerate((R2, R3, R4, R5)):
                self.ldx(4, R1, R7, base + 4 * w).jne32r(reg, R1, nxt)
            self.jmp(found).label(nxt)
        return self.jmp(notfound)

    def load_words(self, base_reg: int, off: int) -> _Gen:
        for w, reg in enumerate((R2, R3, R4, R5)):
            self.ldx(4, reg, base_reg, off + 4 * w)
        return self

    def copy_words(self, dst_off: int, src_off: int) -> _Gen:
        """ctx[dst_off..+16] = policy[src_off..+16], a register at a time (no BPF_ST into ctx)."""
        for w in range(4):
            self.ldx(4, R1, R7, src_off + 4 * w).stx(4, R6, dst_off + 4 * w, R1)
        return self

    def refuse(self, errno: int, with_retval: bool = True) -> _Gen:
        """Count a denied call and return 0 with this errno (bpf_set_retval; else EPERM)."""
        self.count(C_DENIED)
        if with_retval:
            self.mov(R1, -errno).call(SET_RETVAL)
        return self.ret(0)

    def finish(self, deny_errno: int | None, with_retval: bool) -> bytes:
        self.label("allow").ret(1)
        self.label("deny")
        if deny_errno and with_retval:
            self.mov(R1, -deny_errno).call(SET_RETVAL)
        self.ret(0)
        return self.assemble()


# ---------------------------------------------------------------- bind


def _mark_wild(g: _Gen, kind: int, then: str) -> None:
    """Mark the socket a wildcard listener-to-be in its storage (the port asked for, the kind),
    then jump to then.  Read by sock_ops at listen(); a socket that never listens carries it
    for nothing.  Clobbers r0-r5.  No storage to be had (memory): unmarked, primary only."""
    g.ld_map_fd(R1, g.maps.wild).ldx(8, R2, R6, SA_SK).mov(R3, 0).mov(R4, SK_STORAGE_CREATE).call(SK_STORAGE_GET)
    g.jeq(R0, 0, then)
    g.ldx(4, R1, R6, SA_USER_PORT).be16(R1).stx(2, R0, W_PORT, R1)
    g.mov(R1, kind).stx(1, R0, W_KIND, R1).jmp(then)


def _v4_any_or_list(g: _Gen, ctx_off: int, kind: int) -> None:
    """Rules for an IPv4 local address held in ctx at ctx_off (used by bind4 and v4-mapped bind6).
    The wildcard binds the primary (where it holds its port: never on an address that is not
    the prison's) and, with several addresses, is marked so that its listener answers on the
    others too (sk_lookup)."""
    g.ldx(4, R2, R6, ctx_off)
    g.jne32(R2, 0, "v4_not_any")
    g.ldx(4, R1, R7, IP4).stx(4, R6, ctx_off, R1).count(C_REWRITTEN)
    g.ldx(4, R1, R7, N4).jeq(R1, 1, "allow")
    _mark_wild(g, kind, "allow")
    g.label("v4_not_any")
    g.in4(R2, "allow", "v4_not_listed")
    g.label("v4_not_listed").jne32(R2, LOOPBACK4, "deny_count")
    g.ldx(4, R1, R7, LO4).stx(4, R6, ctx_off, R1).count(C_REWRITTEN).jmp("allow")


def bind4(maps: Maps, with_retval: bool = True) -> bytes:
    g = _Gen(maps).prologue()
    g.ldx(4, R3, R7, N4).jeq(R3, 0, "deny_count")
    _v4_any_or_list(g, SA_USER_IP4, K_WILD4)
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(EADDRNOTAVAIL, with_retval)


def bind6(maps: Maps, with_retval: bool = True) -> bytes:
    g = _Gen(maps).prologue()
    g.load_words(R6, SA_USER_IP6)
    # v4-mapped: the IPv4 rules on the last word
    g.jne32(R2, 0, "native").jne32(R3, 0, "native").jne32(R4, V4MAPPED_W2, "native")
    g.ldx(4, R1, R7, N4).jeq(R1, 0, "deny_count")
    _v4_any_or_list(g, SA_USER_IP6 + 12, K_WILD6)
    g.label("native")
    g.ldx(4, R1, R7, N6).jne(R1, 0, "has6").ldx(4, R1, R7, N4).jeq(R1, 0, "deny_count")
    g.label("has6")
    g.jne32(R2, 0, "not_any").jne32(R3, 0, "not_any").jne32(R4, 0, "not_any").jne32(R5, 0, "not_any")
    # `::`: binding any IPv6 address but `::` makes the socket v6only (__inet6_bind), and a
    # dual-stack `[::]` must stay able to take IPv4.  So it keeps `::` with port 0: an
    # ephemeral port, which no bind asked for (two prisons' `[::]:80` never meet, nor the
    # host's), and which the ingress filter keeps foreign packets from; marked with the port
    # asked for, so that sk_lookup hands it the prison's connections for that port, IPv6 (and
    # IPv4 unless v6only: bpf_sk_assign refuses it) on every address.  On a shared IPv6
    # address (tracked), nothing is steered: the primary, as before (v6only then).
    g.ldx(4, R1, R7, FLAGS).jset(R1, F_TRACK6, "any_primary")
    _mark_wild(g, K_WILD6, "any_port0")
    g.label("any_port0").mov(R1, 0).stx(4, R6, SA_USER_PORT, R1).count(C_REWRITTEN).jmp("allow")
    g.label("any_primary").copy_words(SA_USER_IP6, IP6).count(C_REWRITTEN).jmp("allow")
    g.label("not_any").ldx(4, R1, R7, N6).jeq(R1, 0, "no_v6")
    g.in6("allow", "not_listed")
    g.label("not_listed")
    g.jne32(R2, 0, "deny_count").jne32(R3, 0, "deny_count").jne32(R4, 0, "deny_count")
    g.jne32(R5, LOOPBACK6_W3, "deny_count")
    g.copy_words(SA_USER_IP6, LO6).count(C_REWRITTEN).jmp("allow")
    # No IPv6 address (an IPv4-only prison's AF_INET6 socket, which carries IPv4 as
    # ::ffff:a.b.c.d): ::1 binds ::1 with port 0 (v6only: it can never receive anything, and
    # holds no port anyone asked for); any other IPv6 address is refused.
    g.label("no_v6")
    g.jne32(R2, 0, "deny_count").jne32(R3, 0, "deny_count").jne32(R4, 0, "deny_count")
    g.jne32(R5, LOOPBACK6_W3, "deny_count")
    g.mov(R1, 0).stx(4, R6, SA_USER_PORT, R1).count(C_REWRITTEN).jmp("allow")
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(EADDRNOTAVAIL, with_retval)


# ---------------------------------------------------------------- connect and sendmsg


def _rewrite_loopback4(g: _Gen, ctx_off: int, then: str) -> None:
    """If ctx[ctx_off] is 0.0.0.0, or exactly 127.0.0.1 and not a prison address, point it at
    lo4.  The kernel sends to 0.0.0.0 as to the socket's own source (or 127.0.0.1 when it has
    none): FreeBSD's "unspecified means loopback", which here must mean the prison's."""
    done = g.uniq("lo4_listed")
    rewrite = g.uniq("lo4_rewrite")
    g.ldx(4, R2, R6, ctx_off).jeq32(R2, 0, rewrite).jne32(R2, LOOPBACK4, then)
    g.in4(R2, then, done)
    g.label(done).label(rewrite)
    g.ldx(4, R1, R7, LO4).stx(4, R6, ctx_off, R1).count(C_REWRITTEN)
    mark_localhost(g, L_V4).jmp(then)


def connect4(maps: Maps) -> bytes:
    g = _Gen(maps).prologue()
    g.ldx(4, R3, R7, N4).jeq(R3, 0, "deny_count")
    _rewrite_loopback4(g, SA_USER_IP4, "source")
    # source: bpf_bind(ctx, {AF_INET, port 0, primary}); EINVAL (bound already) is fine
    g.label("source")
    g.st(8, R10, -24, 0).st(8, R10, -16, 0).st(2, R10, -24, AF_INET)
    g.ldx(4, R1, R7, IP4).stx(4, R10, -20, R1)
    g.movr(R1, R6).movr(R2, R10).add(R2, -24).mov(R3, 16).call(BIND)
    g.jmp("allow")
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(None, False)


def _v6_destination(g: _Gen, source) -> None:
    """The destination rules of connect6 and sendmsg6, then `source(g, v4)` to set the source:
    v4-mapped destinations follow the IPv4 rules; ::1 and `::` go to the loopback target.  In
    a prison without IPv6 (its AF_INET6 sockets carry IPv4 only), any IPv6 peer: ENETUNREACH."""
    g.load_words(R6, SA_USER_IP6)
    g.jne32(R2, 0, "native").jne32(R3, 0, "native").jne32(R4, V4MAPPED_W2, "native")
    g.ldx(4, R1, R7, N4).jeq(R1, 0, "deny_count")
    _rewrite_loopback4(g, SA_USER_IP6 + 12, "src4")  # ::ffff:127.0.0.1 and ::ffff:0.0.0.0
    g.label("src4")
    source(g, True)
    g.label("native")
    g.ldx(4, R1, R7, N6).jne(R1, 0, "native6")
    # `::` may still mean IPv4 loopback (below); any other IPv6 destination is unreachable
    for reg in (R2, R3, R4, R5):
        g.jne32(reg, 0, "unreach")
    g.jmp("any6")
    g.label("native6")
    g.jne32(R2, 0, "src6").jne32(R3, 0, "src6").jne32(R4, 0, "src6")
    g.jeq32(R5, 0, "any6").jne32(R5, LOOPBACK6_W3, "src6")
    g.in6("src6", "lo6_rewrite")
    # `::`: tcp_v6_connect and ip6_datagram_connect make it ::1, or ::ffff:127.0.0.1 on a
    # socket bound to a v4-mapped address, after this program ran (udpv6_sendmsg makes the
    # latter before it, and then runs sendmsg4).  The same choice, towards the prison
    g.label("any6").ldx(8, R1, R6, SA_SK)
    g.ldx(4, R2, R1, SK_SRC_IP6).jne32(R2, 0, "any6_native")
    g.ldx(4, R2, R1, SK_SRC_IP6 + 4).jne32(R2, 0, "any6_native")
    g.ldx(4, R2, R1, SK_SRC_IP6 + 8).jne32(R2, V4MAPPED_W2, "any6_native")
    g.ldx(4, R1, R7, N4).jeq(R1, 0, "deny_count")
    g.mov(R1, V4MAPPED_W2).stx(4, R6, SA_USER_IP6 + 8, R1)  # words 0 and 1 are zero already
    g.ldx(4, R1, R7, LO4).stx(4, R6, SA_USER_IP6 + 12, R1).count(C_REWRITTEN)
    mark_localhost(g, L_V4).jmp("src4")
    g.label("any6_native").ldx(4, R1, R7, N6).jeq(R1, 0, "unreach")
    g.label("lo6_rewrite").copy_words(SA_USER_IP6, LO6).count(C_REWRITTEN)
    mark_localhost(g, L_V6)
    g.label("src6")
    source(g, False)
    g.label("unreach").refuse(ENETUNREACH)


def connect6(maps: Maps) -> bytes:
    g = _Gen(maps).prologue()
    _v6_destination(g, lambda g, v4: _sockaddr6_source(g, v4).jmp("allow"))
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(None, False)


def _sockaddr6_source(g: _Gen, v4: bool) -> _Gen:
    """bpf_bind(ctx, sockaddr_in6{AF_INET6, port 0, addr}) with addr the v6 primary or
    ::ffff:<v4 primary>.  The sockaddr sits at r10-40: family -40, port -38, flowinfo -36,
    addr -32..-17, scope -16."""
    for off in (-40, -32, -24, -16):
        g.st(8, R10, off, 0)
    g.st(2, R10, -40, AF_INET6)
    if v4:
        g.mov(R1, V4MAPPED_W2).stx(4, R10, -24, R1)
        g.ldx(4, R1, R7, IP4).stx(4, R10, -20, R1)
    else:
        for w in range(4):
            g.ldx(4, R1, R7, IP6 + 4 * w).stx(4, R10, -32 + 4 * w, R1)
    return g.movr(R1, R6).movr(R2, R10).add(R2, -40).mov(R3, 28).call(BIND)


def sendmsg4(maps: Maps) -> bytes:
    g = _Gen(maps).prologue()
    g.ldx(4, R3, R7, N4).jeq(R3, 0, "deny_count")
    _rewrite_loopback4(g, SA_USER_IP4, "source")
    g.label("source").ldx(4, R2, R6, SA_MSG_SRC_IP4).jeq32(R2, 0, "unset")
    g.in4(R2, "allow", "deny_count")  # IP_PKTINFO asked for a source: only a prison address
    g.label("unset")
    g.ldx(8, R1, R6, SA_SK).ldx(4, R2, R1, SK_SRC_IP4).jne32(R2, 0, "allow")  # bound: its address
    g.ldx(4, R1, R7, IP4).stx(4, R6, SA_MSG_SRC_IP4, R1).jmp("allow")
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(None, False)


def sendmsg6(maps: Maps) -> bytes:
    g = _Gen(maps).prologue()
    _v6_destination(g, _msg_src6)
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(None, False)


def _msg_src6(g: _Gen, v4: bool) -> None:
    """Check an IPV6_PKTINFO source, or set one when the socket is not bound; ends in a jump."""
    tag = "4" if v4 else "6"
    g.load_words(R6, SA_MSG_SRC_IP6)
    g.jne32(R2, 0, f"given{tag}").jne32(R3, 0, f"given{tag}").jne32(R4, 0, f"given{tag}")
    g.jne32(R5, 0, f"given{tag}")
    g.ldx(8, R1, R6, SA_SK).load_words(R1, SK_SRC_IP6)
    for reg in (R2, R3, R4, R5):
        g.jne32(reg, 0, "allow")  # bound to a prison address by bind6: leave it
    if v4:
        g.mov(R1, 0).stx(4, R6, SA_MSG_SRC_IP6, R1).stx(4, R6, SA_MSG_SRC_IP6 + 4, R1)
        g.mov(R1, V4MAPPED_W2).stx(4, R6, SA_MSG_SRC_IP6 + 8, R1)
        g.ldx(4, R1, R7, IP4).stx(4, R6, SA_MSG_SRC_IP6 + 12, R1)
    else:
        g.copy_words(SA_MSG_SRC_IP6, IP6)
    g.jmp("allow")
    g.label(f"given{tag}")
    if v4:
        g.jne32(R2, 0, "deny_count").jne32(R3, 0, "deny_count").jne32(R4, V4MAPPED_W2, "deny_count")
        g.in4(R5, "allow", "deny_count")
    else:
        g.in6("allow", "deny_count")


# ---------------------------------------------------------------- socket()


def sock_create(maps: Maps, with_retval: bool = True) -> bytes:
    """An allow-list, not a deny-list: every inet protocol has its own paths through the stack,
    and the hooks above are only known to hold for TCP and UDP.  UDP-Lite's proto has no
    pre_connect (connect runs no connect4/6), ping sockets have their own bind (inet_bind skips
    the bind hook) and no sendmsg hook, MPTCP and SCTP have their own.  protocol 0 reaches this
    program already resolved by inet_create to the type's default (6 or 17)."""
    g = _Gen(maps).prologue()
    g.ldx(4, R2, R6, SK_FAMILY).ldx(4, R3, R6, SK_TYPE).ldx(4, R4, R6, SK_PROTOCOL)
    g.jne(R2, AF_INET, "not4").ldx(4, R1, R7, N4).jeq(R1, 0, "no_family").jmp("type")
    g.label("not4").jne(R2, AF_INET6, "type").ldx(4, R1, R7, N6).jne(R1, 0, "type")
    # AF_INET6 without an IPv6 address: TCP and UDP, which carry IPv4 as ::ffff:a.b.c.d (nginx's
    # `listen [::]:80` in an IPv4-only prison); bind6/connect6/sendmsg6 keep them to IPv4
    g.ldx(4, R1, R7, N4).jeq(R1, 0, "no_family").jeq(R3, SOCK_RAW, "no_family")
    g.label("type")
    g.jne(R3, SOCK_STREAM, "not_stream").jeq(R4, IPPROTO_TCP, "allow").jmp("no_protocol")
    g.label("not_stream").jne(R3, SOCK_DGRAM, "not_dgram").jeq(R4, IPPROTO_UDP, "allow").jmp("no_protocol")
    g.label("not_dgram").jne(R3, SOCK_RAW, "no_protocol")
    g.ldx(4, R1, R7, FLAGS).jset(R1, F_RAW, "allow")
    g.label("deny_count").count(C_DENIED).jmp("deny")
    # FreeBSD answers EPROTONOSUPPORT for a family the jail has no address for; the same for a
    # protocol a prison may not use (libraries fall back on it: iputils ping tries raw next)
    g.label("no_family").refuse(EPROTONOSUPPORT, with_retval)
    g.label("no_protocol").refuse(EPROTONOSUPPORT, with_retval)
    return g.finish(EPERM, with_retval)


# ---------------------------------------------------------------- claims


def _claim_key(g: _Gen, v6: bool) -> None:
    """The claim key of the bound socket at r10-24 (r10-24..-5)."""
    if v6:
        for w in range(4):
            g.ldx(4, R1, R6, SK_SRC_IP6 + 4 * w).stx(4, R10, -24 + 4 * w, R1)
    else:
        g.st(8, R10, -24, 0).st(4, R10, -16, V4MAPPED_W2 - (1 << 32))
        g.ldx(4, R1, R6, SK_SRC_IP4).stx(4, R10, -12, R1)
    g.ldx(4, R1, R6, SK_SRC_PORT).be16(R1).stx(2, R10, -24 + CK_PORT, R1)
    g.ldx(4, R1, R6, SK_PROTOCOL).stx(2, R10, -24 + CK_PROTO, R1)


def post_bind(maps: Maps, v6: bool, with_retval: bool = True) -> bytes:
    """BPF_CGROUP_INET4/6_POST_BIND: claim (address, port, protocol) for this prison, or refuse
    the bind if another prison holds it.  Runs after get_port, only when a port was taken (not
    for bpf_bind() nor IP_BIND_ADDRESS_NO_PORT); a refusal makes the kernel let the port go."""
    g = _Gen(maps).prologue()
    g.ldx(4, R1, R7, FLAGS)
    if v6:
        g.load_words(R6, SK_SRC_IP6)  # r1 is kept: load_words uses r2..r5
        g.jne32(R2, 0, "native").jne32(R3, 0, "native").jne32(R4, V4MAPPED_W2, "native")
        g.jset(R1, F_TRACK4, "track").jmp("allow")
        g.label("native").jset(R1, F_TRACK6, "track").jmp("allow")
    else:
        g.jset(R1, F_TRACK4, "track").jmp("allow")
    g.label("track")
    _claim_key(g, v6)
    # the socket's storage first: when it cannot be had, nothing is claimed yet to undo
    g.ld_map_fd(R1, maps.sockets).movr(R2, R6).mov(R3, 0).mov(R4, SK_STORAGE_CREATE).call(SK_STORAGE_GET)
    g.jeq(R0, 0, "full").movr(R8, R0)
    for t in range(CLAIM_TRIES):
        nxt = f"try{t + 1}" if t + 1 < CLAIM_TRIES else "taken"
        g.label(f"try{t}")
        g.ld_map_fd(R1, maps.claims).movr(R2, R10).add(R2, -24).call(MAP_LOOKUP)
        g.jne(R0, 0, f"found{t}")
        # nobody's: insert {owner, 1}; of two racing binds one insert wins, the other retries
        g.ldx(8, R1, R7, OWNER).stx(8, R10, -40, R1).st(8, R10, -32, 1)
        g.ld_map_fd(R1, maps.claims).movr(R2, R10).add(R2, -24).movr(R3, R10).add(R3, -40).mov(R4, NOEXIST)
        g.call(MAP_UPDATE).jeq(R0, 0, "claimed").jeq(R0, -EEXIST, nxt).jmp("full")
        g.label(f"found{t}").movr(R9, R0)
        g.ldx(8, R1, R9, CV_OWNER).ldx(8, R2, R7, OWNER).jner(R1, R2, "taken")
        g.mov(R1, 1).fetch_add(8, R9, CV_COUNT, R1)
        # 0 holders: the last one is deleting it right now; wait for the delete and insert
        g.jeq(R1, 0, f"undo{t}")
        # a lookup's pointer may outlive its element (deleted, memory reused by another key,
        # or our key again for another prison): it must still be our key's entry, and ours
        g.ld_map_fd(R1, maps.claims).movr(R2, R10).add(R2, -24).call(MAP_LOOKUP).jner(R0, R9, f"undo{t}")
        g.ldx(8, R1, R9, CV_OWNER).ldx(8, R2, R7, OWNER).jeqr(R1, R2, "claimed")
        g.mov(R1, -1).fetch_add(8, R9, CV_COUNT, R1).jmp("taken")
        g.label(f"undo{t}").mov(R1, -1).fetch_add(8, R9, CV_COUNT, R1).jmp(nxt)
    g.label("claimed")  # the socket keeps its key for sock_release
    for off in range(0, CLAIM_KEY_SIZE, 4):
        g.ldx(4, R1, R10, -24 + off).stx(4, R8, off, R1)
    g.st(4, R8, CS_HELD, 1).jmp("allow")
    g.label("taken").refuse(EADDRINUSE, with_retval)
    g.label("full").refuse(ENOBUFS, with_retval)
    g.label("allow").ret(1)  # no "deny" here: the verifier refuses unreachable instructions
    return g.assemble()


def sock_release(maps: Maps) -> bytes:
    """BPF_CGROUP_INET_SOCK_RELEASE: the last holder of a claim deletes it.  Every socket of
    the prison comes here at close; only those that claimed have storage (accepted sockets
    get none: the map is made without BPF_F_CLONE).  Must return 1."""
    g = _Gen(maps)
    g.movr(R6, R1)
    g.ld_map_fd(R1, maps.sockets).movr(R2, R6).mov(R3, 0).mov(R4, 0).call(SK_STORAGE_GET)
    g.jeq(R0, 0, "out").movr(R8, R0)
    g.ldx(4, R1, R8, CS_HELD).jeq(R1, 0, "out").st(4, R8, CS_HELD, 0)
    g.policy()
    g.ld_map_fd(R1, maps.claims).movr(R2, R8).call(MAP_LOOKUP).jeq(R0, 0, "out").movr(R9, R0)
    g.ldx(8, R1, R9, CV_OWNER).ldx(8, R2, R7, OWNER).jner(R1, R2, "out")
    g.mov(R1, -1).fetch_add(8, R9, CV_COUNT, R1).jne(R1, 1, "out")
    g.ld_map_fd(R1, maps.claims).movr(R2, R8).call(MAP_DELETE)
    g.label("out").ret(1)
    return g.assemble()


# ---------------------------------------------------------------- packets


def _tcp_answer(g: _Gen, proto_off: int, l4_off: int | None) -> None:
    """Pass a TCP segment other than a bare SYN (an answer on a connection a host client opened
    from 127.0.0.1/::1 to the prison's address), drop anything else.  l4_off None: the IPv4
    header's own length.  A connection the prison opens starts with a SYN: cut there."""
    g.ldx(1, R1, R10, proto_off).jne(R1, IPPROTO_TCP, "drop")
    if l4_off is None:
        g.ldx(1, R2, R10, -48).and_(R2, 0x0F).lsh(R2, 2).add(R2, 13)
    else:
        g.mov(R2, l4_off + 13)
    g.movr(R1, R6).movr(R3, R10).add(R3, -56).mov(R4, 1).call(SKB_LOAD_BYTES).jne(R0, 0, "drop")
    g.ldx(1, R1, R10, -56).and_(R1, 0x12).jeq(R1, 0x02, "drop").jmp("pass")


def _udp_claim(g: _Gen, v6: bool) -> None:
    """Ingress, tracked family only: a UDP datagram for a key another prison claims is dropped
    (see Claims).  The key is built at r10-72..-53 from the header at r10-48."""
    g.ldx(1, R1, R10, -48 + (6 if v6 else 9)).jne(R1, IPPROTO_UDP, "pass")
    if v6:
        for w in range(4):
            g.ldx(4, R1, R10, -48 + 24 + 4 * w).stx(4, R10, -72 + 4 * w, R1)
        g.mov(R2, 40 + 2)
    else:
        g.st(8, R10, -72, 0).st(4, R10, -64, V4MAPPED_W2 - (1 << 32))
        g.ldx(4, R1, R10, -48 + 16).stx(4, R10, -60, R1)
        g.ldx(1, R2, R10, -48).and_(R2, 0x0F).lsh(R2, 2).add(R2, 2)
    g.movr(R1, R6).movr(R3, R10).add(R3, -72 + CK_PORT).mov(R4, 2).call(SKB_LOAD_BYTES).jne(R0, 0, "drop")
    g.st(2, R10, -72 + CK_PROTO, IPPROTO_UDP)
    g.ld_map_fd(R1, g.maps.claims).movr(R2, R10).add(R2, -72).call(MAP_LOOKUP).jeq(R0, 0, "pass")
    g.ldx(8, R1, R0, CV_OWNER).ldx(8, R2, R7, OWNER).jeqr(R1, R2, "pass").jmp("drop")


def skb_filter(maps: Maps, egress: bool) -> bytes:
    """cgroup_skb: pass packets whose source (egress) or destination (ingress) is the prison's.
    Egress also keeps the host's loopback and the unspecified addresses out of reach; ingress
    also keeps out packets from the host's 127.0.0.1 and ::1 (they would look like the
    prison's own localhost to its services) and other prisons' claimed UDP ports."""
    g = _Gen(maps).prologue()
    buf = -48  # 40 bytes of header at r10-48
    g.movr(R1, R6).mov(R2, 0).movr(R3, R10).add(R3, buf).mov(R4, 20).call(SKB_LOAD_BYTES)
    g.jne(R0, 0, "drop")
    g.ldx(1, R2, R10, buf).rsh(R2, 4)  # the IP version nibble
    g.jeq(R2, 6, "v6").jne(R2, 4, "drop")
    g.ldx(4, R2, R10, buf + (12 if egress else 16))
    g.in4(R2, "ok4", "drop")
    g.label("ok4")
    if egress:
        # the destination: 0.0.0.0, and 127.0.0.1 unless it is the prison's (other 127/8
        # addresses are other prisons', reachable as any address is)
        g.ldx(4, R2, R10, buf + 16).jeq32(R2, 0, "drop").jne32(R2, LOOPBACK4, "pass")
        g.in4(R2, "pass", "lo4")
        g.label("lo4")
        _tcp_answer(g, buf + 9, None)
    else:
        # from the host's 127.0.0.1 (a host user who bound it): never, unless it is the
        # prison's own.  Only the prison's own connections may look like localhost to it,
        # and those go primary to primary on the wire.
        g.ldx(4, R2, R10, buf + 12).jne32(R2, LOOPBACK4, "claims4")
        g.in4(R2, "claims4", "drop")
        g.label("claims4")
        g.ldx(4, R1, R7, FLAGS).jset(R1, F_TRACK4, "claim4").jmp("pass")
        g.label("claim4")
        _udp_claim(g, v6=False)
    g.label("v6")
    g.movr(R1, R6).mov(R2, 0).movr(R3, R10).add(R3, buf).mov(R4, 40).call(SKB_LOAD_BYTES)
    g.jne(R0, 0, "drop")
    g.load_words(R10, buf + (8 if egress else 24))
    g.in6("ok6", "drop")
    g.label("ok6")
    if egress:
        # ::1 unless the prison's; `::`; and v4-mapped ones, never valid on the wire (RFC 4291
        # 2.5.5.2: the stack sends IPv4 for them; only a raw socket writes such a packet)
        g.load_words(R10, buf + 24)
        g.jne32(R2, 0, "pass").jne32(R3, 0, "pass").jeq32(R4, V4MAPPED_W2, "drop").jne32(R4, 0, "pass")
        g.jeq32(R5, 0, "drop").jne32(R5, LOOPBACK6_W3, "pass")
        g.in6("pass", "lo6")
        g.label("lo6")
        _tcp_answer(g, buf + 6, 40)
    else:
        g.load_words(R10, buf + 8)  # the source: ::1 as 127.0.0.1 above
        g.jne32(R2, 0, "claims6").jne32(R3, 0, "claims6").jne32(R4, 0, "claims6").jne32(R5, LOOPBACK6_W3, "claims6")
        g.in6("claims6", "drop")
        g.label("claims6")
        g.ldx(4, R1, R7, FLAGS).jset(R1, F_TRACK6, "claim6").jmp("pass")
        g.label("claim6")
        _udp_claim(g, v6=True)
    g.label("pass").count_bytes(*((C_EGRESS_PKTS, C_EGRESS_BYTES) if egress else (C_INGRESS_PKTS, C_INGRESS_BYTES)))
    g.ret(1)
    g.label("drop").count(C_EGRESS_DROP if egress else C_INGRESS_DROP)
    g.label("deny").ret(0)
    return g.assemble()


# ---------------------------------------------------------------- localhost

# A socket's localhost mark (socket storage, not cloned to accepted sockets): u64 owner (the
# prison's cgroup id, from its policy), u32 flags (which loopback it addressed), u32 pad.
LOCAL_STORE_SIZE, L_OWNER, L_FLAGS = 16, 0, 8
L_V4, L_V6 = 1, 2
SK_LOOKUP_TCP, SK_LOOKUP_UDP, SK_RELEASE = 84, 85, 86
SA_USER_PORT = 24
SK_DST_PORT, SK_DST_IP4, SK_DST_IP6, SK_STATE = 48, 52, 56, 72
TCP_LISTEN = 10


def localhost_btf() -> bytes:
    """The BTF of the localhost marks' socket storage: [1] int, [2] int[4] (owner, flags, pad)."""
    strings = b"\0int\0"
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)
    types += struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 1, 1, LOCAL_STORE_SIZE // 4)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def mark_localhost(g: _Gen, bit: int) -> _Gen:
    """Mark the socket of a sock_addr program (ctx in r6, policy in r7) as this prison's that
    addressed loopback (bit: L_V4 for 127.0.0.1 and ::ffff:127.0.0.1, L_V6 for ::1), with the
    prison's owner.  Only the loopback paths of connect4/6 and sendmsg4/6 (and getname, for a
    connection it found to be one) call this: other calls pay nothing.  Clobbers r0-r5."""
    done, same = g.uniq("marked"), g.uniq("same_owner")
    g.ld_map_fd(R1, g.maps.localhost).ldx(8, R2, R6, SA_SK).mov(R3, 0).mov(R4, SK_STORAGE_CREATE)
    g.call(SK_STORAGE_GET).jeq(R0, 0, done)
    g.ldx(8, R1, R7, OWNER).ldx(8, R2, R0, L_OWNER).jeqr(R1, R2, same)
    g.stx(8, R0, L_OWNER, R1).mov(R2, 0).stx(4, R0, L_FLAGS, R2)  # never another prison's bits
    g.label(same).ldx(4, R1, R0, L_FLAGS).or_(R1, bit).stx(4, R0, L_FLAGS, R1)
    return g.label(done)


def _marked(g: _Gen, sk_reg: int, bit: int, yes: str, no: str) -> None:
    """Jump to yes if the socket in sk_reg carries this prison's mark for bit, else to no
    (clobbers r0-r5)."""
    g.ld_map_fd(R1, g.maps.localhost).movr(R2, sk_reg).mov(R3, 0).mov(R4, 0).call(SK_STORAGE_GET)
    g.jeq(R0, 0, no)
    g.ldx(8, R1, R0, L_OWNER).ldx(8, R2, R7, OWNER).jner(R1, R2, no)
    g.ldx(4, R1, R0, L_FLAGS).jset(R1, bit, yes).jmp(no)


def _peer_verdict(g: _Gen, helper: int, tuple_len: int, bit: int, tag: str, listener_check: bool) -> None:
    """Look up the peer socket with the tuple at r10-40 (bpf_sk_lookup_tcp/udp: the socket that
    would receive a packet from the tuple's source to its destination), r8 = 1 if it carries
    this prison's mark for bit, else 0; release it.  Jumps to "out" when there is none."""
    g.movr(R1, R6).movr(R2, R10).add(R2, -40).mov(R3, tuple_len).mov(R4, -1).mov(R5, 0).call(helper)
    g.jeq(R0, 0, "out").movr(R9, R0).mov(R8, 0)
    if listener_check:  # no established socket: the lookup falls back to a listener on that port
        g.ldx(4, R1, R9, SK_STATE).jeq(R1, TCP_LISTEN, f"release{tag}")
    g.ld_map_fd(R1, g.maps.localhost).movr(R2, R9).mov(R3, 0).mov(R4, 0).call(SK_STORAGE_GET)
    g.jeq(R0, 0, f"release{tag}")
    g.ldx(8, R1, R0, L_OWNER).ldx(8, R2, R7, OWNER).jner(R1, R2, f"release{tag}")
    g.ldx(4, R1, R0, L_FLAGS).and_(R1, bit).movr(R8, R1)
    g.label(f"release{tag}").movr(R1, R9).call(SK_RELEASE)
    g.jeq(R8, 0, "out")


def _report_loopback(g: _Gen, v6: bool, mapped: bool) -> _Gen:
    """ctx's user address = 127.0.0.1, ::ffff:127.0.0.1 or ::1 (the port is left alone)."""
    if not v6:
        return g.mov(R1, LOOPBACK4).stx(4, R6, SA_USER_IP4, R1)
    words = (0, 0, V4MAPPED_W2, LOOPBACK4) if mapped else (0, 0, 0, LOOPBACK6_W3)
    for w, value in enumerate(words):
        g.mov(R1, value).stx(4, R6, SA_USER_IP6 + 4 * w, R1)
    return g


def _same_words(g: _Gen, base_reg: int, off: int, policy_off: int, no: str) -> None:
    """Fall through if the 16 bytes at base_reg+off equal the policy's at policy_off."""
    for w in range(4):
        g.ldx(4, R2, base_reg, off + 4 * w).ldx(4, R1, R7, policy_off + 4 * w).jne32r(R2, R1, no)


def _is_mapped(g: _Gen, base_reg: int, off: int, no: str) -> None:
    """Fall through if the address at base_reg+off is v4-mapped (r5 = its IPv4 word)."""
    g.load_words(base_reg, off)
    g.jne32(R2, 0, no).jne32(R3, 0, no).jne32(R4, V4MAPPED_W2, no)


def _getname_case(g: _Gen, v6: bool, mapped: bool, tag: str) -> None:
    """Both ends of the socket (r8) are the loopback target, checked by the caller: say loopback
    if the socket carries the mark, or (TCP) if its peer socket does (and mark this one)."""
    bit = L_V4 if not v6 or mapped else L_V6
    yes = f"yes{tag}"
    _marked(g, R8, bit, yes, f"look{tag}")
    g.label(f"look{tag}")
    g.ldx(4, R1, R8, SK_PROTOCOL).jne(R1, IPPROTO_TCP, "out")
    # the tuple of a packet from this socket's end to the peer's: saddr, daddr, sport, dport
    if v6 and not mapped:
        for w in range(4):
            g.ldx(4, R1, R7, LO6 + 4 * w).stx(4, R10, -40 + 4 * w, R1).stx(4, R10, -24 + 4 * w, R1)
        ports, size = -8, 36
    else:
        g.ldx(4, R1, R7, LO4).stx(4, R10, -40, R1).stx(4, R10, -36, R1)
        ports, size = -32, 12
    g.ldx(4, R1, R8, SK_SRC_PORT).be16(R1).stx(2, R10, ports, R1)
    g.ldx(2, R1, R8, SK_DST_PORT).stx(2, R10, ports + 2, R1)
    _peer_verdict(g, SK_LOOKUP_TCP, size, bit, tag, listener_check=True)
    mark_localhost(g, bit)  # the answer is final for this connection: the next call needs no lookup
    g.label(yes)
    _report_loopback(g, v6, mapped).jmp("out")


def getname(maps: Maps, v6: bool) -> bytes:
    """BPF_CGROUP_INET4/6_GETPEERNAME and _GETSOCKNAME (accept() reports its peer through the
    getpeername hook): one program for both, since it judges the connection, not the address
    asked for.  A connection whose two ends are both the prison's loopback target reports
    loopback for the address asked for if this socket was marked (it addressed loopback), or,
    for TCP, if the peer socket found with bpf_sk_lookup_tcp carries this prison's mark.
    Must return 1."""
    g = _Gen(maps).prologue()
    g.ldx(8, R8, R6, SA_SK)
    if not v6:
        g.ldx(4, R1, R7, N4).jeq(R1, 0, "out").ldx(4, R1, R7, LO4)
        g.ldx(4, R2, R8, SK_SRC_IP4).jne32r(R2, R1, "out")
        g.ldx(4, R2, R8, SK_DST_IP4).jne32r(R2, R1, "out")
        _getname_case(g, False, False, "4")
    else:
        _is_mapped(g, R8, SK_SRC_IP6, "native")
        g.ldx(4, R1, R7, N4).jeq(R1, 0, "out").ldx(4, R1, R7, LO4).jne32r(R5, R1, "out")
        _is_mapped(g, R8, SK_DST_IP6, "out")
        g.ldx(4, R1, R7, LO4).jne32r(R5, R1, "out")
        _getname_case(g, True, True, "m")
        g.label("native")
        g.ldx(4, R1, R7, N6).jeq(R1, 0, "out")
        _same_words(g, R8, SK_SRC_IP6, LO6, "out")
        _same_words(g, R8, SK_DST_IP6, LO6, "out")
        _getname_case(g, True, False, "6")
    g.label("out").ret(1)
    return g.assemble()


