"""A Debian 12 root booted under systemd-nspawn, systemd as its PID 1, for tests/system.

The root is made once with debootstrap (minbase, systemd-sysv, dbus) and the packages the
tests need from the mirror, and cached in CACHE/bookworm-root-KEY, KEY naming what is in it;
it is booted read-only under a throw-away overlay (--volatile=overlay), so every run starts
from the same root and leaves it as it was.

Fetching from the mirror happens only while the cache is built, in the network namespace the
suite was started in (tests/conftest.py keeps it: PRISOND_TEST_HOST_NETNS).  The booted
container has a private network (--private-network: a loopback device of its own and nothing
else), so nothing it does touches the host's interfaces.

This machine's PID 1 is not systemd and it has no D-Bus: nspawn runs with --register=no and
--keep-unit, in a cgroup of its own that the test makes in the host's cgroup v2 tree and
removes.  The host mounts cgroup v1 controllers, which nspawn would show read-only in a
hybrid container; SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the container a pure cgroup v2
tree instead, as a Debian 12 host has.  nspawn's seccomp filter refuses bpf(2) and the
Landlock calls unless allowed: --system-call-filter adds them (a host's systemd has no such
filter).  Commands run inside through nsenter into the container's namespaces.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import time

CACHE = os.environ.get("PRISOND_TEST_CACHE", "/var/cache/prisond-test")
SUITE = "bookworm"
# Bump when the recipe below changes: the cache key includes it.
RECIPE = "1"
BASE = ["systemd-sysv", "dbus"]          # debootstrap --include
TOOLS = ["curl", "procps", "iproute2"]  # what the tests run inside
# timers that would start apt or other work during a test
MASK = ["apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
        "e2scrub_reap.service", "fstrim.timer"]
SYSCALLS = "bpf landlock_create_ruleset landlock_add_rule landlock_restrict_self"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(AssertionError):
    pass


def _run(argv, timeout, what, **kw) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise ContainerError(f"{what}: no result in {timeout}s: {shlex.join(argv)}\n"
                             f"{(exc.stdout or b'')[-2000:]!r}\n{(exc.stderr or b'')[-2000:]!r}") from None
    if r.returncode != 0:
        raise ContainerError(f"{what} failed ({r.returncode}): {shlex.join(argv)}\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-3000:]}")
    return r


def host_net(argv: list[str]) -> list[str]:
    """argv run in the network namespace the suite started in (for the mirror)."""
    netns = os.environ.get("PRISOND_TEST_HOST_NETNS")
    if not netns or not os.path.exists(netns):
        raise ContainerError("PRISOND_TEST_HOST_NETNS is not set (tests/conftest.py sets it): no way to reach "
                             "the Debian mirror to build the container's root")
    return ["nsenter", f"--net={netns}", "--", *argv]


def root_key(packages: list[str]) -> str:
    text = "\n".join([RECIPE, SUITE, *BASE, *sorted(set(packages) | set(TOOLS)), *MASK])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_root(packages: list[str], log) -> tuple[str, bool]:
    """The cached root holding `packages` (and TOOLS); made if missing.  (path, made now)."""
    key = root_key(packages)
    path = os.path.join(CACHE, f"{SUITE}-root-{key}")
    if os.path.isfile(os.path.join(path, ".complete")):
        return path, False
    os.makedirs(CACHE, exist_ok=True)
    for old in os.listdir(CACHE):  # other recipes' roots, and what dead runs half made
        builder = old.rsplit("-", 1)[-1]
        if old.startswith(f"{SUITE}-root-") or (old.startswith(".build-") and not _alive(builder)):
            shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)
    tmp = os.path.join(CACHE, f".build-{key}-{os.getpid()}")
    t0 = time.monotonic()
    log(f"cache: making {path} (debootstrap --variant=minbase --include={','.join(BASE)} {SUITE})")
    _run(host_net(["debootstrap", "--variant=minbase", f"--include={','.join(BASE)}", SUITE, tmp,
                   mirror()]), 900, "debootstrap")
    wanted = sorted(set(packages) | set(TOOLS))
    log(f"cache: installing {' '.join(wanted)}")
    # nspawn without --boot, on the host's network: apt reaches the mirror; no service starts
    # (no systemd runs in there), as in a chroot
    script = ("set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
              f"apt-get install -y -qq --no-install-recommends {' '.join(wanted)} >/dev/null; "
              f"systemctl mask {' '.join(MASK)} >/dev/null 2>&1; apt-get clean; rm -rf /var/lib/apt/lists/*; "
              ": > /etc/machine-id")
    cg = Cgroup(f"prisond-systest-cache-{os.getpid()}")  # nspawn makes payload/ and supervisor/ in its own
    try:
        _run(host_net(["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-D", tmp, "--as-pid2",
                       "/bin/sh", "-c", script]), 900, "installing packages in the root", preexec_fn=cg.enter)
    finally:
        cg.remove()
    with open(os.path.join(tmp, ".complete"), "w") as fh:
        fh.write(f"recipe {RECIPE}: {' '.join(wanted)}\n")
    os.rename(tmp, path)
    log(f"cache: made in {time.monotonic() - t0:.0f}s")
    return path, True


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def mirror() -> str:
    """The host's configured Debian mirror (deb822 or one-line sources)."""
    for src in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(src) as fh:
                for line in fh:
                    parts = line.split()
                    if parts[:1] == ["URIs:"] and len(parts) > 1:
                        return parts[1]
                    if parts[:1] == ["deb"] and len(parts) > 2 and "security" not in parts[1]:
                        return parts[2] if parts[1].startswith("[") else parts[1]
        except OSError:
            pass
    return "http://deb.debian.org/debian"


class Cgroup:
    """A cgroup of the host's v2 tree for one systemd-nspawn (which, with --keep-unit, makes its
    payload/ and supervisor/ cgroups inside the one it runs in), removed with all below it."""

    def __init__(self, name: str):
        self.path = os.path.join(_v2_root(), name)
        os.makedirs(self.path, exist_ok=True)
        # on a hybrid host nspawn makes the same cgroups in systemd's own v1 hierarchy too
        legacy = _v1_systemd_root()
        self.legacy = os.path.join(legacy, name) if legacy else None

    def enter(self) -> None:
        """Between fork and exec: the child joins the cgroup."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
            fh.write("0")

    def kill(self) -> None:
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w") as fh:
                fh.write("1")
        except OSError:
            pass

    def remove(self, wait: float = 10) -> bool:
        deadline = time.monotonic() + wait
        return all(_remove_tree(top, deadline) for top in (self.path, self.legacy) if top)


def _remove_tree(top: str, deadline: float) -> bool:
    while True:
        try:
            for d in sorted((d for d, _, _ in os.walk(top)), key=len, reverse=True):
                os.rmdir(d)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _v1_systemd_root() -> str | None:
    """Where systemd's named v1 hierarchy (name=systemd) is mounted, if it is (hybrid hosts)."""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            fields = post.split()
            if fields[:1] == ["cgroup"] and "name=systemd" in fields[-1].split(","):
                return pre.split()[4]
    return None


def _v2_root() -> str:
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            if post.split()[:1] == ["cgroup2"]:
                return pre.split()[4]
    raise ContainerError("no cgroup v2 hierarchy on this host: systemd-nspawn needs one")


class Container:
    """One boot of `root` under a fresh overlay; `share` is bind-mounted read-only at /srv/systest."""

    def __init__(self, root: str, share: str, log):
        self.root, self.share, self.log = root, share, log
        self.name = f"prisond-systest-{os.getpid()}"  # nspawn's machine name (and hostname)
        self.cgroup: Cgroup | None = None
        self.console = os.path.join(share, "console.log")
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None

    # ---------------------------------------------------------------- boot and halt

    def boot(self, timeout: float = 90) -> float:
        self.cgroup = Cgroup(self.name)
        argv = ["systemd-nspawn", "--register=no", "--keep-unit", "-D", self.root, "--volatile=overlay",
                "--boot", "--private-network", f"--machine={self.name}", "--console=passive",
                f"--system-call-filter={SYSCALLS}", f"--bind-ro={self.share}:/srv/systest"]
        t0 = time.monotonic()
        with open(self.console, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1"),
                                         preexec_fn=self.cgroup.enter, start_new_session=True)
        deadline = t0 + timeout
        while self.leader is None:
            if self.proc.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited ({self.proc.returncode}):\n{self.console_tail()}")
            if time.monotonic() > deadline:
                raise ContainerError(f"no container PID 1 after {timeout}s:\n{self.console_tail()}")
            self.leader = self._pid1()
            if self.leader is None:
                time.sleep(0.05)
        while True:  # until systemd answers, then until the boot is done
            r = self.sh("systemctl is-system-running --wait", timeout=max(1, deadline - time.monotonic()),
                        check=False)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise ContainerError(f"the container did not boot in {timeout}s ({state!r}):\n{self.console_tail()}")
            time.sleep(0.2)
        if state != "running":
            failed = self.sh("systemctl --failed --no-legend", check=False).stdout
            raise ContainerError(f"the container booted {state}: failed units:\n{failed}")
        return time.monotonic() - t0

    def _pid1(self) -> int | None:
        """The container's PID 1 once it is systemd (nspawn's first child sets the container up
        before the payload execs)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                kids = fh.read().split()
            for kid in kids:
                with open(f"/proc/{kid}/comm") as fh:
                    if fh.read().strip() == "systemd":
                        return int(kid)
        except OSError:
            pass
        return None

    def halt(self, timeout: float = 60) -> list[str]:
        """Power off (SIGTERM to nspawn: the container's systemd shuts down), SIGKILL whatever is
        left; remove the cgroup.  Returns what had to be forced."""
        forced = []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                forced.append(f"the container did not halt in {timeout}s: killed")
                self.cgroup.kill()
                self.proc.kill()
                self.proc.wait(30)
        if self.cgroup:
            self.cgroup.kill()
            if not self.cgroup.remove():
                forced.append(f"cannot remove {self.cgroup.path}")
        # nspawn's runtime leftovers on a host whose /run is not a tmpfs
        for d in (f"/run/systemd/nspawn/propagate/{self.name}", "/run/systemd/nspawn/propagate",
                  "/run/systemd/nspawn/locks", "/run/systemd/nspawn"):
            try:
                os.rmdir(d)
            except OSError:
                pass
        return forced

    def console_tail(self, n: int = 40) -> str:
        try:
            with open(self.console, errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return "(no console log)"

    # ---------------------------------------------------------------- inside

    def sh(self, script: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """/bin/sh -c script in the container: its namespaces, root, a clean environment."""
        if self.leader is None:
            raise ContainerError("the container is not running")
        argv = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--",
                "/usr/bin/env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
                "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "/bin/sh", "-c", script]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ContainerError(f"in the container, no result in {timeout}s: {script}") from None
        if check and r.returncode != 0:
            raise ContainerError(f"in the container ({r.returncode}): {script}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def out(self, script: str, timeout: float = 60) -> str:
        return self.sh(script, timeout).stdout.strip()

    def write(self, path: str, text: str) -> None:
        self.sh(f"mkdir -p {shlex.quote(os.path.dirname(path))} && cat > {shlex.quote(path)} <<'PRISOND_EOF'\n"
                f"{text}PRISOND_EOF")
