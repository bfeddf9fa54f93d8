"""A real prisond, started on a temporary socket, state directory and cgroup parent."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

from prisond.client.connection import Client

_counter = itertools.count(1)


def installed(command: str) -> str:
    """The command of the install the suite runs with (the venv of sys.executable: scripts/setup's,
    or a developer's), else the one on PATH."""
    exe = os.path.join(os.path.dirname(sys.executable), command)
    if os.access(exe, os.X_OK):
        return exe
    exe = shutil.which(command)
    if not exe:
        raise RuntimeError(f"{command} is not installed (run scripts/setup)")
    return exe


def prisond_cmd() -> list[str]:
    return [installed("prisond")]


def prisonctl_cmd() -> list[str]:
    return [installed("prisonctl")]


class Daemon:
    def __init__(self, workdir: str, config: str, *, extra_args=(), env=None, bindir: str | None = None):
        """bindir: where prisond and prisonctl are (another install than the suite's)."""
        self.bindir = bindir
        self.dir = workdir
        self.run_dir = os.path.join(workdir, "run")
        self.socket = os.path.join(self.run_dir, "control.sock")
        self.state_dir = os.path.join(workdir, "state")
        self.log_dir = os.path.join(workdir, "logs")  # the prisons' log files (daemon.log_dir)
        self.config_path = os.path.join(workdir, "prisond.yaml")
        self.log_path = os.path.join(workdir, "prisond.log")
        self.cgroup_parent = f"prisond-test-{os.getpid()}-{next(_counter)}"
        os.makedirs(workdir, exist_ok=True)
        self.write_config(config)
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def write_config(self, text: str) -> None:
        text = textwrap.dedent(text)
        ours = "".join(f"  {key}: {value}\n" for key, value in (("cgroup_parent", self.cgroup_parent),
                                                                 ("log_dir", self.log_dir)) if f"{key}:" not in text)
        if ours:
            if text.startswith("daemon:\n"):
                text = text.replace("daemon:\n", "daemon:\n" + ours, 1)
            else:
                text = "daemon:\n" + ours + text
        with open(self.config_path, "w") as fh:
            fh.write(text)

    def start(self, wait: bool = True) -> Daemon:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._cmd("prisond") + ["--config", self.config_path, "--runtime-dir", self.run_dir, "--socket", self.socket,
                             "--state-dir", self.state_dir, "--log-level", "debug"] + self.extra_args,
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prisond exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    if c.call("daemon.health")["status"] == "ready":
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"prisond not ready after {timeout}s:\n{self.log()}")

    def call(self, method: str, **params):
        with Client(self.socket, timeout=60) as c:
            return c.call(method, **params)

    def ctl(self, *args, check: bool = False, input: bytes | None = None, timeout: float = 60, **kw):
        return subprocess.run(self._cmd("prisonctl") + ["--socket", self.socket, *map(str, args)], input=input,
                              capture_output=True, timeout=timeout, check=check, **kw)

    def ctl_argv(self) -> list[str]:
        return self._cmd("prisonctl") + ["--socket", self.socket]

    def _cmd(self, command: str) -> list[str]:
        return [os.path.join(self.bindir, command)] if self.bindir else [installed(command)]

    def exec(self, prison: str, *argv, **kw):
        return self.ctl("exec", prison, "--", *argv, **kw)

    def show(self, prison: str) -> dict:
        return self.call("prison.show", name=prison)

    def cgroup_dir(self) -> str:
        from prisond.host.cgroup import detect_host
        return os.path.join(detect_host().root, self.cgroup_parent)

    def stop(self, timeout: float = 60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.returncode = self.proc.returncode
            self._log.close()
        return self.returncode

    def remove_cgroups(self) -> None:
        """Kill and remove whatever this daemon left in its cgroup tree (it may have been killed)."""
        top = self.cgroup_dir()
        if not os.path.isdir(top):
            return
        for entry in os.scandir(top):
            if entry.is_dir():
                try:
                    with open(os.path.join(entry.path, "cgroup.kill"), "w") as fh:
                        fh.write("1")
                except OSError:
                    pass
                rmdir_when_empty(entry.path)
        rmdir_when_empty(top, tries=1)
        remove_v1_cgroups(self.cgroup_parent)
        remove_lock(self.cgroup_parent)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""


def wait_for(pred, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def addresses_on_lo() -> set[str]:
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines()}


def pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds marker (to find anything a test left running)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found




def run_cli_as(uid: int, gid: int, argv: list[str], groups: list[int] = ()) -> tuple[int, str, str]:
    """prisonctl's main() in a forked child running with a real unprivileged uid.

    (Exec'ing the prisonctl script would need the interpreter to be readable by that user,
    which a Python installed under /root is not; the code path is the same.)"""
    import io
    from prisond.client import cli
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(out_r)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            import contextlib
            import sys
            buf_out, buf_err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
                sys.stderr = buf_err
                status = cli.main(argv)
            os.write(out_w, json.dumps([buf_out.getvalue(), buf_err.getvalue()]).encode())
        finally:
            os._exit(status)
    os.close(out_w)
    data = b""
    while chunk := os.read(out_r, 65536):
        data += chunk
    os.close(out_r)
    _, st = os.waitpid(pid, 0)
    out, err = json.loads(data) if data else ("", "")
    return os.waitstatus_to_exitcode(st), out, err


def let_others_reach(path: str) -> None:
    """o+x on path and its parents below /tmp, so an unprivileged user can reach a test file."""
    while path not in ("/", "/tmp"):
        os.chmod(path, os.stat(path).st_mode | 0o005)
        path = os.path.dirname(path)


def rmdir_when_empty(path: str, tries: int = 100) -> None:
    """rmdir a cgroup, giving its last processes up to tries x 50 ms to finish exiting."""
    for _ in range(tries):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def remove_lock(parent: str) -> None:
    """The daemon's lock file for its cgroup parent (kept by the daemon: unlinking races)."""
    from prisond.host.lock import CGROUP_LOCKS
    try:
        os.unlink(os.path.join(CGROUP_LOCKS, parent + ".lock"))
    except FileNotFoundError:
        pass


def remove_v1_cgroups(parent: str) -> None:
    """The v1 controller cgroups (hybrid hosts) of a daemon's prisons, and their parents."""
    import glob
    for top in glob.glob(f"/sys/fs/cgroup/*/{parent}"):
        if os.path.realpath(top).startswith("/sys/fs/cgroup/unified"):
            continue
        for child in glob.glob(os.path.join(top, "*/")):
            rmdir_when_empty(child)
        rmdir_when_empty(top, tries=1)
