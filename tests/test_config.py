"""Configuration validation: every rejection names file:line, the key path and the reason."""
import subprocess
import textwrap

import pytest

from prisond.model.config import Command, ConfigError, parse
from support.daemon import prisonctl_cmd


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(textwrap.dedent(text), "p.yaml")
    return exc.value.problems


def test_a_full_config_parses():
    cfg = parse(textwrap.dedent("""
        defaults:
          stop: {timeout: 3}
          exec:
            stop: "echo bye"
        prisons:
          web1:
            hostname: web1.example.test
            ip4: [127.0.2.1, "lo|127.0.2.2/32"]
            ip6: ["eth0|2001:db8::1/64"]
            exec:
              start: [python3, -m, http.server, 80]
              env: {MODE: prod}
            allow: {raw_sockets: true}
          web2:
            ip4: 127.0.3.1
            stop: {timeout: 0.5}
        """), "p.yaml")
    w1, w2 = cfg.prisons
    assert [str(a.ip) for a in w1.ip4] == ["127.0.2.1", "127.0.2.2"]
    assert w1.ip4[1].iface == "lo" and w1.ip6[0].iface == "eth0" and w1.ip6[0].prefix == 64
    assert w1.exec.start == Command(("python3", "-m", "http.server", "80"))
    assert w1.exec.stop == Command(("/bin/sh", "-c", "echo bye"))  # from defaults
    assert w1.exec.env == (("MODE", "prod"),)
    assert w1.stop_timeout == 3 and w2.stop_timeout == 0.5
    assert w1.allow == {"raw_sockets"} and w2.allow == set()
    assert w2.hostname == "web2"  # the name, when it is a valid hostname


@pytest.mark.parametrize("body,expected", [
    ("prisons:\n  a:\n    bogus: 1\n", "p.yaml:3: prisons.a.bogus: unknown key"),
    ("prisons:\n  a:\n    exec:\n      startt: [x]\n", "p.yaml:4: prisons.a.exec.startt: unknown key"),
    ("toplevel: 1\n", "p.yaml:1: toplevel: unknown key"),
    ("prisons:\n  a:\n    ip4: [300.1.1.1]\n", "p.yaml:3: prisons.a.ip4[0]: '300.1.1.1' is not an IPv4 address"),
    ("prisons:\n  a:\n    ip4: [0.0.0.0]\n", "p.yaml:3: prisons.a.ip4[0]: 0.0.0.0 is the unspecified address"),
    ("prisons:\n  a:\n    ip4: [255.255.255.255]\n", "prisons.a.ip4[0]: 255.255.255.255 is the broadcast address"),
    ("prisons:\n  a:\n    ip4: [\"eth0|10.0.0.255/24\"]\n", "10.0.0.255 is the broadcast address of its /24 network"),
    ("prisons:\n  a:\n    ip4: [224.0.0.1]\n", "prisons.a.ip4[0]: 224.0.0.1 is a multicast address"),
    ("prisons:\n  a:\n    ip6: [\"ff02::1\"]\n", "prisons.a.ip6[0]: ff02::1 is a multicast address"),
    ("prisons:\n  a:\n    ip6: [\"::\"]\n", "prisons.a.ip6[0]: :: is the unspecified address"),
    ("prisons:\n  a:\n    ip4: [\"::1\"]\n", "::1 is an IPv6 address; put it under ip6"),
    ("prisons:\n  a:\n    ip4: [127.0.2.1, 127.0.2.1]\n", "prisons.a.ip4[1]: 127.0.2.1 is listed twice"),
    ("prisons:\n  a:\n    ip4: [\"127.0.2.1/33\"]\n", "bad prefix length"),
    ("prisons:\n  a:\n    hostname: bad_host\n", "p.yaml:3: prisons.a.hostname: 'bad_host' is not a valid hostname"),
    ("prisons:\n  a:\n    hostname: -bad.example\n", "is not a valid hostname"),
    ("prisons:\n  a:\n    hostname: " + "x" * 65 + "\n", "is not a valid hostname"),
    ("prisons:\n  under_score: {}\n", "no hostname given and the name 'under_score' is not a valid hostname"),
    ("prisons:\n  \"123\": {}\n", "prison names are"),
    ("prisons:\n  a:\n    stop: {timeout: -1}\n", "prisons.a.stop.timeout: must be a number of seconds >= 0"),
    ("prisons:\n  a:\n    exec: {start: []}\n", "prisons.a.exec.start: must be a command"),
    ("prisons:\n  a:\n    exec: {env: {LD_PRELOAD: x}}\n", "prisons.a.exec.env.LD_PRELOAD: is set by prisond"),
    ("prisons:\n  a:\n    allow: {raw_sockets: yes please}\n", "prisons.a.allow.raw_sockets: must be true or false"),
    ("prisons: [a, b]\n", "p.yaml:1: prisons: must be a mapping, not a list"),
])
def test_rejections(body, expected):
    found = problems(body)
    assert any(expected in p for p in found), found


def test_duplicate_prison_names_are_rejected_with_both_lines():
    found = problems("prisons:\n  a:\n    ip4: [127.0.2.1]\n  a:\n    ip4: [127.0.3.1]\n")
    assert "p.yaml:4: prisons.a: duplicate prison 'a' (first at line 2, again at line 4)" in found


def test_an_address_in_two_prisons_only_when_both_have_one():
    parse("prisons:\n  a: {ip4: [127.0.2.1]}\n  b: {ip4: [127.0.2.1]}\n", "p.yaml")  # FreeBSD allows it
    found = problems("prisons:\n  a: {ip4: [127.0.2.1, 127.0.2.2]}\n  b: {ip4: [127.0.2.1]}\n")
    assert any("prisons.b.ip4[0]: 127.0.2.1 is also an address of prison 'a'" in p for p in found), found


def test_every_problem_is_reported_at_once():
    found = problems("prisons:\n  a:\n    ip4: [0.0.0.0]\n    hostname: x_y\n  b:\n    zzz: 1\n")
    assert len(found) == 3


def test_a_problem_in_defaults_is_blamed_once_on_defaults():
    found = problems("defaults:\n  exec:\n    stop: [true]\nprisons:\n  a: {}\n  b: {}\n")
    assert found == ["p.yaml:3: defaults.exec.stop: must be a command: a non-empty list of arguments, "
                     "or a string for /bin/sh -c"]


def test_invalid_yaml_names_the_line():
    found = problems("prisons:\n  a: [unclosed\n")
    assert found[0].startswith("p.yaml:") and "invalid YAML" in found[0]


def test_prisonctl_check(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("prisons:\n  a: {ip4: [127.0.2.1]}\n  b: {ip4: [127.0.3.1]}\n")
    r = subprocess.run(prisonctl_cmd() + ["check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == f"{good}: ok, 2 prisons\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("prisons:\n  a:\n    ip4: [0.0.0.0]\n    colour: blue\n")
    r = subprocess.run(prisonctl_cmd() + ["check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"{bad}:4: prisons.a.colour: unknown key (known: allow, enforce, exec, hostname, "
                                     "hosts, interface, ip4, ip6, isolate, limits, mounts, path, restart, "
                                     "runtime_directory, stop)",
                                     f"{bad}:3: prisons.a.ip4[0]: 0.0.0.0 is the unspecified address"]
    r = subprocess.run(prisonctl_cmd() + ["check", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_the_example_configs_are_valid():
    import glob
    import os
    root = os.path.dirname(os.path.dirname(__file__))
    files = glob.glob(os.path.join(root, "config", "*.yaml"))
    assert files
    for f in files:
        from prisond.model.config import load_file
        assert load_file(f).prisons


def test_path_and_mounts():
    c = parse("prisons:\n  a:\n    ip4: [127.0.2.1]\n    path: /srv/a/\n"
              "    mounts: [/usr, {source: /srv/data, target: /data, readonly: false}]\n", "x.yaml")
    p = c.prisons[0]
    assert p.confined and p.path == "/srv/a"
    assert [(m.source, m.target, m.readonly) for m in p.mounts] == [("/usr", "/usr", True), ("/srv/data", "/data", False)]
    assert not parse("prisons:\n  a: {ip4: [127.0.2.1]}\n", "x.yaml").prisons[0].confined


def test_bad_path_and_mounts_are_named():
    with pytest.raises(ConfigError) as e:
        parse("prisons:\n  a:\n    ip4: [127.0.2.1]\n    path: srv\n"
              "    mounts: [{source: /a/../b}, {target: /x}, 5, {source: /d, target: /}]\n"
              "  b:\n    isolate: false\n    mounts: [/usr]\n"
              "  c:\n    path: /srv/c\n    allow: {set_hostname: true}\n", "x.yaml")
    assert e.value.problems == [
        "x.yaml:4: prisons.a.path: must be an absolute path without '..', not 'srv'",
        "x.yaml:5: prisons.a.mounts[0].source: must be an absolute path without '..', not '/a/../b'",
        "x.yaml:5: prisons.a.mounts[1]: needs source:",
        "x.yaml:5: prisons.a.mounts[2]: must be a mapping, not a number",
        "x.yaml:5: prisons.a.mounts[3].target: cannot be the prison's root itself (that is path:)",
        "x.yaml:8: prisons.b.mounts: needs path: or isolate: true (a mount namespace to mount into)",
        "x.yaml:11: prisons.c.allow.set_hostname: not available in a confined prison (path:): its root has no "
        "CAP_SYS_ADMIN; the hostname is the configuration's",
    ]


def test_isolation_hosts_and_runtime_directories():
    c = parse("prisons:\n  a: {ip4: [127.0.2.1], runtime_directory: [sshd, postgresql/15-main], hosts: all,"
              " mounts: [{source: /srv/a, target: /var/lib/a, readonly: false}]}\n"
              "  b: {ip4: [127.0.3.1], isolate: false, hosts: inherit}\n", "x.yaml")
    a, b = c.prisons
    assert a.isolate and a.own_pids and not a.confined and a.hosts == "all"
    assert a.runtime_directory == ("sshd", "postgresql/15-main") and a.mounts[0].target == "/var/lib/a"
    assert not b.isolate and not b.own_pids and b.hosts == "inherit"
    with pytest.raises(ConfigError) as e:
        parse("prisons:\n  a:\n    ip4: [127.0.2.1]\n    isolate: false\n    hosts: all\n"
              "    runtime_directory: [sshd]\n"
              "  b:\n    hosts: everyone\n    isolate: maybe\n    runtime_directory: [../etc, 5, /abs/ok, a//b, ., lock/x]\n", "x.yaml")
    assert e.value.problems == [
        "x.yaml:5: prisons.a.hosts: needs path: or isolate: true (or hosts: inherit)",
        "x.yaml:6: prisons.a.runtime_directory: needs path: or isolate: true (a private /run)",
        "x.yaml:9: prisons.b.isolate: must be true or false, not a string",
        "x.yaml:8: prisons.b.hosts: must be one of own, all, inherit, not 'everyone'",
        "x.yaml:10: prisons.b.runtime_directory[0]: must be a relative path of letters, digits, '.', '_', '-' "
        "(no '.' or '..'), not '../etc'",
        "x.yaml:10: prisons.b.runtime_directory[1]: must be a relative path of letters, digits, '.', '_', '-' "
        "(no '.' or '..'), not 5",
        "x.yaml:10: prisons.b.runtime_directory[3]: must be a relative path of letters, digits, '.', '_', '-' "
        "(no '.' or '..'), not 'a//b'",
        "x.yaml:10: prisons.b.runtime_directory[4]: must be a relative path of letters, digits, '.', '_', '-' "
        "(no '.' or '..'), not '.'",
        "x.yaml:10: prisons.b.runtime_directory[5]: /run/lock is every user's (1777), not a runtime directory",
    ]


def test_limits():
    from prisond.model.config import Limits
    c = parse("defaults:\n  limits: {pids: 100}\nprisons:\n"
              "  a: {ip4: [127.0.2.1], limits: {memory: 1.5G, memory_high: 512M, cpu: 150%, nofile: 4096}}\n"
              "  b: {ip4: [127.0.3.1], limits: {cpu: 0.25, pids: 10}}\n", "x.yaml")
    assert c.prisons[0].limits == Limits(memory=3 << 29, memory_high=512 << 20, pids=100, cpu=1.5, nofile=4096)
    assert c.prisons[1].limits == Limits(pids=10, cpu=0.25)
    with pytest.raises(ConfigError) as e:
        parse("prisons:\n  a:\n    ip4: [127.0.2.1]\n"
              "    limits: {memory: 10K, memory_high: lots, pids: 0, cpu: 0%, nofile: true, disk: 1G}\n"
              "  b:\n    ip4: [127.0.3.1]\n    limits: {memory: 64M, memory_high: 128M}\n", "x.yaml")
    assert e.value.problems == [
        "x.yaml:4: prisons.a.limits.disk: unknown key (known: cpu, memory, memory_high, nofile, pids)",
        "x.yaml:4: prisons.a.limits.memory: must be a size of at least 1M (e.g. 512M, 2G), not '10K'",
        "x.yaml:4: prisons.a.limits.memory_high: must be a size of at least 1M (e.g. 512M, 2G), not 'lots'",
        "x.yaml:4: prisons.a.limits.pids: must be a whole number from 1 to 4194304, not 0",
        "x.yaml:4: prisons.a.limits.nofile: must be a whole number from 1 to 1048576, not True",
        "x.yaml:4: prisons.a.limits.cpu: must be a share of CPUs such as 50% or 1.5 (at least 1%), not '0%'",
        "x.yaml:7: prisons.b.limits.memory_high: is above memory (the hard limit)",
    ]


def test_memory_limits_need_memory_accounting():
    assert parse("prisons: {a: {ip4: [127.0.2.1]}}\n", "x.yaml").daemon.memory_accounting is True
    c = parse("daemon: {memory_accounting: false}\nprisons: {a: {ip4: [127.0.2.1], limits: {pids: 5}}}\n", "x.yaml")
    assert c.daemon.memory_accounting is False and c.prisons[0].limits.pids == 5
    assert problems("""\
        daemon:
          memory_accounting: no thanks
        defaults:
          limits: {memory_high: 64M}
        prisons:
          a:
            ip4: [127.0.2.1]
            limits: {memory: 128M, pids: 5}
        """) == ["p.yaml:2: daemon.memory_accounting: must be true or false, not a string"]
    assert problems("""\
        daemon:
          memory_accounting: false
        defaults:
          limits: {memory_high: 64M}
        prisons:
          a:
            ip4: [127.0.2.1]
            limits: {memory: 128M, pids: 5}
        """) == ["p.yaml:8: prisons.a.limits.memory: needs a memory cgroup per prison: "
                 "daemon.memory_accounting is false",
                 "p.yaml:4: defaults.limits.memory_high: needs a memory cgroup per prison: "
                 "daemon.memory_accounting is false"]


def test_paths_the_daemon_opens_or_mounts_are_not_inside_a_prisons_root():
    text = """prisons:
  a:
    path: /srv/prisons/a
    exec: {consolelog: /srv/prisons/a/var/log/a.log}
  b:
    path: /srv/prisons/b
    mounts: [{source: /srv/prisons/a/data, target: /data}]
"""
    with pytest.raises(ConfigError) as err:
        parse(text, "p.yaml")
    assert err.value.problems == [
        "p.yaml:4: prisons.a.exec.consolelog: /srv/prisons/a/var/log/a.log is inside the root of prison 'a' "
        "(its root user could aim it anywhere on the host): put it outside every prison's path",
        "p.yaml:7: prisons.b.mounts[0].source: /srv/prisons/a/data is inside the root of prison 'a' "
        "(its root user could aim it anywhere on the host): put it outside every prison's path"]


def test_nothing_the_daemon_opens_lies_in_a_read_write_mount_source():
    """A read-write mount's source is the prison's to change (a link on the way of another
    prison's consolelog made the daemon write anywhere: found by an outside attack)."""
    with pytest.raises(ConfigError) as e:
        parse("prisons:\n  a:\n    ip4: [127.0.2.1]\n    mounts: [{source: /srv/data, target: /data, readonly: false}]\n"
              "  b:\n    ip4: [127.0.3.1]\n    exec: {consolelog: /srv/data/logs/b.log}\n"
              "    mounts: [{source: /srv/data/sub, target: /x}]\n", "x.yaml")
    assert [p.split(": ", 1)[0] for p in e.value.problems] == ["x.yaml:7", "x.yaml:8"], e.value.problems
    assert all("prison 'a'" in p for p in e.value.problems)


# what an outside review fed the parser: each must be a configuration error naming its line,
# never another exception (a traceback from `prisonctl check`, or from the daemon at start)
DEEP = "prisons:\n  a:\n    ip4: " + "[" * 300 + "]" * 300 + "\n"
LAUGHS = "defaults:\n  exec:\n    env:\n      A: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"      A{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 8)) + "prisons: {}\n"


@pytest.mark.parametrize("text,line,says", [
    ("defaults:\n  stop: {timeout: 2001-02-30}\nprisons: {}\n", 2, "is not a valid timestamp"),
    ("prisons:\n  a:\n    exec: {env: {RELEASE: 2024-13-01}}\n", 3, "is not a valid timestamp"),
    ("daemon:\n  log_keep: " + "9" * 5000 + "\nprisons: {}\n", 2, "is not a valid int"),
    ("prisons:\n  a: {stop: {timeout: !!int abc}}\n", 2, "is not a valid int"),
    ("prisons:\n  a: {stop: {timeout: !!int ''}}\n", 2, "is not a valid int"),
    ("prisons:\n  a: {stop: {timeout: !!float x}}\n", 2, "is not a valid float"),
    ("prisons:\n  a: {allow: {raw_sockets: !!bool x}}\n", 2, "is not a valid bool"),
    ("prisons:\n  a: {stop: {timeout: !!timestamp x}}\n", 2, "is not a valid timestamp"),
    (DEEP, 3, "nested more than 64 levels deep"),
    ("prisons:\n  ? " + "[" * 260 + "]" * 260 + "\n  : 1\n", 2, "a key must be a plain value"),
    (LAUGHS, 4, "values (aliases are built again at each use)"),
    ("prisons:\n  a: {stop: {timeout: .nan}}\n", 2, "must be a number of seconds >= 0"),
    ("prisons:\n  a: {stop: {timeout: .inf}}\n", 2, "must be a number of seconds >= 0"),
    ("prisons:\n  a: {restart: {delay: .nan}}\n", 2, "must be a number of seconds >= 0"),
    ("prisons:\n  a: {exec: {jail_user: true}}\n", 2, "must be a non-empty string, not a boolean"),
    ("prisons:\n  a:\n    mounts: [~]\n", 3, "needs source:"),
    ("prisons:\n  a: {exec: {start: [\"echo\", \"a\\0b\"]}}\n", 2, "must not hold a NUL character"),
    ("prisons:\n  a: {exec: {env: {A: \"a\\0b\"}}}\n", 2, "must not hold a NUL character"),
])
def test_what_the_parser_is_fed_is_a_configuration_error_at_its_line(text, line, says):
    with pytest.raises(ConfigError) as e:
        parse(text, "x.yaml")
    assert f"x.yaml:{line}:" in e.value.message and says in e.value.message, e.value.message
