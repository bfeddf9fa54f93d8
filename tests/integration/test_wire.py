"""On the wire: every packet a jailed program sends carries its prison's address, and a jailed
server answers only on its prison's address.  scapy watches lo; the assertions are about
packets, not about what the programs report."""
import subprocess
import urllib.request

import pytest

from support.daemon import let_others_reach
from support.wire import Wire

A4, B4 = "127.0.2.1", "127.0.3.1"
A6, B6 = "fd00:2::1", "fd00:3::1"

CONFIG = f"""
prisons:
  a:
    hostname: a.example.test
    ip4: ["{A4}"]
    ip6: ["lo|{A6}"]
  b:
    hostname: b.example.test
    ip4: ["{B4}"]
    ip6: ["lo|{B6}"]
"""


@pytest.fixture(params=["shim", "kernel"])
def level(request):
    return request.param


@pytest.fixture
def two(daemon, level):
    """Two prisons, under each enforcement level in turn: the wire must look the same."""
    return daemon(f"defaults:\n  enforce: {level}\n" + CONFIG)


def test_tcp_syn_source_is_the_prison_address(two, tcp_server, nettool):
    srv = tcp_server("127.0.0.9")
    with Wire() as wire:
        for prison in ("a", "b"):
            r = two.exec(prison, nettool, "connect", "127.0.0.9", srv.port)
            assert r.returncode == 0, r.stdout + r.stderr
            r = two.exec(prison, "curl", "-s", "-o", "/dev/null", f"http://127.0.0.9:{srv.port}/")
            assert r.returncode == 0, r.stderr
            r = two.exec(prison, "python3", "-c",
                         f"import urllib.request as u; u.urlopen('http://127.0.0.9:{srv.port}/').read()")
            assert r.returncode == 0, r.stderr
    syns = wire.syns(srv.port)
    sources = sorted({src for src, _ in syns})
    assert sources == [A4, B4], syns
    assert len(syns) >= 6
    assert sorted(set(srv.peers)) == [A4, B4]


def test_udp_datagram_source_is_the_prison_address(two, udp_sink, nettool):
    sink = udp_sink("127.0.0.9")
    with Wire() as wire:
        for how in ("sendto", "sendmsg"):
            assert two.exec("a", nettool, "udp", how, "127.0.0.9", sink.port).returncode == 0
        r = two.exec("a", nettool, "udp", "sendmmsg", "127.0.0.9", sink.port, 5)
        assert "sent=5 lens_ok=1" in r.stdout.decode(), r.stdout
        assert two.exec("b", "python3", "-c",
                        f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                        f".sendto(b'x', ('127.0.0.9', {sink.port}))").returncode == 0
    datagrams = wire.udp(sink.port)
    assert len([d for d in datagrams if d[0] == A4]) >= 7
    assert {src for src, _ in datagrams} == {A4, B4}, datagrams


REUSE_WAYS = ("close", "close_range", "closefrom", "dup2", "dup3", "dup", "fcntl", "socket", "recvmsg", "recvmmsg",
              "__close", "__dup2", "__fcntl", "pidfd_getfd", "clone-vm", "clone-files", "close_range-unshare",
              "recvmsg-efault", "fork")


def test_a_reused_socket_number_is_asked_again(daemon, udp_sink, nettool):
    """The shim remembers which sockets are bound (a send then costs no getsockname).  A
    number that comes to mean a fresh unbound socket, by each way libc ends or hands out a
    descriptor, must be asked again: else that socket's datagram leaves unbound and the kernel
    picks its source, not the prison's address.  Seen failing with the forgetting taken out:
    the "after" datagrams left from 127.0.0.1.  "fork": a child starts with no memory (a
    sibling thread may remember a number while the kernel copies table, then memory); the
    child here changes the number past libc, which only a memory it did not inherit survives."""
    d = daemon(f"defaults:\n  enforce: shim\n" + CONFIG)
    sink = udp_sink("127.0.0.9")
    with Wire() as wire:
        for how in REUSE_WAYS:
            r = d.exec("a", nettool, "udp-reuse", how, "127.0.0.9", sink.port)
            assert r.returncode == 0 and b"sent=4" in r.stdout, (how, r.stdout + r.stderr)
    datagrams = wire.udp(sink.port)
    assert len(datagrams) >= 4 * len(REUSE_WAYS), datagrams  # lo shows each one twice
    assert {src for src, _ in datagrams} == {A4}, datagrams


def test_tcp_fastopen_is_an_implicit_connect(two, tcp_server, nettool):
    srv = tcp_server("127.0.0.9")
    with Wire() as wire:
        r = two.exec("a", nettool, "fastopen", "127.0.0.9", srv.port)
        assert r.returncode == 0, r.stdout
    assert {src for src, _ in wire.syns(srv.port)} == {A4}


def test_ipv6_and_v4_mapped_sources(two, tcp_server, nettool):
    srv6 = tcp_server("fd00:ff::9", family=__import__("socket").AF_INET6)
    srv4 = tcp_server("127.0.0.9")
    with Wire() as wire:
        assert two.exec("a", nettool, "connect", "fd00:ff::9", srv6.port).returncode == 0
        r = two.exec("a", nettool, "v4mapped", "127.0.0.9", srv4.port)
        assert r.returncode == 0, r.stdout
        assert f"local=[::ffff:{A4}]" in r.stdout.decode()
    # by destination too: the two servers' ports, free each in its family, may be the same number
    assert {src for src, dst in wire.syns(srv6.port) if dst == "fd00:ff::9"} == {A6}
    assert {src for src, dst in wire.syns(srv4.port) if dst == "127.0.0.9"} == {A4}  # v4 on the wire


def test_connect_to_loopback_goes_to_the_primary(two, level, nettool):
    port = 18080
    server = subprocess.Popen([*two_ctl(two), "exec", "a", "--", nettool, "serve", "0.0.0.0", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().decode().startswith(f"ok local={A4}:{port}")
        with Wire() as wire:
            r = two.exec("a", nettool, "connect", "127.0.0.1", port)
            assert r.returncode == 0, r.stdout
            # the wire carries the prison's address; to a kernel prison's own programs it looks
            # like localhost (programs.py, "Localhost"), the shim leaves what the kernel says
            seen = "127.0.0.1" if level == "kernel" else A4
            assert f"local={seen}:" in r.stdout.decode() and f"peer={seen}:{port}" in r.stdout.decode(), r.stdout
        assert wire.syns(port) and all(s == (A4, A4) for s in wire.syns(port)), wire.syns(port)
    finally:
        server.kill()
        server.wait()


def two_ctl(d):
    from support.daemon import prisonctl_cmd
    return prisonctl_cmd() + ["--socket", d.socket]


def test_servers_on_the_same_port_answer_only_on_their_own_address(daemon, tmp_path):
    """Two prisons run python http.server on 0.0.0.0:8080 side by side; each answers on its
    own address only: not on 127.0.0.1 and not on the other prison's address."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "who").write_text(f"prison {name}\n")
    config = CONFIG.replace('    ip6: ["lo|fd00:2::1"]\n',
                            f'    ip6: ["lo|fd00:2::1"]\n    mounts: ["{tmp_path / "a"}"]\n    exec:\n'
                            f'      start: [python3, -m, http.server, --bind, '
                            f'0.0.0.0, --directory, "{tmp_path / "a"}", "8080"]\n')
    config = config.replace('    ip6: ["lo|fd00:3::1"]\n',
                            f'    ip6: ["lo|fd00:3::1"]\n    mounts: ["{tmp_path / "b"}"]\n    exec:\n'
                            f'      start: [python3, -m, http.server, --bind, '
                            f'0.0.0.0, --directory, "{tmp_path / "b"}", "8080"]\n')
    d = daemon(config)
    _wait_listening(d, "a", f"{A4}:8080")
    _wait_listening(d, "b", f"{B4}:8080")
    with Wire() as wire:
        assert urllib.request.urlopen(f"http://{A4}:8080/who", timeout=5).read() == b"prison a\n"
        assert urllib.request.urlopen(f"http://{B4}:8080/who", timeout=5).read() == b"prison b\n"
        with pytest.raises(OSError):
            urllib.request.urlopen("http://127.0.0.1:8080/who", timeout=5)
    answers = wire.tcp_from(8080)
    assert answers, "no packet from port 8080 seen"
    synacks = [(s, dst) for s, dst, f in answers if f & 0x12 == 0x12]
    assert {s for s, _ in synacks} == {A4, B4}
    # the SYN to 127.0.0.1:8080 met a reset: nobody listens there
    rst = [(s, dst) for s, dst, f in answers if f & 0x04]
    assert ("127.0.0.1", "127.0.0.1") in rst
    assert all(s in (A4, B4, "127.0.0.1") for s, _, _ in answers)
    assert all(not (s == "127.0.0.1" and f & 0x12 == 0x12) for s, _, f in answers)


def _wait_listening(d, prison, local, timeout=20):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = d.show(prison)["processes"]
        if any(s["local"] == local and s["state"] == "listen" for p in procs for s in p["sockets"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"{prison} never listened on {local}: {d.show(prison)}")


def test_nginx_in_a_prison_serves_on_its_address_only(daemon, tmp_path):
    """nginx as the prison's service, told to listen on 8080 of every address."""
    site = tmp_path / "site"  # what the prison sees (not tmp_path: the daemon's runtime dir is there)
    root = site / "www"
    root.mkdir(parents=True)
    (root / "index.html").write_text("nginx in a\n")
    let_others_reach(str(root))  # the workers run unprivileged
    conf = site / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
daemon off;
pid /tmp/nginx.pid;
error_log /tmp/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {{ listen 8080; root {root}; }}
}}
""")
    d = daemon(f"""
prisons:
  a:
    ip4: ["{A4}"]
    mounts: ["{site}"]      # its configuration and pages; it writes in its private /tmp
    exec:
      start: [/usr/sbin/nginx, -c, "{conf}", -p, "{site}"]
""")
    _wait_listening(d, "a", f"{A4}:8080")
    with Wire() as wire:
        assert urllib.request.urlopen(f"http://{A4}:8080/", timeout=5).read() == b"nginx in a\n"
        with pytest.raises(OSError):
            urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5)
    synacks = {s for s, _, f in wire.tcp_from(8080) if f & 0x12 == 0x12}
    assert synacks == {A4}
    procs = d.show("a")["processes"]
    assert len(procs) == 4  # the prison's init, nginx's master and two workers, all in the prison
