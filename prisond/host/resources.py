"""Limits and accounting per prison, through cgroup controllers.

Where each controller lives depends on the host (`cgroup.Layout`):
  pure v2   memory, pids and cpu in the prison's own cgroup (enabled in the parent's
            cgroup.subtree_control); memory.max/high, pids.max, cpu.max; cpu.stat,
            memory.current/peak/events, pids.events for the figures.
  hybrid/v1 the v2 tree has no controllers: a cgroup of the same name in each v1 hierarchy
            (memory, pids, cpu, cpuacct) that the prison's processes also join;
            memory.limit_in_bytes/soft_limit_in_bytes, pids.max, cpu.cfs_quota_us;
            cpuacct.usage, memory.usage_in_bytes/max_usage_in_bytes/oom_control, pids.events,
            cpu.stat for the figures.
A limit the host has no controller for is refused at start, with the reason, never ignored.

The settings and the parsing of the figures are pure functions of the files' text (tested over
recorded layouts of both kinds); `Resources` does the file I/O.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
import time

from prisond.host.cgroup import make_dir
from prisond.model.config import Limits
from prisond.model.errors import SystemLayerError

CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


def v2_settings(limits: Limits) -> list[tuple[str, str]]:
    """(file, value) to write, in order; an unset limit is written as no limit (a reload may
    have removed it)."""
    quota = "max" if limits.cpu is None else str(max(1000, round(limits.cpu * CPU_PERIOD_US)))
    return [("memory.high", str(limits.memory_high) if limits.memory_high else "max"),
            ("memory.max", str(limits.memory) if limits.memory else "max"),
            ("pids.max", str(limits.pids) if limits.pids else "max"),
            ("cpu.max", f"{quota} {CPU_PERIOD_US}")]


def v1_settings(limits: Limits) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write, in order."""
    quota = "-1" if limits.cpu is None else str(max(1000, round(limits.cpu * CPU_PERIOD_US)))
    return [("memory", "memory.soft_limit_in_bytes", str(limits.memory_high) if limits.memory_high else "-1"),
            ("memory", "memory.limit_in_bytes", str(limits.memory) if limits.memory else "-1"),
            ("pids", "pids.max", str(limits.pids) if limits.pids else "max"),
            ("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US)),
            ("cpu", "cpu.cfs_quota_us", quota)]


def _keyed(text: str | None) -> dict[str, int]:
    """'key value' lines (cpu.stat, memory.events, pids.events, memory.oom_control)."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def v2_stats(read) -> dict:
    """read(file) -> text or None.  The figures `prisonctl show/top` report."""
    cpu = _keyed(read("cpu.stat"))
    mem_events = _keyed(read("memory.events"))
    pids_events = _keyed(read("pids.events"))
    return {"cpu_usec": cpu.get("usage_usec"),
            "memory_current": _int(read("memory.current")),
            "memory_peak": _int(read("memory.peak")),
            "oom_kills": mem_events.get("oom_kill"),
            "pids_refused": pids_events.get("max"),
            "cpu_throttled": cpu.get("nr_throttled"),
            "cpu_throttled_usec": cpu.get("throttled_usec")}


def v1_stats(read) -> dict:
    """read(controller, file) -> text or None."""
    usage = _int(read("cpuacct", "cpuacct.usage"))
    cpu = _keyed(read("cpu", "cpu.stat"))
    oom = _keyed(read("memory", "memory.oom_control"))
    pids_events = _keyed(read("pids", "pids.events"))
    throttled_ns = cpu.get("throttled_time")
    return {"cpu_usec": usage // 1000 if usage is not None else None,
            "memory_current": _int(read("memory", "memory.usage_in_bytes")),
            "memory_peak": _int(read("memory", "memory.max_usage_in_bytes")),
            "oom_kills": oom.get("oom_kill"),
            "pids_refused": pids_events.get("max"),
            "cpu_throttled": cpu.get("nr_throttled"),
            "cpu_throttled_usec": throttled_ns // 1000 if throttled_ns is not None else None}


def _read(path: str) -> str | None:
    """A small sysfs file; os calls (open() costs three times as much, and `prisonctl list`
    reads two of these per prison)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # O_TRUNC: as `echo >` does
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SystemLayerError(f"cannot set {path} to {value}: {exc.strerror}", "limit_error") from None


class Host:
    """Which controllers this host offers, and where: decided once at start.

    memory=False (daemon.memory_accounting): no memory cgroup per prison.  A memory cgroup
    costs the kernel a slot for each file system of the host's busiest moment since boot
    (memcg shrinker maps, ~16 bytes each: ~1 MB a prison among 10,000), and it is most of what
    a prison costs the kernel.  The prisons are then counted together: in v2, in
    cgroup_parent's (memory is switched off in its subtree_control); in v1, in a memory cgroup
    cgroup_parent that every prison's processes join, so that they are never charged to the
    daemon's own unit.  Where memory shares a v1 hierarchy with a controller kept per prison,
    it stays per prison."""

    def __init__(self, layout, parent: str, memory: bool = True):
        self.layout = layout
        self.parent = parent.strip("/")
        self.v2_off: set[str] = set()
        self.shared: dict[str, str] = {}  # v1 controller -> mount: joined at the parent, not per prison
        if layout.kind == "v2":
            have = (_read(os.path.join(layout.root, "cgroup.controllers")) or "").split()
            self.v2 = {c for c in ("memory", "pids", "cpu") if c in have and (memory or c != "memory")}
            self.v2_off = {"memory"} & set(have) - self.v2
            self.v1 = {}
        else:
            self.v2 = set()
            self.v1 = {c: mnt for c, mnt in layout.v1 if c in V1_CONTROLLERS}
            kept = {mnt for c, mnt in self.v1.items() if c != "memory"}
            if not memory and "memory" in self.v1 and self.v1["memory"] not in kept:
                self.shared = {"memory": self.v1.pop("memory")}

    def available(self) -> set[str]:
        return self.v2 | {c for c in self.v1 if c != "cpuacct"}

    def describe(self) -> str:
        off = "; memory accounting is off: daemon.memory_accounting was false when prisond started" \
            if self.v2_off or self.shared else ""
        if self.layout.kind == "v2":
            return "cgroup v2: " + (", ".join(sorted(self.v2)) or "no controllers") + off
        return "cgroup v1: " + (", ".join(sorted(self.v1)) or "no controllers") + off

    def for_prison(self, name: str, v2_dir: str) -> Resources:
        v1_dirs = {c: os.path.join(mnt, self.parent, name) for c, mnt in self.v1.items()}
        joined = sorted({os.path.join(mnt, self.parent) for mnt in self.shared.values()})
        former = sorted({os.path.join(mnt, self.parent, name) for mnt in self.shared.values()})
        return Resources(self, v2_dir, v1_dirs, joined, former)

    def enable_v2(self, parent_dir: str) -> None:
        """Let the prisons' cgroups under parent_dir use the v2 controllers (and not memory,
        without memory accounting: a daemon before may have switched it on)."""
        change = [f"+{c}" for c in sorted(self.v2)] + [f"-{c}" for c in sorted(self.v2_off)]
        if change:
            _write(os.path.join(parent_dir, "cgroup.subtree_control"), " ".join(change))

    def unenforceable(self, limits: Limits) -> str | None:
        """Why these limits cannot be enforced here, or None (a start fails with it; a reload
        that asks for them is refused)."""
        missing = sorted(limits.controllers() - self.available())
        if not missing:
            return None
        return f"this host cannot enforce limits on {', '.join(missing)} (it has {self.describe()})"

    def v1_parent_dirs(self) -> list[str]:
        return sorted({os.path.join(mnt, self.parent) for mnt in [*self.v1.values(), *self.shared.values()]})

    def ensure_parents(self, v2_parent: str) -> None:
        for d in self.v1_parent_dirs():
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise SystemLayerError(f"cannot create cgroup {d}: {exc.strerror}", "cgroup_error") from None
        self.enable_v2(v2_parent)

    def remove_parents(self) -> None:
        for d in self.v1_parent_dirs():
            try:
                os.rmdir(d)
            except OSError:
                pass  # not empty (a prison left running on purpose) or gone

    def leftovers(self, name: str) -> None:
        """Remove a prison's v1 cgroups that a crashed daemon left (their processes are dead)."""
        for d in sorted({os.path.join(mnt, self.parent, name) for mnt in [*self.v1.values(), *self.shared.values()]}):
            try:
                os.rmdir(d)
            except OSError:
                pass


class Resources:
    """One prison's controllers: limits written, figures read, v1 cgroups made and removed."""

    def __init__(self, host: Host, v2_dir: str, v1_dirs: dict[str, str], joined: Sequence[str] = (),
                 former: Sequence[str] = ()):
        self.host = host
        self.v2_dir = v2_dir
        self.v1_dirs = v1_dirs  # made, read and removed per prison
        self.joined = list(joined)  # shared v1 cgroups its processes join (Host.shared)
        self.former = list(former)  # its own of those, which a daemon before may have made

    def missing(self, limits: Limits) -> list[str]:
        return sorted(limits.controllers() - self.host.available())

    def procs_files(self) -> list[str]:
        """The v1 cgroups a process must join besides the prison's v2 (tracking) cgroup."""
        return [os.path.join(d, "cgroup.procs") for d in [*sorted(set(self.v1_dirs.values())), *self.joined]]

    def misplaced(self, pid: int) -> bool:
        """Whether the process is outside a v1 cgroup this prison's processes are to be in: an
        adopted prison's, which a daemon with another memory_accounting started."""
        want = {c: "/" + os.path.relpath(d, self.host.v1[c]) for c, d in self.v1_dirs.items()}
        want |= {c: "/" + self.host.parent for c in self.host.shared}
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                have = {c: path for _, ctrls, path in (ln.rstrip("\n").split(":", 2) for ln in fh)
                        for c in ctrls.split(",")}
        except OSError:
            return False
        return any(have.get(c) != path for c, path in want.items())

    def create(self) -> bool:
        """Make the v1 cgroups; True if all are new."""
        return all([make_dir(d) for d in sorted(set(self.v1_dirs.values()))])  # a list: every one made

    def apply(self, limits: Limits, fresh: bool = False) -> None:
        """Write the limits.  fresh: the cgroups are new, so what is unset is already unlimited
        and is not written (cpu.cfs_period_us and _quota_us cost the kernel a bandwidth update
        each: 4% of all CPU time while 10,000 prisons without limits started)."""
        why = self.host.unenforceable(limits)
        if why:
            raise SystemLayerError(why, "limit_unavailable")
        default = set(v2_settings(Limits())) | set(v1_settings(Limits()))
        if self.host.layout.kind == "v2":
            for name, value in v2_settings(limits):
                if name.split(".")[0] in self.host.v2 and not (fresh and (name, value) in default):
                    _write(os.path.join(self.v2_dir, name), value)
        else:
            for ctrl, name, value in v1_settings(limits):
                if ctrl in self.v1_dirs and not (fresh and (ctrl, name, value) in default):
                    _write(os.path.join(self.v1_dirs[ctrl], name), value)

    def stats(self) -> dict:
        if self.host.layout.kind == "v2":
            return v2_stats(lambda f: _read(os.path.join(self.v2_dir, f)))
        return v1_stats(lambda c, f: _read(os.path.join(self.v1_dirs[c], f)) if c in self.v1_dirs else None)

    def cpu_memory(self) -> dict:
        """The two figures `prisonctl list` shows: two reads, cheap for a thousand prisons."""
        if self.host.layout.kind == "v2":
            cpu = _keyed(_read(os.path.join(self.v2_dir, "cpu.stat"))).get("usage_usec")
            mem = _int(_read(os.path.join(self.v2_dir, "memory.current")))
        else:
            acct = self.v1_dirs.get("cpuacct")
            ns = _int(_read(os.path.join(acct, "cpuacct.usage"))) if acct else None
            cpu = ns // 1000 if ns is not None else None
            mem = _int(_read(os.path.join(self.v1_dirs["memory"], "memory.usage_in_bytes"))) \
                if "memory" in self.v1_dirs else None
        return {"cpu_usec": cpu, "memory_current": mem}

    def remove(self, wait: float = 5.0) -> None:
        """rmdir the v1 cgroups (their processes are gone with the v2 one's), and those of its own
        a daemon with other settings made (an adopted prison's)."""
        for d in [*sorted(set(self.v1_dirs.values())), *self.former]:
            deadline = time.monotonic() + wait
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise SystemLayerError(f"cannot remove cgroup {d}: {exc.strerror}", "cgroup_error") from None
                    time.sleep(0.02)
