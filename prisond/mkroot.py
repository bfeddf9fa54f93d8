"""`prisonctl mkroot DIR`: a root directory for a confined prison, made from the host.

The 1999 jail came with "no scripts for setting up a jail".  This makes a small root that
shares the host's programs read-only instead of copying them: the directory gets its own
/etc (the host's system accounts, no user accounts, no secrets), /tmp, /root, /var, empty
mount points, and the usr-merge links; the prison's configuration then mounts the host's
/usr read-only (`mounts: [/usr]`).  Everything the prison writes stays in DIR; nothing in it
can change a host binary.  For a root of its own (other packages, other versions), make one
with debootstrap instead (see the README).

Pure file work on paths given in: `host` is the root to read from (/ outside tests).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

SYSTEM_UID_MAX = 999  # Debian: system accounts are below 1000
DIRS = {"etc": 0o755, "tmp": 0o1777, "root": 0o700, "home": 0o755, "proc": 0o555, "dev": 0o755,
        "run": 0o755, "srv": 0o755, "usr": 0o755, "var": 0o755, "var/tmp": 0o1777, "var/log": 0o755,
        "var/lib": 0o755, "var/cache": 0o755}
USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
COPIED = ("etc/hosts", "etc/resolv.conf", "etc/nsswitch.conf", "etc/ld.so.cache", "etc/ld.so.conf",
          "etc/os-release", "etc/debian_version", "etc/localtime", "etc/services", "etc/protocols",
          "etc/mime.types", "etc/profile", "etc/bash.bashrc", "etc/shells")
COPIED_TREES = ("etc/ld.so.conf.d", "etc/alternatives", "etc/ssl", "etc/ca-certificates",
                "etc/nginx", "etc/python3", "etc/python3.11")


class MkrootError(Exception):
    pass


@dataclass
class Result:
    root: str
    mounts: list[str]
    notes: list[str]

    def snippet(self, name: str = "myprison") -> str:
        lines = [f"  {name}:", f"    path: {self.root}"]
        if self.mounts:
            lines.append("    mounts: [" + ", ".join(self.mounts) + "]")
        return "\n".join(lines)


def system_accounts(passwd: str, group: str) -> tuple[str, str]:
    """The host's passwd and group reduced to system accounts (and nobody/nogroup). Pure."""
    def keep(line: str, id_field: int) -> bool:
        f = line.split(":")
        if len(f) <= id_field or not f[id_field].isdigit():
            return False
        n = int(f[id_field])
        return n <= SYSTEM_UID_MAX or f[0] in ("nobody", "nogroup")

    users = [ln for ln in passwd.splitlines() if keep(ln, 2)]
    names = {ln.split(":")[0] for ln in users}
    groups = []
    for ln in group.splitlines():
        if keep(ln, 2):
            f = ln.split(":")
            if len(f) == 4:  # members: system accounts only
                f[3] = ",".join(m for m in f[3].split(",") if m in names)
            groups.append(":".join(f))
    return "\n".join(users) + "\n", "\n".join(groups) + "\n"


def make(root: str, host: str = "/", force: bool = False) -> Result:
    root = os.path.abspath(root)
    if os.path.exists(root) and os.listdir(root) and not force:
        raise MkrootError(f"{root} exists and is not empty (use --force to add to it)")
    os.makedirs(root, mode=0o755, exist_ok=True)
    for d, mode in DIRS.items():
        p = os.path.join(root, d)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
    if not os.path.lexists(os.path.join(root, "var/run")):
        os.symlink("/run", os.path.join(root, "var/run"))
    mounts, notes = ["/usr"], []
    for name in USR_LINKS:
        hp = os.path.join(host, name)
        dst = os.path.join(root, name)
        if os.path.islink(hp) and os.readlink(hp) in (f"usr/{name}", f"/usr/{name}"):
            if not os.path.lexists(dst):
                os.symlink(f"usr/{name}", dst)
        elif os.path.isdir(hp):  # a host without the usr merge: mount it too
            os.makedirs(dst, exist_ok=True)
            mounts.append("/" + name)
    with open(os.path.join(host, "etc/passwd")) as p, open(os.path.join(host, "etc/group")) as g:
        passwd, group = system_accounts(p.read(), g.read())
    _write(os.path.join(root, "etc/passwd"), passwd, 0o644)
    _write(os.path.join(root, "etc/group"), group, 0o644)
    for rel in COPIED:
        src = os.path.join(host, rel)
        if os.path.isfile(src):
            shutil.copy2(src, os.path.join(root, rel), follow_symlinks=True)
    for rel in COPIED_TREES:
        src = os.path.join(host, rel)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, rel), symlinks=True, dirs_exist_ok=True)
    if not os.path.exists(os.path.join(root, "etc/hosts")):
        _write(os.path.join(root, "etc/hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644)
    if os.stat(os.path.dirname(root)).st_mode & 0o077:
        notes.append(f"{os.path.dirname(root)} is open to other users: make it 0700 so that no host "
                     "user can reach set-uid programs a prison's root may leave in its tree")
    return Result(root, mounts, notes)


def _write(path: str, text: str, mode: int) -> None:
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)
