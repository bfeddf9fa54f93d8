"""The daemon's record of what it made, kept in --state-dir as small files, one per thing:

    boot_id              the boot the records belong to
    aliases/<address>    "prefix iface" of an alias the daemon added (written before adding)
    prisons/<name>.json  what a later daemon needs to adopt the prison

One small write per change, so that a daemon killed at any moment leaves a usable record, and
ten thousand prisons do not mean rewriting one big document.  A record is rewritten in place
(one pwrite at offset 0, blank-padded to the length it had: a reader sees the old or the new
record whole, never a mix, and trailing blanks are valid JSON), and a record that is no longer
needed is emptied, not unlinked: an empty file is no record.  Each new file, and each file
deleted shortly before, costs ext4 a search: without a journal it skips every inode freed in
the last minutes (`recently_deleted`), an eighth of the whole machine's time while 3,000
prisons started shortly after others stopped.  So a file is made once per name and reused by
every start and stop of the prison or the daemon; `prune` unlinks the empty files of names no
longer configured.
Records from an earlier boot are discarded: its aliases and cgroups died with it.  (No fsync:
what the records describe does not survive a power loss either.)
"""
from __future__ import annotations

import errno
import json
import os
import stat
import tempfile


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


class StateStore:
    def __init__(self, directory: str):
        self.directory = directory
        self.alias_dir = os.path.join(directory, "aliases")
        self.prison_dir = os.path.join(directory, "prisons")

    def ensure_dir(self) -> None:
        """Create the layout; discard records of an earlier boot."""
        for d in (self.directory, self.alias_dir, self.prison_dir):
            if d != self.directory and os.path.islink(d):
                os.unlink(d)  # never followed: records are written and emptied only in the state directory
            os.makedirs(d, mode=0o755, exist_ok=True)
        path = os.path.join(self.directory, "boot_id")
        try:
            with open(path) as fh:
                same_boot = fh.read().strip() == boot_id()
        except OSError:
            same_boot = False
        if not same_boot:
            self._wipe()
            self._write(path, boot_id() + "\n")

    # aliases
    def put_alias(self, ip: str, prefix: int, iface: str) -> None:
        rewrite_in_place(os.path.join(self.alias_dir, ip), f"{prefix} {iface}\n")

    def drop_alias(self, ip: str) -> None:
        _empty(os.path.join(self.alias_dir, ip))

    def aliases(self) -> list[dict]:
        out = []
        for name in _listdir(self.alias_dir):
            try:
                with open(os.path.join(self.alias_dir, name)) as fh:
                    prefix, iface = fh.read().split()
                out.append({"ip": name, "prefix": int(prefix), "iface": iface})
            except (OSError, ValueError):
                continue
        return out

    # prisons
    def put_prison(self, name: str, record: dict) -> None:
        rewrite_in_place(os.path.join(self.prison_dir, name + ".json"), json.dumps(record))

    def drop_prison(self, name: str) -> None:
        _empty(os.path.join(self.prison_dir, name + ".json"))

    def prisons(self) -> dict[str, dict]:
        out = {}
        for name in _listdir(self.prison_dir):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.prison_dir, name)) as fh:
                        out[name[:-5]] = json.load(fh)
                except (OSError, ValueError):
                    continue
        return out

    def clear(self) -> None:
        """After a clean stop: nothing is left to record (the empty files stay, for the next
        start to reuse)."""
        self._wipe()

    def prune(self, names: set[str], ips: set[str]) -> None:
        """Unlink the empty records of prisons and addresses other than these (no longer
        configured): a few files at a start, so that the directory does not grow."""
        for d, keep, suffix in ((self.prison_dir, names, ".json"), (self.alias_dir, ips, "")):
            for name in _listdir(d):
                if name.endswith(suffix) and name[:len(name) - len(suffix)] not in keep:
                    path = os.path.join(d, name)
                    try:
                        if os.lstat(path).st_size == 0:
                            os.unlink(path)
                    except FileNotFoundError:
                        pass

    def _wipe(self) -> None:
        for d in (self.alias_dir, self.prison_dir):
            for name in _listdir(d):
                _empty(os.path.join(d, name))

    @staticmethod
    def _write(path: str, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise


def rewrite_in_place(path: str, text: str) -> None:
    """The file holds text (and blanks after it): one pwrite from offset 0, of at least the
    file's old length, so that no reader or crash sees a mix of two records.  Records are
    small (a page at most: one write is then all or nothing); a longer one goes the safe way."""
    data = text.encode()
    if len(data) > 4096:
        StateStore._write(path, text)
        return
    try:  # root's, as mkstemp's were
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        StateStore._write(path, text)  # a symbolic link: replaced, never followed
        return
    try:
        st = os.fstat(fd)
        if st.st_size > 4096 or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            # written the safe way before (start afresh), or not a file of ours alone (a hard
            # link to another file, say): replaced, what it names is left as it is
            os.close(fd)
            fd = -1
            StateStore._write(path, text)
            return
        os.pwrite(fd, data.ljust(st.st_size), 0)
    finally:
        if fd >= 0:
            os.close(fd)


def _listdir(d: str) -> list[str]:
    try:
        return [n for n in os.listdir(d) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def _empty(path: str) -> None:
    """No record at path (an empty file, or none); the file stays, to be written again.  What
    is truncated is the file checked, never what a link names: a symbolic link, a hard link
    to another file or anything but a plain file loses its name here (a directory is left)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return  # not a record (someone's directory): left alone
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            if st.st_size:
                wfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC)  # this very file
                try:
                    os.ftruncate(wfd, 0)
                finally:
                    os.close(wfd)
            return
    finally:
        os.close(fd)
    _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
