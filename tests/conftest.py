"""Test-wide set-up: the whole suite runs in a network namespace of its own.

The pytest process leaves the host's network namespace before any test runs, so every
address, alias and packet of the suite (and of the daemons it starts, which inherit the
namespace) stays in a namespace that vanishes with the process.

Tests that need root (namespaces, cgroups, BPF, the daemon) are marked `root`: those under
integration/, escape/ and system/ all are, and the others say so.  Without root, a contributor
gets fast feedback from the rest (`python3 -m pytest -m "not root"`); a `root` test run
without root fails, it never skips.
"""
import ctypes
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

CLONE_NEWNET = 0x40000000


ROOT_FOLDERS = ("integration", "escape", "system", "services")


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (namespaces, cgroups, BPF, the daemon)")
    if os.geteuid() != 0:
        return  # only the tests that need no root can pass: the others fail, each saying why
    if os.environ.get("PRISOND_TEST_NETNS") == str(os.getpid()):
        return
    here = os.path.realpath(os.path.dirname(__file__))
    if any(here == d or here.startswith(d + "/") for d in ("/tmp", "/var/tmp", "/run", "/dev/shm")):
        # the prisons run the suite's programs from the checkout; an isolated prison (the
        # default) has its own /tmp, /var/tmp, /run and /dev/shm, and would not see them
        raise SystemExit(f"tests: the checkout ({os.path.dirname(here)}) is under a directory every "
                         "isolated prison has its own of: clone it elsewhere (e.g. /srv or your home)")
    libc = ctypes.CDLL(None, use_errno=True)
    # The namespace the suite was started in, kept open: only tests/system uses it, to fetch
    # Debian packages from the mirror while it builds its cached root (no test traffic).
    host_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    os.environ["PRISOND_TEST_HOST_NETNS"] = f"/proc/{os.getpid()}/fd/{host_netns}"
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"tests: cannot enter a private network namespace: {os.strerror(err)} "
                         "(the suite runs as root)")
    os.environ["PRISOND_TEST_NETNS"] = str(os.getpid())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # A second IPv6 address on lo for host-side servers that are not ::1.
    subprocess.run(["ip", "-6", "addr", "add", "fd00:ff::9/128", "dev", "lo", "nodad"], check=True)


def pytest_collection_modifyitems(config, items):
    import pytest
    for item in items:
        if any(part in ROOT_FOLDERS for part in item.path.relative_to(os.path.dirname(__file__)).parts[:-1]):
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item):
    import pytest
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.fail("this test needs root (namespaces, cgroups, BPF, the daemon): run the suite as root",
                    pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """Last safety net: no cgroup of this run outlives it (a daemon killed mid-test leaves some)."""
    if os.geteuid() != 0:
        return
    from prisond.host.cgroup import detect_host
    layout = detect_host()
    if layout is None:
        return
    import glob
    import signal
    for top in glob.glob(os.path.join(layout.root, f"prisond-test-{os.getpid()}-*")) + \
            glob.glob(os.path.join(layout.root, f"prisond-test-unit-{os.getpid()}")):
        for child in glob.glob(os.path.join(top, "*/")):
            try:
                with open(os.path.join(child, "cgroup.procs")) as fh:
                    for pid in fh.read().split():
                        os.kill(int(pid), signal.SIGKILL)
                os.rmdir(child)
            except OSError:
                pass
        try:
            os.rmdir(top)
        except OSError:
            pass
    from support.daemon import remove_v1_cgroups
    for top in glob.glob(f"/sys/fs/cgroup/*/prisond-test-{os.getpid()}-*"):
        remove_v1_cgroups(os.path.basename(top))
    from prisond.host.lock import CGROUP_LOCKS
    for lock in glob.glob(os.path.join(CGROUP_LOCKS, f"prisond-test-{os.getpid()}-*.lock")):
        os.unlink(lock)


from support.fixtures import *  # noqa: E402, F403  (fixtures shared by all suites)
