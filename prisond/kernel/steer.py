"""Wildcard listeners on a shared stack: the sock_ops and sk_lookup programs.  Pure: map fds in,
bytecode out (written with asm.Program, as programs.py; the layouts are programs.py's).

Wildcards (FreeBSD: a jail's listener on INADDR_ANY answers on every address of the jail, and
only there; any number of jails hold the same wildcard port).  On a shared stack a real
wildcard bind would hold its port on every address of the host, so the socket holds a port
where it harms nobody (programs.py, bind4/6: its primary IPv4 address; `::` with an
ephemeral port) and the
connections for the prison's other addresses are handed to it, before the kernel's own
listener lookup, by a BPF_PROG_TYPE_SK_LOOKUP program linked to the network namespace:
  - bind4/6 mark a wildcard socket in socket storage (BPF_MAP_TYPE_SK_STORAGE): the port asked
    for and its family (4: AF_INET, 6: AF_INET6).
  - sock_ops (BPF_CGROUP_SOCK_OPS, at BPF_SOCK_OPS_TCP_LISTEN_CB, which every listen() runs)
    puts the listener in a sockhash: a marked one under (prison's cgroup id, port, TCP,
    family), any other under (its exact address, port, TCP).  A closed socket leaves the map.
  - sk_lookup, for a TCP connection request: the destination address -> prison (a hash map the
    daemon keeps: addresses only one prison holds); none: nothing done (the host, shared
    addresses, unknown addresses: the kernel's lookup as without us).  Else the exact
    listener on that address:port if there is one (a specific listener wins over the
    wildcard, as in FreeBSD and Linux), else that prison's AF_INET wildcard of the port (IPv4
    only), else its AF_INET6 one (bpf_sk_assign refuses a v6only socket an IPv4 packet, so a
    v6only `[::]` never gets IPv4).  The kernel still picks within a SO_REUSEPORT group.
    The key is the destination's prison: one prison's listener never gets another's, or the
    host's, connections (and its ingress filter would drop them).
  - not done: UDP.  A sockhash is filled from sock_ops, which never runs for UDP, and no other
    program type that sees a UDP socket at bind may add it; a UDP wildcard (0.0.0.0) answers
    on the primary only, and an AF_INET6 UDP socket bound to `::` on nothing but its
    ephemeral port (which the ingress filter keeps foreign packets from).
  - not steered: a shared address (keep out of the map: two prisons, each with that one
    address of the family, bind it as their primary; a dual-stack `[::]` gets no IPv4 there);
    a SO_REUSEPORT group is steered through the socket that listened last (the sockhash holds
    one per key): when it closes first, the others of its group get the prison's other
    addresses' connections no more, until one of them listens again.
"""
from __future__ import annotations

from prisond.kernel.asm import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10
from prisond.kernel.programs import (
    AF_INET, IPPROTO_TCP, K_EXACT, K_WILD4, K_WILD6, LK_KIND, LK_PORT, LK_PROTO, MAP_LOOKUP, OWNER, SK_ASSIGN,
    SK_PASS, SK_RELEASE, SK_STORAGE_GET, SL_FAMILY, SL_LOCAL_IP4, SL_LOCAL_IP6, SL_LOCAL_PORT, SL_PROTOCOL,
    SO_FAMILY, SO_LOCAL_IP4, SO_LOCAL_IP6, SO_LOCAL_PORT, SO_OP, SO_SK, SOCK_HASH_UPDATE, SOCK_OPS_TCP_LISTEN_CB,
    V4MAPPED_W2, W_KIND, W_PORT, Maps, _Gen)


def sock_ops(maps: Maps) -> bytes:
    """BPF_CGROUP_SOCK_OPS, at BPF_SOCK_OPS_TCP_LISTEN_CB only (every listen() of the prison,
    the socket hashed and listening): put the listener in the sockhash, under the prison's
    wildcard key if bind4/6 marked it, else under its exact address.  Every other operation
    returns at once.  The sockhash holds no reference that keeps a socket open: a closed
    listener leaves it (sock_map_close).  Must return 1."""
    g = _Gen(maps)
    g.movr(R6, R1)
    g.ldx(4, R1, R6, SO_OP).jne(R1, SOCK_OPS_TCP_LISTEN_CB, "out")
    g.ldx(8, R8, R6, SO_SK).jeq(R8, 0, "out")
    g.policy()
    for off in (-24, -16, -8):
        g.st(8, R10, off, 0)
    g.st(1, R10, -24 + LK_PROTO, IPPROTO_TCP)
    g.ld_map_fd(R1, maps.wild).movr(R2, R8).mov(R3, 0).mov(R4, 0).call(SK_STORAGE_GET)
    g.jeq(R0, 0, "exact").ldx(1, R1, R0, W_KIND).jeq(R1, 0, "exact")
    g.stx(1, R10, -24 + LK_KIND, R1)
    g.ldx(2, R1, R0, W_PORT).jne(R1, 0, "port")
    g.ldx(4, R1, R6, SO_LOCAL_PORT)  # port 0 asked for: the one the kernel gave
    g.label("port").stx(2, R10, -24 + LK_PORT, R1)
    g.ldx(8, R1, R7, OWNER).stx(8, R10, -24, R1).jmp("update")
    g.label("exact").st(1, R10, -24 + LK_KIND, K_EXACT)
    g.ldx(4, R1, R6, SO_LOCAL_PORT).stx(2, R10, -24 + LK_PORT, R1)
    g.ldx(4, R1, R6, SO_FAMILY).jne(R1, AF_INET, "exact6")
    g.st(4, R10, -16, V4MAPPED_W2 - (1 << 32)).ldx(4, R1, R6, SO_LOCAL_IP4).stx(4, R10, -12, R1).jmp("update")
    g.label("exact6")
    for w in range(4):
        g.ldx(4, R1, R6, SO_LOCAL_IP6 + 4 * w).stx(4, R10, -24 + 4 * w, R1)
    g.label("update")
    g.movr(R1, R6).ld_map_fd(R2, maps.listeners).movr(R3, R10).add(R3, -24).mov(R4, 0).call(SOCK_HASH_UPDATE)
    g.label("out").ret(1)
    return g.assemble()


def _assign(g: _Gen, kind: int | None, done: str, nxt: str) -> None:
    """Look the key at r10-24 up (kind: set its kind byte first); a listener found is offered
    to the kernel (bpf_sk_assign, which refuses a v6only socket an IPv4 packet).  Assigned:
    jump to done; not found or refused: to nxt."""
    if kind is not None:
        g.st(1, R10, -24 + LK_KIND, kind)
    g.ld_map_fd(R1, g.maps.listeners).movr(R2, R10).add(R2, -24).call(MAP_LOOKUP)
    g.jeq(R0, 0, nxt).movr(R9, R0)
    g.movr(R1, R6).movr(R2, R9).mov(R3, 0).call(SK_ASSIGN).movr(R8, R0)
    g.movr(R1, R9).call(SK_RELEASE)
    g.jeq(R8, 0, done).jmp(nxt)


def sk_lookup(maps: Maps) -> bytes:
    """BPF_SK_LOOKUP on the network namespace, before the kernel looks for a listener of a TCP
    connection request: when its destination is a prison address (the address map: addresses
    only one prison holds), hand it to the prison's listener on exactly that address, else to
    the prison's wildcard listener of that port (for IPv4: an AF_INET one, then a dual-stack
    AF_INET6 one).  Nothing found: the kernel's own lookup, as without this program.  Another
    prison's listeners and the host's are never looked at: the key is the destination's
    prison.  Always SK_PASS."""
    g = _Gen(maps)
    g.movr(R6, R1)
    g.ldx(4, R1, R6, SL_PROTOCOL).jne(R1, IPPROTO_TCP, "pass")
    g.ldx(4, R7, R6, SL_FAMILY)
    for off in (-24, -16, -8):
        g.st(8, R10, off, 0)
    g.jne(R7, AF_INET, "dst6")
    g.st(4, R10, -16, V4MAPPED_W2 - (1 << 32)).ldx(4, R1, R6, SL_LOCAL_IP4).stx(4, R10, -12, R1).jmp("prison")
    g.label("dst6")
    for w in range(4):
        g.ldx(4, R1, R6, SL_LOCAL_IP6 + 4 * w).stx(4, R10, -24 + 4 * w, R1)
    g.label("prison")
    g.ld_map_fd(R1, maps.addresses).movr(R2, R10).add(R2, -24).call(MAP_LOOKUP).jeq(R0, 0, "pass")
    g.ldx(8, R1, R0, 0).stx(8, R10, -32, R1)  # the prison's cgroup id
    g.ldx(4, R1, R6, SL_LOCAL_PORT).stx(2, R10, -24 + LK_PORT, R1)
    g.st(1, R10, -24 + LK_PROTO, IPPROTO_TCP)
    _assign(g, K_EXACT, "pass", "wild")
    g.label("wild").ldx(8, R1, R10, -32).stx(8, R10, -24, R1).st(8, R10, -16, 0)
    g.jne(R7, AF_INET, "wild6")
    _assign(g, K_WILD4, "pass", "wild6")
    g.label("wild6")
    _assign(g, K_WILD6, "pass", "pass")
    g.label("pass").ret(SK_PASS)
    return g.assemble()
