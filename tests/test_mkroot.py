"""prisonctl mkroot, on a fake host tree."""
import os

import pytest

from prisond.client import mkroot

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
    (h / "etc" / "gshadow").write_text("root:*::\n")
    for d in ("ssl/certs", "ssl/private", "nginx/sites-enabled", "ssh", "python3.11", "python3"):
        (h / "etc" / d).mkdir(parents=True)
    os.symlink("/usr/share/ca-certificates/a.crt", h / "etc/ssl/certs/a.pem")
    (h / "etc/ssl/certs/ca-certificates.crt").write_text("CERTS\n")
    (h / "etc/ssl/openssl.cnf").write_text("[openssl]\n")
    (h / "etc/ssl/private/host.key").write_text("PRIVATE KEY\n")
    (h / "etc/nginx/nginx.conf").write_text("events {}\n")
    (h / "etc/ssh/ssh_host_ed25519_key").write_text("PRIVATE KEY\n")
    (h / "etc/python3.11/sitecustomize.py").write_text("")
    return str(h)


def test_make_a_root_from_the_host(tmp_path, host):
    base = tmp_path / "roots"
    base.mkdir(mode=0o700)
    r = mkroot.make(str(base / "r"), host=host)
    root = base / "r"
    assert r.mounts == ["/usr"]
    assert bool(r.notes) == (os.geteuid() != 0)  # "roots" (0700) hides the root only when it is root's
    assert os.readlink(root / "bin") == "usr/bin" and not os.path.lexists(root / "sbin")  # only what the host has
    assert os.readlink(root / "etc" / "alternatives" / "awk") == "/usr/bin/mawk"
    assert (root / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == "CERTS\n"
    assert os.readlink(root / "etc/ssl/certs/a.pem") == "/usr/share/ca-certificates/a.crt"
    assert (root / "etc/ssl/openssl.cnf").is_file() and (root / "etc/python3.11/sitecustomize.py").is_file()
    for secret in ("shadow", "gshadow", "ssl/private", "nginx", "ssh"):
        assert not os.path.lexists(root / "etc" / secret), secret
    assert "alice" not in (root / "etc" / "passwd").read_text()
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777" and oct((root / "root").stat().st_mode & 0o777) == "0o700"
    assert "path: " + str(root) in r.snippet() and "mounts: [/usr]" in r.snippet()


def test_make_refuses_a_non_empty_directory_and_warns_of_an_open_parent(tmp_path, host):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(mkroot.MkrootError, match="not empty"):
        mkroot.make(str(tmp_path / "full"), host=host)
    import shutil
    import tempfile
    open_dir = tempfile.mkdtemp(dir="/tmp")  # /tmp and / are open to every user: so is this
    os.chmod(open_dir, 0o755)
    try:
        r = mkroot.make(os.path.join(open_dir, "r"), host=host)
    finally:
        shutil.rmtree(open_dir)
    assert r.notes and "host users can reach" in r.notes[0] and "0700" in r.notes[0]


def test_make_again_with_force_refreshes_in_place(tmp_path, host):
    root = tmp_path / "r"
    mkroot.make(str(root), host=host)
    (root / "srv" / "index.html").write_text("the prison's\n")
    os.unlink(root / "etc" / "hosts")
    os.symlink("/etc/hostname", root / "etc" / "hosts")  # planted: replaced, not followed
    os.rmdir(root / "tmp")
    (root / "tmp").write_text("")  # a file where a directory goes: replaced
    r = mkroot.make(str(root), host=host, force=True)
    assert r.notes == [] or "0700" in r.notes[0]
    hosts = root / "etc" / "hosts"
    assert hosts.read_text() == "127.0.0.1 localhost\n" and not hosts.is_symlink()
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777"
    assert (root / "srv" / "index.html").read_text() == "the prison's\n"  # the prison's files are kept
    assert not [n for n in os.listdir(root / "etc") if n.startswith(".mkroot-")]  # no temporary names left


def test_make_refuses_a_directory_where_a_file_goes_and_a_symlinked_root(tmp_path, host):
    root = tmp_path / "r"
    mkroot.make(str(root), host=host)
    os.unlink(root / "etc" / "passwd")
    (root / "etc" / "passwd").mkdir()
    (root / "etc" / "passwd" / "data").write_text("the prison's\n")
    with pytest.raises(mkroot.MkrootError, match=r"/etc/passwd is a directory where mkroot puts a file"):
        mkroot.make(str(root), host=host, force=True)
    assert (root / "etc" / "passwd" / "data").exists()  # nothing removed
    os.symlink(root, tmp_path / "link")
    with pytest.raises(mkroot.MkrootError, match="link is a symlink"):
        mkroot.make(str(tmp_path / "link"), host=host, force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(mkroot.MkrootError, match="file: not a directory"):
        mkroot.make(str(tmp_path / "file"), host=host, force=True)


def test_what_an_earlier_mkroot_copied_is_noted_not_removed(tmp_path, host):
    root = tmp_path / "r"
    mkroot.make(str(root), host=host)
    (root / "etc/ssl/private").mkdir()
    (root / "etc/ssl/private/host.key").write_text("PRIVATE KEY\n")
    (root / "etc/nginx").mkdir()  # empty: a mount point (mounts: /etc/nginx), not a copy
    r = mkroot.make(str(root), host=host, force=True)
    left = [n for n in r.notes if "earlier mkroot" in n]
    assert len(left) == 1 and left[0].startswith(f"{root}/etc/ssl/private is left from an earlier mkroot")
    assert (root / "etc/ssl/private/host.key").exists()


def test_trees_to_copy_are_the_allow_list_matched_on_the_host():
    etc = {"": ["alternatives", "nginx", "python3", "python3.11", "python3.12", "python3-dev", "ssh", "ssl"],
           "ssl": ["certs", "private"]}
    assert mkroot.trees_to_copy(etc) == ["etc/alternatives", "etc/ssl/certs", "etc/python3", "etc/python3.11",
                                         "etc/python3.12"]
    assert mkroot.trees_to_copy({}) == []


def test_verdict_replaces_any_non_directory_and_never_removes_a_directory():
    import stat
    assert mkroot.verdict("dir", None) == "make" and mkroot.verdict("file", None) == "make"
    assert mkroot.verdict("dir", stat.S_IFDIR | 0o755) == "use"
    assert mkroot.verdict("file", stat.S_IFDIR | 0o755) == "refuse"
    for kind in (stat.S_IFLNK, stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
        assert mkroot.verdict("dir", kind | 0o644) == "replace" and mkroot.verdict("file", kind | 0o644) == "replace"


MOUNTINFO = r"""27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
90 27 0:50 / /srv/roots/a/usr ro,relatime - ext4 /dev/vda ro
91 27 0:51 / /srv/roots/a\040b/proc rw - proc proc rw
92 27 0:52 / /srv/roots/ab rw - tmpfs tmpfs rw
93 27 0:53 / /srv/roots/c rw - ext4 /dev/vdb rw
"""


def test_mounts_inside_a_root_but_not_the_root_itself_or_a_sibling():
    assert mkroot.mounts_inside(MOUNTINFO, "/srv/roots/a") == ["/srv/roots/a/usr"]
    assert mkroot.mounts_inside(MOUNTINFO, "/srv/roots/a b") == ["/srv/roots/a b/proc"]
    assert mkroot.mounts_inside(MOUNTINFO, "/srv/roots/c") == []  # a filesystem of its own: fine
    assert mkroot.unescape_mountinfo(r"/x\040y\011z\134w\04") == "/x y\tz\\w\\04"
    assert mkroot.inside("/a/b", "/a") and not mkroot.inside("/a", "/a") and not mkroot.inside("/ab", "/a")


def test_in_use_message_names_the_first_pid_or_mount():
    assert mkroot.in_use_message("/r", [], []) is None
    assert mkroot.in_use_message("/r", [(12, "init", "root"), (13, "sh", "cwd")], ["/r/usr"]) == (
        "/r is in use: pid 12 (init) has its root directory in it (and 1 more); stop the prison (or the process) first")
    assert mkroot.in_use_message("/r", [(13, "sh", "cwd")], []).startswith("/r is in use: pid 13 (sh) has its current")
    assert mkroot.in_use_message("/r", [], ["/r/usr", "/r/proc"]) == (
        "/r is in use: /r/usr is mounted inside it (and 1 more); unmount it first")


def test_reaches_by_identity(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    st = os.stat(tmp_path / "a")
    assert mkroot.reaches(str(tmp_path / "a" / "b"), (st.st_dev, st.st_ino))
    assert mkroot.reaches(str(tmp_path / "a"), (st.st_dev, st.st_ino))
    assert not mkroot.reaches(str(tmp_path), (st.st_dev, st.st_ino)) and not mkroot.reaches("/", (st.st_dev, st.st_ino))
