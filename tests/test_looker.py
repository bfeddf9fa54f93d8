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
from prisond.host.looker import FAILED, LATE, STALLED, Lookers

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


class _Victim:
    """A process whose /proc/PID/cmdline read waits until close() (support/mmaphold.py)."""

    def __enter__(self):
        self.holder = subprocess.Popen([sys.executable, os.path.join(SUPPORT, "mmaphold.py")],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        if not line.isdigit():
            self.__exit__()
            raise AssertionError(line)
        self.pid = int(line)
        return self

    def __exit__(self, *exc):
        self.holder.stdin.write("quit\n")
        self.holder.stdin.flush()
        self.holder.wait(timeout=60)


def _ticker(gaps: list[float]) -> asyncio.Future:
    async def tick():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    return asyncio.ensure_future(tick())


@pytest.mark.root  # /dev/fuse and a mount
async def test_a_process_whose_reads_wait_is_reported_unread_and_the_loop_goes_on():
    """Its cmdline cannot be read while the tenant's FUSE server holds a READ: the helper is
    killed after STALL, the process shows as not read, the processes before and after it are
    told (a new helper reads those after), and the event loop ran all along."""
    lookers = Lookers(stall=0.5)
    with _Victim() as victim:
        try:
            gaps: list[float] = []
            ticker = _ticker(gaps)
            child = subprocess.Popen(["sleep", "30"])
            t0 = time.monotonic()
            got = await lookers.look([os.getpid(), victim.pid, child.pid])
            took = time.monotonic() - t0
            helpers = lookers.children()
            ticker.cancel()
            child.kill()
            child.wait()
            assert got[0]["command"] != "?" and "unread" not in got[0]
            assert got[1]["command"] == "?" and got[1]["sockets"] is None
            assert got[1]["unread"] == STALLED.format(0.5) and got[1]["user"] == "root"
            assert got[2]["command"] == "sleep 30" and "unread" not in got[2]  # read past the stalled one
            assert took < 3, took
            assert max(gaps) < 0.25, f"the event loop stood still for {max(gaps):.2f} s"
            assert lookers.killed == 1
            for _ in range(100):  # the killed helper is collected
                if len(lookers.children()) == 1:
                    break
                await asyncio.sleep(0.05)
            assert len(lookers.children()) == 1  # the one that read the last process, kept
            assert all(os.path.exists(f"/proc/{pid}") == (pid in lookers.children()) for pid in helpers)
        finally:
            await lookers.close()


@pytest.mark.root
async def test_a_look_that_runs_out_of_time_says_so_for_every_process_left():
    lookers = Lookers(stall=0.5, deadline=0.3)
    with _Victim() as victim:
        try:
            got = await lookers.look([victim.pid, os.getpid()])
            assert [g["unread"] for g in got] == [LATE.format(0.3)] * 2
        finally:
            await lookers.close()


@pytest.mark.root
async def test_a_slow_look_does_not_hold_up_a_look_at_another_prison():
    """One slot: the stalled look gives it up after SLOW, and the other look is answered
    while the stalled one still waits."""
    lookers = Lookers(stall=1.0, size=1, slow=0.1)
    with _Victim() as victim:
        try:
            stalled = asyncio.ensure_future(lookers.look([victim.pid]))
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            (other,) = await lookers.look([os.getpid()])
            took = time.monotonic() - t0
            assert other["command"] != "?" and not stalled.done(), took
            assert (await stalled)[0]["unread"] == STALLED.format(1.0)
        finally:
            await lookers.close()


async def test_a_helper_found_dead_is_replaced_before_the_look():
    lookers = Lookers()
    await lookers.start()
    try:
        (pid,) = lookers.children()
        os.kill(pid, 9)
        await asyncio.sleep(0.2)  # dead (collected or not) before the look
        (got,) = await lookers.look([os.getpid()])
        assert got["command"] != "?" and "unread" not in got
    finally:
        await lookers.close()


async def test_a_helper_that_dies_is_reported_and_replaced():
    async def dying():
        return await asyncio.create_subprocess_exec(sys.executable, "-c", "pass", stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)

    lookers = Lookers(spawn=dying)
    try:
        (got,) = await lookers.look([os.getpid()])
        assert got["command"] == "?" and got["unread"] == FAILED
    finally:
        await lookers.close()
    real = Lookers()
    try:
        (got,) = await real.look([os.getpid()])
        assert got["command"] != "?"
    finally:
        await real.close()


async def test_looks_at_once_are_bounded_and_all_answered():
    lookers = Lookers(size=2, slow_max=0)  # no look counts as slow: two helpers at most
    try:
        results = await asyncio.gather(*(lookers.look([os.getpid()]) for _ in range(10)))
        assert all(r[0]["pid"] == os.getpid() and r[0]["command"] != "?" for r in results)
        assert len(lookers.children()) <= 2
    finally:
        await lookers.close()
