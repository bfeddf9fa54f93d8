"""One prison at run time: its JID and state, and the start and stop sequences of jail(8).

Start: exec.prestart (host), addresses, cgroup, exec.start (inside), exec.poststart (host).
Stop:  exec.prestop (host), exec.stop (inside), SIGTERM to all, wait stop.timeout, SIGKILL
       the rest, remove the cgroup, exec.poststop (host), remove the addresses it added.
A start that fails anywhere undoes what it did, so a failed prison holds nothing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from prisond.engine import seams
from prisond.host import procinfo
from prisond.host.looker import Lookers
from prisond.host.sockinfo import SocketBook
from prisond.model.config import Command, PrisonSpec
from prisond.model.errors import PrisonError, StateConflict, SystemLayerError
from prisond.host.initlink import Child, Hello, InitLink, SpawnRequest, status_text
from prisond.host.launcher import wait_host_command
from prisond.engine.servicelog import ServiceLog
from prisond.engine.view import PrisonView
from prisond.engine.tasks import spawn
from prisond.model.restart import RestartBudget, wants_restart
from prisond.model.states import EVENT_OF, UP, State, check_move

KILL_WAIT = 5.0  # after SIGKILL, how long the last processes get to vanish
HOOK_TIMEOUT = 60.0  # exec.prestart / poststart / prestop / poststop


@dataclass
class Deps:
    """What a prison needs from the daemon, passed in."""
    cgroups: seams.Cgroups
    aliases: seams.Aliases
    launcher: seams.Inits
    kernel: seams.KernelLayer | None = None  # where the host can enforce (kernel/)
    kernel_why: str = ""                      # why it can, or why not
    resources: seams.Resources | None = None  # limits and accounting (None: neither)
    events: seams.Events | None = None
    output: seams.Output | None = None        # where service output goes (None: the daemon's log only)
    sockets: SocketBook | None = None         # what show found of the prisons' sockets (host/sockinfo.py)
    looker: Lookers | None = None             # who looks at a prison's processes for show (None: the loop itself)

    def enforcement(self, spec: PrisonSpec) -> tuple[str, str]:
        """The level a prison gets, and why: asked for, or the host's default."""
        if spec.enforce == "shim":
            return "shim", "asked for in the configuration"
        if spec.enforce == "kernel":
            return "kernel", "asked for in the configuration"
        if self.kernel is not None:
            return "kernel", f"default: {self.kernel_why}"
        return "shim", f"default: kernel enforcement unavailable ({self.kernel_why})"


class Prison:
    def __init__(self, spec: PrisonSpec, jid: int, deps: Deps, on_change: Callable[[Prison], None] | None = None):
        self.spec = spec
        self.jid = jid
        self.deps = deps
        self.state = State.STOPPED
        self.on_change = on_change  # after each change of state: the registry saves the record
        self.reason: str | None = None
        self.started_at: float | None = None
        self.cgroup: seams.Cgroup = deps.cgroups.for_prison(spec.name)
        self.service: Child | None = None
        self.service_status: str | None = None
        self.link: InitLink | None = None  # the prison's init: the way in
        self.logs: ServiceLog | None = None
        self.lock = asyncio.Lock()
        self.log = logging.LoggerAdapter(logging.getLogger("prisond.engine.prison"), {"prison": spec.name})
        self._holds_aliases = False
        self.enforcement, self.enforcement_why = deps.enforcement(spec)
        self.cgroup_id: int | None = None  # set while the kernel layer enforces this prison
        self.init_pid: int | None = None  # the prison's init (host pid; PID 1 of a confined prison)
        self.uts_ns: tuple[int, int] | None = None  # its UTS namespace (st_dev, st_ino), read once its init is up
        self.res = deps.resources.for_prison(spec.name, self.cgroup.path) if deps.resources else None
        self.view = PrisonView(self)  # what list, show, top and proc.status see: figures, caches
        self.budget = RestartBudget(spec.restart)  # the restarts it had lately (restart.burst)
        self.service_since = 0.0  # monotonic: when the service (or the prison) last started
        self._again: asyncio.Task | None = None  # a restart waiting for its delay
        self.restarts = 0  # of its service or of the whole prison, by the restart policy

    # ------------------------------------------------------------ start

    async def start(self) -> None:
        async with self.lock:
            if self.state in (State.RUNNING, State.STARTING, State.EXITED):
                raise StateConflict(f"prison {self.spec.name} is already running", "already_running")
            if self.state in (State.STOPPED, State.FAILED):  # started by hand: restarts counted afresh
                self.budget = RestartBudget(self.spec.restart)
            self.change_state(State.STARTING, detail=f"jid {self.jid}, "
                              + (", ".join(map(str, self.spec.addresses)) or "no addresses"))
            try:
                await self._start()
            except PrisonError as exc:
                await self._teardown(graceful=False)
                self.change_state(State.FAILED, exc.message)
                raise
            except Exception as exc:  # a bug must still leave nothing half-made
                self.log.exception("failed to start")
                await self._teardown(graceful=False)
                self.change_state(State.FAILED, f"internal error: {exc}")
                raise PrisonError(f"prison {self.spec.name} failed to start: {exc}") from exc
            self.started_at, self.service_since = time.time(), time.monotonic()
            self.view.refresh()  # figures: fresh from now
            self.change_state(State.RUNNING)
            ended = _ended(self.service)
            if ended is not None:  # it ended before the prison was up: its watcher saw STARTING
                self._service_ended(ended)

    async def _start(self) -> None:
        spec = self.spec
        await self._host_hook("prestart", spec.exec.prestart)
        await asyncio.to_thread(self.deps.aliases.acquire, spec.name, spec.addresses, spec.interface)
        self._holds_aliases = True
        if self.cgroup.exists() and self.cgroup.procs():
            raise SystemLayerError(f"cgroup {self.cgroup.path} already holds processes", "cgroup_error")
        if spec.limits.nofile:
            import resource
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            if hard != resource.RLIM_INFINITY and spec.limits.nofile > hard:
                raise SystemLayerError(f"limits.nofile {spec.limits.nofile} is above the daemon's own hard limit "
                                       f"{hard} (LimitNOFILE= in its unit)", "limit_unavailable")
        if not self.res and spec.limits.controllers():
            raise SystemLayerError("limits: this daemon has no cgroup controllers to enforce them", "limit_unavailable")
        if self.enforcement == "kernel" and self.deps.kernel is None:
            raise SystemLayerError(f"enforce: kernel was asked for, but this host cannot: {self.deps.kernel_why}",
                                   "kernel_unavailable")
        self.cgroup_id = await asyncio.to_thread(self._make_cgroups, spec)
        await self._connect(await self.deps.launcher.start_init(spec, self.procs_files()))
        if spec.confined:
            self.log.info("confined in %s (init: pid %d)", spec.path, self.init_pid)
        if spec.exec.start:
            self.service = await self._spawn(spec.exec.start)
            self.service_status = "running"
            self.log.info("exec.start: pid %s: %s", self.service.pid or "-", " ".join(spec.exec.start.argv))
            spawn(self._watch_service(self.service), f"service:{spec.name}")
        await self._host_hook("poststart", spec.exec.poststart)

    def _make_cgroups(self, spec: PrisonSpec) -> int | None:
        """The prison's cgroups, its limits and its kernel programs, in one trip to a thread
        (each trip costs the loop a hand-over; 10,000 prisons start).  A cgroup made just now
        holds the kernel's defaults and no programs: neither is written or asked again.  The
        kernel layer's id of the cgroup, or None."""
        fresh = self.cgroup.create()
        if self.res:
            self.res.apply(spec.limits, self.res.create() and fresh)
        if self.enforcement == "kernel" and self.deps.kernel is not None:
            return self.deps.kernel.enforce(self.cgroup.path, spec, fresh)
        return None

    async def _connect(self, link: InitLink) -> Hello:
        """Talk to the prison's init: its pid, what it started that still runs, its services'
        output from now on."""
        self.link = link
        self.logs = self._lines()
        link.on_log = self.logs.feed
        hello = await link.connect()
        self.init_pid = hello.init_pid
        try:  # read now, while the init is known to be there (not at each control connection)
            st = os.stat(f"/proc/{hello.init_pid}/ns/uts")
            self.uts_ns = (st.st_dev, st.st_ino)
        except OSError:
            self.uts_ns = None
        link.on_lost = self._init_lost
        return hello

    def _init_lost(self) -> None:
        """The prison's init is gone (killed, out of memory): nothing more can start in the
        prison.  It is ended, and started again whole unless its restart policy is no."""
        if self.state in UP:
            spawn(self._after_init_lost(), f"init-lost:{self.spec.name}")

    async def _after_init_lost(self) -> None:
        async with self.lock:
            if self.state not in UP or (self.link is not None and self.link.connected):
                return
            self._cancel_again()
            oom = await asyncio.to_thread(self._oom_killed)  # the cgroup's files: off the loop
            why = "its init is gone" + (" (out of memory)" if oom else "")
            await self._teardown(graceful=False)
            self.started_at = None
            if self.spec.restart.policy == "no":
                self.change_state(State.FAILED, why)
                return
            delay = self.budget.next_delay(time.monotonic(), time.monotonic() - self.service_since)
            if delay is None:
                self.change_state(State.FAILED, f"{why}; {self.budget.limit_text()}")
                return
            self.change_state(State.RESTARTING, why, detail=f"the whole prison again in {delay:g}s")
            self._again = spawn(self._start_again(delay), f"again:{self.spec.name}")

    async def _start_again(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.state is State.RESTARTING:
            self.restarts += 1
            try:
                await self.start()
            except PrisonError:
                pass  # failed, with its reason

    def _oom_killed(self) -> bool:
        try:
            return bool(self.res and (self.res.stats().get("oom_kills") or 0) > 0)
        except PrisonError:
            return False

    def _cancel_again(self) -> None:
        if self._again is not None and self._again is not asyncio.current_task():
            self._again.cancel()
        self._again = None

    async def exec(self, req: SpawnRequest, fds: list[int]) -> tuple[Child, int | None]:
        """A process in the running prison, started by its init (prisonctl exec); also while
        its service is down (exited, or waiting to start again)."""
        if self.state not in UP or self.link is None or not self.link.connected:
            raise StateConflict(f"prison {self.spec.name} is not running", "not_running")
        return await self.link.spawn(req, fds)

    def procs_files(self) -> list[str]:
        """Where a process joins the prison: its cgroup, and on v1 hosts its controllers'."""
        return [self.cgroup.procs_file] + (self.res.procs_files() if self.res else [])

    def change_state(self, new: State, reason: str | None = None, detail: str = "", kind: str | None = None) -> None:
        """The one way a prison's state changes: the move checked against the table
        (model/states.py), logged ("starting (jid 3, 127.0.2.1)", "failed: why"), its event
        recorded (started, failed, stopped; kind: another, such as adopted), the record saved."""
        check_move(self.state, new)
        self.state, self.reason = new, reason
        level = logging.ERROR if new is State.FAILED else logging.WARNING if reason else logging.INFO
        self.log.log(level, "%s%s%s", new, f" ({detail})" if detail else "", f": {reason}" if reason else "")
        kind = kind or EVENT_OF.get(new)
        if kind:
            self.event(kind, reason or detail or (f"jid {self.jid}" if new is State.RUNNING else ""))
        if self.on_change is not None:
            self.on_change(self)

    def event(self, kind: str, text: str, **data) -> None:
        if self.deps.events is not None:
            self.deps.events.add(self.spec.name, kind, text, **data)

    async def _spawn(self, cmd: Command) -> Child:
        if self.link is None:
            raise StateConflict(f"prison {self.spec.name} has no init", "not_running")
        return await self.deps.launcher.spawn_in(self.link, self.spec, cmd, self.enforcement == "kernel")

    async def _watch_service(self, child: Child) -> None:
        try:
            status: int | None = await child.exited
        except PrisonError:
            status = None  # its init went first: _init_lost decides
        if self.service is not child:
            return
        self.service_status = status_text(status) if status is not None else "gone with the prison's init"
        if status is not None and self.state is State.RUNNING:
            self._service_ended(status)

    def _service_ended(self, status: int | None) -> None:
        """The service ended (status None: unknown, it ended while no daemon watched): exited,
        or a restart after a delay, or failed once restarts hit their limit."""
        text = status_text(status) if status is not None else "ended while no daemon watched"
        clean = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if not wants_restart(self.spec.restart, status if status is not None else 1):
            self.change_state(State.EXITED, None if clean else f"exec.start {text}", detail=f"exec.start {text}")
            return
        delay = self.budget.next_delay(time.monotonic(), time.monotonic() - self.service_since)
        if delay is None:
            self._again = spawn(self._fail(f"exec.start {text}; {self.budget.limit_text()}"), f"fail:{self.spec.name}")
            return
        # a clean end restarted by `always` is the normal course, not trouble (health stays 0)
        self.change_state(State.RESTARTING, None if clean else f"exec.start {text}",
                          detail=f"exec.start {text}: again in {delay:g}s" if clean else f"again in {delay:g}s")
        self._again = spawn(self._service_again(delay), f"again:{self.spec.name}")

    async def _fail(self, why: str) -> None:
        """Restarts hit their limit: the prison ends, failed with why (nothing is left)."""
        async with self.lock:
            if self.state not in UP:
                return
            await self._teardown(graceful=False)
            self.started_at = None
            self.change_state(State.FAILED, why)

    async def _service_again(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:
            start = self.spec.exec.start
            if self.state is not State.RESTARTING or start is None or self.link is None or not self.link.connected:
                return
            old = self.service.pid if self.service is not None else None
            if old:  # what the old one left in its session (its workers): gone first, as systemd does
                left = await asyncio.to_thread(procinfo.end_session, old, self.pids())
                if left:
                    self.log.info("ended %d process(es) the service left: %s", len(left), " ".join(map(str, left)))
            try:
                child = await self._spawn(start)
            except PrisonError as exc:
                self.log.error("exec.start: %s", exc.message)
                self._service_ended(None)
                return
            self.service, self.service_status, self.service_since = child, "running", time.monotonic()
            self.restarts += 1
            self.change_state(State.RUNNING, detail=f"exec.start again: pid {child.pid or '-'}", kind="restarted")
            spawn(self._watch_service(child), f"service:{self.spec.name}")

    def _lines(self, label: str = "") -> ServiceLog:
        """The prison's output, line by line, to where the host keeps it (journal or file) and,
        unless that is the journal, to the daemon's log."""
        sink, echo = self.deps.output.sink(self.spec.name, self.jid) if self.deps.output else (None, True)
        return ServiceLog(self.spec.name, label=label, sink=sink, echo=echo)

    async def _host_hook(self, hook: str, cmd: Command | None) -> None:
        if cmd is None:
            return
        proc = await self.deps.launcher.spawn_host(self.spec, cmd)
        lines = self._lines(label=f"exec.{hook}")  # without consolelog
        streams = {"out": proc.stdout, "err": proc.stderr}
        readers = [asyncio.ensure_future(_relay(s, lines, name)) for name, s in streams.items() if s is not None]
        try:
            rc = await wait_host_command(proc, HOOK_TIMEOUT)
            if readers:  # what it wrote before it ended (a child of its holding the pipe: cut short)
                await asyncio.wait(readers, timeout=1)
        finally:
            for reader in readers:
                reader.cancel()
            lines.close()
        if rc != 0:
            why = "timed out" if rc is None else f"exited with status {rc}"
            raise SystemLayerError(f"exec.{hook} {why}", "exec_failed")

    # ------------------------------------------------------------ adopt, change in place

    def record(self) -> dict:
        """What a later daemon needs to adopt this prison."""
        svc = self.service if self.state in UP else None
        return {"jid": self.jid, "state": self.state, "started_at": self.started_at,
                "service_id": svc.ident if svc else None, "service_pid": svc.pid if svc else None,
                "service_status": self.service_status, "reason": self.reason, "enforcement": self.enforcement}

    async def adopt(self, rec: dict) -> None:
        """Take over a prison a previous daemon left running: its processes stay as they are."""
        async with self.lock:
            spec = self.spec
            await asyncio.to_thread(self.deps.aliases.acquire, spec.name, spec.addresses, spec.interface)
            self._holds_aliases = True
            if await asyncio.to_thread(self._settle, spec):
                self.log.info("its processes moved to the memory cgroup this daemon's memory_accounting gives")
            if self.enforcement == "kernel":
                if self.deps.kernel is None:
                    raise SystemLayerError("its kernel enforcement cannot be re-established: "
                                           f"{self.deps.kernel_why}", "kernel_unavailable")
                self.cgroup_id = await asyncio.to_thread(self.deps.kernel.enforce, self.cgroup.path, spec)
            hello = await self._connect(self.deps.launcher.link(spec.name))
            self.started_at = rec.get("started_at")
            ident = rec.get("service_id")
            if spec.exec.start and ident in hello.live:
                self.service, self.service_status = hello.live.pop(ident), "running (adopted)"
                spawn(self._watch_service(self.service), f"service:{spec.name}")
            elif spec.exec.start and ident in hello.exited:
                self.service_status = f"{status_text(hello.exited[ident])} (while no daemon watched)"
            elif spec.exec.start:
                self.service_status = "exited (while no daemon watched)"
            self.service_since = time.monotonic()
            self.change_state(State.RUNNING, detail=f"adopted: jid {self.jid}, {self.cgroup.count()} processes, "
                              f"{self.enforcement} enforcement", kind="adopted")
            if spec.exec.start and self.service is None:
                if rec.get("state") == State.EXITED:  # it had ended, and the daemon before knew it
                    self.service_status = rec.get("service_status") or self.service_status
                    self.change_state(State.EXITED, rec.get("reason"), detail="as it was")
                else:  # it ended while no daemon watched
                    self._service_ended(hello.exited.get(ident) if ident else None)

    def _settle(self, spec: PrisonSpec) -> bool:
        """An adopted prison's cgroups made this daemon's, in one trip to a thread: thawed (a
        daemon killed while it had the prison frozen left it so); its v1 cgroups made; if a
        daemon with another memory_accounting started it, its processes moved into the cgroups
        this one reads and limits (a former own memory cgroup goes at its stop; what memory
        they hold stays charged where it was); its limits written.  Whether they moved."""
        self.cgroup.thaw()
        if self.res is None:
            return False
        self.res.create()
        pids = self.cgroup.procs()  # the first and last: a move cut short by a kill moved a prefix
        moved = any(self.res.misplaced(pid) for pid in {*pids[:1], *pids[-1:]})
        if moved:
            self.cgroup.move_into(self.res.procs_files())
        self.res.apply(spec.limits)
        return moved

    async def change_in_place(self, new: PrisonSpec) -> None:
        """A reload that changed only what a running prison can take without a restart: the
        addresses of a kernel prison (aliases and the kernel policy change) and the limits
        (written to its cgroups).  The processes stay."""
        async with self.lock:
            old = self.spec
            if new.limits != old.limits and self.res is not None:  # changes_in_place made sure of it
                await asyncio.to_thread(self.res.apply, new.limits)
                if new.limits.nofile != old.limits.nofile:
                    await asyncio.to_thread(self._set_nofile, new.limits.nofile)
                self.spec = dataclasses.replace(self.spec, limits=new.limits)
                self.log.info("limits now %s (processes kept)", _limits_text(new.limits))
            if new.addresses != old.addresses and self.deps.kernel is not None:  # the same
                await asyncio.to_thread(self.deps.aliases.acquire, new.name, new.addresses, new.interface)
                await asyncio.to_thread(self.deps.kernel.update, self.cgroup.path, new)
                kept = {a.ip for a in new.addresses}
                gone = tuple(a for a in old.addresses if a.ip not in kept)
                await asyncio.to_thread(self.deps.aliases.release, old.name, gone)
                self.log.info("addresses now %s (processes kept)", ", ".join(map(str, new.addresses)) or "none")
            if new.restart != old.restart:
                self.budget = RestartBudget(new.restart)
            self.spec = new

    def _set_nofile(self, n: int | None) -> None:
        """RLIMIT_NOFILE of every running process of the prison (no limit: the daemon's own).
        Raising a hard limit needs CAP_SYS_RESOURCE: without it, only new processes get it."""
        import resource
        value = (n, n) if n else resource.getrlimit(resource.RLIMIT_NOFILE)
        refused = 0
        for pid in self.cgroup.procs():
            try:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, value)
            except ProcessLookupError:
                pass
            except (PermissionError, ValueError):
                refused += 1
        if refused:
            self.log.warning("limits.nofile: %d running process(es) keep their lower limit (raising it needs "
                             "CAP_SYS_RESOURCE); new processes get %s", refused, value[1])

    def changes_in_place(self, new: PrisonSpec, keep_processes: bool = False) -> bool:
        """Can the running prison take new without a restart?  Limits and the restart policy
        always; addresses only when asked to keep the processes (jail -m) and the kernel layer
        holds the prison: by default an address change restarts it, so that no server stays
        bound to an address the prison no longer has."""
        if self.state not in UP:
            return False
        same_rest = dataclasses.replace(self.spec, ip4=(), ip6=(), limits=new.limits, restart=new.restart) == \
            dataclasses.replace(new, ip4=(), ip6=())
        addresses_ok = new.addresses == self.spec.addresses or (
            keep_processes and self.enforcement == "kernel" and self.cgroup_id is not None
            and self.deps.enforcement(new)[0] == "kernel")
        limits_ok = new.limits == self.spec.limits or (self.res is not None and not self.res.missing(new.limits))
        return same_rest and addresses_ok and limits_ok

    # ------------------------------------------------------------ stop

    async def stop(self) -> None:
        async with self.lock:
            if self.state not in UP | {State.FAILED}:
                raise StateConflict(f"prison {self.spec.name} is not running", "not_running")
            self._cancel_again()
            if self.state in UP:
                self.change_state(State.STOPPING)
                errors = await self._teardown(graceful=True)
            else:
                errors = []  # a failed start left nothing
            self.started_at = None
            self.change_state(State.STOPPED, "; ".join(errors) or None)

    async def _teardown(self, graceful: bool) -> list[str]:
        """Everything the start made, undone; returns what could not be (nothing raises)."""
        errors: list[str] = []
        spec = self.spec
        if graceful:
            try:
                await self._host_hook("prestop", spec.exec.prestop)
            except PrisonError as exc:
                errors.append(exc.message)
            if spec.exec.stop and self.link is not None and self.link.connected:
                try:
                    child = await self._spawn(spec.exec.stop)
                    try:
                        await asyncio.wait_for(asyncio.shield(child.exited), spec.stop_timeout)
                    except TimeoutError:
                        child.signal(signal.SIGKILL)
                        errors.append("exec.stop timed out")
                except PrisonError as exc:
                    errors.append(exc.message)
        if self.link is not None:  # its end is the prison's end, not news
            self.link.on_lost = None
        try:
            init = await self._kill_all(spec.stop_timeout if graceful else 0.0)
            # the rest in one trip to a thread (10,000 prisons stop at once: each trip is a
            # hand-over of the loop); the addresses go there too unless exec.poststop must
            # run first, as jail(8) runs it before it removes them
            errors += await asyncio.to_thread(self._clear, init, not (graceful and spec.exec.poststop))
        except PrisonError as exc:
            errors.append(exc.message)
        if graceful:
            try:
                await self._host_hook("poststop", spec.exec.poststop)
            except PrisonError as exc:
                errors.append(exc.message)
        if self._holds_aliases:
            errors += await asyncio.to_thread(self.deps.aliases.release, spec.name, spec.addresses)
            self._holds_aliases = False
        self._disconnect()
        self.service = self.init_pid = self.uts_ns = None
        return errors

    def _clear(self, init: int | None, release: bool) -> list[str]:
        """After the kill: the init collected, the cgroups removed, and (release) the
        addresses let go; what could not be."""
        if init:
            reap(init)  # its cgroup is empty: it has ended, or ends at once
        errors: list[str] = []
        try:
            self._remove_cgroups()
        except PrisonError as exc:
            errors.append(exc.message)
        if release and self._holds_aliases:
            errors += self.deps.aliases.release(self.spec.name, self.spec.addresses)
            self._holds_aliases = False
        return errors

    def _remove_cgroups(self) -> None:
        """What _make_cgroups made, in one trip to a thread: the kernel layer steers nothing to
        the prison any more, its cgroup goes (which detaches the programs and frees their
        storage), then its v1 cgroups."""
        if self.cgroup_id is not None and self.deps.kernel is not None:
            self.deps.kernel.release(self.cgroup_id)
        self.cgroup.remove()
        self.cgroup_id = None
        if self.res:
            self.res.remove()

    def _disconnect(self) -> None:
        """The link to init and the log pipes (what is still in them is logged)."""
        if self.link is not None:
            self.link.on_lost = None
            self.link.close()
            _unlink(self.link.path)
            self.link = None
        if self.logs is not None:
            self.logs.close()
            self.logs = None
        if self.deps.output is not None:
            self.deps.output.forget(self.spec.name)

    async def _kill_all(self, grace: float) -> int | None:
        """SIGTERM to all, stop.timeout, SIGKILL to the rest, then the prison's init.  init
        ignores SIGTERM (as PID 1 does) and outlives the others, so it reaps them all and tells
        how each ended (an exec's client gets its command's true end); killing it last ends
        the prison (for a confined one, its PID namespace)."""
        cg = self.cgroup
        if not cg.exists():
            return None
        init = self.init_pid
        if grace > 0 and set(cg.procs()) - {init}:
            cg.signal_all(signal.SIGTERM)
            if not await self._wait_empty(grace, {init}):
                self.log.warning("processes left after %.1fs: sending SIGKILL", grace)
        if set(cg.procs()) - {init}:
            cg.kill_all_but(init)
            await self._wait_empty(KILL_WAIT, {init})
        if self.link is not None and self.link.connected:
            await self.link.sync()  # every end init saw is told before it goes
            self.link.lost_status = signal.SIGKILL  # whatever still runs dies of the cgroup's kill
        if cg.procs():
            cg.signal_all(signal.SIGKILL)
            if not await self._wait_empty(KILL_WAIT):
                raise SystemLayerError(f"processes of {self.spec.name} survived SIGKILL: {cg.procs()}",
                                       "cgroup_error")
        return init  # to be collected (it may take a moment: not on the loop)

    async def _wait_empty(self, timeout: float, ignore: set | frozenset = frozenset()) -> bool:
        """Until the cgroup holds no process but those in ignore.  The look comes soon at first
        (a process usually ends within milliseconds of its signal), then less and less often:
        10,000 prisons stopping at once each read their cgroup.procs every 20 ms, half a
        million reads a second that the event loop could not keep up with."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while set(self.cgroup.procs()) - ignore:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.25)
        return True

    # ------------------------------------------------------------ processes

    def pids(self) -> list[int]:
        if self.state in (State.STOPPED, State.FAILED):
            return []
        try:
            return self.cgroup.procs()
        except PrisonError:
            return []


def _limits_text(limits) -> str:
    parts = [f"{k}={v}" for k, v in dataclasses.asdict(limits).items() if v is not None]
    return ", ".join(parts) or "none"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def reap(pid: int) -> None:
    """Collect a dead init: the daemon is the subreaper of the inits it started (their starter
    exits at once).  An init an earlier daemon started is not its child: nothing to do."""
    for _ in range(100):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)


async def _relay(stream: asyncio.StreamReader, lines: ServiceLog, name: str) -> None:
    while data := await stream.read(65536):
        lines.feed(name, data)


def _ended(child: Child | None) -> int | None:
    """A child's wait status if it has ended (None: running, or none)."""
    if child is None or not child.exited.done() or child.exited.cancelled() or child.exited.exception():
        return None
    return child.exited.result()
