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
