"""Fixtures shared by the suites."""
from __future__ import annotations

import os
import socket
import threading

import pytest

from .build import build
from .daemon import Daemon


@pytest.fixture
def daemon(tmp_path):
    """daemon(config_text, start=True) -> a running prisond; stopped (and checked) after the test."""
    started: list[Daemon] = []

    def make(config: str, start: bool = True, **kw) -> Daemon:
        d = Daemon(str(tmp_path / f"d{len(started)}"), config, **kw)
        os.makedirs(d.dir, exist_ok=True)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.stop()
        d.remove_cgroups()  # nothing left behind even if the daemon was killed mid-way


@pytest.fixture(scope="session")
def nettool():
    return build("nettool.c", "-O2")


@pytest.fixture(scope="session")
def nettool_static():
    return build("nettool.c", "-O2", "-static", name="nettool-static")


@pytest.fixture(scope="session")
def uring_static():
    return build("uring.c", "-O2", "-static", "-luring", name="uring-static")


@pytest.fixture(scope="session")
def nettool_fortify():
    return build("nettool.c", "-O2", "-D_FORTIFY_SOURCE=2", name="nettool-fortify")


@pytest.fixture(scope="session")
def escape_static():
    return build("escape.c", "-O2", "-static", name="escape-static")


@pytest.fixture(scope="session")
def confined_root(tmp_path_factory):
    """A root made by `prisonctl mkroot` (the host's /usr is mounted read-only into it)."""
    base = tmp_path_factory.mktemp("roots")
    os.chmod(base, 0o700)
    root = str(base / "root")
    from .daemon import prisonctl_cmd
    import subprocess
    subprocess.run(prisonctl_cmd() + ["mkroot", root], check=True, capture_output=True)
    return root


def confined(root: str, name: str, ip4: str, *, extra: str = "", mounts: str = "") -> str:
    """YAML for a confined prison on `root` that sees the suite's compiled programs at /opt/t."""
    from .build import OUT
    return (f"  {name}:\n    hostname: {name}.example.test\n    ip4: [{ip4}]\n    path: {root}\n"
            f"    mounts: [/usr, {{source: {OUT}, target: /opt/t}}{mounts}]\n{extra}")


class TcpServer:
    """A host-side listener (outside any prison) that accepts and remembers peers."""

    def __init__(self, host: str, family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            try:
                c, addr = self.sock.accept()
            except OSError:
                return
            self.peers.append(addr[0])
            try:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nhi\n")
            except OSError:
                pass
            c.close()

    def close(self):
        self.sock.close()


class UdpSink:
    def __init__(self, host: str, family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def _servers(cls):
    """A fixture handing out cls(host, family) instances, all closed after the test."""
    @pytest.fixture
    def make_fixture():
        made = []

        def make(host="127.0.0.9", family=socket.AF_INET):
            made.append(cls(host, family))
            return made[-1]

        yield make
        for s in made:
            s.close()

    return make_fixture


tcp_server = _servers(TcpServer)
udp_sink = _servers(UdpSink)


def free_port() -> int:
    """A port free for TCP and UDP on every address (bound on the wildcards, then let go)."""
    while True:
        with socket.socket(socket.AF_INET6) as t, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
            t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            t.bind(("::", 0))
            try:
                u.bind(("::", t.getsockname()[1]))
            except OSError:
                continue
            return t.getsockname()[1]
