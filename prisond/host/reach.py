"""Who on the host can reach a confined prison's files, and who owns them.  Reads only
metadata (stat), through functions passed in for tests."""
from __future__ import annotations

import os


def _way(path: str, itself: bool) -> list[str]:
    """The directories from / down to path (itself: path too, else its parent last)."""
    parts = [p for p in os.path.normpath(path).split("/") if p]
    parts = parts if itself else parts[:-1]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts) + 1)]


def hidden_from_users(path: str, stat_of=os.stat) -> bool:
    """Can no user but root reach into path?  True when a directory on its way (not path itself,
    which the prison sees as its /) is root's and closed to group and others.  What a confined
    prison's root writes there (a set-uid program) is then out of every host user's reach: the
    prison's own mounts are nosuid, the host's view of the directory is not."""
    return any(st.st_uid == 0 and not st.st_mode & 0o011 for st in map(stat_of, _way(path, itself=False)))


def closed_to_others(path: str, stat_of=os.stat) -> str | None:
    """The first directory from / down to path (itself included) that other users cannot pass
    (no x bit for others), or None."""
    return next((d for d in _way(path, itself=True) if not stat_of(d).st_mode & 0o001), None)


def foreign_owner(root: str, lstat=os.lstat) -> str | None:
    """The first of a confined root, its etc and etc/passwd, that is not root's; None if all are
    (a root made by a user: that user, or a prison process running as that uid, could write
    a uid 0 line into the prison's passwd)."""
    for path in (root, os.path.join(root, "etc"), os.path.join(root, "etc", "passwd")):
        try:
            if lstat(path).st_uid != 0:
                return path
        except FileNotFoundError:
            pass
    return None
