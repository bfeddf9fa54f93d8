"""Helpers for the hostile-tenant tests (tests/escape/test_tenant_*.py).

Only external interfaces: prisonctl and its exit codes, the control socket's JSON lines, files
and processes on the host, terminals the tests make."""
from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import time

import pytest

from .build import build

NOBODY, NOGROUP = 65534, 65534


@pytest.fixture(scope="session")
def tenant_static():
    """The hostile tenant's static probe (tests/progs/tenant.c)."""
    return build("tenant.c", "-O2", "-static", name="tenant-static")


def probe_path(tool: str, confined: bool) -> str:
    """Where a prison sees the probe: /opt/t in a confined prison (see fixtures.confined), the
    host path in an unconfined one."""
    return "/opt/t/" + os.path.basename(tool) if confined else tool


def run_probe(d, prison: str, tool: str, *args, confined: bool, user: str | None = None, timeout: float = 60,
              **kw) -> subprocess.CompletedProcess:
    opts = ["-u", user] if user else []
    return d.ctl("exec", *opts, prison, "--", probe_path(tool, confined), *map(str, args), timeout=timeout, **kw)


def request(method: str, rid=1, **params) -> str:
    return json.dumps({"v": 1, "id": rid, "method": method, "params": params})


def raw_call(path: str, method: str, timeout: float = 30, **params) -> dict:
    """One request on a connection of its own; the decoded reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(request(method, **params).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {buf!r}")
            buf += chunk
        return json.loads(buf)
    finally:
        s.close()


def call_as(uid: int, gid: int, groups: list[int], path: str, method: str, **params) -> dict:
    """raw_call from a forked child running as uid/gid/groups (a real unprivileged peer)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            try:
                out = raw_call(path, method, **params)
            except Exception as exc:
                out = {"exception": repr(exc)}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def host_state(d, name: str) -> str:
    return d.call("prison.show", name=name)["state"]


def names(d) -> list[str]:
    return [p["name"] for p in d.call("prison.list")]


# ------------------------------------------------------------------ the daemon's figures


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def list_latencies(path: str, seconds: float, timeout: float = 10.0) -> tuple[list[float], list[str]]:
    """prison.list (what `prisonctl list` asks) on a fresh connection, again and again for
    seconds: each call's latency, and the failures."""
    lat, errors = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            reply = raw_call(path, "prison.list", timeout=timeout)
            if not reply.get("ok"):
                errors.append(str(reply.get("error")))
        except Exception as exc:
            errors.append(repr(exc))
        lat.append(time.monotonic() - t0)
        time.sleep(0.02)
    return lat, errors


# ------------------------------------------------------------------ terminals


class Pty:
    """A pseudo-terminal pair; the operator's programs run on the slave as their controlling
    terminal; what they print is collected from the master."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.slave_name = os.ttyname(self.slave)
        self.output = b""

    def spawn(self, argv: list[str], env=None) -> subprocess.Popen:
        slave = self.slave

        def ctty():
            os.setsid()
            import fcntl
            import termios
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        return subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, preexec_fn=ctty, env=env,
                                close_fds=True)

    def read_for(self, seconds: float) -> bytes:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            r, _, _ = select.select([self.master], [], [], min(left, 0.1))
            if r:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    break
        return self.output

    def read_until(self, marker: bytes, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while marker not in self.output and time.monotonic() < end:
            self.read_for(0.1)
        return marker in self.output

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def wait_proc(p: subprocess.Popen, pty: Pty, timeout: float) -> int | None:
    """Wait for p while draining the terminal; None (and p killed) on timeout."""
    end = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < end:
        pty.read_for(0.1)
    if p.poll() is None:
        p.kill()
        p.wait()
        return None
    pty.read_for(0.2)
    return p.returncode


# ------------------------------------------------------------------ places other users can reach


def public_dir(prefix: str = "prisond-tenant-") -> str:
    """A directory under /tmp (not under pytest's basetemp, whose mode another pytest session on
    the machine may set back to 0700 at any time), mode 0755: unprivileged prison processes
    reach what is put there (sockets, the shim, the probe's output)."""
    import tempfile
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def remove_public_dir(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def public_tmp():
    """A public_dir, removed after the test."""
    path = public_dir()
    yield path
    remove_public_dir(path)


@pytest.fixture
def writable_dir(public_tmp):
    """A directory every user may write to (for what an unprivileged prison process records)."""
    p = os.path.join(public_tmp, "shared")
    os.mkdir(p)
    os.chmod(p, 0o777)
    return p


@pytest.fixture
def public_daemon():
    """Like fixtures.daemon, with the daemon's directory (socket, shim) in a public_dir."""
    from .daemon import Daemon
    made: list[tuple[Daemon, str]] = []

    def make(config: str, start: bool = True, **kw) -> Daemon:
        base = public_dir()
        d = Daemon(os.path.join(base, f"d{len(made)}"), config, **kw)
        made.append((d, base))
        return d.start() if start else d

    yield make
    for d, base in made:
        try:
            d.stop()
            d.remove_cgroups()
        finally:
            remove_public_dir(base)


@contextlib.contextmanager
def public_cell(body: str, extra_args=()):
    """A daemon in a directory every user may reach (attack tests run probes as nobody); stopped,
    with all it made removed, on leaving."""
    from .daemon import Daemon, let_others_reach
    base = public_dir()
    d = Daemon(os.path.join(base, "d"), body, extra_args=extra_args)
    let_others_reach(d.dir)
    try:
        d.start()
        yield d
    finally:
        try:
            d.stop()
        finally:
            d.remove_cgroups()
            remove_public_dir(base)
