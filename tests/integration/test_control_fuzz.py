"""The control protocol fuzzed with hypothesis: thousands of generated requests (random bytes,
random JSON, real methods with wrong parameters) on one connection and on fresh ones.  Each
gets one JSON reply line, the daemon keeps answering, and its memory stays bounded."""
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prisond.model.protocol import METHODS, READ_ONLY

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
# what may run for real: reads; the rest gets parameters it must refuse (no prison "zz" exists)
SAFE = sorted(READ_ONLY) + ["prison.start", "prison.stop", "prison.restart", "prison.exec", "daemon.reload"]
PARAMS = st.dictionaries(st.sampled_from(["name", "pid", "after", "full", "flat", "dry_run", "config", "x"]),
                         JSON, max_size=3)


def request_for(method, params, rid, version):
    if method in ("prison.start", "prison.stop", "prison.restart", "prison.exec"):
        params = dict(params, name="zz")  # never one of ours
    if method == "daemon.reload":
        params = dict(params, config="/nonexistent.yaml", dry_run=True)
    return {"v": version, "id": rid, "method": method, "params": params}


LINES = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ") + b"\n"),
    JSON.map(lambda v: json.dumps(v).encode() + b"\n"),
    st.builds(request_for, st.sampled_from(SAFE + ["prison.nope", "", "x" * 50]), PARAMS,
              JSON, st.sampled_from([1, 1, 1, 2, "1", None])).map(lambda r: json.dumps(r).encode() + b"\n"),
)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def reply(f) -> dict:
    """One reply line from the connection's buffered reader."""
    line = f.readline()
    assert line.endswith(b"\n"), "the daemon closed the connection instead of answering"
    return json.loads(line)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    from support.daemon import Daemon
    d = Daemon(str(tmp_path_factory.mktemp("fuzz")), "prisons:\n  a:\n    ip4: [127.0.2.1]\n").start()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.socket)
    start_rss = rss_kb(d.proc.pid)
    yield d, s.makefile("rwb", buffering=0), start_rss
    s.close()
    try:
        assert d.stop() == 0
    finally:
        d.remove_cgroups()


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(LINES)
def test_every_line_gets_one_reply_on_a_long_connection(fuzzed, line):
    d, f, _ = fuzzed
    f.write(line)
    if not line.strip():
        return  # blank lines are skipped, as keep-alives
    r = reply(f)
    assert r["v"] == 1 and isinstance(r["ok"], bool)
    if not r["ok"]:
        assert isinstance(r["error"]["code"], str) and isinstance(r["error"]["message"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(LINES, min_size=1, max_size=5), st.booleans())
def test_fresh_connections_and_half_requests(fuzzed, lines, cut):
    d, _, _ = fuzzed
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(d.socket)
        payload = b"".join(lines)
        if cut:  # the client goes away mid-request: the daemon drops it and answers the next
            s.sendall(payload[: max(1, len(payload) // 2)].rstrip(b"\n") or b"{")
            s.close()
            assert d.call("daemon.health")["status"] == "ready"
            return
        s.sendall(payload)
        f = s.makefile("rb")
        for line in lines:
            if line.strip():
                reply(f)


def test_after_the_fuzzing_the_daemon_answers_and_its_memory_is_bounded(fuzzed):
    d, _, start_rss = fuzzed
    assert d.call("daemon.health")["status"] == "ready"
    assert d.call("prison.show", name="a")["state"] == "running"
    grown_mb = (rss_kb(d.proc.pid) - start_rss) / 1024
    assert grown_mb < 20, f"the daemon grew by {grown_mb:.1f} MB"
    assert set(METHODS) >= set(SAFE)
