"""A root inside a confined prison tries to harm the host: every attempt fails with the errno
stated here, and the host is checked unchanged afterwards.  The attempts use raw system calls
from a static binary (tests/progs/escape.c), so no shim is in the way: this is the kernel
layer (namespaces, bounding set, seccomp) alone."""
import os
import subprocess

import pytest

from support.daemon import Daemon, addresses_on_lo
from support.fixtures import confined

SECRET = "host-only secret"


@pytest.fixture(scope="module")
def cell(tmp_path_factory, confined_root):
    secret = tmp_path_factory.mktemp("host") / "secret"
    secret.write_text(SECRET + "\n")
    body = ("prisons:\n" + confined(confined_root, "c", "127.0.2.1")
            + confined(confined_root, "craw", "127.0.3.1", extra="    allow: {raw_sockets: true}\n"))
    d = Daemon(str(tmp_path_factory.mktemp("confine-escape")), body).start()
    host_sleeper = subprocess.Popen(["sleep", "600"])
    yield d, str(secret), host_sleeper.pid
    host_sleeper.kill()
    host_sleeper.wait()
    try:
        assert d.stop() == 0
    finally:
        d.remove_cgroups()


def attempt(d, tool, *args, prison="c") -> str:
    r = d.exec(prison, "/opt/t/" + os.path.basename(tool), *map(str, args))
    return r.stdout.decode().strip()


# attempt: (arguments, what the jailed root gets)
ATTEMPTS = {
    "mount a filesystem": (("mount",), "err EPERM"),
    "unmount the prison's /proc": (("umount-proc",), "err EPERM"),
    "mknod a block device": (("mknod-block",), "err EPERM"),
    "load a module (init_module)": (("init-module",), "err EPERM"),
    "load a module (finit_module)": (("finit-module",), "err EPERM"),
    "set the clock": (("settime",), "err EPERM"),
    "sethostname": (("sethostname",), "err EPERM"),
    "raw socket": (("raw-socket",), "err EPERM"),
    "packet socket (family not allowed)": (("packet-socket",), "err EAFNOSUPPORT"),
    "new user namespace (unshare -U)": (("unshare-user",), "err EPERM"),
    "open_by_handle_at (shocker)": (("open-by-handle",), "err EPERM"),
    "setns into another namespace": (("setns",), "err EPERM"),
    "bpf()": (("bpf",), "err EPERM"),
    "write /proc/sys/kernel/core_pattern": (("core-pattern",), "err EROFS"),
    "reboot": (("reboot",), "err EPERM"),
}


@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_the_jailed_root_cannot(cell, escape_static, name):
    d, _, _ = cell
    args, expected = ATTEMPTS[name]
    host_name = os.uname().nodename
    with open("/proc/sys/kernel/core_pattern") as fh:
        core_pattern = fh.read()
    assert attempt(d, escape_static, *args) == expected
    assert os.uname().nodename == host_name
    assert d.exec("c", "hostname").stdout == b"c.example.test\n"
    with open("/proc/sys/kernel/core_pattern") as fh:
        assert fh.read() == core_pattern
    assert d.exec("c", "sh", "-c", "test -d /proc/1 && echo mounted").stdout == b"mounted\n"


@pytest.mark.parametrize("how", ["chroot-climb", "dotdot-walk", "read"])
def test_host_files_outside_the_root_are_out_of_reach(cell, escape_static, how):
    d, secret, _ = cell
    assert open(secret).read().strip() == SECRET  # there, on the host
    assert attempt(d, escape_static, how, secret) == "err ENOENT"
    assert attempt(d, escape_static, how, "/etc/hostname") == "err ENOENT"  # the host's, not in the root


@pytest.mark.parametrize("how", ["kill", "ptrace"])
def test_host_processes_cannot_be_signalled_or_traced(cell, escape_static, how):
    d, _, host_pid = cell
    assert attempt(d, escape_static, how, host_pid) == "err ESRCH"
    assert os.path.exists(f"/proc/{host_pid}")
    with open(f"/proc/{host_pid}/status") as fh:
        assert "TracerPid:\t0" in fh.read()


def test_addresses_and_routes_cannot_be_changed(cell):
    d, _, _ = cell
    before = addresses_on_lo()
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for cmd in (["ip", "addr", "add", "127.0.9.9/32", "dev", "lo"], ["ip", "addr", "del", "127.0.2.1/32", "dev", "lo"],
                ["ip", "route", "add", "10.99.0.0/16", "dev", "lo"], ["ip", "link", "set", "lo", "down"]):
        r = d.exec("c", *cmd)
        assert r.returncode != 0 and b"Operation not permitted" in r.stderr, cmd
    assert addresses_on_lo() == before
    assert subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout == routes


def test_raw_sockets_only_with_allow_raw_sockets(cell, escape_static):
    d, _, _ = cell
    assert attempt(d, escape_static, "raw-socket", prison="c") == "err EPERM"
    assert attempt(d, escape_static, "raw-socket", prison="craw") == "ok"
    assert attempt(d, escape_static, "packet-socket", prison="craw") == "err EAFNOSUPPORT"


def test_the_jailed_root_keeps_what_a_jail_root_may_do(cell):
    """jail(8): root may change uid/gid, chown, chroot, bind reserved ports, signal its own."""
    d, _, _ = cell
    script = ("set -e; touch /tmp/f; chown nobody /tmp/f; stat -c %U /tmp/f; mkdir -p /tmp/cell/bin;"
              "chroot / true && echo chroot; python3 -c 'import socket; s=socket.socket(); s.bind((\"0.0.0.0\", 81));"
              " print(s.getsockname()[0])'; sleep 60 & kill $! && echo killed; setpriv --reuid=65534 id -u")
    r = d.exec("c", "sh", "-c", script)
    assert r.stdout.decode().split() == ["nobody", "chroot", "127.0.2.1", "killed", "65534"], r.stderr
