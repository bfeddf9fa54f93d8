"""prisonctl's own errors: one line, the right exit status, no traceback."""
import os
import subprocess

import pytest

from support.daemon import prisonctl_cmd


def ctl(*args, env=None):
    return subprocess.run(prisonctl_cmd() + list(args), capture_output=True, text=True, env=env)


def test_daemon_not_running(tmp_path):
    r = ctl("--socket", str(tmp_path / "nothing.sock"), "list")
    assert r.returncode == 69
    assert r.stderr == f"prisonctl: prisond is not running (nothing listens on {tmp_path}/nothing.sock)\n"


def test_socket_from_the_environment(tmp_path):
    import os
    r = ctl("list", env=dict(os.environ, PRISOND_SOCKET=str(tmp_path / "env.sock")))
    assert r.returncode == 69 and "env.sock" in r.stderr


@pytest.mark.parametrize("args,message", [
    ([], "no command given"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["--bogus", "list"], "unknown option --bogus"),
    (["show"], "expected 1 argument, got 0"),
    (["list", "--yaml"], "unknown option --yaml"),
    (["exec"], "exec needs a prison name"),
    (["start"], "name a prison"),
])
def test_bad_arguments(tmp_path, args, message):
    r = ctl("--socket", str(tmp_path / "s"), *args)
    assert r.returncode == 2 and r.stderr.startswith(f"prisonctl: {message}\n") and "Traceback" not in r.stderr


def test_exec_import_path_is_lean():
    """prisonctl exec must not pay for yaml, asyncio, pyroute2, nor json/socket (re, enum).
    Run as the installed launcher runs it: python -S with the module path given."""
    import json
    import sys
    code = (f"import sys; sys.path[1:1] = {json.dumps([p for p in sys.path if p])}; import prisond.cli; "
            "print(sorted(m for m in ('yaml','asyncio','pyroute2','argparse','json','socket','re','enum') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_installed_launcher_skips_site():
    """/usr/local/bin/prisonctl is the C front end; the Python prisonctl it hands over to starts
    without site, and its modules are byte-compiled (scripts/setup)."""
    with open("/usr/local/lib/prisond/prisonctl.py") as fh:
        first = fh.readline()
    assert first.startswith("#!") and first.rstrip().endswith(" -S")
    import prisond.cli
    import importlib.util
    assert os.path.exists(importlib.util.cache_from_source(prisond.cli.__file__))
