import os

import pytest

from prisond.host.procinfo import parse_net_table

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0102007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0102007F:A000 0900007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
   2: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 1
"""

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 0000000000000000FFFF00000102007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1
   1: 000000FD000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 78 1
"""


def test_ipv4_listen_and_connected():
    t = parse_net_table(TCP, "tcp", False)
    assert t[4242] == {"proto": "tcp", "local": "127.0.2.1:8080", "state": "listen"}
    assert t[4343]["state"] == "connected"
    assert 0 not in t


def test_ipv6_and_v4_mapped():
    t = parse_net_table(TCP6, "tcp", True)
    assert t[77]["local"] == "127.0.2.1:8080"
    assert t[78]["local"] == "[fd00::1]:80"




def own_cgroup() -> str:
    from prisond.host.cgroup import detect_host, v2_path_of
    with open("/proc/self/cgroup") as fh:
        return os.path.join(detect_host().root, v2_path_of(fh.read()).lstrip("/"))


def test_the_kernel_lists_the_sockets_of_one_cgroup_only():
    """A real process holding a TCP listener, a bound UDP6 socket, a connected TCP client and
    a Unix socket: the kernel's socket diagnostics, filtered on its cgroup, give the listener
    and the UDP socket with their addresses, as /proc/net does; another cgroup's dump has none
    of them."""
    import subprocess
    import sys

    from prisond.host import sockinfo
    from prisond.host.procinfo import processes

    prog = (
        "import socket, sys\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
        "u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(('::1', 0))\n"
        "c = socket.create_connection(l.getsockname())\n"
        "x = socket.socket(socket.AF_UNIX)\n"
        "print(l.getsockname()[1], u.getsockname()[1], flush=True)\n"
        "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tcp, udp = child.stdout.readline().split()
        (proc,) = processes([child.pid], cgroup_dir=own_cgroup())
        assert proc["sockets"] == [{"proto": "tcp", "local": f"127.0.0.1:{tcp}", "state": "listen"},
                                   {"proto": "udp6", "local": f"[::1]:{udp}", "state": "bound"}]
        assert processes([child.pid])[0]["sockets"] == proc["sockets"]  # /proc/net says the same
        with sockinfo.Diag() as diag:  # another cgroup's dumps: none of them
            other = {i: f for proto in ("tcp", "udp") for family in sockinfo.FAMILIES
                     for i, f in diag.dump(proto, family, os.stat(own_cgroup()).st_ino + 10**9).items()}
        assert not {f.entry()["local"] for f in other.values()} & {f"127.0.0.1:{tcp}", f"[::1]:{udp}"}
    finally:
        child.kill()
        child.wait()


class _Server:
    """A real process holding a TCP listener and a Unix socket, driven by lines on its stdin."""

    PROG = (
        "import socket, sys\n"
        "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "l.bind(('127.0.0.1', 0)); l.listen()\n"
        "x = socket.socket(socket.AF_UNIX)\n"
        "print(l.getsockname()[1], flush=True)\n"
        "for line in sys.stdin:\n"
        "    if line.startswith('stop'): l.shutdown(socket.SHUT_RD)\n"  # open, no longer listening
        "    if line.startswith('listen'): l.listen()\n"
        "    if line.startswith('new'):\n"
        "        l.close(); l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
        "    print(l.getsockname()[1], flush=True)\n")

    def __init__(self):
        import subprocess
        import sys
        self.proc = subprocess.Popen([sys.executable, "-c", self.PROG], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def do(self, what: str) -> None:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _shown(server: _Server, book) -> list[str]:
    from prisond.host.procinfo import processes
    (proc,) = processes([server.proc.pid], cgroup_dir=own_cgroup(), book=book)
    return [f"{s['local']} {s['state']}" for s in proc["sockets"]]


def test_a_listener_the_book_knows_is_asked_about_again_each_time():
    """What show lists of a socket an earlier show found is what the kernel says now: a listener
    that stops listening (shut down, still open) is no longer listed, one that listens again is
    (once the book's wait for sockets found not listening is over), and a new one is found."""
    from prisond.host.sockinfo import SocketBook
    now = [0.0]
    book = SocketBook(clock=lambda: now[0])
    server = _Server()
    try:
        assert _shown(server, book) == [f"127.0.0.1:{server.port} listen"]
        server.do("stop")
        assert _shown(server, book) == []
        server.do("listen")
        now[0] += book.others_ttl + 0.1
        assert _shown(server, book) == [f"127.0.0.1:{server.port} listen"]
        server.do("new")
        assert _shown(server, book) == [f"127.0.0.1:{server.port} listen"]
    finally:
        server.close()


def test_a_dump_of_every_listener_lists_none_of_another_cgroups_sockets():
    """The dump of the namespace's every listener (after WHOLE_AFTER filtered ones) makes the
    book know other prisons' sockets; a prison's show still lists only what its cgroup made."""
    from prisond.host import sockinfo
    from prisond.host.procinfo import socket_inodes
    server = _Server()
    try:
        kinds = socket_inodes(server.proc.pid, [100])
        assert sorted(k.split("-")[0] for k in kinds.values()) == ["TCP", "UNIX"]  # UNIX-STREAM on 6.x
        book = sockinfo.SocketBook(whole_after=0)
        ours = os.stat(own_cgroup()).st_ino
        with sockinfo.Diag() as diag:
            assert book.sockets(diag, ours + 10**9, kinds) == {}  # no such cgroup
            assert [e["local"] for e in book.sockets(diag, ours, kinds).values()] == [f"127.0.0.1:{server.port}"]
    finally:
        server.close()


@pytest.mark.root  # /dev/fuse and a mount
def test_a_descriptor_swapped_for_a_file_on_the_tenants_fuse_is_not_asked_about():
    """show reads a socket's protocol (getxattr) after readlink said the descriptor is that
    socket.  A tenant can put a file of its own FUSE mount in the slot meanwhile (dup2), and a
    getxattr of it would wait on the tenant's server, with the daemon's event loop.  Here the
    slot holds the FUSE file from the start, as after a swap that won the race: the server
    must not be asked."""
    import subprocess
    import sys
    from prisond.host.procinfo import _protocol
    server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "support", "fusehold.py"),
                               "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        fd = int(server.stdout.readline())
        assert _protocol(f"/proc/{server.pid}/fd/{fd}", 4242) is None
        server.stdin.write("asked?\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "0"
    finally:
        server.stdin.write("quit\n")
        server.stdin.flush()
        server.wait(timeout=60)


class _FakeDiag:
    """The kernel's answers for the book's policy: which dumps and lookups it asks for."""

    def __init__(self, listeners):
        self.listeners = listeners  # {inode: Found}
        self.calls: list[tuple] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def dump(self, proto, family, cgroup_id=None, wanted=None):
        self.calls.append(("dump", proto, family, cgroup_id))
        return {i: f for i, f in self.listeners.items() if proto == f.proto and family == f.family
                and cgroup_id in (None, f.cgroup) and (wanted is None or i in wanted)}

    def exact(self, found):
        self.calls.append(("exact", found.inode))
        return self.listeners.get(found.inode)


def _listener(inode: int, cgroup: int):
    import socket
    from prisond.host.sockinfo import Found
    return Found(inode, "tcp", socket.AF_INET, 10, (80).to_bytes(2, "big"), bytes([127, 0, 0, inode]) + bytes(12),
                 0, inode.to_bytes(8, "little"), cgroup)


V4, V6 = 2, 10


def _book(diag, **kw):
    from prisond.host.sockinfo import SocketBook
    return SocketBook(run=lambda job: job(), open_diag=lambda: diag, **kw)  # the dump of every listener inline


def test_after_a_dump_of_every_listener_other_prisons_shows_need_no_dump():
    diag = _FakeDiag({i: _listener(i, 100 + i) for i in range(1, 6)})
    book = _book(diag, whole_after=2)
    book.sockets(diag, 101, {1: "TCP", 51: "UNIX-STREAM"})
    assert diag.calls == [("dump", "tcp", V4, 101), ("dump", "tcp", V6, 101)]  # filtered, both families
    diag.calls.clear()
    book.sockets(diag, 102, {2: "TCP"})  # the second: then one of every listener
    assert diag.calls == [("dump", "tcp", V4, 102), ("dump", "tcp", V6, 102),
                          ("dump", "tcp", V4, None), ("dump", "tcp", V6, None)]
    diag.calls.clear()
    assert book.sockets(diag, 103, {3: "TCP"}) == {3: {"proto": "tcp", "local": "127.0.0.3:80", "state": "listen"}}
    for i in (1, 4, 5):
        assert list(book.sockets(diag, 100 + i, {i: "TCP"})) == [i]
    assert diag.calls == [("exact", 3), ("exact", 1), ("exact", 4), ("exact", 5)]
    diag.calls.clear()
    assert book.sockets(diag, 101, {1: "TCP", 9: "UDPv6"}) and diag.calls == [
        ("exact", 1), ("dump", "udp", V4, 101), ("dump", "udp", V6, 101)]  # UDP: dumped each time


def test_a_prison_with_many_listeners_gets_one_filtered_dump_and_none_is_kept():
    """More listeners than EXACT_MAX: one filtered dump a show, not a lookup each, and none of
    them kept (a prison replacing thousands of listeners grew the book ~6 MB/s, helper-38)."""
    from prisond.host.sockinfo import EXACT_MAX
    many = {i: _listener(i, 7) for i in range(1, EXACT_MAX + 2)}
    diag = _FakeDiag(many)
    book = _book(diag, whole_after=1)
    kinds = {i: "TCP" for i in many}
    for _ in range(3):
        assert len(book.sockets(diag, 7, kinds)) == len(many)
    assert diag.calls == [("dump", "tcp", V4, 7), ("dump", "tcp", V6, 7)] * 3
    assert not book.listeners and book.partial == 0  # nor do its dumps call for one of every listener


def test_the_quiet_sockets_of_cgroups_not_shown_for_a_while_are_dropped():
    """A prison restarted makes a new cgroup: the quiet sockets of the old one go (helper-38)."""
    diag = _FakeDiag({})
    now = [0.0]
    book = _book(diag, clock=lambda: now[0])
    for c in range(1000):
        book.sockets(diag, c, {10 * c + j: "TCP" for j in range(5)})
        now[0] += book.others_ttl / 10
    assert len(book.others) <= 2 * 64


def test_the_quiet_sockets_kept_are_those_the_prison_holds_now():
    """A TCP socket no dump found listening is kept (not asked about for others_ttl) only while
    the prison's processes hold it: a prison making and closing sockets without end does not
    grow the book (helper-36)."""
    diag = _FakeDiag({})
    now = [0.0]
    book = _book(diag, clock=lambda: now[0])
    for k in range(50):
        book.sockets(diag, 7, {1000 * k + j: "TCP" for j in range(100)})
        now[0] += 0.01
    assert sum(len(q) for _, q in book.others.values()) <= 100 * 2


def test_a_listener_handed_to_another_prison_still_shows_in_its_own():
    """A listener prison 8 made and handed to prison 7 (which holds it too) is not 7's, and
    asking about it for 7 does not make the book forget it for 8 (helper-36)."""
    diag = _FakeDiag({1: _listener(1, 8)})
    book = _book(diag)
    assert list(book.sockets(diag, 8, {1: "TCP"})) == [1]
    assert book.sockets(diag, 7, {1: "TCP"}) == {}
    diag.calls.clear()
    assert list(book.sockets(diag, 8, {1: "TCP"})) == [1] and diag.calls == [("exact", 1)]
