"""Prisons that tell the truth about their services, with real daemons and real processes:
a crash loop reaching the start limit, a clean exit, a confined prison whose init the OOM
killer takes, and a service that dies after a new daemon adopted it.  Judged from outside:
the state and reason prisonctl shows, the events, `health`'s exit status, processes, cgroups
and addresses on the host."""
import json
import os
import signal
import subprocess

from support.daemon import addresses_on_lo, wait_for
from support.fixtures import confined


def events(d, name) -> list[str]:
    return [json.loads(line)["kind"] for line in d.ctl("events", "--json", name).stdout.decode().splitlines()]


def test_a_crash_loop_reaches_the_start_limit_and_leaves_nothing(daemon):
    d = daemon("prisons:\n  loop:\n    ip4: [127.0.2.1]\n"
               "    restart: {delay: 0.05, max_delay: 0.2, burst: 3, interval: 60}\n"
               "    exec: {start: \"echo crashing; exit 1\"}\n"
               "  fine:\n    ip4: [127.0.3.1]\n    exec: {start: sleep 600}\n")
    wait_for(lambda: d.show("loop")["state"] == "failed", 20, "the start limit")
    shown = d.show("loop")
    assert shown["reason"] == "exec.start exited with status 1; start limit reached: 3 restarts within 60s"
    kinds = events(d, "loop")
    assert kinds == ["started"] + ["restarting", "restarted"] * 3 + ["failed"], kinds
    assert "127.0.2.1" not in addresses_on_lo() and not os.path.exists(os.path.join(d.cgroup_dir(), "loop"))
    assert d.log().count("prison loop: crashing") == 4  # the first start and three restarts
    r = d.ctl("health")
    assert r.returncode == 1 and b"loop: failed (exec.start exited with status 1; start limit" in r.stdout, r
    assert d.show("fine")["state"] == "running"


def test_a_service_that_ends_cleanly_leaves_the_prison_up_and_exited(daemon):
    d = daemon("prisons:\n  job:\n    ip4: [127.0.2.1]\n    exec: {start: \"echo done\"}\n")
    wait_for(lambda: d.show("job")["state"] == "exited", what="the job's end")
    shown = d.show("job")
    assert shown["service"]["status"] == "exited with status 0" and shown["reason"] is None
    assert d.exec("job", "hostname").stdout == b"job\n"  # its init is up: exec works
    assert "127.0.2.1" in addresses_on_lo()
    assert d.ctl("health").returncode == 0
    assert "exited" in d.ctl("list").stdout.decode().split("\n")[1].split()


def test_restart_no_keeps_a_failed_service_down_and_health_says_so(daemon):
    d = daemon("prisons:\n  once:\n    ip4: [127.0.2.1]\n    restart: no\n    exec: {start: \"exit 3\"}\n")
    wait_for(lambda: d.show("once")["state"] == "exited", what="the service's end")
    assert d.show("once")["reason"] == "exec.start exited with status 3"
    r = d.ctl("health")
    assert r.returncode == 1 and b"once: exited (exec.start exited with status 3)" in r.stdout
    assert events(d, "once") == ["started", "exited"]


def test_a_confined_prison_whose_init_the_oom_killer_takes_starts_again(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1",
                                       extra="    limits: {memory: 96M}\n    restart: {delay: 0.1}\n"
                                             "    exec: {start: [sleep, '600']}\n"))
    init = d.show("c")["init_pid"]
    # the prison's memory filled with a tmpfs file (/dev/shm: charged to its cgroup, no
    # process's RSS), so the OOM killer picks by oom_score_adj alone: init's is raised
    hog = subprocess.Popen([*d.ctl_argv(), "exec", "c", "--", "sh", "-c",
                            "sleep 1; dd if=/dev/zero of=/dev/shm/fill bs=1M count=400"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: d.show("c")["procs"] >= 3, what="the filler in the prison")  # init, sleep, sh
    with open(f"/proc/{init}/oom_score_adj", "w") as fh:  # after sh started: it keeps its 0
        fh.write("1000")
    assert hog.wait(60) != 0  # it went with its prison's init
    wait_for(lambda: d.show("c")["state"] == "running" and d.show("c")["init_pid"] not in (None, init), 30,
             "the prison started again")
    assert not os.path.exists(f"/proc/{init}")
    kinds = events(d, "c")
    assert "restarting" in kinds and kinds[-1] == "started", kinds
    assert "prison c: restarting: its init is gone (out of memory)" in d.log() or \
        "its init is gone (out of memory)" in d.log(), d.log()[-2000:]
    assert d.exec("c", "hostname").stdout == b"c.example.test\n"


def test_an_adopted_service_that_dies_is_restarted(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    restart: {delay: 0.1}\n"
               "    exec: {start: [sleep, '600']}\n")
    pid = d.show("a")["service"]["pid"]
    d.kill9()
    d.start()
    assert d.show("a")["service"]["pid"] == pid  # adopted
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: d.show("a")["state"] == "running" and d.show("a")["service"]["pid"] not in (None, pid), 20,
             "the service started again")
    kinds = events(d, "a")
    assert kinds[-3:] == ["adopted", "restarting", "restarted"], kinds
    assert d.show("a")["service"]["status"] == "running"


def test_a_reload_that_moves_a_prison_restarts_its_server_on_the_new_address(daemon):
    import socket
    from support.fixtures import free_port
    port = free_port()
    serve = f"    exec: {{start: [python3, -m, http.server, --bind, 0.0.0.0, '{port}']}}\n"
    d = daemon("prisons:\n  web:\n    ip4: [127.0.3.1]\n" + serve)

    def answers(ip: str) -> bool:
        try:
            with socket.create_connection((ip, port), timeout=2):
                return True
        except OSError:
            return False
    wait_for(lambda: answers("127.0.3.1"), what="the server on the first address")
    old = d.show("web")["service"]["pid"]
    d.write_config("prisons:\n  web:\n    ip4: [127.0.3.9]\n" + serve)
    assert d.ctl("reload", "--dry-run").stdout == b"would restart: web\n"
    r = d.ctl("reload")
    assert r.returncode == 0 and r.stdout == b"restarted: web\n", r
    wait_for(lambda: answers("127.0.3.9"), what="the server on the new address")
    assert not answers("127.0.3.1") and d.show("web")["service"]["pid"] != old


def test_a_prisons_output_goes_to_its_own_file_rotated_and_prisonctl_logs_reads_it(daemon):
    writer = ("import sys, time\n"
              "for i in range(3000):\n"
              "    print(f'line {i:06d} ' + 'x' * 60, flush=True)\n"
              "    time.sleep(0.001)\n"
              "print('the end', file=sys.stderr, flush=True)\n")
    d = daemon("daemon:\n  log_max_bytes: 8K\n  log_keep: 2\n"
               "prisons:\n  w:\n    ip4: [127.0.2.1]\n    restart: no\n"
               f"    exec: {{start: [python3, -c, {json.dumps(writer)}], prestart: 'echo from the hook'}}\n")
    wait_for(lambda: d.show("w")["state"] == "exited", 60, "the writer to finish")
    assert d.show("w")["service"]["status"] == "exited with status 0"  # it never waited on its output
    wait_for(lambda: "the end" in open(os.path.join(d.log_dir, "w.log")).read(), what="the last line")
    files = sorted(os.listdir(d.log_dir))
    assert files == ["w.log", "w.log.1", "w.log.2"], files  # log_keep rotated files, no more
    for f in files:
        assert os.path.getsize(os.path.join(d.log_dir, f)) <= 8192, f
    last = open(os.path.join(d.log_dir, "w.log")).read().splitlines()[-1]
    assert last.endswith(" err the end") and last[:4].isdigit(), last  # time, stream, text
    r = d.ctl("logs", "-n", "2", "w")
    assert r.returncode == 0 and r.stdout.decode().splitlines()[-1] == last, r
    follower = subprocess.Popen([*d.ctl_argv(), "logs", "-f", "-n", "1", "w"], stdout=subprocess.PIPE)
    try:  # -f follows (it waits for more, rather than refusing its arguments)
        assert follower.stdout.readline().decode().rstrip("\n") == last
        assert follower.poll() is None
    finally:
        follower.kill()
        follower.wait()
    # the hook's line went to the first file, long rotated away; the daemon's log echoes it
    assert "prison w: exec.prestart: from the hook" in d.log()


def daemon_zombies(pid: int) -> list[str]:
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,stat=,comm="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1].startswith("Z")]


def test_a_dead_init_leaves_no_zombies_in_the_daemon(daemon):
    d = daemon("prisons:\n  z:\n    ip4: [127.0.2.1]\n    restart: {delay: 0.1}\n"
               "    exec: {start: \"sleep 600 & sleep 600 & wait\"}\n")
    for _ in range(2):
        init = d.show("z")["init_pid"]
        os.kill(init, signal.SIGKILL)  # its processes go to the daemon (their subreaper), then die
        wait_for(lambda: d.show("z")["state"] == "running" and d.show("z")["init_pid"] not in (None, init), 20,
                 "the prison again")
    wait_for(lambda: not daemon_zombies(d.proc.pid), 10, f"no zombies of the daemon: {daemon_zombies(d.proc.pid)}")


def test_what_a_killed_service_left_in_its_session_is_ended_before_it_starts_again(daemon):
    d = daemon("prisons:\n  s:\n    ip4: [127.0.2.1]\n    restart: {delay: 0.1}\n"
               "    exec: {start: \"sleep 600 & wait\"}\n")
    svc = d.show("s")["service"]["pid"]
    (worker,) = [p["pid"] for p in d.call("prison.ps", name="s")["processes"] if p["command"].startswith("sleep")]
    os.kill(svc, signal.SIGKILL)  # the service, not its worker
    wait_for(lambda: d.show("s")["state"] == "running" and d.show("s")["service"]["pid"] not in (None, svc), 20,
             "the service again")
    wait_for(lambda: not os.path.exists(f"/proc/{worker}") or open(f"/proc/{worker}/stat").read().split()[2] == "Z",
             10, "the old worker gone")
    assert len([p for p in d.call("prison.ps", name="s")["processes"] if p["command"].startswith("sleep")]) == 1
