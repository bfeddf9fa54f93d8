"""show's look at a prison's processes, made by a helper process the daemon can kill.

What show reads of a process is the tenant's: its descriptors (/proc/PID/fd) and its command
line (/proc/PID/cmdline).  Both can be made to wait as long as the tenant likes, and a wait in
the daemon's event loop stops every other request (helper-38):

- a look at a descriptor (readdir, readlink, open of /proc/PID/fd/N) holds the file for a
  moment.  If the tenant closes its last copy of a TCP socket with SO_LINGER and unsent data
  meanwhile, the look's release is the last close, and it waits out the linger, up to the
  tenant's l_linger seconds (8.5 s and 40.5 s measured);
- a read of /proc/PID/cmdline takes the process's mmap lock, which the tenant can keep taken
  behind a read of its own FUSE file (14.5 s measured).

So the daemon asks a helper (this module run as a program), one look at a time, and wants the
answer for each process within STALL seconds.  If one does not come, the helper is killed:
SIGKILL ends both waits (the linger stops at any signal, the mmap lock's wait is killable).
The processes not answered yet are reported unread ("?"), and the next look starts a new
helper.  At most `size` looks run at once: a tenant who stalls one ties up one helper for
STALL seconds, and a look at another prison meanwhile takes the other.

The helper reads nothing but /proc.  A request is a JSON line {"pids", "budget"}; the answer
is a line per process (procinfo.look_at's dict, the sockets as [inode, protocol] pairs), then
{"done": true}.  It ends when its stdin closes, or with the daemon (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from prisond.host import procinfo

log = logging.getLogger("prisond.host.looker")

STALL = 1.0  # seconds the answer about one process may take before the helper is killed
SIZE = 2     # looks at once (helpers)
LINE_MAX = 1 << 22  # a process with the whole descriptor budget in sockets: ~300 KB
LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from prisond.host.looker import main; sys.exit(main())"
UNREAD = "not read: the look at it took over {:g} s (the helper was killed)"


def encode(found: dict) -> bytes:
    socks = found["sockets"]
    return json.dumps(dict(found, sockets=None if socks is None else list(socks.items()))).encode() + b"\n"


def decode(line: bytes) -> dict:
    found = json.loads(line)
    if found.get("sockets") is not None:
        found["sockets"] = {int(i): k for i, k in found["sockets"]}
    return found


def unread(pid: int, why: str) -> dict:
    return {"pid": pid, "user": "?", "command": "?", "sockets": None, "unread": why}


def main() -> int:
    """The helper: looks asked for on stdin, answers on stdout."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: ends with the daemon
    except (OSError, AttributeError):
        pass
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        req = json.loads(line)
        budget = [int(req["budget"])]
        for pid in req["pids"]:
            out.write(encode(procinfo.look_at(int(pid), budget)))
            out.flush()
        out.write(b'{"done": true}\n')
        out.flush()
    return 0


Spawn = Callable[[], Awaitable[asyncio.subprocess.Process]]


async def spawn_helper() -> asyncio.subprocess.Process:
    # -I and this prisond first on the path, as for the spawner (spawner.py)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", LAUNCH, here, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, limit=LINE_MAX, close_fds=True)


class Lookers:
    """The daemon's end: `await look(pids)`; `await close()` at the end."""

    def __init__(self, stall: float = STALL, size: int = SIZE, spawn: Spawn = spawn_helper):
        self.stall = stall
        self.spawn = spawn
        self.idle: list[asyncio.subprocess.Process] = []
        self.running: set[asyncio.subprocess.Process] = set()  # every helper alive (the reaper leaves them)
        self.killed = 0  # helpers killed for a stall (show's figures)
        self._slots: asyncio.Semaphore | None = None
        self._waits: set[asyncio.Future] = set()
        self._size = size

    async def start(self) -> None:
        """One helper ready before the first show (started while the daemon holds few
        descriptors: each one it holds then costs the start a little)."""
        try:
            self.idle.append(await self._start())
        except OSError as exc:
            log.error("cannot start the helper that looks at processes: %s", exc)

    def children(self) -> set[int]:
        return {p.pid for p in self.running}

    async def look(self, pids: list[int], budget: int = procinfo.FD_BUDGET) -> list[dict]:
        """procinfo.look_at's dict for each pid, in order; a process whose answer did not come
        (the helper stalled or could not start) gets unread()'s."""
        if not pids:
            return []
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        found: dict[int, dict] = {}
        async with self._slots:
            why = await self._ask(pids, budget, found)
        return [found.get(pid) or unread(pid, why or "not read") for pid in pids]

    async def _ask(self, pids: list[int], budget: int, found: dict[int, dict]) -> str | None:
        try:
            proc = self.idle.pop() if self.idle else await self._start()
        except OSError as exc:
            log.error("cannot start the helper that looks at processes: %s", exc)
            return f"not read: the helper could not start ({exc.strerror or exc})"
        assert proc.stdin is not None and proc.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.stall) as deadline:
                proc.stdin.write(json.dumps({"pids": pids, "budget": budget}).encode() + b"\n")
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        raise EOFError
                    if line.startswith(b'{"done"'):
                        self.idle.append(proc)
                        return None
                    one = decode(line)
                    found[one["pid"]] = one
                    deadline.reschedule(loop.time() + self.stall)
        except TimeoutError:
            self.killed += 1
            log.warning("a look at processes %s took over %g s: its helper is killed", pids[len(found):][:5],
                        self.stall)
            self._end(proc)
            return UNREAD.format(self.stall)
        except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the helper that looks at processes failed (%s): it is started again", type(exc).__name__)
            self._end(proc)
            return "not read: the helper failed"

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await self.spawn()
        self.running.add(proc)
        return proc

    def _end(self, proc: asyncio.subprocess.Process) -> None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        if proc.stdin is not None:
            proc.stdin.close()
        waiter = asyncio.ensure_future(proc.wait())  # kept in self._waits until done
        self._waits.add(waiter)
        waiter.add_done_callback(lambda _: self._gone(proc, waiter))

    def _gone(self, proc: asyncio.subprocess.Process, waiter: asyncio.Future) -> None:
        self.running.discard(proc)
        self._waits.discard(waiter)

    async def close(self) -> None:
        """Kill every helper and collect it (the daemon's end)."""
        self.idle.clear()
        for proc in list(self.running):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            if proc.stdin is not None:
                proc.stdin.close()  # with the exit, the transport ends (not at the loop's end)
            await proc.wait()
        self.running.clear()


if __name__ == "__main__":
    sys.exit(main())
