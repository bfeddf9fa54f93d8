"""`prisonctl mkroot DIR`: a root directory for a confined prison, made from the host.

The 1999 jail came with "no scripts for setting up a jail".  This makes a small root that
shares the host's programs read-only instead of copying them: the directory gets its own
/etc, /tmp, /root, /var, empty mount points, and the usr-merge links; the prison's
configuration then mounts the host's /usr read-only (`mounts: [/usr]`).  Everything the prison
writes stays in DIR; nothing in it can change a host binary.  For a root of its own (other
packages, other versions), `mkroot --debian` copies a cached debootstrap (debroot.py).

What a root gets from the host's /etc is an allow-list of what programs need to run, and no
secrets: passwd and group cut to the system accounts (no user accounts, no shadow or gshadow);
name resolution (hosts, resolv.conf, nsswitch.conf, host.conf, gai.conf, services, protocols);
the dynamic loader's cache and configuration (ld.so.cache, ld.so.conf, ld.so.conf.d); identity
and locale of the system (os-release, debian_version, localtime, timezone); the shells' startup
files (profile, bash.bashrc, shells); mime.types; the alternatives links (into /usr);
python3's configuration (etc/python3, etc/python3.N); and TLS trust: etc/ssl/certs (public CA
certificates) and etc/ssl/openssl.cnf.  Never: etc/ssl/private, ssh host keys, sudoers, or any
service's configuration (/etc/nginx, ...): a prison that needs one mounts it explicitly
(`mounts: [{source: /etc/nginx, target: /etc/nginx}]`, read-only) or gets its own copy.
Earlier versions copied all of etc/ssl and /etc/nginx: `--force` on such a root notes what is
left (and does not remove it: the prison may use it).

A root already used by a prison (`--force`) belongs to the prison's root user, who may have
planted symlinks aimed at the host's files.  So no path under DIR is ever resolved through a
link: every directory is opened one component at a time from a descriptor of DIR with
O_NOFOLLOW, modes are set through the opened descriptor, and files and links are made under a
fresh name (O_EXCL) in the opened directory and renamed over the old entry (rename replaces a
link, it does not follow it; nor does it write into a file a prison may have hard-linked).
Where mkroot wants a directory or a file and finds a symlink or another non-directory (a fifo,
a device, a file), that entry is replaced: unlinked, never followed.  Where it wants a file and
finds a directory, it stops with an error naming it (a directory may hold the prison's data:
mkroot removes none).  DIR itself and its parents are the host root's to give: they are
resolved normally, but DIR must be a directory, not a symlink.

A root in use is refused, with or without --force: a process with its root or current directory
in DIR (a running confined prison, a chroot), or a mount inside DIR.  (DIR itself may be a mount
point: a filesystem of its own for the prison is what the README advises.)

File work on paths given in: `host` is the root to read from (/ outside tests).
"""
from __future__ import annotations

import fnmatch
import os
import secrets
import stat
from contextlib import contextmanager
from dataclasses import dataclass

from prisond.host.reach import hidden_from_users

SYSTEM_UID_MAX = 999  # Debian: system accounts are below 1000
DIRS = {"etc": 0o755, "tmp": 0o1777, "root": 0o700, "home": 0o755, "proc": 0o555, "dev": 0o755,
        "run": 0o755, "srv": 0o755, "usr": 0o755, "var": 0o755, "var/tmp": 0o1777, "var/log": 0o755,
        "var/lib": 0o755, "var/cache": 0o755}
USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
COPIED = ("etc/hosts", "etc/resolv.conf", "etc/nsswitch.conf", "etc/host.conf", "etc/gai.conf",
          "etc/services", "etc/protocols", "etc/ld.so.cache", "etc/ld.so.conf", "etc/os-release",
          "etc/debian_version", "etc/localtime", "etc/timezone", "etc/profile", "etc/bash.bashrc",
          "etc/shells", "etc/mime.types", "etc/ssl/openssl.cnf")
# Trees by pattern on the host's /etc names: python3.N follows the host's python.
COPIED_TREES = ("ld.so.conf.d", "alternatives", "ssl/certs", "python3", "python3.[0-9]*")
# What earlier versions copied and this one does not: noted when found in an existing root.
FORMERLY_COPIED = ("etc/ssl/private", "etc/nginx")
PROC = "/proc"

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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


# ------------------------------------------------------------------ pure parts

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


def trees_to_copy(host_etc: dict[str, list[str]]) -> list[str]:
    """The etc/... trees to copy, given the host's names per /etc subdirectory ("" for /etc itself,
    "ssl" for /etc/ssl). Pure: the allow-list's patterns matched against what the host has."""
    out = []
    for pattern in COPIED_TREES:
        parent, _, base = pattern.rpartition("/")
        out += [f"etc/{parent + '/' if parent else ''}{n}" for n in sorted(host_etc.get(parent, ()))
                if fnmatch.fnmatchcase(n, base)]
    return out


def verdict(want: str, mode: int | None) -> str:
    """What to do with the entry found where mkroot wants a "dir" or a "file" (a link counts as a
    file). Pure. "make": nothing there; "use": the directory wanted; "replace": a symlink or any
    other non-directory, unlinked or renamed over, never followed; "refuse": a directory where a
    file is wanted (it may hold the prison's data, which mkroot does not remove)."""
    if mode is None:
        return "make"
    if stat.S_ISDIR(mode):
        return "use" if want == "dir" else "refuse"
    return "replace"


def unescape_mountinfo(field: str) -> str:
    r"""mountinfo's octal escapes (\040 for a space, \011, \012, \134) decoded. Pure."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def inside(path: str, top: str) -> bool:
    """path is strictly below top (both absolute, normalised). Pure."""
    return path.startswith(top.rstrip("/") + "/")


def mounts_inside(mountinfo: str, top: str) -> list[str]:
    """Mount points strictly inside top, from /proc/self/mountinfo's text. Pure. (top itself may
    be a mount point: a root on a filesystem of its own.)"""
    points = [unescape_mountinfo(ln.split()[4]) for ln in mountinfo.splitlines() if len(ln.split()) > 4]
    return [p for p in points if inside(p, top)]


def in_use_message(root: str, users: list[tuple[int, str, str]], mounts: list[str]) -> str | None:
    """One line saying why root is in use, or None. users: (pid, command, "root"|"cwd"). Pure."""
    if users:
        pid, comm, kind = users[0]
        what = "root directory" if kind == "root" else "current directory"
        return (f"{root} is in use: pid {pid} ({comm}) has its {what} in it{_more(users)}; "
                "stop the prison (or the process) first")
    if mounts:
        return f"{root} is in use: {mounts[0]} is mounted inside it{_more(mounts)}; unmount it first"
    return None


def _more(found: list) -> str:
    return f" (and {len(found) - 1} more)" if len(found) > 1 else ""


def leftover_notes(root: str, present: list[str]) -> list[str]:
    """Notes for what earlier versions copied into the root and this one no longer does. Pure."""
    return [f"{root}/{rel} is left from an earlier mkroot, which copied the host's /{rel} into every root: "
            "remove it unless the prison needs it, and count what it held as known to the prison "
            "(replace those keys)" for rel in present]


# ------------------------------------------------------------------ a root in use

def reaches(path: str, target: tuple[int, int], limit: int = 4096) -> bool:
    """The directory path (a /proc/PID/root or cwd link, followed) is target, (st_dev, st_ino), or
    below it. Walks '..' up to the top ('..' of itself): '..' is resolved from our own root, so
    the walk climbs out of a chroot, and stops at the top of another mount namespace, where a
    confined prison's root is a bind mount of DIR (same device and inode). By identity, not by
    readlink's text: a path in another mount namespace may read as anything."""
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _ in range(limit):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == target:
                return True
            up = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = up
            ust = os.fstat(fd)
            if (ust.st_dev, ust.st_ino) == (st.st_dev, st.st_ino):
                return False
        return False
    finally:
        os.close(fd)


def _comm(pid: str) -> str:
    try:
        with open(f"{PROC}/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def processes_in(root_id: tuple[int, int]) -> list[tuple[int, str, str]]:
    """(pid, command, "root"|"cwd") of every process (but this one) whose root or current
    directory is the directory root_id or below it."""
    found = []
    for pid in sorted((p for p in os.listdir(PROC) if p.isdigit()), key=int):
        if int(pid) == os.getpid():
            continue
        for kind in ("root", "cwd"):
            try:
                if reaches(f"{PROC}/{pid}/{kind}", root_id):
                    found.append((int(pid), _comm(pid), kind))
                    break
            except OSError:  # gone since listed
                continue
    return found


def check_not_in_use(root: str, root_fd: int) -> None:
    st = os.fstat(root_fd)
    with open(f"{PROC}/self/mountinfo") as fh:
        mounts = mounts_inside(fh.read(), os.path.realpath(root))
    message = in_use_message(root, processes_in((st.st_dev, st.st_ino)), mounts)
    if message:
        raise MkrootError(message)


# ------------------------------------------------------------------ work under a directory fd

@contextmanager
def _at(where: str):
    """An OSError becomes one line naming the path in the root it happened at."""
    try:
        yield
    except MkrootError:
        raise
    except OSError as exc:
        raise MkrootError(f"{where}: {exc.strerror or exc}") from None


def _lstat(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_root(root: str) -> int:
    """A descriptor of DIR, made if absent; DIR must be a directory, not a symlink."""
    os.makedirs(os.path.dirname(root), exist_ok=True)  # the host's own path: followed as given
    try:
        os.mkdir(root, 0o755)
    except FileExistsError:
        pass
    try:
        return os.open(root, DIR_FLAGS)
    except OSError as exc:
        if os.path.islink(root):
            raise MkrootError(f"{root} is a symlink: give the directory it stands for") from None
        raise MkrootError(f"{root}: {'not a directory' if os.path.lexists(root) else exc.strerror}") from None


def open_dir(parent: int, name: str, where: str, mode: int = 0o755) -> int:
    """The directory `name` in parent, opened without following a link; made with mode if absent
    (an existing one keeps its own); a non-directory there is unlinked first."""
    action = verdict("dir", getattr(_lstat(parent, name), "st_mode", None))
    if action == "replace":
        os.unlink(name, dir_fd=parent)
    if action != "use":
        os.mkdir(name, 0o700, dir_fd=parent)
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:  # swapped between our mkdir and open: someone is working in the root
        raise MkrootError(f"{where} changed while mkroot made it: is the root in use?") from None
    if action != "use":
        os.fchmod(fd, mode)  # through the fd: the umask does not cut it (1777 for tmp)
    return fd


def open_path(root_fd: int, rel: str, root: str, mode: int = 0o755) -> int:
    """The directory root/rel, each component opened (or made, with mode) by open_dir."""
    fd, done = os.dup(root_fd), root
    try:
        for name in rel.split("/"):
            done = f"{done}/{name}"
            sub = open_dir(fd, name, done, mode)
            os.close(fd)
            fd = sub
        return fd
    except BaseException:
        os.close(fd)
        raise


def _renamed_into_place(parent: int, name: str, where: str, make_tmp) -> None:
    """make_tmp(tmp_name) makes a new entry under a fresh name in parent; it then replaces `name`
    by rename (a link or file there is replaced, not followed). A directory there is refused."""
    if verdict("file", getattr(_lstat(parent, name), "st_mode", None)) == "refuse":
        raise MkrootError(f"{where} is a directory where mkroot puts a file: move it away first")
    tmp = f".mkroot-{secrets.token_hex(8)}"
    try:
        make_tmp(tmp)
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=parent)
        except OSError:
            pass
        raise


def put_file(parent: int, name: str, where: str, data: bytes, mode: int) -> None:
    def make(tmp: str) -> None:
        fd = os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    _renamed_into_place(parent, name, where, make)


def put_link(parent: int, name: str, where: str, target: str) -> None:
    st = _lstat(parent, name)
    if st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=parent) == target:
        return  # already so: no churn in a tree of hundreds of links
    _renamed_into_place(parent, name, where, lambda tmp: os.symlink(target, tmp, dir_fd=parent))


def link_if_absent(parent: int, name: str, target: str) -> None:
    """The usr-merge and var/run links: made once; whatever the prison put there since is its own."""
    if _lstat(parent, name) is None:
        os.symlink(target, name, dir_fd=parent)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:  # the host's file: its links are the host's and followed
        return fh.read()


def copy_file(src: str, parent: int, name: str, where: str) -> None:
    put_file(parent, name, where, _read(src), stat.S_IMODE(os.stat(src).st_mode) & 0o777)


def copy_tree(src: str, parent: int, name: str, where: str) -> None:
    """The host's tree src as parent/name: directories, files and symlinks (as links)."""
    fd = open_dir(parent, name, where)
    try:
        os.fchmod(fd, stat.S_IMODE(os.stat(src).st_mode) & 0o777)
        with os.scandir(src) as entries:
            for e in entries:
                w = f"{where}/{e.name}"
                with _at(w):
                    if e.is_symlink():
                        put_link(fd, e.name, w, os.readlink(e.path))
                    elif e.is_dir():
                        copy_tree(e.path, fd, e.name, w)
                    elif e.is_file():
                        copy_file(e.path, fd, e.name, w)
                    # sockets, fifos, devices in the host's /etc: not a root's business
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the steps

def make_dirs(root_fd: int, root: str) -> None:
    for rel, mode in DIRS.items():
        with _at(f"{root}/{rel}"):
            fd = open_path(root_fd, rel, root)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)


def make_links(root_fd: int, root: str, host: str) -> list[str]:
    """The usr-merge links (or, on a host without the merge, mount points); the extra mounts."""
    mounts = []
    for name in USR_LINKS:
        hp = os.path.join(host, name)
        with _at(f"{root}/{name}"):
            if os.path.islink(hp) and os.readlink(hp) in (f"usr/{name}", f"/usr/{name}"):
                link_if_absent(root_fd, name, f"usr/{name}")
            elif os.path.isdir(hp):  # a host without the usr merge: mount it too
                os.close(open_dir(root_fd, name, f"{root}/{name}"))
                mounts.append("/" + name)
    with _at(f"{root}/var/run"):
        var = open_path(root_fd, "var", root)
        try:
            link_if_absent(var, "run", "/run")
        finally:
            os.close(var)
    return mounts


def _host_etc_names(host: str) -> dict[str, list[str]]:
    names = {}
    for parent in {p.rpartition("/")[0] for p in COPIED_TREES}:
        try:
            with os.scandir(os.path.join(host, "etc", parent)) as entries:
                names[parent] = [e.name for e in entries if e.is_dir() and not e.is_symlink()]
        except OSError:
            names[parent] = []
    return names


def fill_etc(root_fd: int, root: str, host: str) -> None:
    with open(os.path.join(host, "etc/passwd")) as p, open(os.path.join(host, "etc/group")) as g:
        passwd, group = system_accounts(p.read(), g.read())
    wanted: list[tuple[str, bytes | None]] = [("etc/passwd", passwd.encode()), ("etc/group", group.encode())]
    wanted += [(rel, None) for rel in COPIED if os.path.isfile(os.path.join(host, rel))]
    if not os.path.isfile(os.path.join(host, "etc/hosts")) and not _present(root_fd, "etc/hosts"):
        wanted.append(("etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost\n"))
    for rel, data in wanted:
        where, (parent_rel, _, name) = f"{root}/{rel}", rel.rpartition("/")
        with _at(where):
            parent = open_path(root_fd, parent_rel, root)
            try:
                if data is None:
                    copy_file(os.path.join(host, rel), parent, name, where)
                else:
                    put_file(parent, name, where, data, 0o644)
            finally:
                os.close(parent)
    for rel in trees_to_copy(_host_etc_names(host)):
        parent_rel, _, name = rel.rpartition("/")
        with _at(f"{root}/{rel}"):
            parent = open_path(root_fd, parent_rel, root)
            try:
                copy_tree(os.path.join(host, rel), parent, name, f"{root}/{rel}")
            finally:
                os.close(parent)


def _lookup(root_fd: int, rel: str) -> tuple[int, os.stat_result | None]:
    """(a descriptor of root/rel's directory, rel's lstat or None), looked up without following a
    link on the way. The caller closes the descriptor."""
    fd = os.dup(root_fd)
    try:
        *dirs, last = rel.split("/")
        for name in dirs:
            sub = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = sub
        return fd, _lstat(fd, last)
    except BaseException:
        os.close(fd)
        raise


def _present(root_fd: int, rel: str) -> bool:
    try:
        fd, st = _lookup(root_fd, rel)
    except OSError:
        return False
    os.close(fd)
    return st is not None


def _left_over(root_fd: int, rel: str) -> bool:
    """root/rel holds something: an empty directory is only a mount point (`mounts:` makes them)."""
    try:
        fd, st = _lookup(root_fd, rel)
    except OSError:
        return False
    try:
        if st is None or not stat.S_ISDIR(st.st_mode):
            return st is not None
        sub = os.open(rel.rpartition("/")[2], DIR_FLAGS, dir_fd=fd)
        try:
            return bool(os.listdir(sub))
        finally:
            os.close(sub)
    except OSError:
        return True  # there, but unreadable: say so
    finally:
        os.close(fd)


def make(root: str, host: str = "/", force: bool = False) -> Result:
    root = os.path.abspath(root)
    root_fd = open_root(root)
    try:
        check_not_in_use(root, root_fd)
        if os.listdir(root_fd) and not force:
            raise MkrootError(f"{root} exists and is not empty (use --force to add to it)")
        notes = leftover_notes(root, [rel for rel in FORMERLY_COPIED if _left_over(root_fd, rel)])
        make_dirs(root_fd, root)
        mounts = ["/usr"] + make_links(root_fd, root, host)
        fill_etc(root_fd, root, host)
    finally:
        os.close(root_fd)
    if not hidden_from_users(root):
        notes.append(f"host users can reach {root}: prisond will not start a confined prison there (they could "
                     "run set-uid programs its root leaves in it); move it below a directory of root's closed "
                     "to others (0700), such as /var/lib/prisond/roots")
    return Result(root, mounts, notes)
