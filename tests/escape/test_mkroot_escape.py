"""A prison's root attacks the host through `prisonctl mkroot --force` run on its root later.

The root of a confined prison owns everything inside its root directory.  It plants symlinks
(and other file types) where mkroot writes, aimed at a host file or directory, and waits for the
host's root to refresh the root with `mkroot --force`: the host file and directory must come out
unchanged, and the planted entry replaced inside the root.  A root in use (a process with its
root or current directory in it, a mount inside it) is refused with the pid or the mount named;
and no root gets the host's secrets or services' configuration.

The plants are made directly from the host, as the prison's root would make them from inside
(the link texts are host paths: it is the host's mkroot that would resolve them).
"""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support.daemon import prisonctl_cmd

HOST_TEXT = "host file: mkroot must not change it\n"


def mkroot(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(prisonctl_cmd() + ["mkroot", *map(str, args)], capture_output=True, timeout=timeout)


def snapshot(top) -> dict:
    """Every entry under `top` (itself included): its type and mode, a file's content."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):  # links are not followed
        for name in [""] + dirnames + filenames:  # "": the directory itself
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            content = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None
            state[os.path.relpath(p, top)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, content)
    return state


def one_line_error(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("prisonctl: mkroot: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def site(tmp_path):
    """(root made by mkroot, a host directory holding a host file); the base is 0700 as advised."""
    base = tmp_path / "roots"
    base.mkdir(mode=0o700)
    root = base / "r"
    r = mkroot(root)
    assert r.returncode == 0, r.stderr
    host = tmp_path / "host"
    host.mkdir()
    os.chmod(host, 0o755)
    (host / "file").write_text(HOST_TEXT)
    os.chmod(host / "file", 0o600)
    return root, host


def plant(root, rel: str, what: str, host, relative: bool = False) -> None:
    """What the prison's root does from inside: replace root/rel with a link to the host (or a fifo)."""
    p = root / rel
    if p.is_dir() and not p.is_symlink():
        subprocess.run(["rm", "-rf", str(p)], check=True)
    elif os.path.lexists(p):
        p.unlink()
    if what == "fifo":
        os.mkfifo(p)
        return
    target = str(host / "file") if what == "file" else str(host)
    os.symlink(os.path.relpath(target, p.parent) if relative else target, p)


# rel path in the root: what mkroot makes there, what the plant points at
PLANTS = {
    "etc/passwd": ("file", "file"),            # written from the host's accounts
    "etc/group": ("file", "file"),
    "etc/hosts": ("file", "file"),             # copied from the host
    "etc/ld.so.cache": ("file", "file"),
    "etc/ssl/certs/ca-certificates.crt": ("file", "file"),   # inside a copied tree
    "tmp": ("dir", "dir"),                     # chmod 1777
    "root": ("dir", "dir"),                    # chmod 0700
    "var": ("dir", "dir"),                     # var/tmp, var/log... made under it
    "etc": ("dir", "dir"),                     # passwd, group... written under it
    "etc/ssl": ("dir", "dir"),                 # a copied tree's parent
    "etc/alternatives": ("dir", "dir"),        # a copied tree
}


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
@pytest.mark.parametrize("rel", list(PLANTS))
def test_a_planted_symlink_is_not_followed(site, rel, relative):
    root, host = site
    wants, aims = PLANTS[rel]
    plant(root, rel, aims, host, relative=relative)
    before = snapshot(host)
    r = mkroot("--force", root)
    assert snapshot(host) == before, f"mkroot wrote through {rel} -> host: {r.stderr.decode()}"
    assert r.returncode == 0, r.stderr
    st = os.lstat(root / rel)  # the plant is replaced by what mkroot makes there
    assert (stat.S_ISDIR(st.st_mode) if wants == "dir" else stat.S_ISREG(st.st_mode)), stat.filemode(st.st_mode)
    if rel == "tmp":
        assert stat.S_IMODE(st.st_mode) == 0o1777
    if rel == "etc/passwd":
        assert (root / rel).read_text().startswith("root:x:0:0:")


def test_a_planted_fifo_does_not_hang_mkroot(site):
    root, host = site
    plant(root, "etc/passwd", "fifo", host)
    r = mkroot("--force", root, timeout=20)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISREG(os.lstat(root / "etc/passwd").st_mode)


def test_the_root_directory_itself_must_not_be_a_symlink(site, tmp_path):
    _, host = site
    link = tmp_path / "roots" / "link"
    os.symlink(host, link)
    before = snapshot(host)
    err = one_line_error(mkroot("--force", link))
    assert str(link) in err and "symlink" in err
    assert snapshot(host) == before


def _untouched(root, host, before) -> None:
    """A refused mkroot changed nothing: the plant is still there, the host file too."""
    assert os.path.islink(root / "etc" / "passwd")
    assert snapshot(host) == before


def test_a_root_with_a_chrooted_process_is_refused(site):
    root, host = site
    plant(root, "etc/passwd", "file", host)
    before = snapshot(host)
    code = "import os, sys, time; os.chroot(sys.argv[1]); os.chdir('/'); print('in', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"in\n"
        for args in (("--force",), ()):
            err = one_line_error(mkroot(*args, root))
            assert f"pid {p.pid}" in err and "in use" in err
        _untouched(root, host, before)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def test_a_root_with_a_process_working_in_it_is_refused(site):
    root, host = site
    plant(root, "etc/passwd", "file", host)
    before = snapshot(host)
    p = subprocess.Popen(["sleep", "60"], cwd=root / "srv")
    try:
        err = one_line_error(mkroot("--force", root))
        assert f"pid {p.pid}" in err
        _untouched(root, host, before)
    finally:
        p.kill()
        p.wait()


def test_a_root_with_a_mount_inside_is_refused(site):
    """The mount is made in a mount namespace of its own, which vanishes with the command."""
    root, host = site
    plant(root, "etc/passwd", "file", host)
    before = snapshot(host)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs prisond-test "$1/srv" && shift && exec "$@"', "sh", str(root),
                        *prisonctl_cmd(), "mkroot", "--force", str(root)], capture_output=True, timeout=60)
    err = one_line_error(r)
    assert f"{root}/srv" in err and "mount" in err
    _untouched(root, host, before)


def test_a_root_a_confined_prison_runs_in_is_refused(daemon, site):
    root, host = site
    d = daemon(f"prisons:\n  a:\n    ip4: [127.0.2.1]\n    path: {root}\n    mounts: [/usr]\n"
               "    exec: {start: sleep 600}\n")
    init = d.show("a")["init_pid"]
    err = one_line_error(mkroot("--force", root))
    # the prison's processes are found by the identity of their root directory: readlink of
    # /proc/PID/root reads "/" for them (the top of their own mount namespace), not DIR
    assert f"is in use: pid {init} (init) has its root directory in it" in err, err
    assert d.stop() == 0
    assert mkroot("--force", root).returncode == 0  # stopped: no longer in use


SECRETS = ("etc/ssl/private", "etc/nginx", "etc/shadow", "etc/gshadow", "etc/ssh", "etc/sudoers",
           "etc/prisond")


def test_no_host_secret_or_service_configuration_is_copied(site):
    root, _ = site
    for rel in SECRETS:
        assert not os.path.lexists(root / rel), rel
    assert (root / "etc/ssl/certs").is_dir() and (root / "etc/ssl/openssl.cnf").is_file()
    assert os.path.lexists(root / "etc/ssl/certs/ca-certificates.crt")


# ------------------------------------------------------------------ --debian: the same rules

def test_debian_never_copies_into_a_root_a_prison_used(site):
    """A root a prison used may hold links it planted: cp into it would write through them.
    --debian copies only into an empty directory, and --force does not apply."""
    root, host = site
    plant(root, "etc/passwd", "file", host)
    plant(root, "etc", "dir", host)
    before = snapshot(host)
    err = one_line_error(mkroot("--debian", root))
    assert f"{root} exists and is not empty: a Debian root is copied whole" in err
    r = mkroot("--debian", "--force", root)
    assert r.returncode == 2 and b"--force does not go with --debian" in r.stderr
    assert snapshot(host) == before and os.path.islink(root / "etc")


def test_debian_refuses_a_symlinked_root(site, tmp_path):
    _, host = site
    link = tmp_path / "roots" / "debian-link"
    os.symlink(host, link)
    before = snapshot(host)
    err = one_line_error(mkroot("--debian", link))
    assert str(link) in err and "symlink" in err
    assert snapshot(host) == before


def test_debian_refuses_an_empty_root_in_use(tmp_path):
    """Empty, but a process works in it (a prison about to start there, a chroot): refused
    before anything is copied, with the pid named."""
    base = tmp_path / "roots"
    base.mkdir(mode=0o700)
    root = base / "empty"
    root.mkdir()
    p = subprocess.Popen(["sleep", "60"], cwd=root)
    try:
        err = one_line_error(mkroot("--debian", root))
        assert f"pid {p.pid}" in err and "in use" in err
        assert os.listdir(root) == []
    finally:
        p.kill()
        p.wait()
