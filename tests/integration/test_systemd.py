"""The systemd unit: it verifies, and the daemon speaks its Type=notify protocol.

This machine's PID 1 is not systemd, so the second test plays systemd's part for the unit's
own ExecStart and ExecReload lines: it listens on a NOTIFY_SOCKET, starts ExecStart (with
the paths pointed at a temporary directory, as a drop-in would), expects READY=1 only once
the prisons are up, runs ExecReload with $MAINPID, and stops the daemon with KillSignal.
"""
import configparser
import os
import shlex
import signal
import socket
import subprocess
import time

from prisond.client.connection import Client

UNIT = os.path.join(os.path.dirname(__file__), "..", "..", "systemd", "prisond.service")


def read_unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    with open(UNIT) as fh:
        cp.read_file(fh)
    return cp


def test_systemd_analyze_verify_passes():
    r = subprocess.run(["systemd-analyze", "verify", UNIT], capture_output=True, text=True)
    assert r.returncode == 0 and "prisond.service" not in r.stderr, r.stderr


def test_the_unit_declares_what_the_daemon_needs():
    svc = read_unit()["Service"]
    assert svc["Type"] == "notify"
    assert svc["RuntimeDirectory"] == "prisond" and svc["Restart"] == "on-failure"
    assert "$MAINPID" in svc["ExecReload"] and "-HUP" in svc["ExecReload"]


def _messages(sock: socket.socket, want: str, timeout: float = 30) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen += data.split("\n")
        if want in seen:
            return seen
    raise AssertionError(f"no {want} (got {seen})")


def test_the_unit_runs_with_the_notify_protocol(tmp_path):
    svc = read_unit()["Service"]
    cfg = tmp_path / "prisond.yaml"
    cfg.write_text(f"daemon:\n  cgroup_parent: prisond-test-unit-{os.getpid()}\nprisons:\n"
                   "  a:\n    ip4: [127.0.2.1]\n    exec:\n      start: [sleep, '3600']\n"
                   "  b:\n    ip4: [127.0.3.1]\n")
    argv = shlex.split(svc["ExecStart"])
    paths = {"--config": str(cfg), "--socket": str(tmp_path / "run" / "control.sock"),
             "--state-dir": str(tmp_path / "state")}
    argv = [paths.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    argv += ["--runtime-dir", str(tmp_path / "run")]  # not the host's /run/prisond
    assert os.access(argv[0], os.X_OK), f"{argv[0]} is not installed (scripts/setup links it)"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    proc = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen = _messages(notify, "READY=1")
        assert any(m.startswith("STATUS=") for m in seen)
        with Client(paths["--socket"]) as c:  # READY means the prisons are up
            assert [p["state"] for p in c.call("prison.list")] == ["running", "running"]
        reload = shlex.split(svc["ExecReload"].replace("$MAINPID", str(proc.pid)))
        assert subprocess.run(reload).returncode == 0
        seen = _messages(notify, "READY=1")
        assert "RELOADING=1" in seen
        proc.send_signal(signal.SIGTERM)  # KillSignal's default, sent to the main process (KillMode=mixed)
        assert "STOPPING=1" in _messages(notify, "STOPPING=1")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_watchdog_pings_when_systemd_asks(tmp_path):
    """WatchdogSec= makes systemd set WATCHDOG_USEC (and WATCHDOG_PID): the daemon pings at
    half that period, from its event loop."""
    cfg = tmp_path / "prisond.yaml"
    cfg.write_text(f"daemon:\n  cgroup_parent: prisond-test-unit-{os.getpid()}\nprisons:\n  a: {{ip4: [127.0.2.1]}}\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    proc = subprocess.Popen(["/usr/local/bin/prisond", "--config", str(cfg), "--socket", str(tmp_path / "s.sock"),
                             "--state-dir", str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run")],
                            env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pings = []
        deadline = time.monotonic() + 20
        while len(pings) < 4 and time.monotonic() < deadline:
            if "WATCHDOG=1" in notify.recv(4096).decode().split("\n"):
                pings.append(time.monotonic())
        assert len(pings) == 4  # they keep coming (the period is checked below, without a clock)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        notify.close()


def test_watchdog_interval_is_half_the_timeout(monkeypatch):
    from prisond.host.sdnotify import watchdog_interval
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 0.2
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 0.2
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None
