"""The control socket under abuse: garbage, oversized lines, half requests, many clients,
the wrong user.  After each, the daemon still answers."""
import array
import json
import os
import socket
import struct
import threading
import time

import pytest

from prisond.model.protocol import MAX_LINE
from support.daemon import let_others_reach, run_cli_as

NOBODY, NOGROUP = 65534, 65534


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    from support.daemon import Daemon
    dm = Daemon(str(tmp_path_factory.mktemp("control")), "prisons:\n  a:\n    ip4: [127.0.2.1]\n").start()
    yield dm
    try:
        assert dm.stop() == 0
    finally:
        dm.remove_cgroups()


def connect(d) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.socket)
    return s


def ask(s: socket.socket, raw: bytes) -> dict:
    s.sendall(raw)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return json.loads(buf)


def healthy(d) -> bool:
    return d.call("daemon.health")["status"] == "ready"


@pytest.mark.parametrize("raw,code", [
    (b"\x00\xff\xfe garbage\n", "bad_json"),
    (b"[1,2,3]\n", "bad_request"),
    (b'{"v":1,"id":1}\n', "bad_request"),
    (b'{"v":99,"id":1,"method":"prison.list"}\n', "bad_version"),
    (b'{"id":1,"method":"prison.list"}\n', "bad_version"),
    (b'{"v":1,"id":1,"method":"prison.destroy_everything"}\n', "unknown_method"),
    (b'{"v":1,"id":1,"method":"prison.show","params":[]}\n', "bad_request"),
    (b'{"v":1,"id":1,"method":"prison.show","params":{}}\n', "bad_request"),
    (b'{"v":1,"id":1,"method":"prison.show","params":{"name":7}}\n', "bad_request"),
    (b'{"v":1,"id":1,"method":"prison.show","params":{"name":"nope"}}\n', "no_such_prison"),
])
def test_malformed_requests_get_error_replies(d, raw, code):
    with connect(d) as s:
        reply = ask(s, raw)
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        # the same connection keeps working
        assert ask(s, b'{"v":1,"id":2,"method":"daemon.health"}\n')["result"]["status"] == "ready"


def test_the_reply_echoes_the_request_id(d):
    with connect(d) as s:
        assert ask(s, b'{"v":1,"id":"abc","method":"daemon.health"}\n')["id"] == "abc"
        assert ask(s, b'{"v":1,"id":"q","method":"nope"}\n')["id"] == "q"


def test_random_bytes_never_hurt_the_daemon(d):
    rnd = os.urandom(200_000)
    for i in range(0, len(rnd), 997):
        with connect(d) as s:
            s.sendall(rnd[i:i + 997] + b"\n")
            try:
                s.recv(65536)
            except (TimeoutError, ConnectionError):
                pass
    assert healthy(d)


def test_an_oversized_line_ends_only_that_connection(d):
    with connect(d) as s:
        try:
            s.sendall(b'{"v":1,"id":1,"method":"daemon.health","pad":"' + b"x" * (MAX_LINE * 2) + b'"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before the rest was sent: its reply waits to be read
        reply = json.loads(s.recv(65536).split(b"\n")[0])
        assert reply["error"]["code"] == "too_large"
    assert healthy(d)


def test_a_half_request_does_not_block_others(d):
    hung = connect(d)
    hung.sendall(b'{"v":1,"id":1,"meth')
    try:
        t0 = time.monotonic()
        for _ in range(20):
            assert healthy(d)
        assert time.monotonic() - t0 < 10
    finally:
        hung.close()
    closed = connect(d)
    closed.sendall(b'{"v":1,"id":1,"method":"daemon.he')
    closed.close()
    assert healthy(d)


def test_a_thousand_clients_at_once_beside_slow_ones(d):
    slow = [connect(d) for _ in range(50)]
    for s in slow:  # each holds half a request open throughout
        s.sendall(b'{"v":1,"id":1,"method":"prison.li')
    n, errors, answered = 1000, [], []
    socks = [connect(d) for _ in range(n)]

    def run(s, i):
        try:
            r = ask(s, json.dumps({"v": 1, "id": i, "method": "prison.list"}).encode() + b"\n")
            answered.append(r["id"] == i and r["result"][0]["name"] == "a")
        except Exception as exc:  # collected, asserted below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and answered == [True] * n
    assert healthy(d)
    for s in slow:  # and the slow ones, finished at last, are answered too
        assert ask(s, b'st"}\n')["result"][0]["name"] == "a"
        s.close()


def test_anyone_may_read_only_root_and_the_control_group_may_change(daemon):
    """Real unprivileged processes (nobody), with and without the control group (staff here)."""
    import grp
    staff = grp.getgrnam("staff").gr_gid
    d = daemon("daemon:\n  control_group: staff\nprisons:\n  a:\n    ip4: [127.0.2.1]\n  b:\n    ip4: [127.0.3.1]\n")
    st = os.stat(d.socket)
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o666, 0, staff)
    let_others_reach(d.run_dir)
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "list"])
    assert code == 0 and out.splitlines()[1].split()[1] == "a"
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "stop", "a"])
    assert code == 77 and "prison.stop needs root or the control group (you are uid 65534)" in err
    assert d.call("prison.show", name="a")["state"] == "running"
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "stop", "a"], groups=[staff])
    assert code == 0, err
    assert d.call("prison.show", name="a")["state"] == "stopped"


def test_reading_can_be_kept_to_the_control_group(daemon):
    import grp
    staff = grp.getgrnam("staff").gr_gid
    d = daemon("daemon:\n  control_group: staff\n  public_read: false\nprisons:\n  a:\n    ip4: [127.0.2.1]\n")
    st = os.stat(d.socket)
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, staff)
    let_others_reach(d.run_dir)
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "list"])
    assert code == 77 and err == f"prisonctl: permission denied connecting to {d.socket}\n"
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "list"], groups=[staff])
    assert code == 0 and out.splitlines()[1].split()[1] == "a"
    # past the file mode (opened up by hand), the daemon still asks for the group
    os.chmod(d.socket, 0o666)
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "list"])
    assert code == 77 and "reading needs root or the control group" in err


def test_without_the_group_only_root_may_change(d):
    st = os.stat(d.socket)
    assert st.st_mode & 0o777 == 0o666 and st.st_uid == 0  # no prisond group on this host
    let_others_reach(d.run_dir)
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "stop", "a"], groups=[50])
    assert code == 77 and "needs root or the control group" in err
    assert d.call("prison.show", name="a")["state"] == "running"


def test_a_client_that_never_reads_its_replies_costs_bounded_memory(d):
    with open(f"/proc/{d.proc.pid}/status") as fh:
        before = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    greedy = connect(d)
    greedy.setblocking(False)
    req = json.dumps({"v": 1, "id": 1, "method": "prison.list"}).encode() + b"\n"
    sent = 0
    try:
        for _ in range(200000):  # until the daemon stops reading (its replies are not read)
            sent += greedy.send(req * 64)
    except BlockingIOError:
        pass
    assert healthy(d)  # others are served meanwhile
    with open(f"/proc/{d.proc.pid}/status") as fh:
        after = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    assert (after - before) / 1024 < 32, f"grew {(after - before) / 1024:.1f} MB after {sent} bytes of requests"
    greedy.close()
    assert healthy(d)


def _lingering_socket(linger: int):
    """A TCP socket whose close waits `linger` seconds: SO_LINGER on, its send buffer full, and
    a peer (kept, returned) that never reads."""
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    c.connect(lst.getsockname())
    peer, _ = lst.accept()
    c.setblocking(False)
    try:
        while True:
            c.send(b"x" * 4096)
    except BlockingIOError:
        pass
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
    return c, (lst, peer)


@pytest.mark.parametrize("where", ["control.sock", "public/events.sock"])
def test_a_lingering_socket_sent_to_the_daemon_does_not_stall_it(d, where):
    """A caller sends the daemon a TCP socket that lingers on close (SCM_RIGHTS) and drops its
    own copy: the daemon's close of it was the last, and its event loop waited the linger out
    (20 s from a prison's nobody; an hour is as easy).  The kernel now refuses the descriptor."""
    c, keep = _lingering_socket(20)
    path = os.path.join(d.run_dir, where)
    kind = socket.SOCK_STREAM if where == "control.sock" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_UNIX, kind)
    try:
        s.connect(path)
        try:
            s.sendmsg([b'{"v":1,"id":1,"method":"daemon.health"}\n'],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [c.fileno()]))])
        except PermissionError:  # refused by the kernel: nothing reached the daemon
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # ours: no wait
        c.close()
        time.sleep(0.5)  # the daemon reads what was sent (a datagram waits for the loop's turn)
        t0 = time.monotonic()
        d.call("daemon.health")
        took = time.monotonic() - t0
        assert took < 3, f"the daemon answered only after {took:.1f} s: it waited for the socket's linger"
    finally:
        s.close()
        for k in keep:
            k.close()
