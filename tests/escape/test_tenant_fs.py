"""A hostile tenant against the host's files, through what the daemon shows a prison.

4a. /dev inside a confined prison: the jailed root changing its device nodes changes nothing
    on the host.
4b. A read-only mounts: entry stays read-only below it (a submount of the source included).
4c. The control socket's directory: the daemon does not change its mode, and a confined
    prison sees none of its other files (nor the host's /tmp when the socket is there).
4d. A service's stdout/stderr without exec.consolelog: not the daemon's log itself.
4e. The shared network stack's files under /proc/net (iptables' xt_recent lists): the jailed
    root, uid 0 like their owner, cannot write them.

Anything the old code may change on the host (/dev node modes, /tmp's mode) is put back in a
finally block, as soon as it is seen."""
import os
import pathlib
import shutil
import stat
import subprocess
import threading
import time

import pytest

from support.daemon import Daemon, let_others_reach, prisonctl_cmd, wait_for
from support.fixtures import confined
from support.tenant import public_daemon, public_tmp, writable_dir  # noqa: F401

DEV_NODES = ["null", "zero", "full", "random", "urandom", "tty"]


def modes(paths) -> dict:
    return {p: stat.S_IMODE(os.stat(p).st_mode) for p in paths}


def restore(before: dict) -> None:
    for p, m in before.items():
        if stat.S_IMODE(os.stat(p).st_mode) != m:
            os.chmod(p, m)


class ModeGuard:
    """Polls paths (every millisecond) while the daemon starts: the first change of a mode is
    recorded and undone at once (other people use this machine's /tmp and /dev)."""

    def __init__(self, paths):
        self.before = modes(paths)
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            for p, m in self.before.items():
                now = stat.S_IMODE(os.stat(p).st_mode)
                if now != m:
                    self.seen.setdefault(p, now)
                    os.chmod(p, m)
            time.sleep(0.001)

    def stop(self):
        self._stop.set()
        self._t.join()
        for p, m in self.before.items():
            now = stat.S_IMODE(os.stat(p).st_mode)
            if now != m:
                self.seen.setdefault(p, now)
        restore(self.before)


# ------------------------------------------------------------------ 4a: /dev


def test_the_jailed_root_cannot_change_the_hosts_device_nodes(daemon, confined_root):
    d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1"))
    nodes = [f"/dev/{n}" for n in DEV_NODES]
    before = modes(nodes)
    try:
        r = d.exec("c", "sh", "-c", "chmod 0600 " + " ".join(nodes) + "; echo x > /dev/null && echo wrote")
        after = modes(nodes)
    finally:
        restore(before)
    print("in the prison:", r.stdout, r.stderr, "host before", before, "after", after)
    changed = {p: f"{before[p]:o} -> {after[p]:o}" for p in nodes if after[p] != before[p]}
    assert not changed, f"chmod in the confined prison changed the host's device nodes: {changed}"
    assert before["/dev/null"] == 0o666
    assert b"wrote" in r.stdout, "writing /dev/null inside the prison failed"


MASKED = ["/proc/keys", "/proc/timer_list", "/proc/kallsyms", "/proc/sched_debug", "/proc/kcore"]


def test_the_jailed_root_cannot_change_the_hosts_device_nodes_through_masked_files(daemon, confined_root):
    """/proc files the prison may not read are hidden under a /dev/null: the prison's own, read-only
    (found by a reviewer: they were binds of the host's /dev/null, which a chmod through
    /proc/keys changed for every host user)."""
    d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1"))
    before = modes(["/dev/null"])
    try:
        r = d.exec("c", "sh", "-c", "for f in " + " ".join(MASKED) + "; do chmod 0600 $f; chown 1:1 $f; done; "
                   "cat /proc/keys; echo read-$?")
        after = modes(["/dev/null"])
        owner = os.stat("/dev/null").st_uid
    finally:
        restore(before)
        os.chown("/dev/null", 0, 0)
    print("in the prison:", r.stdout, r.stderr)
    assert after == before and owner == 0, f"the host's /dev/null changed: {before} -> {after}, owner {owner}"
    assert b"read-0" in r.stdout  # still readable (empty) inside
    assert r.stderr.count(b"Read-only file system") >= 2


# ------------------------------------------------------------------ 4b: a submount under a read-only mount


@pytest.fixture
def data_with_submount(tmp_path):
    data = tmp_path / "data"
    sub = data / "sub"
    sub.mkdir(parents=True)
    (data / "top-file").write_text("top\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "prisond-test-sub", str(sub)], check=True)
    try:
        (sub / "existing").write_text("existing\n")
        yield data
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=False)


def test_a_read_only_mount_is_read_only_below_it_too(daemon, confined_root, data_with_submount):
    data = data_with_submount
    d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1", mounts=f", {{source: {data}, target: /srv/data}}"))
    script = ("cat /srv/data/sub/existing; "
              "echo top > /srv/data/new-top; "
              "echo sub > /srv/data/sub/file; "
              "cp /usr/bin/id /srv/data/sub/suid && chmod 4755 /srv/data/sub/suid; "
              "mknod /srv/data/sub/nullnode c 1 3; "
              "ls -l /srv/data/sub")
    r = d.exec("c", "sh", "-c", script)
    out = r.stdout.decode() + r.stderr.decode()
    print(out)
    assert "existing" in out, "the mount is not there"
    sub = data / "sub"
    made = sorted(os.listdir(sub))
    suid = [p for p in made if os.stat(sub / p).st_mode & (stat.S_ISUID | stat.S_ISGID)]
    devs = [p for p in made if stat.S_ISCHR(os.stat(sub / p).st_mode) or stat.S_ISBLK(os.stat(sub / p).st_mode)]
    assert not (data / "new-top").exists()
    assert made == ["existing"], f"the prison wrote below its read-only mount /srv/data (in a submount): {made}"
    assert not suid and not devs, f"set-uid files {suid} / device nodes {devs} made below the read-only mount"
    assert out.count("Read-only file system") >= 2, "writing below the read-only mount did not fail with EROFS"


# ------------------------------------------------------------------ 4c: the socket's directory


def start_with_socket(tmp_path, confined_root, socket_path: str, guarded: list[str]):
    """(the daemon or None, the guard's record, why it refused to start).  A daemon that refuses
    such a socket path (exits, saying why) is a secure outcome too."""
    d = Daemon(str(tmp_path / "d"), "prisons:\n" + confined(confined_root, "c", "127.0.2.1"),
               extra_args=["--socket", socket_path])
    d.socket = socket_path  # the last --socket wins
    guard = ModeGuard(guarded)
    try:
        d.start()
    except RuntimeError as exc:
        guard.stop()
        d.stop()
        d.remove_cgroups()
        if d.returncode not in (None, 0) and "exited" in str(exc):
            return None, guard.seen, d.log().strip().splitlines()[-1:]
        raise
    except BaseException:
        guard.stop()
        d.stop()
        d.remove_cgroups()
        raise
    guard.stop()
    return d, guard.seen, None


def stop_daemon(d: Daemon) -> None:
    try:
        d.stop()
    finally:
        d.remove_cgroups()


def test_the_socket_directory_keeps_its_mode_and_its_other_files(tmp_path, confined_root):
    private = f"/tmp/prisond-test-private-{os.getpid()}-{os.urandom(4).hex()}"
    os.mkdir(private, 0o700)
    os.chmod(private, 0o700)
    with open(os.path.join(private, "other-file"), "w") as fh:
        fh.write("PRIVATE-4c\n")
    d = None
    try:
        d, seen, refused = start_with_socket(tmp_path, confined_root, f"{private}/x.sock", [private])
        out = ""
        if d is not None:
            r = d.exec("c", "sh", "-c", f"ls -a {private}; cat {private}/other-file")
            out = r.stdout.decode() + r.stderr.decode()
        print("daemon changed modes:", {p: oct(m) for p, m in seen.items()}, "; refused:", refused, "; inside:", out)
        problems = []
        if seen:
            problems.append(f"the daemon changed the mode of {private} (0700) to {seen[private]:o}")
        if "other-file" in out.splitlines() or "PRIVATE-4c" in out:  # listed, or read (not an error naming it)
            problems.append(f"the confined prison sees the other files of the socket's directory: {out!r}")
        assert not problems, "; ".join(problems)
    finally:
        if d:
            stop_daemon(d)
        shutil.rmtree(private, ignore_errors=True)


def test_a_socket_directly_in_tmp_changes_nothing_of_tmp(tmp_path, confined_root):
    tag = f"{os.getpid()}-{os.urandom(4).hex()}"
    marker = f"/tmp/prisond-test-host-marker-{tag}"
    with open(marker, "w") as fh:
        fh.write("HOST-TMP-4c\n")
    tmp_before = stat.S_IMODE(os.stat("/tmp").st_mode)
    assert tmp_before == 0o1777
    d = None
    try:
        d, seen, refused = start_with_socket(tmp_path, confined_root, f"/tmp/x-{tag}.sock", ["/tmp"])
        out = ""
        if d is not None:
            # /tmp is also the runtime path here (the directory of the policy's s=)
            r = d.exec("c", "sh", "-c", f"ls -a /tmp; cat {marker}; ls -a / /run")
            out = r.stdout.decode() + r.stderr.decode()
        print("daemon changed modes:", {p: oct(m) for p, m in seen.items()}, "; refused:", refused,
              "; inside:", out[:2000])
        problems = []
        if seen:
            problems.append(f"the daemon changed /tmp's mode to {seen['/tmp']:o} (put back to 1777 at once)")
        if os.path.basename(marker) in out.splitlines() or "HOST-TMP-4c" in out:
            problems.append("the confined prison sees the host's /tmp (its marker file)")
        assert not problems, "; ".join(problems)
    finally:
        if stat.S_IMODE(os.stat("/tmp").st_mode) != 0o1777:
            os.chmod("/tmp", 0o1777)
        if d:
            stop_daemon(d)
        os.unlink(marker)
        assert stat.S_IMODE(os.stat("/tmp").st_mode) == 0o1777


# ------------------------------------------------------------------ 4d: a service's output


@pytest.mark.parametrize("kind", ["confined-root", "isolated-nobody", "unconfined-nobody"])
def test_a_service_without_consolelog_does_not_write_the_daemons_log(public_daemon, confined_root, writable_dir,
                                                                     kind):
    tag = os.urandom(4).hex()
    name = f"forger{tag}"
    shared = pathlib.Path(writable_dir)
    if kind == "confined-root":
        inside, host = f"/tmp/fds-{tag}", os.path.join(confined_root, "tmp", f"fds-{tag}")
    elif kind == "isolated-nobody":  # its /tmp is its own: seen through its init's root
        inside, host = f"/tmp/fds-{tag}", None
    else:
        inside = host = str(shared / f"fds-{tag}")
    script = (f"echo 'prisond: FORGED-{tag} reload rejected'; echo 'prisond: FORGED-{tag} stopped' >&2; "
              f"fds=$(stat -L -c %d:%i /proc/$$/fd/1 /proc/$$/fd/2); echo $fds > {inside}; truncate -s 0 /proc/self/fd/2; "
              f"truncate -s 0 /proc/self/fd/1; echo truncated >> {inside}; exec sleep 600")
    if kind == "confined-root":
        body = confined(confined_root, name, "127.0.2.1", extra="    exec:\n      start: [sh, -c, \"%s\"]\n" % script)
    else:
        body = (f"  {name}:\n    ip4: [127.0.3.1]\n    isolate: {'false' if kind == 'unconfined-nobody' else 'true'}\n"
                f"    exec:\n      jail_user: nobody\n      start: [sh, -c, \"{script}\"]\n")
    d = public_daemon("prisons:\n" + body, start=False)
    let_others_reach(d.dir)
    sentinel = f"TEST-SENTINEL-{tag}: written before the daemon started"
    with open(d.log_path, "w") as fh:
        fh.write(sentinel + "\n")
    d.start()
    if host is None:
        host = f"/proc/{d.show(name)['init_pid']}/root{inside}"
    wait_for(lambda: os.path.exists(host) and "truncated" in open(host).read(), 15, "the service")
    time.sleep(0.3)
    with open(host) as fh:
        fds = fh.read().split()[:2]
    log_st = os.stat(d.log_path)
    log_id = f"{log_st.st_dev}:{log_st.st_ino}"
    log = d.log()
    forged = [line for line in log.splitlines() if f"FORGED-{tag}" in line]
    print(kind, "fds 1/2:", fds, "daemon's log:", log_id, "; forged lines:", forged)
    problems = []
    if log_id in fds:
        problems.append(f"the service's stdout/stderr is the daemon's log ({fds} vs {log_id})")
    if sentinel not in log:
        problems.append("the service truncated the daemon's log")
    unprefixed = [line for line in forged if name not in line]
    if unprefixed:
        problems.append(f"lines the service forged appear in the daemon's log without its name: {unprefixed}")
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------ set-uid programs for host users


def test_a_writable_mount_host_users_can_reach_is_refused(daemon, confined_root, tmp_path):
    """A confined prison's root may make set-uid programs in a read-write mount (nosuid inside
    the prison, not on the host): if a host user can reach the directory, they run one and are
    root (a reviewer did, as a non-root member of the control group).  So such a mount, and a
    root host users can reach, keep the prison from starting."""
    open_dir = f"/tmp/prisond-test-rw-{os.getpid()}-{os.urandom(3).hex()}"
    os.mkdir(open_dir, 0o755)
    os.chmod(open_dir, 0o755)
    try:
        d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1",
                                           mounts=f", {{source: {open_dir}, target: /srv/w, readonly: false}}"))
        shown = d.show("c")
        assert shown["state"] == "failed"
        assert shown["reason"] == (f"mounts: {open_dir} (read-write): every host user can reach it; make a directory "
                                   "on its way root's alone (0700), or a host user could run a set-uid program the "
                                   "prison's root leaves there")
        # the same, from behind a directory only root may enter, is fine
        hidden = tmp_path / "hidden" / "w"
        hidden.mkdir(parents=True)
        os.chmod(tmp_path / "hidden", 0o700)
        d2 = daemon("prisons:\n" + confined(confined_root, "c2", "127.0.3.1",
                                            mounts=f", {{source: {hidden}, target: /srv/w, readonly: false}}"))
        assert d2.show("c2")["state"] == "running"
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)


def test_a_root_whose_passwd_a_user_owns_is_refused(daemon, tmp_path):
    """A root made by a user (mkroot run as that user, or a copy): whoever owns its /etc/passwd
    writes a uid 0 line there and is root inside the prison (a newcomer's trial did it as
    nobody).  The prison does not start, and says why; prisonctl mkroot refuses to run as
    anyone but root."""
    from support.daemon import prisonctl_cmd
    base = tmp_path / "roots"
    base.mkdir(mode=0o700)
    root = str(base / "r")
    subprocess.run(prisonctl_cmd() + ["mkroot", root], check=True, capture_output=True)
    os.chown(os.path.join(root, "etc", "passwd"), 65534, 65534)
    d = daemon("prisons:\n" + confined(root, "c", "127.0.2.1"))
    shown = d.show("c")
    assert shown["state"] == "failed", "a root whose /etc/passwd nobody owns started"
    assert "etc/passwd belongs to uid 65534, not root" in shown["reason"], shown["reason"]
    r = subprocess.run(prisonctl_cmd() + ["mkroot", str(tmp_path / "mine")], capture_output=True,
                       preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
    assert r.returncode == 77 and b"run it as root" in r.stderr, r


# ------------------------------------------------------------------ 4e: /proc/net


def recent_sources(path: str) -> set[str]:
    with open(path) as fh:
        return {f.split("=", 1)[1] for line in fh for f in line.split() if f.startswith("src=")}


def test_the_jailed_root_cannot_change_the_hosts_firewall_lists(daemon, confined_root):
    """An operator's xt_recent list (a ban list, a port knock) is a file under /proc/net, which a
    confined prison shares with the host (one network stack); its owner, uid 0, may write it."""
    name = f"prisond-{os.getpid()}"
    rule = ["INPUT", "-p", "tcp", "--dport", "2222", "-m", "recent", "--name", name, "--set"]
    subprocess.run(["iptables", "-A", *rule], check=True)  # the suite's own network namespace
    try:
        path = f"/proc/self/net/xt_recent/{name}"
        with open(path, "w") as fh:
            fh.write("+127.0.0.42\n")  # the operator bans an address
        d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1"))
        r = d.exec("c", "sh", "-c", f"echo / > /proc/net/xt_recent/{name}; echo +127.0.0.1 > /proc/net/xt_recent/{name};"
                   " echo through-proc-fd > /dev/stdout")
        after = recent_sources(path)
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
    print("in the prison:", r.stdout, r.stderr, "the list after:", after)
    assert after == {"127.0.0.42"}, f"the jailed root changed the host's xt_recent list: {after}"
    assert b"through-proc-fd" in r.stdout, "writing /dev/stdout (a /proc/self/fd link) failed"


# ------------------------------------------------------------------ 4e: links in mount sources


@pytest.mark.parametrize("kind", ["confined", "isolated"])
def test_a_link_planted_on_a_mount_sources_way_shows_the_prison_nothing(daemon, confined_root, tmp_path, kind):
    """A read-only mount source below a directory a host user (or a prison's www-data, through
    a mount of it) can write: the user swaps the source for a link to /.  The prison must not
    start on it (before: it started and its root read the host's /etc/shadow at the target,
    and reached every host unix socket, prisond's init sockets included)."""
    import pwd
    shared = tmp_path / "shared"
    (shared / "site").mkdir(parents=True)
    www = pwd.getpwnam("www-data")
    os.chown(shared, www.pw_uid, www.pw_gid)
    let_others_reach(str(shared))
    mount = f"{{source: {shared}/site, target: /srv/site}}"
    if kind == "confined":
        body = confined(confined_root, "c", "127.0.2.1", mounts=", " + mount,
                        extra="    exec: {start: [sleep, '600']}\n")
    else:
        body = f"  c:\n    ip4: [127.0.2.1]\n    mounts: [{mount}]\n    exec: {{start: [sleep, '600']}}\n"
    # what the user does, as that user
    swap = subprocess.run(["runuser", "-u", "www-data", "--", "sh", "-c",
                           f"cd {shared} && mv site site.old && ln -s / site"], capture_output=True, text=True)
    assert swap.returncode == 0, swap.stderr
    d = daemon("prisons:\n" + body)
    c = d.show("c")
    assert c["state"] == "failed" and "symbolic link" in c["reason"], c.get("reason")
    assert not [m for m in open("/proc/self/mountinfo") if "/srv/site" in m]
    r = subprocess.run(prisonctl_cmd() + ["check", "--host", d.config_path], capture_output=True, text=True)
    assert r.returncode != 0 and "symbolic link" in r.stdout + r.stderr, r.stdout + r.stderr
