"""Nobody but the prison itself may look like its localhost (programs.py, "Localhost").

Inside a kernel prison a connection through 127.0.0.1 / ::1 looks like localhost to the
prison's services (tests/integration/test_localhost.py).  Services trust localhost (redis'
protected mode, pg_hba.conf's `host ... 127.0.0.1/32 trust`), and on the wire such a
connection carries the prison's own address at both ends, which others can use too:

- a host client: unbound, its source towards the prison's address *is* that address (the
  local route's preferred source), or bound to it on purpose;
- a neighbour prison on another address;
- a prison sharing the address (both have exactly that one), whose own "localhost" is the same
  address, so that its client of 127.0.0.1 reaches this prison's server.

Each must be seen with its real address.  A rule such as "peer address == local address ->
loopback" fails the host and shared-address attacks; "the peer socket addressed localhost",
without whose prison it was, fails the shared-address ones; "the receiving UDP socket sent to
localhost" fails the squatter's answer.
"""
import socket
import time

import pytest

from support.daemon import Daemon
from support.fixtures import free_port
from support.localhost import Server, fields, host, probe

X4, X6 = "127.0.4.1", "fd00:4::1"   # the victim
Y4, Y6 = "127.0.5.1", "fd00:5::1"   # a neighbour
S4, S6 = "127.0.7.1", "fd00:7::1"   # shared by s1 (the victim) and s2
LOOPBACKS = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def config() -> str:
    body = "prisons:\n"
    for name, (a4, a6) in {"x": (X4, X6), "y": (Y4, Y6), "s1": (S4, S6), "s2": (S4, S6)}.items():
        body += f'  {name}:\n    enforce: kernel\n    ip4: [{a4}]\n    ip6: ["lo|{a6}"]\n'
    return body


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    d = Daemon(str(tmp_path_factory.mktemp("lohost")), config()).start()
    yield d
    try:
        assert d.stop() == 0, d.log()[-4000:]
    finally:
        d.remove_cgroups()


def host_tcp(addr: str, port: int, bind: str | None = None) -> tuple[str, str]:
    """A host client: (its address, the peer's) as the kernel reports them to it."""
    with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        if bind:
            c.bind((bind, 0))
        c.connect((addr, port))
        me, peer = c.getsockname()[0], c.getpeername()[0]
        c.sendall(b"hi\n")
        assert c.recv(100) == b"hello\n"
    return me, peer


def seen_by(srv: Server) -> dict:
    return {k: host(v) for k, v in fields(srv.line()).items()}


TCP_ATTACKS = {  # name: (victim prison, its address, who connects: ("host", bind) or (prison, destination))
    "host client, unbound (its source is the prison's address)": ("x", X4, ("host", None)),
    "host client bound to the prison's address": ("x", X4, ("host", X4)),
    "host client, unbound, IPv6": ("x", X6, ("host", None)),
    "host client bound to the prison's IPv6 address": ("x", X6, ("host", X6)),
    "neighbour prison": ("x", X4, ("y", X4)),
    "neighbour prison, IPv6": ("x", X6, ("y", X6)),
    "prison sharing the address, to it": ("s1", S4, ("s2", S4)),
    "prison sharing the address, through its own 127.0.0.1": ("s1", S4, ("s2", "127.0.0.1")),
    "prison sharing the address, through its own ::1": ("s1", S6, ("s2", "::1")),
    "host client bound to a shared address": ("s1", S4, ("host", S4)),
}


@pytest.mark.parametrize("name", list(TCP_ATTACKS))
def test_a_tcp_client_from_outside_the_prison_is_seen_with_its_real_address(jail, name):
    victim, addr, (who, arg) = TCP_ATTACKS[name]
    port = free_port()
    srv = Server(jail, victim, "tcp-serve", addr, port)
    try:
        assert srv.first.startswith("listening"), srv.first
        if who == "host":
            me, peer = host_tcp(addr, port, arg)
            assert peer == addr
        else:
            client = fields(probe(jail, who, "tcp-connect", arg, port))
            assert client.get("reply") == "hello", client
            me = host(client["sock"])
            if arg not in LOOPBACKS:  # it named the address: it sees that, not loopback
                assert host(client["peer"]) == addr, client
        server = seen_by(srv)
    finally:
        srv.stop()
    # the server sees the client's real address (its own for the host and the sharer)
    assert server == {"accept": me if me not in LOOPBACKS else addr, "peer": server["accept"], "sock": addr}, server
    assert not LOOPBACKS & set(server.values()), f"{name}: {server}"


UDP_ATTACKS = {  # name: (victim prison, its address, who sends: ("host", bind) or (prison, destination),
    #                 the source the victim must see)
    "host datagram, unbound (its source is the prison's address)": ("x", X4, ("host", None), X4),
    "host datagram from the prison's address": ("x", X4, ("host", X4), X4),
    "host datagram from the prison's IPv6 address": ("x", X6, ("host", X6), X6),
    "neighbour prison": ("x", X4, ("y", X4), Y4),
    "prison sharing the address, through its own 127.0.0.1": ("s1", S4, ("s2", "127.0.0.1"), S4),
    "prison sharing the address, through its own ::1": ("s1", S6, ("s2", "::1"), S6),
    "prison sharing the address, to it": ("s1", S4, ("s2", S4), S4),
}


@pytest.mark.parametrize("name", list(UDP_ATTACKS))
def test_a_datagram_from_outside_the_prison_shows_its_real_source(jail, name):
    victim, addr, (who, arg), real = UDP_ATTACKS[name]
    port = free_port()
    srv = Server(jail, victim, "udp-serve", addr, port)
    try:
        assert srv.first.startswith("listening"), srv.first
        if who == "host":
            with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                if arg:
                    s.bind((arg, 0))
                s.sendto(b"ping", (addr, port))
                s.recvfrom(100)  # the answer came back
        else:
            out = fields(probe(jail, who, "udp-ask", arg, port))
            assert out.get("reply") == "pong:ping", out
        source = host(fields(srv.line())["from"])
    finally:
        srv.stop()
    assert source == real, f"{name}: the server saw {source}"


@pytest.mark.parametrize("loopback,addr", [("127.0.0.1", X4), ("::1", X6)])
def test_a_host_squatting_the_prisons_port_does_not_answer_as_localhost(jail, loopback, addr):
    """The prison's client asks 127.0.0.1:PORT, where nothing of the prison listens; a host
    socket bound to the prison's address and that port gets the datagram (the rewrite sends it
    there) and answers.  The answer must show the host socket's real address: a resolver
    (glibc checks the answer's source) must not take a host user's answer as its own
    localhost's."""
    port = free_port()
    with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((addr, port))
        import threading

        def answer():
            squatter.settimeout(10)
            try:
                data, peer = squatter.recvfrom(100)
                squatter.sendto(b"pong:" + data, peer)
            except OSError:
                pass
        t = threading.Thread(target=answer, daemon=True)
        t.start()
        out = fields(probe(jail, "x", "udp-ask", loopback, port))
        t.join(10)
    assert out.get("reply") == "pong:ping", out  # the squatter did get it, and answered
    assert host(out["from"]) == addr, out


@pytest.mark.parametrize("loopback,addr", [("127.0.0.1", X4), ("::1", X6)])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_host_client_from_the_real_loopback_never_reaches_the_prison(jail, loopback, addr, proto):
    """A host user who binds the host's own 127.0.0.1 (or ::1) and connects to the prison's
    address came from loopback for real: its service would take it for the prison's own
    localhost (redis's protected mode, pg_hba's 127.0.0.1/32).  Dropped at the prison's
    ingress (before: answered, as localhost; found by an outside attack)."""
    port = free_port()
    srv = Server(jail, "x", f"{proto}-serve", addr, port)
    try:
        assert srv.first.startswith("listening"), srv.first
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM) as c:
            c.settimeout(2)
            c.bind((loopback, 0))
            if proto == "tcp":
                with pytest.raises(OSError):  # its SYN dropped: a timeout
                    c.connect((addr, port))
            else:
                c.sendto(b"ping", (addr, port))
        time.sleep(1.0)
        assert srv.lines == [], srv.lines  # the server heard nothing
    finally:
        srv.stop()
