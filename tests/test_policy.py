import dataclasses

from prisond.model.config import Mount, parse
from prisond.model.policy import service_env, shim_policy, with_preload


def spec(body="ip4: [127.0.2.1, 127.0.2.2]\n    ip6: [\"lo|fd00::1\"]"):
    return parse(f"prisons:\n  web:\n    hostname: web.example.test\n    {body}\n", "x").prisons[0]


def test_policy_string():
    assert shim_policy(spec()) == "1;n=web;h=web.example.test;4=127.0.2.1,127.0.2.2;6=fd00::1;f="
    s = spec("ip4: [127.0.2.1]\n    allow: {raw_sockets: true, socket_af: true}")
    assert shim_policy(s, kernel=True) == "1;n=web;h=web.example.test;4=127.0.2.1;6=;f=rak"


def test_preload_goes_first_and_once():
    assert with_preload(None, "/s.so") == "/s.so"
    assert with_preload("/a.so /s.so:/b.so", "/s.so") == "/s.so:/a.so:/b.so"


def test_service_environment_is_clean():
    env = service_env(spec(), "/run/prisond/libprisonshim.so")
    assert set(env) == {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LD_PRELOAD", "PRISOND_POLICY"}


def test_policy_names_the_socket_for_status_lines():
    assert shim_policy(spec(), socket="/run/prisond/control.sock").endswith(";f=;s=/run/prisond/control.sock")


def test_init_argv_for_prisonjail():
    from prisond.host.launcher import init_argv
    from prisond.model.policy import jail_flags
    s = dataclasses.replace(spec(), allow=frozenset({"raw_sockets"}), isolate=False)
    assert jail_flags(spec()) == "-" and jail_flags(s) == "r"
    assert init_argv("/j", 0, s, ["/cg/a/cgroup.procs"], "/run/prisond/public", hosts="/h/a") == [
        "/j", "init", "--control", "0", "--hostname", s.hostname, "--allow", "r",
        "--cgroup", "/cg/a/cgroup.procs", "--ipc"]
    thin = dataclasses.replace(spec(), runtime_directory=("sshd",), mounts=(Mount("/srv/a", "/var/lib/a", False),))
    assert init_argv("/j", 0, thin, [], "/p", hosts="/h/a")[-14:] == [
        "--ipc", "--isolate", "--bind", "/srv/a", "/var/lib/a", "rw", "--bind", "/p", "/p", "ro",
        "--hosts", "/h/a", "--rundir", "sshd"]
    shared = dataclasses.replace(spec(), allow=frozenset({"sysvipc"}))
    assert "--ipc" not in init_argv("/j", 0, shared, [], "/p")
    confined = dataclasses.replace(spec(), path="/srv/r", mounts=(Mount("/usr", "/usr", True),))
    assert init_argv("/j", 0, confined, [], "/p")[-11:] == [
        "--ipc", "--root", "/srv/r", "--bind", "/usr", "/usr", "ro", "--bind", "/p", "/p", "ro"]
