"""A hostile tenant against the control socket's authority.

1a. Identity fails closed: a connection whose maker is gone (a child connected it and was
    reaped) is still a prison's; requests a prison may never make get permission_denied.
1b. No request names a file for the daemon to read (daemon.reload's "config").
1c. A non-root member of the control group does not get root on the host through exec.

Judged from outside: the replies' error codes, the other prison's state, the daemon's list
of prisons, marker files that a command run as root on the host would create."""
import json
import os
import time

import pytest

from support.daemon import let_others_reach, run_cli_as, wait_for
from support.fixtures import confined
from support.tenant import (public_cell, NOBODY, NOGROUP, call_as, names, public_daemon, public_dir, remove_public_dir,  # noqa: F401
                            request, run_probe, tenant_static)

FORBIDDEN = ["prison.list", "prison.stop", "daemon.reload"]


@pytest.fixture(scope="module")
def cell(tmp_path_factory, confined_root):
    """c: confined; u: not confined; victim: another prison with a service."""
    body = ("prisons:\n" + confined(confined_root, "c", "127.0.2.1")
            + "  u:\n    ip4: [127.0.3.1]\n"
            + "  victim:\n    ip4: [127.0.4.1]\n    exec:\n      start: [sleep, '600']\n")
    with public_cell(body) as d:
        yield d


def forbidden_request(method: str) -> str:
    return request(method, rid=7, **({"name": "victim"} if method == "prison.stop" else {}))


def orphan_reply(r) -> tuple[int, dict | str]:
    lines = r.stdout.decode().splitlines()
    assert lines and lines[0].startswith("tries "), (r.stdout, r.stderr)
    try:
        return int(lines[0].split()[1]), json.loads(lines[1])
    except (IndexError, ValueError):
        return int(lines[0].split()[1]), "\n".join(lines[1:])


@pytest.mark.parametrize("method", FORBIDDEN)
@pytest.mark.parametrize("where", ["confined-root", "unconfined-nobody"])
def test_a_connection_made_by_a_reaped_child_is_still_the_prisons(cell, tenant_static, where, method):
    d = cell
    if d.call("prison.show", name="victim")["state"] != "running":
        d.call("prison.start", name="victim")
    victim_pid = d.call("prison.show", name="victim")["service"]["pid"]
    if where == "confined-root":
        r = run_probe(d, "c", tenant_static, "call-orphan", forbidden_request(method), 25, confined=True)
    else:
        r = run_probe(d, "u", tenant_static, "call-orphan", forbidden_request(method), 25, confined=False,
                      user="nobody")
    tries, reply = orphan_reply(r)
    print(f"{where} {method}: {tries} tries, last reply {reply}")
    assert isinstance(reply, dict) and reply.get("ok") is False and \
        reply.get("error", {}).get("code") == "permission_denied", \
        f"{where}: {method} on a connection made by a reaped child was answered {reply} (try {tries})"
    show = d.call("prison.show", name="victim")
    assert show["state"] == "running" and os.path.exists(f"/proc/{victim_pid}"), \
        "the other prison was stopped from inside a prison"


def test_the_plain_connection_of_a_prison_is_refused(cell, tenant_static):
    """The same requests on a connection of the prison's own (no trick): refused already."""
    d = cell
    for method in FORBIDDEN:
        r = run_probe(d, "c", tenant_static, "call", forbidden_request(method), confined=True)
        reply = json.loads(r.stdout)
        assert reply["error"]["code"] == "permission_denied", (method, reply)
    assert d.call("prison.show", name="victim")["state"] == "running"


# ------------------------------------------------------------------ 1b: a file named in a request

EVIL = """daemon:
  cgroup_parent: {cgroup_parent}
prisons:
  evil:
    ip4: [127.0.9.1]
    exec:
      prestart: "touch {marker}"
"""


def test_a_control_group_member_cannot_make_the_daemon_read_another_config(public_daemon, tmp_path):
    import grp
    staff = grp.getgrnam("staff").gr_gid
    d = public_daemon("daemon:\n  control_group: staff\nprisons:\n  a:\n    ip4: [127.0.2.1]\n", start=False)
    let_others_reach(d.dir)
    d.start()
    before = names(d)
    marker = tmp_path / "evil-prestart-ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(EVIL.format(cgroup_parent=d.cgroup_parent, marker=marker))
    os.chmod(evil, 0o644)  # the daemon (root) reads it
    reply = call_as(NOBODY, NOGROUP, [staff], d.socket, "daemon.reload", config=str(evil))
    print("reply:", reply)
    assert not marker.exists(), f"daemon.reload read {evil}: its exec.prestart ran as root on the host"
    assert names(d) == before, f"the daemon's prisons are now {names(d)} (from {evil})"
    if reply.get("ok"):  # ignored: a reload of the daemon's own file
        assert reply["result"].get("config") in (None, d.config_path), reply


def test_a_prison_cannot_make_the_daemon_read_a_config_it_wrote(daemon, confined_root, tenant_static, tmp_path):
    """The confined root writes a config in its /tmp and names it through /proc/INIT/root
    (on a connection made by a reaped child, and on its own)."""
    d = daemon("prisons:\n" + confined(confined_root, "c", "127.0.2.1"))
    before = names(d)
    marker = tmp_path / "evil-prestart-ran-from-prison"
    tag = os.urandom(4).hex()
    text = EVIL.format(cgroup_parent=d.cgroup_parent, marker=marker)
    r = d.exec("c", "sh", "-c", f"cat > /tmp/evil-{tag}.yaml", input=text.encode())
    assert r.returncode == 0, r.stderr
    init = d.call("prison.show", name="c")["init_pid"]
    path = f"/proc/{init}/root/tmp/evil-{tag}.yaml"
    req = request("daemon.reload", rid=3, config=path)
    replies = {}
    for how in ("call", "call-orphan"):
        r = run_probe(d, "c", tenant_static, how, req, *(["25"] if how == "call-orphan" else []), confined=True)
        replies[how] = f"exit {r.returncode}: {r.stdout.decode().strip()}"
        print(how, replies[how])
    # a reload to the prison's file stops the prison (the probe with it) before the prestart runs
    deadline = time.monotonic() + 3
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not marker.exists(), f"daemon.reload of {path} from inside the prison ran its prestart as root " \
        f"on the host ({replies})"
    assert names(d) == before, f"the daemon's prisons are now {names(d)}"
    for how, got in replies.items():
        assert '"permission_denied"' in got, f"{how}: {got}"


# ------------------------------------------------------------------ 1c: exec as a control-group member


@pytest.fixture
def member_cell(public_daemon, confined_root):
    import grp
    staff = grp.getgrnam("staff").gr_gid
    d = public_daemon("daemon:\n  control_group: staff\nprisons:\n  u:\n    ip4: [127.0.3.1]\n"
               + confined(confined_root, "c", "127.0.2.1"), start=False)
    let_others_reach(d.dir)
    d.start()
    let_others_reach(d.run_dir)
    return d, staff


@pytest.mark.parametrize("as_root", [[], ["-u", "root"], ["-u", "0"]], ids=["no-u", "u-root", "u-0"])
def test_a_control_group_member_gets_no_root_in_an_unconfined_prison(member_cell, tmp_path, as_root):
    d, staff = member_cell
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    marker = private / "ran-as-root"
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "exec", *as_root, "u", "--",
                                                  "/usr/bin/touch", str(marker)], groups=[staff])
    print("exit", code, out, err)
    assert not marker.exists(), "a non-root control-group member ran a command as root on the host"
    assert code != 0, f"exec {' '.join(as_root)} into an unconfined prison was not refused"


def test_a_control_group_member_may_enter_a_confined_prison(member_cell, confined_root):
    """Expected to work after the fix: the member's root there is the jail's."""
    d, staff = member_cell
    tag = os.urandom(4).hex()
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "exec", "c", "--",
                                                  "/bin/sh", "-c", f"id -u > /tmp/member-{tag}"], groups=[staff])
    print("exit", code, out, err)
    ran = os.path.join(confined_root, "tmp", f"member-{tag}")
    assert code == 0 and os.path.exists(ran), f"exec into the confined prison by a control-group member: exit {code}"


def test_a_control_group_member_in_a_confined_prison_cannot_read_host_files(member_cell, confined_root, tmp_path):
    d, staff = member_cell
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-SECRET-1c\n")
    os.chmod(secret, 0o600)
    tag = os.urandom(4).hex()
    out_in = f"/tmp/member-read-{tag}"
    code, out, err = run_cli_as(NOBODY, NOGROUP, ["--socket", d.socket, "exec", "c", "--", "/bin/sh", "-c",
                                                  f"cat {secret} > {out_in} 2>&1; cat /proc/1/root{secret} >> {out_in} 2>&1"],
                                groups=[staff])
    got = ""
    host_out = os.path.join(confined_root, out_in.lstrip("/"))
    if os.path.exists(host_out):
        got = open(host_out).read()
    print("exit", code, repr(got))
    assert "HOST-SECRET-1c" not in got + out + err


# ------------------------------------------------------------------ 1d: a prison's init


HIJACK = r"""
import os, socket, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(path)
ns = os.open("/proc/self/ns/pid", os.O_RDONLY)  # its own PID namespace: all a prison's root has
s.sendmsg([b"op=hello\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, ns.to_bytes(4, "little"))])
s.settimeout(5)
try:
    got = s.recv(65536)
except OSError as e:
    got = repr(e).encode()
print("hello answer:", got[:40])
try:
    s.send(b"op=spawn\0id=x1\0arg=/bin/sh\0arg=-c\0arg=touch /tmp/hijacked\0stdio=null\0")
    time.sleep(0.5)
    print("spawn answer:", s.recv(65536)[:40])
except OSError as e:
    print("spawn refused:", e)
"""


def test_root_of_another_prison_cannot_take_over_a_prisons_init(daemon, confined_root, tmp_path):
    """Root of a confined prison that reaches another prison's init socket (here through an
    operator's mount of the daemon's init directory) is refused: init answers only a
    connection that proves it is the daemon's (a descriptor of the daemon's PID namespace),
    and the daemon's own connection stays.  Before, root of any other PID namespace was taken
    for the daemon: its hello replaced the daemon's link (the victim was restarted) and it
    could spawn processes in the victim as root."""
    import subprocess
    script = tmp_path / "hijack.py"
    script.write_text(HIJACK)
    os.chmod(tmp_path, 0o755)
    victim = "prisons:\n  victim:\n    ip4: [127.0.4.1]\n    exec: {start: [sleep, '600']}\n"
    d = daemon(victim)
    # the daemon never mounts its runtime directory into a prison...
    d.write_config(victim + confined(confined_root, "c", "127.0.2.1",
                                     mounts=f", {{source: {d.run_dir}/init, target: /srv/init}}"))
    r = d.ctl("reload")  # applied, but c did not come up: said, and exit 1
    assert r.returncode == 1 and "failed: c: " in r.stdout.decode(), (r.stdout, r.stderr)
    assert "daemon's runtime directory" in d.show("c")["reason"]
    # ...but a host path may still lead there (here: a bind mount of it elsewhere)
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", f"{d.run_dir}/init", str(view)], check=True)
    try:
        d.write_config(victim + confined(confined_root, "c", "127.0.2.1",
                                         mounts=f", {{source: {view}, target: /srv/init}}, "
                                                f"{{source: {tmp_path}/t, target: /srv/t}}"))
        (tmp_path / "t").mkdir()
        (tmp_path / "t" / "hijack.py").write_text(HIJACK)
        assert d.ctl("reload").returncode == 0
        wait_for(lambda: d.show("c")["state"] == "running", 10, "c running")
        _hijack_is_refused(d)
    finally:
        subprocess.run(["umount", "-l", str(view)])


def _hijack_is_refused(d):
    before = d.show("victim")
    r = d.exec("c", "python3", "/srv/t/hijack.py", "/srv/init/victim.sock", timeout=30)
    out = r.stdout.decode() + r.stderr.decode()
    print(out)
    assert "op=hello" not in out and "op=spawned" not in out, out
    time.sleep(1.0)
    after = d.show("victim")
    assert after["state"] == "running"
    assert (after["init_pid"], after["service"]["pid"]) == (before["init_pid"], before["service"]["pid"])
    assert "its init is gone" not in d.log()
    # the daemon still reaches it
    assert d.exec("victim", "true").returncode == 0
    assert d.exec("victim", "test", "-e", "/tmp/hijacked").returncode != 0
