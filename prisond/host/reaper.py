"""Zombies nobody waits for: the daemon is the subreaper of its prisons' inits, so when an
init dies (killed, out of memory) the processes it had are re-parented to the daemon, and
when they end they must be collected here, or they stay zombies for as long as it runs.
Only children nobody else waits for are collected (`waited`: the ones whose waiter is
elsewhere, such as asyncio's child watcher for host hooks)."""
from __future__ import annotations

import os
from collections.abc import Callable

WALL = 0x40000000  # __WALL: children of any exit signal (an init re-parented to the daemon)


def zombie_children(me: int | None = None) -> list[int]:
    """This process's children (of every thread) that have ended and wait to be collected."""
    me = me or os.getpid()
    pids: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{me}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/{me}/task/{tid}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
        except OSError:
            continue
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    out.append(pid)
        except (OSError, IndexError):
            continue
    return sorted(out)


def any_zombie() -> bool:
    """Has any child of this process ended and not been collected?  One system call (waitid
    with WNOWAIT collects nothing), where the scan below reads a file per child: a daemon with
    10,000 prisons has 10,000 inits as its children, and looks every second."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT | WALL) is not None
    except ChildProcessError:
        return False


def reap_orphans(waited: Callable[[int], bool]) -> int:
    """Collect the zombie children no one else waits for; how many."""
    n = 0
    if not any_zombie():
        return 0
    for pid in zombie_children():
        if waited(pid):
            continue
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            n += bool(done)
        except ChildProcessError:
            pass
    return n
