"""A host in memory, for the engine's unit tests (as Supervisor's DummyProcess, httpx's
MockTransport): cgroups whose processes are a set, aliases in a dict, and a launcher whose
prisons' inits answer as the real one does (hello, spawn, the end of each child).  Signals
sent to a cgroup end its processes at once (init, as PID 1, ignores SIGTERM).  No root, no
kernel: what the engine decides is tested in milliseconds; that the host does it is the
integration suites' job."""
from __future__ import annotations

import asyncio
import itertools
import signal

from prisond.host.initlink import Hello
from prisond.model.errors import SystemLayerError

PIDS = itertools.count(4_100_000)  # above any real pid here: reap() finds no such child


class Host:
    """The fake host's whole state, as a test reads it."""

    def __init__(self):
        self.procs: dict[str, set[int]] = {}      # cgroup name -> pids
        self.cgroups: set[str] = set()
        self.aliases: dict[str, tuple] = {}       # prison -> addresses
        self.children: dict[int, FakeChild] = {}  # pid -> what init started
        self.inits: dict[str, FakeLink] = {}      # prison -> its running init
        self.hosts_refreshed: list[str] = []       # prisons whose /etc/hosts a reload rewrote
        self.hooks: list[tuple[str, list[str]]] = []
        self.hook_status: dict[str, int] = {}     # last argument -> exit status of a host hook
        self.exit_at_once: dict[str, int] = {}    # program -> the exit code it ends with at once
        self.fail_start: set[str] = set()         # programs whose spawn fails (as if missing)

    def kill(self, pid: int, sig: int) -> None:
        """As the kernel would, from any thread (the engine signals cgroups from worker threads):
        what the daemon hears of it comes on its event loop."""
        for procs in self.procs.values():
            procs.discard(pid)
        child = self.children.pop(pid, None)
        if child is not None:
            child.loop.call_soon_threadsafe(child.ended, sig)  # a wait status: killed by sig


class FakeCgroup:
    def __init__(self, host: Host, name: str):
        self.host, self.name = host, name
        self.path = f"/fake/cgroup/{name}"
        self.v2 = False
        self.procs_file = self.path + "/cgroup.procs"

    def exists(self) -> bool:
        return self.name in self.host.cgroups

    def create(self) -> bool:
        fresh = self.name not in self.host.cgroups
        self.host.cgroups.add(self.name)
        self.host.procs.setdefault(self.name, set())
        return fresh

    def procs(self) -> list[int]:
        return sorted(self.host.procs.get(self.name, ()))

    def count(self) -> int:
        return len(self.procs())

    def signal_all(self, sig: int) -> int:
        pids = self.procs()
        for pid in pids:
            link = self.host.inits.get(self.name)
            if link is not None and pid == link.init_pid and sig != signal.SIGKILL:
                continue  # init ignores what PID 1 ignores
            self.host.kill(pid, sig)
            if link is not None and pid == link.init_pid:
                link.loop.call_soon_threadsafe(link.die)
        return len(pids)

    def thaw(self) -> None:
        pass  # the fake freezes nothing

    def kill_all_but(self, keep: int | None) -> None:
        for pid in self.procs():
            if pid != keep:
                self.host.kill(pid, signal.SIGKILL)

    def remove(self, wait: float = 5.0) -> None:
        if self.procs():
            raise SystemLayerError(f"cgroup {self.name} is not empty", "cgroup_error")
        self.host.cgroups.discard(self.name)
        self.host.procs.pop(self.name, None)


class FakeCgroupTree:
    def __init__(self, host: Host):
        self.host = host

    def for_prison(self, name: str) -> FakeCgroup:
        return FakeCgroup(self.host, name)

    def children(self) -> list[str]:
        return sorted(self.host.cgroups)


class FakeAliases:
    def __init__(self, host: Host):
        self.host = host

    def acquire(self, prison, addrs, iface) -> None:
        self.host.aliases[prison] = tuple(addrs)

    def release(self, prison, addrs) -> list[str]:
        self.host.aliases.pop(prison, None)
        return []

    def adopt_recorded(self, records) -> list[str]:
        return []

    def release_unused(self) -> list[str]:
        return []


class FakeChild:
    def __init__(self, ident: str, pid: int):
        self.ident, self.pid = ident, pid
        self.loop = asyncio.get_running_loop()
        self.exited: asyncio.Future = self.loop.create_future()
        self.host: Host | None = None

    def signal(self, sig: int) -> bool:
        if self.host is not None and not self.exited.done():
            self.host.kill(self.pid, sig)
        return True

    def ended(self, status: int) -> None:
        if not self.exited.done():
            self.exited.set_result(status)

    def exit(self, code: int) -> None:
        """The process ends by itself with this exit code."""
        assert self.host is not None
        for procs in self.host.procs.values():
            procs.discard(self.pid)
        self.host.children.pop(self.pid, None)
        self.ended(code << 8)


class FakeLink:
    """A prison's init as the daemon sees it through its link."""

    def __init__(self, host: Host, name: str):
        self.host, self.name = host, name
        self.path = f"/nonexistent/fake-init/{name}.sock"
        self.init_pid = next(PIDS)
        self.loop = asyncio.get_running_loop()
        self.connected = False
        self.on_lost = None
        self.on_log = None
        self.lost_status: int | None = None
        self._seq = 0

    async def connect(self) -> Hello:
        self.connected = True
        live = {c.ident: c for c in self.host.children.values() if c.pid in self.host.procs.get(self.name, ())}
        return Hello(self.init_pid, live, {})

    async def spawn(self, argv: list[str]) -> FakeChild:
        if argv[0] in self.host.fail_start:
            raise SystemLayerError(f"cannot start {argv[:1]}: No such file or directory", "exec_failed")
        self._seq += 1
        child = FakeChild(f"{self.name}.{self._seq}", next(PIDS))
        child.host = self.host
        self.host.children[child.pid] = child
        self.host.procs.setdefault(self.name, set()).add(child.pid)
        if argv[0] in self.host.exit_at_once:
            asyncio.get_running_loop().call_soon(child.exit, self.host.exit_at_once[argv[0]])
        return child

    async def sync(self) -> None:
        pass

    def close(self) -> None:
        self.connected = False

    def die(self) -> None:
        """init is gone (killed, out of memory): as InitLink does, its children's ends become
        errors, then on_lost."""
        self.connected = False
        self.host.inits.pop(self.name, None)
        for procs in self.host.procs.values():
            procs.discard(self.init_pid)
        for child in [c for c in self.host.children.values() if c.pid in self.host.procs.get(self.name, ())]:
            if not child.exited.done():
                child.exited.set_exception(SystemLayerError("its init is gone", "init_gone"))
        if self.on_lost:
            cb, self.on_lost = self.on_lost, None
            cb()


class FakeProc:
    """A host hook (exec.prestart, ...): ends at once with its status."""

    def __init__(self, status: int):
        self.status, self.stdout, self.stderr = status, None, None

    async def wait(self) -> int:
        return self.status


class FakeLauncher:
    def __init__(self, host: Host, init_dir: str):
        self.host = host
        self.init_dir = init_dir

    def init_socket(self, name: str) -> str:
        return f"{self.init_dir}/{name}.sock"

    def forget_inits(self, keep: set[str]) -> None:
        pass

    def forget_hosts(self, keep: set[str]) -> None:
        self.host.hosts_kept = set(keep)

    def refresh_hosts(self, running) -> None:
        self.host.hosts_refreshed = [s.name for s in running]

    def link(self, name: str) -> FakeLink:
        link = self.host.inits.get(name)
        if link is None:
            raise SystemLayerError(f"prison {name}: its init is gone", "init_gone")
        return link

    async def start_init(self, spec, procs_files) -> FakeLink:
        link = FakeLink(self.host, spec.name)
        self.host.procs.setdefault(spec.name, set()).add(link.init_pid)
        self.host.inits[spec.name] = link
        return link

    async def spawn_in(self, link: FakeLink, spec, cmd, kernel: bool) -> FakeChild:
        return await link.spawn(list(cmd.argv))

    async def spawn_host(self, spec, cmd) -> FakeProc:
        self.host.hooks.append((spec.name, list(cmd.argv)))
        return FakeProc(self.host.hook_status.get(cmd.argv[-1], 0))
