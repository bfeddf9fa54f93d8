"""Kernel enforcement for prisons: one set of programs and two maps, attached per prison cgroup.

    layer = KernelLayer.open(existing_prison_cgroups)   # adopts what a previous daemon left
    layer.enforce(cgroup_path, spec)                    # policy in the map, then attach
    layer.update(cgroup_path, spec)                     # a reload: a map update, nothing else
    layer.counters(cgroup_path)                         # drops and traffic of the prison

Programs attached with BPF_PROG_ATTACH stay while the cgroup exists, whatever happens to the
daemon, so a daemon killed with SIGKILL leaves every prison enforced; removing a prison's
cgroup detaches them.  A new daemon finds the programs on any prison cgroup (BPF_PROG_QUERY)
and, through them, the maps, so it keeps updating the same policies.  A cgroup's storage goes
with the cgroup: nothing is to be deleted when a prison stops.
"""
from __future__ import annotations

import logging
import os

from . import programs as P
from . import syscall as S

log = logging.getLogger("prisond.kernel")

POLICY_MAP, COUNTER_MAP = "prisond_pol2", "prisond_cnt3"  # cgroup storage (v2, v3)
MAX_PRISONS = 65536

# attach name -> (program type, generator); every one is attached to every kernel prison
PROGRAMS = {
    "sock_create": (S.PROG_TYPE_CGROUP_SOCK, P.sock_create),
    "bind4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.bind4),
    "bind6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.bind6),
    "connect4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.connect4),
    "connect6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.connect6),
    "sendmsg4": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.sendmsg4),
    "sendmsg6": (S.PROG_TYPE_CGROUP_SOCK_ADDR, P.sendmsg6),
    "egress": (S.PROG_TYPE_CGROUP_SKB, lambda pol, cnt: P.skb_filter(pol, cnt, egress=True)),
    "ingress": (S.PROG_TYPE_CGROUP_SKB, lambda pol, cnt: P.skb_filter(pol, cnt, egress=False)),
}


def cgroup_id(path: str) -> int:
    """The id BPF helpers report for a cgroup v2 directory: its inode number."""
    return os.stat(path).st_ino


def _key(cgid: int) -> bytes:
    return cgid.to_bytes(8, "little")


def policy_value(spec) -> bytes:
    ip4 = [a.ip.packed for a in spec.ip4]
    ip6 = [a.ip.packed for a in spec.ip6]
    lo4 = ip4[0] if ip4 else b""
    lo6 = ip6[0] if ip6 else b""
    return P.encode_policy(ip4, ip6, lo4, lo6, raw="raw_sockets" in spec.allow)


class KernelLayer:
    def __init__(self, policy_fd: int, counter_fd: int, prog_fds: dict[str, int], adopted: bool):
        self.policy_fd, self.counter_fd = policy_fd, counter_fd
        self.prog_fds = prog_fds
        self.prog_ids = {name: S.prog_info(fd)["id"] for name, fd in prog_fds.items()}
        self.ncpus = S.possible_cpus()
        self.adopted = adopted

    # ------------------------------------------------------------ set-up

    @classmethod
    def open(cls, existing_cgroups: list[str] = ()) -> "KernelLayer":
        for path in existing_cgroups:
            layer = cls._adopt(path)
            if layer:
                log.info("adopted the kernel layer's programs and maps from %s", path)
                return layer
        return cls._load()

    @classmethod
    def _load(cls) -> "KernelLayer":
        # max_entries 0: cgroup storage grows with attachments; an 8-byte key (the cgroup id)
        # makes one value shared by every program attached to the cgroup
        pol = S.map_create(8, P.POLICY_SIZE, 0, POLICY_MAP, S.MAP_TYPE_CGROUP_STORAGE)
        cnt = S.map_create(8, P.COUNTER_SIZE, 0, COUNTER_MAP, S.MAP_TYPE_PERCPU_CGROUP_STORAGE)
        fds = {}
        try:
            for name, (ptype, gen) in PROGRAMS.items():
                fds[name] = S.prog_load(ptype, gen(pol, cnt), S.ATTACH[name], f"prisond_{name}")
        except BaseException:
            for fd in list(fds.values()) + [pol, cnt]:
                os.close(fd)
            raise
        return cls(pol, cnt, fds, adopted=False)

    @classmethod
    def _adopt(cls, path: str) -> "KernelLayer | None":
        try:
            cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        fds: dict[str, int] = {}
        maps: dict[str, int] = {}
        try:
            for name in PROGRAMS:
                for pid in S.prog_query(cg, S.ATTACH[name]):
                    fd = S.prog_fd_by_id(pid)
                    info = S.prog_info(fd)
                    if info["name"] == f"prisond_{name}"[:15] and name not in fds:
                        fds[name] = fd
                        for mid in info["map_ids"]:
                            mfd = S.map_fd_by_id(mid)
                            minfo = S.map_info(mfd)
                            if minfo["name"] in (POLICY_MAP, COUNTER_MAP) and minfo["name"] not in maps:
                                maps[minfo["name"]] = mfd
                            else:
                                os.close(mfd)
                    else:
                        os.close(fd)
            if set(fds) != set(PROGRAMS) or set(maps) != {POLICY_MAP, COUNTER_MAP}:
                for fd in list(fds.values()) + list(maps.values()):
                    os.close(fd)
                return None
            return cls(maps[POLICY_MAP], maps[COUNTER_MAP], fds, adopted=True)
        except S.KernelLayerError:
            for fd in list(fds.values()) + list(maps.values()):
                os.close(fd)
            return None
        finally:
            os.close(cg)

    def close(self) -> None:
        for fd in list(self.prog_fds.values()) + [self.policy_fd, self.counter_fd]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.prog_fds = {}

    # ------------------------------------------------------------ per prison

    def enforce(self, path: str, spec) -> int:
        """Attach (which creates the cgroup's storage, all zero: everything refused), then
        write the policy.  Called before any process enters the cgroup."""
        cgid = cgroup_id(path)
        cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name, fd in self.prog_fds.items():
                if self.prog_ids[name] not in S.prog_query(cg, S.ATTACH[name]):  # adoption: once only
                    S.prog_attach(cg, fd, S.ATTACH[name])
        finally:
            os.close(cg)
        S.map_update(self.policy_fd, _key(cgid), policy_value(spec))
        return cgid

    def update(self, path: str, spec) -> None:
        S.map_update(self.policy_fd, _key(cgroup_id(path)), policy_value(spec))

    def counters(self, path_or_id) -> dict | None:
        cgid = path_or_id if isinstance(path_or_id, int) else cgroup_id(path_or_id)
        raw = S.map_lookup(self.counter_fd, _key(cgid), P.COUNTER_SIZE * self.ncpus)
        return P.decode_counters(raw, self.ncpus) if raw else None



def preconditions(layout) -> tuple[bool, str]:
    """Could this host enforce in the kernel?  (yes/no, and why, for `prisonctl show`).
    Whether the kernel accepts the programs is known only by loading them (KernelLayer.open)."""
    if os.geteuid() != 0:
        return False, "the daemon is not root"
    if layout is None or not layout.has_v2:
        return False, "no cgroup v2 tree on this host (pure cgroup v1)"
    return True, f"cgroup v2 at {layout.root}"


