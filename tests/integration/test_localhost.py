"""Localhost inside a kernel prison looks like localhost to the prison's own programs.

A client in the prison that connects (or sends) to 127.0.0.1 / ::1 reaches the prison's own
address (the rewrite), and leaves from it: that is what the wire carries, both ways.  The
programs at both ends see 127.0.0.1 / ::1 (::ffff:127.0.0.1 on a dual-stack socket): accept()'s
address, getpeername, getsockname, recvfrom (programs.py, "Localhost").  What must never look
like localhost (other prisons, the host, a prison sharing the address) is tests/escape's
test_localhost_escape.py.
"""
import os
import socket

import pytest

from support.daemon import Daemon, wait_for
from support.fixtures import free_port
from support.localhost import Server, fields, host, probe
from support.wire import Wire

P4, P6 = "127.0.4.1", "fd00:4::1"


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    d = Daemon(str(tmp_path_factory.mktemp("localhost")),
               f'prisons:\n  lo:\n    enforce: kernel\n    isolate: false\n    ip4: [{P4}]\n    ip6: ["lo|{P6}"]\n'
               ).start()  # isolate: false: its programs and files are the test's, in /tmp
    yield d
    try:
        assert d.stop() == 0, d.log()[-4000:]
    finally:
        d.remove_cgroups()


CASES = {  # name: (server's bind address, client's destination, what both ends see, the prison's address)
    "ipv4": ("127.0.0.1", "127.0.0.1", "127.0.0.1", P4),
    "ipv6": ("::1", "::1", "::1", P6),
    "dual-stack, v4-mapped": ("::ffff:127.0.0.1", "::ffff:127.0.0.1", "::ffff:127.0.0.1", P4),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tcp_connection_through_localhost_looks_like_localhost_at_both_ends(jail, case):
    bind, dst, seen, wire_addr = CASES[case]
    port = free_port()
    srv = Server(jail, "lo", "tcp-serve", bind, port)
    try:
        assert srv.first.startswith("listening"), srv.first
        with Wire() as wire:
            client = fields(probe(jail, "lo", "tcp-connect", dst, port))
        server = fields(srv.line())
        closed = fields(srv.line(2))
    finally:
        srv.stop()
    assert client.get("reply") == "hello", client
    cport = int(client["sock"].rsplit(":", 1)[1])
    # after the client closed (its socket a timewait one, which nothing can look up), the server
    # still sees the same: the answer was kept with its socket
    assert {k: host(v) for k, v in closed.items()} == {"peer": seen, "sock": seen}, closed
    # the server: accept()'s address, getpeername and getsockname
    assert {k: host(v) for k, v in server.items()} == {"accept": seen, "peer": seen, "sock": seen}, server
    assert server["accept"].endswith(f":{cport}") and server["sock"].endswith(f":{port}")
    # the client: both ends
    assert (host(client["sock"]), host(client["peer"])) == (seen, seen), client
    # the wire: the prison's own address, both ways
    assert wire.syns(port) and set(wire.syns(port)) == {(wire_addr, wire_addr)}, wire.syns(port)
    answers = wire.tcp_from(port)
    assert answers and {(s, d) for s, d, _ in answers} == {(wire_addr, wire_addr)}, answers


@pytest.mark.parametrize("case", list(CASES))
def test_a_udp_exchange_through_localhost_works_and_shows_the_prisons_address(jail, case):
    """UDP through localhost works both ways, and shows the prison's address at both ends:
    datagrams are not made to look like localhost's (their sender can be known only by its
    address and port, which a host user can choose: test_localhost_escape.py's IP_PKTINFO
    case)."""
    bind, dst, seen, wire_addr = CASES[case]
    port = free_port()
    srv = Server(jail, "lo", "udp-serve", bind, port)
    try:
        assert srv.first.startswith("listening"), srv.first
        with Wire() as wire:
            client = fields(probe(jail, "lo", "udp-ask", dst, port))
        server = fields(srv.line())
    finally:
        srv.stop()
    assert client.get("reply") == "pong:ping", client
    real = f"::ffff:{wire_addr}" if seen.startswith("::ffff:") else wire_addr  # as the socket's family gives it
    assert host(server["from"]) == real, server  # the server's recvfrom: the prison's address
    assert client["from"] == (f"[{real}]:{port}" if ":" in real else f"{real}:{port}"), client
    assert {(s, d) for s, d in wire.udp(port)} == {(wire_addr, wire_addr)}, wire.udp(port)
    cport = int(server["from"].rsplit(":", 1)[1])
    assert {(s, d) for s, d in wire.udp(cport)} == {(wire_addr, wire_addr)}, wire.udp(cport)  # the answer


def test_a_connection_to_the_prisons_own_address_keeps_it(jail):
    """Only what addressed localhost looks like it: a client of the prison that connects to the
    prison's address by name sees that address at both ends, and so does the server."""
    port = free_port()
    srv = Server(jail, "lo", "tcp-serve", P4, port)
    try:
        client = fields(probe(jail, "lo", "tcp-connect", P4, port))
        server = fields(srv.line())
    finally:
        srv.stop()
    assert {k: host(v) for k, v in server.items()} == {"accept": P4, "peer": P4, "sock": P4}, server
    assert (host(client["sock"]), host(client["peer"])) == (P4, P4), client


@pytest.mark.parametrize("nameserver", ["127.0.0.1", "::1"])
def test_glibcs_resolver_takes_the_answer_of_a_dns_server_on_localhost_in_the_prison(jail, tmp_path, nameserver):
    """A real resolver, end to end: glibc's stub resolver (getent) asks a DNS server of the
    prison on localhost and takes its answer (glibc 2.36 connects its UDP socket to the
    nameserver, and the kernel delivers the answer from the prison's address to it); the
    server sees the prison's address (UDP has no localhost look).  The resolver reads /etc/resolv.conf, which for this test (only) is another, in a
    mount namespace of its own."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:1\n")
    os.chmod(tmp_path, 0o755)
    srv = Server(jail, "lo", "dns-serve", nameserver, 53)
    try:
        assert srv.first.startswith("listening"), srv.first
        r = jail.exec("lo", "unshare", "-m", "sh", "-c",
                      f"mount --bind {conf} /etc/resolv.conf && exec getent ahostsv4 web.prison.test", timeout=30)
        asked = fields(srv.line())
    finally:
        srv.stop()
    assert r.returncode == 0 and r.stdout.decode().split()[0] == "192.0.2.7", (r.returncode, r.stdout, r.stderr)
    assert host(asked["from"]) != nameserver, asked  # the server saw the prison's address (UDP: no localhost look)


def test_redis_in_protected_mode_answers_its_own_prison_and_denies_the_host(jail, tmp_path):
    """redis-server bound to 127.0.0.1 in protected mode (no password) answers only clients it
    sees at a loopback address: `redis-cli ping` in its own prison gets PONG; a host client
    connecting to the prison's address (from that address: the local route's source) is
    DENIED, as is one bound to it on purpose."""
    os.chmod(tmp_path, 0o777)
    # through sh: prisonctl exec takes no empty argument, and `--save ''` is one
    redis = Server(jail, "lo", "sh", "-c", "exec /usr/bin/redis-server --port 6379 --bind 127.0.0.1 --protected-mode yes"
                   f" --daemonize no --dir {tmp_path} --save ''", python=False)
    try:
        def answers() -> bool:
            r = jail.exec("lo", "redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping", timeout=10)
            return r.stdout.decode().strip() == "PONG"
        wait_for(answers, what="redis to answer PONG in its own prison")
        r = jail.exec("lo", "redis-cli", "ping", timeout=10)  # the default: 127.0.0.1:6379
        assert r.stdout.decode().strip() == "PONG", (r.stdout, r.stderr)
        for bind in (None, P4):
            with socket.socket() as c:
                c.settimeout(10)
                if bind:
                    c.bind((bind, 0))
                c.connect((P4, 6379))
                assert c.getsockname()[0] == P4  # the host client comes from the prison's address
                c.sendall(b"PING\r\n")
                reply = c.recv(1000)
            assert reply.startswith(b"-DENIED Redis is running in protected mode"), reply
    finally:
        jail.exec("lo", "redis-cli", "shutdown", "nosave", timeout=10)
        redis.stop()
