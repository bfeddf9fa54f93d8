"""Running commands for prisons: in the prison (its cgroup, its environment) or on the host.

A process enters the prison's cgroup between fork and exec, so it and its children are never
outside.  Commands get a new session, so a terminal's Ctrl-C to a foreground daemon does not
reach them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess

from . import cgroup as cgroups
from . import namespaces
from .config import Command, PrisonSpec
from .errors import SystemLayerError
from .policy import enter_argv, jail_flags, service_env

log = logging.getLogger("prisond.launcher")


def _user(name: str):
    import pwd
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise SystemLayerError(f"exec.jail_user: no user {name!r}", "exec_failed") from None


INIT_TIMEOUT = 30.0


def join_all(procs_files: list[str]) -> None:
    """Into the prison's cgroup(s), between fork and exec."""
    for f in procs_files:
        cgroups.join(f)


def init_argv(jail: str, spec: PrisonSpec, pins: dict, runtime_dir: str) -> list[str]:
    """prisonjail init for a confined prison: its root, its namespaces, the configured mounts,
    then the daemon's runtime directory (the shim and the control socket) read-only."""
    argv = [jail, "init", "--root", spec.path]
    for kind in ("uts", "ipc"):
        if kind in pins:
            argv += [f"--{kind}", pins[kind]]
    for m in spec.mounts:
        argv += ["--bind", m.source, m.target, "ro" if m.readonly else "rw"]
    return argv + ["--bind", runtime_dir, runtime_dir, "ro"]


class Launcher:
    def __init__(self, shim_path: str, jail_path: str | None = None, socket_path: str | None = None):
        self.shim_path = shim_path
        self.jail_path = jail_path
        self.socket_path = socket_path  # the shim asks the daemon there (virtual /proc/PID/status)
        self.runtime_dir = os.path.dirname(shim_path)

    def _output(self, spec: PrisonSpec):
        if not spec.exec.consolelog:
            return None
        try:
            return open(spec.exec.consolelog, "ab", buffering=0)
        except OSError as exc:
            raise SystemLayerError(f"cannot open exec.consolelog {spec.exec.consolelog}: {exc.strerror}",
                                   "exec_failed") from None

    async def start_init(self, spec: PrisonSpec, procs_files: list[str], pins: dict) -> int:
        """A confined prison's init (PID 1 of its namespaces, in its cgroup); its host pid."""
        if not self.jail_path:
            raise SystemLayerError("prisonjail is missing: was prisond installed with 'pip install'?", "internal")
        if not os.path.isdir(spec.path):
            raise SystemLayerError(f"path {spec.path}: not a directory", "exec_failed")
        proc = await asyncio.create_subprocess_exec(
            *init_argv(self.jail_path, spec, pins, self.runtime_dir), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lambda: join_all(procs_files),
            start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), INIT_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise SystemLayerError("the prison's init did not get ready", "exec_failed") from None
        if proc.returncode != 0:
            why = err.decode(errors="replace").strip().removeprefix("prisonjail: ")
            raise SystemLayerError(f"cannot confine the prison: {why}", "exec_failed")
        return int(out)

    async def spawn_in(self, spec: PrisonSpec, cmd: Command, procs_files: list[str],
                       kernel: bool = False, pins: dict | None = None,
                       init_pid: int | None = None) -> asyncio.subprocess.Process:
        nofile = spec.limits.nofile
        argv = cmd.argv
        if init_pid is not None:  # confined: prisonjail enters, and is the user inside
            argv = (*enter_argv(self.jail_path, init_pid, jail_flags(spec), spec.exec.jail_user), *argv)
            user, pins = None, None
        else:
            user = _user(spec.exec.jail_user) if spec.exec.jail_user else None
        env = service_env(spec, self.shim_path, kernel=kernel, socket=self.socket_path)
        if user:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name, SHELL=user.pw_shell or "/bin/sh")

        def enter():  # between fork and exec: os calls only; into the prison, then the user
            join_all(procs_files)
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if pins:
                namespaces.join(pins)
            if user:
                os.initgroups(user.pw_name, user.pw_gid)
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        out = self._output(spec)
        try:
            return await asyncio.create_subprocess_exec(
                *argv, env=env, cwd="/",
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=enter, start_new_session=True)
        except OSError as exc:
            raise SystemLayerError(f"cannot run {cmd.argv[0]}: {exc.strerror}", "exec_failed") from None
        except subprocess.SubprocessError as exc:
            raise SystemLayerError(f"cannot enter the prison to run {cmd.argv[0]}: {exc}", "exec_failed") from None
        finally:
            if out:
                out.close()

    async def spawn_host(self, spec: PrisonSpec, cmd: Command) -> asyncio.subprocess.Process:
        env = dict(os.environ, PRISOND_PRISON=spec.name, PRISOND_HOSTNAME=spec.hostname,
                   PRISOND_IP4=" ".join(str(a.ip) for a in spec.ip4),
                   PRISOND_IP6=" ".join(str(a.ip) for a in spec.ip6))
        env.pop("NOTIFY_SOCKET", None)
        out = self._output(spec)
        try:
            return await asyncio.create_subprocess_exec(
                *cmd.argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        except OSError as exc:
            raise SystemLayerError(f"cannot run {cmd.argv[0]}: {exc.strerror}", "exec_failed") from None
        finally:
            if out:
                out.close()

    @staticmethod
    async def wait(proc: asyncio.subprocess.Process, timeout: float) -> int | None:
        """The exit status, or None after killing a command that outlived its timeout."""
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()
            return None
