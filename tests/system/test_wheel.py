"""What a user installs with pip is what runs: the wheel built from this checkout, installed
into a fresh venv (its dependencies from the wheels scripts/setup keeps, so no network), runs
the daemon with the kernel layer on, two prisons up, and a connect from one of them leaves
from the prison's address on the wire."""
import glob
import os
import subprocess
import sys
import zipfile

import pytest

from support.daemon import Daemon
from support.fixtures import TcpServer
from support.wire import Wire

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHEELS = "/usr/local/lib/prisond/wheels"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), ROOT], check=True, capture_output=True)
    (wheel,) = glob.glob(str(tmp / "dist" / "prisond-*.whl"))
    with zipfile.ZipFile(wheel) as zf:  # every subpackage, found
        names = zf.namelist()
    assert {"prisond/kernel/enforce.py", "prisond/native/jail/init.c", "prisond/prisonjail", "prisond/libprisonshim.so"} <= set(names)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-index", "--find-links", WHEELS, wheel], check=True, capture_output=True)
    return str(tmp / "venv" / "bin")


def test_the_installed_wheel_serves_with_the_kernel_layer(venv, tmp_path, nettool_static):
    where = subprocess.run([os.path.join(venv, "python"), "-c", "import prisond; print(prisond.__file__)"],
                           capture_output=True, text=True, check=True, cwd="/").stdout.strip()
    assert where.startswith(os.path.dirname(venv)), where  # the wheel's, not this checkout
    for cmd in ("prisond", "prisonctl"):
        out = subprocess.run([os.path.join(venv, cmd), "--version"], capture_output=True, text=True, cwd="/")
        assert out.returncode == 0 and out.stdout.startswith(f"{cmd} "), out
    d = Daemon(str(tmp_path / "d"), "prisons:\n  a: {ip4: [127.0.2.1]}\n  b: {ip4: [127.0.3.1]}\n", bindir=venv)
    sink = TcpServer("127.0.0.9")
    try:
        d.start()
        listed = d.call("prison.list")
        assert [(p["state"], p["enforcement"]) for p in listed] == [("running", "kernel")] * 2
        with Wire() as wire:
            r = d.exec("a", nettool_static, "connect", "127.0.0.9", sink.port)  # static: the kernel coerces
        assert r.stdout.startswith(b"ok local=127.0.2.1:"), r
        assert {s for s, _ in wire.syns(sink.port)} == {"127.0.2.1"}
        assert d.stop() == 0
    finally:
        sink.close()
        d.stop()
        d.remove_cgroups()
