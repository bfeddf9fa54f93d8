"""FreeBSD's wildcard on a shared stack (kernel layer, programs.py "Wildcards"): a prison's
listener on 0.0.0.0 or `[::]` answers on every address of the prison and nothing else, any
number of prisons hold the same wildcard port, a specific listener wins on its address, an
IPv4-only prison's AF_INET6 sockets carry IPv4 only, and the steering survives a daemon that
was killed.  Real packets from outside the prisons; what each connection reached is the name
its listener answers with."""
import errno
import json
import os
import socket
import subprocess
import sys
import time

from support.daemon import prisonctl_cmd, wait_for
from support.fixtures import free_port

LISTENER = r'''
import socket, sys
fam, host, port, name, v6only = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
s = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == "6":
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
s.bind((host, port))
s.listen(64)
print("listening", s.getsockname(), flush=True)
while True:
    c, _ = s.accept()
    c.sendall(name.encode())
    c.close()
'''

CLIENT6 = r'''
import errno, socket, sys
s = socket.socket(socket.AF_INET6)
s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
'''


def _script(tmp_path, name: str, text: str) -> str:
    path = str(tmp_path / name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def listen_cmd(script: str, fam: str, host: str, port: int, name: str, v6only: bool = False) -> str:
    """A service line: python3 listening on host:port that answers `name`."""
    return json.dumps([sys.executable, "-u", script, fam, host, str(port), name, "1" if v6only else "0"])


def reach(host: str, port: int, timeout: float = 3.0) -> str:
    """What a connection from outside every prison gets: the listener's name, 'refused' (a
    reset: nothing listens there) or 'timeout' (a SYN taken by a socket that dropped it)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return s.recv(64).decode() or "closed"
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"  # taken by a listener that closed before accepting it
        except (TimeoutError, socket.timeout):
            return "timeout"


def http_get(host: str, port: int, timeout: float = 3.0) -> str:
    """The body of GET / from host:port, or what reach() says of a failure."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return data.partition(b"\r\n\r\n")[2].decode().strip()
        except ConnectionRefusedError:
            return "refused"
        except (TimeoutError, socket.timeout):
            return "timeout"


def answered(host: str, port: int, name: str) -> None:
    wait_for(lambda: reach(host, port, 1.0) == name, what=f"{name} to answer on {host}:{port}")


def prison(name: str, ip4=(), ip6=(), start: str | None = None) -> str:
    # isolate: false: the servers are scripts in the test's /tmp, which an isolated prison
    # does not see (tests/services runs Debian's nginx in isolated prisons on the same steering)
    text = f"  {name}:\n    enforce: kernel\n    isolate: false\n"
    if ip4:
        text += f"    ip4: [{', '.join(ip4)}]\n"
    if ip6:
        text += "    ip6: [" + ", ".join(f'"lo|{a}"' for a in ip6) + "]\n"
    if start:
        text += f"    exec:\n      start: {start}\n"
    return text


def exec_bg(d, name: str, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(prisonctl_cmd() + ["--socket", d.socket, "exec", name, "--", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def sk_lookup_links() -> list[dict]:
    """(Other modules' daemons may be running in the suite's namespace too: compare with
    OTHERS, what was there before the test's daemon started.)"""
    """sk_lookup links on this network namespace (the suite's own)."""
    ino = os.stat("/proc/self/ns/net").st_ino
    out = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [link for link in json.loads(out or "[]")
            if link.get("type") == "netns" and link.get("netns_ino") == ino and link.get("attach_type") == "sk_lookup"]


def test_wildcard_listeners_answer_on_every_address_of_their_own_prison_only(daemon, tmp_path):
    """(a) Two prisons with two addresses each hold 0.0.0.0:port at once; each address reaches
    its own prison; the host's 127.0.0.1 listener on that port and a third prison's address are
    left alone."""
    others = len(sk_lookup_links())
    script = _script(tmp_path, "listen.py", LISTENER)
    port = free_port()
    host = socket.socket()
    host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host.bind(("127.0.0.1", port))
    host.listen(8)
    d = daemon("prisons:\n"
               + prison("a", ip4=["127.0.4.1", "127.0.4.2"], start=listen_cmd(script, "4", "0.0.0.0", port, "a"))
               + prison("b", ip4=["127.0.4.3", "127.0.4.4"], start=listen_cmd(script, "4", "0.0.0.0", port, "b"))
               + prison("c", ip4=["127.0.4.5"], start='[sleep, "3600"]'))
    try:
        answered("127.0.4.1", port, "a")
        answered("127.0.4.3", port, "b")
        assert reach("127.0.4.2", port) == "a"  # a secondary address: steered
        assert reach("127.0.4.4", port) == "b"
        assert reach("127.0.4.5", port) == "refused"  # a third prison's address: nothing listens
        c = socket.create_connection(("127.0.0.1", port), timeout=3)  # the host's own listener
        peer, _ = host.accept()
        c.close()
        peer.close()
        assert d.show("a")["state"] == "running" and d.show("b")["state"] == "running"
    finally:
        host.close()
    assert len(sk_lookup_links()) == others + 1
    for name in ("a", "b"):
        assert d.ctl("stop", name).returncode == 0
    assert reach("127.0.4.2", port) == "refused"
    assert len(sk_lookup_links()) == others + 1  # c's address is still steered
    assert d.ctl("stop", "c").returncode == 0
    assert len(sk_lookup_links()) == others  # the last prison stopped: nothing left on the namespace
    assert d.stop() == 0


def test_a_wildcard_never_takes_another_prisons_or_the_hosts_connections(daemon, tmp_path):
    """(f) The attack: prison a listens on the wildcard of a port nothing else listens on.  A
    connection to prison b's address, to a third prison's address or to the host's 127.0.0.1
    on that port must be refused (nothing listens there), promptly: a steering that handed it
    to a's socket (whose ingress filter drops it) would leave the client hanging instead; and
    b's own listener on another port keeps its connections."""
    script = _script(tmp_path, "listen.py", LISTENER)
    port, other = free_port(), free_port()
    d = daemon("prisons:\n"
               + prison("a", ip4=["127.0.4.1", "127.0.4.2"], start=listen_cmd(script, "4", "0.0.0.0", port, "a"))
               + prison("b", ip4=["127.0.4.3", "127.0.4.4"],
                        start=listen_cmd(script, "4", "0.0.0.0", other, "b"))
               + prison("c", ip4=["127.0.4.5"], start='[sleep, "3600"]'))
    answered("127.0.4.2", port, "a")
    answered("127.0.4.4", other, "b")
    for host in ("127.0.4.3", "127.0.4.4", "127.0.4.5", "127.0.0.1"):
        assert reach(host, port) == "refused", host
    assert reach("127.0.4.1", other) == "refused"
    assert reach("127.0.4.3", other) == "b"
    assert d.show("a")["kernel_counters"]["ingress_dropped"] == 0  # no SYN of another's reached a's socket


def test_a_dual_stack_listener_receives_ipv4_and_a_v6only_one_does_not(daemon, tmp_path):
    """(b) In a dual-stack prison, `[::]` with IPV6_V6ONLY=0 answers on the prison's IPv4 and
    IPv6 addresses (every one); with IPV6_V6ONLY=1, IPv6 only."""
    script = _script(tmp_path, "listen.py", LISTENER)
    dual, only = free_port(), free_port()
    d = daemon("prisons:\n" + prison("d", ip4=["127.0.4.6", "127.0.4.7"], ip6=["fd00:4::6", "fd00:4::7"],
                                     start=listen_cmd(script, "6", "::", dual, "dual")))
    v6only = exec_bg(d, "d", [sys.executable, "-u", script, "6", "::", str(only), "v6only", "1"])
    try:
        answered("fd00:4::6", only, "v6only")
        for host in ("127.0.4.6", "127.0.4.7", "fd00:4::6", "fd00:4::7"):
            assert reach(host, dual) == "dual", host
        assert reach("fd00:4::7", only) == "v6only"
        for host in ("127.0.4.6", "127.0.4.7"):
            assert reach(host, only) == "refused", host
    finally:
        v6only.kill()
        v6only.wait()


def test_a_specific_listener_wins_over_the_wildcard_on_its_address(daemon, tmp_path):
    """(d) A listener bound to the prison's second address takes that address's connections
    from the prison's wildcard of the same port, and gives them back when it closes."""
    script = _script(tmp_path, "listen.py", LISTENER)
    port = free_port()
    d = daemon("prisons:\n" + prison("a", ip4=["127.0.4.1", "127.0.4.2", "127.0.4.8"],
                                     start=listen_cmd(script, "4", "0.0.0.0", port, "wild")))
    answered("127.0.4.2", port, "wild")
    exact = exec_bg(d, "a", [sys.executable, "-u", script, "4", "127.0.4.2", str(port), "exact", "0"])
    try:
        answered("127.0.4.2", port, "exact")
        assert reach("127.0.4.1", port) == "wild" and reach("127.0.4.8", port) == "wild"
        for _ in range(5):
            assert reach("127.0.4.2", port) == "exact"
    finally:
        exact.kill()
        exact.wait()
    answered("127.0.4.2", port, "wild")  # the exact listener gone, the wildcard answers again


def test_an_ipv4_only_prison_runs_nginx_default_site(daemon, tmp_path):
    """(c) Debian's default site (`listen 80 default_server; listen [::]:80 default_server;`)
    in two IPv4-only prisons at once, each serving its own page on its own addresses; the
    `[::]` socket holds no port on anything (bound ::1 with an ephemeral port) and reaches no
    IPv6 peer (ENETUNREACH), while v4-mapped peers still work."""
    prisons = ""
    for name, addrs in (("n1", ["127.0.5.1", "127.0.5.2"]), ("n2", ["127.0.5.3"])):
        root = tmp_path / name
        (root / "www").mkdir(parents=True)
        (root / "www" / "index.html").write_text(name)
        conf = root / "nginx.conf"
        conf.write_text(
            f"user root;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\nworker_processes 1;\nevents {{}}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n"
            f"  proxy_temp_path {root}/proxy;\n  fastcgi_temp_path {root}/fastcgi;\n"
            f"  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n"
            f"  server {{\n    listen 80 default_server;\n    listen [::]:80 default_server;\n"
            f"    root {root}/www;\n  }}\n}}\n")
        start = json.dumps(["/usr/sbin/nginx", "-c", str(conf), "-p", str(root), "-g", "daemon off;"])
        prisons += prison(name, ip4=addrs, start=start)
    d = daemon("prisons:\n" + prisons)
    wait_for(lambda: http_get("127.0.5.1", 80, 1.0) == "n1", what="n1's nginx")
    wait_for(lambda: http_get("127.0.5.3", 80, 1.0) == "n2", what="n2's nginx")
    assert http_get("127.0.5.2", 80) == "n1"  # its second address: the `listen 80` socket, steered
    for name in ("n1", "n2"):
        assert d.show(name)["state"] == "running"
        log = (tmp_path / name / "error.log").read_text()
        assert "emerg" not in log, log
    # the [::] sockets: what they hold is ::1 with a port of the kernel's choosing, not 80
    ss = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    assert "[::]:80 " not in ss and "[::1]:80 " not in ss, ss
    client = _script(tmp_path, "client6.py", CLIENT6)
    sink = socket.socket(socket.AF_INET6)
    sink.bind(("fd00:ff::9", 0))
    sink.listen(8)
    v4sink = socket.socket()
    v4sink.bind(("127.0.0.9", 0))
    v4sink.listen(8)
    try:
        out = d.exec("n1", sys.executable, client, "fd00:ff::9", str(sink.getsockname()[1]))
        assert out.stdout.decode().strip() == "ENETUNREACH", out
        out = d.exec("n1", sys.executable, client, "::ffff:127.0.0.9", str(v4sink.getsockname()[1]))
        assert out.stdout.decode().strip() == "connected", out
    finally:
        sink.close()
        v4sink.close()


def test_an_ipv4_only_prisons_ipv6_sockets(daemon, tmp_path):
    """Item 2 on its own: socket(AF_INET6) works, a dual-stack `[::]` listener answers on
    every IPv4 address of the prison, a v6only one on none; UDP towards IPv6 fails too."""
    script = _script(tmp_path, "listen.py", LISTENER)
    dual, only = free_port(), free_port()
    d = daemon("prisons:\n" + prison("e", ip4=["127.0.5.5", "127.0.5.6"],
                                     start=listen_cmd(script, "6", "::", dual, "dual")))
    v6only = exec_bg(d, "e", [sys.executable, "-u", script, "6", "::", str(only), "v6only", "1"])
    try:
        answered("127.0.5.5", dual, "dual")
        assert reach("127.0.5.6", dual) == "dual"
        line = v6only.stdout.readline().decode()
        assert line.startswith("listening ('::', "), line
        held = int(line.split(",")[1])
        assert held != only  # it holds an ephemeral port (on `::`), not the one it asked for
        for host in ("127.0.5.5", "127.0.5.6"):
            assert reach(host, only) == "refused", host
            assert reach(host, held) == "refused", host  # v6only: no IPv4 at all
        assert reach("::1", held) == "timeout"  # the host's SYN to it is dropped by the ingress filter
        udp = ("import socket, errno\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
               "try:\n    s.sendto(b'x', ('fd00:ff::9', 9)); print('sent')\n"
               "except OSError as e:\n    print(errno.errorcode[e.errno])\n")
        out = d.exec("e", sys.executable, "-c", udp)
        assert out.stdout.decode().strip() == "ENETUNREACH", out
    finally:
        v6only.kill()
        v6only.wait()


def test_steering_survives_a_killed_daemon(daemon, tmp_path):
    """(e) SIGKILL the daemon, start another: it adopts the prison and the listener that kept
    running answers on the prison's second address again (its sockhash entry stayed with the
    prison's programs; the new daemon links a new sk_lookup program to it)."""
    others = len(sk_lookup_links())
    script = _script(tmp_path, "listen.py", LISTENER)
    port = free_port()
    d = daemon("prisons:\n" + prison("a", ip4=["127.0.4.1", "127.0.4.2"],
                                     start=listen_cmd(script, "4", "0.0.0.0", port, "a")))
    answered("127.0.4.2", port, "a")
    pid = d.show("a")["service"]["pid"]
    d.kill9()
    time.sleep(0.2)
    d.start()
    assert "adopted" in d.log()
    assert d.show("a")["service"]["pid"] == pid
    assert reach("127.0.4.2", port) == "a"
    assert reach("127.0.4.1", port) == "a"
    assert len(sk_lookup_links()) == others + 1  # one link: the dead daemon's went with its fds
    assert d.stop() == 0
    assert len(sk_lookup_links()) == others


def test_a_shared_address_is_not_steered_and_its_claims_hold(daemon, tmp_path):
    """Two prisons share 127.0.4.9 (each has exactly that IPv4 address) and each has one IPv6
    address of its own.  Their 0.0.0.0 listeners answer
    there as their primary; a port one holds there the other cannot bind (EADDRINUSE, the
    claims); the shared address is not in the steering map, so the dual-stack `[::]` of
    prison y gets no IPv4 there, and IPv6 on its own address as usual."""
    script = _script(tmp_path, "listen.py", LISTENER)
    p, q = free_port(), free_port()
    d = daemon("prisons:\n"
               + prison("x", ip4=["127.0.4.9"], ip6=["fd00:4::9"], start=listen_cmd(script, "4", "0.0.0.0", p, "x"))
               + prison("y", ip4=["127.0.4.9"], ip6=["fd00:4::a"], start=listen_cmd(script, "6", "::", q, "y")))
    answered("127.0.4.9", p, "x")
    answered("fd00:4::a", q, "y")
    assert reach("127.0.4.9", q) == "refused"  # shared: no steering to y's dual-stack socket
    assert reach("fd00:4::9", q) == "refused"  # x's IPv6 address: never y's
    out = d.exec("y", sys.executable, "-c",
                 "import socket\ns = socket.socket()\n"
                 "try:\n    s.bind(('0.0.0.0', %d)); print('bound')\n"
                 "except OSError as e:\n    print(e.errno)\n" % p)
    assert out.stdout.decode().strip() == str(errno.EADDRINUSE), out


def test_prisons_stopping_all_at_once_leave_the_daemon_whole(tmp_path):
    """Every prison's stop releases its steered addresses in a thread of its own; the last ones
    to go closed the sk_lookup link twice (EBADF), and the daemon died at its own stop (seen
    now and then in the full suite: "prisond: [Errno 9] Bad file descriptor"; a race, which
    this stress did not reproduce in two runs on the code before the lock)."""
    from support.daemon import Daemon
    body = "prisons:\n" + "".join(prison(f"p{i}", ip4=[f"127.0.8.{i + 1}", f"127.0.9.{i + 1}"]) for i in range(12))
    for rnd in range(3):
        d = Daemon(str(tmp_path / f"r{rnd}"), body).start()
        try:
            assert d.stop() == 0, d.log()[-3000:]
        finally:
            d.remove_cgroups()
