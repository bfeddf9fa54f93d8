import os

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
        other = sockinfo.cgroup_sockets(os.stat(own_cgroup()).st_ino + 10**9)  # no such cgroup
        assert other is not None and not {e["local"] for e in other.values()} & {f"127.0.0.1:{tcp}", f"[::1]:{udp}"}
    finally:
        child.kill()
        child.wait()
