"""Audit events: what the shim and the kernel layer coerced or refused, in `prisonctl events`."""
import json
import time

import pytest

from support.daemon import wait_for

BIND_ANY = "import socket; s = socket.socket(); s.bind(('0.0.0.0', 0)); print(s.getsockname()[0])"
# a v4-mapped destination from a prison that has no IPv4 address: refused
CONNECT_V4 = ("import socket, errno\ns = socket.socket(socket.AF_INET6)\n"
              "try:\n    s.connect(('::ffff:127.0.0.9', 9))\nexcept OSError as e:\n"
              "    print(errno.errorcode[e.errno])")


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
