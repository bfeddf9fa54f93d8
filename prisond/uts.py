"""A UTS namespace per prison: the kernel's hostname, which static binaries see too.

Created with util-linux's `unshare --uts=FILE hostname NAME`, which pins the namespace by
bind-mounting its nsfs file onto FILE, so no process has to hold it and it outlives a killed
daemon (a new daemon finds FILE and keeps using it).  Processes join it with setns(2) between
fork and exec; `prisonctl exec` goes through `nsenter --uts=FILE`.  Removing it is an unmount.
"""
from __future__ import annotations

import ctypes
import os
import subprocess

from .errors import SystemLayerError

CLONE_NEWUTS = 0x04000000
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def is_pinned(path: str) -> bool:
    """Is a namespace bind-mounted on path? (nsfs files report it in their link target)"""
    try:
        with open("/proc/self/mountinfo") as fh:
            return any(line.split()[4] == path for line in fh)
    except OSError:
        return False


def create(path: str, hostname: str) -> None:
    if is_pinned(path):
        return  # a previous daemon's, still alive: keep it
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    open(path, "a").close()
    r = subprocess.run(["unshare", f"--uts={path}", "hostname", hostname], capture_output=True, text=True)
    if r.returncode != 0:
        remove(path)
        raise SystemLayerError(f"cannot create the UTS namespace: {r.stderr.strip()}", "namespace_error")


def join(path: str) -> None:
    """setns into the namespace pinned at path.  Safe between fork and exec (no allocation)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWUTS) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def remove(path: str) -> None:
    if is_pinned(path):
        if _libc.umount2(path.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise SystemLayerError(f"cannot unmount {path}: {os.strerror(err)}", "namespace_error")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
