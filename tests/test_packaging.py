"""`pip install .` builds the shim and prisonjail: the wheel pip builds carries them (the shim
with only the wrapped symbols exported), and installs both commands."""
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.root  # builds in the checkout (build/)
def test_the_wheel_carries_the_built_shim_and_the_commands(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), ROOT], check=True, capture_output=True)
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as zf:
        names = zf.namelist()
        assert "prisond/libprisonshim.so" in names and "prisond/prisonjail" in names
        info = next(i for i in zf.infolist() if i.filename == "prisond/prisonjail")
        assert (info.external_attr >> 16) & 0o111  # executable
        assert zf.read("prisond/prisonjail")[:4] == b"\x7fELF"
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        text = zf.read(entry).decode()
        assert "prisond = prisond.service.daemon:main" in text and "prisonctl = prisond.client.cli:main" in text
        zf.extract("prisond/libprisonshim.so", tmp_path)
    out = subprocess.run(["nm", "-D", "--defined-only", str(tmp_path / "prisond" / "libprisonshim.so")],
                         capture_output=True, text=True, check=True).stdout
    assert {"bind", "connect", "gethostname"} <= {line.split()[-1] for line in out.splitlines()}
    assert "prison_bind" not in out and "parse_policy" not in out
