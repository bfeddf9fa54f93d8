"""Limits and accounting through the prison's cgroups, on this host's layout (hybrid: the v1
controllers), with real hogs inside real prisons.  The v2 files are covered over recorded
layouts in tests/test_resources.py."""
import glob
import json
import os
import socket
import subprocess
import time

from support.daemon import wait_for
from support.fixtures import confined

FORK_BOMB = "bomb() { bomb | bomb & }; bomb"


def events(d, name=None) -> list[dict]:
    args = ["events", "--json"] + ([name] if name else [])
    return [json.loads(line) for line in d.ctl(*args).stdout.decode().splitlines()]


def test_a_fork_bomb_is_contained_by_pids(daemon):
    d = daemon("prisons:\n"
               "  bomb:\n    ip4: [127.0.2.1]\n    limits: {pids: 50}\n"
               "  other:\n    ip4: [127.0.3.1]\n    exec: {start: sleep 600}\n")
    bomber = subprocess.Popen([*d.ctl_argv(), "exec", "bomb", "--", "sh", "-c", FORK_BOMB],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (d.show("bomb")["usage"]["pids_refused"] or 0) > 0, what="forks refused at the limit")
    assert d.show("bomb")["procs"] <= 50
    # the host and the other prison keep working meanwhile
    assert subprocess.run(["sh", "-c", "echo host"], capture_output=True).stdout == b"host\n"
    assert d.exec("other", "sh", "-c", "echo other; true | true").stdout == b"other\n"
    wait_for(lambda: any(e["kind"] == "pids_max" for e in events(d, "bomb")), what="the pids_max event")
    assert d.ctl("stop", "bomb").returncode == 0  # stop ends the bomb too
    bomber.wait(30)
    assert d.show("other")["state"] == "running"


def test_a_memory_hog_is_killed_inside_its_prison_and_reported(daemon):
    d = daemon("prisons:\n"
               "  hog:\n    ip4: [127.0.2.1]\n    limits: {memory: 64M}\n    exec: {start: sleep 600}\n"
               "  other:\n    ip4: [127.0.3.1]\n    exec: {start: sleep 600}\n")
    service = d.show("hog")["service"]["pid"]
    others = d.show("other")["procs"]
    r = d.exec("hog", "python3", "-c", "b = bytearray(256 << 20); print('survived')")
    assert r.returncode == -9 and b"survived" not in r.stdout  # SIGKILL by the OOM killer
    # show's figures may be a quarter of a second old (many callers share one read)
    wait_for(lambda: d.show("hog")["usage"]["oom_kills"] == 1, what="the OOM kill in show")
    assert d.show("hog")["usage"]["memory_peak"] <= 64 << 20
    assert os.path.exists(f"/proc/{service}")  # only the hog died; the prison's service runs on
    assert d.show("other")["state"] == "running" and d.show("other")["procs"] == others
    wait_for(lambda: [e for e in events(d, "hog") if e["kind"] == "oom_kill"], what="the oom_kill event")
    (ev,) = [e for e in events(d, "hog") if e["kind"] == "oom_kill"]
    assert ev["count"] == 1 and "memory limit" in ev["text"]
    assert "killed by the OOM killer" in (d.dir and open(d.log_path).read())


def test_a_cpu_hog_gets_a_quarter_of_a_cpu(daemon):
    d = daemon("prisons:\n  spin:\n    ip4: [127.0.2.1]\n    limits: {cpu: 25%}\n")
    before = d.show("spin")["usage"]["cpu_usec"]
    t0 = time.monotonic()
    r = d.exec("spin", "timeout", "4", "sh", "-c", "while :; do :; done")
    elapsed = time.monotonic() - t0
    used = (d.show("spin")["usage"]["cpu_usec"] - before) / 1e6
    assert r.returncode == 124
    share = used / elapsed
    assert 0.15 <= share <= 0.35, f"{used:.2f} s of CPU in {elapsed:.2f} s"
    assert d.show("spin")["usage"]["cpu_throttled"] > 0


def test_ulimit_n_inside_shows_the_configured_value(daemon, confined_root):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    limits: {nofile: 321}\n"
               "    exec: {start: sleep 600}\n" + confined(confined_root, "c", "127.0.3.1", extra=(
                   "    limits: {nofile: 123}\n    exec: {start: sleep 600}\n")))
    assert d.exec("a", "sh", "-c", "ulimit -n; ulimit -Hn").stdout == b"321\n321\n"
    assert d.exec("c", "sh", "-c", "ulimit -n").stdout == b"123\n"
    svc = d.show("a")["service"]["pid"]
    with open(f"/proc/{svc}/limits") as fh:
        assert [ln.split()[3:5] for ln in fh if ln.startswith("Max open files")] == [["321", "321"]]
    # the fast C prisonctl too
    r = subprocess.run(["/usr/local/bin/prisonctl", "--socket", d.socket, "exec", "c", "sh", "-c", "ulimit -n"],
                       capture_output=True)
    assert r.stdout == b"123\n"


def test_limits_change_on_reload_without_restarting(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    limits: {pids: 50, nofile: 300}\n"
               "    exec: {start: sleep 600}\n")
    svc = d.show("a")["service"]["pid"]
    # lowered: raising a running process's hard limit would need CAP_SYS_RESOURCE, which this
    # machine's root lacks (the daemon then logs that only new processes get it)
    d.write_config("prisons:\n  a:\n    ip4: [127.0.2.1]\n    limits: {pids: 80, memory: 256M, nofile: 200}\n"
                   "    exec: {start: sleep 600}\n")
    r = d.ctl("reload")
    assert r.returncode == 0, r.stderr
    shown = d.show("a")
    assert shown["service"]["pid"] == svc and shown["limits"] == {"pids": 80, "memory": 256 << 20, "nofile": 200}
    cg = {c: os.path.join(f"/sys/fs/cgroup/{c}", os.path.relpath(shown["cgroup"], d.cgroup_dir() + "/..")) for c in
          ("pids", "memory")}
    assert open(os.path.join(cg["pids"], "pids.max")).read() == "80\n"
    assert int(open(os.path.join(cg["memory"], "memory.limit_in_bytes")).read()) == 256 << 20
    with open(f"/proc/{svc}/limits") as fh:
        assert [ln.split()[3:5] for ln in fh if ln.startswith("Max open files")] == [["200", "200"]]


def test_a_limit_the_host_cannot_enforce_fails_the_prison(daemon, tmp_path):
    """Without cgroup controllers (daemon.limits: false) a limit is refused with the reason, not
    ignored; a v2 host missing one controller is in tests/test_resources.py."""
    d = daemon("daemon:\n  limits: false\n"
               "prisons:\n  a:\n    ip4: [127.0.2.1]\n    limits: {pids: 50}\n  b:\n    ip4: [127.0.3.1]\n")
    assert d.show("a")["state"] == "failed"
    assert d.show("a")["reason"] == "limits: this daemon has no cgroup controllers to enforce them"
    assert d.show("b")["state"] == "running"


def test_network_bytes_match_what_was_sent(daemon):
    """UDP, so that nothing is retransmitted: each datagram is its payload and 28 bytes of
    IPv4 and UDP headers on the wire, counted by the kernel layer as it leaves."""
    d = daemon("prisons:\n  net:\n    enforce: kernel\n    ip4: [127.0.2.1]\n")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.9", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    count, size = 2000, 1000
    before = d.show("net")["usage"]
    r = d.exec("net", "python3", "-c",
               "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               f"for _ in range({count}): s.sendto(b'x' * {size}, ('127.0.0.9', {sink.getsockname()[1]}))")
    assert r.returncode == 0, r.stderr
    sink.settimeout(2)
    got = 0
    try:
        while True:
            data, peer = sink.recvfrom(65536)
            assert peer[0] == "127.0.2.1"
            got += len(data)
    except TimeoutError:
        pass
    sink.close()
    after = d.show("net")["usage"]
    assert after["egress_packets"] - before["egress_packets"] == count
    assert after["egress_bytes"] - before["egress_bytes"] == count * (size + 28)
    assert got <= count * size and got >= 0.9 * count * size  # what arrived (loopback may drop a few)
    text = d.ctl("show", "net").stdout.decode()
    assert f"out {(count * (size + 28)) / (1 << 20):.1f}M / {count} packets" in text


def test_top_and_list_report_every_prison(daemon):
    d = daemon("prisons:\n  spin:\n    ip4: [127.0.2.1]\n    limits: {cpu: 50%, pids: 100}\n"
               "    exec: {start: \"sh -c 'while :; do :; done'\"}\n"
               "  idle:\n    ip4: [127.0.3.1]\n    exec: {start: sleep 600}\n")
    r = d.ctl("top", "-n", "2", "-d", "1")
    assert r.returncode == 0, r.stderr
    frames = r.stdout.decode().split("prisonctl top: ")[1:]
    assert len(frames) == 2
    rows = {line.split()[1]: line.split() for line in frames[1].splitlines()[2:]}
    header = frames[1].splitlines()[1].split()
    assert header == ["JID", "NAME", "STATE", "PROCS", "CPU%", "MEM", "PEAK", "OOM", "FORK-REFUSED", "THROTTLED",
                      "NET-IN", "NET-OUT"]
    assert 30 <= float(rows["spin"][4]) <= 70 and float(rows["idle"][4]) < 5
    listed = {p["name"]: p for p in json.loads(d.ctl("list", "--json").stdout)}
    assert set(listed["spin"]["usage"]) >= {"cpu_usec", "memory_current", "memory_peak", "oom_kills", "pids_refused",
                                            "cpu_throttled", "egress_bytes", "ingress_bytes"}
    assert listed["spin"]["usage"]["cpu_usec"] > listed["idle"]["usage"]["cpu_usec"]
    for bad in (["-d", "-1"], ["-d", "0"], ["-d", "nan"], ["-n", "-1"]):  # refused as usage, no traceback
        r = d.ctl("top", *bad, timeout=10)
        assert r.returncode == 2 and b"Traceback" not in r.stderr, (bad, r)


def _memory_cgroup(pid: int) -> str:
    """The v1 memory cgroup of a process (hybrid hosts), or its v2 cgroup."""
    with open(f"/proc/{pid}/cgroup") as fh:
        lines = [ln.strip().split(":", 2) for ln in fh]
    return next((path for _, ctl, path in lines if "memory" in ctl.split(",")),
                next(path for _, ctl, path in lines if ctl == ""))


def test_without_memory_accounting_prisons_have_no_memory_cgroup_and_are_counted_together(daemon):
    """daemon.memory_accounting: false: no memory cgroup per prison (each costs the kernel ~1 MB
    among 10,000 prisons), the prisons' memory is charged to cgroup_parent's (never to the
    daemon's own), the other controllers work as before, and nothing is left after the stop."""
    d = daemon("daemon:\n  memory_accounting: false\n"
               "prisons:\n  a:\n    ip4: [127.0.2.1]\n    limits: {pids: 50}\n    exec: {start: sleep 600}\n")
    shown = d.show("a")
    svc = shown["service"]["pid"]
    v1 = "/sys/fs/cgroup/memory"
    if os.path.isdir(v1):  # hybrid: the prisons join one memory cgroup, cgroup_parent
        assert _memory_cgroup(svc) == f"/{d.cgroup_parent}"
        assert not os.path.exists(os.path.join(v1, d.cgroup_parent, "a"))
        assert _memory_cgroup(svc) != _memory_cgroup(d.proc.pid)
    else:  # v2: memory is off in cgroup_parent's subtree_control, so the prison's cgroup has no memory files
        assert "memory" not in open(os.path.join(d.cgroup_dir(), "cgroup.subtree_control")).read().split()
        assert not os.path.exists(os.path.join(shown["cgroup"], "memory.current"))
    assert shown["usage"]["memory_current"] is None and shown["usage"]["cpu_usec"] is not None
    row = [ln for ln in d.ctl("list").stdout.decode().splitlines() if " a " in f" {ln} "]
    assert row and row[0].split()[-1] == "-", row  # list's MEM column: none to show
    # the pids limit still holds (its own cgroup)
    r = d.exec("a", "sh", "-c", "for i in $(seq 80); do sleep 5 & done; wait")
    assert r.returncode != 0 and b"fork" in r.stderr
    wait_for(lambda: (d.show("a")["usage"]["pids_refused"] or 0) > 0, what="forks refused at the limit")
    assert d.ctl("stop", "a").returncode == 0
    d.stop()
    assert glob.glob(f"/sys/fs/cgroup/*/{d.cgroup_parent}") == []


def test_turning_memory_accounting_off_across_a_restart_leaves_no_memory_cgroup_behind(daemon):
    """A prison adopted from a daemon that gave it a memory cgroup: its stop removes that one too."""
    body = "prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec: {start: sleep 600}\n"
    d = daemon(body)
    svc = d.show("a")["service"]["pid"]
    own = _memory_cgroup(svc)
    assert own.endswith("/a")
    d.kill9()
    d.write_config("daemon:\n  memory_accounting: false\n" + body)
    d.start()
    assert d.show("a")["service"]["pid"] == svc  # adopted, and moved to the shared memory cgroup
    assert _memory_cgroup(svc) == f"/{d.cgroup_parent}"
    assert d.ctl("stop", "a").returncode == 0
    if os.path.isdir("/sys/fs/cgroup/memory"):
        assert not os.path.exists("/sys/fs/cgroup/memory" + own)
    d.stop()
    assert glob.glob(f"/sys/fs/cgroup/*/{d.cgroup_parent}") == []


def test_turning_memory_accounting_on_across_a_restart_puts_an_adopted_prison_under_its_limit(daemon):
    """The other way: the adopted prison's processes join the memory cgroup its limit is written
    to, and its figures are its own."""
    d = daemon("daemon:\n  memory_accounting: false\nprisons:\n  a:\n    ip4: [127.0.2.1]\n"
               "    exec: {start: sleep 600}\n")
    svc = d.show("a")["service"]["pid"]
    d.kill9()
    d.write_config("prisons:\n  a:\n    ip4: [127.0.2.1]\n    limits: {memory: 64M}\n    exec: {start: sleep 600}\n")
    d.start()
    assert d.show("a")["service"]["pid"] == svc
    assert _memory_cgroup(svc) == f"/{d.cgroup_parent}/a"
    wait_for(lambda: (d.show("a")["usage"]["memory_current"] or 0) > 0, what="its own memory figure")
    r = d.exec("a", "python3", "-c", "b = bytearray(256 << 20); print('survived')")
    assert r.returncode == -9 and b"survived" not in r.stdout


def test_a_reload_asking_for_a_limit_this_daemon_cannot_enforce_is_refused_and_the_prison_runs_on(daemon):
    """memory_accounting is read when prisond starts: a file that turns it on and gives a running
    prison a memory limit is refused whole (not the prison stopped for a start that would fail)."""
    body = "prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec: {start: sleep 600}\n"
    d = daemon("daemon:\n  memory_accounting: false\n" + body)
    svc = d.show("a")["service"]["pid"]
    d.write_config(body.replace("    exec:", "    limits: {memory: 64M}\n    exec:"))
    for args in (("reload", "--dry-run"), ("reload",)):
        r = d.ctl(*args)
        assert r.returncode != 0 and b"prisons.a.limits: this host cannot enforce limits on memory" in r.stderr, r
        assert b"memory accounting is off" in r.stderr and b"Traceback" not in r.stderr
    shown = d.show("a")
    assert shown["state"] == "running" and shown["service"]["pid"] == svc and shown["limits"] == {}


def test_a_prison_a_killed_daemon_left_frozen_is_thawed_and_adopted(daemon):
    """prisond freezes a prison's cgroup for a moment (a kill, a move into other cgroups): a
    daemon killed in that moment leaves it frozen, and the next one thaws it rather than
    finding an init that does not answer and ending the prison."""
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec: {start: sleep 600}\n")
    svc = d.show("a")["service"]["pid"]
    freeze = os.path.join(d.show("a")["cgroup"], "cgroup.freeze")
    d.kill9()
    with open(freeze, "w") as fh:
        fh.write("1")
    d.start()
    assert d.show("a")["state"] == "running" and d.show("a")["service"]["pid"] == svc
    assert open(freeze).read().strip() == "0"
    assert d.exec("a", "echo", "thawed").stdout == b"thawed\n"
