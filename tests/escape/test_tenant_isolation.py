"""A hostile tenant against its neighbours and the host, through sockets and same-uid
processes.

3a. SOCK_PACKET (the old packet interface, an AF_INET socket type) in a confined prison with
    allow.raw_sockets: refused, so link-layer frames can be neither read nor forged.
3b. Abstract unix sockets: the host's and another prison's are out of reach; a prison's own
    are not.
3c. Two prisons whose processes run as the same user: neither can read, signal or trace the
    other's; within one prison, signals work as in a jail.
3d. io_uring (IORING_OP_SOCKET) makes no socket of a family socket() is refused, unless the
    prison has allow.io_uring."""
import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from support.daemon import wait_for
from support.fixtures import confined
from support.tenant import public_cell, probe_path, public_dir, remove_public_dir, run_probe, tenant_static  # noqa: F401

SECRET = "s3cr3t-3c"


@pytest.fixture(scope="module")
def cell(tmp_path_factory, confined_root):
    body = ("prisons:\n"
            + confined(confined_root, "c1", "127.0.2.1")
            + confined(confined_root, "c2", "127.0.2.2")
            + confined(confined_root, "craw", "127.0.2.3", extra="    allow: {raw_sockets: true}\n")
            # u1-u3 share the host's processes (isolate: false): the same-uid attacks below are
            # Landlock's to stop, not a PID namespace's (test_isolate.py has the default's)
            + "  u1:\n    ip4: [127.0.3.1]\n    isolate: false\n"
            + "  u3:\n    ip4: [127.0.3.3]\n    isolate: false\n    allow: {io_uring: true}\n"
            + "  u2:\n    ip4: [127.0.3.2]\n    isolate: false\n    exec:\n      jail_user: www-data\n"
            + f"      env: {{SECRET: {SECRET}}}\n      start: [sleep, '600']\n")
    with public_cell(body) as d:
        yield d


def is_confined(prison: str) -> bool:
    return prison.startswith("c")


def attempt(d, tool, prison, *args, user=None) -> str:
    r = run_probe(d, prison, tool, *args, confined=is_confined(prison), user=user)
    return r.stdout.decode().strip() or f"(nothing; exit {r.returncode}: {r.stderr.decode().strip()})"


# ------------------------------------------------------------------ 3a: SOCK_PACKET


@pytest.mark.parametrize("prison", ["craw", "c1"])
def test_no_sock_packet_in_a_confined_prison(cell, tenant_static, prison):
    got = attempt(cell, tenant_static, prison, "sock-packet")
    print(prison, "socket(AF_INET, SOCK_PACKET, ETH_P_ALL):", got)
    assert got.startswith("err "), \
        f"{prison}: socket(AF_INET, SOCK_PACKET) worked: the prison can sniff and forge frames (EAFNOSUPPORT expected)"


# socket families behind the filter's back: io_uring's IORING_OP_SOCKET makes a socket without
# the socket() system call the seccomp filter judges
VSOCK = ("40", "1", "0")         # AF_VSOCK, SOCK_STREAM: the hypervisor's services
SOCK_DIAG = ("16", "2", "4")     # AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG: every socket of the host


@pytest.mark.parametrize("family", [VSOCK, SOCK_DIAG], ids=["vsock", "sock_diag"])
@pytest.mark.parametrize("prison,user", [("u1", "www-data"), ("u1", None), ("c1", None)])
def test_io_uring_makes_no_socket_of_a_refused_family(cell, uring_static, prison, user, family):
    host = subprocess.run([uring_static, "socket", *family], capture_output=True, text=True).stdout.strip()
    assert host == "ok socket", f"the probe does not work on this host: {host}"
    plain = attempt(cell, uring_static, prison, "socket", *family, user=user)
    print(prison, user, family, "through io_uring:", plain)
    assert not plain.startswith("ok"), \
        f"{prison}: io_uring made a socket of family {family[0]} that socket() refuses (allow.io_uring is not set)"


def test_allow_io_uring_lets_a_prison_use_it(cell, uring_static):
    got = attempt(cell, uring_static, "u3", "socket", "2", "1", "0")  # AF_INET, SOCK_STREAM
    assert got == "ok socket", got


# ------------------------------------------------------------------ 3b: abstract unix sockets


class HostListener:
    def __init__(self, name: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + name)
        self.sock.listen(16)
        self.accepted = 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                c.sendall(b"host-admin\n")
            except OSError:
                pass
            c.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("prison,user", [("c1", None), ("u1", "nobody")], ids=["confined-root", "unconfined-nobody"])
def test_the_hosts_abstract_sockets_are_out_of_reach(cell, tenant_static, prison, user):
    name = f"prisond-test-admin-{os.urandom(6).hex()}"
    host = HostListener(name)
    try:
        got = attempt(cell, tenant_static, prison, "abstract-connect", name, user=user)
    finally:
        host.close()
    print(prison, "->", got, "host accepted", host.accepted)
    assert got.startswith("err ") and host.accepted == 0, \
        f"{prison} connected to the host's abstract socket @{name}: {got}"


class PrisonListener:
    """abstract-listen run in a prison by its own `prisonctl exec`."""

    def __init__(self, d, tool, prison: str, name: str):
        argv = d.ctl_argv() + ["exec", prison, "--", probe_path(tool, is_confined(prison)), "abstract-listen", name, "30"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        r, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if r else b""
        assert line == b"listening\n", (line, self.proc.poll())

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("a,b", [("c1", "c2"), ("u1", "u2")], ids=["confined", "unconfined"])
def test_another_prisons_abstract_sockets_are_out_of_reach(cell, tenant_static, a, b):
    d = cell
    name = f"prisond-test-{a}-{os.urandom(6).hex()}"
    listener = PrisonListener(d, tenant_static, a, name)
    try:
        other = attempt(d, tenant_static, b, "abstract-connect", name)
        same = attempt(d, tenant_static, a, "abstract-connect", name)
    finally:
        listener.close()
    print(f"{b} -> @{name} of {a}: {other}; {a} -> its own: {same}")
    assert other.startswith("err "), f"prison {b} connected to prison {a}'s abstract socket: {other}"
    assert same == "ok hello", f"a second process of prison {a} could not reach its own prison's socket: {same}"


# ------------------------------------------------------------------ 3c: same uid, other prison


def service_pid(d, prison: str) -> int:
    return d.call("prison.show", name=prison)["service"]["pid"]


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("what", ["environ", "kill-0", "kill-STOP", "ptrace", "prlimit", "renice-user"])
def test_a_prison_cannot_touch_a_same_uid_process_of_another_prison(cell, tenant_static, what):
    d = cell
    pid = service_pid(d, "u2")
    assert os.stat(f"/proc/{pid}").st_uid == 33  # www-data, as the attacker
    args = {"environ": ("read-file", f"/proc/{pid}/environ"), "kill-0": ("kill", pid, 0),
            "kill-STOP": ("kill", pid, int(signal.SIGSTOP)), "ptrace": ("ptrace", pid),
            "prlimit": ("prlimit", pid), "renice-user": ("renice-user", 33)}[what]
    try:
        got = attempt(d, tenant_static, "u1", *args, user="www-data")
        time.sleep(0.2)
        st = state_of(pid)
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"u1 (www-data) {what} {pid} of u2: {got[:200]}; state {st}")
    assert SECRET not in got, "prison u1 read prison u2's environment"
    assert got.startswith("err "), f"prison u1 could {what} prison u2's service: {got[:200]}"
    assert st not in ("T", "t") and os.path.exists(f"/proc/{pid}")
    with open(f"/proc/{pid}/status") as fh:
        assert "TracerPid:\t0" in fh.read()
    with open(f"/proc/{pid}/limits") as fh:
        assert [line.split()[3] for line in fh if line.startswith("Max cpu time")] == ["unlimited"]


def test_within_a_prison_same_uid_processes_may_signal_each_other(cell, tenant_static):
    d = cell
    pid = service_pid(d, "u2")
    try:
        assert attempt(d, tenant_static, "u2", "kill", pid, 0, user="www-data") == "ok"
        assert attempt(d, tenant_static, "u2", "kill", pid, int(signal.SIGSTOP), user="www-data") == "ok"
        wait_for(lambda: state_of(pid) in ("T", "t"), 5, "the service to stop")
        assert attempt(d, tenant_static, "u2", "kill", pid, int(signal.SIGCONT), user="www-data") == "ok"
        wait_for(lambda: state_of(pid) not in ("T", "t"), 5, "the service to continue")
    finally:
        os.kill(pid, signal.SIGCONT)


# ------------------------------------------------------------------ older kernels


def test_without_landlock_scopes_ptrace_stays_out_but_signals_do_not(tmp_path, tenant_static):
    """Landlock before ABI 6 (Linux 6.12) has no scopes: the daemon then gives each prison a
    domain for its ptrace rule alone.  Reading another prison's environment and tracing it stay
    refused; signals across prisons of the same uid, and abstract sockets, are not scoped (the
    README's stated limit on such kernels)."""
    body = ("prisons:\n  u1:\n    ip4: [127.0.3.1]\n    isolate: false\n  u2:\n    ip4: [127.0.3.2]\n"
            "    isolate: false\n    exec:\n"
            f"      jail_user: www-data\n      env: {{SECRET: {SECRET}}}\n      start: [sleep, '600']\n")
    with public_cell(body, extra_args=["--landlock-abi", "5"]) as d:
        pid = service_pid(d, "u2")
        got = attempt(d, tenant_static, "u1", "read-file", f"/proc/{pid}/environ", user="www-data")
        assert SECRET not in got and got.startswith("err "), got
        assert attempt(d, tenant_static, "u1", "ptrace", pid, user="www-data").startswith("err ")
        assert attempt(d, tenant_static, "u1", "kill", pid, 0, user="www-data") == "ok"  # the limit
