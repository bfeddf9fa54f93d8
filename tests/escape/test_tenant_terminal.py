"""A hostile tenant against the operator's terminal and descriptors.

The operator runs prisonctl on a real pseudo-terminal the test makes (its controlling
terminal).  Judged from outside: a marker the operator's shell would create, what the
operator's reader and the tenant's process each read, the bytes prisonctl prints, what
a prison process finds open."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from support.daemon import wait_for
from support.fixtures import confined
from support.tenant import (public_cell, Pty, probe_path, public_dir, public_tmp, remove_public_dir, run_probe,  # noqa: F401
                            tenant_static, wait_proc, writable_dir)

CASES = [("c", True, None), ("u", False, "nobody")]
IDS = ["confined-root", "unconfined-nobody"]


@pytest.fixture(scope="module")
def cell(tmp_path_factory, confined_root):
    # u shares the host's /tmp and processes (isolate: false), as prisons did before isolation
    # was the default: the widest view a prison can have
    body = ("prisons:\n" + confined(confined_root, "c", "127.0.2.1")
            + "  u:\n    ip4: [127.0.3.1]\n    isolate: false\n")
    with public_cell(body) as d:
        yield d


@pytest.fixture
def shared_dir(writable_dir):
    """A directory an unprivileged prison process may write to (and the test read)."""
    import pathlib
    return pathlib.Path(writable_dir)


def exec_argv(d, prison: str, user: str | None, *cmd) -> list[str]:
    return d.ctl_argv() + ["exec", *(["-u", user] if user else []), prison, "--", *cmd]


def out_path(confined_root: str, shared_dir, confined_prison: bool, name: str) -> tuple[str, str]:
    """(the path the prison writes, the same file on the host)"""
    if confined_prison:
        return f"/tmp/{name}", os.path.join(confined_root, "tmp", name)
    return str(shared_dir / name), str(shared_dir / name)


# ------------------------------------------------------------------ 2a: TIOCSTI


@pytest.mark.parametrize("prison,is_confined,user", CASES, ids=IDS)
def test_a_prison_cannot_type_into_the_operators_terminal(cell, tenant_static, tmp_path, prison, is_confined, user):
    d = cell
    marker = tmp_path / "typed-by-the-prison"
    argv = exec_argv(d, prison, user, probe_path(tenant_static, is_confined), "tiocsti", f"touch {marker}\n")
    script = f'{shlex.join(argv)}; echo EXEC-DONE; read line; eval "$line"; echo OPERATOR-END'
    pty = Pty()
    try:
        p = pty.spawn(["/bin/sh", "-c", script])
        assert pty.read_until(b"EXEC-DONE", 30), pty.output
        time.sleep(0.3)
        pty.type(b"true\n")  # what the operator really types next
        rc = wait_proc(p, pty, 15)
        print(pty.output.decode(errors="replace"))
        assert rc is not None, "the operator's shell did not finish"
    finally:
        pty.close()
    assert not marker.exists(), "TIOCSTI from the prison typed a command that the operator's shell ran on the host"


# ------------------------------------------------------------------ 2b: a process left behind

OPERATOR = r'''
import json, os, select, signal, sys, time
result, argv = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
signal.signal(signal.SIGTTIN, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    try:
        os.tcsetpgrp(0, os.getpid())
    except OSError:
        pass
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    signal.signal(signal.SIGTTIN, signal.SIG_DFL)
    os.execvp(argv[0], argv)
try:
    os.setpgid(pid, pid)
    os.tcsetpgrp(0, pid)
except OSError:
    pass
os.waitpid(pid, 0)
os.tcsetpgrp(0, os.getpgrp())  # the job is done: the terminal is the operator's again (as a shell does)
print("OPERATOR-READY", flush=True)
got, errors = b"", []
end = time.monotonic() + 4
while b"\n" not in got and time.monotonic() < end:
    r, _, _ = select.select([0], [], [], 0.1)
    if not r:
        continue
    try:
        chunk = os.read(0, 512)
    except OSError as exc:
        errors.append(exc.errno)
        time.sleep(0.05)
        continue
    got += chunk
with open(result, "w") as fh:
    json.dump({"got": got.decode(errors="replace"), "errors": errors}, fh)
print("OPERATOR-END", flush=True)
'''


@pytest.mark.parametrize("prison,is_confined,user", CASES, ids=IDS)
def test_a_process_left_behind_cannot_read_what_the_operator_types(cell, tenant_static, confined_root, shared_dir,
                                                                      tmp_path, prison, is_confined, user):
    d = cell
    tag = os.urandom(4).hex()
    inside, stolen = out_path(confined_root, shared_dir, is_confined, f"stolen-{tag}")
    result = tmp_path / "operator-read"
    op = tmp_path / "operator_shell.py"
    op.write_text(OPERATOR)
    argv = exec_argv(d, prison, user, probe_path(tenant_static, is_confined), "steal-tty", inside, "500", "4")
    secret = f"operator-secret-{tag}"
    pty = Pty()
    try:
        p = pty.spawn([sys.executable, str(op), str(result), *argv])
        assert pty.read_until(b"OPERATOR-READY", 30), pty.output
        time.sleep(1.5)  # the tenant's process has had time to take the terminal
        pty.type(secret.encode() + b"\n")
        rc = wait_proc(p, pty, 15)
        print(pty.output.decode(errors="replace"))
        assert rc is not None
        time.sleep(0.5)
    finally:
        pty.close()
    # the tenant's process reads for 4 s after taking the terminal, then writes "end" -- unless
    # it is gone first (a terminal of the prison's own hangs up when prisonctl ends)
    wait_for(lambda: (os.path.exists(stolen) and "end\n" in open(stolen, errors="replace").read())
             or not pids_with_cmdline("steal-tty"), 15, "the tenant's record or its end")
    took = open(stolen, errors="replace").read() if os.path.exists(stolen) else ""
    operator = json.loads(result.read_text()) if result.exists() else {"got": "", "errors": ["no result"]}
    print("tenant's record:", repr(took), "operator's:", operator)
    assert secret not in took, "a process the prison left behind read the line the operator typed"
    assert secret in operator["got"], f"the operator did not get the line it typed: {operator}"


def pids_with_cmdline(word: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and word.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                found.append(int(entry))
        except OSError:
            pass
    return found


# ------------------------------------------------------------------ 2c: escape sequences

FORGED_ROW = b"\n99999  root  tcp:6.6.6.6:53 (listen)  /usr/sbin/named"
ESCAPES = b"\x1b]0;PWNED\x07\x1b[2J\x9b31m\xc2\x9b32m\x7f\x08\r\x1b[1;1H\x05"


def control_characters(out: bytes) -> list[str]:
    """Every C0 control but newline and tab, DEL, and C1 (raw 0x80-0x9f bytes that are not part
    of a UTF-8 sequence, and U+0080..U+009F)."""
    found = []
    for ch in out.decode("utf-8", errors="surrogateescape"):
        cp = ord(ch)
        if 0xdc80 <= cp <= 0xdc9f:
            found.append(f"raw byte {cp - 0xdc00:#04x}")
        elif (cp < 0x20 and ch not in "\n\t") or cp == 0x7f or 0x80 <= cp <= 0x9f:
            found.append(f"U+{cp:04X}")
    return found


@pytest.mark.parametrize("prison,is_confined,user", [("c", True, None), ("u", False, None), ("u", False, "nobody")],
                         ids=["confined-root", "unconfined-root", "unconfined-nobody"])
def test_what_prisonctl_prints_carries_no_terminal_controls(cell, tenant_static, prison, is_confined, user):
    d = cell
    tool = probe_path(tenant_static, is_confined)
    # argv[0] and the process name are the tenant's to choose (bash's exec -a)
    cmd = exec_argv(d, prison, user, "bash", "-c", 'exec -a "$0" "$1" sleep-argv 60 "$2"', ESCAPES, tool,
                    b"\x1b[31mRED\x9b" + FORGED_ROW)
    sleeper = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any("sleep-argv" in p["command"] for p in d.call("prison.ps", name=prison)["processes"]),
                 20, "the tenant's process")
        # and something for the events (the shim's datagram format, with controls in it)
        run_probe(d, prison, tenant_static, "send-event", "refused bind \x1b]0;PWNED\x07 1.2.3.4",
                  confined=is_confined, user=user)
        problems = {}
        for args in (["ps", prison], ["show", prison], ["list"], ["events"], ["events", prison], ["top", "-n", "1"]):
            r = d.ctl(*args)
            assert r.returncode == 0, (args, r.stderr)
            bad = control_characters(r.stdout) + control_characters(r.stderr)
            # a newline in an argument must not start a row of the tenant's making
            bad += [f"forged row: {line!r}" for line in r.stdout.splitlines() if line.strip().startswith(b"99999 ")]
            if bad:
                problems[" ".join(args)] = bad
                print(" ".join(args), "->", r.stdout)
        assert not problems, f"prisonctl printed terminal controls the prison chose: {problems}"
    finally:
        sleeper.send_signal(signal.SIGTERM)
        try:
            sleeper.wait(10)
        except subprocess.TimeoutExpired:
            sleeper.kill()
            sleeper.wait()


# ------------------------------------------------------------------ 2d: descriptors


@pytest.mark.parametrize("prison,is_confined,user", CASES, ids=IDS)
def test_the_operators_descriptors_do_not_reach_the_prison(cell, tmp_path, prison, is_confined, user):
    d = cell
    secret = tmp_path / "operator-only"
    secret.write_text("OPERATOR-SECRET-2d\n")
    os.chmod(secret, 0o600)
    fd = os.open(secret, os.O_RDONLY)
    try:
        r = subprocess.run(exec_argv(d, prison, user, "sh", "-c", "cat <&7; ls -l /proc/self/fd"),
                           capture_output=True, timeout=60, pass_fds=(7,), preexec_fn=lambda: os.dup2(fd, 7))
    finally:
        os.close(fd)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    print(out)
    assert "OPERATOR-SECRET-2d" not in out, "the prison read the operator's root-only file through fd 7"
    extra = []
    for line in r.stdout.decode(errors="replace").splitlines():
        if " -> " not in line:
            continue
        left, target = line.split(" -> ", 1)
        n = left.split()[-1]
        if n in ("0", "1", "2") or (target.startswith("/proc/") and target.endswith("/fd")):
            continue  # stdio, and ls's own directory
        extra.append(f"{n} -> {target}")
    assert not extra, f"descriptors of the operator open in the prison: {extra}"


@pytest.mark.parametrize("prison,is_confined,user", CASES, ids=IDS)
def test_the_prison_does_not_get_the_operators_terminal(cell, confined_root, shared_dir, prison, is_confined, user):
    d = cell
    tag = os.urandom(4).hex()
    inside, host = out_path(confined_root, shared_dir, is_confined, f"tty-{tag}")
    # a terminal is the same terminal when it is the same inode of the same devpts instance (a
    # confined prison's own devpts numbers its terminals from 0 too: names and rdev can repeat)
    script = (f'exec 3>{inside}; for i in 0 1 2; do '
              'echo "$i $(readlink /proc/$$/fd/$i) $(stat -L -c %d:%i /proc/$$/fd/$i)" >&3; done')
    pty = Pty()
    try:
        st = os.stat(pty.slave_name)
        mine = f"{st.st_dev}:{st.st_ino}"
        p = pty.spawn(exec_argv(d, prison, user, "sh", "-c", script))
        rc = wait_proc(p, pty, 30)
        assert rc is not None, pty.output
    finally:
        pty.close()
    with open(host) as fh:
        lines = fh.read().splitlines()
    print("operator's terminal", pty.slave_name, mine, "; in the prison:", lines)
    assert len(lines) == 3, lines
    for line in lines:
        fdno, *rest = line.split()
        assert mine not in rest and (is_confined or pty.slave_name not in rest), \
            f"fd {fdno} of the prison's process is the operator's terminal {pty.slave_name} ({line})"
