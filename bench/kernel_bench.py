#!/usr/bin/env python3
"""The kernel layer's costs, as ratios against a baseline measured in the same run.

    sudo python3 bench/kernel_bench.py [--rounds 10] [--prisons 1000] [--shared]

1. connect()+close() and bind()+close() loops (bench/progs/shimbench.c, built static so no
   shim is involved) inside a `kernel` prison vs the same binary outside any prison; and the
   dynamic build in the prison (the shim loaded, deferring to the kernel).
2. HTTP requests/s of nginx in a `kernel` prison vs the same nginx outside, under wrk.
3. With N prisons: time from starting prisond to READY, the daemon's resident memory, and the
   wall time of `prisonctl list`.

--shared gives the measured prison's address to a second prison too: its binds are then
recorded (the claim programs, programs.py), which is what sharing an address costs.

Everything runs in a private network namespace on loopback.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import Daemon, enter_netns

HERE = os.path.dirname(os.path.abspath(__file__))
# what the prison runs (the loop program, nginx's files) lies here, on the host's tree, which an
# isolated prison sees; /tmp is its own
BUILD = os.path.join(HERE, "_build")
PRISON_IP, OUTSIDE_IP = "127.0.2.1", "127.0.0.20"


def build(static: bool) -> str:
    os.makedirs(BUILD, exist_ok=True)
    out = os.path.join(BUILD, "kbench" + ("-static" if static else ""))
    subprocess.run(["cc", "-O2", *(["-static"] if static else []), "-o", out,
                    os.path.join(HERE, "progs", "shimbench.c")], check=True)
    return out


def ns_per_op(argv: list[str]) -> float:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("ns_per_op="):
        raise RuntimeError(f"{argv}: {r.stdout}{r.stderr}")
    return float(r.stdout.split("=")[1])


def program_costs(d: Daemon, static: str) -> None:
    """The programs' own run time per call, as the kernel accounts it (kernel.bpf_stats_enabled,
    switched on for this measurement only and restored): no wall-clock noise."""
    sys.path.insert(0, os.path.dirname(HERE))
    from prisond.kernel import syscall as S
    path = "/proc/sys/kernel/bpf_stats_enabled"
    with open(path) as fh:
        before = fh.read().strip()
    cg = os.open(os.path.join(d.cgroup_dir(), "k"), os.O_RDONLY)
    try:
        with open(path, "w") as fh:
            fh.write("1")
        subprocess.run(d.ctl("exec", "k", "--", static, "bind", "0.0.0.0", "100000"), capture_output=True, check=True)
        subprocess.run(d.ctl("exec", "k", "--", static, "connect", PRISON_IP, "20000"), capture_output=True,
                       check=True)
        print("   the programs' own cost per call (kernel.bpf_stats_enabled):")
        for name in ("sock_create", "bind4", "post_bind4", "connect4", "sock_release", "egress", "ingress",
                     "sock_ops"):
            for pid in S.prog_query(cg, S.ATTACH[name]) if name in S.ATTACH else ():
                fd = S.prog_fd_by_id(pid)
                info = S.prog_info(fd)
                os.close(fd)
                if info["run_cnt"]:
                    print(f"     {name:<12} {info['run_time_ns'] / info['run_cnt']:7.1f} ns x {info['run_cnt']} runs")
    finally:
        with open(path, "w") as fh:
            fh.write(before)
        os.close(cg)


def socket_loops(d: Daemon, rounds: int) -> None:
    static, dynamic = build(True), build(False)
    ops = {"connect+close": (["connect", PRISON_IP], 20000), "bind+close": (["bind", "0.0.0.0"], 100000)}
    configs = {
        "outside": lambda a: [static, *a],
        "kernel prison": lambda a: d.ctl("exec", "k", "--", static, *a),
        "kernel prison+shim": lambda a: d.ctl("exec", "k", "--", dynamic, *a),
    }
    res = {op: {c: [] for c in configs} for op in ops}
    for rnd in range(rounds):
        order = list(configs) if rnd % 2 == 0 else list(reversed(configs))
        for op, (args, n) in ops.items():
            for c in order:
                res[op][c].append(ns_per_op(configs[c](args + [str(n)])))
    print(f"1. socket calls, {rounds} rounds in ABBA order (ns per operation, medians; ratio = median of the")
    print("   per-round ratios against outside, [lowest-highest round])")
    for op in ops:
        line = f"   {op:<14} outside {statistics.median(res[op]['outside']):>9.1f}"
        for c in ("kernel prison", "kernel prison+shim"):
            paired = sorted(a / b for a, b in zip(res[op][c], res[op]["outside"]))
            line += (f"   {c} {statistics.median(res[op][c]):>9.1f} ratio {statistics.median(paired):.3f} "
                     f"[{paired[0]:.3f}-{paired[-1]:.3f}]")
        print(line)
    program_costs(d, static)


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/b; proxy_temp_path {dir}/p; fastcgi_temp_path {dir}/f;
    uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
    server {{ listen {listen}; location / {{ return 200 "hello from prisond bench\\n"; }} }}
}}
"""


def nginx_conf(work: str, name: str, listen: str) -> str:
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as fh:
        fh.write(NGINX_CONF.format(dir=d, listen=listen))
    return path


def wrk(url: str, seconds: int) -> float:
    # wrk on CPU 0, nginx on CPU 1: the two do not fight over one core, run to run
    r = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{seconds}s", url],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk: {r.stdout}{r.stderr}")


def http(d: Daemon, work: str, rounds: int) -> None:
    inside = subprocess.Popen(d.ctl("exec", "k", "--", "taskset", "-c", "1", "/usr/sbin/nginx", "-c",
                                    nginx_conf(work, "in", "8080")))
    outside = subprocess.Popen(["taskset", "-c", "1", "/usr/sbin/nginx", "-c",
                                nginx_conf(work, "out", f"{OUTSIDE_IP}:8080")])
    try:
        time.sleep(1.0)
        res = {"outside": [], "kernel prison": []}
        for rnd in range(rounds):
            pair = [("outside", f"http://{OUTSIDE_IP}:8080/"), ("kernel prison", f"http://{PRISON_IP}:8080/")]
            for name, url in pair if rnd % 2 == 0 else reversed(pair):
                res[name].append(wrk(url, 4))
        paired = sorted(a / b for a, b in zip(res["kernel prison"], res["outside"]))
        print(f"2. nginx (CPU 1) under wrk (CPU 0, 1 thread, 32 connections, 4 s), {rounds} rounds: outside "
              f"{statistics.median(res['outside']):.0f} req/s, kernel prison {statistics.median(res['kernel prison']):.0f}"
              f" req/s, ratio {statistics.median(paired):.3f} [{paired[0]:.3f}-{paired[-1]:.3f}]")
    finally:
        for p in (inside, outside):
            p.send_signal(signal.SIGTERM)
            p.wait(10)


def many(work: str, n: int) -> None:
    body = "prisons:\n" + "".join(f"  p{i}: {{ip4: [127.9.{i // 250}.{i % 250 + 1}]}}\n" for i in range(n))
    d = Daemon(body, work)
    try:
        lat = []
        for _ in range(20):
            t0 = time.perf_counter()
            subprocess.run(d.ctl("list"), stdout=subprocess.DEVNULL, check=True)
            lat.append((time.perf_counter() - t0) * 1000)
        print(f"3. {n} kernel prisons: ready {d.ready_after:.2f} s after prisond started; daemon RSS "
              f"{d.rss_mb():.1f} MB; `prisonctl list` median {statistics.median(lat):.1f} ms "
              f"(p90 {sorted(lat)[17]:.1f} ms)")
    finally:
        t0 = time.monotonic()
        d.stop()
        print(f"   stopped all {n} in {time.monotonic() - t0:.2f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--prisons", type=int, default=1000)
    p.add_argument("--shared", action="store_true", help="share the prison's address with a second prison")
    args = p.parse_args()
    enter_netns()
    work = tempfile.mkdtemp(prefix="prisond-kbench-")
    try:
        twin = f"  k2:\n    enforce: kernel\n    ip4: [{PRISON_IP}]\n" if args.shared else ""
        d = Daemon(f"prisons:\n  k:\n    enforce: kernel\n    ip4: [{PRISON_IP}]\n" + twin, work)
        try:
            socket_loops(d, args.rounds)
            nginx_dir = tempfile.mkdtemp(prefix="nginx-", dir=BUILD)
            try:
                http(d, nginx_dir, args.rounds)
            finally:
                shutil.rmtree(nginx_dir, ignore_errors=True)
        finally:
            d.stop()
        many(work, args.prisons)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
