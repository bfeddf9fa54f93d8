"""prisonctl mkroot, on a fake host tree."""
import os

import pytest

from prisond import mkroot

PASSWD = """root:x:0:0:root:/root:/bin/bash
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
www-data:x:33:alice,www-data
alice:x:1000:
nogroup:x:65534:
"""


def test_system_accounts_keep_no_user_accounts():
    passwd, group = mkroot.system_accounts(PASSWD, GROUP)
    assert [ln.split(":")[0] for ln in passwd.splitlines()] == ["root", "www-data", "nobody"]
    assert group.splitlines() == ["root:x:0:", "www-data:x:33:www-data", "nogroup:x:65534:"]


@pytest.fixture
def host(tmp_path):
    h = tmp_path / "host"
    (h / "usr" / "bin").mkdir(parents=True)
    (h / "etc" / "alternatives").mkdir(parents=True)
    os.symlink("usr/bin", h / "bin")
    os.symlink("/usr/bin/mawk", h / "etc" / "alternatives" / "awk")
    (h / "etc" / "passwd").write_text(PASSWD)
    (h / "etc" / "group").write_text(GROUP)
    (h / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (h / "etc" / "shadow").write_text("root:secret:::\n")
    return str(h)


def test_make_a_root_from_the_host(tmp_path, host):
    base = tmp_path / "roots"
    base.mkdir(mode=0o700)
    r = mkroot.make(str(base / "r"), host=host)
    root = base / "r"
    assert r.mounts == ["/usr"] and r.notes == []
    assert os.readlink(root / "bin") == "usr/bin" and not os.path.lexists(root / "sbin")  # only what the host has
    assert os.readlink(root / "etc" / "alternatives" / "awk") == "/usr/bin/mawk"
    assert (root / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert not (root / "etc" / "shadow").exists()
    assert "alice" not in (root / "etc" / "passwd").read_text()
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777" and oct((root / "root").stat().st_mode & 0o777) == "0o700"
    assert "path: " + str(root) in r.snippet() and "mounts: [/usr]" in r.snippet()


def test_make_refuses_a_non_empty_directory_and_warns_of_an_open_parent(tmp_path, host):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(mkroot.MkrootError, match="not empty"):
        mkroot.make(str(tmp_path / "full"), host=host)
    os.chmod(tmp_path, 0o755)
    r = mkroot.make(str(tmp_path / "r"), host=host)
    assert r.notes and "0700" in r.notes[0]
