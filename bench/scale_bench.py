#!/usr/bin/env python3
"""Many prisons on one host: what a hosting provider compares, every figure against its target
or as a ratio against a baseline measured in the same run.

    sudo /usr/local/lib/prisond/venv/bin/python bench/scale_bench.py [--prisons 10000]
        [--compare 100] [--rounds 5] [--skip-limits] [--skip-no-memory] [--skip-calls]
        [--skip-compare]

1. --prisons prisons (each its own address on lo, cgroup, kernel programs, UTS/IPC/PID/mount
   namespaces and a small service: bench/progs/tinyserve.c listening on 0.0.0.0:80, which the
   kernel layer steers to the prison's address): time from starting prisond to READY and until
   every service has answered with its prison's hostname, the daemon's RSS, `list` and `show`
   (on the control socket, and the `prisonctl` command as a person types it), a reload that
   changes one prison, the daemon's idle CPU, `show` from 100 clients, and the stop of all.
2. The same prisons with limits on (memory, pids, cpu): ready, RSS, stop.  Then without memory
   accounting (no memory cgroup per prison: what each costs the kernel shows beside part 1's).
3. Per-call costs (kernel_bench.py and shim_bench.py's loops, in this run): bind+close,
   connect+close and UDP sendto in a kernel prison against the same static binary outside,
   nginx under wrk, with the programs' own ns per call; the shim's UDP sendto.
4. --compare prisons with one service each against as many bwrap and firejail sandboxes with
   the same service, and as many systemd-run units in the Debian 12 container the packaging
   test boots (when its root is cached here): time until all serve, and memory (PSS) per
   instance.

Everything runs in a private network namespace on loopback, and a private mount namespace where
each daemon's runtime directory is a tmpfs, as /run is on a systemd host.  kernel.pid_max is raised for the
run if 10,000 prisons (two processes each) would not fit, and set back at the end.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import Daemon, closed_loop, enter_netns

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "_build")  # on the host's tree: isolated prisons see it, /tmp is theirs
PORT = 80


def build_service() -> str:
    os.makedirs(BUILD, exist_ok=True)
    out = os.path.join(BUILD, "tinyserve")
    subprocess.run(["cc", "-O2", "-static", "-o", out, os.path.join(HERE, "progs", "tinyserve.c")], check=True)
    return out


def address(i: int) -> str:
    return f"127.9.{i // 250}.{i % 250 + 1}"


def config(n: int, service: str, limits: bool, hostname_of=lambda i: f"p{i}.example.test",
           memory: bool = True) -> str:
    lim = ", limits: {memory: 64M, pids: 20, cpu: 20%}" if limits else ""
    head = "" if memory else "daemon:\n  memory_accounting: false\n"
    return head + "prisons:\n" + "".join(
        f"  p{i}: {{hostname: {hostname_of(i)}, ip4: [{address(i)}], exec: {{start: [{service}, '{PORT}']}}{lim}}}\n"
        for i in range(n))


def target(value: float, limit: float, unit: str, less: bool = True) -> str:
    ok = value < limit if less else value >= limit
    return f"{value:.{1 if value >= 10 else 2}f} {unit} (target {'<' if less else '>='} {limit:g} {unit}: " \
           f"{'met' if ok else 'MISSED'})"


def all_serve(addrs: list[str], hostnames: list[str], deadline: float) -> float:
    """Connect to every address until each has answered with its hostname; when the last did
    (monotonic).  Many connections at once, through non-blocking sockets."""
    import selectors
    left = dict(zip(addrs, hostnames, strict=True))
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[str, str]] = {}
    while left or pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(left) + len(pending)} services did not answer")
        while left and len(pending) < 256:
            ip = next(iter(left))
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((ip, PORT))
            sel.register(s, selectors.EVENT_READ)
            pending[s] = (ip, left.pop(ip))
        for key, _ in sel.select(0.5):
            s = key.fileobj
            ip, hostname = pending.pop(s)
            sel.unregister(s)
            try:
                data = s.recv(128)
            except OSError:
                data = b""
            if data.decode(errors="replace").strip() != hostname:
                left[ip] = hostname  # not yet up (refused): again
            s.close()
        if left and not pending:
            time.sleep(0.05)
    return time.monotonic()


def request_ms(d: Daemon, method: str, runs: int, **params) -> list[float]:
    out = []
    for i in range(runs):
        p = {k: (v(i) if callable(v) else v) for k, v in params.items()}
        t0 = time.perf_counter()
        if not d.request(method, **p) and method != "daemon.reload":
            raise RuntimeError(f"{method} failed")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cli_ms(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p99(v: list[float]) -> float:
    return sorted(v)[min(len(v) - 1, int(len(v) * 0.99))]


def daemon_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------ 100 clients

def _clients(path: str, clients: int, seconds: float, names: list[str], start_at: float, out) -> None:
    import asyncio
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    def asker(i: int):
        rnd = random.Random(i)
        return lambda: b'{"v":1,"id":1,"method":"prison.show","params":{"name":"%s"}}\n' % \
            names[rnd.randrange(len(names))].encode()

    async def go():
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        until = time.perf_counter() + seconds
        lat: list[float] = []
        counts = await asyncio.gather(*(closed_loop(path, asker(i), until, lat) for i in range(clients)))
        return sum(counts), lat

    out.put(asyncio.run(go()))


def show_load(d: Daemon, names: list[str], clients: int = 100, seconds: float = 5.0) -> tuple[float, float, float]:
    """prison.show from `clients` connections (closed loop, two client processes): requests/s,
    median and p99 latency (ms)."""
    q: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.time() + 0.5
    procs = [multiprocessing.Process(target=_clients, args=(d.sock, clients // 2, seconds, names, start_at, q))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    total = sum(n for n, _ in results)
    lat = sorted(x for _, lat in results for x in lat)
    return total / seconds, statistics.median(lat) * 1000, p99(lat) * 1000


# ------------------------------------------------------------ part 1 and 2

def cpu_times() -> list[int]:
    """/proc/stat's first line: the machine's CPU time by kind (user ... steal), in ticks."""
    with open("/proc/stat") as fh:
        return [int(x) for x in fh.readline().split()[1:9]]


def stolen(a: list[int], b: list[int]) -> str:
    """How busy the machine was between two cpu_times(), and how much the hypervisor took (on a
    VM, time stolen for other guests: figures measured while it is high are slower than the code)."""
    d = [y - x for x, y in zip(a, b)]
    total = sum(d) or 1
    return f"{100 * (total - d[3] - d[4] - d[7]) / total:.0f}% busy, {100 * d[7] / total:.0f}% stolen by the hypervisor"


def meminfo() -> dict[str, int]:
    """/proc/meminfo's figures, in KB."""
    with open("/proc/meminfo") as fh:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh)}


def file_systems(pid: int | None) -> int | str:
    """How many file systems (superblocks) the process's mounts hold that the host's do not:
    each takes a slot in every memory cgroup of the host, for as long as the host runs."""
    def devices(p) -> set[str]:
        with open(f"/proc/{p}/mountinfo") as fh:
            return {line.split()[2] for line in fh}
    try:
        return len(devices(pid) - devices(1))
    except (OSError, TypeError):
        return "?"


def many(work: str, n: int, service: str, limits: bool, full: bool, memory: bool = True) -> None:
    title = f"{n} prisons" + (" with limits (memory 64M, pids 20, cpu 20%)" if limits else "") + \
        ("" if memory else " without memory accounting (daemon.memory_accounting: false)")
    print(f"\n== {title}, each with its own address, cgroup, kernel programs and a service", flush=True)
    wd = tempfile.mkdtemp(dir=work)
    names = [f"p{i}" for i in range(n)]
    hostnames = [f"p{i}.example.test" for i in range(n)]
    before, cpu0 = meminfo(), cpu_times()
    t0 = time.monotonic()
    d = Daemon(config(n, service, limits, memory=memory), wd, timeout=900)
    try:
        served = all_serve([address(i) for i in range(n)], hostnames, time.monotonic() + 300)
        print(f"  ready (READY from prisond)   {target(d.ready_after, 30, 's')}")
        print(f"  every service answered       {served - t0:.1f} s after prisond started "
              "(its hostname, from its address)")
        print(f"  CPU meanwhile                {stolen(cpu0, cpu_times())}")
        print(f"  daemon RSS                   {target(d.rss_mb(), 300, 'MB')}")
        after = meminfo()
        init = d.request("prison.show", name=names[n // 2]).get("init_pid")
        print(f"  kernel memory per prison     {(after['Slab'] - before['Slab']) / n:.0f} KB of slab, "
              f"{(before['MemAvailable'] - after['MemAvailable']) / n:.0f} KB of available memory "
              f"({file_systems(init)} file systems in a prison's mounts that the host's lack)")
        states = {}
        for p in d.request("prison.list"):
            states[p["state"]] = states.get(p["state"], 0) + 1
        print(f"  states                       {states}")
        if not full:
            return
        time.sleep(1.5)  # list's figures (kept a second) are now old: the first list reads them all
        cold = request_ms(d, "prison.list", 1)[0]
        warm = request_ms(d, "prison.list", 20)
        print(f"  list, figures read afresh    {target(cold, 150, 'ms')}")
        print(f"  list, again within 1 s       {target(statistics.median(warm), 150, 'ms')} (median of 20)")
        print(f"  `prisonctl list` (command)   {statistics.median(cli_ms(d.ctl('list'), 5)):.0f} ms (median of 5; "
              f"includes starting Python and printing {n} lines)")
        show = request_ms(d, "prison.show", 200, name=lambda i: names[(i * 7919) % n])
        print(f"  show of one (200, each of another prison) {target(statistics.median(show), 10, 'ms')} median, "
              f"p99 {p99(show):.2f} ms")
        print(f"  `prisonctl show` (command)   {statistics.median(cli_ms(d.ctl('show', names[n // 2]), 5)):.0f} ms "
              "(median of 5; starting Python is most of it)")
        reload_one(d, wd, n, service)
        c0, w0 = daemon_cpu(d.proc.pid), time.monotonic()
        time.sleep(20)
        idle = (daemon_cpu(d.proc.pid) - c0) / (time.monotonic() - w0) * 100
        print(f"  daemon idle CPU (20 s)       {target(idle, 1, '% of a CPU')}")
        for label, pool in (("one prison", [names[n // 3]]), ("random prisons", names)):
            rps, med, tail = show_load(d, pool)
            print(f"  show, 100 clients, {label:<15}{rps:>8.0f} req/s (target >= 40000: "
                  f"{'met' if rps >= 40000 else 'MISSED'}), median {med:.2f} ms, p99 "
                  f"{target(tail, 5, 'ms')}")
    finally:
        t1, cpu1 = time.monotonic(), cpu_times()
        d.stop()
        print(f"  stop of all                  {target(time.monotonic() - t1, 30, 's')} "
              f"({stolen(cpu1, cpu_times())})", flush=True)


def reload_one(d: Daemon, wd: str, n: int, service: str) -> None:
    """Change one prison in the file, then `daemon.reload`: the request's round trip (the daemon
    reads and checks the whole file, diffs every prison, applies the one change).  A limit is
    changed in place; a hostname restarts the prison (its stop and start are in the time)."""
    cfg = os.path.join(wd, "prisond.yaml")
    with open(cfg) as fh:
        text = fh.read()
    head = text[:text.index("prisons:")]
    for label, line in (("a limit, in place", lambda k: f"limits: {{pids: {100 + k}}}, hostname: p5.example.test, "),
                        ("its hostname (a restart)", lambda k: f"hostname: p5-{k}.example.test, ")):
        times = []
        for k in range(3):
            body = config(n, service, False).replace("  p5: {hostname: p5.example.test, ", "  p5: {" + line(k), 1)
            with open(cfg, "w") as fh:
                fh.write(head + body)
            t0 = time.perf_counter()
            plan = d.request("daemon.reload")
            times.append((time.perf_counter() - t0) * 1000)
            if not plan:
                raise RuntimeError("reload failed")
        what = ", ".join(f"{k} {len(v)}" for k, v in plan.items() if isinstance(v, list) and v and k != "unchanged")
        print(f"  reload, one prison's {label:<25}{target(statistics.median(times), 100, 'ms')} "
              f"(median of 3; {what})")


# ------------------------------------------------------------ part 3

def installed_shim() -> str:
    """The shim of the prisond this Python imports (a wheel's or the checkout's)."""
    import prisond
    path = os.path.join(os.path.dirname(prisond.__file__), "libprisonshim.so")
    if not os.path.exists(path):
        raise RuntimeError(f"no shim at {path}: run this with the Python prisond was installed into")
    return path


def per_call(work: str, rounds: int) -> None:
    print(f"\n== per-call costs, {rounds} rounds (kernel_bench.py and shim_bench.py, this run)", flush=True)
    sys.argv = [sys.argv[0]]
    import kernel_bench as K
    import shim_bench as SB
    d = Daemon(f"prisons:\n  k:\n    enforce: kernel\n    ip4: [{K.PRISON_IP}]\n", tempfile.mkdtemp(dir=work))
    try:
        static = K.build(True)
        ops = {"bind+close": (["bind", "0.0.0.0"], 100000, 1.03),
               "connect+close": (["connect", K.PRISON_IP], 20000, 1.03),
               "udp sendto": (["udp", K.PRISON_IP], 200000, 1.05)}
        res: dict = {op: {"outside": [], "prison": []} for op in ops}
        for rnd in range(rounds):
            for op, (args, count, _) in ops.items():
                pair = [("outside", [static, *args, str(count)]),
                        ("prison", d.ctl("exec", "k", "--", static, *args, str(count)))]
                for name, argv in pair if rnd % 2 == 0 else reversed(pair):
                    res[op][name].append(K.ns_per_op(argv))
        for op, (_, _, goal) in ops.items():
            ratios = sorted(a / b for a, b in zip(res[op]["prison"], res[op]["outside"], strict=True))
            med = statistics.median(ratios)
            out, inside = statistics.median(res[op]["outside"]), statistics.median(res[op]["prison"])
            print(f"  {op:<14} kernel prison / outside {med:.3f} [{ratios[0]:.3f}-{ratios[-1]:.3f}] "
                  f"(target <= {goal}: {'met' if med <= goal else 'MISSED'}); outside {out:.0f} ns, "
                  f"prison {inside:.0f} ns")
        K.program_costs(d, static)
        nginx_dir = tempfile.mkdtemp(prefix="nginx-", dir=BUILD)
        try:
            K.http(d, nginx_dir, rounds)
        finally:
            shutil.rmtree(nginx_dir, ignore_errors=True)
        print("     (nginx target >= 0.98)")
    finally:
        d.stop()
    binary = SB.build()
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PRISOND_POLICY")}
    shim_env = dict(env, LD_PRELOAD=installed_shim(), PRISOND_POLICY=SB.POLICY)
    check = subprocess.run([binary, "hostname", "1"], env=shim_env, capture_output=True, text=True)
    if check.returncode != 0 or check.stderr.strip():  # ld.so ignores a preload it cannot load, and says so
        raise RuntimeError(f"the shim did not load: {check.stderr.strip()}")
    base, shim = [], []
    args, _, count = SB.OPS["udp sendto"]
    for _ in range(rounds):
        base.append(SB.run_op(binary, args, count, env))
        shim.append(SB.run_op(binary, args, count, shim_env))
    ratios = sorted(a / b for a, b in zip(shim, base, strict=True))
    med = statistics.median(ratios)
    print(f"  shim udp sendto / no shim {med:.3f} [{ratios[0]:.3f}-{ratios[-1]:.3f}] (target <= 1.05: "
          f"{'met' if med <= 1.05 else 'MISSED'})")


# ------------------------------------------------------------ part 4

def pss_kb(pids) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                todo += [int(x) for x in fh.read().split()]
        except OSError:
            pass
    return out


def cgroup_pids(top: str) -> list[int]:
    out = []
    for dirpath, _, files in os.walk(top):
        if "cgroup.procs" in files:
            with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                out += [int(x) for x in fh.read().split()]
    return out


UNITS = r"""
import json, os, socket, subprocess, sys, time
n, service = int(sys.argv[1]), sys.argv[2]
def pss(pids):
    kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                kb += sum(int(l.split()[1]) for l in fh if l.startswith("Pss:"))
        except OSError:
            pass
    return kb
before = pss([1])
ports = [21000 + i for i in range(n)]
want = socket.gethostname().encode()
t0 = time.monotonic()
runs = [subprocess.Popen(["systemd-run", "--quiet", f"--unit=cmp{p}", service, str(p)]) for p in ports]
if any(r.wait() for r in runs):
    sys.exit("systemd-run failed")
left = set(ports)
while left:
    if time.monotonic() - t0 > 120:
        sys.exit(f"{len(left)} units did not serve")
    for p in list(left):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0 and s.recv(64).strip() == want:
                left.discard(p)
    time.sleep(0.01)
served = time.monotonic() - t0
pids = []
for p in ports:
    with open(f"/sys/fs/cgroup/system.slice/cmp{p}.service/cgroup.procs") as fh:
        pids += [int(x) for x in fh.read().split()]
print(json.dumps({"served": served, "kb": pss(pids) + pss([1]) - before, "procs": len(pids)}))
"""


def systemd_units(work: str, n: int, service: str) -> tuple[float, float] | str:
    """n systemd-run units of the service, in the Debian 12 container tests/system boots
    (systemd as PID 1): (seconds until all serve, KB PSS per unit), or why not measured."""
    import glob
    import json
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from system.container import CACHE, Container, ContainerError
    roots = sorted(glob.glob(os.path.join(CACHE, "*-root-*", ".complete")))
    if not roots or not shutil.which("systemd-nspawn"):
        return f"no container root in {CACHE} (the packaging test, tests/system, makes it) or no systemd-nspawn"
    share = tempfile.mkdtemp(dir=work)
    shutil.copy(service, os.path.join(share, "tinyserve"))
    with open(os.path.join(share, "units.py"), "w") as fh:
        fh.write(UNITS)
    box = Container(os.path.dirname(roots[-1]), share, lambda _: None)
    try:
        box.boot()
        got = json.loads(box.out(f"python3 /srv/systest/units.py {n} /srv/systest/tinyserve", timeout=300))
        if got["procs"] != n:
            return f"{got['procs']} processes in {n} units"
        return got["served"], got["kb"] / n
    except (ContainerError, ValueError) as exc:
        return f"the container: {str(exc).splitlines()[0]}"
    finally:
        box.halt()


def compare(work: str, n: int, service: str) -> None:
    print(f"\n== {n} instances of one service: time until all serve, memory (PSS) per instance", flush=True)
    rows = {}
    wd = tempfile.mkdtemp(dir=work)
    t0 = time.monotonic()
    d = Daemon(config(n, service, False), wd)
    try:
        served = all_serve([address(i) for i in range(n)], [f"p{i}.example.test" for i in range(n)], t0 + 120)
        pss = pss_kb(cgroup_pids(d.cgroup_dir()) + [d.proc.pid])
        rows["prisond"] = (served - t0, pss / n)
    finally:
        d.stop()
    sandboxes = {
        "bwrap": lambda port: ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-uts", "--unshare-ipc",
                               "--ro-bind", "/", "/",
                               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--hostname", f"s{port}",
                               service, str(port)],
        "firejail": lambda port: ["firejail", "--quiet", "--noprofile", f"--hostname=s{port}", service, str(port)],
    }
    for name, argv in sandboxes.items():
        if not shutil.which(argv(0)[0]):
            print(f"  {name}: not installed (scripts/setup installs it)")
            continue
        ports = [21000 + i for i in range(n)]
        t0 = time.monotonic()
        procs = [subprocess.Popen(argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
        try:
            left = set(ports)
            while left:
                if time.monotonic() - t0 > 120:
                    raise RuntimeError(f"{name}: {len(left)} did not serve")
                for port in list(left):
                    with socket.socket() as s:
                        if s.connect_ex(("127.0.0.1", port)) == 0 and s.recv(64).strip() == f"s{port}".encode():
                            left.discard(port)
                time.sleep(0.01)
            served = time.monotonic() - t0
            pss = pss_kb([pid for p in procs for pid in descendants(p.pid)])
            rows[name] = (served, pss / n)
        finally:  # every process of each sandbox (bwrap's own init and the service outlive a killed bwrap)
            pids = [pid for p in procs for pid in descendants(p.pid)]
            for pid in reversed(pids):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for p in procs:
                p.wait()
    units = systemd_units(work, n, service)
    if isinstance(units, str):
        print(f"  systemd-run: not measured: {units}")
    else:
        rows["systemd-run"] = units
    print("  (prisond: from starting the daemon, and its memory shared out over the instances; the sandboxes")
    print("  share the host's address and hostname-less network, each on its own port; systemd-run: units")
    print("  started at once in the Debian 12 container the packaging test boots (systemd as its PID 1),")
    print("  timed inside it, with PID 1's growth shared out over the units; each answers with the")
    print("  container's hostname, as systemd has no hostname per unit)")
    base_t, base_m = rows["prisond"]
    for name, (t, m) in rows.items():
        ratio = "" if name == "prisond" else f"   prisond / {name}: time {base_t / t:.2f}, memory {base_m / m:.2f}"
        print(f"  {name:<10} all {n} serve after {t:6.2f} s, {m / 1024:6.2f} MB PSS per instance{ratio}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prisons", type=int, default=10000)
    ap.add_argument("--compare", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-limits", action="store_true")
    ap.add_argument("--skip-no-memory", action="store_true")
    ap.add_argument("--skip-calls", action="store_true")
    ap.add_argument("--skip-compare", action="store_true")
    args = ap.parse_args()
    enter_netns()
    service = build_service()
    work = tempfile.mkdtemp(prefix="prisond-scale-", dir=BUILD)
    pid_max = "/proc/sys/kernel/pid_max"
    with open(pid_max) as fh:
        old_pid_max = fh.read().strip()
    try:
        if int(old_pid_max) < 4 * args.prisons + 10000:
            with open(pid_max, "w") as fh:
                fh.write(str(4 * args.prisons + 10000))
        many(work, args.prisons, service, limits=False, full=True)
        if not args.skip_limits:
            many(work, args.prisons, service, limits=True, full=False)
        if not args.skip_no_memory:
            many(work, args.prisons, service, limits=False, full=False, memory=False)
        if not args.skip_calls:
            per_call(work, args.rounds)
        if not args.skip_compare:
            compare(work, args.compare, service)
    finally:
        with open(pid_max, "w") as fh:
            fh.write(old_pid_max)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
