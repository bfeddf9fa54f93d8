"""The daemon's lifecycle, observed from outside: addresses on lo, processes, cgroups, files."""
import json
import os
import signal
import subprocess
import time

import pytest

from support.daemon import addresses_on_lo, prisonctl_cmd, prisond_cmd, wait_for

SERVICE = 'start: [python3, -c, "import time; time.sleep(3600)"]'


def test_list_and_show(daemon):
    d = daemon(f"""
prisons:
  web1:
    hostname: web1.example.test
    ip4: [127.0.2.1]
    exec:
      {SERVICE}
  web2:
    ip4: [127.0.3.1, 127.0.3.2]
""")
    r = d.ctl("list")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["JID", "NAME", "HOSTNAME", "IP", "STATE", "PROCS", "CPU", "MEM"]
    # processes: the prison's init, and its service
    assert lines[1].split()[:6] == ["1", "web1", "web1.example.test", "127.0.2.1", "running", "2"]
    assert lines[2].split()[:6] == ["2", "web2", "web2", "127.0.3.1,127.0.3.2", "running", "1"]
    assert lines[1].split()[6].endswith("s") and lines[1].split()[7][-1] in "KMG"  # CPU time, memory
    listed = json.loads(d.ctl("list", "--json").stdout)
    assert [p["name"] for p in listed] == ["web1", "web2"]
    shown = json.loads(d.ctl("show", "web1", "--json").stdout)
    assert shown["service"]["status"] == "running"
    assert [p["pid"] for p in shown["processes"]] == [shown["init_pid"], shown["service"]["pid"]]
    assert [p["command"] for p in shown["processes"]][0] == "init"
    text = d.ctl("show", "web1").stdout.decode()
    assert "web1 (jid 1): running" in text and "127.0.2.1/32" in text


def test_stop_leaves_no_alias_process_cgroup_or_file(daemon):
    before = addresses_on_lo()
    d = daemon(f"""
prisons:
  a:
    ip4: [127.0.2.1]
    ip6: ["lo|fd00:2::1"]
    exec:
      {SERVICE}
""")
    service = d.show("a")["service"]["pid"]
    spawned = subprocess.Popen(prisonctl_cmd() + ["--socket", d.socket, "exec", "a", "--", "sleep", "3600"])
    wait_for(lambda: d.show("a")["procs"] == 3, what="three processes (init, the service, sleep)")
    assert {"127.0.2.1", "fd00:2::1"} <= addresses_on_lo()
    cg = d.cgroup_dir()
    assert os.path.isdir(os.path.join(cg, "a"))
    assert d.stop() == 0
    assert spawned.wait(10) == -signal.SIGTERM
    assert not os.path.exists(f"/proc/{service}")
    assert addresses_on_lo() == before
    assert not os.path.exists(cg)
    assert not os.path.exists(d.socket)
    assert not os.path.exists(os.path.join(d.run_dir, "public", "libprisonshim.so"))
    # the lock (unlinking it races), and no record: the record files stay, empty, for the next start
    assert sorted(os.listdir(d.state_dir)) == ["aliases", "boot_id", "events.jsonl", "prisond.lock", "prisons"]
    records = [os.path.join(d.state_dir, sub, f) for sub in ("aliases", "prisons")
               for f in os.listdir(os.path.join(d.state_dir, sub))]
    assert len(records) == 3 and all(os.path.getsize(f) == 0 for f in records)  # a's, 127.0.2.1's, fd00:2::1's


def test_a_prison_that_fails_to_start_leaves_nothing_and_the_others_run(daemon):
    before = addresses_on_lo()
    d = daemon(f"""
prisons:
  good:
    ip4: [127.0.2.1]
    exec:
      {SERVICE}
  badcmd:
    ip4: [127.0.3.1]
    exec:
      start: [/nonexistent/program]
  badhook:
    ip4: [127.0.4.1]
    exec:
      prestart: "echo checking the host; echo no disk left >&2; exit 3"
  badiface:
    ip4: ["nosuchif0|10.99.0.1/32"]
""")
    listed = {p["name"]: p for p in d.call("prison.list")}
    assert listed["good"]["state"] == "running"
    assert listed["badcmd"]["state"] == "failed" and "nonexistent" in listed["badcmd"]["reason"]
    assert listed["badhook"]["state"] == "failed" and "exec.prestart exited with status 3" in listed["badhook"]["reason"]
    # a hook's output: in the daemon's log, each line with its prison and hook
    assert "prison badhook: exec.prestart: checking the host" in d.log()
    assert "prison badhook: exec.prestart: no disk left" in d.log()
    assert listed["badiface"]["state"] == "failed" and "nosuchif0" in listed["badiface"]["reason"]
    # each failure once in the daemon's log above debug, as an error
    failures = [line.split()[1] for line in d.log().splitlines() if "prison badcmd: failed:" in line]
    assert [level for level in failures if level != "debug"] == ["error"], failures
    assert addresses_on_lo() - before == {"127.0.2.1"}
    assert sorted(os.listdir(d.cgroup_dir())) == ["good"] or \
        [e for e in os.listdir(d.cgroup_dir()) if os.path.isdir(os.path.join(d.cgroup_dir(), e))] == ["good"]
    r = d.ctl("list")
    assert "failed" in r.stdout.decode()


def test_an_address_the_host_already_had_is_never_removed(daemon):
    subprocess.run(["ip", "addr", "add", "127.0.7.7/32", "dev", "lo"], check=True)
    try:
        d = daemon("prisons:\n  a:\n    ip4: [127.0.7.7]\n")
        assert d.call("prison.stop", name="a")["state"] == "stopped"
        assert "127.0.7.7" in addresses_on_lo()
        assert d.stop() == 0
        assert "127.0.7.7" in addresses_on_lo()
    finally:
        subprocess.run(["ip", "addr", "del", "127.0.7.7/32", "dev", "lo"], check=True)


def test_shared_single_address_stays_until_both_prisons_stop(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.8.1]\n  b:\n    ip4: [127.0.8.1]\n")
    d.call("prison.stop", name="a")
    assert "127.0.8.1" in addresses_on_lo()
    d.call("prison.stop", name="b")
    assert "127.0.8.1" not in addresses_on_lo()


def test_exec_passes_status_stdin_and_signals(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n")
    assert d.exec("a", "sh", "-c", "exit 7").returncode == 7
    r = d.exec("a", "cat", input=b"through stdin\n")
    assert r.stdout == b"through stdin\n"
    r = d.exec("a", "sh", "-c", "echo to-stderr >&2")
    assert r.stderr == b"to-stderr\n"
    assert d.exec("a", "sh", "-c", "kill -TERM $$").returncode == -signal.SIGTERM
    r = d.exec("a", "no-such-command-here")
    assert r.returncode == 127 and b"command not found" in r.stderr
    p = subprocess.Popen(prisonctl_cmd() + ["--socket", d.socket, "exec", "a", "--", "sleep", "60"])
    wait_for(lambda: d.show("a")["procs"] == 2, what="sleep in the prison (with its init)")
    p.send_signal(signal.SIGINT)  # the signal reaches the command itself: prisonctl became it
    assert p.wait(5) == -signal.SIGINT
    # no command: the shell
    r = subprocess.run(prisonctl_cmd() + ["--socket", d.socket, "exec", "a"], input=b"hostname\n",
                       capture_output=True, env=dict(os.environ, SHELL="/bin/sh"))
    assert r.stdout == b"a\n"


def test_exec_errors(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n")
    r = d.exec("nosuch", "true")
    assert r.returncode == 1 and r.stderr == b"prisonctl: no such prison: nosuch\n"
    d.call("prison.stop", name="a")
    r = d.exec("a", "true")
    assert r.returncode == 1 and r.stderr == b"prisonctl: prison a is not running\n"


def test_stop_timeout_then_sigkill_and_exec_stop_inside(daemon, tmp_path):
    out = tmp_path / "out"  # root's alone (0700): a read-write mount no host user reaches, whatever
    out.mkdir(mode=0o700)  # other tests made of the directories above it
    marker = out / "stopped-by-exec-stop"
    d = daemon(f"""
prisons:
  stubborn:
    ip4: [127.0.2.1]
    mounts: [{{source: "{out}", readonly: false}}]   # its /tmp is its own: the marker's directory
    stop:
      timeout: 3    # exec.stop has as long too: a loaded CI machine can take a second to run it
    exec:
      start: [sh, -c, "trap '' TERM; while true; do sleep 0.1; done"]
      stop: [sh, -c, "hostname > {marker}"]
""")
    pid = d.show("stubborn")["service"]["pid"]
    t0 = time.monotonic()
    r = d.ctl("stop", "stubborn")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0 and r.stdout == b"stubborn: stopped\n"
    assert not os.path.exists(f"/proc/{pid}")
    assert marker.read_text() == "stubborn\n"  # exec.stop ran inside: it saw the prison's hostname
    assert elapsed >= 3.0  # the TERM was ignored; the KILL came after stop.timeout
    assert "sending SIGKILL" in d.log()


def test_start_stop_restart_from_the_cli(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n")
    pid1 = d.show("a")["service"]["pid"]
    assert d.ctl("restart", "a").stdout == b"a: running\n"
    pid2 = d.show("a")["service"]["pid"]
    assert pid1 != pid2 and not os.path.exists(f"/proc/{pid1}")
    assert d.ctl("stop", "a").stdout == b"a: stopped\n"
    r = d.ctl("stop", "a")
    assert r.returncode == 1 and b"not running" in r.stderr
    assert d.ctl("start", "a").stdout == b"a: running\n"
    r = d.ctl("start", "a")
    assert r.returncode == 1 and b"already running" in r.stderr
    r = d.ctl("start", "zzz")
    assert r.returncode == 1 and r.stderr == b"prisonctl: no such prison: zzz\n"


def test_reload_applies_only_the_difference(daemon):
    d = daemon(f"""
prisons:
  keep:
    ip4: [127.0.2.1]
    exec:
      {SERVICE}
  change:
    ip4: [127.0.3.1]
    exec:
      {SERVICE}
  drop:
    ip4: [127.0.4.1]
""")
    keep_pid = d.show("keep")["service"]["pid"]
    change_pid = d.show("change")["service"]["pid"]
    d.write_config(f"""
prisons:
  keep:
    ip4: [127.0.2.1]
    exec:
      {SERVICE}
  change:
    hostname: changed.example.test   # not only the address: the prison restarts
    ip4: [127.0.3.9]
    exec:
      {SERVICE}
  new:
    ip4: [127.0.6.1]
""")
    r = d.ctl("reload", "--dry-run")
    assert r.stdout.decode().splitlines() == ["would start: new", "would stop: drop", "would restart: change"]
    assert "127.0.4.1" in addresses_on_lo()  # a dry run changes nothing
    r = d.ctl("reload", "--json")
    assert json.loads(r.stdout)["unchanged"] == ["keep"]
    assert d.show("keep")["service"]["pid"] == keep_pid
    changed = d.show("change")
    assert changed["state"] == "running" and changed["jid"] == 2
    assert changed["service"]["pid"] not in (None, change_pid) and not os.path.exists(f"/proc/{change_pid}")
    lo = addresses_on_lo()
    assert {"127.0.3.9", "127.0.6.1", "127.0.2.1"} <= lo and not {"127.0.3.1", "127.0.4.1"} & lo
    assert [p["name"] for p in d.call("prison.list")] == ["keep", "change", "new"]


def test_a_reload_says_which_prisons_then_failed(daemon):
    """The reload is applied, but a prison it started or restarted did not come up: the
    command says which and why, and exits 1 (an outside review saw "restarted: p020", exit 0,
    for a prison that had failed)."""
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n")
    d.write_config("prisons:\n  a:\n    hostname: a2.example.test\n    ip4: [127.0.2.1]\n"
                   "    exec: {start: [/nonexistent/program]}\n  b:\n    ip4: [127.0.3.1]\n")
    r = d.ctl("reload")
    out = r.stdout.decode().splitlines()
    assert r.returncode == 1, (out, r.stderr)
    assert out[:2] == ["started: b", "restarted: a"]
    assert out[2].startswith("failed: a: ") and "nonexistent" in out[2]
    assert d.show("b")["state"] == "running" and d.show("a")["state"] == "failed"
    r = d.ctl("reload", "--json")  # nothing changed since: nothing failed now
    assert r.returncode == 0 and json.loads(r.stdout)["failed"] == []


def test_a_bad_reload_keeps_the_running_config(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n")
    pid = d.show("a")["service"]["pid"]
    d.write_config("prisons:\n  a:\n    ip4: [0.0.0.0]\n    bogus: 1\n")
    r = d.ctl("reload")
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "invalid configuration, nothing changed" in err
    assert "prisond.yaml:6: prisons.a.ip4[0]: 0.0.0.0 is the unspecified address" in err  # after the suite's 2 daemon: lines
    assert "prisons.a.bogus: unknown key" in err
    # SIGHUP with the same bad file: logged, nothing changes
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in d.log(), what="the rejected reload in the log")
    assert d.show("a")["service"]["pid"] == pid and d.show("a")["state"] == "running"
    assert "127.0.2.1" in addresses_on_lo()


def test_sighup_reloads(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n")
    d.write_config("prisons:\n  a:\n    ip4: [127.0.2.1]\n  b:\n    ip4: [127.0.3.1]\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(p["name"] == "b" and p["state"] == "running" for p in d.call("prison.list")),
             what="b started by SIGHUP")


def test_sigterm_stops_everything_and_exits_zero(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n")
    pid = d.show("a")["service"]["pid"]
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert not os.path.exists(f"/proc/{pid}")


def test_leftovers_of_a_killed_daemon_are_cleaned_up_on_start(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n")
    pid = d.show("a")["service"]["pid"]
    d.kill9()
    assert os.path.exists(f"/proc/{pid}") and "127.0.2.1" in addresses_on_lo()
    d.write_config("prisons: {}\n")
    d.start()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the orphaned service to be gone")
    assert "127.0.2.1" not in addresses_on_lo()


def test_a_service_that_exits_at_once_shows_its_exit_and_no_false_pid(daemon):
    d = daemon("prisons:\n" + "".join(f"  q{i}: {{ip4: [127.0.2.{i + 1}], exec: {{start: [\"true\"]}}}}\n"
                                      for i in range(8)))
    for i in range(8):
        wait_for(lambda: d.show(f"q{i}")["service"]["status"] != "running", what="true to exit")  # noqa: B023
        svc = d.show(f"q{i}")["service"]
        assert svc["pid"] is None or svc["pid"] > 0, svc
        text = d.ctl("show", f"q{i}").stdout.decode()
        assert "exited with status 0" in text and "pid -1" not in text, text


def test_a_daemon_that_adopted_prisons_stops_without_a_traceback(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n  b: {{ip4: [127.0.3.1]}}\n")
    pid = d.show("a")["service"]["pid"]
    d.kill9()
    d.start()
    assert d.show("a")["service"]["pid"] == pid  # adopted, not restarted
    assert d.stop() == 0
    assert "Traceback" not in d.log() and "Exception ignored" not in d.log(), d.log()[-3000:]


@pytest.mark.parametrize("args,code,message", [
    (["--config", "/nonexistent.yaml"], 2, "cannot read"),
])
def test_daemon_refuses_bad_start(tmp_path, args, code, message):
    from support.daemon import prisond_cmd
    r = subprocess.run(prisond_cmd() + args + ["--socket", str(tmp_path / "s")], capture_output=True, text=True)
    assert r.returncode == code and message in r.stderr and "Traceback" not in r.stderr


def test_sigterm_while_starting_stops_what_started_and_leaves_nothing(daemon):
    body = "prisons:\n" + "".join(f"  p{i}: {{ip4: [127.10.{i // 250}.{i % 250 + 1}]}}\n" for i in range(300))
    d = daemon(body, start=False)
    d.start(wait=False)
    wait_for(lambda: os.path.exists(d.socket), what="the control socket")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0
    assert not os.path.exists(d.cgroup_dir())
    assert not any(a.startswith("127.10.") for a in addresses_on_lo())


def test_ps_and_which(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n  b: {{ip4: [127.0.3.1]}}\n")
    pid = d.show("a")["service"]["pid"]
    r = d.ctl("ps", "a")
    rows = r.stdout.decode().splitlines()
    assert rows[0].split() == ["PID", "USER", "BOUND", "COMMAND"] and rows[1].split()[-1] == "init"
    assert rows[2].split()[:2] == [str(pid), "root"]
    assert d.ctl("which", pid).stdout == f"{pid}: a (jid 1)\n".encode()
    assert d.ctl("which", os.getpid()).stdout == f"{os.getpid()}: not in a prison\n".encode()
    r = d.ctl("which", 999999999)
    assert r.returncode == 1 and b"no process 999999999" in r.stderr


def test_exec_as_a_user_in_a_clean_environment(daemon):
    from support.daemon import let_others_reach
    d = daemon("prisons:\n  a: {ip4: [127.0.2.1]}\n")
    let_others_reach(d.run_dir)  # the shim copy must be readable by the user
    assert d.exec("a", "id", "-u").stdout == b"0\n"
    r = d.ctl("exec", "-u", "nobody", "a", "--", "sh", "-c", "id -u; hostname")
    assert r.stdout == b"65534\na\n", r.stderr
    r = d.ctl("exec", "-l", "-u", "nobody", "a", "--", "env", env=dict(os.environ, SECRET="x", TERM="vt100"))
    names = {line.split("=", 1)[0] for line in r.stdout.decode().splitlines()}
    assert names == {"PATH", "TERM", "HOME", "SHELL", "USER", "LOGNAME", "LD_PRELOAD", "PRISOND_POLICY"}
    r = d.ctl("exec", "-u", "no-such-user-here", "a", "--", "true")
    assert r.returncode == 1 and r.stderr == b"prisonctl: no user no-such-user-here in the prison\n"


def test_a_runtime_directory_other_users_cannot_reach_is_warned_of(daemon):
    """A directory above the runtime directory closed to others (the suite's /tmp/pytest-of-root
    is 0700) keeps the shim from every prison program not run as root: the daemon says which."""
    d = daemon("prisons:\n  a: {ip4: [127.0.2.1]}\n")
    path, closed = d.run_dir, None
    while path != "/":
        closed = path if not os.stat(path).st_mode & 0o001 else closed
        path = os.path.dirname(path)
    assert closed is not None and os.stat(d.run_dir).st_mode & 0o001
    assert f"{closed} is closed to other users: programs of unconfined prisons" in d.log()


def test_exec_jail_user_runs_the_service_as_that_user(daemon):
    from support.daemon import let_others_reach
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      jail_user: nobody\n"
               "      start: [sleep, '3600']\n  bad:\n    ip4: [127.0.3.1]\n    exec:\n"
               "      jail_user: no-such-user-here\n      start: [sleep, '3600']\n", start=False)
    let_others_reach(d.dir)  # the daemon makes its run directory 0755 below it
    d.start()
    pid = d.show("a")["service"]["pid"]
    assert os.stat(f"/proc/{pid}").st_uid == 65534
    bad = d.show("bad")
    assert bad["state"] == "failed" and bad["reason"] == "exec.jail_user: no user 'no-such-user-here' in the prison"


def test_each_prison_has_its_own_kernel_hostname(daemon, nettool_static):
    """A UTS namespace per prison: static binaries (no shim) see the prison's hostname too."""
    d = daemon("prisons:\n  a: {hostname: a.example.test, ip4: [127.0.2.1]}\n"
               "  b: {hostname: b.example.test, ip4: [127.0.3.1]}\n")
    host = os.uname().nodename
    assert d.exec("a", nettool_static, "hostname").stdout == b"gethostname=a.example.test uname=a.example.test\n"
    assert d.exec("b", nettool_static, "hostname").stdout == b"gethostname=b.example.test uname=b.example.test\n"
    assert d.exec("a", "sh", "-c", "cat /proc/sys/kernel/hostname").stdout == b"a.example.test\n"
    assert os.uname().nodename == host
    # the namespaces are held by each prison's init: nothing is mounted to pin them
    inits = [d.show(n)["init_pid"] for n in ("a", "b")]
    uts = {os.readlink(f"/proc/{pid}/ns/uts") for pid in inits} | {os.readlink("/proc/self/ns/uts")}
    assert len(uts) == 3
    assert not [line for line in open("/proc/self/mountinfo") if d.state_dir in line or d.run_dir in line]
    assert d.stop() == 0
    assert os.uname().nodename == host


def _shm_ids(ipcs_output: str) -> set[str]:
    """The shmid column of `ipcs -m` (rows start with a 0x key)."""
    return {line.split()[1] for line in ipcs_output.splitlines() if line.startswith("0x")}


def test_sysv_ipc_is_the_prison_own_unless_allowed(daemon):
    d = daemon("prisons:\n  a: {ip4: [127.0.2.1]}\n  b: {ip4: [127.0.3.1]}\n"
               "  shared: {ip4: [127.0.4.1], allow: {sysvipc: true}}\n")
    r = d.exec("a", "ipcmk", "-M", "4096")
    assert r.returncode == 0 and r.stdout.startswith(b"Shared memory id: "), r.stderr
    seg = r.stdout.decode().split()[-1]
    assert seg in _shm_ids(d.exec("a", "ipcs", "-m").stdout.decode())
    assert seg not in _shm_ids(d.exec("b", "ipcs", "-m").stdout.decode())
    assert seg not in _shm_ids(subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout)
    # allow.sysvipc: the host's IPC, as FreeBSD's allow.sysvipc
    seg2 = d.exec("shared", "ipcmk", "-M", "4096").stdout.decode().split()[-1]
    try:
        assert seg2 in _shm_ids(subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout)
    finally:
        subprocess.run(["ipcrm", "-m", seg2], check=True)


def test_state_from_an_earlier_boot_is_discarded(daemon):
    """Records of another boot describe aliases and cgroups that died with it: an address they
    name that is on the host now was added by someone else, and stays."""
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n", start=False)
    for sub in ("aliases", "prisons"):
        os.makedirs(os.path.join(d.state_dir, sub), exist_ok=True)
    with open(os.path.join(d.state_dir, "boot_id"), "w") as fh:
        fh.write("00000000-0000-0000-0000-000000000000\n")
    with open(os.path.join(d.state_dir, "aliases", "127.0.2.77"), "w") as fh:
        fh.write("32 lo\n")
    with open(os.path.join(d.state_dir, "prisons", "old.json"), "w") as fh:
        fh.write('{"jid": 9, "state": "running", "enforcement": "shim"}')
    subprocess.run(["ip", "addr", "add", "127.0.2.77/32", "dev", "lo"], check=True)
    try:
        d.start()
        assert d.show("a")["state"] == "running" and d.show("a")["jid"] == 1
        assert "127.0.2.77" in addresses_on_lo()  # not ours in this boot: untouched
        assert os.listdir(os.path.join(d.state_dir, "aliases")) == ["127.0.2.1"]
        with open(os.path.join(d.state_dir, "boot_id")) as fh, open("/proc/sys/kernel/random/boot_id") as now:
            assert fh.read() == now.read()
        assert d.stop() == 0
        assert "127.0.2.77" in addresses_on_lo()
    finally:
        subprocess.run(["ip", "addr", "del", "127.0.2.77/32", "dev", "lo"])


def test_a_record_of_an_address_the_host_had_is_not_taken_for_the_daemons(daemon):
    """An alias is recorded before it is added, and the record dropped when the host had the
    address: a daemon killed in between leaves a record of the host's address.  The next daemon
    must not take it for one it added, and remove it from the host at its stop."""
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.77]\n", start=False)
    os.makedirs(os.path.join(d.state_dir, "aliases"), exist_ok=True)
    with open("/proc/sys/kernel/random/boot_id") as now, open(os.path.join(d.state_dir, "boot_id"), "w") as fh:
        fh.write(now.read())  # this boot's: the record is believed as far as it goes
    with open(os.path.join(d.state_dir, "aliases", "127.0.2.77"), "w") as fh:
        fh.write("32 lo\n")
    subprocess.run(["ip", "addr", "add", "127.0.2.77/32", "dev", "lo"], check=True)
    try:
        d.start()
        assert d.show("a")["state"] == "running"
        assert d.stop() == 0
        assert "127.0.2.77" in addresses_on_lo()  # the host's: still there
        assert "127.0.2.77 was recorded but not added by prisond" in d.log()
    finally:
        subprocess.run(["ip", "addr", "del", "127.0.2.77/32", "dev", "lo"])


@pytest.mark.parametrize("shared", ["state", "runtime", "cgroup"])
def test_a_second_daemon_changes_nothing_and_names_the_first(daemon, tmp_path, shared):
    """One daemon per state directory, runtime directory and cgroup parent: a second one sharing
    any of them exits at once, naming the first, and the first one's prisons run on."""
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n")
    pid = d.show("a")["service"]["pid"]
    parent = d.cgroup_parent if shared == "cgroup" else f"{d.cgroup_parent}-other"
    cfg = tmp_path / "second.yaml"
    cfg.write_text(f"daemon:\n  cgroup_parent: {parent}\nprisons:\n  a:\n    ip4: [127.0.2.1]\n")
    other = tmp_path / "other"
    r = subprocess.run(prisond_cmd() + [
        "--config", str(cfg),
        "--state-dir", d.state_dir if shared == "state" else str(other / "state"),
        "--runtime-dir", d.run_dir if shared == "runtime" else str(other / "run"),
        "--socket", str(other / "control.sock")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"another prisond (pid {d.proc.pid}) is using" in r.stderr and "changed nothing" in r.stderr
    assert d.show("a")["state"] == "running" and d.show("a")["service"]["pid"] == pid
    assert os.path.exists(f"/proc/{pid}") and "127.0.2.1" in addresses_on_lo()
    assert not os.path.exists(other / "run")  # nothing made either


def ended(pid: int) -> bool:
    """Gone, or a zombie (its end seen; a process that vanishes mid-read counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("daemon_killed", [False, True])
def test_a_command_is_hung_up_when_its_prisonctl_goes(daemon, daemon_killed):
    """prisonctl exec relays; when it dies (even SIGKILL, even while no daemon runs), the
    command gets SIGHUP as from a terminal that hangs up: nothing is left running unseen."""
    d = daemon("prisons:\n  a: {ip4: [127.0.2.1]}\n")
    client = subprocess.Popen(d.ctl_argv() + ["exec", "a", "--", "sleep", "600"], stdin=subprocess.DEVNULL)
    wait_for(lambda: any("sleep 600" in p["command"] for p in d.call("prison.ps", name="a")["processes"]),
             what="the command")
    (pid,) = [p["pid"] for p in d.call("prison.ps", name="a")["processes"] if "sleep 600" in p["command"]]
    if daemon_killed:
        d.kill9()
    client.kill()
    client.wait()
    wait_for(lambda: ended(pid), what="the command to end")
    if daemon_killed:
        d.start()


def test_exec_keeps_the_operators_environment_out_unless_asked(daemon):
    """An operator's environment (tokens, keys) is not the prison's to read: exec passes the
    terminal's type and the locale (and PATH, HOME, USER, LOGNAME of the user it runs as);
    -E passes it all, as jexec does."""
    d = daemon("prisons:\n  a: {ip4: [127.0.2.1]}\n")
    env = dict(os.environ, OPERATOR_TOKEN="s3cret", TERM="vt100", LANG="C.UTF-8", LC_TIME="C", PATH="/opt/op:/usr/bin:/bin")
    names = {line.split("=", 1)[0]: line.split("=", 1)[1]
             for line in d.exec("a", "env", env=env).stdout.decode().splitlines()}
    assert "OPERATOR_TOKEN" not in names and names["TERM"] == "vt100" and names["LC_TIME"] == "C"
    assert names["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert (names["HOME"], names["USER"]) == ("/root", "root")
    kept = d.ctl("exec", "-E", "a", "--", "env", env=env).stdout.decode()
    assert "OPERATOR_TOKEN=s3cret" in kept.splitlines() and "PATH=/opt/op:/usr/bin:/bin" in kept.splitlines()


def test_a_prison_stopped_by_hand_stays_stopped_after_the_daemon_dies(daemon):
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n  b:\n    ip4: [127.0.3.1]\n")
    assert d.ctl("stop", "a").returncode == 0
    d.kill9()
    d.start()
    listed = {p["name"]: p for p in d.call("prison.list")}
    assert (listed["a"]["state"], listed["a"]["jid"]) == ("stopped", 1), listed["a"]
    assert (listed["b"]["state"], listed["b"]["jid"]) == ("running", 2)
    assert d.ctl("start", "a").returncode == 0 and d.show("a")["state"] == "running"


def test_a_prison_whose_stop_by_hand_a_crash_cut_short_stays_stopped(daemon):
    """The daemon dies while an operator's stop waits for a service that ignores SIGTERM: the
    next daemon ends what is left and does not start the prison again."""
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    stop: {timeout: 30}\n    exec:\n"
               "      start: [python3, -c, \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "time.sleep(3600)\"]\n  b:\n    ip4: [127.0.3.1]\n")

    def ignores_term() -> bool:  # set by the service itself once Python has started
        pid = d.show("a")["service"]["pid"]
        try:
            with open(f"/proc/{pid}/status") as fh:
                ignored = next(line for line in fh if line.startswith("SigIgn:")).split()[1]
        except (OSError, StopIteration):
            return False
        return bool(int(ignored, 16) & (1 << (signal.SIGTERM - 1)))
    wait_for(ignores_term, what="the service ignoring SIGTERM")
    stopping = subprocess.Popen(d.ctl_argv() + ["stop", "a"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: d.show("a")["state"] == "stopping", what="a stopping")
        d.kill9()
    finally:
        stopping.wait(30)
    d.start()
    listed = {p["name"]: p for p in d.call("prison.list")}
    assert (listed["a"]["state"], listed["a"]["procs"]) == ("stopped", 0), listed["a"]
    assert listed["b"]["state"] == "running"
    assert not os.path.exists(os.path.join(d.cgroup_dir(), "a"))


def test_a_jid_names_a_prison_as_for_jexec(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n  b:\n    hostname: b.example.test\n    ip4: [127.0.3.1]\n")
    assert d.exec("2", "hostname").stdout == b"b.example.test\n"  # the C prisonctl's way in
    assert json.loads(d.ctl("show", "2", "--json").stdout)["name"] == "b"
    assert [e["prison"] for e in map(json.loads, d.ctl("events", "--json", "2").stdout.decode().splitlines())] == ["b"]
    r = d.ctl("show", "9")
    assert r.returncode == 1 and b"no such prison" in r.stderr.lower(), r
