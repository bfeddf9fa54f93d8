"""Socket-level escapes from a kernel prison (issue "tenant isolation", class "Sockets").

Each test is an attack by a static binary (or root's raw socket) in a kernel prison, judged on
the wire (scapy) and by what host-side sockets really received:

1. unspecified destinations (`::`, `::ffff:0.0.0.0`, 0.0.0.0) become loopback inside the
   kernel *after* the connect/sendmsg programs ran: they must reach the prison's own address,
   never the host's 127.0.0.1 / ::1; and the egress filter drops whatever still heads there;
2. protocols whose hooks the kernel skips (UDP-Lite has no pre_connect; ping sockets have their
   own bind and no sendmsg hook; MPTCP, ...) cannot be opened at all;
3. a wildcard bind holds the prison's primary address only, never the port on every address;
4. a SO_REUSEPORT group (or a UDP SO_REUSEADDR pair) never spans two prisons, even on an
   address two prisons share.
"""
import os
import socket
import subprocess
import threading
import time

import pytest

from support.daemon import Daemon, prisonctl_cmd, wait_for
from support.fixtures import free_port
from support.wire import Wire

IPPROTO_UDPLITE, IPPROTO_MPTCP = 136, 262
LOOPBACKS = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

PRISONS = {  # name: (ip4 list, ip6 list, allow raw)
    "k": (["127.0.3.1"], ["fd00:3::1"], False),
    "kraw": (["127.0.5.1"], ["fd00:5::1"], True),
    "k2": (["127.0.6.1", "127.0.6.2"], ["fd00:6::1", "fd00:6::2"], False),
    "v": (["127.0.8.1"], ["fd00:8::1"], False),   # a dual-stack victim ...
    "x": (["127.0.9.1"], ["fd00:9::1"], False),   # ... and its neighbour
    "sa": (["127.0.7.1"], ["fd00:7::1"], False),  # sa and sb share both their addresses
    "sb": (["127.0.7.1"], ["fd00:7::1"], False),
}


def config(prisons=PRISONS) -> str:
    body = "prisons:\n"
    for name, (ip4, ip6, raw) in prisons.items():
        body += f"  {name}:\n    enforce: kernel\n    ip4: [{', '.join(ip4)}]\n"
        body += "    ip6: [" + ", ".join(f'"lo|{a}"' for a in ip6) + "]\n"
        if raw:
            body += "    allow: {raw_sockets: true}\n"
    return body


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    d = Daemon(str(tmp_path_factory.mktemp("sockets")), config()).start()
    yield d
    try:
        assert d.stop() == 0, d.log()[-4000:]
    finally:
        d.remove_cgroups()


@pytest.fixture(scope="module")
def tool(nettool_static):
    return nettool_static


def run(d, prison, *argv, timeout=20) -> str:
    r = d.exec(prison, *map(str, argv), timeout=timeout)
    return r.stdout.decode() + r.stderr.decode()


class Service:
    """A program in a prison that holds a socket (a listener, a UDP receiver) until stopped."""

    def __init__(self, d, prison, *argv):
        self.proc = subprocess.Popen(prisonctl_cmd() + ["--socket", d.socket, "exec", prison, "--", *map(str, argv)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.first = self.proc.stdout.readline().decode().strip()
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode().strip())

    @property
    def ok(self) -> bool:
        return self.first.startswith("ok local=")

    @property
    def accepted(self) -> int:
        return sum(1 for line in self.lines if line.startswith("ok local="))

    def stop(self) -> list[str]:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._t.join(5)
        return self.lines


# ---------------------------------------------------------------- 1. unspecified destinations


class HostLoopback:
    """What listens on the host's own 127.0.0.1 and ::1 at one port: TCP listeners and UDP
    sockets (and, for the UDP-Lite attack, a UDP-Lite socket) that record what reached them."""

    def __init__(self, port, udplite=False):
        self.port = port
        self.socks = []
        for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            t = socket.socket(fam, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((addr, port))
            t.listen(16)
            u = socket.socket(fam, socket.SOCK_DGRAM, IPPROTO_UDPLITE if udplite else 0)
            u.bind((addr, port))
            self.socks += [t, u]

    def reached(self) -> list[str]:
        """Connections waiting to be accepted and datagrams waiting to be read."""
        got = []
        for s in self.socks:
            s.setblocking(False)
            try:
                if s.type == socket.SOCK_STREAM:
                    c, peer = s.accept()
                    c.close()
                    got.append(f"tcp from {peer[0]} to {s.getsockname()[0]}")
                else:
                    _, peer = s.recvfrom(100)
                    got.append(f"udp from {peer[0]} to {s.getsockname()[0]}")
            except BlockingIOError:
                pass
        return got

    def close(self):
        for s in self.socks:
            s.close()


def to_loopback(wire, port) -> list[tuple[str, str]]:
    return [(s, d) for s, d in wire.syns(port) + wire.udp(port) if d in LOOPBACKS]


UNSPECIFIED = {  # name: (prison, nettool arguments; PORT stands for the port)
    "tcp connect [::]": ("k", ["connect", "::", "PORT"]),
    "tcp connect [::] from ::ffff:<prison ip4>": ("k", ["bound-connect", "::ffff:127.0.3.1", "::", "PORT"]),
    "tcp connect [::ffff:0.0.0.0]": ("k", ["v4mapped", "0.0.0.0", "PORT"]),
    "tcp connect 0.0.0.0": ("k", ["connect", "0.0.0.0", "PORT"]),
    "udp sendto [::]": ("k", ["udp", "sendto", "::", "PORT"]),
    "udp connect [::]": ("k", ["udp-connect", "::", "PORT"]),
    "udp sendto [::] from ::ffff:<prison ip4>": ("k", ["udp-bound", "::ffff:127.0.3.1", "::", "PORT"]),
    "udp sendto [::ffff:0.0.0.0]": ("k", ["udp", "sendto", "::ffff:0.0.0.0", "PORT"]),
    "udp sendto 0.0.0.0": ("k", ["udp", "sendto", "0.0.0.0", "PORT"]),
    # root's raw socket, its own source, to the host's 127.0.0.1: no hook runs; egress decides
    "raw datagram to 127.0.0.1 (allow.raw_sockets)": ("kraw", ["raw-forge", "127.0.5.1", "127.0.0.1", "PORT"]),
}


@pytest.mark.parametrize("attempt", list(UNSPECIFIED))
def test_unspecified_destinations_never_reach_the_hosts_loopback(jail, tool, attempt):
    prison, argv = UNSPECIFIED[attempt]
    port = free_port()
    host = HostLoopback(port)
    try:
        with Wire() as wire:
            out = run(jail, prison, tool, *(port if a == "PORT" else a for a in argv))
        reached = host.reached()
    finally:
        host.close()
    assert not reached and not to_loopback(wire, port), f"{attempt}: escaped: {reached} {to_loopback(wire, port)}; {out}"
    ip4, ip6, _ = PRISONS[prison]
    own = set(ip4) | set(ip6) | {f"::ffff:{a}" for a in ip4}
    packets = wire.syns(port) + wire.udp(port)
    assert all(s in own and d in own for s, d in packets), packets  # what left went to the prison itself


def test_egress_drops_to_loopback_are_counted(jail, tool):
    before = jail.show("kraw")["kernel_counters"]["egress_dropped"]
    port = free_port()
    host = HostLoopback(port)
    try:
        out = run(jail, "kraw", tool, "raw-forge", "127.0.5.1", "127.0.0.1", port)
        assert not host.reached(), out
    finally:
        host.close()
    wait_for(lambda: jail.show("kraw")["kernel_counters"]["egress_dropped"] >= before + 1, what="the drop counted")


# A host client bound to the host's own 127.0.0.1 / ::1 no longer reaches a prison at all (its
# packets would look like the prison's own localhost to its services):
# test_localhost_escape.py's test_a_host_client_from_the_real_loopback_never_reaches_the_prison.


# ---------------------------------------------------------------- 2. protocols the hooks miss


@pytest.fixture(scope="module")
def pings_allowed():
    """Ping sockets need the caller's group in net.ipv4.ping_group_range (this suite's own
    network namespace: nothing of the host's changes)."""
    path = "/proc/sys/net/ipv4/ping_group_range"
    with open(path) as fh:
        before = fh.read().strip()
    with open(path, "w") as fh:
        fh.write("0 2147483647")
    yield
    with open(path, "w") as fh:
        fh.write(before.replace("\t", " "))


SOCKETS = {  # name: (prison, family, type, protocol, expected)
    "tcp (protocol 0)": ("k", 2, 1, 0, "ok"),
    "tcp (IPPROTO_TCP)": ("k", 2, 1, 6, "ok"),
    "tcp6 (protocol 0)": ("k", 10, 1, 0, "ok"),
    "udp (protocol 0)": ("k", 2, 2, 0, "ok"),
    "udp (IPPROTO_UDP)": ("k", 2, 2, 17, "ok"),
    "udp6 (protocol 0)": ("k", 10, 2, 0, "ok"),
    "UDP-Lite": ("k", 2, 2, IPPROTO_UDPLITE, "EPROTONOSUPPORT"),
    "UDP-Lite over IPv6": ("k", 10, 2, IPPROTO_UDPLITE, "EPROTONOSUPPORT"),
    "MPTCP": ("k", 2, 1, IPPROTO_MPTCP, "EPROTONOSUPPORT"),
    "MPTCP over IPv6": ("k", 10, 1, IPPROTO_MPTCP, "EPROTONOSUPPORT"),
    "ICMP ping socket": ("k", 2, 2, 1, "EPROTONOSUPPORT"),
    "ICMPv6 ping socket": ("k", 10, 2, 58, "EPROTONOSUPPORT"),
    "ICMP ping socket (allow.raw_sockets)": ("kraw", 2, 2, 1, "EPROTONOSUPPORT"),
    "raw": ("k", 2, 3, 17, "EPERM"),
    "raw (allow.raw_sockets)": ("kraw", 2, 3, 17, "ok"),
}


@pytest.mark.parametrize("name", list(SOCKETS))
def test_only_tcp_udp_and_allowed_raw_sockets_open(jail, tool, pings_allowed, name):
    prison, fam, typ, proto, expected = SOCKETS[name]
    out = run(jail, prison, tool, "socket3", fam, typ, proto)
    if expected == "ok":
        assert out.startswith("ok fd"), f"{name}: {out}"
    else:
        assert f"{expected} socket" in out, f"{name}: {out}"


def test_udplite_connect_cannot_reach_the_hosts_loopback(jail, tool):
    """UDP-Lite's proto has no pre_connect, so connect() runs no connect4 program: bound to the
    prison's own address, a datagram to 127.0.0.1 would leave with a prison source."""
    port = free_port()
    host = HostLoopback(port, udplite=True)
    try:
        with Wire() as wire:
            out = run(jail, "k", tool, "dgram", IPPROTO_UDPLITE, "127.0.3.1", "127.0.0.1", port)
        reached = host.reached()
    finally:
        host.close()
    assert not reached, f"escaped: {reached}; {out}"
    assert "EPROTONOSUPPORT socket" in out, out


def test_a_ping_socket_cannot_bind_a_foreign_address(jail, tool, pings_allowed):
    """Ping sockets have their own bind (no bind4 program runs): one could hold 127.0.0.1."""
    out = run(jail, "k", tool, "dgram", 1, "127.0.0.1", "-", 0)
    assert "local=127.0.0.1" not in out, out
    assert "EPROTONOSUPPORT socket" in out, out


# ---------------------------------------------------------------- 3. wildcard binds


# name: (prison, serve arguments, the address it must hold, host addresses that must stay free).
# `[::]` holds `::` with an ephemeral port, never the port asked for (binding any other IPv6
# address would make it v6only: programs.py, bind6); its connections come by sk_lookup.
WILDCARDS = {
    "0.0.0.0, two IPv4 addresses": ("k2", ["0.0.0.0"], "127.0.6.1", ["127.0.0.9", "127.0.6.2"]),
    "[::] dual-stack, several addresses": ("k2", ["::", "0"], "[::]", ["127.0.0.9", "fd00:ff::9", "fd00:6::2"]),
    "[::] v6only, several addresses": ("k2", ["::", "1"], "[::]", ["fd00:ff::9", "fd00:6::2"]),
    "[::ffff:0.0.0.0], several addresses": ("k2", ["::ffff:0.0.0.0", "0"], "[::ffff:127.0.6.1]", ["127.0.0.9"]),
    "[::] dual-stack, one address each": ("k", ["::", "0"], "[::]", ["127.0.0.9", "fd00:ff::9"]),
}


@pytest.mark.parametrize("name", list(WILDCARDS))
def test_a_wildcard_listener_holds_only_the_primary_address(jail, tool, name):
    prison, args, holds, free = WILDCARDS[name]
    port = free_port()
    srv = Service(jail, prison, tool, "serve", args[0], port, *args[1:])
    try:
        if holds == "[::]":
            local = srv.first.removeprefix("ok local=[::]:")
            assert local != srv.first and local.isdigit() and int(local) != port, f"{name}: {srv.first}"
        else:
            assert srv.first == f"ok local={holds}:{port}", f"{name}: {srv.first}"
        for addr in free:  # the port stays free on the host's addresses (and the prison's others)
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.bind((addr, port))
                s.listen(1)
    finally:
        srv.stop()


def test_a_wildcard_udp_bind_holds_only_the_primary_address(jail, tool):
    port = free_port()
    srv = Service(jail, "k2", tool, "udp-recv", "0.0.0.0", port, "none", 30)
    try:
        assert srv.first == f"ok local=127.0.6.1:{port}", srv.first
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.9", port))
    finally:
        srv.stop()


# ---------------------------------------------------------------- 4. SO_REUSEPORT groups


def connect_many(addr, port, n=16) -> int:
    """n connections from the host; how many were answered."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ok = 0
    for _ in range(n):
        with socket.socket(fam, socket.SOCK_STREAM) as c:
            c.settimeout(1.0)
            try:
                c.connect((addr, port))
                ok += c.recv(10) == b"hello\n"
            except OSError:
                pass
    return ok


def test_a_neighbours_dual_stack_listener_cannot_join_the_group(jail, tool):
    """The reported attack: v listens on [::] with SO_REUSEPORT, x does the same and takes
    (here: drops, through its ingress filter) half of v's connections."""
    port = free_port()
    victim = Service(jail, "v", tool, "serve-rp", "::", port, 0)
    attacker = Service(jail, "x", tool, "serve-rp", "::", port, 0)
    try:
        assert victim.ok, victim.first
        answered = connect_many("fd00:8::1", port)
        time.sleep(0.3)
        assert (answered, victim.accepted, attacker.accepted) == (16, 16, 0), (victim.first, attacker.first)
    finally:
        victim.stop()
        attacker.stop()


@pytest.mark.parametrize("addr", ["127.0.7.1", "fd00:7::1"])
def test_a_prison_sharing_the_address_cannot_join_the_group(jail, tool, addr):
    port = free_port()
    owner = Service(jail, "sa", tool, "serve-rp", addr, port)
    intruder = Service(jail, "sb", tool, "serve-rp", addr, port)
    try:
        assert owner.ok, owner.first
        answered = connect_many(addr, port)
        time.sleep(0.3)
        assert intruder.first.startswith("err errno=98 EADDRINUSE bind"), intruder.first
        assert (answered, owner.accepted, intruder.accepted) == (16, 16, 0)
    finally:
        owner.stop()
        intruder.stop()


class Sender:
    """The host sending datagrams to addr:port as fast as it can while the block runs."""

    def __init__(self, addr, port):
        self.dst, self.sent, self.stop_flag = (addr, port), 0, False
        self.fam = socket.AF_INET6 if ":" in addr else socket.AF_INET

    def __enter__(self):
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        with socket.socket(self.fam, socket.SOCK_DGRAM) as s:
            while not self.stop_flag:
                s.sendto(b"for sa", self.dst)
                self.sent += 1
                if self.sent % 64 == 0:
                    time.sleep(0.001)

    def __exit__(self, *exc):
        self.stop_flag = True
        self.t.join()


@pytest.mark.parametrize("reuse", ["addr", "port"])
def test_a_prison_sharing_the_address_cannot_share_a_udp_port(jail, tool, reuse):
    port = free_port()
    owner = Service(jail, "sa", tool, "udp-recv", "127.0.7.1", port, reuse, 6)
    try:
        assert owner.ok, owner.first
        with Sender("127.0.7.1", port) as sender:
            intruder = Service(jail, "sb", tool, "udp-recv", "127.0.7.1", port, reuse, 2)
            intruder.proc.wait(15)
            lines = intruder.stop()
        assert intruder.first.startswith("err errno=98 EADDRINUSE bind"), (intruder.first, lines[-1:])
        assert sender.sent > 0
    finally:
        owner.stop()


def test_datagrams_never_reach_a_refused_bind(jail, tool):
    """A refused bind held the port for a moment (the kernel hashes a UDP socket before the
    post_bind program runs): datagrams for the owner that arrived then must not be readable."""
    port = free_port()
    owner = Service(jail, "sa", tool, "udp-recv", "127.0.7.1", port, "addr", 20)
    try:
        assert owner.ok, owner.first
        with Sender("127.0.7.1", port):
            out = run(jail, "sb", tool, "udp-steal", "127.0.7.1", port, 20000, timeout=60)
        assert out.strip() == "bound=0 stolen=0", out
    finally:
        owner.stop()


def test_reuseport_still_works_within_one_prison(jail, tool):
    for prison, addr in (("sa", "127.0.7.1"), ("k", "127.0.3.1")):
        port = free_port()
        a = Service(jail, prison, tool, "serve-rp", addr, port)
        b = Service(jail, prison, tool, "serve-rp", addr, port)
        try:
            assert a.ok and b.ok, (a.first, b.first)
            # each new 4-tuple is hashed to one of the two: 32 connections reach both
            assert connect_many(addr, port, 32) == 32
            time.sleep(0.3)
            assert a.accepted > 0 and b.accepted > 0 and a.accepted + b.accepted == 32
        finally:
            a.stop()
            b.stop()


def refused(d, prison, tool, addr, port) -> str:
    """Try to join addr:port with SO_REUSEPORT from prison: '' if refused, else what it got."""
    s = Service(d, prison, tool, "serve-rp", addr, port)
    s.stop()
    return "" if s.first.startswith("err errno=98 EADDRINUSE bind") else s.first


def test_a_released_port_is_free_for_the_other_prison(jail, tool):
    """The claim goes with the last socket that held it; an accepted connection holds none."""
    port = free_port()
    owner = Service(jail, "sa", tool, "serve-rp", "127.0.7.1", port)
    try:
        assert owner.ok, owner.first
        assert connect_many("127.0.7.1", port, 2) == 2  # accepted, answered and closed
        assert refused(jail, "sb", tool, "127.0.7.1", port) == ""
    finally:
        owner.stop()
    out = run(jail, "sb", tool, "bind", "127.0.7.1", port)
    assert out.startswith(f"ok local=127.0.7.1:{port}"), out
    out = run(jail, "sa", tool, "bind", "127.0.7.1", port)  # and back again
    assert out.startswith(f"ok local=127.0.7.1:{port}"), out


SHARED_PAIR = {"sa": PRISONS["sa"], "sb": PRISONS["sb"]}


def claim_programs(d, prison) -> list[str]:
    """The names of the claim programs attached to a prison's cgroup."""
    from prisond.kernel import syscall as S
    cg = os.open(os.path.join(d.cgroup_dir(), prison), os.O_RDONLY)
    try:
        return [name for name in ("post_bind4", "post_bind6", "sock_release") if S.prog_query(cg, S.ATTACH[name])]
    finally:
        os.close(cg)


def test_claims_survive_a_killed_daemon(daemon, tool):
    """The claim programs sit on the sharing prisons only (the others pay nothing for them); a
    new daemon finds them there, whichever prison it adopts the other programs from."""
    d = daemon(config({"a": PRISONS["k"], **SHARED_PAIR, "z": PRISONS["x"]}))
    assert (claim_programs(d, "a"), claim_programs(d, "z")) == ([], [])
    assert claim_programs(d, "sa") == claim_programs(d, "sb") == ["post_bind4", "post_bind6", "sock_release"]
    port = free_port()
    owner = Service(d, "sa", tool, "serve-rp", "127.0.7.1", port)
    try:
        assert owner.ok, owner.first
        d.kill9()
        d.start()  # adopts the programs and the claims
        assert "adopted" in d.log()
        assert refused(d, "sb", tool, "127.0.7.1", port) == ""
        assert (claim_programs(d, "a"), len(claim_programs(d, "sa"))) == ([], 3)
        # from either end: the core programs of one prison, the claim programs of another
        from prisond.kernel import syscall as S
        from prisond.kernel.enforce import KernelLayer
        paths = [os.path.join(d.cgroup_dir(), p) for p in ("a", "sa", "sb", "z")]
        cg = os.open(paths[1], os.O_RDONLY)
        attached = S.prog_query(cg, S.ATTACH["post_bind4"])
        os.close(cg)
        for order in (paths, paths[1:2] + paths[:1] + paths[2:]):
            layer = KernelLayer.open(order)
            try:
                assert layer.adopted and [layer.prog_ids["post_bind4"]] == attached
            finally:
                layer.close()
    finally:
        owner.stop()
    wait_for(lambda: run(d, "sb", tool, "bind", "127.0.7.1", port).startswith("ok local="),
             what="the claim released after the adopting daemon took over")


def test_an_address_shared_by_a_reload_is_refused_while_its_holder_runs_untracked(daemon, tool):
    """sa ran alone: its binds were not recorded.  A reload that gives sb the same address
    must not let sb in beside sa's unrecorded sockets: sb fails until sa restarts."""
    d = daemon(config({"sa": PRISONS["sa"]}))
    port = free_port()
    owner = Service(d, "sa", tool, "serve-rp", "127.0.7.1", port)
    try:
        assert owner.ok, owner.first
        d.write_config(config(SHARED_PAIR))
        r = d.ctl("reload")  # applied, but sb did not come up: said, and exit 1
        assert r.returncode == 1 and "failed: sb: " in r.stdout.decode(), (r.stdout, r.stderr)
        sb = {p["name"]: p for p in d.call("prison.list")}["sb"]
        assert sb["state"] == "failed" and "restart" in sb["reason"], sb
    finally:
        owner.stop()
    assert d.ctl("restart", "sa").returncode == 0
    r = d.ctl("start", "sb")
    assert r.returncode == 0, r.stderr
    out = run(d, "sb", tool, "bind", "127.0.7.1", port)
    assert out.startswith(f"ok local=127.0.7.1:{port}"), out


def test_nginx_reuseport_workers_in_a_prison_with_a_shared_address(daemon, tool, tmp_path):
    """nginx `reuseport` with two workers: the master binds one socket per worker to the same
    address and port (all one prison: the claim is shared); the other prison stays out."""
    import urllib.request
    from support.daemon import let_others_reach
    site = tmp_path / "site"  # what the prison sees (not tmp_path: the daemon's runtime dir is there)
    root = site / "www"
    root.mkdir(parents=True)
    (root / "index.html").write_text("nginx in sa\n")
    let_others_reach(str(root))
    port = free_port()
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
    server {{ listen 127.0.7.1:{port} reuseport; root {root}; }}
}}
""")
    d = daemon(config(SHARED_PAIR).replace(
        '  sb:', f'    mounts: ["{site}"]\n'
        f'    exec:\n      start: [/usr/sbin/nginx, -c, "{conf}", -p, "{site}"]\n  sb:', 1))
    wait_for(lambda: d.show("sa")["procs"] == 4, what="nginx's master and two workers (and the prison's init)")
    wait_for(lambda: any(s["local"] == f"127.0.7.1:{port}" and s["state"] == "listen"
                         for p in d.show("sa")["processes"] for s in p["sockets"]), what="nginx listening")
    for _ in range(8):
        assert urllib.request.urlopen(f"http://127.0.7.1:{port}/", timeout=5).read() == b"nginx in sa\n"
    assert refused(d, "sb", tool, "127.0.7.1", port) == ""
    assert claim_programs(d, "sa") == ["post_bind4", "post_bind6", "sock_release"]
