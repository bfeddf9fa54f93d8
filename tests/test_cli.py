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
    (["mkroot", "--debian", "--force", "/nonexistent/r"],
     "--force does not go with --debian: a Debian root is copied into an empty directory"),
    (["mkroot", "--suite", "bookworm", "/nonexistent/r"], "--suite, --mirror and --refresh go with --debian"),
    (["mkroot", "--debian", "--mirror"], "--mirror needs a value"),
    (["mkroot", "--debian", "--suite", "--refresh", "/nonexistent/r"], "--suite needs a value"),
    (["mkroot", "--debian", "--bogus", "/nonexistent/r"], "unknown option --bogus"),
])
def test_bad_arguments(tmp_path, args, message):
    r = ctl("--socket", str(tmp_path / "s"), *args)
    assert r.returncode == 2 and r.stderr.startswith(f"prisonctl: {message}\n") and "Traceback" not in r.stderr


def test_exec_import_path_is_lean():
    """prisonctl exec must not pay for yaml, asyncio, pyroute2, nor json/socket (re, enum).
    Run as the installed launcher runs it: python -S with the module path given."""
    import json
    import sys
    code = (f"import sys; sys.path[1:1] = {json.dumps([p for p in sys.path if p])}; import prisond.client.cli; "
            "print(sorted(m for m in ('yaml','asyncio','pyroute2','argparse','json','socket','re','enum') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


@pytest.mark.root  # runuser
def test_every_user_can_run_the_installed_prisonctl(tmp_path):
    """/usr/local/bin/prisonctl is the C front end; the Python prisonctl it hands over to runs a
    Python every user may run (scripts/setup), whatever Python installed prisond for root."""
    from support.daemon import let_others_reach
    cfg = tmp_path / "p.yaml"
    cfg.write_text("prisons:\n  a: {ip4: [127.0.2.1]}\n")
    let_others_reach(str(tmp_path))
    r = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/local/bin/prisonctl", "check", str(cfg)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == f"{cfg}: ok, 1 prison\n", r.stderr
    r = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/local/bin/prisonctl", "--socket", str(tmp_path / "none"),
                        "list"], capture_output=True, text=True)
    assert r.returncode == 69 and "prisond is not running" in r.stderr


@pytest.mark.root  # runuser
def test_a_prisonctl_that_cannot_run_says_why(tmp_path):
    """The C front end names the real cause when the Python prisonctl cannot be run."""
    launcher = tmp_path / "prisonctl.py"
    launcher.write_text("#!/nonexistent/python3 -I\n")
    launcher.chmod(0o755)
    from support.daemon import let_others_reach
    let_others_reach(str(tmp_path))
    r = subprocess.run(["runuser", "-u", "nobody", "--", "env", f"PRISONCTL_PYTHON={launcher}",
                        "/usr/local/bin/prisonctl", "list"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == (f"prisonctl: cannot run {launcher}: its Python /nonexistent/python3: No such file or "
                        "directory for uid 65534 (scripts/setup installs a prisonctl every user can run)\n")


def test_a_short_option_a_command_allows_is_an_option_not_an_argument():
    from prisond.client.cli import Usage, flags
    assert flags(["-f", "web"], {"-f", "--follow"}, 1) == ({"-f"}, ["web"])
    assert flags(["-x"], {"--json"}, None) == (set(), ["-x"])  # not allowed: an argument, as before
    try:
        flags(["--nope"], {"-f"}, None)
        raise AssertionError("an unknown long option passed")
    except Usage:
        pass
