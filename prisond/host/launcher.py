"""Starting things for prisons: a prison's init, processes inside it, commands on the host.

Every process of a prison is started by the prison's init (initlink.py, native/jail/init.c): the
daemon starts that init in the prison's cgroup, with the prison's namespaces (and for a
confined prison its root), and from then on asks it.  So every process of a prison descends
from its init and inherits its cgroup, namespaces, Landlock domain, seccomp filter and
bounding set, and gets nothing of the daemon's or of an operator's but what is handed to it.

Host commands (exec.prestart and the other hooks jail(8) runs on the host) are plain
subprocesses of the daemon with a new session.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterable

from prisond.model import hosts
from prisond.model.config import Command, PrisonSpec
from prisond.model.contract import SERVICE_PATH
from prisond.model.errors import SystemLayerError
from prisond.host.reach import foreign_owner, hidden_from_users
from prisond.host.initlink import STAGE_USER, Child, InitLink, SpawnError, SpawnRequest, short_address
from prisond.model.policy import jail_flags, service_env
from prisond.host.spawner import Spawner

log = logging.getLogger("prisond.host.launcher")

INIT_TIMEOUT = 30.0


def init_argv(jail: str, control_fd: int, spec: PrisonSpec, procs_files: list[str], public_dir: str,
              landlock_abi: int | None = None, hosts: str | None = None) -> list[str]:
    """prisonjail init: the prison's cgroups and namespaces (UTS always; IPC unless
    allow.sysvipc, which shares the host's, as FreeBSD does), for a confined prison its root,
    for an isolated one its PID namespace and private directories; the configured mounts, then
    the daemon's public directory (the shim, the prisons' socket) read-only; its hosts file
    and runtime directories."""
    argv = [jail, "init", "--control", str(control_fd), "--hostname", spec.hostname, "--allow", jail_flags(spec)]
    for f in procs_files:
        argv += ["--cgroup", f]
    if "sysvipc" not in spec.allow:
        argv.append("--ipc")
    if landlock_abi:
        argv += ["--landlock-abi", str(landlock_abi)]
    if not spec.own_pids:
        return argv
    argv += ["--root", spec.path] if spec.path is not None else ["--isolate"]
    for m in spec.mounts:
        argv += ["--bind", m.source, m.target, "ro" if m.readonly else "rw"]
    argv += ["--bind", public_dir, public_dir, "ro"]
    if hosts is not None:
        argv += ["--hosts", hosts]
    for d in spec.runtime_directory:
        argv += ["--rundir", d]
    if spec.runtime_directory and spec.exec.jail_user:
        argv += ["--rundir-user", spec.exec.jail_user]
    return argv


def listen_seqpacket(path: str) -> socket.socket:
    """A fresh listening socket at path (a stale file from a dead init is replaced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    address, dirfd = short_address(path)
    try:
        s.bind(address)
        os.chmod(path, 0o600)
        s.listen(16)
    except OSError:
        s.close()
        raise
    finally:
        if dirfd is not None:
            os.close(dirfd)
    return s


# children something else waits for (a starter's thread, asyncio's child watcher): the orphan
# reaper (host/reaper.py) leaves them alone
WAITED: set[int] = set()


class Launcher:
    def __init__(self, shim_path: str, jail_path: str | None, public_socket: str | None, init_dir: str,
                 landlock_abi: int | None = None, hosts_dir: str | None = None,
                 peers: Callable[[], Iterable[PrisonSpec]] = tuple):
        """hosts_dir: where each prison's /etc/hosts is written (root's, outside every root);
        peers(): the configuration's prisons, for hosts: all."""
        self.hosts_dir = hosts_dir or os.path.join(os.path.dirname(init_dir), "hosts")
        self.peers = peers
        self.shim_path = shim_path
        self.jail_path = jail_path
        self.socket_path = public_socket  # the shim asks the daemon there (virtual /proc/PID/status)
        self.public_dir = os.path.dirname(shim_path)
        self.init_dir = init_dir  # each prison's init socket: root only
        self.landlock_abi = landlock_abi
        self.spawner = Spawner()  # runs prisonjail init for the daemon (spawner.py); started by the daemon

    def init_socket(self, name: str) -> str:
        return os.path.join(self.init_dir, f"{name}.sock")

    def forget_inits(self, keep: set[str]) -> None:
        """Remove the sockets of inits that are gone (all but the prisons in keep)."""
        for entry in os.listdir(self.init_dir) if os.path.isdir(self.init_dir) else ():
            if entry.removesuffix(".sock") not in keep:
                os.unlink(os.path.join(self.init_dir, entry))

    def link(self, name: str) -> InitLink:
        """The way to the init of a prison that already runs (one an earlier daemon started)."""
        return InitLink(self.init_socket(name), name)

    async def start_init(self, spec: PrisonSpec, procs_files: list[str]) -> InitLink:
        """The prison's init, in its cgroup, with its namespaces; its link (not yet connected).
        No preexec_fn: Python then starts the program with vfork, which a thousand prison
        starts notice (fork would copy the daemon's page tables each time)."""
        if not self.jail_path:
            raise SystemLayerError("prisonjail is missing: was prisond installed with 'pip install'?", "internal")
        if spec.path is not None and not os.path.isdir(spec.path):
            raise SystemLayerError(f"path {spec.path}: not a directory", "exec_failed")
        if spec.path is not None:
            owner = foreign_owner(spec.path)
            if owner:
                raise SystemLayerError(
                    f"path {spec.path}: {owner} belongs to uid {os.lstat(owner).st_uid}, not root: whoever owns a "
                    "prison's /etc/passwd is root inside it; make the root root's (chown -R root:root), or make it "
                    "with prisonctl mkroot as root", "exec_failed")
        runtime = os.path.dirname(self.init_dir)
        for m in spec.mounts:
            if m.source == "/" or runtime == m.source or runtime.startswith(m.source.rstrip("/") + "/") \
                    or m.source.startswith(runtime + "/"):
                raise SystemLayerError(
                    f"mounts: {m.source}: holds the daemon's runtime directory {runtime} (each prison's init "
                    "socket): never shown to a prison", "exec_failed")
            real = os.path.realpath(m.source)
            if real != m.source:  # prisonjail refuses it too, whatever changes after this look
                raise SystemLayerError(
                    f"mounts: {m.source}: a symbolic link on its way (it leads to {real}): give the real path; "
                    "whoever can change the link could show the prison anything, the host's / included",
                    "exec_failed")
        for what, where in ([("path", spec.path)] if spec.path else []) + [
                (f"mounts: {m.source} (read-write)", m.source) for m in spec.mounts if not m.readonly]:
            if not hidden_from_users(where):
                raise SystemLayerError(
                    f"{what}: every host user can reach it; make a directory on its way root's alone (0700), "
                    "or a host user could run a set-uid program the prison's root leaves there", "exec_failed")
        os.makedirs(self.init_dir, mode=0o700, exist_ok=True)
        hosts_path = self.write_hosts(spec) if spec.own_pids and spec.hosts != "inherit" else None
        if hosts_path and spec.path is None and not os.path.isfile("/etc/hosts"):
            # nothing to mount it on, and prisond makes no file in the host's /etc
            log.warning("prison %s: the host has no /etc/hosts: the prison's hostname does not resolve in it "
                        "(install netbase)", spec.name)
            hosts_path = None
        path = self.init_socket(spec.name)
        listener = listen_seqpacket(path)
        try:
            argv = init_argv(self.jail_path, 0, spec, procs_files, self.public_dir, self.landlock_abi, hosts_path)
            rc, out, err = await asyncio.to_thread(self._run_starter, argv, listener.fileno())
        finally:
            listener.close()  # init holds it now
        if rc != 0:
            _unlink(path)
            why = err.decode(errors="replace").strip().removeprefix("prisonjail: ") or "it did not get ready"
            raise SystemLayerError(f"cannot {'confine' if spec.confined else 'make'} the prison: {why}", "exec_failed")
        link = InitLink(path, spec.name)
        link.init_pid = int(out)
        return link

    def _run_starter(self, argv: list[str], stdin: int) -> tuple[int, bytes, bytes]:
        return self.spawner.run(argv, stdin, INIT_TIMEOUT) or run_starter(argv, stdin, INIT_TIMEOUT)

    def hosts_file(self, name: str) -> str:
        return os.path.join(self.hosts_dir, name)

    def write_hosts(self, spec: PrisonSpec) -> str:
        """The prison's /etc/hosts, written in place (a running prison has the file's inode
        mounted: a new file would not reach it); its path."""
        os.makedirs(self.hosts_dir, mode=0o755, exist_ok=True)
        path = self.hosts_file(spec.name)
        data = hosts.render(spec, self.peers()).encode()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)
            if os.pread(fd, len(data) + 1, 0) != data:
                # the new text first, then the end cut: a reader at that moment sees the new
                # lines with the old file's tail, never a hole of NULs (a longer file's)
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        return path

    def refresh_hosts(self, running: Iterable[PrisonSpec]) -> None:
        """After a reload: the files of running prisons, whose addresses (changed in place) or
        whose neighbours (hosts: all) may have changed.  Unchanged files are not written."""
        for spec in running:
            if spec.own_pids and spec.hosts != "inherit" and os.path.exists(self.hosts_file(spec.name)):
                self.write_hosts(spec)

    def forget_hosts(self, keep: set[str]) -> None:
        for entry in os.listdir(self.hosts_dir) if os.path.isdir(self.hosts_dir) else ():
            if entry not in keep:
                _unlink(os.path.join(self.hosts_dir, entry))

    def spawn_request(self, spec: PrisonSpec, cmd: Command, kernel: bool) -> SpawnRequest:
        """A service or exec.stop: jail(8)'s clean environment, as exec.jail_user."""
        return SpawnRequest(argv=list(cmd.argv), env=service_env(spec, self.shim_path, kernel=kernel,
                                                                 socket=self.socket_path),
                            user=spec.exec.jail_user, nofile=spec.limits.nofile, stdio="log")

    async def spawn_in(self, link: InitLink, spec: PrisonSpec, cmd: Command, kernel: bool) -> Child:
        req = self.spawn_request(spec, cmd, kernel)
        out = self._consolelog(spec)
        fds = []
        try:
            if out is not None:
                req.stdio = "fds"
                fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), out, out]
            child, _ = await link.spawn(req, fds, prefix="s")
            return child
        except SpawnError as exc:
            if exc.stage == STAGE_USER:
                raise SystemLayerError(f"exec.jail_user: no user {spec.exec.jail_user!r} in the prison",
                                       "exec_failed") from None
            raise
        finally:
            for fd in fds[:2]:
                os.close(fd)

    @staticmethod
    def _consolelog(spec: PrisonSpec) -> int | None:
        """exec.consolelog, opened by the daemon (never through a symlink at its end)."""
        if not spec.exec.consolelog:
            return None
        try:  # never a fifo to hang on, never through a link at its end
            fd = os.open(spec.exec.consolelog, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK, 0o640)
        except OSError as exc:
            raise SystemLayerError(f"cannot open exec.consolelog {spec.exec.consolelog}: {exc.strerror}",
                                   "exec_failed") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SystemLayerError(f"exec.consolelog {spec.exec.consolelog}: not a regular file", "exec_failed")
        os.set_blocking(fd, True)
        return fd

    async def spawn_host(self, spec: PrisonSpec, cmd: Command) -> asyncio.subprocess.Process:
        env = dict(os.environ, PRISOND_PRISON=spec.name, PRISOND_HOSTNAME=spec.hostname,
                   PRISOND_IP4=" ".join(str(a.ip) for a in spec.ip4),
                   PRISOND_IP6=" ".join(str(a.ip) for a in spec.ip6))
        env.pop("NOTIFY_SOCKET", None)
        out = self._consolelog(spec)
        pipe = subprocess.PIPE if out is None else out  # no consolelog: the daemon logs the lines
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd.argv, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, start_new_session=True)
            WAITED.add(proc.pid)  # asyncio's watcher collects it, not the orphan reaper
            asyncio.ensure_future(proc.wait()).add_done_callback(lambda _: WAITED.discard(proc.pid))
            return proc
        except OSError as exc:
            raise SystemLayerError(f"cannot run {cmd.argv[0]}: {exc.strerror}", "exec_failed") from None
        finally:
            if out is not None:
                os.close(out)


async def wait_host_command(proc: asyncio.subprocess.Process, timeout: float) -> int | None:
    """A host hook's exit status, or None after killing one that outlived its timeout."""
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        await proc.wait()
        return None


def run_starter(argv: list[str], stdin: int, timeout: float) -> tuple[int, bytes, bytes]:
    """Runs `prisonjail init` (which forks the prison's init and exits once it is ready) with
    the init socket as its stdin; (exit status, stdout, stderr).  Blocking: called in a
    thread.  posix_spawn and a plain waitpid rather than the event loop's subprocesses: uvloop
    loses the pipes of its subprocesses once the daemon holds a thousand descriptors (one per
    prison), and a daemon that starts many prisons needs neither a fork of itself nor a child
    watcher here."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(argv[0], argv, {"PATH": SERVICE_PATH}, setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
        WAITED.add(pid)
    finally:
        os.close(out_w)
        os.close(err_w)
    try:
        out, err = _read_both(out_r, err_r, timeout)
    finally:
        os.close(out_r)
        os.close(err_r)
    if out is None:
        os.kill(pid, signal.SIGKILL)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        WAITED.discard(pid)
    return (os.waitstatus_to_exitcode(status) if out is not None else -1), out or b"", err or b""


def _read_both(a: int, b: int, timeout: float) -> tuple[bytes | None, bytes | None]:
    """Both pipes to their end; (None, None) after timeout seconds.  poll, not select: the
    descriptors may be above 1023."""
    import select
    bufs, deadline = {a: b"", b: b""}, time.monotonic() + timeout
    p = select.poll()
    p.register(a, select.POLLIN)
    p.register(b, select.POLLIN)
    left_open = 2
    while left_open:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, None
        for fd, _ in p.poll(left * 1000):
            chunk = os.read(fd, 65536)
            if chunk:
                bufs[fd] += chunk
            else:
                p.unregister(fd)
                left_open -= 1
    return bufs[a], bufs[b]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
