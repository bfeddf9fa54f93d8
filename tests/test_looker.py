"""host/looker.py: show's look at processes, made by helpers the daemon kills when they stall.
Real helpers and real processes; the stalled one is a process whose mmap lock is held behind
its FUSE file (support/mmaphold.py), as a tenant can do."""
import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from prisond.host import procinfo
from prisond.host.looker import Lookers

SUPPORT = os.path.join(os.path.dirname(__file__), "support")


async def test_a_look_tells_what_a_read_here_tells():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    child = subprocess.Popen(["sleep", "30"], pass_fds=[srv.fileno()])
    lookers = Lookers()
    try:
        got = await lookers.look([child.pid, os.getpid()])
        want = [procinfo.look_at(child.pid, [procinfo.FD_BUDGET])]
        assert got[0] == want[0]
        assert srv.fileno() and os.fstat(srv.fileno()).st_ino in got[0]["sockets"]
        assert got[0]["sockets"][os.fstat(srv.fileno()).st_ino] == "TCP"
        assert got[1]["pid"] == os.getpid() and got[1]["command"] != "?"
        assert len(lookers.children()) == 1  # one helper, kept for the next look
        assert (await lookers.look([child.pid]))[0] == want[0]
        assert len(lookers.children()) == 1
    finally:
        await lookers.close()
        child.kill()
        child.wait()
        srv.close()


@pytest.mark.root  # /dev/fuse and a mount
async def test_a_process_whose_reads_wait_is_reported_unread_and_the_loop_goes_on():
    """Its cmdline cannot be read while the tenant's FUSE server holds a READ: the helper is
    killed after STALL, the process shows as not read, the processes before it are told,
    and the event loop ran all along."""
    holder = subprocess.Popen([sys.executable, os.path.join(SUPPORT, "mmaphold.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lookers = Lookers(stall=0.5)
    try:
        line = holder.stdout.readline().strip()
        assert line.isdigit(), line
        victim = int(line)
        gaps: list[float] = []

        async def tick():
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.ensure_future(tick())
        t0 = time.monotonic()
        got = await lookers.look([os.getpid(), victim])
        took = time.monotonic() - t0
        helpers = lookers.children()
        ticker.cancel()
        assert got[0]["command"] != "?" and "unread" not in got[0]
        assert got[1]["command"] == "?" and got[1]["sockets"] is None
        assert "0.5 s" in got[1]["unread"], got[1]
        assert took < 5, took
        assert max(gaps) < 0.25, f"the event loop stood still for {max(gaps):.2f} s"
        assert lookers.killed == 1
        for _ in range(100):  # the killed helper is collected
            if not lookers.children() & helpers:
                break
            await asyncio.sleep(0.05)
        assert not lookers.children() & helpers
        for pid in helpers:
            assert not os.path.exists(f"/proc/{pid}")
        again = await lookers.look([os.getpid()])  # a new helper
        assert again[0]["command"] == got[0]["command"]
    finally:
        await lookers.close()
        holder.stdin.write("quit\n")
        holder.stdin.flush()
        holder.wait(timeout=60)


async def test_a_helper_that_dies_is_reported_and_replaced():
    async def dying():
        return await asyncio.create_subprocess_exec(sys.executable, "-c", "pass", stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)

    lookers = Lookers(spawn=dying)
    try:
        (got,) = await lookers.look([os.getpid()])
        assert got["command"] == "?" and got["unread"] == "not read: the helper failed"
    finally:
        await lookers.close()
    real = Lookers()
    try:
        (got,) = await real.look([os.getpid()])
        assert got["command"] != "?"
    finally:
        await real.close()


async def test_looks_at_once_are_bounded_and_all_answered():
    lookers = Lookers(size=2)
    try:
        results = await asyncio.gather(*(lookers.look([os.getpid()]) for _ in range(10)))
        assert all(r[0]["pid"] == os.getpid() and r[0]["command"] != "?" for r in results)
        assert len(lookers.children()) <= 2
    finally:
        await lookers.close()
