"""Stock Debian 12 services, several per host, each with its own Debian configuration files
untouched: nginx (the default site), apache2, openssh-server, redis-server and PostgreSQL, two
prisons of each at once (isolated, the default), plus one confined prison on a
`prisonctl mkroot --debian` root with nginx and openssh-server installed inside by apt.  The
prisons' configuration is the only file written (and, for the logins, an authorized key in a
directory the prisons mount at /root; the PostgreSQL prisons get a copy each of Debian's
cluster, as two hosts would each have their own).  Each is checked from outside with the
service's own client, its source address seen on the wire.

The packages come from scripts/setup (APT_PACKAGES), installed with Debian's policy-rc.d in
place so that nothing starts them on the host.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from support.daemon import Daemon, wait_for
from support.wire import Wire

# IPv4-only prisons (www1 also has an IPv6 address: Debian's `listen [::]:80` in both kinds)
A = {"www1": "127.0.21.1", "www2": "127.0.22.1", "ap1": "127.0.23.1", "ap2": "127.0.24.1",
     "ssh1": "127.0.25.1", "ssh2": "127.0.26.1", "red1": "127.0.27.1", "red2": "127.0.28.1",
     "pg1": "127.0.29.1", "pg2": "127.0.30.1", "deb": "127.0.31.1"}
WWW1_V6 = "fd00:21::1"
PG = "/usr/lib/postgresql/15/bin/postgres"
PG_CONF = "/etc/postgresql/15/main/postgresql.conf"
PG_DATA = "/var/lib/postgresql/15/main"


def run(argv, timeout=120, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, f"{argv}: {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """An ssh key, and a /root for the prisons that holds only its public half."""
    base = tmp_path_factory.mktemp("ssh")
    os.chmod(base, 0o700)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key")])
    home = base / "root"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(base / "key.pub", home / ".ssh" / "authorized_keys")
    os.chmod(home, 0o700)
    return base


@pytest.fixture(scope="module")
def pg_clusters(tmp_path_factory):
    """A copy of Debian's own cluster (made by the postgresql package) for each prison."""
    assert os.path.isdir(PG_DATA), "postgresql's cluster 15/main is missing (scripts/setup installs it)"
    base = tmp_path_factory.mktemp("pg")
    os.chmod(base, 0o700)
    for n in ("pg1", "pg2"):
        run(["cp", "-a", PG_DATA, str(base / n)])
        for stale in ("postmaster.pid",):
            try:
                os.unlink(base / n / stale)
            except FileNotFoundError:
                pass
    return base


@pytest.fixture(scope="module")
def redis_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("redis")
    os.chmod(base, 0o700)
    for n in ("red1", "red2"):
        (base / n).mkdir()
        shutil.chown(base / n, "redis", "redis")
    return base


@pytest.fixture(scope="module")
def deb_root(tmp_path_factory, keys):
    """A Debian root with nginx and openssh-server installed by apt inside a prison (the
    packages from a local repository: tests/system/test_debian_root.py's, cached)."""
    from system.test_debian_root import repo
    from system.container import host_net
    from support.daemon import prisonctl_cmd
    base = tmp_path_factory.mktemp("deb")
    os.chmod(base, 0o700)
    root = str(base / "root")
    run(host_net(prisonctl_cmd() + ["mkroot", "--debian", root]), timeout=1800)
    repo_dir = repo(root)
    with open(os.path.join(root, "etc/apt/sources.list"), "w") as fh:
        fh.write("deb [trusted=yes] file:/srv/repo ./\n")
    d = Daemon(str(base / "installer"), f"prisons:\n  deb:\n    ip4: [{A['deb']}]\n    path: {root}\n"
               f"    mounts: [{{source: {repo_dir}, target: /srv/repo}}]\n"
               "    exec: {start: [sleep, infinity]}\n").start()
    try:
        r = d.exec("deb", "sh", "-c", "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                   "apt-get install -y -qq nginx openssh-server", timeout=900)
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    finally:
        assert d.stop() == 0
        d.remove_cgroups()
    ssh = os.path.join(root, "root/.ssh")
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    shutil.copy(keys / "key.pub", os.path.join(ssh, "authorized_keys"))
    return root


def config(keys, pg_clusters, redis_dirs, deb_root) -> str:
    def prison(name, body, ip6=None):
        addrs = f"    ip4: [{A[name]}]\n" + (f"    ip6: ['lo|{ip6}']\n" if ip6 else "")
        return f"  {name}:\n    hostname: {name}.example.test\n" + addrs + body
    nginx = ("    exec:\n      start: [nginx, -g, 'daemon off;']\n      stop: [nginx, -s, quit]\n")
    apache = "    exec:\n      start: [apache2ctl, -D, FOREGROUND]\n"
    sshd = (f"    runtime_directory: [sshd]\n    mounts: [{{source: '{keys / 'root'}', target: /root}}]\n"
            "    exec:\n      start: [/usr/sbin/sshd, -D, -e]\n")
    out = "prisons:\n"
    out += prison("www1", nginx, ip6=WWW1_V6) + prison("www2", nginx)
    out += prison("ap1", apache) + prison("ap2", apache)
    out += prison("ssh1", sshd) + prison("ssh2", sshd)
    for n in ("red1", "red2"):
        out += prison(n, "    runtime_directory: [redis]\n"
                      f"    mounts: [{{source: '{redis_dirs / n}', target: /var/lib/redis, readonly: false}}]\n"
                      "    exec:\n      jail_user: redis\n"
                      "      start: [redis-server, /etc/redis/redis.conf, --daemonize, 'no']\n")
    for n in ("pg1", "pg2"):
        out += prison(n, "    runtime_directory: [postgresql]\n"
                      f"    mounts: [{{source: '{pg_clusters / n}', target: {PG_DATA}, readonly: false}}]\n"
                      f"    exec:\n      jail_user: postgres\n      start: [{PG}, -c, 'config_file={PG_CONF}']\n")
    out += prison("deb", f"    path: {deb_root}\n    runtime_directory: [sshd]\n"
                  "    exec:\n      start: \"/usr/sbin/sshd -o UsePAM=no && exec nginx -g 'daemon off;'\"\n")
    return out


@pytest.fixture(scope="module")
def host(tmp_path_factory, keys, pg_clusters, redis_dirs, deb_root):
    d = Daemon(str(tmp_path_factory.mktemp("services")), config(keys, pg_clusters, redis_dirs, deb_root)).start()
    yield d
    try:
        assert d.stop() == 0
    finally:
        d.remove_cgroups()


def listening(d, prison: str, port: int) -> bool:
    return any(s["state"] == "listen" and s["local"].endswith(f":{port}")
               for p in d.show(prison)["processes"] for s in p["sockets"])


def curl(address: str, port: int = 80) -> subprocess.CompletedProcess:
    host = f"[{address}]" if ":" in address else address
    return run(["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host}:{port}/"],
               check=False)


def served_from(wire: Wire, port: int) -> set[str]:
    """The sources of the SYN-ACKs the service's port sent."""
    return {s for s, _, f in wire.tcp_from(port) if f & 0x12 == 0x12}


def ok_states(d, names) -> None:
    for n in names:
        wait_for(lambda: d.show(n)["state"] == "running", 30, f"{n} running")


# ------------------------------------------------------------------ nginx


def test_nginx_default_site_in_two_ipv4_prisons_and_a_dual_stack_one(host):
    d = host
    ok_states(d, ["www1", "www2"])
    for n in ("www1", "www2"):
        wait_for(lambda: listening(d, n, 80), 30, f"nginx in {n}")
    with Wire() as wire:
        assert curl(A["www1"]).stdout == "200" and curl(A["www2"]).stdout == "200"
        assert curl(WWW1_V6).stdout == "200"  # `listen [::]:80` of the default site, in www1
        assert curl("127.0.0.1").returncode != 0  # nothing of theirs on the host's loopback
    assert served_from(wire, 80) == {A["www1"], A["www2"], WWW1_V6}
    # each has its own /run/nginx.pid: stopping www2 (exec.stop: nginx -s quit) leaves www1's nginx
    www1 = d.show("www1")["service"]["pid"]
    assert d.ctl("stop", "www2").returncode == 0
    assert curl(A["www1"]).stdout == "200" and d.show("www1")["service"]["pid"] == www1
    assert curl(A["www2"]).returncode != 0
    assert d.ctl("start", "www2").returncode == 0
    wait_for(lambda: curl(A["www2"]).stdout == "200", 30, "www2 again")


# ------------------------------------------------------------------ apache2


def test_apache2_in_two_prisons(host):
    d = host
    ok_states(d, ["ap1", "ap2"])
    for n in ("ap1", "ap2"):
        wait_for(lambda: curl(A[n]).stdout == "200", 30, f"apache2 in {n}")
    with Wire() as wire:
        for n in ("ap1", "ap2"):
            r = run(["curl", "-sS", "-m", "5", f"http://{A[n]}/"])
            assert "Apache2 Debian Default Page" in r.stdout
    assert served_from(wire, 80) == {A["ap1"], A["ap2"]}
    # its own hostname resolves (no AH00557), and its own apache2 (no "httpd already running")
    for n in ("ap1", "ap2"):
        assert d.exec(n, "apache2ctl", "-t").returncode == 0
        ps = d.exec(n, "ps", "-e", "-o", "comm=").stdout.decode().split()
        assert "apache2" in ps and "nginx" not in ps and "sshd" not in ps
    assert "AH00557" not in d.log()


# ------------------------------------------------------------------ openssh-server


def ssh(keys, address: str, command: str) -> subprocess.CompletedProcess:
    return run(["ssh", "-i", str(keys / "key"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-T",
                f"root@{address}", command], check=False, timeout=30)


def test_sshd_in_two_prisons_lands_a_login_in_its_prison(host, keys):
    d = host
    ok_states(d, ["ssh1", "ssh2"])
    for n in ("ssh1", "ssh2"):
        wait_for(lambda: listening(d, n, 22), 30, f"sshd in {n}")
    with Wire() as wire:
        for n in ("ssh1", "ssh2"):
            r = ssh(keys, A[n], "hostname; ps -e -o comm=; kill -0 1 && echo init-is-mine")
            assert r.returncode == 0, r.stderr
            lines = r.stdout.split()
            assert lines[0] == f"{n}.example.test"
            assert set(lines[1:-1]) <= {"init", "sshd", "bash", "sh", "ps"}, lines  # that prison's only
            assert lines[-1] == "init-is-mine"
    assert served_from(wire, 22) == {A["ssh1"], A["ssh2"]}
    # a login cannot reach the other prison's processes (not there at all)
    other = d.show("ssh2")["service"]["pid"]
    r = ssh(keys, A["ssh1"], f"kill -0 {other}")
    assert r.returncode != 0 and "No such process" in r.stderr


# ------------------------------------------------------------------ redis


def test_redis_in_two_prisons_local_inside_remote_outside(host):
    d = host
    ok_states(d, ["red1", "red2"])
    for n in ("red1", "red2"):
        wait_for(lambda: listening(d, n, 6379), 30, f"redis in {n}")
    with Wire() as wire:
        for n in ("red1", "red2"):
            # its own client, inside, on 127.0.0.1 (Debian's `bind 127.0.0.1 -::1`, protected mode)
            r = d.exec(n, "redis-cli", "set", "who", n)
            assert r.stdout.decode().strip() == "OK", r.stdout + r.stderr
            assert d.exec(n, "redis-cli", "get", "who").stdout.decode().strip() == n
            # from the host, on the prison's address: not local, so protected mode answers DENIED
            out = run(["redis-cli", "-h", A[n], "ping"], check=False).stdout
            assert "DENIED" in out, out
    assert served_from(wire, 6379) == {A["red1"], A["red2"]}  # on the wire: the prisons' addresses


# ------------------------------------------------------------------ PostgreSQL


def test_postgresql_in_two_prisons_with_debians_pg_hba(host):
    d = host
    ok_states(d, ["pg1", "pg2"])
    for n in ("pg1", "pg2"):
        wait_for(lambda: listening(d, n, 5432), 30, f"postgres in {n}")
    with Wire() as wire:
        for n in ("pg1", "pg2"):
            # peer authentication on the unix socket in its own /run/postgresql
            r = d.exec(n, "runuser", "-u", "postgres", "--", "psql", "-Atc", f"alter user postgres password '{n}'")
            assert r.returncode == 0, r.stderr
            # `psql -h localhost` (TCP): pg_hba's `host all all 127.0.0.1/32 scram-sha-256` line
            r = d.exec(n, "env", f"PGPASSWORD={n}", "psql", "-h", "localhost", "-U", "postgres", "-Atc",
                       "select inet_client_addr(), inet_server_addr()")
            assert r.returncode == 0, r.stderr
            assert r.stdout.decode().split() == ["127.0.0.1|127.0.0.1"]
            # from the host, to the prison's address: no pg_hba line for it
            r = run(["psql", "-h", A[n], "-U", "postgres", "-w", "-c", "select 1"], check=False)
            assert r.returncode != 0 and "no pg_hba.conf entry" in r.stderr and A[n] in r.stderr, r.stderr
    assert served_from(wire, 5432) == {A["pg1"], A["pg2"]}


# ------------------------------------------------------------------ a confined Debian root


def test_a_confined_debian_prison_serves_nginx_and_sshd(host, keys):
    d = host
    ok_states(d, ["deb"])
    wait_for(lambda: curl(A["deb"]).stdout == "200", 30, "nginx in deb")
    with Wire() as wire:
        r = ssh(keys, A["deb"], "hostname; ps -e -o comm=; id -u")
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = r.stdout.split()
    assert lines[0] == "deb.example.test" and lines[-1] == "0"
    assert "nginx" in lines and "apache2" not in lines and "redis-server" not in lines
    assert served_from(wire, 22) == {A["deb"]}
