#!/usr/bin/env python3
"""Control-socket throughput: 100 concurrent clients asking `prison.show` and `prison.list`,
against prisond with uvloop and with asyncio's own loop, in one run.

    sudo python3 bench/control_bench.py [--clients 100] [--seconds 5] [--rounds 2]

Each client is a connection that sends a request, waits for the reply, and sends the next
(closed loop), for --seconds; the clients run in two processes (asyncio, uvloop) so that the
client side is not the bottleneck of one interpreter.  Reported: requests per second over all
clients, and the median and p99 latency of a request.  The two daemon loops alternate round by
round.  Target: >= 10,000 requests/s and p99 under 10 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time

from benchlib import Daemon, closed_loop, enter_netns

PRISONS = "prisons:\n" + "".join(f"  p{i}:\n    ip4: [127.0.2.{i + 1}]\n" for i in range(10))


def _worker(path: str, clients: int, seconds: float, start_at: float, out) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    reqs = [b'{"v":1,"id":1,"method":"prison.show","params":{"name":"p3"}}\n',
            b'{"v":1,"id":1,"method":"prison.list"}\n']

    async def go():
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        until = time.perf_counter() + seconds
        lat: list[float] = []
        counts = await asyncio.gather(*(closed_loop(path, lambda m=reqs[i % 2]: m, until, lat) for i in range(clients)))
        return sum(counts), lat

    n, lat = asyncio.run(go())
    out.put((n, lat))


def measure(path: str, clients: int, seconds: float) -> tuple[float, float, float]:
    q = multiprocessing.Queue()
    start_at = time.time() + 0.5
    procs = [multiprocessing.Process(target=_worker, args=(path, clients // 2 + (clients % 2 if i == 0 else 0),
                                                           seconds, start_at, q)) for i in range(2)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    total = sum(n for n, _ in results)
    lat = sorted(x for _, v in results for x in v)
    return total / seconds, statistics.median(lat) * 1000, lat[int(len(lat) * 0.99)] * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    enter_netns()
    work = tempfile.mkdtemp(prefix="prisond-control-bench-")
    results: dict[str, list] = {"uvloop": [], "asyncio": []}
    try:
        for _ in range(args.rounds):
            for loop in ("uvloop", "asyncio"):
                d = Daemon(PRISONS, tempfile.mkdtemp(dir=work), extra_args=[] if loop == "uvloop" else ["--no-uvloop"])
                try:
                    results[loop].append(measure(d.sock, args.clients, args.seconds))
                finally:
                    d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"control socket, {args.clients} clients (half prison.show, half prison.list of 10 prisons), "
          f"{args.seconds:g} s x {args.rounds} rounds per loop")
    for loop, rs in results.items():
        rps = statistics.median(r[0] for r in rs)
        print(f"  {loop:<8} {rps:>9.0f} requests/s   median {statistics.median(r[1] for r in rs):.2f} ms   "
              f"p99 {statistics.median(r[2] for r in rs):.2f} ms   (rounds: "
              + ", ".join(f"{r[0]:.0f}/s p99 {r[2]:.1f} ms" for r in rs) + ")")
    u, a = (statistics.median(r[0] for r in results[k]) for k in ("uvloop", "asyncio"))
    print(f"  uvloop / asyncio throughput = {u / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
