"""A customer lives in a `prisonctl mkroot --debian` root: apt installs nginx and openssh-server
inside a confined prison (enforce: kernel), nginx serves on the prison's addresses, sshd -t passes
and sshd answers.

The prison never reaches the mirror: the host downloads what apt will want (the packages and
their dependencies, as resolved against the root's own dpkg status, recommends included: what
`apt-get install -y` installs) into a cache of this test's own, indexes it with
dpkg-scanpackages, and the prison gets it read-only at /srv/repo through its `mounts:`, with
`deb [trusted=yes] file:/srv/repo ./` as its only apt source.  Only the host fetches from the
mirror, in the network namespace the suite started in (tests/conftest.py keeps it).

Both caches survive between runs on this machine: the Debian root in /var/cache/prisond/roots
(mkroot's own), the packages in CACHE (keyed by the root's dpkg status and the packages).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from support.daemon import prisonctl_cmd, wait_for
from system.container import host_net

CACHE = os.environ.get("PRISOND_DEBROOT_TEST_CACHE", "/var/cache/prisond/test-debroot")
PACKAGES = ["nginx", "openssh-server"]
IP4, IP6 = "127.0.7.1", "fd00::7:1"
TIMES: dict[str, float] = {}
TIMES_OUT: list[str] = []  # what mkroot printed


def run(argv, timeout=900, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{argv} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def tools():
    for tool, package in (("debootstrap", "debootstrap"), ("dpkg-scanpackages", "dpkg-dev"),
                          ("nsenter", "util-linux"), ("unshare", "util-linux")):
        assert shutil.which(tool), f"{tool} is missing: apt-get install {package} (scripts/setup does)"


@pytest.fixture(scope="module")
def debian_root(tools, tmp_path_factory):
    base = tmp_path_factory.mktemp("debroots")
    os.chmod(base, 0o700)
    root = str(base / "root")
    t = time.monotonic()
    r = run(host_net(prisonctl_cmd() + ["mkroot", "--debian", root]), timeout=1800)
    TIMES["mkroot"] = time.monotonic() - t
    TIMES_OUT[:] = [r.stdout]
    print(r.stdout)
    return root


def repo(root: str) -> str:
    """The local repository of what apt in `root` wants for PACKAGES: made once, cached."""
    with open(os.path.join(root, "var/lib/dpkg/status"), "rb") as fh:
        key = hashlib.sha256(fh.read() + " ".join(PACKAGES).encode()).hexdigest()[:12]
    path = os.path.join(CACHE, f"repo-{key}")
    if os.path.isfile(os.path.join(path, "Packages")):
        return path
    os.makedirs(CACHE, mode=0o700, exist_ok=True)
    for old in os.listdir(CACHE):
        shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)  # other roots' and dead runs'
    tmp = os.path.join(CACHE, f".build-{key}-{os.getpid()}")
    scratch = os.path.join(CACHE, f".scratch-{os.getpid()}")
    os.makedirs(tmp)
    try:
        run(["cp", "-a", "--reflink=auto", root, scratch])
        # apt of the root itself, chrooted (on the host's network: only the host reaches the
        # mirror), downloads into tmp what `apt-get install -y PACKAGES` will want
        script = (f'mount --bind "$1" "$2/var/cache/apt/archives" && mount --rbind /dev "$2/dev" && '
                  f'exec chroot "$2" sh -c '
                  f'"apt-get update -qq && apt-get install -y -qq --download-only {" ".join(PACKAGES)}"')
        run(host_net(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", tmp, scratch]))
        index = run(["dpkg-scanpackages", "--multiversion", "."], cwd=tmp).stdout
        shutil.rmtree(os.path.join(tmp, "partial"), ignore_errors=True)
        for name in os.listdir(tmp):
            if not name.endswith(".deb"):
                os.unlink(os.path.join(tmp, name))
        with open(os.path.join(tmp, "Packages"), "w") as fh:
            fh.write(index)
        os.chmod(tmp, 0o755)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def config(root: str, repo_dir: str, start: str) -> str:
    return (f"prisons:\n  deb:\n    hostname: deb.example.test\n    enforce: kernel\n"
            f"    ip4: [{IP4}]\n    ip6: [\"lo|{IP6}\"]\n    path: {root}\n"
            f"    mounts: [{{source: {repo_dir}, target: /srv/repo}}]\n"
            f"    runtime_directory: [sshd]\n"  # sshd's privilege separation directory, as systemd makes it
            f"    exec:\n      start: {start}\n")


def get(host: str) -> tuple[int, str]:
    c = http.client.HTTPConnection(f"{host}:80", timeout=5)  # [v6]:80 parsed
    try:
        c.request("GET", "/")
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def banner(host: str, port: int) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            return s.recv(64)
    except OSError:
        return b""


def serves(host: str) -> bool:
    try:
        return get(host)[0] == 200
    except OSError:
        return False


def test_apt_installs_nginx_and_openssh_server_in_a_debian_root(daemon, debian_root):
    root = debian_root
    t = time.monotonic()
    repo_dir = repo(root)
    TIMES["repo"] = time.monotonic() - t
    # what mkroot made: a root of root's, policy-rc.d refusing service starts, no hostname
    st = os.stat(os.path.join(root, "usr/sbin/policy-rc.d"))
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o755)
    assert not os.path.lexists(os.path.join(root, "etc/hostname"))
    assert os.listdir(os.path.join(root, "dev")) == []
    with open(os.path.join(root, "etc/shadow")) as fh:  # Debian's own accounts, no password: not the host's
        assert [ln.split(":")[1] for ln in fh if ln.startswith("root:")] == ["*"]
    assert not os.path.exists(os.path.join(root, "etc/ssh"))  # no host keys: none before openssh-server
    cached = re.search(r"(?:cached in|from the cache) (/\S+?)[,;]", TIMES_OUT[0]).group(1)
    assert cached.startswith("/var/cache/prisond/roots/bookworm-")
    mine, theirs = os.stat(os.path.join(root, "usr/bin/apt")), os.stat(os.path.join(cached, "usr/bin/apt"))
    assert mine.st_ino != theirs.st_ino and mine.st_nlink == 1  # a copy, not a hard link to the cache
    # apt inside sees only the local repository (the prison never reaches the mirror)
    with open(os.path.join(root, "etc/apt/sources.list"), "w") as fh:
        fh.write("# the Debian mirror is out of this prison's reach: see sources.list.d/local.list\n")
    with open(os.path.join(root, "etc/apt/sources.list.d/local.list"), "w") as fh:
        fh.write("deb [trusted=yes] file:/srv/repo ./\n")
    d = daemon(config(root, repo_dir, "sleep infinity"))
    t = time.monotonic()
    r = d.exec("deb", "sh", "-c", "export DEBIAN_FRONTEND=noninteractive; apt-get update && "
               f"apt-get install -y {' '.join(PACKAGES)}", timeout=900)
    TIMES["apt-get install"] = time.monotonic() - t
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out[-6000:]
    for package in PACKAGES + ["nginx-common", "openssh-sftp-server"]:
        q = d.exec("deb", "dpkg-query", "-W", "-f=${Status}", package)
        assert q.stdout == b"install ok installed", (package, q.stdout, q.stderr)
    assert os.path.isfile(os.path.join(root, "etc/ssh/ssh_host_ed25519_key"))  # made by its postinst, inside
    assert b"www-data" in d.exec("deb", "id", "www-data").stdout
    r = d.exec("deb", "/usr/sbin/sshd", "-t")
    assert r.returncode == 0, r.stderr
    # sshd started by hand answers on the prison's address (it forks into the background: its
    # output goes to /dev/null, or exec would wait for the pipe it holds)
    r = d.exec("deb", "sh", "-c", "/usr/sbin/sshd -p 2222 </dev/null >/dev/null 2>&1", timeout=20)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: banner(IP4, 2222).startswith(b"SSH-2.0-OpenSSH"), timeout=15, what="sshd's banner")
    # nginx as the prison's service: Debian's default site, on both of its addresses
    d.write_config(config(root, repo_dir, "nginx -g 'daemon off;'"))
    r = d.ctl("reload")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: serves(IP4), timeout=30, what="nginx in the Debian prison on 127.0.7.1")
    status, body = get(IP4)
    assert status == 200 and "Welcome to nginx!" in body
    status, body = get(f"[{IP6}]")
    assert status == 200 and "Welcome to nginx!" in body
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMES.items()))
    assert d.stop() == 0
