"""The shim, call by call, through C programs the suite compiles (and curl, python, hostname).
Each jailed program reports what it got; where it matters the wire tests confirm it."""
import os
import socket
import subprocess

import pytest

A4, B4, A6 = "127.0.2.1", "127.0.3.1", "fd00:2::1"


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    from support.daemon import Daemon
    d = Daemon(str(tmp_path_factory.mktemp("shim")), f"""
defaults:
  enforce: shim      # this suite is about the shim itself; tests/escape compares both levels
prisons:
  a:
    hostname: a.example.test
    ip4: ["{A4}"]
    ip6: ["lo|{A6}"]
  b:
    hostname: b.example.test
    ip4: ["{B4}"]
  multi:
    hostname: multi.example.test
    ip4: [127.0.4.1, 127.0.4.2]
  raw:
    hostname: raw.example.test
    ip4: [127.0.5.1]
    allow:
      raw_sockets: true
""").start()
    yield d
    try:
        assert d.stop() == 0
    finally:
        d.remove_cgroups()


def run(d, prison, *argv):
    r = d.exec(prison, *map(str, argv))
    return r.returncode, r.stdout.decode() + r.stderr.decode()


@pytest.mark.parametrize("prison,asked,got", [
    ("a", "0.0.0.0", A4),          # wildcard -> the prison's address
    ("a", "127.0.0.1", A4),        # loopback -> the primary
    ("a", A4, A4),                 # its own address stays
    ("a", "::", A6),               # v6 wildcard -> the v6 address
    ("a", "::1", A6),              # v6 loopback -> the v6 primary
    ("multi", "0.0.0.0", "127.0.4.1"),   # shim alone narrows a multi-address wildcard to the primary
    ("multi", "127.0.4.2", "127.0.4.2"),  # any of its addresses may be bound
])
def test_bind_is_rewritten(jail, nettool, prison, asked, got):
    rc, out = run(jail, prison, nettool, "bind", asked, 0)
    assert rc == 0, out
    local = out.split("local=")[1].split()[0]
    assert local.rsplit(":", 1)[0].strip("[]") == got


@pytest.mark.parametrize("asked", ["127.0.0.5", B4, "127.0.4.1", "fd00:ff::9"])
def test_bind_to_a_foreign_address_fails_eaddrnotavail(jail, nettool, asked):
    rc, out = run(jail, "a", nettool, "bind", asked, 0)
    assert rc == 1 and "EADDRNOTAVAIL" in out, out


def test_af_unspec_wildcard_bind_is_judged_too(jail, nettool):
    rc, out = run(jail, "a", nettool, "bind-unspec")
    assert rc == 0 and out.startswith(f"ok local={A4}:"), out


def test_v4_mapped_bind_on_a_v6_socket(jail, nettool):
    rc, out = run(jail, "a", nettool, "bind", "::ffff:0.0.0.0", 0, 0)
    assert rc == 0 and f"local=[::ffff:{A4}]" in out, out
    rc, out = run(jail, "a", nettool, "bind", "::ffff:127.0.0.5", 0, 0)
    assert "EADDRNOTAVAIL" in out, out


@pytest.mark.parametrize("family,expect", [("4", A4), ("6", A6)])
def test_listen_without_bind_takes_the_prison_address(jail, nettool, family, expect):
    rc, out = run(jail, "a", nettool, "listen-unbound", family)
    assert rc == 0, out
    assert out.split("local=")[1].split()[0].rsplit(":", 1)[0].strip("[]") == expect


def test_threads_each_connect_from_the_prison(jail, nettool, tcp_server):
    srv = tcp_server("127.0.0.9")
    rc, out = run(jail, "a", nettool, "threads", 16, "127.0.0.9", srv.port)
    assert rc == 0, out
    locals_ = [line.split("local=")[1].split(":")[0] for line in out.splitlines() if line.startswith("ok")]
    assert locals_ == [A4] * 16, out


def test_connect_on_a_socket_bound_by_the_program(jail, nettool, tcp_server):
    srv = tcp_server("127.0.0.9")
    rc, out = run(jail, "a", nettool, "bound-connect", "0.0.0.0", "127.0.0.9", srv.port)
    assert rc == 0 and f"local={A4}:" in out, out
    rc, out = run(jail, "a", nettool, "bound-connect", "127.0.0.5", "127.0.0.9", srv.port)
    assert "EADDRNOTAVAIL" in out, out


def test_udp_on_a_v6_socket_connected_with_an_ipv4_sockaddr(jail, nettool, udp_sink):
    from support.wire import Wire
    sink = udp_sink("127.0.0.9")
    with Wire() as wire:
        rc, out = run(jail, "a", nettool, "udp6-connect4", "127.0.0.9", sink.port)
        assert rc == 0 and f"local=[::ffff:{A4}]" in out, out
    assert {src for src, _ in wire.udp(sink.port)} == {A4}


def test_forked_child_connects_from_the_prison(jail, nettool, tcp_server):
    srv = tcp_server("127.0.0.9")
    rc, out = run(jail, "b", nettool, "fork", "127.0.0.9", srv.port)
    assert rc == 0 and f"local={B4}:" in out, out
    assert srv.peers == [B4]


def test_exec_with_a_cleaned_environment_keeps_the_prison(jail, nettool, tcp_server):
    srv = tcp_server("127.0.0.9")
    rc, out = run(jail, "a", nettool, "exec-clean", nettool, "connect", "127.0.0.9", srv.port)
    assert rc == 0 and f"local={A4}:" in out, out
    rc, out = run(jail, "a", "env", "-i", "/bin/sh", "-c", "hostname; env")
    assert out.splitlines()[0] == "a.example.test", out
    assert "PRISOND_POLICY=" in out and "LD_PRELOAD=" in out
    rc, out = run(jail, "a", "env", "-u", "LD_PRELOAD", "-u", "PRISOND_POLICY", "uname", "-n")
    assert out.strip() == "a.example.test"
    assert srv.peers == [A4]


@pytest.mark.parametrize("how", ["spawn-clean", "clearenv-execl"])
def test_posix_spawn_and_execl_with_a_cleaned_environment_keep_the_prison(jail, nettool, tcp_server, how):
    srv = tcp_server("127.0.0.9")
    rc, out = run(jail, "b", nettool, how, nettool, "connect", "127.0.0.9", srv.port)
    assert rc == 0 and f"local={B4}:" in out, out
    assert srv.peers == [B4]


def test_hostname_from_every_angle(jail, nettool, nettool_fortify):
    assert run(jail, "a", "hostname") == (0, "a.example.test\n")
    assert run(jail, "a", "uname", "-n") == (0, "a.example.test\n")
    assert run(jail, "b", "python3", "-c", "import socket; print(socket.gethostname())") == (0, "b.example.test\n")
    assert run(jail, "a", nettool, "hostname")[1].strip() == "gethostname=a.example.test uname=a.example.test"
    # built with _FORTIFY_SOURCE=2, gethostname is __gethostname_chk
    syms = subprocess.run(["nm", "-D", nettool_fortify], capture_output=True, text=True).stdout
    assert "__gethostname_chk" in syms
    assert run(jail, "b", nettool_fortify, "hostname")[1].strip() == "gethostname=b.example.test uname=b.example.test"


def test_sethostname_is_refused_and_the_host_keeps_its_name(jail, nettool):
    before = socket.gethostname()
    rc, out = run(jail, "a", nettool, "sethostname")
    assert rc == 1 and "EPERM" in out, out
    assert socket.gethostname() == before


@pytest.mark.parametrize("prison,kind,expect", [
    ("a", "raw", "EPERM"),
    ("a", "packet", "EPERM"),
    ("raw", "raw", "ok"),                 # allow.raw_sockets
    ("b", "inet6", "EPROTONOSUPPORT"),    # b has no IPv6 address
    ("a", "inet6", "ok"),
    ("a", "unix", "ok"),
    ("a", "netlink-route", "ok"),
    ("a", "netlink-audit", "EPROTONOSUPPORT"),
])
def test_socket_families(jail, nettool, prison, kind, expect):
    rc, out = run(jail, prison, nettool, "socket", kind)
    assert expect in out, out


def test_interfaces_list_only_the_prison_addresses(jail, nettool):
    rc, out = run(jail, "a", nettool, "ifaddrs")
    assert rc == 0 and out.strip().endswith("done"), out
    addrs = {line.split()[2].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line.startswith("addr")}
    assert addrs == {A4, A6}
    rc, out = run(jail, "b", "python3", "-c",
                  "import socket; print(sorted({a[4][0] for a in socket.getaddrinfo(socket.gethostname(), 0)}))")
    # getifaddrs is not the resolver: this only shows the shim does not break name lookups
    assert rc in (0, 1)


def test_ip_pktinfo_cannot_choose_a_foreign_source(jail, nettool, udp_sink):
    sink = udp_sink("127.0.0.9")
    rc, out = run(jail, "a", nettool, "udp", "pktinfo", "127.0.0.5", sink.port)
    assert "EADDRNOTAVAIL" in out, out
    rc, out = run(jail, "a", nettool, "udp", "pktinfo", A4, sink.port)
    assert rc == 0, out


def test_without_a_policy_the_shim_passes_everything_through(nettool):
    """Preloaded into a process outside any prison, the shim changes nothing."""
    shim = os.path.join(os.path.dirname(__import__("prisond").__file__), "libprisonshim.so")
    env = {k: v for k, v in os.environ.items() if k != "PRISOND_POLICY"}
    env["LD_PRELOAD"] = shim
    r = subprocess.run([nettool, "bind", "127.0.0.5", "0"], env=env, capture_output=True, text=True)
    assert r.stdout.startswith("ok local=127.0.0.5:"), r.stdout
    r = subprocess.run([nettool, "hostname"], env=env, capture_output=True, text=True)
    assert r.stdout.strip() == f"gethostname={socket.gethostname()} uname={os.uname().nodename}"


def test_a_malformed_policy_fails_closed(nettool):
    shim = os.path.join(os.path.dirname(__import__("prisond").__file__), "libprisonshim.so")
    env = dict(os.environ, LD_PRELOAD=shim, PRISOND_POLICY="garbage")
    r = subprocess.run([nettool, "socket", "inet"], env=env, capture_output=True, text=True)
    assert "EPROTONOSUPPORT" in r.stdout and "malformed PRISOND_POLICY" in r.stderr


def test_the_shim_exports_only_what_it_wraps():
    shim = os.path.join(os.path.dirname(__import__("prisond").__file__), "libprisonshim.so")
    out = subprocess.run(["nm", "-D", "--defined-only", shim], capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[1] == "T"}
    assert exported == {
        "socket", "bind", "connect", "__connect", "listen", "sendto", "sendmsg", "sendmmsg",
        "gethostname", "__gethostname_chk", "uname", "sethostname", "setdomainname", "getifaddrs",
        "execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve",
        "posix_spawn", "posix_spawnp",
        "open", "open64", "openat", "openat64", "__open_2", "__open64_2", "__openat_2", "__openat64_2",
        "fopen", "fopen64",
        # only to forget a reused descriptor number (the bound-socket cache)
        "close", "close_range", "closefrom", "dup", "dup2", "dup3", "fcntl", "fcntl64", "socketpair",
        "accept", "accept4", "recvmsg", "recvmmsg", "__close", "__dup2", "__fcntl", "pidfd_getfd",
        "clone", "__clone", "unshare"}
