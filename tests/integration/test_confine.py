"""Confined prisons (path:): their own root, /proc, /dev, PID namespace, services, exec, adopt."""
import os
import signal
import socket
import urllib.request

from support.build import OUT
from support.daemon import addresses_on_lo, wait_for
from support.fixtures import confined

MKROOT_TOP = {"bin", "dev", "etc", "home", "lib", "lib64", "opt", "proc", "root", "run", "sbin", "srv", "tmp",
              "usr", "var"}


def inside(path: str) -> str:
    return "/opt/t/" + os.path.basename(path)


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(path)]


def test_own_root_proc_dev_pid_namespace_and_a_service(daemon, confined_root, nettool_static):
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1", extra=(
        "    exec:\n      start: python3 -m http.server --bind 0.0.0.0 8080\n")))
    wait_for(lambda: _serves("http://127.0.2.1:8080/"), what="http.server in the confined prison")
    status, listing = http_get("http://127.0.2.1:8080/")
    assert status == 200 and 'href="etc/"' in listing and 'href="work/"' not in listing  # its root, not ours
    assert set(d.exec("a", "ls", "/").stdout.decode().split()) == MKROOT_TOP
    assert set(d.exec("a", "ls", "/dev").stdout.decode().split()) == {
        "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}
    # /run and /dev/shm: two directories of one private tmpfs (isolate's test says why), writable,
    # each showing only itself
    r = d.exec("a", "sh", "-c", "stat -c %d /run /dev/shm; touch /dev/shm/x /run/x; ls -A /dev/shm /run")
    devs, listing = r.stdout.decode().split("\n", 2)[:2], r.stdout.decode().split("\n", 2)[2]
    assert r.returncode == 0 and devs[0] == devs[1] and listing == "/dev/shm:\nx\n\n/run:\nlock\nx\n", r
    # ps inside: the prison's processes only, init as PID 1; none of the host's
    ps = d.exec("a", "ps", "-e", "-o", "pid=,comm=").stdout.decode().split("\n")
    procs = {tuple(line.split(None, 1)) for line in ps if line.strip()}
    assert ("1", "init") in procs
    assert sorted(c for _, c in procs) == ["init", "ps", "python3", "sh"]
    # the kernel's hostname, for a static binary too
    assert d.exec("a", inside(nettool_static), "hostname").stdout == \
        b"gethostname=a.example.test uname=a.example.test\n"
    # /usr is the host's, read-only
    r = d.exec("a", "touch", "/usr/prisond-test")
    assert r.returncode == 1 and b"Read-only file system" in r.stderr
    assert not os.path.exists("/usr/prisond-test")
    info = d.show("a")
    assert info["path"] == confined_root and info["init_pid"] in {p["pid"] for p in info["processes"]}
    text = d.ctl("show", "a").stdout.decode()
    assert f"  path         {confined_root} (confined; init pid {info['init_pid']})\n" in text
    assert f"  mounts       /usr->/usr, {OUT}->/opt/t\n" in text
    assert d.stop() == 0
    assert mounts_under(confined_root) == []


def _serves(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def test_proc_status_names_the_prison_and_hides_the_others(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1") +
               "  b:\n    hostname: b.example.test\n    ip4: [127.0.3.1]\n    exec: {start: sleep 600}\n")
    out = d.exec("a", "sh", "-c", "tail -n 3 /proc/self/status; tail -n 3 /proc/1/status").stdout.decode()
    lines = ["Prison:\ta", f"JID:\t{d.show('a')['jid']}", "Hostname:\ta.example.test"]
    assert out.splitlines() == lines * 2
    py = d.exec("a", "python3", "-c", "print(open('/proc/self/status').read().splitlines()[-1])")
    assert py.stdout == b"Hostname:\ta.example.test\n"
    # b is not confined: its shim shows its own lines, and a's processes do not exist for it
    b_lines = d.exec("b", "sh", "-c", "tail -n 3 /proc/self/status").stdout.decode().splitlines()
    assert b_lines[0] == "Prison:\tb"
    a_init = d.show("a")["init_pid"]
    r = d.exec("b", "cat", f"/proc/{a_init}/status")
    assert r.returncode == 1 and b"No such file or directory" in r.stderr
    assert os.path.exists(f"/proc/{a_init}/status")  # it exists: b is not told


def test_nginx_from_debian_serves_on_its_address_only(daemon, confined_root, tmp_path):
    """nginx's configuration is the host's /etc/nginx mounted read-only: mkroot copies no
    service's configuration into a root, the operator mounts what a prison needs."""
    assert not os.path.exists(os.path.join(confined_root, "etc", "nginx", "mime.types"))
    conf = os.path.join(confined_root, "etc", "nginx-prisond-test.conf")
    with open(conf, "w") as fh:
        fh.write("""user www-data;
worker_processes 2;
pid /tmp/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path /tmp/nginx-body; proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fcgi; uwsgi_temp_path /tmp/nginx-uwsgi; scgi_temp_path /tmp/nginx-scgi;
    server { listen 80; location / { return 200 "confined nginx\\n"; } }
}
""")
    d = daemon("prisons:\n" + confined(confined_root, "web", "127.0.2.1", extra=(
        "    exec:\n      start: nginx -c /etc/nginx-prisond-test.conf -g 'daemon off;'\n"),
        mounts=", {source: /etc/nginx, target: /etc/nginx}"))
    wait_for(lambda: _serves("http://127.0.2.1/"), what="nginx in the confined prison")
    assert http_get("http://127.0.2.1/") == (200, "confined nginx\n")
    r = d.exec("web", "touch", "/etc/nginx/prisond-test")
    assert r.returncode == 1 and b"Read-only file system" in r.stderr
    for foreign in ("127.0.0.1", "127.0.0.2"):
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((foreign, 80)) != 0
    users = {p["user"] for p in d.show("web")["processes"] if "nginx" in p["command"]}
    assert users == {"root", "www-data"}  # the master as the jailed root, the workers as its user
    assert d.stop() == 0


def test_exec_as_a_user_in_a_clean_environment_and_the_default_shell(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1"))
    r = d.ctl("exec", "-u", "nobody", "a", "id")
    assert r.stdout == b"uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
    r = d.ctl("exec", "-l", "a", "sh", "-c", "echo $HOME $USER $(pwd); env | sort | cut -d= -f1 | tr '\\n' ' '",
              env=dict(os.environ, SECRET_HOST_VAR="x"))
    home, rest = r.stdout.decode().split("\n", 1)
    assert home == "/root root /root"
    assert "SECRET_HOST_VAR" not in rest
    r = d.ctl("exec", "a", input=b"echo shell=$0; exit 3\n")
    assert r.returncode == 3 and r.stdout == b"shell=/bin/bash\n"  # root's shell in the prison's passwd
    r = d.ctl("exec", "-u", "nosuchuser", "a", "id")
    assert r.returncode == 1 and b"no user nosuchuser in the prison" in r.stderr
    r = d.exec("a", "no-such-program")
    assert r.returncode == 127 and b"command not found" in r.stderr
    r = d.exec("a", "sh", "-c", "kill -TERM $$")
    assert r.returncode == -signal.SIGTERM


def test_a_service_as_jail_user(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1", extra=(
        "    exec:\n      jail_user: www-data\n      start: sleep 600\n")))
    wait_for(lambda: any(p["command"] == "sleep 600" for p in d.show("a")["processes"]), what="service")
    sleeper = next(p for p in d.show("a")["processes"] if p["command"] == "sleep 600")
    assert sleeper["user"] == "www-data"


def test_kill9_daemon_adopts_a_confined_prison(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1", extra=(
        "    exec:\n      start: python3 -m http.server --bind 0.0.0.0 8080\n")))
    wait_for(lambda: _serves("http://127.0.2.1:8080/"), what="service")
    before = d.show("a")
    d.kill9()
    assert _serves("http://127.0.2.1:8080/")  # nothing happened to the prison
    d.start()
    after = d.show("a")
    assert (after["jid"], after["init_pid"], after["state"]) == (before["jid"], before["init_pid"], "running")
    assert {p["pid"] for p in after["processes"]} == {p["pid"] for p in before["processes"]}
    assert d.exec("a", "hostname").stdout == b"a.example.test\n"
    assert d.stop() == 0
    assert mounts_under(confined_root) == [] and "127.0.2.1" not in addresses_on_lo()


def test_failed_confinement_is_reported_and_leaves_nothing(daemon, confined_root, tmp_path):
    os.symlink("/etc", os.path.join(confined_root, "evil"))
    src = tmp_path / "src"  # not tmp_path itself: the daemon's runtime directory lies there
    src.mkdir()
    try:
        d = daemon("prisons:\n"
                   "  nopath: {ip4: [127.0.2.1], path: /nonexistent/root}\n"
                   f"  nosrc: {{ip4: [127.0.3.1], path: {confined_root}, mounts: [/nonexistent/src]}}\n"
                   f"  planted: {{ip4: [127.0.4.1], path: {confined_root}, mounts: [{{source: {src}, "
                   "target: /evil/x}]}\n"
                   + confined(confined_root, "ok", "127.0.5.1"))
        reasons = {n: d.show(n)["reason"] for n in ("nopath", "nosrc", "planted")}
        assert reasons["nopath"] == "path /nonexistent/root: not a directory"
        assert reasons["nosrc"] == "cannot confine the prison: cannot bind /nonexistent/src: No such file or directory"
        assert reasons["planted"].startswith("cannot confine the prison: cannot make mount point /evil/x")
        assert not os.path.exists("/etc/x")  # the planted symlink led nowhere
        assert d.show("ok")["state"] == "running"
        assert sorted(e.name for e in os.scandir(d.cgroup_dir()) if e.is_dir()) == ["ok"]
        assert {"127.0.2.1", "127.0.3.1", "127.0.4.1"}.isdisjoint(addresses_on_lo())
        assert mounts_under(confined_root) == []  # a prison's mounts are in its own namespace only
        assert d.stop() == 0
        assert mounts_under(confined_root) == []
    finally:
        os.unlink(os.path.join(confined_root, "evil"))


def test_a_jailed_root_is_refused_the_control_socket(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1") +
               "  b:\n    ip4: [127.0.3.1]\n    exec: {start: sleep 600}\n"
               "  c:\n    ip4: [127.0.4.1]\n    isolate: false\n    exec: {start: sleep 600}\n")
    # the socket its shim is told of (PRISOND_POLICY's s=): what a prison can reach
    script = ("import json, os, socket, sys\n"
              "path = sys.argv[1] if len(sys.argv) > 1 else dict(p.split('=', 1) for p in "
              "os.environ['PRISOND_POLICY'].split(';')[1:])['s']\n"
              "s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile('rwb')\n"
              "for m, p in (('prison.stop', {'name': 'b'}), ('prison.list', {}), ('prison.show', {'name': 'b'}),"
              " ('daemon.health', {})):\n"
              "    f.write(json.dumps({'v': 1, 'id': 1, 'method': m, 'params': p}).encode() + b'\\n'); f.flush()\n"
              "    r = json.loads(f.readline()); print(m, r['ok'], r.get('error', {}).get('code'))\n")
    refused = ["prison.stop False permission_denied", "prison.list False permission_denied",
               "prison.show False permission_denied", "daemon.health True None"]
    for prison in ("a", "b", "c"):
        out = d.exec(prison, "python3", "-c", script).stdout.decode().splitlines()
        assert out == refused
    # the operators' socket is not in a confined or isolated prison at all (private /run, /tmp);
    # one that shares the host's directories (isolate: false) is refused there too
    for prison in ("a", "b"):
        r = d.exec(prison, "python3", "-c", script, d.socket)
        assert r.returncode != 0 and b"No such file or directory" in r.stderr
    assert d.exec("c", "python3", "-c", script, d.socket).stdout.decode().splitlines() == refused
    assert d.show("b")["state"] == "running"


def test_the_example_configuration_runs_all_three_prisons(daemon, tmp_path):
    """config/example.yaml as scripts/demo runs it (its confined root made by prisonctl mkroot)."""
    from support.daemon import prisonctl_cmd
    import subprocess
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "config", "example.yaml")) as fh:
        text = fh.read()
    os.chmod(tmp_path, 0o700)
    root = str(tmp_path / "shop")
    subprocess.run(prisonctl_cmd() + ["mkroot", root], check=True, capture_output=True)
    with open(os.path.join(root, "srv", "index.html"), "w") as fh:
        fh.write("shop\n")
    d = daemon(text.replace("/var/lib/prisond/roots/shop", root))
    for ip in ("127.0.2.1", "127.0.3.1", "127.0.4.1"):
        wait_for(lambda: _serves(f"http://{ip}:8080/"), what=f"the server on {ip}")
    assert http_get("http://127.0.4.1:8080/") == (200, "shop\n")
    assert d.exec("shop", "hostname").stdout == b"shop.example.test\n"
    assert d.exec("shop", "sh", "-c", "ulimit -n").stdout == b"1024\n"
    assert d.show("shop")["limits"] == {"memory": 256 << 20, "pids": 100, "cpu": 0.5, "nofile": 1024}
    assert d.stop() == 0


FAST_CTL = "/usr/local/bin/prisonctl"  # scripts/setup installs prisonjail there (C exec path)


def fast(d, *args, **kw):
    import subprocess
    return subprocess.run([FAST_CTL, "--socket", d.socket, *map(str, args)], capture_output=True, timeout=60, **kw)


def test_the_c_prisonctl_execs_as_the_python_one_does(daemon, confined_root):
    with open(FAST_CTL, "rb") as fh:
        assert fh.read(4) == b"\x7fELF"  # the C front end, not the Python launcher
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1", extra="    exec: {env: {MODE: prod}}\n")
               + "  b:\n    hostname: b.example.test\n    ip4: [127.0.3.1]\n")
    r = fast(d, "exec", "a", "--", "sh", "-c", "hostname; echo $MODE; ps -e -o comm= | sort | tr '\\n' ' '; exit 5")
    name, mode, seen = r.stdout.split(b"\n")
    # the prison's processes alone: its init and the pipeline (a stage ps catches between its
    # fork and its exec still says sh, as ci51 saw once)
    assert r.returncode == 5 and (name, mode) == (b"a.example.test", b"prod")
    assert {b"init", b"ps"} <= set(seen.split()) <= {b"init", b"ps", b"sh", b"sort", b"tr"}, seen
    assert fast(d, "exec", "a", input=b"echo shell=$0\n").stdout == b"shell=/bin/bash\n"
    assert fast(d, "exec", "-u", "nobody", "a", "id", "-u").stdout == b"65534\n"
    r = fast(d, "exec", "-l", "a", "sh", "-c", "echo $HOME $(pwd); env | grep -c SECRET_HOST_VAR",
             env=dict(os.environ, SECRET_HOST_VAR="x"))
    assert r.stdout == b"/root /root\n0\n"
    r = fast(d, "exec", "a", "sh", "-c", "kill -KILL $$")
    assert r.returncode == -signal.SIGKILL
    r = fast(d, "exec", "a", "no-such-program")
    assert r.returncode == 127 and r.stderr == b"prisonctl: exec: no-such-program: command not found\n"
    # an unconfined prison: its namespaces and shim, from C as well
    assert fast(d, "exec", "b", "sh", "-c", "hostname; cat /proc/sys/kernel/hostname").stdout == \
        b"b.example.test\nb.example.test\n"
    # what C does not handle goes to the Python prisonctl, with its messages and exit codes
    assert fast(d, "exec", "-u", "nobody", "b", "id", "-u").stdout == b"65534\n"
    r = fast(d, "exec", "nosuch", "true")
    assert (r.returncode, r.stderr) == (1, b"prisonctl: no such prison: nosuch\n")
    r = fast(d, "exec", 'bad"name', "true")
    assert r.returncode == 1 and b"no such prison" in r.stderr
    assert fast(d, "list").stdout.split(b"\n")[0].split() == [b"JID", b"NAME", b"HOSTNAME", b"IP", b"STATE", b"PROCS", b"CPU", b"MEM"]
    d.stop()
    r = fast(d, "exec", "a", "true")  # no daemon: the Python prisonctl says so
    assert r.returncode == 69 and b"Traceback" not in r.stderr


def test_a_read_write_mount_and_a_read_only_one(daemon, confined_root, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "seen").write_text("from the host\n")
    d = daemon("prisons:\n" + confined(confined_root, "a", "127.0.2.1", mounts=(
        f", {{source: {rw}, target: /data, readonly: false}}, {{source: {ro}, target: /srv/ro}}")))
    r = d.exec("a", "sh", "-c", "echo written > /data/out && cat /srv/ro/seen && touch /srv/ro/x")
    assert r.stdout == b"from the host\n" and b"Read-only file system" in r.stderr
    assert (rw / "out").read_text() == "written\n" and not (ro / "x").exists()
