"""What list, show, top and proc.status see of a prison: its figures and the caches that keep
many callers (a thousand prisons, a prison asking as fast as it can) cheap.  The lifecycle is
prison.py's; this only reads it."""
from __future__ import annotations

import asyncio
import errno
import time
from typing import TYPE_CHECKING

from prisond.host import procinfo
from prisond.model.errors import PrisonError
from prisond.model.params import PARAMS
from prisond.model.states import UP, State

if TYPE_CHECKING:
    from prisond.engine.prison import Prison

BRIEF_TTL = 1.0  # seconds `prisonctl list`'s CPU and memory figures may be old
FIGURES_TTL = 0.25  # seconds show's and top's figures may be old
PIDS_TTL = 0.5  # seconds the map of a prison's pids (as it sees them) may be old
LIMIT_KEYS = tuple(p.key for p in PARAMS if p.section == "prisons.NAME.limits")


class PrisonView:
    def __init__(self, prison: Prison):
        self.p = prison
        self._addr_cache: tuple = (None, [], [])
        self._static: tuple = (None, {})
        self._pidmap: dict[int, int] = {}
        self._pidmap_at = -PIDS_TTL - 1.0
        self._ns_ioctl = True  # the kernel can translate a pid of the prison's namespace
        self._line: tuple | None = None  # (what it shows, when, list's line)
        self._details: tuple | None = None  # the same for show
        self._making: tuple | None = None  # (what it shows, the look under way) for show
        self.refresh()

    def refresh(self) -> None:
        """Forget the figures (a prison that just started)."""
        self._brief: dict = {}
        self._brief_at = -BRIEF_TTL - 1.0
        self._procs, self._procs_at = 0, -BRIEF_TTL - 1.0
        self._fig: tuple[dict | None, dict | None] = (None, None)
        self._fig_at = -FIGURES_TTL - 1.0
        self._line = self._details = None

    def host_pid(self, inner: int) -> int | None:
        """The host pid of the process the prison calls `inner` (proc.status).  A prison may
        ask as fast as it can: a known pid is a lookup; any other costs one read of the
        cgroup's process list, and a look at the processes that are new since the last one
        (never a read of every process's status)."""
        if inner in self._pidmap and time.monotonic() - self._pidmap_at < PIDS_TTL:
            return self._pidmap[inner]
        if self.p.spec.own_pids and self._ns_ioctl:
            # the kernel translates (Linux 6.10): what its namespace holds is the prison's
            if not self.p.init_pid:
                return None
            try:
                return procinfo.host_tgid(f"/proc/{self.p.init_pid}/ns/pid", inner)
            except OSError as exc:
                if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                    return None
                self._ns_ioctl = False  # an older kernel: the map below
        pids = set(self.p.pids())
        new = pids - set(self._pidmap.values())
        found = procinfo.inner_pids(sorted(new)) if self.p.spec.own_pids else {p: p for p in new}
        self._pidmap = {i: h for i, h in self._pidmap.items() if h in pids} | found
        self._pidmap_at = time.monotonic()
        return self._pidmap.get(inner)


    def brief_stale(self) -> bool:
        """Whether list's figures (process count, CPU, memory) are to be read again."""
        if self.p.state in (State.STOPPED, State.FAILED):
            return False
        now = time.monotonic()
        return now - self._procs_at > BRIEF_TTL or (
            self.p.res is not None and self.p.state in UP | {State.STOPPING} and now - self._brief_at > BRIEF_TTL)

    def read_brief(self) -> None:
        """Read list's figures now, from any thread (cgroup files are read and two cached
        values set; nothing else of the prison is touched)."""
        self._brief_procs()
        self._brief_usage()

    def _brief_procs(self) -> int:
        """list's process count: at most a second old, like its CPU and memory figures."""
        if self.p.state in (State.STOPPED, State.FAILED):
            return 0
        now = time.monotonic()
        if now - self._procs_at > BRIEF_TTL:
            self._procs, self._procs_at = self.nprocs(), now
        return self._procs

    def nprocs(self) -> int:
        if self.p.state in (State.STOPPED, State.FAILED):
            return 0
        try:
            return self.p.cgroup.count()
        except PrisonError:
            return 0

    def summary(self, full: bool = False, pids: list[int] | None = None) -> dict:
        """A prison's line of `prisonctl list` (full: with all its figures, for top and show).
        list's is kept for BRIEF_TTL while nothing it shows changes (its figures may be that
        old anyway): listing 10,000 prisons is then 10,000 lookups, not 10,000 dicts made."""
        if full:
            return self._summary(True, pids)
        p = self.p
        return self._kept("_line", (p.jid, p.spec, p.state, p.reason, p.restarts), BRIEF_TTL,
                          lambda: self._summary(False, None))

    def _kept(self, slot: str, key: tuple, ttl: float, make) -> dict:
        """make()'s answer, kept in self.<slot> for ttl seconds while key (what it tells) stays."""
        cached = getattr(self, slot)
        now = time.monotonic()
        if cached is not None and cached[0] == key and now - cached[1] <= ttl:
            return cached[2]
        value = make()
        setattr(self, slot, (key, now, value))
        return value

    def _summary(self, full: bool, pids: list[int] | None) -> dict:
        spec = self.p.spec
        if self._addr_cache[0] is not spec:  # listing a thousand prisons is mostly this
            self._addr_cache = (spec, [str(a.ip) for a in spec.ip4], [str(a.ip) for a in spec.ip6])
        counters = None
        if full:
            procs = len(pids) if pids is not None else self.nprocs()
            usage, counters = self._figures()
        else:
            procs, usage = self._brief_procs(), self._brief_usage()
        return {
            "jid": self.p.jid, "name": spec.name, "hostname": spec.hostname,
            "ip4": self._addr_cache[1], "ip6": self._addr_cache[2],
            "state": self.p.state, "procs": procs, "reason": self.p.reason,
            "enforcement": self.p.enforcement, "enforcement_why": self.p.enforcement_why,
            "usage": usage, "restarts": self.p.restarts,
            **({"kernel_counters": counters} if full else {}),
        }

    def details(self):
        """show's answer, kept FIGURES_TTL (its figures may be that old anyway) while nothing
        it tells changes: a hundred clients asking about one prison cost one look at its
        processes per FIGURES_TTL, not one each (a look: its pids, each one's command, user and
        descriptors, its sockets from the kernel, its cgroup files, ~0.4 ms).  The answer kept,
        or a coroutine giving it: the look at the processes is made by a helper the daemon can
        kill (host/looker.py), and callers that ask meanwhile wait for that same look."""
        p = self.p
        key = (p.jid, p.spec, p.state, p.reason, p.restarts, p.service, p.service_status, p.init_pid)
        kept = self._details
        if kept is not None and kept[0] == key and time.monotonic() - kept[1] <= FIGURES_TTL:
            return kept[2]
        if self._making is None or self._making[0] != key:
            self._making = (key, asyncio.ensure_future(self._make_details(key)))
        return self._wait(self._making[1])

    @staticmethod
    async def _wait(making: asyncio.Future) -> dict:
        return await asyncio.shield(making)  # one caller gone does not end the look the others wait for

    async def _make_details(self, key: tuple) -> dict:
        try:
            pids = self.p.pids()
            looker = self.p.deps.looker
            if looker is not None:
                looked = await looker.look(pids, label=self.p.spec.name)
            else:
                budget = [procinfo.FD_BUDGET]
                looked = [procinfo.look_at(pid, budget) for pid in pids]
            info = self._assemble(pids, looked)
            self._details = (key, time.monotonic(), info)
            return info
        finally:
            if self._making is not None and self._making[0] == key:
                self._making = None

    def _assemble(self, pids: list[int], looked: list[dict]) -> dict:
        info = self.summary(full=True, pids=pids)
        info.update(self._static_details())
        spec = self.p.spec
        info.update({
            "cgroup": self.p.cgroup.path if self.p.state not in (State.STOPPED, State.FAILED) else None,
            "started_at": self.p.started_at,
            "service": ({"argv": list(spec.exec.start.argv),
                         "pid": self.p.service.pid if self.p.service else None,
                         "status": self.p.service_status} if spec.exec.start else None),
            "init_pid": self.p.init_pid,
            "processes": procinfo.describe(looked, cgroup_dir=self.p.cgroup.path if self.p.cgroup.v2 else None,
                                           book=self.p.deps.sockets),
            "kernel_counters": self._figures()[1],
        })
        return info

    def _static_details(self) -> dict:
        """What show tells of the configuration: made once per spec (a reload makes a new one)."""
        if self._static[0] is not self.p.spec:
            spec = self.p.spec
            self._static = (spec, {
                "addresses": [a.spec() for a in spec.addresses],
                "stop_timeout": spec.stop_timeout,
                "allow": sorted(spec.allow),
                "path": spec.path,
                "mounts": [{"source": m.source, "target": m.target, "readonly": m.readonly} for m in spec.mounts],
                "limits": {k: getattr(spec.limits, k) for k in LIMIT_KEYS if getattr(spec.limits, k) is not None},
            })
        return self._static[1]

    def _brief_usage(self) -> dict | None:
        """list's two figures (CPU, memory): at most BRIEF_TTL old (a thousand prisons, many callers)."""
        if self.p.state not in UP | {State.STOPPING} or self.p.res is None:
            return None
        now = time.monotonic()
        if now - self._brief_at > BRIEF_TTL:
            try:
                self._brief, self._brief_at = self.p.res.cpu_memory(), now
            except PrisonError:
                return None
        return dict(self._brief)

    def _figures(self) -> tuple[dict | None, dict | None]:
        """(usage, kernel counters) for show and top: at most FIGURES_TTL old, so that many
        callers asking at once cost the cgroup files and the map one read."""
        now = time.monotonic()
        if now - self._fig_at > FIGURES_TTL:
            counters = self.kernel_counters()
            self._fig, self._fig_at = (self._usage(counters), counters), now
        usage, counters = self._fig
        return (dict(usage) if usage else usage), (dict(counters) if counters else counters)

    def _usage(self, counters: dict | None) -> dict | None:
        """What the prison uses: CPU, memory, limit hits (its cgroups) and its network traffic
        (the kernel layer's counters).  None while it is not running."""
        if self.p.state not in UP | {State.STOPPING} or self.p.res is None:
            return None
        try:
            stats = self.p.res.stats()
        except PrisonError:
            return None
        net = counters or {}
        stats.update({k: net.get(k) for k in ("egress_bytes", "egress_packets", "ingress_bytes", "ingress_packets")})
        return stats

    def kernel_counters(self) -> dict | None:
        raw = self.kernel_counter_bytes()
        return self.decode_counters(raw) if raw is not None else None

    def kernel_counter_bytes(self) -> bytes | None:
        """The kernel layer's counters of the prison as the map holds them (per CPU)."""
        if self.p.cgroup_id is None or self.p.deps.kernel is None:
            return None
        try:
            return self.p.deps.kernel.counter_bytes(self.p.cgroup_id)
        except PrisonError:
            return None

    def decode_counters(self, raw: bytes) -> dict:
        kernel = self.p.deps.kernel
        return kernel.decode_counters(raw) if kernel is not None else {}
