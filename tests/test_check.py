"""`prisonctl check --host` (host/check.py): what a valid file still needs from the host,
each problem where it was written.  A host of the test's making, then this one through the CLI."""
import os
import subprocess
import sys

from prisond.host.check import HostView, problems
from prisond.model.config import parse
from prisond.model.yamlsrc import load

TEXT = """\
prisons:
  a:
    ip4: ["eth9|10.9.9.9/32"]
    exec:
      start: [no-such-program, -x]
      jail_user: ghost
  b:
    ip6: ["2001:db8::5"]
    path: /r
    mounts: [/usr, /srv/missing]
    limits: {memory: 64M, pids: 10}
    exec: {start: [nginx], jail_user: www-data}
  c:
    ip4: [127.0.2.1]
    exec: {start: "serve.sh"}
"""


def host(files: dict[str, str], execs: set[str], dirs: set[str], controllers=frozenset({"pids"})):
    return HostView(exists=lambda p: p in files or p in execs or p in dirs, isdir=lambda p: p in dirs,
                    is_exec=lambda p: p in execs, read=lambda p: files[p] if p in files else open("/nonexistent"),
                    iface_exists=lambda name: name == "lo", has_address=lambda ip: False,
                    controllers=set(controllers))


def test_each_missing_thing_is_named_where_it_was_written():
    config = parse(TEXT, "p.yaml")
    h = host({"/etc/passwd": "root:x:0:0::/root:/bin/sh\n", "/r/etc/passwd": "www-data:x:33:33::/:/bin/sh\n"},
             execs={"/usr/sbin/nginx", "/bin/sh"}, dirs={"/r", "/usr"})
    got = problems(config, load(TEXT, "p.yaml"), h)
    assert got == [
        "p.yaml:5: prisons.a.exec.start: no-such-program: no such program on this host "
        "(PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)",
        "p.yaml:6: prisons.a.exec.jail_user: no user 'ghost' in /etc/passwd",
        "p.yaml:3: prisons.a.ip4[0]: no interface 'eth9' here",
        "p.yaml:10: prisons.b.mounts[1]: /srv/missing does not exist here",
        "p.yaml:8: prisons.b.ip6[0]: 2001:db8::5 is not on this host and no interface is named for it "
        "(iface|address, or the prison's interface:)",
        "p.yaml:11: prisons.b.limits: needs the cgroup controllers memory (this host has no such controller)",
    ], got
    # found in the prison's root through its /usr mount; serve.sh runs through /bin/sh: both there


def test_a_confined_prisons_programs_are_looked_for_in_its_root_not_the_hosts():
    text = "prisons:\n  b:\n    path: /r\n    exec: {start: [nginx]}\n"
    config = parse(text, "p.yaml")
    on_host_only = host({}, execs={"/usr/sbin/nginx"}, dirs={"/r"})
    assert problems(config, load(text, "p.yaml"), on_host_only) == [
        "p.yaml:4: prisons.b.exec.start: nginx: no such program in the prison's root "
        "(PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)"]
    in_root = host({}, execs={"/r/usr/sbin/nginx"}, dirs={"/r"})
    assert problems(config, load(text, "p.yaml"), in_root) == []


def test_an_isolated_prisons_mount_target_must_be_on_the_host_or_in_its_private_dirs():
    text = ("prisons:\n  a:\n    ip4: [127.0.2.1]\n    mounts:\n"
            "      - {source: /srv/a, target: /not-on-host}\n"
            "      - {source: /srv/a, target: /run/made/inside}\n"
            "      - {source: /srv/a, target: /tmp/x}\n"
            "      - {source: /srv/a, target: /var/tmp/y}\n"
            "      - {source: /srv/a, target: /opt}\n"
            "  b:\n    ip4: [127.0.3.1]\n    path: /r\n    mounts: [{source: /srv/a, target: /not-on-host}]\n")
    got = problems(parse(text, "p.yaml"), load(text, "p.yaml"), host({}, execs=set(), dirs={"/srv/a", "/opt", "/r"}))
    assert got == ["p.yaml:5: prisons.a.mounts[0]: /not-on-host: no such mount point on the host (an isolated "
                   "prison's mounts go onto the host's tree, or into its private /run, /tmp or /var/tmp)"], got


def test_the_cli_checks_this_host_and_exits_2(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("prisons:\n  a:\n    ip4: [127.0.2.1]\n    exec: {start: [no-such-program-here]}\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    plain = subprocess.run([sys.executable, "-m", "prisond.client.cli", "check", str(f)], capture_output=True,
                           text=True, env=env)
    assert plain.returncode == 0
    r = subprocess.run([sys.executable, "-m", "prisond.client.cli", "check", "--host", str(f)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith(f"{f}:4: prisons.a.exec.start: no-such-program-here: no such"), r
