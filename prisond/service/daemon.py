"""prisond: the daemon.  Loads the configuration, starts the prisons, serves the control
socket; SIGHUP reloads, SIGTERM/SIGINT stop every prison and exit 0.

Errors a user can fix are one line on stderr and exit status 2 (configuration) or 1 (other).
"""
from __future__ import annotations

from typing import ClassVar

import argparse
import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor
import logging
import os
import shutil
import signal
import sys
import time

from prisond.host import sdnotify
from prisond.model import contract
from prisond import built, version as prisond_version
from prisond.service.api import Access, Api, Peer
from prisond.service.audit import AuditSocket
from prisond.host.cgroup import CgroupTree, detect_host
from prisond.model.config import Config, Limits
from prisond.model.configfile import ConfigFile
from prisond.model.metrics import exposition
from prisond.service.control import ControlServer
from prisond.service.metrics import MetricsServer
from prisond.model.errors import ConfigError, PrisonError
from prisond.engine.events import AUDIT_KINDS, CounterWatch, EventLog, RoundRobin
from prisond.host.launcher import WAITED, Launcher
from prisond.host.reaper import any_zombie, reap_orphans
from prisond.host.eventfile import EventFile
from prisond.host.output import Output, under_journal
from prisond.host.lock import DaemonLock, lock_paths
from prisond.host.net import AliasBook, Netlink
from prisond.host.peer import PeerJudge
from prisond.host.reach import closed_to_others
from prisond.host.looker import Lookers
from prisond.host.sockinfo import SocketBook
from prisond.engine.prison import Deps, Prison
from prisond.model.states import UP
from prisond.engine.registry import START_CONCURRENCY, Registry
from prisond.host.resources import Host as ResourceHost
from prisond.host.store import StateStore
from prisond.engine.tasks import spawn

DEFAULT_CONFIG = "/etc/prisond/prisond.yaml"
DEFAULT_RUNTIME = contract.RUNTIME_DIR
DEFAULT_STATE = "/var/lib/prisond"
PUBLIC = "public"  # in the runtime directory: what prisons see (the shim, their socket, events)
INIT = "init"      # in the runtime directory, root only: each prison's init socket
PRISON_SOCKET = contract.PRISON_SOCKET
JAIL_NAME = "prisonjail"
LIMIT_WATCH_INTERVAL = 1.0
WATCH_BUDGET = 250  # prisons whose counters are read per round (_watch_counters)
# landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): the ABI (the number is x86_64's and
# arm64's alike: system calls from 424 on are numbered the same everywhere)
NR_LANDLOCK_CREATE_RULESET, LANDLOCK_CREATE_RULESET_VERSION = 444, 1
EVENT_TEXT = {  # by counter
    "oom_kills": "memory limit ({limits.memory} bytes) hit: {n} process(es) killed by the OOM killer",
    "pids_refused": "process limit ({limits.pids}) hit: {n} fork(s) refused",
    "cpu_throttled": "CPU limit ({limits.cpu} CPUs) hit: throttled {n} time(s)",
    "rewritten": "kernel layer: {n} bind/connect/send call(s) coerced onto the prison's addresses",
    "denied": "kernel layer: {n} call(s) refused (foreign address, family without address, raw socket)",
    "egress_dropped": "kernel layer: {n} outgoing packet(s) with a foreign source dropped",
    "ingress_dropped": "kernel layer: {n} incoming packet(s) for a foreign address dropped",
}
SHIM_NAME = "libprisonshim.so"

log = logging.getLogger("prisond")


class _Formatter(logging.Formatter):
    """journald reads "<N>" priority prefixes on stderr; a terminal gets time and level."""

    PRIORITY: ClassVar[dict[int, int]] = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                                          logging.CRITICAL: 2}

    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        prison = getattr(record, "prison", None)
        if prison:
            msg = f"prison {prison}: {msg}"
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + self.formatException(record.exc_info)
        if self.journal:
            return f"<{self.PRIORITY.get(record.levelno, 6)}>{msg}"
        return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower():7} {msg}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries (pyroute2, asyncio) speak only of problems
    logging.getLogger("prisond").setLevel(level.upper())


def control_gid(name: str) -> int | None:
    """The control group's gid; None (root alone) when the host has no such group."""
    import grp
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        log.info("no group %s: only root may change things through the control socket", name)
        return None


def runtime_dirs(runtime_dir: str) -> tuple[str, str]:
    """The daemon's own directories under the runtime directory: (public, init).  The runtime
    directory is made if missing but never changed: public/ (0755) is what every prison may
    read and what confined prisons see, bind-mounted read-only; init/ (0700) root's alone."""
    os.makedirs(runtime_dir, mode=0o755, exist_ok=True)
    public, init = os.path.join(runtime_dir, PUBLIC), os.path.join(runtime_dir, INIT)
    for path, mode in ((public, 0o755), (init, 0o700)):
        os.makedirs(path, mode=mode, exist_ok=True)
        st = os.lstat(path)
        if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != 0:
            raise PrisonError(f"{path} is not a directory of root's", "internal")
        os.chmod(path, mode)
    closed = closed_to_others(runtime_dir)
    if closed:
        log.warning("%s is closed to other users: programs of unconfined prisons that do not run as root "
                    "cannot load the shim from %s", closed, public)
    return public, init


def install_shim(public_dir: str) -> str:
    """Copy the shim where every prison process can read it, replacing it atomically: a running
    process that has the old copy mapped must never see the file change under it."""
    src = built(SHIM_NAME)
    if not os.path.exists(src):
        raise PrisonError(f"the shim {src} is missing: was prisond installed with 'pip install'?", "internal")
    dst = os.path.join(public_dir, SHIM_NAME)
    tmp = f"{dst}.tmp.{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)
    return dst


def landlock_abi() -> int:
    """The kernel's Landlock ABI (0: none): what keeps prisons apart beyond their cgroups."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(NR_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(abi, 0)


def report_isolation(limit: int | None) -> None:
    abi = landlock_abi()
    if limit:
        abi = min(abi, limit)
    if abi >= 6:
        log.info("Landlock ABI %d: each prison's abstract unix sockets, signals and ptrace are its own", abi)
    elif abi:
        log.warning("Landlock ABI %d (before Linux 6.12): ptrace between prisons is refused, but abstract "
                    "unix sockets and signals across prisons of the same uid are not scoped", abi)
    else:
        log.warning("no Landlock in this kernel: prisons that are not confined can signal and trace each "
                    "other's processes of the same uid and reach each other's abstract unix sockets")


def raise_nofile() -> None:
    """The soft limit on open files up to the hard one: the daemon holds a connection to each
    prison's init (LimitNOFILE= in the unit sets the hard limit)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def become_subreaper() -> None:
    """The prisons' inits are started by a short-lived starter: as the subreaper, the daemon
    is their parent and collects them when a prison ends (prison.reap), whatever the host's
    PID 1 does with orphans."""
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a subreaper: stopped prisons' inits are left for PID 1 to collect")


def open_kernel_layer(layout, tree: CgroupTree):
    """The kernel layer, adopting what a previous daemon attached; (None, why) where impossible."""
    from prisond.kernel.enforce import KernelLayer, preconditions
    from prisond.kernel.syscall import KernelLayerError
    ok, why = preconditions(layout)
    if not ok:
        log.warning("kernel enforcement unavailable: %s; prisons default to the shim", why)
        return None, why
    try:
        existing = [tree.for_prison(n).path for n in tree.children()]
        return KernelLayer.open(existing), why
    except KernelLayerError as exc:
        log.warning("kernel enforcement unavailable: %s", exc.message)
        return None, f"the kernel refused the programs: {exc.message.splitlines()[0]}"


class Daemon:
    def __init__(self, config_file: ConfigFile, config: Config, args: argparse.Namespace, shim_path: str,
                 init_dir: str):
        layout = detect_host()
        if layout is None:
            raise PrisonError("no cgroup hierarchy is mounted at /sys/fs/cgroup; prisond needs one to track "
                              "prison processes (`ip netns exec` mounts a /sys without it: use "
                              "`nsenter --net=/run/netns/NAME` to run prisond in a network namespace)",
                              "cgroup_error")
        self.config = config
        self.config_file = config_file
        self.args = args
        self.store = StateStore(args.state_dir)
        self.store.ensure_dir()
        tree = CgroupTree(layout, config.daemon.cgroup_parent)
        kernel, why = (open_kernel_layer(layout, tree) if config.daemon.kernel_layer
                       else (None, "disabled by daemon.kernel_layer: false"))
        jail = built(JAIL_NAME)
        public = os.path.dirname(shim_path)
        self.event_file = EventFile(args.state_dir)
        self.events = EventLog(past=self.event_file.load(), record=self.event_file.append)
        self.netlink = Netlink()
        self.tree = tree
        self.launcher = Launcher(shim_path, jail if os.access(jail, os.X_OK) else None,
                                 os.path.join(public, PRISON_SOCKET), init_dir, args.landlock_abi,
                                 peers=lambda: self.registry.config.prisons)
        self.resources = ResourceHost(layout, config.daemon.cgroup_parent, config.daemon.memory_accounting) \
            if config.daemon.limits else None
        d = config.daemon
        self.output = Output(d.log_dir, d.log_max_bytes, d.log_keep, journal=under_journal())
        self.looker = Lookers()  # show's look at processes, in helpers it can kill (looker.py)
        self.deps = Deps(cgroups=tree, aliases=AliasBook(self.netlink, record=self.store), launcher=self.launcher,
                         kernel=kernel, kernel_why=why, resources=self.resources, events=self.events,
                         output=self.output, sockets=SocketBook(), looker=self.looker)
        self.registry = Registry(config, self.deps, self.store)
        self.status = "starting"
        gid = control_gid(config.daemon.control_group)
        self.api = Api(self.registry, shim_path, status=lambda: self.status, prison_of=tree.prison_of,
                       events=self.events, output=self.output,
                       access=Access(gid, config.daemon.public_read),
                       public_socket=os.path.join(public, PRISON_SOCKET), read_config=config_file.load)
        judge = PeerJudge(tree.prison_in, self.registry.uts_owner)

        def identify(sock) -> Peer:
            cred, prison = judge.identify(sock)
            return Peer(cred.pid, cred.uid, cred.gid, cred.groups, prison)

        # the file mode is a first gate (everyone may connect when reads are public); the daemon
        # decides each request by the caller's credentials
        self.server = ControlServer(args.socket, self.api.handle, identify=identify, gid=gid,
                                    mode=0o666 if config.daemon.public_read else 0o660)
        # the socket prisons see (the shim's proc.status): their questions only, whoever asks
        self.prison_server = ControlServer(os.path.join(public, PRISON_SOCKET), self.api.handle, identify=identify,
                                           mode=0o666, jailed_only=True)
        self.stopping = asyncio.Event()
        listen = config.daemon.metrics_listen
        self.metrics = MetricsServer(*listen, lambda: exposition(self.registry.list(full=True),
                                                                 daemon_up=self.status == "ready")) if listen else None
        # the shim's reports (the policy's s= names the prisons' socket; events.sock is beside it)
        self.audit = AuditSocket(os.path.join(public, contract.EVENTS_SOCKET), tree.prison_of, self._shim_event)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # prisons start side by side (START_CONCURRENCY), each waiting in a thread for its
        # init: the default pool (CPUs + 4 threads) made them queue
        loop.set_default_executor(ThreadPoolExecutor(max_workers=START_CONCURRENCY + 8, thread_name_prefix="prisond"))
        become_subreaper()
        raise_nofile()
        self.launcher.spawner.start()  # now, while the daemon holds few descriptors (spawner.py)
        await self.looker.start()
        report_isolation(self.args.landlock_abi)
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGINT, self._stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: spawn(self.reload(), "reload"))
        await asyncio.to_thread(self.tree.ensure_parent)
        if self.resources:
            await asyncio.to_thread(self.resources.ensure_parents, self.tree.parent)
        await self.registry.recover()
        await self.server.start()
        await self.prison_server.start()
        self.audit.start(loop)
        log.info("control socket %s; cgroups under %s (%s layout)", self.args.socket, self.tree.parent,
                 self.tree.layout.kind)
        await self.registry.start_all()
        if self.metrics is not None:
            try:
                await self.metrics.start()
            except OSError as exc:
                log.error("cannot serve metrics on %s:%d: %s", self.metrics.host, self.metrics.port, exc.strerror)
        spawn(self._watch_counters(), "counters")
        interval = sdnotify.watchdog_interval()
        if interval:
            spawn(self._watchdog(interval), "watchdog")
        # what the start made lives as long as the daemon: out of the collector's reach, whose
        # full passes otherwise walk all of it (10,000 prisons: millions of objects, tens of
        # milliseconds a pass, in the middle of a reload or a show)
        gc.collect()
        gc.freeze()
        self.status = "ready"
        counts = self.registry.counts()
        log.info("ready: %s", ", ".join(f"{n} {s}" for s, n in counts.items()) or "no prisons")
        sdnotify.notify("READY=1", f"STATUS={self._status_line()}")
        await self.stopping.wait()
        self.status = "stopping"
        sdnotify.notify("STOPPING=1", "STATUS=stopping prisons")
        log.info("stopping all prisons")
        await self.server.close()
        await self.prison_server.close()
        if self.metrics is not None:
            await self.metrics.close()
        self.audit.close(loop)
        await self.registry.stop_all()
        self.store.clear()
        # every prison stopped: the shim can go (a daemon that dies keeps it for its prisons,
        # whose programs load it at every exec; the next daemon installs it again)
        _unlink(self.launcher.shim_path)
        self.launcher.forget_hosts(keep=set())
        for path in (self.launcher.init_dir, self.launcher.public_dir, self.launcher.hosts_dir):
            try:
                os.rmdir(path)  # empty once every prison stopped
            except OSError:
                pass
        self.tree.remove_parent()
        if self.resources:
            self.resources.remove_parents()
        await self.looker.close()
        self.netlink.close()
        self.launcher.spawner.stop()
        self.event_file.close()
        self.output.close()
        log.info("stopped")
        return 0

    def _shim_event(self, name: str, kind: str, text: str, **data) -> None:
        prison = self.registry.prisons.get(name)
        if prison is not None:
            prison.event(kind, text, **data)

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop stalls, systemd restarts us."""
        while not self.stopping.is_set():
            sdnotify.notify("WATCHDOG=1")
            try:
                await asyncio.wait_for(self.stopping.wait(), interval)
            except TimeoutError:
                pass

    async def _watch_counters(self) -> None:
        """Every second, the counters of running prisons (limit hits for those with limits, the
        kernel layer's for kernel prisons): what is new becomes an event.  At most WATCH_BUDGET
        prisons are read in one round, in turn: with 10,000 prisons each is read every 40 s
        (reading all every second took 14% of a CPU), so an event can come that much later."""
        watch = CounterWatch()
        turn = RoundRobin(WATCH_BUDGET)
        seen: dict[str, bytes] = {}  # each prison's kernel counters as last read, as the map holds them

        def read(p: Prison) -> dict | None:
            """What is new in the prison's counters; None if nothing can be (most prisons, most
            rounds: the kernel's bytes are compared, not decoded and checked)."""
            counters: dict = {}
            raw = p.view.kernel_counter_bytes()
            if raw is not None and raw != seen.get(p.spec.name):
                seen[p.spec.name] = raw
                counters.update(p.view.decode_counters(raw))
            if p.res is not None and p.spec.limits != Limits():
                counters.update(p.res.stats())
            return counters or None

        while not self.stopping.is_set():
            if any_zombie():  # one system call: the thread only when there is something to collect
                helpers = self.looker.children()  # taken here, on the loop that changes it
                await asyncio.to_thread(reap_orphans, lambda pid: pid in WAITED or pid in helpers)  # noqa: B023
            # a slice of all prisons, then the running ones in it (not a list of 10,000 a second)
            prisons = [p for p in turn.next(list(self.registry.prisons.values())) if p.state in UP]
            stats = await asyncio.to_thread(lambda: [(p, read(p)) for p in prisons])  # noqa: B023 (awaited here)
            now = time.monotonic()
            for p, counters in stats:
                if counters is None:
                    continue
                for kind, key, n in watch.check(p.spec.name, counters, now):
                    p.event(kind, EVENT_TEXT[key].format(n=n, limits=p.spec.limits), count=n,
                            **({"source": "kernel"} if kind in AUDIT_KINDS else {}))
            if turn.wrapped:
                up = {p.spec.name for p in self.registry.prisons.values() if p.state in UP}
                for name in set(watch.reported) - up:
                    watch.forget(name)
                for name in set(seen) - up:
                    del seen[name]
            try:
                await asyncio.wait_for(self.stopping.wait(), LIMIT_WATCH_INTERVAL)
            except TimeoutError:
                pass

    def _stop(self) -> None:
        self.registry.shutting_down = True  # a start in progress finishes; no new ones
        self.stopping.set()

    async def reload(self) -> None:
        sdnotify.notify("RELOADING=1", "STATUS=reloading")
        try:
            new = await asyncio.to_thread(self.config_file.load)
            await self.registry.reload(new)
        except ConfigError as exc:
            log.error("reload rejected, the running configuration stays:\n%s", exc.message)
        except PrisonError as exc:
            log.error("reload: %s", exc.message)
        sdnotify.notify("READY=1", f"STATUS={self._status_line()}")

    def _status_line(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in self.registry.counts().items()) or "no prisons"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="prisond", description="Run prisons: FreeBSD-style jails for Linux services.")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"YAML configuration (default {DEFAULT_CONFIG})")
    p.add_argument("-s", "--socket", default=os.environ.get("PRISOND_SOCKET"),
                   help="control socket (default RUNTIME_DIR/control.sock)")
    p.add_argument("--runtime-dir", default=DEFAULT_RUNTIME,
                   help=f"the daemon's runtime directory (default {DEFAULT_RUNTIME}); prisons see its public/ only")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help=f"where the daemon records what it made "
                   f"(default {DEFAULT_STATE})")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio event loop")
    p.add_argument("--version", action="version", version=f"prisond {prisond_version()}")
    p.add_argument("--landlock-abi", type=int, default=None, metavar="N",
                   help="use at most Landlock ABI N in prisons (to see what an older kernel gives)")
    args = p.parse_args(argv)
    args.runtime_dir = os.path.abspath(args.runtime_dir)
    control = os.path.basename(contract.CONTROL_SOCKET)
    args.socket = os.path.abspath(args.socket or os.path.join(args.runtime_dir, control))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    config_file = ConfigFile(args.config)
    try:
        config = config_file.load()
    except ConfigError as exc:
        print(f"prisond: invalid configuration:\n{exc.message}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("prisond: must run as root (it adds addresses and creates cgroups)", file=sys.stderr)
        return 1
    try:
        # before anything is touched: one daemon per state directory, runtime directory and
        # cgroup parent (a second one would end the first one's prisons as leftovers)
        lock = DaemonLock(lock_paths(args.state_dir, args.runtime_dir, config.daemon.cgroup_parent)).take()
        public, init_dir = runtime_dirs(args.runtime_dir)
        shim = install_shim(public)
        # uvloop for the daemon's own loop only: not as the global policy, which the loops
        # pyroute2 makes in worker threads would inherit (uvloop has no netlink sockets).
        factory = None
        if not args.no_uvloop:
            try:
                import uvloop
                factory = uvloop.new_event_loop
            except ImportError:
                pass

        async def go() -> int:
            return await Daemon(config_file, config, args, shim, init_dir).run()

        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                return runner.run(go())
        finally:
            lock.release()
    except PrisonError as exc:
        print(f"prisond: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"prisond: {exc.filename or ''}: {exc.strerror}" if exc.filename else f"prisond: {exc}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
