"""Namespaces per prison: UTS (the kernel's hostname, which static binaries see too) and IPC
(its own System V IPC and POSIX message queues, unless allow.sysvipc).

Created with util-linux's `unshare --uts=FILE --ipc=FILE hostname NAME`, which pins each
namespace by bind-mounting its nsfs file onto FILE, so no process has to hold them and they
outlive a killed daemon (a new daemon finds the files and keeps using them).  Processes join
with setns(2) between fork and exec; `prisonctl exec` goes through `nsenter`.  Removing a
namespace is an unmount.
"""
from __future__ import annotations

import ctypes
import os
import subprocess

from .errors import SystemLayerError

FLAGS = {"uts": 0x04000000, "ipc": 0x08000000}  # CLONE_NEWUTS, CLONE_NEWIPC
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def paths(ns_dir: str, name: str, kinds) -> dict[str, str]:
    return {k: os.path.join(ns_dir, f"{name}.{k}") for k in kinds}


def _pinned(path: str) -> bool:
    """Is a namespace bind-mounted on path?  An nsfs file has a device of its own (one stat
    each, not a read of mountinfo, which grows with every pin)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def create(pins: dict[str, str], hostname: str) -> None:
    """Namespaces of the given kinds, the UTS one named hostname; pins already mounted are kept
    (a previous daemon's, still alive)."""
    todo = {k: p for k, p in pins.items() if not _pinned(p)}
    if not todo:
        return
    for p in todo.values():
        os.makedirs(os.path.dirname(p), mode=0o755, exist_ok=True)
        open(p, "a").close()
    argv = ["unshare", *(f"--{k}={p}" for k, p in todo.items())]
    argv += ["hostname", hostname] if "uts" in todo else ["true"]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        remove(todo)
        raise SystemLayerError(f"cannot create the prison's namespaces: {r.stderr.strip()}", "namespace_error")


def join(pins: dict[str, str]) -> None:
    """setns into each pinned namespace.  Safe between fork and exec (no allocation)."""
    for kind, path in pins.items():
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, FLAGS[kind]) != 0:
                raise OSError(ctypes.get_errno(), f"setns {kind}")
        finally:
            os.close(fd)


def remove(pins: dict[str, str]) -> None:
    for path in pins.values():
        if _pinned(path) and _libc.umount2(path.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise SystemLayerError(f"cannot unmount {path}: {os.strerror(err)}", "namespace_error")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
