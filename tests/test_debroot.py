"""prisonctl mkroot --debian: the host's apt sources read, the cache made once and atomically,
each root a copy of it (never hard links), with a fake debootstrap; the command's errors."""
import os
import stat
import subprocess

import pytest

from prisond.client import debroot
from prisond.client.debroot import Entry, Plan
from prisond.client.mkroot import MkrootError

ONE_LINE = """# comment
deb http://deb.debian.org/debian bookworm main contrib
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://example.test/apt stable main
deb-src http://deb.debian.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main  # trailing
"""
DEB822 = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://old.example.test/debian
Suites: buster
"""


def test_one_line_sources_keep_deb_lines_without_options_or_comments():
    assert debroot.one_line_entries(ONE_LINE) == [
        Entry("http://deb.debian.org/debian", "bookworm", ("main", "contrib")),
        Entry("https://example.test/apt", "stable", ("main",)),
        Entry("http://security.debian.org/debian-security", "bookworm-security", ("main",))]


def test_deb822_sources_one_entry_per_suite_and_disabled_stanzas_skipped():
    assert debroot.deb822_entries(DEB822) == [
        Entry("http://deb.debian.org/debian", "bookworm", ("main",)),
        Entry("http://deb.debian.org/debian", "bookworm-updates", ("main",)),
        Entry("http://deb.debian.org/debian-security", "bookworm-security", ("main",))]


KNOWN = {"bookworm", "trixie", "bullseye"}.__contains__


def test_choose_the_hosts_debian_suite_its_mirror_and_its_updates():
    entries = [Entry("https://deb.nodesource.com/node_20.x", "nodistro")] + debroot.deb822_entries(DEB822)
    p = debroot.choose(entries, KNOWN, arch="arm64")
    assert (p.suite, p.mirror, p.arch) == ("bookworm", "http://deb.debian.org/debian", "arm64")
    assert p.sources_list() == ("deb http://deb.debian.org/debian bookworm main\n"
                                "deb http://deb.debian.org/debian bookworm-updates main\n"
                                "deb http://deb.debian.org/debian-security bookworm-security main\n")
    assert p.key.startswith("bookworm-arm64-") and p.key.endswith(f"-r{debroot.RECIPE}")
    other = debroot.choose(entries, KNOWN, mirror="http://mirror.example.test/debian/")
    assert other.mirror == "http://mirror.example.test/debian" and other.extra == [] and other.key != p.key
    assert debroot.choose(entries, KNOWN, suite="trixie").suite == "trixie"


def test_choose_skips_a_third_partys_repository_and_prefers_the_hosts_codename():
    docker = Entry("https://download.docker.com/linux/debian", "bookworm", ("stable",))
    trixie = Entry("http://deb.debian.org/debian", "trixie", ("main",))
    bookworm = Entry("http://mirror.example.test/debian", "bookworm", ("main", "contrib"))
    p = debroot.choose([docker, trixie, bookworm], KNOWN, codename="bookworm")
    assert (p.suite, p.mirror) == ("bookworm", "http://mirror.example.test/debian")
    assert debroot.choose([docker, trixie, bookworm], KNOWN).suite == "trixie"  # no codename: the first


def test_host_codename_from_os_release(tmp_path):
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert debroot.host_codename(str(tmp_path / "os-release")) == "bookworm"
    assert debroot.host_codename(str(tmp_path / "none")) is None


def test_choose_says_what_to_give_when_the_host_has_no_debian_source():
    with pytest.raises(MkrootError, match="give --suite and --mirror"):
        debroot.choose([Entry("https://deb.nodesource.com/node_20.x", "nodistro")], KNOWN)
    with pytest.raises(MkrootError, match="give --mirror"):
        debroot.choose([], KNOWN, suite="bookworm")
    with pytest.raises(MkrootError, match="does not know the suite 'sid-typo'"):
        debroot.choose([], KNOWN, suite="sid-typo", mirror="http://m.example.test/debian")


def test_last_error_is_debootstraps_reason():
    out = "I: Retrieving InRelease\nE: Failed getting release file http://x/dists/bookworm/Release\n"
    assert debroot.last_error(out) == "E: Failed getting release file http://x/dists/bookworm/Release"
    assert debroot.last_error("a\nb\n\n") == "b" and debroot.last_error("") == "(no output)"


FAKE_DEBOOTSTRAP = """#!/bin/sh
# a fake debootstrap: ARGS... SUITE TARGET MIRROR; counts its runs in $COUNT
echo run >> "$COUNT"
for a in "$@"; do case $a in --*) ;; *) set -- "$@" "$a" ;; esac; done
target=$(echo "$@" | awk '{print $(NF-1)}')
[ -n "$FAIL" ] && { echo "I: Retrieving InRelease"; echo "E: $FAIL"; mkdir -p "$target/etc"; exit 1; }
mkdir -p "$target/usr/bin" "$target/usr/sbin" "$target/etc/apt" "$target/dev" "$target/run" \
    "$target/var/cache/apt/archives/partial" "$target/var/lib/apt/lists/partial" "$target/var/lib/dpkg"
echo "binary $RUN" > "$target/usr/bin/prog"
ln -s usr/bin "$target/bin"
echo host-name > "$target/etc/hostname"
echo "nameserver 192.0.2.1" > "$target/etc/resolv.conf"
touch "$target/dev/null" "$target/var/cache/apt/archives/apt.deb" "$target/var/lib/apt/lists/x_Packages"
echo "Package: base-files" > "$target/var/lib/dpkg/status"
"""

PLAN = Plan("bookworm", "amd64", "http://deb.example.test/debian",
            [Entry("http://deb.example.test/debian-security", "bookworm-security")])


@pytest.fixture
def fake(tmp_path, monkeypatch):
    tool = tmp_path / "debootstrap"
    tool.write_text(FAKE_DEBOOTSTRAP)
    tool.chmod(0o755)
    monkeypatch.setenv("COUNT", str(tmp_path / "count"))
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "resolv.conf").write_text("nameserver 10.0.0.53\n")
    base = tmp_path / "roots"
    base.mkdir(mode=0o700)

    def make(name: str, **kw):
        kw.setdefault("the_plan", PLAN)
        return debroot.make(str(base / name), cache=str(tmp_path / "cache" / "roots"), host=str(host),
                            debootstrap=str(tool), check=lambda p: None, **kw)

    make.runs = lambda: len((tmp_path / "count").read_text().split()) if (tmp_path / "count").exists() else 0
    make.cache = tmp_path / "cache" / "roots"
    make.base = base
    return make


def test_the_cache_is_made_once_finished_and_closed(fake):
    r, timing = fake("a")
    assert fake.runs() == 1 and timing.made is not None
    tree = fake.cache / PLAN.key
    assert sorted(os.listdir(fake.cache)) == [f".{PLAN.key}.lock", PLAN.key]  # no .build- left
    for d in (fake.cache, fake.cache.parent):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    policy = tree / "usr/sbin/policy-rc.d"
    assert stat.S_IMODE(policy.stat().st_mode) == 0o755
    assert subprocess.run([str(policy), "nginx", "start"]).returncode == 101
    assert (tree / "etc/apt/sources.list").read_text() == PLAN.sources_list()
    assert not os.path.lexists(tree / "etc/hostname")
    assert os.listdir(tree / "dev") == [] and os.listdir(tree / "var/cache/apt/archives") == ["partial"]
    assert os.listdir(tree / "var/lib/apt/lists") == ["partial"]
    assert r.mounts == [] and f"path: {r.root}" in r.snippet() and "mounts" not in r.snippet()
    assert "made in" in r.notes[0]
    b, timing = fake("b")
    assert fake.runs() == 1 and timing.made is None and "from the cache" in b.notes[0]


def test_each_root_is_a_copy_never_a_hard_link_to_the_cache(fake):
    fake("a")
    root, tree = fake.base / "a", fake.cache / PLAN.key
    assert (root / "usr/bin/prog").read_text() == "binary \n" and os.readlink(root / "bin") == "usr/bin"
    a, c = os.stat(root / "usr/bin/prog"), os.stat(tree / "usr/bin/prog")
    assert a.st_ino != c.st_ino and a.st_nlink == 1
    with open(root / "usr/bin/prog", "r+") as fh:  # written in place, as a prison may
        fh.write("CHANGED")
    assert (tree / "usr/bin/prog").read_text() == "binary \n"
    assert (root / "etc/resolv.conf").read_text() == "nameserver 10.0.0.53\n"  # the host's, now
    assert (root / "etc/hosts").read_text().startswith("127.0.0.1\tlocalhost\n")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o755 and os.stat(root).st_uid == os.geteuid()


def test_refresh_makes_the_cache_anew_and_a_failed_make_leaves_none(fake, monkeypatch):
    fake("a")
    monkeypatch.setenv("RUN", "2")
    fake("b", refresh=True)
    assert fake.runs() == 2 and (fake.cache / PLAN.key / "usr/bin/prog").read_text() == "binary 2\n"
    assert (fake.base / "a/usr/bin/prog").read_text() == "binary \n"  # a root made before is its own
    monkeypatch.setenv("FAIL", "Failed getting release file http://deb.example.test/debian/dists/x/Release")
    with pytest.raises(MkrootError, match=r"debootstrap of bookworm \(amd64\) from http://deb.example.test/debian "
                                          r"failed: E: Failed getting release file"):
        fake("c", refresh=True)
    assert (fake.cache / PLAN.key / "usr/bin/prog").read_text() == "binary 2\n"  # the old cache kept
    other = Plan("trixie", "amd64", PLAN.mirror)
    with pytest.raises(MkrootError, match="failed"):
        fake("d", the_plan=other)
    assert not [n for n in os.listdir(fake.cache) if not n.endswith(".lock") and n != PLAN.key]  # nothing half made
    assert os.listdir(fake.base / "d") == []


def test_a_dead_builders_leftovers_and_an_older_recipes_cache_are_removed(fake):
    fake.cache.mkdir(parents=True)
    (fake.cache / f".build-{PLAN.key}-999999999").mkdir()  # no such pid
    (fake.cache / f"{PLAN.family}-r0").mkdir()
    fake("a")
    assert sorted(os.listdir(fake.cache)) == [f".{PLAN.key}.lock", PLAN.key]


def test_a_root_is_copied_only_into_an_empty_directory(fake):
    (fake.base / "used").mkdir()
    (fake.base / "used" / "data").write_text("the prison's\n")
    with pytest.raises(MkrootError, match="exists and is not empty: a Debian root is copied whole"):
        fake("used")
    assert fake.runs() == 0 and (fake.base / "used" / "data").read_text() == "the prison's\n"
    (fake.base / "empty").mkdir()
    fake("empty")
    assert (fake.base / "empty/usr/bin/prog").is_file()


def test_the_host_sources_are_read_from_both_formats(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://a.example.test/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "x.list").write_text("deb http://b.example.test/debian trixie main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "y.list.disabled").write_text("deb http://c.example.test/debian sid main\n")
    got = debroot.host_entries(str(tmp_path / "sources.list"), str(tmp_path / "sources.list.d"))
    assert [e.uri.split("/")[2] for e in got] == ["a.example.test", "b.example.test"] + ["deb.debian.org"] * 3


def test_check_mirror_names_an_unreachable_mirror_and_a_missing_file_mirror(tmp_path):
    with pytest.raises(MkrootError, match=r"cannot reach the mirror http://127.0.0.1:9/debian "
                                          r"\(http://127.0.0.1:9/debian/dists/bookworm/Release: .*--mirror"):
        debroot.check_mirror(Plan("bookworm", "amd64", "http://127.0.0.1:9/debian"), timeout=5)
    with pytest.raises(MkrootError, match="has no dists/bookworm/Release"):
        debroot.check_mirror(Plan("bookworm", "amd64", f"file://{tmp_path}"))
    (tmp_path / "dists/bookworm").mkdir(parents=True)
    (tmp_path / "dists/bookworm/Release").write_text("Suite: bookworm\n")
    debroot.check_mirror(Plan("bookworm", "amd64", f"file://{tmp_path}"))


# ------------------------------------------------------------------ the command (as root)

def mkroot_cli(*args, env=None) -> subprocess.CompletedProcess:
    from support.daemon import prisonctl_cmd
    return subprocess.run(prisonctl_cmd() + ["mkroot", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1 and r.stderr.startswith("prisonctl: mkroot: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


@pytest.mark.root
def test_the_command_says_debootstrap_is_missing(tmp_path):
    """--refresh: the cache on this machine may be there; without debootstrap nothing is removed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/usr/bin/dpkg", bin_dir / "dpkg")  # the host's architecture comes from dpkg
    (tmp_path / "roots").mkdir(mode=0o700)
    r = mkroot_cli("--debian", "--refresh", tmp_path / "roots" / "r", env=dict(os.environ, PATH=str(bin_dir)))
    assert "debootstrap is not installed (not found on PATH): apt-get install debootstrap" in one_line_error(r)


@pytest.mark.root
def test_the_command_names_an_unreachable_mirror(tmp_path):
    """The suite's network namespace (tests/conftest.py): nothing listens on 127.0.0.1:9."""
    (tmp_path / "roots").mkdir(mode=0o700)
    r = mkroot_cli("--debian", "--suite", "bookworm", "--mirror=http://127.0.0.1:9/debian", tmp_path / "roots" / "r")
    err = one_line_error(r)
    assert "cannot reach the mirror http://127.0.0.1:9/debian" in err and "Connection refused" in err
    assert os.listdir(tmp_path / "roots" / "r") == []
    key = Plan("bookworm", debroot.host_arch(), "http://127.0.0.1:9/debian").key
    assert not os.path.exists(os.path.join(debroot.CACHE, key))  # nothing cached (its empty lock file: removed here)
    os.unlink(os.path.join(debroot.CACHE, f".{key}.lock"))


def test_a_failed_copy_leaves_the_directory_empty(fake, monkeypatch, tmp_path):
    fake("a")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cp").write_text('#!/bin/sh\nmkdir -p "$5/usr/bin"; echo half > "$5/usr/bin/x"\n'
                               'echo "cp: error writing: No space left on device" >&2; exit 1\n')
    (bin_dir / "cp").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(MkrootError, match=r"failed \(DIR left empty\): cp: error writing: No space left on device"):
        fake("b")
    assert os.listdir(fake.base / "b") == []
