"""Running commands for prisons: in the prison (its cgroup, its environment) or on the host.

A process enters the prison's cgroup between fork and exec, so it and its children are never
outside.  Commands get a new session, so a terminal's Ctrl-C to a foreground daemon does not
reach them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess

from . import cgroup as cgroups
from . import namespaces
from .config import Command, PrisonSpec
from .errors import SystemLayerError
from .policy import service_env

log = logging.getLogger("prisond.launcher")


def _user(name: str):
    import pwd
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise SystemLayerError(f"exec.jail_user: no user {name!r}", "exec_failed") from None


class Launcher:
    def __init__(self, shim_path: str):
        self.shim_path = shim_path

    def _output(self, spec: PrisonSpec):
        if not spec.exec.consolelog:
            return None
        try:
            return open(spec.exec.consolelog, "ab", buffering=0)
        except OSError as exc:
            raise SystemLayerError(f"cannot open exec.consolelog {spec.exec.consolelog}: {exc.strerror}",
                                   "exec_failed") from None

    async def spawn_in(self, spec: PrisonSpec, cmd: Command, cg: cgroups.Cgroup,
                       kernel: bool = False, pins: dict | None = None) -> asyncio.subprocess.Process:
        procs_file = cg.procs_file
        user = _user(spec.exec.jail_user) if spec.exec.jail_user else None
        env = service_env(spec, self.shim_path, kernel=kernel)
        if user:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name, SHELL=user.pw_shell or "/bin/sh")

        def enter():  # between fork and exec: os calls only; into the prison, then the user
            cgroups.join(procs_file)
            if pins:
                namespaces.join(pins)
            if user:
                os.initgroups(user.pw_name, user.pw_gid)
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        out = self._output(spec)
        try:
            return await asyncio.create_subprocess_exec(
                *cmd.argv, env=env, cwd="/",
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
