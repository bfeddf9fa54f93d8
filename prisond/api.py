"""The control methods: a request and the caller's credentials in, a result or a PrisonError out.

Who may do what (SO_PEERCRED, SO_PEERGROUPS): root and members of the control group (daemon.
control_group, default prisond) may change things and enter prisons; any other local user may
read (health, list, show, ...) unless daemon.public_read is false; a process inside a prison
(root included) may only ask what its shim asks about its own prison.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import procinfo
from .config import load_file
from .errors import NoSuchProcess, PermissionDenied, StateConflict
from .policy import POLICY_VAR, jail_flags, shim_policy
from .prison import RUNNING
from .protocol import JAILED_OK, READ_ONLY, VERSION, Request, param
from .registry import Registry


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # supplementary groups
    prison: str | None = None     # the prison the caller was in when it connected (its cgroup)


@dataclass(frozen=True)
class Access:
    """Who may change things: root and the members of `gid` (None: root only)."""
    gid: int | None = None
    public_read: bool = True

    def operator(self, peer: Peer) -> bool:
        return peer.uid == 0 or (self.gid is not None and (peer.gid == self.gid or self.gid in peer.groups))


class Api:
    def __init__(self, registry: Registry, shim_path: str, *, status=lambda: "ready", access: Access = Access()):
        self.registry = registry
        self.shim_path = shim_path
        self.status = status
        self.access = access

    def handle(self, req: Request, peer: Peer):
        """The result, or for a method that waits on something (start, stop, reload) a coroutine."""
        jail = peer.prison
        if jail is not None and req.method not in JAILED_OK:
            raise PermissionDenied(f"{req.method}: refused to a process in prison {jail}")
        if jail is None and not self.access.operator(peer):
            if req.method not in READ_ONLY:
                raise PermissionDenied(f"{req.method} needs root or the control group (you are uid {peer.uid})")
            if not self.access.public_read:
                raise PermissionDenied(f"reading needs root or the control group (you are uid {peer.uid})")
        if req.method == "proc.status":
            return self.proc_status(req, jail)
        method = getattr(self, "m_" + req.method.replace(".", "_"))
        return method(req)

    def proc_status(self, req: Request, jail: str | None):
        """The lines a jailed process's /proc/PID/status ends with (PID as the asker sees it):
        FreeBSD's status names the jail.  Another prison's process does not exist for a prison."""
        pid = param(req, "pid", int)
        prisons = self.registry.prisons
        if jail is None:  # the host: any process
            if not os.path.exists(f"/proc/{pid}"):
                raise NoSuchProcess(f"no process {pid}")
            prison = prisons.get(self.registry.deps.cgroups.prison_of(pid) or "")
        else:
            prison = prisons.get(jail)
            if prison is None or procinfo.host_pid(prison.pids(), pid, confined=prison.init_pid is not None) is None:
                raise NoSuchProcess(f"no process {pid} in this prison")
        if prison is None:
            return {"text": "Prison:\t-\n"}
        spec = prison.spec
        return {"text": f"Prison:\t{spec.name}\nJID:\t{prison.jid}\nHostname:\t{spec.hostname}\n"}

    def prison_of(self, pid: int) -> str | None:
        """For the control server, once per connection (as SO_PEERCRED is taken at connect)."""
        return self.registry.deps.cgroups.prison_of(pid)

    def m_daemon_health(self, req: Request):
        return {"status": self.status(), "pid": os.getpid(), "protocol": VERSION,
                "prisons": self.registry.counts()}

    async def m_daemon_reload(self, req: Request):
        dry_run = bool(param(req, "dry_run", bool, required=False))
        path = param(req, "config", str, required=False) or self.registry.config.source
        new = load_file(path)  # ConfigError: the running configuration stays
        d = await self.registry.reload(new, dry_run=dry_run)
        return dict(d.as_dict(), dry_run=dry_run, config=path)

    def m_prison_list(self, req: Request):
        return self.registry.list(full=bool(param(req, "full", bool, required=False)))

    def m_prison_show(self, req: Request):
        return self.registry.get(param(req, "name")).details()

    def m_prison_ps(self, req: Request):
        prison = self.registry.get(param(req, "name"))
        return {"name": prison.spec.name, "jid": prison.jid, "processes": procinfo.processes(prison.pids())}

    def m_prison_which(self, req: Request):
        pid = param(req, "pid", int)
        if not os.path.exists(f"/proc/{pid}"):
            raise NoSuchProcess(f"no process {pid}")
        name = self.registry.deps.cgroups.prison_of(pid)
        prison = self.registry.prisons.get(name) if name else None
        return {"pid": pid, "prison": prison.spec.name if prison else None,
                "jid": prison.jid if prison else None}

    def m_prison_events(self, req: Request):
        """Events after id `after` (0: all kept), of one prison or all; `last_id` to go on from."""
        after = param(req, "after", int, required=False) or 0
        name = param(req, "name", str, required=False)
        if name is not None:
            self.registry.get(name)
        log = self.registry.deps.events
        return {"events": log.since(after, name), "last_id": log.last_id}

    async def m_prison_start(self, req: Request):
        return await self.registry.start(param(req, "name"))

    async def m_prison_stop(self, req: Request):
        return await self.registry.stop(param(req, "name"))

    async def m_prison_restart(self, req: Request):
        return await self.registry.restart(param(req, "name"))

    def m_prison_exec(self, req: Request):
        """What `prisonctl exec` needs to enter the prison itself, as jexec does with jail_attach."""
        prison = self.registry.get(param(req, "name"))
        if prison.state != RUNNING:
            raise StateConflict(f"prison {prison.spec.name} is not running", "not_running")
        spec = prison.spec
        launcher = prison.deps.launcher
        confined = None
        if prison.init_pid is not None:
            confined = {"jail": launcher.jail_path, "init_pid": prison.init_pid, "allow": jail_flags(spec)}
        pins = prison.deps.ns_pins(spec)
        policy = shim_policy(spec, kernel=prison.enforcement == "kernel", socket=launcher.socket_path)
        procs = prison.procs_files()
        nofile = spec.limits.nofile
        if param(req, "flat", bool, required=False):  # prisonctl's C fast path: [key, value, ...]
            flat = ["preload", self.shim_path, "env", f"{POLICY_VAR}={policy}"]
            for f in procs:
                flat += ["cgroup_procs", f]
            if nofile:
                flat += ["nofile", str(nofile)]
            for k, v in spec.exec.env:
                flat += ["env", f"{k}={v}"]
            if confined:
                flat += ["init_pid", str(prison.init_pid), "allow", confined["allow"]]
            else:
                for kind, path in pins.items():
                    flat += ["pin", f"{kind}={path}"]
            return flat
        return {"jid": prison.jid, "name": spec.name, "cgroup_procs": procs, "nofile": nofile,
                "confined": confined, "namespaces": pins,
                "preload": self.shim_path, "env": dict(spec.exec.env), "policy": {POLICY_VAR: policy}}
