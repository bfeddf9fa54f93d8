#!/usr/bin/env python3
"""Per-call cost of the shim, and the cost of entering a prison, as ratios measured in one run.

    sudo python3 bench/shim_bench.py [--rounds 7] [--exec-runs 40]

Part 1: bench/progs/shimbench.c loops one operation (connect+close to an in-process listener,
bind+close, UDP sendto, gethostname) with no preload (the baseline), with prisond's shim and a
prison policy, and with Samba's socket_wrapper.  Configurations are interleaved round by round
and the median of the rounds is reported, so that drift on a shared VM hits all of them.

Part 2: wall time of `prisonctl exec P -- /bin/true` against a running prisond, beside
`firejail --quiet --noprofile /bin/true`, `bwrap --dev-bind / / /bin/true` and plain /bin/true.

Everything runs in a private network namespace on loopback.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchlib import Daemon, compare_commands, enter_netns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHIM = os.path.join(ROOT, "prisond", "libprisonshim.so")
SOCKET_WRAPPER = "/usr/lib/x86_64-linux-gnu/libsocket_wrapper.so"
PRISON_IP = "127.0.2.1"
POLICY = f"1;n=bench;h=bench.example.test;4={PRISON_IP};6=;f="

# operation -> (arguments for the baseline and the shim, for socket_wrapper, iterations)
OPS = {
    "connect+close": (["connect", PRISON_IP], ["connect", "127.0.0.10"], 20000),
    "bind+close": (["bind", "0.0.0.0"], ["bind", "0.0.0.0"], 100000),
    "udp sendto": (["udp", PRISON_IP], ["udp", "127.0.0.10"], 200000),
    "gethostname": (["hostname"], ["hostname"], 1000000),
}
# socket_wrapper 1.3.5 keeps a socket file per autobound port after close and fails with
# ENFILE near 5000 of them: its bind loop is shorter, each run in a fresh directory.
SWRAP_MAX_ITER = 2000


def build() -> str:
    out = os.path.join(tempfile.gettempdir(), "prisond-shimbench")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
                    os.path.join(HERE, "progs", "shimbench.c"), "-lpthread"], check=True)
    return out


def run_op(binary: str, args: list[str], n: int, env: dict) -> float:
    r = subprocess.run([binary, *args, str(n)], env=env, capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("ns_per_op="):
        raise RuntimeError(f"{args} failed (status {r.returncode}): {r.stdout}{r.stderr}")
    return float(r.stdout.split("=")[1])


def shim_part(rounds: int) -> None:
    binary = build()
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PRISOND_POLICY")}
    configs = {
        "no shim": (base, 0),
        "prisond shim": (dict(base, LD_PRELOAD=SHIM, PRISOND_POLICY=POLICY), 0),
    }
    if os.path.exists(SOCKET_WRAPPER):
        configs["socket_wrapper"] = (dict(base, LD_PRELOAD=SOCKET_WRAPPER, SOCKET_WRAPPER_DEFAULT_IFACE="10"), 1)
    results = {op: {c: [] for c in configs} for op in OPS}
    for rnd in range(rounds):
        order = list(configs) if rnd % 2 == 0 else list(reversed(configs))  # ABBA against drift
        for op, (args, sw_args, n) in OPS.items():
            for cname in order:
                env, is_sw = configs[cname]
                if is_sw and op == "gethostname":
                    continue  # socket_wrapper does not touch the hostname
                if is_sw:
                    swdir = tempfile.mkdtemp(prefix="swrap-")
                    results[op][cname].append(run_op(binary, sw_args, min(n, SWRAP_MAX_ITER),
                                                     dict(env, SOCKET_WRAPPER_DIR=swdir)))
                    shutil.rmtree(swdir, ignore_errors=True)
                else:
                    results[op][cname].append(run_op(binary, args, n, env))
    print(f"Part 1: per-call cost over {rounds} rounds (ns per operation, medians); the ratio is the median")
    print("of the per-round ratios (each round measures both), with the lowest and highest round in brackets")
    print(f"{'operation':<15}" + "".join(f"{c:>16}" for c in configs) + f"{'shim/none':>24}"
          + (f"{'swrap/none':>12}" if "socket_wrapper" in configs else ""))
    for op in OPS:
        med = {c: statistics.median(v) for c, v in results[op].items() if v}
        row = f"{op:<15}" + "".join(f"{med[c]:>16.1f}" if c in med else f"{'-':>16}" for c in configs)
        paired = sorted(s / b for s, b in zip(results[op]["prisond shim"], results[op]["no shim"]))
        row += f"{statistics.median(paired):>10.3f} [{paired[0]:.3f}-{paired[-1]:.3f}]"
        if "socket_wrapper" in med:
            row += f"{med['socket_wrapper'] / med['no shim']:>12.1f}"
        print(row)


def exec_part(runs: int) -> None:
    work = tempfile.mkdtemp(prefix="prisond-bench-")
    d = Daemon(f"prisons:\n  bench:\n    hostname: bench.example.test\n    ip4: [{PRISON_IP}]\n", work)
    try:
        ctl = d.ctl()
        cmds = {
            "/bin/true": ["/bin/true"],
            "prisonctl exec": ctl + ["exec", "bench", "--", "/bin/true"],
            "bwrap": ["bwrap", "--dev-bind", "/", "/", "/bin/true"],
            "firejail": ["firejail", "--quiet", "--noprofile", "/bin/true"],
        }
        cmds = {k: v for k, v in cmds.items() if shutil.which(v[0])}
        print()
        compare_commands("Part 2: entering a prison", cmds, runs, "prisonctl exec")
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--exec-runs", type=int, default=40)
    args = p.parse_args()
    if not os.path.exists(SHIM):
        sys.exit(f"bench: {SHIM} missing: run scripts/setup")
    enter_netns()
    shim_part(args.rounds)
    exec_part(args.exec_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
