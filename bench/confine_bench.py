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
import ctypes
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PRISON_IP = "127.0.2.1"
PY_CTL = "/usr/local/lib/prisond/prisonctl.py"  # scripts/setup writes it


def enter_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:
        sys.exit("bench: cannot create a network namespace (run as root)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def time_cmd(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            raise RuntimeError(f"{argv} exited {r.returncode}")
    return out


def p90(v: list[float]) -> float:
    return sorted(v)[max(0, int(len(v) * 0.9) - 1)]


def ctl_exe() -> str:
    # /usr/local/bin/prisonctl is the -S launcher scripts/setup installs
    return "/usr/local/bin/prisonctl" if os.path.exists("/usr/local/bin/prisonctl") else shutil.which("prisonctl")


def serving(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((ip, port)) == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--starts", type=int, default=15)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    enter_netns()
    work = tempfile.mkdtemp(prefix="prisond-confine-bench-")
    os.chmod(work, 0o700)
    root = os.path.join(work, "root")
    ctl0 = ctl_exe()
    subprocess.run([ctl0, "mkroot", root], check=True, stdout=subprocess.DEVNULL)
    cfg = os.path.join(work, "prisond.yaml")
    with open(cfg, "w") as fh:
        fh.write(f"daemon:\n  cgroup_parent: prisond-bench-{os.getpid()}\n"
                 f"prisons:\n  cell:\n    ip4: [{PRISON_IP}]\n    path: {root}\n    mounts: [/usr]\n"
                 f"  svc:\n    ip4: [127.0.3.1]\n    path: {root}\n    mounts: [/usr]\n"
                 "    exec: {start: [python3, -m, http.server, --bind, 0.0.0.0, '8081']}\n")
    sock = os.path.join(work, "run", "control.sock")
    daemon = subprocess.Popen([shutil.which("prisond") or "/usr/local/bin/prisond", "--config", cfg, "--socket", sock,
                               "--state-dir", os.path.join(work, "state"), "--log-level", "warning"])
    try:
        ctl = [ctl0, "--socket", sock]
        deadline = time.monotonic() + 30
        while subprocess.run(ctl + ["health"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("prisond did not start")
            time.sleep(0.1)
        cmds = {
            "/bin/true": ["/bin/true"],
            "prisonctl exec": ctl + ["exec", "cell", "--", "/bin/true"],
            # the same through the Python prisonctl (what pip's entry point runs)
            "prisonctl.py exec": [PY_CTL, "--socket", sock, "exec", "cell", "--", "/bin/true"],
            "bwrap": ["bwrap", "--unshare-pid", "--unshare-uts", "--unshare-ipc", "--bind", root, "/",
                      "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "/bin/true"],
            "firejail": ["firejail", "--quiet", "--noprofile", "/bin/true"],
        }
        missing = [k for k, v in cmds.items() if not (shutil.which(v[0]) or os.access(v[0], os.X_OK))]
        if missing:
            sys.exit(f"bench: missing {', '.join(missing)} (scripts/setup installs them)")
        samples = {k: [] for k in cmds}
        for _ in range(max(1, args.runs // 5)):
            for k, argv in cmds.items():
                samples[k] += time_cmd(argv, 5)
        print(f"Part 1: entering, median wall time of {len(samples['/bin/true'])} runs each (ms)")
        pe = statistics.median(samples["prisonctl exec"])
        for k, v in samples.items():
            med = statistics.median(v)
            ratio = f"   prisonctl exec / {k} = {pe / med:.2f}" if k != "prisonctl exec" else ""
            print(f"  {k:<16}{med:>8.2f}   p90 {p90(v):>7.2f}{ratio}")

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
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
