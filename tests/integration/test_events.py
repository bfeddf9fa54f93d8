"""Audit events: what the shim and the kernel layer coerced or refused, in `prisonctl events`."""
import json
import os
import time

import pytest

from support.daemon import wait_for

# each probe lives a second more: a shim's report is placed by its sender's pid, which must
# still be there when the daemon reads it (README, "Events and audit")
BIND_ANY = ("import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 0)); print(s.getsockname()[0]);"
            " import sys; sys.stdout.flush(); time.sleep(1)")
# a v4-mapped destination from a prison that has no IPv4 address: refused
CONNECT_V4 = ("import socket, errno\ns = socket.socket(socket.AF_INET6)\n"
              "try:\n    s.connect(('::ffff:127.0.0.9', 9))\nexcept OSError as e:\n"
              "    print(errno.errorcode[e.errno])\nimport time, sys\nsys.stdout.flush()\ntime.sleep(1)")


def events(d, *args) -> list[dict]:
    r = d.ctl("events", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.decode().splitlines()]


@pytest.mark.parametrize("level", ["shim", "kernel"])
def test_a_coerced_bind_and_a_refused_connect_are_events(daemon, level):
    d = daemon("prisons:\n"
               f"  v4:\n    enforce: {level}\n    ip4: [127.0.2.1]\n"
               f"  v6:\n    enforce: {level}\n    ip6: [\"lo|fd00:2::1\"]\n")
    assert d.exec("v4", "python3", "-c", BIND_ANY).stdout == b"127.0.2.1\n"
    r = d.exec("v6", "python3", "-c", CONNECT_V4)
    assert r.stdout.strip() in (b"EADDRNOTAVAIL", b"EPERM", b"EACCES"), r
    wait_for(lambda: any(e["kind"] == "coerced" for e in events(d, "v4")), what="the coerced bind")
    wait_for(lambda: any(e["kind"] == "refused" for e in events(d, "v6")), what="the refused connect")
    (coerced,) = [e for e in events(d, "v4") if e["kind"] == "coerced"]
    (refused,) = [e for e in events(d, "v6") if e["kind"] == "refused"]
    assert coerced["source"] == refused["source"] == level
    if level == "shim":  # the shim says what it did
        assert coerced["text"] == "shim: bind 0.0.0.0 -> 127.0.2.1"
        assert refused["text"] == "shim: connect ::ffff:127.0.0.9"
    else:  # the kernel layer counts
        assert coerced["count"] >= 1 and "coerced" in coerced["text"]
        assert refused["count"] >= 1 and "refused" in refused["text"]
    # the same events in the daemon's log, with the prison's name
    log = open(d.log_path).read()
    assert "prison v4: coerced" in log and "prison v6: refused" in log


def test_a_flood_of_refusals_is_rate_limited(daemon):
    d = daemon("prisons:\n  v6:\n    enforce: shim\n    ip6: [\"lo|fd00:2::1\"]\n")
    flood = CONNECT_V4.replace("try:", "for _ in range(5000):\n  try:").replace(
        "    s.connect", "      s.connect").replace("except OSError as e:\n    print(errno.errorcode[e.errno])",
                                                    "  except OSError as e:\n      pass")
    t0 = time.monotonic()
    r = d.exec("v6", "python3", "-c", flood)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    wait_for(lambda: events(d, "v6"), what="events")
    refused = [e for e in events(d, "v6") if e["kind"] == "refused"]
    # 5,000 refusals; the shim reports at most 10 in each second the program ran
    assert 1 <= len(refused) <= 10 * (int(seconds) + 2), (len(refused), seconds)
    assert d.call("daemon.health")["status"] == "ready"


def test_a_process_outside_any_prison_cannot_report(daemon):
    import socket
    d = daemon("prisons:\n  a:\n    enforce: shim\n    ip4: [127.0.2.1]\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"refused bind 10.0.0.1", d.run_dir + "/public/events.sock")
    assert d.exec("a", "python3", "-c", BIND_ANY).returncode == 0
    wait_for(lambda: any(e["kind"] == "coerced" for e in events(d)), what="a's own event")
    assert not [e for e in events(d) if "10.0.0.1" in e["text"]]


def test_events_outlive_the_daemon_and_follow_goes_on_across_its_restart(daemon):
    import subprocess
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n")
    first = events(d, "a")
    assert [e["kind"] for e in first] == ["started"]
    follower = subprocess.Popen([*d.ctl_argv(), "events", "--follow", "--json", "a"], stdout=subprocess.PIPE)
    try:
        assert d.stop() == 0  # a clean stop: the prison stops, the events stay
        d.start()
        again = events(d, "a")
        assert [e["kind"] for e in again] == ["started", "stopped", "started"]
        assert again[0] == first[0] and again[1]["id"] > first[0]["id"] and again[2]["id"] > again[1]["id"]
        deadline = time.monotonic() + 15
        seen: list[dict] = []
        os.set_blocking(follower.stdout.fileno(), False)
        buf = b""
        while len(seen) < 3 and time.monotonic() < deadline:
            chunk = follower.stdout.read() or b""
            buf += chunk
            *lines, buf = buf.split(b"\n")
            seen += [json.loads(line) for line in lines if line]
            time.sleep(0.1)
        assert [e["kind"] for e in seen] == ["started", "stopped", "started"], seen  # across the restart
    finally:
        follower.kill()
        follower.wait()


def test_prometheus_scrapes_the_metrics_listener(daemon):
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    from support.fixtures import free_port
    port = free_port()
    d = daemon(f"daemon:\n  metrics_listen: 127.0.0.1:{port}\n"
               "prisons:\n  web:\n    ip4: [127.0.2.1]\n    limits: {pids: 50}\n    exec: {start: [sleep, '600']}\n"
               "  idle:\n    ip4: [127.0.3.1]\n    restart: no\n    exec: {start: \"exit 2\"}\n")
    wait_for(lambda: d.show("idle")["state"] == "exited", what="idle's service to end")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    got = {(s.name, s.labels.get("prison"), s.labels.get("state")): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    assert got[("prisond_up", None, None)] == 1
    assert got[("prisond_prison_up", "web", None)] == 1 and got[("prisond_prison_processes", "web", None)] == 2
    assert got[("prisond_prison_state", "idle", "exited")] == 1 and got[("prisond_prison_state", "idle", "running")] == 0
    assert got[("prisond_prison_cpu_seconds_total", "web", None)] >= 0
    assert ("prisond_prison_network_transmit_bytes_total", "web", None) in got  # the kernel layer counts
    assert d.ctl("metrics").stdout.decode().splitlines()[:3] == text.splitlines()[:3]
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
        raise AssertionError("a path other than /metrics answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
