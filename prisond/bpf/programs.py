"""The kernel layer's programs, written with asm.Program.  Pure: map fds in, bytecode out.

One set of programs serves every kernel prison.  Each reads its prison's policy from cgroup
local storage (BPF_MAP_TYPE_CGROUP_STORAGE keyed by cgroup id, shared by all the programs
attached to one cgroup): a pointer, no hashing, and always the cgroup of the socket the hook
runs for.  A policy change is a map update, and a thousand prisons share one verified set.
Until the daemon writes a prison's policy its storage is all zero: no address, so every socket
call is refused and every packet dropped; failing closed is the only safe default.

Policy value (little-endian, addresses in network byte order):
    0 flags  4 n4  8 n6  12 lo4  16 lo6[16]  32 ip4[16][4]  96 ip6[16][16]      = 352 bytes
Counter value (u64 each):
    0 egress_drop  8 ingress_drop  16 egress_pkts  24 egress_bytes  32 ingress_pkts
    40 ingress_bytes  48 denied  56 rewritten                                   = 64 bytes

What each program does (FreeBSD's rules, jail-semantics.md):
  bind4/6     wildcard -> the address when the prison has one (several: stays wildcard, the
              ingress filter guards it); 127.0.0.1/::1 -> the loopback target; a prison address
              stays; anything else EADDRNOTAVAIL.  v4-mapped addresses follow the IPv4 rules.
  connect4/6  destination exactly 127.0.0.1/::1 -> the loopback target; the source is set with
              bpf_bind() to the primary (::ffff:primary for v4-mapped destinations).
  sendmsg4/6  the same for UDP: destination rewrite, source set unless the socket is bound;
              an IP_PKTINFO source that is not the prison's is refused.
  sock_create no socket of a family the prison has no address for; no raw socket unless allowed.
  egress      drop every packet whose source is not a prison address;
  ingress     drop every packet whose destination is not a prison address.  These two are
              the guarantee: listen() without bind, UDP autobind, raw sockets, io_uring and
              anything the rewrites miss still cannot use a foreign address.
"""
from __future__ import annotations

import itertools
import struct

from .asm import R0, R1, R2, R3, R4, R5, R6, R7, R10, Program

# helpers (include/uapi/linux/bpf.h)
SKB_LOAD_BYTES, BIND, GET_LOCAL_STORAGE, SET_RETVAL = 26, 64, 81, 187

MAX_ADDRS = 16
FLAGS, N4, N6, LO4, LO6, IP4, IP6 = 0, 4, 8, 12, 16, 32, 96
POLICY_SIZE = IP6 + 16 * MAX_ADDRS
F_RAW = 1
C_EGRESS_DROP, C_INGRESS_DROP, C_EGRESS_PKTS, C_EGRESS_BYTES = 0, 8, 16, 24
C_INGRESS_PKTS, C_INGRESS_BYTES, C_DENIED, C_REWRITTEN = 32, 40, 48, 56
COUNTER_SIZE = 64
COUNTERS = ("egress_dropped", "ingress_dropped", "egress_packets", "egress_bytes", "ingress_packets",
            "ingress_bytes", "denied", "rewritten")

LOOPBACK4 = 0x0100007F  # 127.0.0.1 as the little-endian load of its network-order bytes
LOOPBACK6_W3 = 0x01000000
V4MAPPED_W2 = 0xFFFF0000
EADDRNOTAVAIL, EPROTONOSUPPORT, EPERM = 99, 93, 1

# struct bpf_sock_addr / bpf_sock / __sk_buff offsets
SA_USER_IP4, SA_USER_IP6, SA_MSG_SRC_IP4, SA_MSG_SRC_IP6, SA_SK = 4, 8, 40, 44, 64
SK_FAMILY, SK_TYPE, SK_SRC_IP4, SK_SRC_IP6 = 4, 8, 24, 28
SKB_LEN = 0
SOCK_RAW, AF_INET, AF_INET6 = 3, 2, 10


def encode_policy(ip4: list[bytes], ip6: list[bytes], lo4: bytes, lo6: bytes, raw: bool) -> bytes:
    """The map value for one prison; addresses as packed network-order bytes."""
    if len(ip4) > MAX_ADDRS or len(ip6) > MAX_ADDRS:
        raise ValueError(f"at most {MAX_ADDRS} addresses per family")
    out = bytearray(POLICY_SIZE)
    struct.pack_into("<III", out, 0, F_RAW if raw else 0, len(ip4), len(ip6))
    out[LO4:LO4 + 4] = lo4 or bytes(4)
    out[LO6:LO6 + 16] = lo6 or bytes(16)
    for i, a in enumerate(ip4):
        out[IP4 + 4 * i:IP4 + 4 * i + 4] = a
    for i, a in enumerate(ip6):
        out[IP6 + 16 * i:IP6 + 16 * i + 16] = a
    return bytes(out)


def decode_counters(raw: bytes, ncpus: int = 1) -> dict:
    """Sum a per-CPU counter value (ncpus copies of COUNTER_SIZE bytes)."""
    totals = [0] * len(COUNTERS)
    for cpu in range(ncpus):
        for i, v in enumerate(struct.unpack_from("<8Q", raw, cpu * COUNTER_SIZE)):
            totals[i] += v
    return dict(zip(COUNTERS, totals))


class _Gen(Program):
    """Program plus the pieces every prisond program shares."""

    _ids = itertools.count()

    def __init__(self, policy_fd: int, counter_fd: int):
        super().__init__()
        self.policy_fd, self.counter_fd = policy_fd, counter_fd

    def uniq(self, stem: str) -> str:
        return f"{stem}_{next(self._ids)}"

    def prologue(self) -> "_Gen":
        """r6 = ctx, r7 = the policy: the cgroup storage of the prison cgroup the program is
        attached to (never NULL; all zero, which refuses everything, until the daemon writes it)."""
        self.movr(R6, R1)
        self.ld_map_fd(R1, self.policy_fd).mov(R2, 0).call(GET_LOCAL_STORAGE).movr(R7, R0)
        return self

    def _counters(self) -> "_Gen":
        """r0 = this CPU's counters (per-CPU cgroup storage: plain adds, never NULL); clobbers r0-r5."""
        return self.ld_map_fd(R1, self.counter_fd).mov(R2, 0).call(GET_LOCAL_STORAGE)

    def _bump(self, off: int, src: int | None = None) -> "_Gen":
        self.ldx(8, R1, R0, off)
        if src is None:
            self.add(R1, 1)
        else:
            self.addr(R1, src)
        return self.stx(8, R0, off, R1)

    def count(self, off: int) -> "_Gen":
        """Count one event; looked up only on the paths that count (clobbers r0-r5)."""
        return self._counters()._bump(off)

    def count_bytes(self, pkts_off: int, bytes_off: int) -> "_Gen":
        self._counters()._bump(pkts_off)
        return self.ldx(4, R2, R6, SKB_LEN)._bump(bytes_off, R2)

    def in4(self, addr_reg: int, found: str, notfound: str) -> "_Gen":
        """Jump to found if the u32 in addr_reg is a prison IPv4 address (clobbers r0, r1)."""
        self.ldx(4, R0, R7, N4)
        for i in range(MAX_ADDRS):
            self.jeq(R0, i, notfound).ldx(4, R1, R7, IP4 + 4 * i).jeq32r(addr_reg, R1, found)
        return self.jmp(notfound)

    def in6(self, found: str, notfound: str) -> "_Gen":
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

    def load_words(self, base_reg: int, off: int) -> "_Gen":
        for w, reg in enumerate((R2, R3, R4, R5)):
            self.ldx(4, reg, base_reg, off + 4 * w)
        return self

    def copy_words(self, dst_off: int, src_off: int) -> "_Gen":
        """ctx[dst_off..+16] = policy[src_off..+16], a register at a time (no BPF_ST into ctx)."""
        for w in range(4):
            self.ldx(4, R1, R7, src_off + 4 * w).stx(4, R6, dst_off + 4 * w, R1)
        return self

    def finish(self, deny_errno: int | None, with_retval: bool) -> bytes:
        self.label("allow").ret(1)
        self.label("deny")
        if deny_errno and with_retval:
            self.mov(R1, -deny_errno).call(SET_RETVAL)
        self.ret(0)
        return self.assemble()


def _v4_any_or_list(g: _Gen, ctx_off: int, rewrite_any: bool) -> None:
    """Rules for an IPv4 local address held in ctx at ctx_off (used by bind4 and v4-mapped bind6)."""
    g.ldx(4, R2, R6, ctx_off)
    g.jne32(R2, 0, "v4_not_any")
    g.ldx(4, R3, R7, N4)
    if rewrite_any:
        g.jne(R3, 1, "allow")  # several addresses: the wildcard stays, ingress guards it
        g.ldx(4, R1, R7, IP4).stx(4, R6, ctx_off, R1).count(C_REWRITTEN).jmp("allow")
    g.label("v4_not_any")
    g.in4(R2, "allow", "v4_not_listed")
    g.label("v4_not_listed").jne32(R2, LOOPBACK4, "deny_count")
    g.ldx(4, R1, R7, LO4).stx(4, R6, ctx_off, R1).count(C_REWRITTEN).jmp("allow")


def bind4(policy_fd: int, counter_fd: int, with_retval: bool = True) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
    g.ldx(4, R3, R7, N4).jeq(R3, 0, "deny_count")
    _v4_any_or_list(g, SA_USER_IP4, rewrite_any=True)
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(EADDRNOTAVAIL, with_retval)


def bind6(policy_fd: int, counter_fd: int, with_retval: bool = True) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
    g.load_words(R6, SA_USER_IP6)
    # v4-mapped: the IPv4 rules on the last word
    g.jne32(R2, 0, "native").jne32(R3, 0, "native").jne32(R4, V4MAPPED_W2, "native")
    g.ldx(4, R1, R7, N4).jeq(R1, 0, "deny_count")
    _v4_any_or_list(g, SA_USER_IP6 + 12, rewrite_any=True)
    g.label("native")
    g.ldx(4, R1, R7, N6).jeq(R1, 0, "deny_count")
    # the wildcard: rewritten only for a prison with exactly one address in all
    g.jne32(R2, 0, "not_any").jne32(R3, 0, "not_any").jne32(R4, 0, "not_any").jne32(R5, 0, "not_any")
    g.ldx(4, R1, R7, N6).jne(R1, 1, "allow").ldx(4, R1, R7, N4).jne(R1, 0, "allow")
    g.copy_words(SA_USER_IP6, IP6).count(C_REWRITTEN).jmp("allow")
    g.label("not_any").in6("allow", "not_listed")
    g.label("not_listed")
    g.jne32(R2, 0, "deny_count").jne32(R3, 0, "deny_count").jne32(R4, 0, "deny_count")
    g.jne32(R5, LOOPBACK6_W3, "deny_count")
    g.copy_words(SA_USER_IP6, LO6).count(C_REWRITTEN).jmp("allow")
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(EADDRNOTAVAIL, with_retval)


def _rewrite_loopback4(g: _Gen, ctx_off: int, then: str) -> None:
    """If ctx[ctx_off] is exactly 127.0.0.1 and not a prison address, point it at lo4."""
    g.ldx(4, R2, R6, ctx_off).jne32(R2, LOOPBACK4, then)
    done = g.uniq("lo4_listed")
    g.in4(R2, then, done)
    g.label(done).ldx(4, R1, R7, LO4).stx(4, R6, ctx_off, R1).count(C_REWRITTEN).jmp(then)


def connect4(policy_fd: int, counter_fd: int) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
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
    v4-mapped destinations follow the IPv4 rules; ::1 goes to the loopback target."""
    g.ldx(4, R1, R7, N6).jeq(R1, 0, "deny_count")
    g.load_words(R6, SA_USER_IP6)
    g.jne32(R2, 0, "native").jne32(R3, 0, "native").jne32(R4, V4MAPPED_W2, "native")
    g.ldx(4, R1, R7, N4).jeq(R1, 0, "deny_count")
    _rewrite_loopback4(g, SA_USER_IP6 + 12, "src4")
    g.label("src4")
    source(g, True)
    g.label("native")
    g.jne32(R2, 0, "src6").jne32(R3, 0, "src6").jne32(R4, 0, "src6").jne32(R5, LOOPBACK6_W3, "src6")
    g.in6("src6", "lo6_rewrite")
    g.label("lo6_rewrite").copy_words(SA_USER_IP6, LO6).count(C_REWRITTEN)
    g.label("src6")
    source(g, False)


def connect6(policy_fd: int, counter_fd: int) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
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


def sendmsg4(policy_fd: int, counter_fd: int) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
    g.ldx(4, R3, R7, N4).jeq(R3, 0, "deny_count")
    _rewrite_loopback4(g, SA_USER_IP4, "source")
    g.label("source").ldx(4, R2, R6, SA_MSG_SRC_IP4).jeq32(R2, 0, "unset")
    g.in4(R2, "allow", "deny_count")  # IP_PKTINFO asked for a source: only a prison address
    g.label("unset")
    g.ldx(8, R1, R6, SA_SK).ldx(4, R2, R1, SK_SRC_IP4).jne32(R2, 0, "allow")  # bound: its address
    g.ldx(4, R1, R7, IP4).stx(4, R6, SA_MSG_SRC_IP4, R1).jmp("allow")
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(None, False)


def sendmsg6(policy_fd: int, counter_fd: int) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
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


def sock_create(policy_fd: int, counter_fd: int, with_retval: bool = True) -> bytes:
    g = _Gen(policy_fd, counter_fd).prologue()
    g.ldx(4, R2, R6, SK_FAMILY).ldx(4, R3, R6, SK_TYPE)
    g.jne(R2, AF_INET, "not4").ldx(4, R1, R7, N4).jeq(R1, 0, "no_family").jmp("type")
    g.label("not4").jne(R2, AF_INET6, "type").ldx(4, R1, R7, N6).jeq(R1, 0, "no_family")
    g.label("type").jne(R3, SOCK_RAW, "allow")
    g.ldx(4, R1, R7, FLAGS).jeq(R1, 0, "deny_count")  # F_RAW is the only flag
    g.jmp("allow")
    g.label("no_family").count(C_DENIED)
    if with_retval:
        g.mov(R1, -EPROTONOSUPPORT).call(SET_RETVAL)
    g.ret(0)
    g.label("deny_count").count(C_DENIED).jmp("deny")
    return g.finish(EPERM, with_retval)


def skb_filter(policy_fd: int, counter_fd: int, egress: bool) -> bytes:
    """cgroup_skb: pass packets whose source (egress) or destination (ingress) is the prison's."""
    g = _Gen(policy_fd, counter_fd).prologue()
    buf = -48  # 40 bytes of header at r10-48
    g.movr(R1, R6).mov(R2, 0).movr(R3, R10).add(R3, buf).mov(R4, 20).call(SKB_LOAD_BYTES)
    g.jne(R0, 0, "drop")
    g.ldx(1, R2, R10, buf).rsh(R2, 4)  # the IP version nibble
    g.jeq(R2, 6, "v6").jne(R2, 4, "drop")
    g.ldx(4, R2, R10, buf + (12 if egress else 16))
    g.in4(R2, "pass", "drop")
    g.label("v6")
    g.movr(R1, R6).mov(R2, 0).movr(R3, R10).add(R3, buf).mov(R4, 40).call(SKB_LOAD_BYTES)
    g.jne(R0, 0, "drop")
    g.load_words(R10, buf + (8 if egress else 24))
    g.in6("pass", "drop")
    g.label("pass").count_bytes(*((C_EGRESS_PKTS, C_EGRESS_BYTES) if egress else (C_INGRESS_PKTS, C_INGRESS_BYTES)))
    g.ret(1)
    g.label("drop").count(C_EGRESS_DROP if egress else C_INGRESS_DROP)
    g.label("deny").ret(0)
    return g.assemble()
