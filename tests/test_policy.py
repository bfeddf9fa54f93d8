import dataclasses

from prisond.config import parse
from prisond.policy import service_env, shim_policy, with_preload


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


def test_enter_argv_for_prisonjail():
    from prisond.policy import enter_argv, jail_flags
    s = dataclasses.replace(spec(), allow=frozenset({"raw_sockets"}))
    assert jail_flags(spec()) == "-" and jail_flags(s) == "r"
    assert enter_argv("/j", 42, "r", "www-data", True) == [
        "/j", "enter", "--pid", "42", "--allow", "r", "--user", "www-data", "--login", "--"]
    assert enter_argv("/j", 42, "-") == ["/j", "enter", "--pid", "42", "--allow", "-", "--"]
