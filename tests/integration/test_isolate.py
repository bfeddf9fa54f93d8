"""Isolated prisons (the default, without path:): their own PID namespace and /proc, private
/run, /tmp, /var/tmp and /dev/shm on the host's tree, a generated /etc/hosts, runtime
directories, mounts; and isolate: false, which shares all of that with the host."""
import os

from support.daemon import wait_for

SLEEP = "    exec: {start: [sleep, '600']}\n"


def out(d, prison: str, script: str) -> str:
    r = d.exec(prison, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def service_pid(d, prison: str) -> int:
    return d.show(prison)["service"]["pid"]


def test_an_isolated_prison_sees_and_reaches_only_its_own_processes(daemon):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n" + SLEEP + "  b:\n    ip4: [127.0.3.1]\n" + SLEEP)
    ps = out(d, "a", "ps -e -o pid=,comm=").split("\n")
    procs = {tuple(line.split(None, 1)) for line in ps if line.strip()}
    assert ("1", "init") in procs and ("2", "sleep") in procs
    assert {comm for _, comm in procs} == {"init", "sleep", "sh", "ps"}  # nothing of the host's, nor b's
    # b's service by its host pid, and the daemon's: not there (a PID namespace, not a filter)
    for pid in (service_pid(d, "b"), d.proc.pid):
        r = d.exec("a", "kill", "-0", str(pid))
        assert r.returncode != 0 and b"No such process" in r.stderr
        assert os.path.exists(f"/proc/{pid}")
    # `show` gives the host's pids; the prison's own are 1, 2, ...
    assert d.show("a")["service"]["pid"] == service_pid(d, "a") != 2


def test_run_tmp_var_tmp_and_shm_are_each_prisons_own(daemon, tmp_path):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n" + SLEEP + "  b:\n    ip4: [127.0.3.1]\n" + SLEEP)
    tag = os.urandom(4).hex()
    for p in ("a", "b"):  # the same paths in both: a pid file, a socket directory, a lock
        out(d, p, f"for f in /run/x-{tag}.pid /tmp/x-{tag} /var/tmp/x-{tag} /dev/shm/x-{tag}; do echo {p} > $f; done;"
                  f" mkdir /run/lock/x-{tag}")
    for p in ("a", "b"):
        assert out(d, p, f"cat /run/x-{tag}.pid /tmp/x-{tag} /var/tmp/x-{tag} /dev/shm/x-{tag}") == f"{p}\n" * 4
    for f in (f"/run/x-{tag}.pid", f"/tmp/x-{tag}", f"/var/tmp/x-{tag}", f"/dev/shm/x-{tag}", f"/run/lock/x-{tag}"):
        assert not os.path.exists(f), f"{f} reached the host"
    modes = out(d, "a", "stat -c '%n %a' /tmp /var/tmp /dev/shm /run /run/lock").splitlines()
    assert modes == ["/tmp 1777", "/var/tmp 1777", "/dev/shm 1777", "/run 755", "/run/lock 1777"]
    # the host's tree otherwise: its /etc, its /usr
    assert out(d, "a", "cat /etc/os-release") == open("/etc/os-release").read()
    # the daemon's socket for operators lies in its runtime directory: not in a prison's view
    assert d.exec("a", "test", "-e", d.socket).returncode != 0
    # a stopped prison's /run and /tmp are gone with it
    d.ctl("restart", "a")
    assert d.exec("a", "test", "-e", f"/run/x-{tag}.pid").returncode != 0


def test_the_private_directories_are_one_file_system_per_prison(daemon):
    """/tmp, /var/tmp, /dev/shm and /run are directories of one tmpfs of the prison's (each file
    system the kernel makes costs every memory cgroup of the host a slot), each showing only
    itself, with no set-uid programs and no devices; a neighbour's is another."""
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n" + SLEEP + "  b:\n    ip4: [127.0.3.1]\n" + SLEEP)
    dirs = ("/tmp", "/var/tmp", "/dev/shm", "/run")
    devs = {p: set(out(d, p, "stat -c %d " + " ".join(dirs)).split()) for p in ("a", "b")}
    assert len(devs["a"]) == len(devs["b"]) == 1 and devs["a"] != devs["b"], devs
    assert devs["a"] != {str(os.stat(dd).st_dev) for dd in dirs} - {""}
    top = {}  # mount point -> (fstype, options) of the mount on top
    for line in out(d, "a", "cat /proc/self/mountinfo").splitlines():
        fields, _, after = line.partition(" - ")
        top[fields.split()[4]] = (after.split()[0], set(fields.split()[5].split(",")))
    for dd in dirs:
        assert top[dd][0] == "tmpfs" and {"nosuid", "nodev"} <= top[dd][1], (dd, top[dd])
    # each shows only itself: nothing of the others, nor the file system's root
    assert out(d, "a", "ls -A /var/tmp /dev/shm") == "/dev/shm:\n\n/var/tmp:\n"
    assert out(d, "a", "ls -A /run") == "lock\n"
    assert not {"tmp", "var-tmp", "dev-shm", "run"} & set(out(d, "a", "ls -A /tmp").split())  # the suite's binds


def test_the_prisons_hostname_resolves_inside_it(daemon):
    config = ("prisons:\n"
              "  a:\n    hostname: a.example.test\n    ip4: [127.0.2.1]\n    ip6: ['lo|fd00:2::1']\n" + SLEEP +
              "  b:\n    hostname: b.example.test\n    ip4: [127.0.3.1]\n    hosts: all\n" + SLEEP +
              "  c:\n    ip4: [127.0.4.1]\n    hosts: inherit\n" + SLEEP)
    d = daemon(config)
    for name in ("a.example.test", "a"):  # the short name too
        found = {line.split()[0] for line in out(d, "a", f"getent ahosts {name}").splitlines()}
        assert found == {"127.0.2.1", "fd00:2::1"}, found
    assert out(d, "a", "getent hosts localhost").split()[0] in ("::1", "127.0.0.1")
    assert d.exec("a", "getent", "hosts", "b.example.test").returncode != 0  # own: not the others
    found = {line.split()[0] for line in out(d, "b", "getent ahosts a.example.test").splitlines()}
    assert found == {"127.0.2.1", "fd00:2::1"}  # all: every prison
    assert out(d, "b", "getent hosts b.example.test").split()[0] == "127.0.3.1"
    assert out(d, "c", "cat /etc/hosts") == open("/etc/hosts").read()  # inherit: the host's
    assert d.exec("a", "sh", "-c", "echo x >> /etc/hosts").returncode != 0  # read-only
    # a reload that adds a prison reaches hosts: all at once, without a restart
    pid = service_pid(d, "b")
    d.write_config(config + "  e:\n    hostname: e.example.test\n    ip4: [127.0.5.1]\n" + SLEEP)
    assert d.ctl("reload").returncode == 0
    wait_for(lambda: d.exec("b", "getent", "hosts", "e.example.test").returncode == 0, what="e in b's hosts")
    assert service_pid(d, "b") == pid


def test_runtime_directories_and_mounts(daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)  # root's alone: read-write mounts must be out of host users' reach
    (data / "greeting").write_text("hello\n")
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    runtime_directory: [sshd, postgresql/15-main]\n"
               f"    mounts:\n      - {{source: \"{data}\", target: /run/data, readonly: false}}\n"
               f"      - \"{data}\"\n"
               "    exec: {jail_user: www-data, start: [sleep, '600']}\n")
    assert out(d, "a", "stat -c '%n %U %a' /run/sshd /run/postgresql /run/postgresql/15-main").splitlines() == [
        "/run/sshd www-data 755", "/run/postgresql root 755",
        "/run/postgresql/15-main www-data 755"]
    assert out(d, "a", "cat /run/data/greeting; echo written > /run/data/new") == "hello\n"
    assert (data / "new").read_text() == "written\n"
    assert d.exec("a", "sh", "-c", f"echo x > {data}/ro").returncode != 0  # the read-only one
    # a mount point that exists nowhere is refused, and the prison is not half made
    bad = daemon("prisons:\n  z:\n    ip4: [127.0.6.1]\n    mounts: [{source: /usr, target: /nowhere/usr}]\n" + SLEEP)
    z = bad.show("z")
    assert z["state"] == "failed" and "no such mount point on the host: /nowhere/usr" in z["reason"]
    assert not os.path.exists("/nowhere")


def test_a_runtime_directory_is_always_new(daemon, tmp_path):
    """A runtime directory is made for the prison's user, never given to it: not a mount point
    (before, the host directory mounted there became www-data's, and stayed so)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    runtime_directory: [data]\n"
               f"    mounts: [{{source: \"{data}\", target: /run/data, readonly: false}}]\n"
               "    exec: {jail_user: www-data, start: [sleep, '600']}\n")
    a = d.show("a")
    assert a["state"] == "failed" and "already there" in a["reason"], a.get("reason")
    assert os.stat(data).st_uid == 0


def test_isolate_false_shares_the_hosts_processes_and_directories(daemon, tmp_path):
    d = daemon("prisons:\n  a:\n    ip4: [127.0.2.1]\n    isolate: false\n" + SLEEP)
    mark = tmp_path / "seen"
    mark.write_text("host\n")
    assert out(d, "a", f"cat {mark}") == "host\n"
    assert d.exec("a", "test", "-d", f"/proc/{d.proc.pid}").returncode == 0  # seen (Landlock keeps signals out)
    assert out(d, "a", "cat /etc/hosts") == open("/etc/hosts").read()
