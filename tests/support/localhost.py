"""Driving tests/support/lo_probe.py in prisons: what programs see of a connection's addresses."""
from __future__ import annotations

import os
import subprocess
import threading

from .daemon import prisonctl_cmd, wait_for

PROBE = os.path.join(os.path.dirname(__file__), "lo_probe.py")


class Server:
    """A probe serving in a prison until stopped; its lines as they come."""

    def __init__(self, d, prison, *argv, python: bool = True):
        """python: argv are the probe's; else a command of its own, whose lines are read from
        the start (no first line waited for)."""
        command = ["python3", PROBE, *map(str, argv)] if python else list(map(str, argv))
        self.proc = subprocess.Popen(prisonctl_cmd() + ["--socket", d.socket, "exec", prison, "--", *command],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.first = self.proc.stdout.readline().decode().strip() if python else ""
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode().strip())

    def line(self, n: int = 1) -> str:
        wait_for(lambda: len(self.lines) >= n, what=f"line {n} of the server")
        return self.lines[n - 1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._t.join(5)


def probe(d, prison, *argv) -> str:
    r = d.exec(prison, "python3", PROBE, *map(str, argv), timeout=30)
    return (r.stdout.decode() + r.stderr.decode()).strip()


def fields(line: str) -> dict:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def host(addr: str) -> str:
    """The address of an "address:port" the probe printed."""
    return addr.rsplit(":", 1)[0].strip("[]")
