"""The control methods: a request and the caller's credentials in, a result or a PrisonError out.

Who may do what (peer.py judges the caller once per connection): root and members of the
control group (daemon.control_group, default prisond) may change things and run commands in
prisons; any other local user may read (health, list, show, ...) unless daemon.public_read
is false; a process inside a prison (root included), and any caller the daemon cannot prove
to be outside every prison, may only ask what its shim asks about its own prison.

Nothing a request says makes the daemon read a file or run a host command: reload re-reads the
daemon's own configuration file, and exec runs the command inside the prison, through the
prison's init.  Root in an unconfined prison is root of the host, so only root may exec there.
"""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prisond.model.config import Config, load_file
from prisond.model.errors import NoSuchProcess, PermissionDenied, ProtocolError
from prisond.host.initlink import Child, SpawnRequest, wait_status
from prisond.model.contract import MAX_ARGS, SERVICE_PATH
from prisond.model.metrics import exposition
from prisond.model.policy import prison_env
from prisond.model.protocol import JAILED_OK, READ_ONLY, SESSION_METHODS, VERSION, Request, param
from prisond.engine.registry import LIST_INLINE, Registry
from prisond.engine.seams import Events, Output



@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # supplementary groups
    prison: str | None = None     # None: proved to be outside every prison; "" a prison not known


@dataclass(frozen=True)
class Access:
    """Who may change things: root and the members of `gid` (None: root only)."""
    gid: int | None = None
    public_read: bool = True

    def operator(self, peer: Peer) -> bool:
        return peer.uid == 0 or (self.gid is not None and (peer.gid == self.gid or self.gid in peer.groups))


class Api:
    def __init__(self, registry: Registry, shim_path: str, *, status=lambda: "ready", access: Access = Access(),
                 public_socket: str | None = None, prison_of: Callable[[int], str | None] = lambda pid: None,
                 events: Events | None = None, output: Output | None = None,
                 read_config: Callable[[], Config] | None = None):
        self.registry = registry
        # the daemon's file, read again (model/configfile.py: only the changed prisons parsed)
        self.read_config = read_config or (lambda: load_file(self.registry.config.source))
        self.event_log = events  # (engine/events.py)
        self.output = output  # where service output goes (host/output.py)
        self.prison_of = prison_of  # the prison whose cgroup holds a pid (host/cgroup.py)
        self.shim_path = shim_path
        self.status = status
        self.access = access
        self.public_socket = public_socket  # what the shim of exec'd processes asks
        self.methods: dict[str, Callable[[Request], Any]] = {
            "daemon.health": self.health, "daemon.reload": self.reload, "daemon.metrics": self.metrics,
            "prison.list": self.list, "prison.show": self.show, "prison.ps": self.ps,
            "prison.which": self.which, "prison.events": self.events, "prison.logs": self.logs,
            "prison.start": self.start, "prison.stop": self.stop, "prison.restart": self.restart,
        }  # proc.status and prison.exec take the caller too (handle)

    def handle(self, req: Request, peer: Peer):
        """The result; for a method that waits (start, stop, reload) a coroutine; for exec an
        ExecSession the control server drives."""
        jail = peer.prison
        if req.method in SESSION_METHODS:
            raise ProtocolError(f"{req.method} belongs to a running exec", "bad_request")
        if jail is not None and req.method not in JAILED_OK:
            raise PermissionDenied(f"{req.method}: refused to a process in a prison")
        if jail is None and not self.access.operator(peer):
            if req.method not in READ_ONLY:
                raise PermissionDenied(f"{req.method} needs root or the control group (you are uid {peer.uid})")
            if not self.access.public_read:
                raise PermissionDenied(f"reading needs root or the control group (you are uid {peer.uid})")
        if req.method == "proc.status":
            return self.proc_status(req, jail)
        if req.method == "prison.exec":
            return self.exec(req, peer)
        return self.methods[req.method](req)

    def proc_status(self, req: Request, jail: str | None):
        """The lines a jailed process's /proc/PID/status ends with (PID as the asker sees it):
        FreeBSD's status names the jail.  Another prison's process does not exist for a prison."""
        pid = param(req, "pid", int)
        prisons = self.registry.prisons
        if jail is None:  # the host: any process
            if not os.path.exists(f"/proc/{pid}"):
                raise NoSuchProcess(f"no process {pid}")
            prison = prisons.get(self.prison_of(pid) or "")
        else:
            prison = prisons.get(jail)
            if prison is None or prison.view.host_pid(pid) is None:
                raise NoSuchProcess(f"no process {pid} in this prison")
        if prison is None:
            return {"text": "Prison:\t-\n"}
        spec = prison.spec
        return {"text": f"Prison:\t{spec.name}\nJID:\t{prison.jid}\nHostname:\t{spec.hostname}\n"}

    def health(self, req: Request):
        trouble = self.registry.trouble()
        return {"status": self.status(), "pid": os.getpid(), "protocol": VERSION,
                "prisons": self.registry.counts(), "healthy": self.status() == "ready" and not trouble,
                "trouble": trouble}

    def logs(self, req: Request):
        """Where one prison's service output is: the journal (its PRISON= field) or its file
        and the rotated ones; prisonctl reads it there."""
        prison = self.registry.get(param(req, "name"))
        where = self.output.where(prison.spec.name) if self.output else {}
        return {"name": prison.spec.name, **where}

    def metrics(self, req: Request):
        """Prometheus's text exposition of every prison's figures (model/metrics.py)."""
        return {"text": exposition(self.registry.list(full=True), daemon_up=self.status() == "ready")}

    async def reload(self, req: Request):
        if "config" in req.params:
            raise ProtocolError("daemon.reload takes no file: it reads the daemon's own configuration "
                                f"({self.registry.config.source})", "bad_request")
        dry_run = bool(param(req, "dry_run", bool, required=False))
        keep = bool(param(req, "keep_processes", bool, required=False))
        path = self.registry.config.source
        # ConfigError: the running configuration stays.  In a thread: a file of 10,000 prisons
        # read whole takes a second and more, and the loop answers everyone else meanwhile.
        new = await asyncio.to_thread(self.read_config)
        plan = await self.registry.reload(new, dry_run=dry_run, keep_processes=keep)
        return dict(plan, dry_run=dry_run, config=path)

    def list(self, req: Request):
        full = bool(param(req, "full", bool, required=False))
        stale = [] if full else self.registry.stale_briefs()
        if len(stale) > LIST_INLINE:  # many figures to read: off the loop (registry.read_briefs)
            return self._list_after(stale)
        return self.registry.list(full)

    async def _list_after(self, stale: Sequence) -> Sequence[dict]:
        await self.registry.read_briefs(stale)
        return self.registry.list()

    def show(self, req: Request):
        return self.registry.get(param(req, "name")).view.details()

    def ps(self, req: Request):
        prison = self.registry.get(param(req, "name"))
        # show's look at the processes, kept as long (view.py): any reader may ask, as often as it likes
        details = prison.view.details()
        if asyncio.iscoroutine(details):
            return self._ps_after(prison.spec.name, prison.jid, details)
        return {"name": prison.spec.name, "jid": prison.jid, "processes": details["processes"]}

    @staticmethod
    async def _ps_after(name: str, jid: int, details) -> dict:
        return {"name": name, "jid": jid, "processes": (await details)["processes"]}

    def which(self, req: Request):
        pid = param(req, "pid", int)
        if not os.path.exists(f"/proc/{pid}"):
            raise NoSuchProcess(f"no process {pid}")
        name = self.prison_of(pid)
        prison = self.registry.prisons.get(name) if name else None
        return {"pid": pid, "prison": prison.spec.name if prison else None,
                "jid": prison.jid if prison else None}

    def events(self, req: Request):
        """Events after id `after` (0: all kept), of one prison or all; `last_id` to go on from."""
        after = param(req, "after", int, required=False) or 0
        name = param(req, "name", str, required=False)
        if name is not None:
            name = self.registry.get(name).spec.name  # a JID names it too
        log = self.event_log
        if log is None:
            return {"events": [], "last_id": 0}
        return {"events": log.since(after, name), "last_id": log.last_id}

    async def start(self, req: Request):
        return await self.registry.start(param(req, "name"))

    async def stop(self, req: Request):
        return await self.registry.stop(param(req, "name"))

    async def restart(self, req: Request):
        return await self.registry.restart(param(req, "name"))

    def exec(self, req: Request, peer: Peer) -> ExecSession:
        """jexec: a command in the prison, started by its init; see ExecSession."""
        prison = self.registry.get(param(req, "name"))
        if not prison.spec.confined and peer.uid != 0:
            raise PermissionDenied(f"exec into prison {prison.spec.name} needs root: it is not confined (path:), "
                                   "so its root and its users are the host's")
        argv = [_text(a) for a in param(req, "argv", list, required=False) or []]
        if len(argv) > MAX_ARGS or not all(a and "\0" not in a for a in argv):
            raise ProtocolError("'argv' must be a list of non-empty strings", "bad_request")
        env = {k: _text(v) for k, v in (param(req, "env", dict, required=False) or {}).items()}
        if not all(k and "=" not in k and "\0" not in k + v for k, v in env.items()):
            raise ProtocolError("'env' must map names to strings", "bad_request")
        login = bool(param(req, "login", bool, required=False))
        keep = bool(param(req, "keep_env", bool, required=False)) and not login
        tty = bool(param(req, "tty", bool, required=False))
        user = param(req, "user", str, required=False)
        env = exec_env(env, keep=keep, login=login)
        env = prison_env(prison.spec, self.shim_path, env, kernel=prison.enforcement == "kernel",
                         socket=self.public_socket)
        spawn = SpawnRequest(argv=argv, env=env, user=user, login=login, identity=not keep or user is not None,
                             nofile=prison.spec.limits.nofile, tty=tty, stdio="null" if tty else "fds",
                             rows=_dim(req, "rows"), cols=_dim(req, "cols"))
        return ExecSession(prison, spawn)


KEPT_ENV = ("TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ")  # and LC_*


def exec_env(caller: dict[str, str], *, keep: bool, login: bool) -> dict[str, str]:
    """What of the caller's environment an exec'd command gets.  By default the terminal's type
    and the locale only (with the service PATH): an operator's environment (tokens, keys, the
    paths of its own tools) is not the prison's to read; -E keeps it all, as jexec does;
    -l (jexec -l) keeps only TERM.  Pure."""
    if keep:
        return dict(caller)
    names = ("TERM",) if login else KEPT_ENV
    env = {k: v for k, v in caller.items() if k in names or (not login and k.startswith("LC_"))}
    env["PATH"] = SERVICE_PATH
    return env


def _text(value) -> str:
    """An argument or environment value: a string, or {"b": BASE64} for bytes that are not
    UTF-8 (kept as they are through surrogateescape, as Python keeps argv)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("b"), str):
        import base64
        import binascii
        try:
            return base64.b64decode(value["b"], validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            pass
    raise ProtocolError("argv and env hold strings, or {\"b\": base64} for bytes", "bad_request")


def _dim(req: Request, key: str) -> int:
    n = param(req, key, int, required=False) or 0
    return n if 0 < n < 65536 else 0


class ExecSession:
    """One `prisonctl exec`: the process starts, the client gets the other ends of its stdio
    (the terminal's master, or three pipes) with the first reply, may signal it while it runs
    (exec.signal), and gets its end as the second reply.  If the client goes away first, the
    process gets SIGHUP, as when a terminal hangs up: from init, through the lifeline, even if
    the daemon went away meanwhile."""

    def __init__(self, prison, spawn: SpawnRequest):
        self.prison = prison
        self.spawn = spawn
        self.child: Child | None = None

    async def run(self, started) -> dict:
        """started(result, fds) sends the first reply with the descriptors (awaitable): the
        command's terminal's master, or the other ends of its stdin, stdout and stderr; then a
        lifeline, whose closing (the client gone, however) makes init hang the command up."""
        mine, theirs = [], []
        try:
            if not self.spawn.tty:
                for _ in range(3):
                    r, w = os.pipe2(os.O_CLOEXEC)
                    mine.append(r)
                    theirs.append(w)
                mine[0], theirs[0] = theirs[0], mine[0]  # stdin: the client writes, the command reads
            r, w = os.pipe2(os.O_CLOEXEC)
            theirs.append(r)
            life = w
            mine.append(life)
            self.spawn.lifeline = True
            child, master = await self.prison.exec(self.spawn, theirs)
            self.child = child
            if master is not None:
                mine = [master, life]
            for fd in theirs:
                os.close(fd)
            theirs = []
            await started({"pid": child.pid, "tty": self.spawn.tty}, mine)
        finally:
            for fd in mine + theirs:
                os.close(fd)
        return wait_status(await child.exited)

    def request(self, req: Request):
        """What the client may ask while the command runs."""
        if req.method == "exec.signal":
            sig = param(req, "signal", int)
            if not 0 < sig < signal.NSIG:
                raise ProtocolError(f"no signal {sig}", "bad_request")
            return {"sent": bool(self.child and self.child.signal(sig))}
        raise ProtocolError(f"{req.method}: not while an exec runs", "bad_request")
