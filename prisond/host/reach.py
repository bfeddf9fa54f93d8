"""Who on the host can reach a confined prison's files, and who owns them.  Reads only
metadata (stat), through functions passed in for tests."""
from __future__ import annotations

import os


def hidden_from_users(path: str, stat_of=os.stat) -> bool:
    """Can no user but root reach into path?  True when a directory on its way (not path itself,
    which the prison sees as its /) is root's and closed to group and others.  What a confined
    prison's root writes there (a set-uid program) is then out of every host user's reach: the
    prison's own mounts are nosuid, the host's view of the directory is not."""
    parts = os.path.normpath(path).split("/")[1:-1]
    for i in range(len(parts) + 1):
        st = stat_of("/" + "/".join(parts[:i]))
        if st.st_uid == 0 and not st.st_mode & 0o011:
            return True
    return False


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
