"""The control methods: a request and the caller's credentials in, a result or a PrisonError out.

Who may do what (SO_PEERCRED): anyone who can reach the socket may read (health, list, show);
only root may change things or enter a prison.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import procinfo
from .config import load_file
from .errors import NoSuchProcess, PermissionDenied, StateConflict
from .policy import POLICY_VAR, jail_flags, shim_policy
from .prison import RUNNING
from .protocol import READ_ONLY, VERSION, Request, param
from .registry import Registry


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


class Api:
    def __init__(self, registry: Registry, shim_path: str, *, status=lambda: "ready"):
        self.registry = registry
        self.shim_path = shim_path
        self.status = status

    async def handle(self, req: Request, peer: Peer):
        if req.method not in READ_ONLY and peer.uid != 0:
            raise PermissionDenied(f"{req.method} needs root (you are uid {peer.uid})")
        method = getattr(self, "m_" + req.method.replace(".", "_"))
        return await method(req)

    async def m_daemon_health(self, req: Request):
        return {"status": self.status(), "pid": os.getpid(), "protocol": VERSION,
                "prisons": self.registry.counts()}

    async def m_daemon_reload(self, req: Request):
        dry_run = bool(param(req, "dry_run", bool, required=False))
        path = param(req, "config", str, required=False) or self.registry.config.source
        new = load_file(path)  # ConfigError: the running configuration stays
        d = await self.registry.reload(new, dry_run=dry_run)
        return dict(d.as_dict(), dry_run=dry_run, config=path)

    async def m_prison_list(self, req: Request):
        return self.registry.list()

    async def m_prison_show(self, req: Request):
        return self.registry.get(param(req, "name")).details()

    async def m_prison_ps(self, req: Request):
        prison = self.registry.get(param(req, "name"))
        return {"name": prison.spec.name, "jid": prison.jid, "processes": procinfo.processes(prison.pids())}

    async def m_prison_which(self, req: Request):
        pid = param(req, "pid", int)
        if not os.path.exists(f"/proc/{pid}"):
            raise NoSuchProcess(f"no process {pid}")
        name = self.registry.deps.cgroups.prison_of(pid)
        prison = self.registry.prisons.get(name) if name else None
        return {"pid": pid, "prison": prison.spec.name if prison else None,
                "jid": prison.jid if prison else None}

    async def m_prison_start(self, req: Request):
        return await self.registry.start(param(req, "name"))

    async def m_prison_stop(self, req: Request):
        return await self.registry.stop(param(req, "name"))

    async def m_prison_restart(self, req: Request):
        return await self.registry.restart(param(req, "name"))

    async def m_prison_exec(self, req: Request):
        """What `prisonctl exec` needs to enter the prison itself, as jexec does with jail_attach."""
        prison = self.registry.get(param(req, "name"))
        if prison.state != RUNNING:
            raise StateConflict(f"prison {prison.spec.name} is not running", "not_running")
        spec = prison.spec
        confined = None
        if prison.init_pid is not None:
            confined = {"jail": prison.deps.launcher.jail_path, "init_pid": prison.init_pid,
                        "allow": jail_flags(spec)}
        return {"jid": prison.jid, "name": spec.name, "cgroup_procs": prison.cgroup.procs_file,
                "confined": confined,
                "namespaces": prison.deps.ns_pins(spec),
                "preload": self.shim_path, "env": dict(spec.exec.env),
                "policy": {POLICY_VAR: shim_policy(spec, kernel=prison.enforcement == "kernel")}}
