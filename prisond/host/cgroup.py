"""One cgroup per prison, for knowing and stopping every process in it.

Layouts met (`detect` reads /proc/self/mountinfo; pure):
  v2      cgroup2 mounted at /sys/fs/cgroup (current distributions)
  hybrid  v1 controllers at /sys/fs/cgroup/<ctrl>, a controller-less v2 tree at .../unified
  v1      v1 only; prisons are tracked in one v1 hierarchy (pids if mounted)
Prison cgroups go in the v2 tree wherever there is one.  Everything here is a small sysfs
read or write; callers run the writes off the event loop.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass

from prisond.model.errors import SystemLayerError


@dataclass(frozen=True)
class Layout:
    kind: str  # "v2" | "hybrid" | "v1"
    root: str  # the hierarchy that holds prison cgroups
    v1: tuple[tuple[str, str], ...] = ()  # (controller, mountpoint) of v1 hierarchies

    @property
    def has_v2(self) -> bool:
        return self.kind in ("v2", "hybrid")


def detect(mountinfo: str) -> Layout | None:
    v2 = None
    v1 = []
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mountpoint, fstype, superopts = fields[4], tail[0], tail[2]
        if fstype == "cgroup2" and v2 is None:
            v2 = mountpoint
        elif fstype == "cgroup":
            for opt in superopts.split(","):
                if opt in ("pids", "memory", "cpu", "cpuacct", "freezer", "devices", "blkio", "cpuset") or \
                        opt.startswith("name="):
                    v1.append((opt, mountpoint))
    if v2 and not v1:
        return Layout("v2", v2)
    if v2:
        return Layout("hybrid", v2, tuple(v1))
    if v1:
        pick = dict(v1).get("pids") or v1[0][1]
        return Layout("v1", pick, tuple(v1))
    return None


def detect_host() -> Layout | None:
    with open("/proc/self/mountinfo") as fh:
        return detect(fh.read())


def make_dir(path: str) -> bool:
    """Make a cgroup directory (and its parents); True if it is new, False if it was there."""
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        pass  # a parent is missing: made below
    except OSError as exc:
        raise SystemLayerError(f"cannot create cgroup {path}: {exc.strerror}", "cgroup_error") from None
    try:
        os.makedirs(path, exist_ok=True)
        return True
    except OSError as exc:
        raise SystemLayerError(f"cannot create cgroup {path}: {exc.strerror}", "cgroup_error") from None


class Cgroup:
    def __init__(self, path: str, v2: bool = True):
        self.path = path
        self.v2 = v2  # a cgroup v2 directory: its inode is the id sockets and BPF helpers report

    def __repr__(self) -> str:
        return f"Cgroup({self.path!r})"

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def create(self) -> bool:
        """Make the cgroup; True if it is new (its files hold the kernel's defaults)."""
        return make_dir(self.path)

    def _read_procs(self) -> bytes:
        """Raw cgroup.procs: os calls, three times cheaper than open() here (a thousand prisons
        are listed by reading a thousand of these)."""
        try:
            fd = os.open(self.procs_file, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise SystemLayerError(f"cannot read {self.procs_file}: {exc.strerror}", "cgroup_error") from None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise SystemLayerError(f"cannot read {self.procs_file}: {exc.strerror}", "cgroup_error") from None
        finally:
            os.close(fd)

    def procs(self) -> list[int]:
        return [int(x) for x in self._read_procs().split()]

    def count(self) -> int:
        return self._read_procs().count(b"\n")

    def signal_all(self, sig: int) -> int:
        """Send sig to every process; returns how many were signalled."""
        if sig == signal.SIGKILL and self._write("cgroup.kill", "1"):
            return len(self.procs())
        n = 0
        for pid in self.procs():
            try:
                os.kill(pid, sig)
                n += 1
            except ProcessLookupError:
                pass
        return n

    def kill_all_but(self, keep: int | None) -> None:
        """SIGKILL to every process but `keep` (the prison's init, which then reaps them and
        tells how each ended).  Frozen meanwhile where the host has cgroup.freeze (v2), so that
        nothing forks between the read of the list and the signals."""
        frozen = self._write("cgroup.freeze", "1")
        try:
            for pid in self.procs():
                if pid != keep:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        finally:
            if frozen:
                self._write("cgroup.freeze", "0")

    def thaw(self) -> None:
        """Thaw the cgroup if it is frozen: prisond freezes a prison only for a moment (a kill, a
        move), so a frozen one is what a daemon killed in that moment left."""
        try:
            with open(os.path.join(self.path, "cgroup.freeze"), "rb") as fh:
                frozen = fh.read().strip() == b"1"
        except OSError:
            return  # no freezer (cgroup v1 only): nothing was frozen
        if frozen:
            self._write("cgroup.freeze", "0")

    def move_into(self, procs_files: list[str]) -> None:
        """Every process of the cgroup joins each of these (other hierarchies' cgroup.procs);
        frozen meanwhile where the host has cgroup.freeze, so that no child is left behind."""
        frozen = self._write("cgroup.freeze", "1")
        try:
            for pid in self.procs():
                for f in procs_files:
                    try:
                        with open(f, "w") as fh:
                            fh.write(str(pid))
                    except ProcessLookupError:
                        break
                    except OSError as exc:
                        raise SystemLayerError(f"cannot move process {pid} into {f}: {exc.strerror}",
                                               "cgroup_error") from None
        finally:
            if frozen:
                self._write("cgroup.freeze", "0")

    def remove(self, wait: float = 5.0) -> None:
        """rmdir, retrying while the last processes finish exiting."""
        deadline = time.monotonic() + wait
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise SystemLayerError(f"cannot remove cgroup {self.path}: {exc.strerror}",
                                           "cgroup_error") from None
                time.sleep(0.02)

    def _write(self, name: str, value: str) -> bool:
        try:
            fd = os.open(os.path.join(self.path, name), os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.write(fd, value.encode())
            return True
        except OSError:
            return False
        finally:
            os.close(fd)


def join(procs_file: str, pid: int = 0) -> None:
    """Move pid (0: the caller) into a cgroup.  Safe between fork and exec: os calls only."""
    fd = os.open(procs_file, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def v2_path_of(proc_cgroup: str) -> str | None:
    """The cgroup v2 path in a /proc/<pid>/cgroup text ("0::/prisond/web1" -> "/prisond/web1")."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


class CgroupTree:
    """The prisond parent cgroup and the prisons' cgroups under it."""

    def __init__(self, layout: Layout, parent: str):
        self.layout = layout
        self.parent = os.path.join(layout.root, parent.strip("/"))

    def for_prison(self, name: str) -> Cgroup:
        return Cgroup(os.path.join(self.parent, name), v2=self.layout.has_v2)

    def ensure_parent(self) -> None:
        Cgroup(self.parent).create()

    def children(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.parent) if e.is_dir())
        except FileNotFoundError:
            return []

    def prison_of(self, pid: int) -> str | None:
        """The name of the prison whose cgroup holds pid, or None."""
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                text = fh.read()
        except OSError:
            return None
        return self.prison_in(text)

    def prison_in(self, text: str) -> str | None:
        """The prison a /proc/PID/cgroup text names, or None.  Pure."""
        path = v2_path_of(text) if self.layout.has_v2 else None
        if path is None:  # pure v1: the tracking hierarchy's line
            ctrl = os.path.basename(self.layout.root)
            for line in text.splitlines():
                parts = line.split(":", 2)
                if len(parts) == 3 and ctrl in parts[1].split(","):
                    path = parts[2]
        if path is None:
            return None
        full = os.path.join(self.layout.root, path.lstrip("/"))
        if os.path.dirname(full) != self.parent:
            return None
        return os.path.basename(full)

    def remove_parent(self) -> None:
        try:
            os.rmdir(self.parent)
        except OSError:
            pass  # not empty (another daemon, or a prison left running on purpose) or gone
