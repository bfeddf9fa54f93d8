"""What the benchmarks share: a private network namespace, a real prisond, timing commands."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

# /usr/local/bin/prisonctl is what scripts/setup installs (its exec is the C fast path);
# PRISONCTL= and PRISOND= in the environment choose others (a wheel installed in a venv)
PRISONCTL = os.environ.get("PRISONCTL") or (
    "/usr/local/bin/prisonctl" if os.path.exists("/usr/local/bin/prisonctl") else shutil.which("prisonctl"))
PRISOND = os.environ.get("PRISOND") or shutil.which("prisond") or "/usr/local/bin/prisond"


def enter_netns() -> None:
    """Run the rest of the benchmark as root in a private network namespace (loopback only) and
    a private mount namespace (each daemon's runtime directory is a tmpfs of its own there)."""
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000 | 0x00020000) != 0:  # CLONE_NEWNET | CLONE_NEWNS
        sys.exit("bench: cannot create network and mount namespaces (run as root)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)  # nothing mounted here reaches the host
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


class Daemon:
    def __init__(self, config: str, work: str, extra_args: list[str] = (), timeout: float = 120):
        self.work = work
        self.sock = os.path.join(work, "run", "control.sock")
        cfg = os.path.join(work, "prisond.yaml")
        with open(cfg, "w") as fh:
            ours = f"daemon:\n  cgroup_parent: prisond-bench-{os.getpid()}-{len(os.listdir(work))}\n"
            fh.write(ours + config.removeprefix("daemon:\n"))  # under the config's own daemon: if any
        # The runtime directory on a tmpfs, as /run is on every systemd host (the unit's is
        # /run/prisond).  This VM's /run is its ext4 root, without a journal: there each unix
        # socket a prison's init binds was a new inode, and making one costs ext4 a search among
        # the inodes freed in the last minutes (an eighth of the start of 3,000 prisons).
        os.makedirs(os.path.join(work, "run"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "prisond-bench", os.path.join(work, "run")],
                       check=True)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([PRISOND, "--config", cfg, "--runtime-dir", os.path.join(work, "run"),
                                      "--socket", self.sock, "--state-dir",
                                      os.path.join(work, "state"), "--log-level", "warning", *extra_args])
        # asked on the socket itself, not by running prisonctl: a Python interpreter started
        # every 50 ms would take the CPU the daemon is measured with
        while self.request("daemon.health").get("status") != "ready":
            if self.proc.poll() is not None or time.monotonic() - self.t0 > timeout:
                raise RuntimeError("prisond did not become ready")
            time.sleep(0.1)
        self.ready_after = time.monotonic() - self.t0

    def request(self, method: str, **params) -> dict:
        """One request on the control socket: its result ({} while nobody answers)."""
        import json
        import socket
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.sock)
                s.sendall(json.dumps({"v": 1, "id": 1, "method": method, "params": params}).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        return {}
                    buf += chunk
        except OSError:
            return {}
        return json.loads(buf).get("result") or {}

    def ctl(self, *args) -> list[str]:
        return [PRISONCTL, "--socket", self.sock, *args]

    def cgroup_dir(self) -> str:
        with open(os.path.join(self.work, "prisond.yaml")) as fh:
            parent = fh.readline() and fh.readline().split(":", 1)[1].strip()
        return os.path.join("/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified")
                            else "/sys/fs/cgroup", parent)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(300)
        subprocess.run(["umount", "-l", os.path.join(self.work, "run")])
        parent = os.path.basename(self.cgroup_dir())
        try:  # the daemon keeps its lock file (unlinking one races); a benchmark's is not needed
            os.unlink(f"/run/lock/prisond/{parent}.lock")
        except FileNotFoundError:
            pass


def time_cmd(argv: list[str], runs: int, env=None) -> list[float]:
    """Wall time of each of `runs` runs, in ms; a failing run is an error."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            raise RuntimeError(f"{argv} exited {r.returncode}")
    return out


def p90(v: list[float]) -> float:
    return sorted(v)[max(0, int(len(v) * 0.9) - 1)]


def compare_commands(title: str, cmds: dict[str, list[str]], runs: int, subject: str) -> None:
    """Time each command `runs` times, interleaved in blocks of 5 so that drift on a shared VM
    hits them all; print medians, p90 and `subject`'s ratio to each of the others."""
    samples = {k: [] for k in cmds}
    for _ in range(max(1, runs // 5)):
        for k, argv in cmds.items():
            samples[k] += time_cmd(argv, 5)
    print(f"{title}: median wall time of {len(samples[subject])} runs each (ms)")
    pe = statistics.median(samples[subject])
    for k, v in samples.items():
        med = statistics.median(v)
        ratio = f"   {subject} / {k} = {pe / med:.2f}" if k != subject else ""
        print(f"  {k:<18}{med:>8.2f}   p90 {p90(v):>7.2f}{ratio}")


async def closed_loop(path: str, request, until: float, lat: list[float]) -> int:
    """One control-socket client, closed loop until `until` (perf_counter): request() gives
    each request line; each reply must be ok.  Its latencies go to lat; returns how many."""
    import asyncio
    reader, writer = await asyncio.open_unix_connection(path)
    n = 0
    while time.perf_counter() < until:
        line = request()
        t0 = time.perf_counter()
        writer.write(line)
        reply = await reader.readline()
        if not reply.startswith(b'{"v":1,"id":1,"ok":true'):
            raise RuntimeError(f"bad reply: {reply[:200]!r}")
        lat.append(time.perf_counter() - t0)
        n += 1
    writer.close()
    return n
