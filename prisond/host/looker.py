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

So the daemon asks a helper (this module run as a program) and wants the answer for each
process within STALL seconds, and the whole look within DEADLINE.  A helper that stalls is
killed: SIGKILL ends both waits (the linger stops at any signal, the mmap lock's wait is
killable).  The process it stalled on is reported unread ("?", with the reason), and a new
helper goes on with the processes after it, while the look has time left; those it cannot
reach in time are reported unread too (with their user, which a stat tells).  SIZE looks run
at once, and a slow one (a tenant's stall) makes room for others after SLOW seconds.

The helper reads nothing but /proc.  A request is a JSON line {"pids", "budget"}; the answer
is a line per process (procinfo.look_at's dict, the sockets as [inode, protocol] pairs, and
the descriptor budget left), then {"done": true}.  It ends when its stdin closes, or with the daemon (PR_SET_PDEATHSIG).
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

STALL = 0.5      # seconds the answer about one process may take before the helper is killed
DEADLINE = 3.0   # seconds a whole look may take; the processes not read by then show unread
SIZE = 2         # looks at once, before some are slow
SLOW = 0.1       # seconds after which a look no longer counts against SIZE ...
SLOW_MAX = 8     # ... unless this many slow looks run already (helpers: at most SIZE + SLOW_MAX)
DYING_MAX = 4    # helpers killed and not yet ended: past this many, no look starts another
LINE_MAX = 1 << 22  # a process with the whole descriptor budget in sockets: ~300 KB
LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from prisond.host.looker import main; sys.exit(main())"
STALLED = "not read: reading it took over {:g} s (the helper that read it was killed)"
LATE = "not read: the look at this prison's processes took over {:g} s"
FAILED = "not read: the helper that reads processes failed"
STUCK = ("not read: {} helpers killed for stalling have not ended yet (a wait SIGKILL cannot end, such "
         "as a tenant's file system holding a write); no new one is started until they do")


def encode(found: dict) -> bytes:
    socks = found["sockets"]
    return json.dumps(dict(found, sockets=None if socks is None else list(socks.items()))).encode() + b"\n"


def decode(line: bytes) -> dict:
    found = json.loads(line)
    if found.get("sockets") is not None:
        found["sockets"] = {int(i): k for i, k in found["sockets"]}
    return found


def unread(pid: int, why: str) -> dict:
    """A process whose look did not finish: its user is read here (a stat of /proc/PID, which
    nothing of the tenant's can hold), the rest is unknown."""
    return {"pid": pid, "user": procinfo.user_of(pid), "command": "?", "sockets": None, "unread": why}


def main() -> int:
    """The helper: looks asked for on stdin, answers on stdout."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: ends with the daemon
        libc.prctl(15, b"prisond-looker")  # PR_SET_NAME: what ps -e and top show
    except (OSError, AttributeError):
        pass
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        req = json.loads(line)
        budget = [int(req["budget"])]
        for pid in req["pids"]:
            out.write(encode(dict(procinfo.look_at(int(pid), budget), budget=budget[0])))
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

    def __init__(self, stall: float = STALL, deadline: float = DEADLINE, size: int = SIZE, slow: float = SLOW,
                 slow_max: int = SLOW_MAX, spawn: Spawn = spawn_helper):
        self.stall, self.deadline, self.slow, self.slow_max = stall, deadline, slow, slow_max
        self.spawn = spawn
        self.idle: list[asyncio.subprocess.Process] = []
        self.running: set[asyncio.subprocess.Process] = set()  # every helper alive (the reaper leaves them)
        self.killed = 0  # helpers killed because a read stalled
        self.slow_now = 0  # looks running past `slow`, out of the SIZE slots
        self.dying: set[asyncio.subprocess.Process] = set()  # killed, not yet collected
        self.closed = False
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

    def children(self) -> frozenset[int]:
        """The helpers' pids, a copy (the orphan reaper's thread reads it)."""
        return frozenset(p.pid for p in self.running)

    async def look(self, pids: list[int], budget: int = procinfo.FD_BUDGET, label: str = "") -> list[dict]:
        """procinfo.look_at's dict for each pid, in order; a process not read (its read stalled,
        the look ran out of time, the helper failed) gets unread()'s, with the reason.

        SIZE looks run at once; one that takes over SLOW seconds (a tenant's stall) gives its
        slot up and goes on beside them, while fewer than SLOW_MAX do: a look at one prison
        does not wait behind a slow look at another for more than SLOW."""
        if not pids:
            return []
        if self.closed:
            return [unread(pid, "not read: the daemon is stopping") for pid in pids]
        if len(self.dying) >= DYING_MAX:
            log.warning("%d helpers that read processes were killed and have not ended: no look", len(self.dying))
            return [unread(pid, STUCK.format(len(self.dying))) for pid in pids]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        await self._slots.acquire()
        held = True
        try:
            try:  # a helper first: the time a new one takes to start is not a stall
                first = self.idle.pop() if self.idle else await self._start()
            except OSError as exc:
                log.error("cannot start the helper that looks at processes: %s", exc)
                return [unread(pid, f"not read: the helper could not start ({exc.strerror or exc})") for pid in pids]
            task = asyncio.ensure_future(self._look(pids, budget, label, first))
            done, _ = await asyncio.wait({task}, timeout=self.slow)
            if not done and self.slow_now < self.slow_max:
                self._slots.release()
                held = False
                self.slow_now += 1
                try:
                    return await asyncio.shield(task)
                finally:
                    self.slow_now -= 1
            return await asyncio.shield(task)
        finally:
            if held:
                self._slots.release()

    async def _look(self, pids: list[int], budget: int, label: str, first: asyncio.subprocess.Process) -> list[dict]:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.deadline
        found: dict[int, dict] = {}
        why: dict[int, str] = {}
        left, retries, stalled = list(pids), 1, []
        given = [first]
        while left:
            if loop.time() >= end:
                why.update((pid, LATE.format(self.deadline)) for pid in left)
                break
            try:
                proc = given.pop() if given else self.idle.pop() if self.idle else await self._start()
            except OSError as exc:
                log.error("cannot start the helper that looks at processes: %s", exc)
                why.update((pid, f"not read: the helper could not start ({exc.strerror or exc})") for pid in left)
                break
            outcome, budget = await self._ask(proc, left, budget, found, end)
            answered = sum(pid in found for pid in left)
            left = [pid for pid in left if pid not in found]
            if outcome == "stalled" and left:
                stalled.append(left[0])
                why[left.pop(0)] = STALLED.format(self.stall)
            elif outcome == "failed" and left:
                if answered == 0 and retries > 0:  # a helper found dead (killed, out of memory): once more
                    retries -= 1
                    continue
                why[left.pop(0)] = FAILED
        if why:
            log.warning("%sthe look at its processes stalled on %s; %d of %d not read",
                        f"prison {label}: " if label else "", stalled[:5] or "none", len(why), len(pids))
        return [found.get(pid) or unread(pid, why.get(pid, FAILED)) for pid in pids]

    async def _ask(self, proc: asyncio.subprocess.Process, pids: list[int], budget: int, found: dict[int, dict],
                   end: float) -> tuple[str, int]:
        """pids asked of one helper; ("done" | "stalled" | "failed", the descriptor budget left).
        A helper that stalled or failed is killed; one that answered is kept."""
        assert proc.stdin is not None and proc.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(loop.time() + self.stall, end)) as deadline:
                proc.stdin.write(json.dumps({"pids": pids, "budget": budget}).encode() + b"\n")
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        raise EOFError
                    if line.startswith(b'{"done"'):
                        self.idle.append(proc)
                        return "done", budget
                    one = decode(line)
                    budget = int(one.pop("budget"))
                    found[one["pid"]] = one
                    deadline.reschedule(min(loop.time() + self.stall, end))
        except TimeoutError:
            self.killed += 1
            self._end(proc)
            return ("late" if loop.time() >= end else "stalled"), budget
        except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the helper that looks at processes failed (%s): a new one is started", type(exc).__name__)
            self._end(proc)
            return "failed", budget
        except BaseException:  # cancelled (the daemon's end): the helper may be mid-answer
            self._end(proc)
            raise

    async def _start(self) -> asyncio.subprocess.Process:
        if self.closed or len(self.dying) >= DYING_MAX:
            raise OSError(0, STUCK.format(len(self.dying)) if not self.closed else "the daemon is stopping")
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
        self.dying.add(proc)
        waiter = asyncio.ensure_future(proc.wait())  # kept in self._waits until done
        self._waits.add(waiter)
        waiter.add_done_callback(lambda _: self._gone(proc, waiter))

    def _gone(self, proc: asyncio.subprocess.Process, waiter: asyncio.Future) -> None:
        self.running.discard(proc)
        self.dying.discard(proc)
        self._waits.discard(waiter)

    async def close(self, wait: float = 2.0) -> None:
        """Kill every helper, and collect those that end within `wait` seconds (the daemon's
        end; a helper in a wait SIGKILL cannot end is left to the kernel)."""
        self.closed = True
        self.idle.clear()
        procs = list(self.running)
        for proc in procs:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            if proc.stdin is not None:
                proc.stdin.close()  # with the exit, the transport ends (not at the loop's end)
        if procs:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=wait)
        self.running.clear()


if __name__ == "__main__":
    sys.exit(main())
