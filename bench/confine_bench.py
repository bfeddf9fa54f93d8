#!/usr/bin/env python3
"""Entering a confined prison, and starting one, against bwrap and firejail in the same run.

    sudo python3 bench/confine_bench.py [--runs 60] [--starts 15]

Part 1: wall time of `prisonctl exec P -- /bin/true` (/usr/local/bin/prisonctl: its C fast
path; the Python prisonctl beside it) into a confined prison (root made by
`prisonctl mkroot`, /usr mounted read-only; mount, PID, UTS and IPC namespaces; restricted
root with seccomp) beside
  bwrap with equivalent namespaces: --unshare-pid --unshare-uts --unshare-ipc, the same root
      (--bind ROOT /, --ro-bind /usr /usr, --proc /proc, --dev /dev), /bin/true;
  firejail --quiet --noprofile /bin/true;
  plain /bin/true.
Commands are interleaved in blocks of 5 so drift hits all of them; medians and p90 are shown,
with the ratios the targets are stated in (faster than firejail, within 3x of bwrap).

Part 2: start time of a confined prison with one service: `prisonctl start P` returning with
the prison running (its init ready, the service spawned), then until the service answers TCP.
Everything runs in a private network namespace on loopback.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import PRISONCTL, Daemon, compare_commands, enter_netns, p90

PRISON_IP = "127.0.2.1"
PY_CTL = "/usr/local/lib/prisond/prisonctl.py"  # scripts/setup writes it


def serving(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((ip, port)) == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--starts", type=int, default=15)
    args = p.parse_args()
    enter_netns()
    work = tempfile.mkdtemp(prefix="prisond-confine-bench-")
    os.chmod(work, 0o700)
    root = os.path.join(work, "root")
    subprocess.run([PRISONCTL, "mkroot", root], check=True, stdout=subprocess.DEVNULL)
    d = Daemon(f"prisons:\n  cell:\n    ip4: [{PRISON_IP}]\n    path: {root}\n    mounts: [/usr]\n"
               f"  svc:\n    ip4: [127.0.3.1]\n    path: {root}\n    mounts: [/usr]\n"
               "    exec: {start: [python3, -m, http.server, --bind, 0.0.0.0, '8081']}\n", work)
    try:
        ctl = d.ctl()
        cmds = {
            "/bin/true": ["/bin/true"],
            "prisonctl exec": ctl + ["exec", "cell", "--", "/bin/true"],
            # the same through the Python prisonctl (what pip's entry point runs)
            "prisonctl.py exec": [PY_CTL, "--socket", d.sock, "exec", "cell", "--", "/bin/true"],
            "bwrap": ["bwrap", "--unshare-pid", "--unshare-uts", "--unshare-ipc", "--bind", root, "/",
                      "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "/bin/true"],
            "firejail": ["firejail", "--quiet", "--noprofile", "/bin/true"],
        }
        missing = [k for k, v in cmds.items() if not (shutil.which(v[0]) or os.access(v[0], os.X_OK))]
        if missing:
            sys.exit(f"bench: missing {', '.join(missing)} (scripts/setup installs them)")
        compare_commands("Part 1: entering a confined prison", cmds, args.runs, "prisonctl exec")

        starts, serves = [], []
        for _ in range(args.starts):
            subprocess.run(ctl + ["stop", "svc"], capture_output=True, check=True)
            t0 = time.perf_counter()
            subprocess.run(ctl + ["start", "svc"], capture_output=True, check=True)
            starts.append((time.perf_counter() - t0) * 1000)
            while not serving("127.0.3.1", 8081):
                time.sleep(0.002)
            serves.append((time.perf_counter() - t0) * 1000)
        print(f"\nPart 2: starting a confined prison with one service ({args.starts} starts, ms)")
        print(f"  prisonctl start returns      {statistics.median(starts):>8.2f}   p90 {p90(starts):>7.2f}")
        print(f"  ... and http.server answers  {statistics.median(serves):>8.2f}   p90 {p90(serves):>7.2f}")
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
