"""Kernel enforcement for prisons: one set of programs and six maps, attached per prison cgroup
(the three claim programs only where a prison holds a shared address), and one sk_lookup
program linked to the network namespace with the daemon's address map.

    layer = KernelLayer.open(existing_prison_cgroups)   # adopts what a previous daemon left
    layer.share(config.prisons)                         # which addresses two prisons both hold
    layer.enforce(cgroup_path, spec)                    # policy in the map, then attach
    layer.update(cgroup_path, spec)                     # a reload: a map update, nothing else
    layer.counters(cgroup_path)                         # drops and traffic of the prison

Programs attached with BPF_PROG_ATTACH stay while the cgroup exists, whatever happens to the
daemon, so a daemon killed with SIGKILL leaves every prison enforced; removing a prison's
cgroup detaches them.  A new daemon finds the programs on any prison cgroup (BPF_PROG_QUERY)
and, through them, the maps, so it keeps updating the same policies and the same claims.  A
cgroup's storage goes with the cgroup: nothing is to be deleted when a prison stops.

Wildcards (see steer.py): the sock_ops program is one of the core programs,
so the sockhash of listeners and the socket storage of wildcard marks live as long as any
prison cgroup holds the programs, and a new daemon adopts them with the rest.  The sk_lookup
program, its link to the daemon's network namespace and the address map (address -> prison)
are the daemon's own: the link is made when the first address is steered and closed when the
last prison stops, and it goes when the daemon's fds close (a clean exit, or SIGKILL),
and the next daemon loads the program again on the adopted sockhash, with a new address map
filled as it enforces each prison it adopts.  Listeners that kept running are then steered
again, with no restart.  Between the two daemons, connections to a prison's addresses other
than the one its wildcard socket holds are refused.  Why not pin the link in bpffs to keep
steering across that gap: the pin would outlive a daemon that dies for good (and with it a
program and maps nobody removes), it needs a bpffs mount the daemon would have to make in the
host's mount namespace and remove again, and its name would have to be kept apart for
daemons in different namespaces; a restart gap on secondary addresses is the price of leaving
nothing behind.  BPF_LINK_GET_NEXT_ID could not help either: a link nobody pins or holds an
fd of is gone already.

Shared addresses (see programs.py, "Claims"): a prison's binds on an address the configuration
also gives another prison are recorded from its first bind, so that the other cannot join
them.  Binds made while an address was not shared were not recorded: a prison that has held an
address untracked (or tainted: it became tracked while the prison ran) blocks any other prison
from getting that address until it restarts; the newcomer fails with the reason.

Localhost (programs.py, "Localhost"): the getpeername and getsockname programs are
attached to every kernel prison with the core ones, and a fifth map, the socket storage that
marks the sockets that addressed loopback, goes with the core maps.  A prison running under
programs from before them (an upgrade) gets them attached beside its old ones at adoption; its
old connect and sendmsg programs run first and have already rewritten 127.0.0.1 when the new
ones look, so its sockets are marked, and look like localhost, only once it restarts.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
import os
import struct
import threading

from prisond.kernel import programs as P
from prisond.kernel import steer
from prisond.kernel import syscall as S

log = logging.getLogger("prisond.kernel")

# map names: a changed layout gets a new name, so that no daemon adopts maps it cannot read
POLICY_MAP, COUNTER_MAP = "prisond_pol3", "prisond_cnt3"  # cgroup storage (v3, v3)
CLAIMS_MAP, SOCKETS_MAP = "prisond_claims1", "prisond_sockcl1"
WILD_MAP, LISTEN_MAP = "prisond_wild1", "prisond_lsn1"  # wildcard marks (socket storage), listeners
LOCALHOST_MAP = "prisond_lohost1"  # socket storage: which sockets addressed loopback (programs.py)
MAP_NAMES = (POLICY_MAP, COUNTER_MAP, CLAIMS_MAP, SOCKETS_MAP, WILD_MAP, LISTEN_MAP, LOCALHOST_MAP)  # as in P.Maps
ADDR_MAP = "prisond_addr1"  # address -> prison: the daemon's own, filled again by each daemon


def _gen(fn, **kw):
    return lambda maps: fn(maps, **kw)


# attach name -> (program type, generator).  CORE: attached to every kernel prison.  CLAIMS:
# attached (all three, and for good) to a prison once it holds a shared address; the others
# never pay for them (a hook with no program costs nothing; one with even an empty program
# costs its run, ~3% of a bind+close here).
CORE = {
    "sock_create": (S.PROG_TYPE_CGROUP_SOCK, P.sock_create),
    "bind4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.bind4),
    "bind6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.bind6),
    "connect4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.connect4),
    "connect6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.connect6),
    "sendmsg4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.sendmsg4),
    "sendmsg6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.sendmsg6),
    "egress": (S.PROG_TYPE_CGROUP_SKB, _gen(P.skb_filter, egress=True)),
    "ingress": (S.PROG_TYPE_CGROUP_SKB, _gen(P.skb_filter, egress=False)),
    "sock_ops": (S.PROG_TYPE_SOCK_OPS, steer.sock_ops),
    # localhost fidelity (programs.py, "Localhost"): what getpeername, getsockname, accept and
    # recvfrom report; cheap (a compare, unless both ends are the loopback target)
    "getpeername4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, _gen(P.getname, v6=False)),
    "getpeername6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, _gen(P.getname, v6=True)),
    "getsockname4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, _gen(P.getname, v6=False)),
    "getsockname6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, _gen(P.getname, v6=True)),
}
CLAIMS = {
    "post_bind4": (S.PROG_TYPE_CGROUP_SOCK, _gen(P.post_bind, v6=False)),
    "post_bind6": (S.PROG_TYPE_CGROUP_SOCK, _gen(P.post_bind, v6=True)),
    "sock_release": (S.PROG_TYPE_CGROUP_SOCK, P.sock_release),
}
PROGRAMS = {**CORE, **CLAIMS}


def cgroup_id(path: str) -> int:
    """The id BPF helpers report for a cgroup v2 directory: its inode number."""
    return os.stat(path).st_ino


def _key(cgid: int) -> bytes:
    return cgid.to_bytes(8, "little")


def shared_addresses(prisons) -> frozenset:
    """The addresses more than one prison of the configuration holds (config allows it when
    each has exactly one address of that family)."""
    seen: set = set()
    count = 0
    for p in prisons:  # mostly none is shared: found with the specs' hashed sets (a reload among 10,000)
        seen |= p.ips
        count += len(p.ips)
    if len(seen) == count:
        return frozenset()
    seen.clear()
    shared: set = set()
    for p in prisons:
        for ip in p.ips:
            (shared if ip in seen else seen).add(ip)
    return frozenset(shared)


def policy_value(spec, shared=frozenset(), owner: int = 0, old: bytes | None = None, running: bool = False) -> bytes:
    """The policy of a prison.  Families holding a shared address are tracked.  Taint: a family
    that becomes tracked while the prison may already hold untracked sockets in it (its old
    policy had addresses of that family untracked; or it runs with no policy of ours, as after
    an upgrade) stays marked for the cgroup's life, as does the mark itself."""
    ip4 = [a.ip.packed for a in spec.ip4]
    ip6 = [a.ip.packed for a in spec.ip6]
    flags = 0
    if any(a.ip in shared for a in spec.ip4):
        flags |= P.F_TRACK4
    if any(a.ip in shared for a in spec.ip6):
        flags |= P.F_TRACK6
    prev = P.decode_policy(old) if old and any(old) else None
    for track, taint, fam in ((P.F_TRACK4, P.F_TAINT4, "ip4"), (P.F_TRACK6, P.F_TAINT6, "ip6")):
        if prev:
            flags |= prev["flags"] & taint
            if flags & track and not prev["flags"] & track and prev[fam]:
                flags |= taint
        elif running and flags & track:
            flags |= taint
    return P.encode_policy(ip4, ip6, ip4[0] if ip4 else b"", ip6[0] if ip6 else b"",
                           raw="raw_sockets" in spec.allow, flags=flags, owner=owner)


def _packed_to_ip(raw: bytes):
    return ipaddress.ip_address(raw)


class KernelLayer:
    def __init__(self, maps: P.Maps, prog_fds: dict[str, int], adopted: bool):
        self.maps = maps
        self.policy_fd, self.counter_fd = maps.policy, maps.counters
        self.prog_fds = prog_fds
        self.prog_ids = {name: S.prog_info(fd)["id"] for name, fd in prog_fds.items()}
        self.ncpus = S.possible_cpus()
        self._counter_lookup = S.Lookup(self.counter_fd, 8, P.COUNTER_SIZE * self.ncpus)
        self.adopted = adopted
        self.shared: frozenset = frozenset()
        # prisons start and stop in threads of their own (asyncio.to_thread), all at once when
        # the daemon stops: what they share here (the maps of addresses, the link) changes under
        # this lock (two last releases closed the link twice: EBADF, and the daemon died)
        self._lock = threading.RLock()
        self.enforced: dict[int, tuple] = {}  # cgroup id -> (path, addresses) of the prisons written
        self.steered: dict[int, frozenset] = {}  # cgroup id -> its addresses in the address map
        self.link_fd: int | None = None  # the sk_lookup link, while some address is steered
        self.sk_lookup_fd: int | None = None
        try:
            self.sk_lookup_fd = S.prog_load(S.PROG_TYPE_SK_LOOKUP, steer.sk_lookup(maps), S.ATTACH["sk_lookup"],
                                            "prisond_sk_lookup")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ set-up

    @classmethod
    def open(cls, existing_cgroups: Sequence[str] = ()) -> KernelLayer:
        layer = None
        for path in existing_cgroups:
            layer = cls._adopt(path, existing_cgroups)
            if layer:
                log.info("adopted the kernel layer's programs and maps from %s", path)
                break
        layer = layer or cls._load()
        layer.forget_claims_of_others(existing_cgroups)
        return layer

    @classmethod
    def _load(cls) -> KernelLayer:
        fds: dict[str, int] = {}
        made: list[int] = []
        try:
            # max_entries 0: cgroup storage grows with attachments; an 8-byte key (the cgroup id)
            # makes one value shared by every program attached to the cgroup
            made.append(S.map_create(8, P.POLICY_SIZE, 0, POLICY_MAP, S.MAP_TYPE_CGROUP_STORAGE))
            made.append(S.map_create(8, P.COUNTER_SIZE, 0, COUNTER_MAP, S.MAP_TYPE_PERCPU_CGROUP_STORAGE))
            # no preallocation: only prisons with shared addresses ever fill it
            made.append(S.map_create(P.CLAIM_KEY_SIZE, P.CLAIM_VALUE_SIZE, P.MAX_CLAIMS, CLAIMS_MAP,
                                     S.MAP_TYPE_HASH, flags=S.F_NO_PREALLOC))
            made.append(_sockets_map())
            made.append(_wild_map())
            made.append(S.map_create(P.LISTEN_KEY_SIZE, 8, P.MAX_LISTENERS, LISTEN_MAP, S.MAP_TYPE_SOCKHASH))
            made.append(_localhost_map())
            made.append(_addresses_map())
            maps = P.Maps(*made)
            for name, (ptype, gen) in PROGRAMS.items():
                fds[name] = S.prog_load(ptype, gen(maps), S.ATTACH[name], f"prisond_{name}")
        except BaseException:
            for fd in list(fds.values()) + made:
                os.close(fd)
            raise
        return cls(maps, fds, adopted=False)

    @classmethod
    def _adopt(cls, path: str, others=()) -> KernelLayer | None:
        """The core programs and their maps from `path`; the claim programs (and the socket
        storage only they use) from whichever prison cgroup has them, else freshly loaded: no
        prison holds a claim then."""
        core = _find(path, CORE)
        if not core:
            return None
        fds, maps = core
        claims = None
        for where in [path] + [p for p in others if p != path]:
            claims = _find(where, CLAIMS, maps)
            if claims:
                break
        try:
            # the address map is only the sk_lookup program's, which went with the last daemon:
            # a new one, filled again as the daemon enforces each prison it adopts
            maps[ADDR_MAP] = (_addresses_map(), 0)
            names = MAP_NAMES + (ADDR_MAP,)
            if claims:
                fds.update(claims[0])
                maps.update(claims[1])
            else:
                maps[SOCKETS_MAP] = (_sockets_map(), 0)
                for name, (ptype, gen) in CLAIMS.items():
                    fds[name] = S.prog_load(ptype, gen(P.Maps(*(maps[n][0] for n in names))), S.ATTACH[name],
                                            f"prisond_{name}")
            return cls(P.Maps(*(maps[n][0] for n in names)), fds, adopted=True)
        except BaseException:
            for fd in list(fds.values()) + [fd for fd, _ in maps.values()]:
                os.close(fd)
            return None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        fds = [fd for fd in (self.link_fd, self.sk_lookup_fd) if fd is not None]
        for fd in fds + list(self.prog_fds.values()) + list(self.maps):
            try:
                os.close(fd)
            except OSError:
                pass
        self.prog_fds = {}
        self.link_fd = self.sk_lookup_fd = None

    def forget_claims_of_others(self, live_cgroups) -> int:
        """Delete claims whose owner is none of live_cgroups (all the prison cgroups there are,
        at start-up).  A claim outlives its prison only when one of its sockets was handed to
        a process outside it, whose close no program sees; it would block that port for good."""
        live = set()
        for path in live_cgroups:
            try:
                live.add(cgroup_id(path))
            except OSError:
                pass
        gone = 0
        for key in S.map_keys(self.maps.claims, P.CLAIM_KEY_SIZE):
            value = S.map_lookup(self.maps.claims, key, P.CLAIM_VALUE_SIZE)
            if value and struct.unpack_from("<Q", value, P.CV_OWNER)[0] not in live:
                gone += S.map_delete(self.maps.claims, key)
        if gone:
            log.info("forgot %d claim(s) of prisons that are gone", gone)
        return gone

    # ------------------------------------------------------------ per prison

    def share(self, prisons) -> None:
        """Take note of the configuration's prisons (all of them, running or not): which
        addresses more than one holds.  Call before enforcing any of them, and on every reload."""
        with self._lock:
            shared = shared_addresses(prisons)
            moved, self.shared = shared ^ self.shared, shared
            # a shared address is steered for nobody; one no longer shared for its holder again
            # (only the prisons holding an address that came or went: a reload among 10,000)
            for cgid, (_, ips) in list(self.enforced.items()) if moved else ():
                if ips & moved:
                    self._steer_addresses(cgid, ips - shared)

    def enforce(self, path: str, spec, fresh: bool = False) -> int:
        """Attach (which creates the cgroup's storage, all zero: everything refused), then
        write the policy.  Called before any process enters the cgroup, or on adoption.
        fresh: the cgroup was just made, so nothing is attached to it yet (no query)."""
        cgid = cgroup_id(path)
        self._attach(path, CORE, query=not fresh)
        with self._lock:
            self._write(cgid, path, spec)
        return cgid

    def update(self, path: str, spec) -> None:
        with self._lock:
            self._write(cgroup_id(path), path, spec)

    def _attach(self, path: str, programs, query: bool = True) -> None:
        cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in programs:
                if not query or self.prog_ids[name] not in S.prog_query(cg, S.ATTACH[name]):  # adoption: once
                    S.prog_attach(cg, self.prog_fds[name], S.ATTACH[name])
        finally:
            os.close(cg)

    def _write(self, cgid: int, path: str, spec) -> None:
        addresses = frozenset(a.ip for a in spec.addresses)
        old, running = None, False
        if addresses & self.shared:
            # the taint needs what the prison held before (an untracked prison needs nothing:
            # its taint is worked out again the moment it becomes tracked)
            old = S.map_lookup(self.policy_fd, _key(cgid), P.POLICY_SIZE)
            running = not (old and any(old)) and _has_processes(path)
            self._check_sharers(cgid, addresses & self.shared)
            # before the policy says "tracked": no bind may pass unrecorded in between.  Never
            # detached: the claims a prison holds are released by its sock_release
            self._attach(path, CLAIMS)
        S.map_update(self.policy_fd, _key(cgid), policy_value(spec, self.shared, cgid, old, running))
        self.enforced[cgid] = (path, addresses)
        self._steer_addresses(cgid, addresses - self.shared)

    def _steer_addresses(self, cgid: int, ips: frozenset) -> None:
        """The address map: these addresses are this prison's (its wildcard listeners answer on
        them).  Addresses it no longer holds leave, unless another prison has them by now."""
        for ip in self.steered.get(cgid, frozenset()) - ips:
            key = _addr_key(ip)
            raw = S.map_lookup(self.maps.addresses, key, 8)
            if raw and struct.unpack("<Q", raw)[0] == cgid:
                S.map_delete(self.maps.addresses, key)
        for ip in ips:
            S.map_update(self.maps.addresses, _addr_key(ip), struct.pack("<Q", cgid))
        if ips:
            self.steered[cgid] = ips
        else:
            self.steered.pop(cgid, None)
        # the link only while there is something to steer: with no prison, nothing is left
        # on the network namespace, and its connection requests run no program of ours
        if self.steered and self.link_fd is None and self.sk_lookup_fd is not None:
            self.link_fd = _link(self.sk_lookup_fd)
        elif not self.steered and self.link_fd is not None:
            os.close(self.link_fd)
            self.link_fd = None

    def release(self, cgid: int) -> None:
        """A prison stopped: its addresses leave the address map (its programs and storage go
        with its cgroup)."""
        with self._lock:
            self._steer_addresses(cgid, frozenset())
            self.enforced.pop(cgid, None)

    def _check_sharers(self, cgid: int, mine: frozenset) -> None:
        """Refuse a shared address another running prison holds without having recorded its
        binds (untracked, or tainted): this prison could join sockets of that one.  Only the
        prisons holding one of these shared addresses are looked at."""
        for other, (path, ips) in list(self.enforced.items()):
            if other == cgid or not ips & mine:
                continue
            try:
                alive = cgroup_id(path) == other
            except OSError:
                alive = False
            if not alive:
                self.enforced.pop(other, None)
                continue
            raw = S.map_lookup(self.policy_fd, _key(other), P.POLICY_SIZE)
            if not raw:
                continue
            theirs = P.decode_policy(raw)
            name = os.path.basename(path)
            for fam, track, taint in (("ip4", P.F_TRACK4, P.F_TAINT4), ("ip6", P.F_TRACK6, P.F_TAINT6)):
                held = {_packed_to_ip(packed) for packed in theirs[fam]} & mine
                if held and (not theirs["flags"] & track or theirs["flags"] & taint):
                    raise S.KernelLayerError(
                        f"{min(held)} is also prison {name}'s, which has held it since before it was "
                        f"shared (its binds were not recorded): restart {name} first", "address_in_use")

    def counters(self, path_or_id) -> dict | None:
        cgid = path_or_id if isinstance(path_or_id, int) else cgroup_id(path_or_id)
        raw = self.counter_bytes(cgid)
        return self.decode_counters(raw) if raw else None

    def counter_bytes(self, cgid: int) -> bytes | None:
        """A prison's counters as the map holds them: one copy per CPU, undecoded."""
        return self._counter_lookup(_key(cgid)) or None

    def decode_counters(self, raw: bytes) -> dict:
        return P.decode_counters(raw, self.ncpus)


def _wild_map() -> int:
    """The socket storage of wildcard marks (bind4/6 write it, sock_ops reads it)."""
    btf = S.btf_load(P.claims_btf(P.WILD_SIZE))
    try:
        return S.map_create(4, P.WILD_SIZE, 0, WILD_MAP, S.MAP_TYPE_SK_STORAGE, flags=S.F_NO_PREALLOC, btf=(btf, 1, 2))
    finally:
        os.close(btf)


def _addresses_map() -> int:
    return S.map_create(P.ADDR_KEY_SIZE, 8, P.MAX_STEERED, ADDR_MAP, S.MAP_TYPE_HASH, flags=S.F_NO_PREALLOC)


def _link(prog: int) -> int:
    """Link the sk_lookup program to this daemon's network namespace (the one its prisons
    share); the link goes when its fd closes (the daemon's end included)."""
    netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return S.link_create(prog, netns, S.ATTACH["sk_lookup"])
    finally:
        os.close(netns)


def _addr_key(ip) -> bytes:
    """An address as the address map's key: IPv4 as ::ffff:a.b.c.d."""
    return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed


def _sockets_map() -> int:
    """The socket storage of claims; it wants BTF, and keeps its own reference to it."""
    btf = S.btf_load(P.claims_btf())
    try:
        return S.map_create(4, P.CLAIM_STORE_SIZE, 0, SOCKETS_MAP, S.MAP_TYPE_SK_STORAGE,
                            flags=S.F_NO_PREALLOC, btf=(btf, 1, 2))
    finally:
        os.close(btf)


def _localhost_map() -> int:
    """The socket storage of localhost marks (programs.py, "Localhost"); BTF as for claims."""
    btf = S.btf_load(P.localhost_btf())
    try:
        return S.map_create(4, P.LOCAL_STORE_SIZE, 0, LOCALHOST_MAP, S.MAP_TYPE_SK_STORAGE,
                            flags=S.F_NO_PREALLOC, btf=(btf, 1, 2))
    finally:
        os.close(btf)


def _find(path: str, programs: dict, known: dict | None = None):
    """({name: fd}, {map name: (fd, id)}) of our programs in `programs` attached to the cgroup at
    path: all of them, all on the same maps (those in `known`, and the others by our names:
    an upgrade may leave an older set attached beside a newer one).  None if not."""
    try:
        cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    known = known or {}
    fds: dict[str, int] = {}
    maps: dict[str, tuple[int, int]] = {}
    uses: list[set] = []
    try:
        for name in programs:
            for pid in S.prog_query(cg, S.ATTACH[name]):
                fd = S.prog_fd_by_id(pid)
                info = S.prog_info(fd)
                if info["name"] != f"prisond_{name}"[:15] or name in fds:
                    os.close(fd)
                    continue
                fds[name] = fd
                uses.append(set(info["map_ids"]))
                for mid in info["map_ids"]:
                    if mid in {i for _, i in list(known.values()) + list(maps.values())}:
                        continue
                    mfd = S.map_fd_by_id(mid)
                    mname = S.map_info(mfd)["name"]
                    if mname in MAP_NAMES and mname not in maps and mname not in known:
                        maps[mname] = (mfd, mid)
                    else:
                        os.close(mfd)
        ids = {i for _, i in list(known.values()) + list(maps.values())}
        wanted = {SOCKETS_MAP} if known else {POLICY_MAP, COUNTER_MAP, CLAIMS_MAP, WILD_MAP, LISTEN_MAP, LOCALHOST_MAP}
        if set(fds) == set(programs) and all(u <= ids for u in uses) and wanted <= set(maps):
            return fds, maps
    except S.KernelLayerError:
        pass
    finally:
        os.close(cg)
    for fd in list(fds.values()) + [fd for fd, _ in maps.values()]:
        os.close(fd)
    return None


def _has_processes(path: str) -> bool:
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            return bool(fh.read().strip())
    except OSError:
        return False


def preconditions(layout) -> tuple[bool, str]:
    """Could this host enforce in the kernel?  (yes/no, and why, for `prisonctl show`).
    Whether the kernel accepts the programs is known only by loading them (KernelLayer.open)."""
    if os.geteuid() != 0:
        return False, "the daemon is not root"
    if layout is None or not layout.has_v2:
        return False, "no cgroup v2 tree on this host (pure cgroup v1)"
    return True, f"cgroup v2 at {layout.root}"


