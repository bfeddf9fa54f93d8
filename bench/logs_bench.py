#!/usr/bin/env python3
"""The daemon under its prisons' output: N prisons whose services each write L lines a second,
against the same N prisons whose services are quiet, measured in one run.

    sudo python3 bench/logs_bench.py [--prisons 100] [--rate 1000] [--seconds 20]

Reported for each: the daemon's CPU (its own user+system time over the window, as a share of
one CPU), its resident memory, and the operator's `prison.list` latency meanwhile (a fresh
connection each time, closed loop: median and p99).  The lines go to each prison's log file
(daemon.log_dir, rotated), as off systemd; what reached the files is counted.

Everything runs in a private network namespace on loopback.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import Daemon, enter_netns  # noqa: E402

from prisond.client.connection import Client  # noqa: E402

WRITER = ("import sys, time\n"
          "rate = {rate}\n"
          "line = 'x' * 80\n"
          "t = time.monotonic()\n"
          "while True:\n"
          "    for _ in range(rate // 10):\n"
          "        print(line)\n"
          "    sys.stdout.flush()\n"
          "    t += 0.1\n"
          "    time.sleep(max(0, t - time.monotonic()))\n")
QUIET = "import time\ntime.sleep(100000)\n"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def config(work: str, n: int, program: str) -> str:
    out = f"  log_dir: {work}/logs\nprisons:\n"
    for i in range(n):
        out += (f"  p{i}:\n    ip4: [127.11.{i // 250}.{i % 250 + 1}]\n    restart: no\n"
                f"    exec: {{start: [python3, -c, {json.dumps(program)}]}}\n")
    return out


def measure(work: str, n: int, program: str, seconds: float) -> dict:
    d = Daemon(config(work, n, program), work)
    try:
        time.sleep(3)  # every service writing
        lat: list[float] = []
        c0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            s = time.monotonic()
            with Client(d.sock, timeout=30) as c:
                c.call("prison.list")
            lat.append((time.monotonic() - s) * 1000)
            time.sleep(0.05)
        cpu = (cpu_seconds(d.proc.pid) - c0) / (time.monotonic() - t0)
        rss = d.rss_mb()
        logs = os.path.join(work, "logs")
        written = sum(os.path.getsize(os.path.join(logs, f)) for f in os.listdir(logs)) if os.path.isdir(logs) else 0
    finally:
        d.stop()
    lat.sort()
    return {"cpu": cpu, "rss": rss, "median": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1],
            "written_mb": written / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prisons", type=int, default=100)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    enter_netns()
    with tempfile.TemporaryDirectory() as quiet_dir, tempfile.TemporaryDirectory() as busy_dir:
        quiet = measure(quiet_dir, a.prisons, QUIET, a.seconds)
        busy = measure(busy_dir, a.prisons, WRITER.format(rate=a.rate), a.seconds)
    print(f"{a.prisons} prisons, {a.seconds:g} s each; the operator's prison.list on a fresh connection")
    for name, r in (("quiet services", quiet), (f"{a.rate} lines/s each", busy)):
        print(f"  {name:<22} daemon CPU {100 * r['cpu']:5.1f}% of a CPU, RSS {r['rss']:6.1f} MB, "
              f"list median {r['median']:6.1f} ms p99 {r['p99']:6.1f} ms, log files {r['written_mb']:.1f} MB")
    print(f"  ratio busy/quiet: CPU {busy['cpu'] / max(quiet['cpu'], 1e-9):.1f}x, "
          f"list p99 {busy['p99'] / quiet['p99']:.2f}x")


if __name__ == "__main__":
    main()
