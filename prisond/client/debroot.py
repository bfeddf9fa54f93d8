"""`prisonctl mkroot --debian DIR`: a Debian root of its own, for a customer to live in.

Where the thin root (mkroot.py) shares the host's /usr, this one is a whole Debian system:
debootstrap's minbase variant plus what a customer needs to run apt inside (apt, ca-certificates),
from the host's own apt sources (the mirror and suite of the host's Debian entry), for the host's
architecture.  `--suite` and `--mirror` override them.

debootstrap runs once per (suite, arch, mirror) and what it made is cached under
/var/cache/prisond/roots (root's and closed to others, 0700: it holds set-uid programs, and
the daemon refuses a prison root a host user could reach).  The cache is made in a directory
of its own (.build-KEY-PID) and renamed into place only when complete, so a half-made cache is
never used; a lock per key keeps two mkroots from making it twice; `--refresh` makes it anew.
Each root is then a copy of the cache, `cp -a --reflink=auto`: a reflink where the
filesystem shares blocks (btrfs, xfs), a plain copy elsewhere; never hard links (a prison
writing a file in place would change the cache and every other root).

What the cache gets after debootstrap, once: /usr/sbin/policy-rc.d exiting 101 (no
maintainer script starts a service: there is no service manager in a prison; Debian's
container images do the same); no /etc/hostname (debootstrap copies the host's; a prison's
hostname is the daemon's business), no machine-id; an empty /dev (the prison gets its own);
no downloaded packages or package lists (apt-get update inside fetches them); the apt sources
of the suite.  What each root gets when cloned: the host's resolv.conf, and an /etc/hosts
naming localhost if it has none.

The root is cloned into DIR only when DIR is absent or empty (a copy into a root a prison used
could write through a link the prison planted: --force does not apply); DIR in use is
refused as for the thin root.  Errors are MkrootError, one line, naming what is missing.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from prisond.client import mkroot
from prisond.client.mkroot import MkrootError, Result
from prisond.host.reach import hidden_from_users

CACHE = "/var/cache/prisond/roots"
RECIPE = "3"  # bump when what the cache holds changes: it is part of the key
VARIANT = "minbase"
INCLUDE = ("apt", "ca-certificates")
SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"
POLICY_RC_D = b"#!/bin/sh\n# prisond: maintainer scripts start no service in a prison (no service manager)\nexit 101\n"
HOSTS = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
DEBOOTSTRAP_TIMEOUT = 1800


@dataclass(frozen=True)
class Entry:
    """One `deb` line of an apt source (one-line or deb822 stanza, one suite each)."""
    uri: str
    suite: str
    components: tuple[str, ...] = ("main",)


@dataclass
class Plan:
    suite: str
    arch: str
    mirror: str
    extra: list[Entry] = field(default_factory=list)  # the suite's -updates and -security lines

    @property
    def key(self) -> str:
        return f"{self.family}-r{RECIPE}"

    @property
    def family(self) -> str:
        """The key without the recipe: what an older mkroot cached for the same root."""
        digest = hashlib.sha256("\n".join((VARIANT, *INCLUDE, self.mirror)).encode()).hexdigest()[:12]
        return f"{self.suite}-{self.arch}-{digest}"

    def sources_list(self) -> str:
        lines = [f"deb {self.mirror} {self.suite} main"]
        lines += [f"deb {e.uri} {e.suite} {' '.join(e.components)}" for e in self.extra]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ pure parts

def one_line_entries(text: str) -> list[Entry]:
    """The `deb` lines of a sources.list (options in [...] skipped). Pure."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^]]*\]", "", line)
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            out.append(Entry(parts[1], parts[2], tuple(parts[3:]) or ("main",)))
    return out


def deb822_entries(text: str) -> list[Entry]:
    """The deb entries of a deb822 .sources file, one per URI and suite; stanzas with
    `Enabled: no` skipped. Pure."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                last, _, value = line.partition(":")
                last = last.strip().lower()
                fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        comps = tuple(fields.get("components", "main").split()) or ("main",)
        out += [Entry(u, s, comps) for u in fields.get("uris", "").split() for s in fields.get("suites", "").split()]
    return out


def choose(entries: list[Entry], known_suite, suite: str | None = None, mirror: str | None = None,
           arch: str = "amd64", codename: str | None = None) -> Plan:
    """The plan from the host's entries: the first with a `main` component whose suite
    debootstrap knows (known_suite(s)), the host's own codename first, gives the mirror and
    suite, unless given (a third party's repository, such as Docker's `bookworm stable`, has
    no main); its -updates and -security siblings go in the root's sources. Pure, but for
    known_suite. MkrootError when nothing fits."""
    debian = [e for e in entries if known_suite(e.suite) and "main" in e.components]
    debian.sort(key=lambda e: e.suite != codename)  # stable: the host's order otherwise
    base = next((e for e in debian if suite is None or e.suite == suite), None)
    if base is None and (suite is None or mirror is None):
        base = next(iter(debian), None)
    chosen_suite = suite or (base.suite if base else None)
    chosen_mirror = mirror or (base.uri if base else None)
    if not chosen_suite or not chosen_mirror:
        missing = " and ".join(w for w, v in (("--suite", chosen_suite), ("--mirror", chosen_mirror)) if not v)
        raise MkrootError("no Debian suite debootstrap knows in the host's apt sources "
                          f"({SOURCES_LIST}, {SOURCES_DIR}/*.list, *.sources): give {missing}")
    if not known_suite(chosen_suite):
        raise MkrootError(f"debootstrap does not know the suite {chosen_suite!r} "
                          "(no script in /usr/share/debootstrap/scripts)")
    extra = []
    if mirror is None or (base and mirror == base.uri):
        extra = [Entry(e.uri, e.suite, ("main",)) for e in entries
                 if e.suite in (f"{chosen_suite}-updates", f"{chosen_suite}-security")]
    return Plan(chosen_suite, arch, chosen_mirror.rstrip("/"), list(dict.fromkeys(extra)))


def last_error(output: str) -> str:
    """debootstrap's own reason: its last `E:` line, else its last line. Pure."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return (errors or lines or ["(no output)"])[-1]


# ------------------------------------------------------------------ the host

def host_entries(sources_list: str = SOURCES_LIST, sources_dir: str = SOURCES_DIR) -> list[Entry]:
    out = []
    for path in [sources_list] + sorted(glob.glob(os.path.join(sources_dir, "*.list"))):
        try:
            with open(path) as fh:
                out += one_line_entries(fh.read())
        except OSError:
            pass
    for path in sorted(glob.glob(os.path.join(sources_dir, "*.sources"))):
        try:
            with open(path) as fh:
                out += deb822_entries(fh.read())
        except OSError:
            pass
    return out


def debootstrap_knows(suite: str, scripts: str = "/usr/share/debootstrap/scripts") -> bool:
    return bool(suite) and "/" not in suite and os.path.exists(os.path.join(scripts, suite))


def host_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise MkrootError(f"cannot tell the host's architecture (dpkg --print-architecture): {exc}") from None


def host_codename(os_release: str = "/etc/os-release") -> str | None:
    """VERSION_CODENAME of the host's os-release (bookworm), or None."""
    try:
        with open(os_release) as fh:
            for line in fh:
                name, _, value = line.strip().partition("=")
                if name == "VERSION_CODENAME":
                    return value.strip('"\'') or None
    except OSError:
        pass
    return None


def plan(suite: str | None = None, mirror: str | None = None) -> Plan:
    return choose(host_entries(), debootstrap_knows, suite, mirror, host_arch(), host_codename())


def check_mirror(p: Plan, timeout: float = 15) -> None:
    """The mirror has the suite's Release file; MkrootError naming the mirror otherwise."""
    url = f"{p.mirror}/dists/{p.suite}/Release"
    if p.mirror.startswith("file:"):
        if not os.path.isfile(urllib.parse.urlsplit(url).path):
            raise MkrootError(f"the mirror {p.mirror} has no dists/{p.suite}/Release")
        return
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read(1)
    except urllib.error.HTTPError as exc:
        raise MkrootError(f"the mirror {p.mirror} has no suite {p.suite} ({url}: HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MkrootError(f"cannot reach the mirror {p.mirror} ({url}: {reason}); "
                          "give a reachable one with --mirror") from None


# ------------------------------------------------------------------ the cache

def closed_dir(path: str) -> None:
    """path a directory of root's, 0700 (made so if absent; an existing one is closed)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = os.open(path, mkroot.DIR_FLAGS)
    try:
        if os.fstat(fd).st_uid != 0 and os.geteuid() == 0:
            os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def finish_cache(tree: str, p: Plan) -> None:
    """What the cache gets once after debootstrap (see the module's docstring)."""
    fd = os.open(tree, mkroot.DIR_FLAGS)
    try:
        sbin = mkroot.open_path(fd, "usr/sbin", tree)
        try:
            mkroot.put_file(sbin, "policy-rc.d", f"{tree}/usr/sbin/policy-rc.d", POLICY_RC_D, 0o755)
        finally:
            os.close(sbin)
        apt = mkroot.open_path(fd, "etc/apt", tree)
        try:
            mkroot.put_file(apt, "sources.list", f"{tree}/etc/apt/sources.list", p.sources_list().encode(), 0o644)
        finally:
            os.close(apt)
    finally:
        os.close(fd)
    for rel in ("etc/hostname", "etc/machine-id", "var/lib/dbus/machine-id"):
        if os.path.lexists(os.path.join(tree, rel)):
            os.unlink(os.path.join(tree, rel))
    for pattern in ("dev/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for path in glob.glob(os.path.join(tree, pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                if not path.endswith("/partial"):
                    _remove(path)
            else:
                os.unlink(path)


def run_debootstrap(p: Plan, target: str, debootstrap: str) -> None:
    argv = [debootstrap, f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", f"--arch={p.arch}",
            p.suite, target, p.mirror]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    except subprocess.TimeoutExpired:
        raise MkrootError(f"debootstrap of {p.suite} from {p.mirror} took more than {DEBOOTSTRAP_TIMEOUT}s") from None
    except OSError as exc:
        raise MkrootError(f"cannot run {debootstrap}: {exc.strerror}") from None
    if r.returncode != 0:
        raise MkrootError(f"debootstrap of {p.suite} ({p.arch}) from {p.mirror} failed: "
                          f"{last_error(r.stdout + r.stderr)}")


def cached(p: Plan, cache: str = CACHE, refresh: bool = False, debootstrap: str | None = None,
           check=check_mirror) -> tuple[str, float | None]:
    """The cached tree for p (made now if absent or refresh): (path, seconds it took to make, or
    None if it was there)."""
    closed_dir(cache)
    path = os.path.join(cache, p.key)
    with open(os.path.join(cache, f".{p.key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another mkroot making it: wait, then use its result
        if os.path.isdir(path) and not refresh:
            return path, None
        tool = debootstrap or shutil.which("debootstrap")
        if not tool:
            raise MkrootError("debootstrap is not installed (not found on PATH): apt-get install debootstrap")
        for old in glob.glob(os.path.join(cache, f".*-{p.key}-*")):  # .build-KEY-PID, .old-KEY-PID
            if not old.endswith(".lock") and not _alive(old.rsplit("-", 1)[-1]):
                _remove(old)  # what a dead mkroot half made
        for old in glob.glob(os.path.join(cache, f"{p.family}-r*")) + glob.glob(os.path.join(cache, f".{p.family}-r*")):
            if os.path.basename(old) not in (p.key, f".{p.key}.lock"):
                _remove(old) if os.path.isdir(old) else os.unlink(old)  # an older recipe's
        check(p)
        t0 = time.monotonic()
        tmp = os.path.join(cache, f".build-{p.key}-{os.getpid()}")
        _remove(tmp)
        try:
            run_debootstrap(p, tmp, tool)
            finish_cache(tmp, p)
            if os.path.isdir(path):
                old = os.path.join(cache, f".old-{p.key}-{os.getpid()}")
                os.rename(path, old)
                os.rename(tmp, path)
                _remove(old)
            else:
                os.rename(tmp, path)
        except BaseException:
            _remove(tmp)
            raise
        return path, time.monotonic() - t0


# ------------------------------------------------------------------ the root

def clone(tree: str, root: str, root_fd: int) -> None:
    """tree's content copied into root (empty): reflinks where the filesystem can, never hard
    links to the cache."""
    r = subprocess.run(["cp", "-a", "--reflink=auto", "--no-target-directory", f"{tree}/.", f"{root}/."],
                       capture_output=True, text=True)
    if r.returncode != 0:
        for name in os.listdir(root_fd):  # DIR was empty and in no one's use: what is there is our copy's
            path = os.path.join(root, name)
            _remove(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        reason = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MkrootError(f"copying the cached root {tree} to {root} failed (DIR left empty): {reason}")
    os.fchmod(root_fd, 0o755)


def per_root(root_fd: int, root: str, host: str) -> None:
    """What each root gets when cloned: the host's resolv.conf, an /etc/hosts if it has none."""
    with mkroot._at(f"{root}/etc"):
        etc = mkroot.open_path(root_fd, "etc", root)
        try:
            resolv = os.path.join(host, "etc/resolv.conf")
            if os.path.isfile(resolv):
                mkroot.copy_file(resolv, etc, "resolv.conf", f"{root}/etc/resolv.conf")
            if mkroot._lstat(etc, "hosts") is None:
                mkroot.put_file(etc, "hosts", f"{root}/etc/hosts", HOSTS, 0o644)
        finally:
            os.close(etc)


@dataclass
class Timing:
    made: float | None  # seconds debootstrap and its finish took (None: the cache was there)
    cloned: float


def make(root: str, suite: str | None = None, mirror: str | None = None, refresh: bool = False,
         cache: str = CACHE, host: str = "/", debootstrap: str | None = None, check=check_mirror,
         the_plan: Plan | None = None) -> tuple[Result, Timing]:
    root = os.path.abspath(root)
    root_fd = mkroot.open_root(root)
    try:
        mkroot.check_not_in_use(root, root_fd)
        if os.listdir(root_fd):
            raise MkrootError(f"{root} exists and is not empty: a Debian root is copied whole into an empty "
                              "directory (--force does not apply; remove it or choose another)")
        p = the_plan or plan(suite, mirror)
        tree, made = cached(p, cache, refresh, debootstrap, check)
        t0 = time.monotonic()
        clone(tree, root, root_fd)
        per_root(root_fd, root, host)
        cloned = time.monotonic() - t0
    finally:
        os.close(root_fd)
    notes = [f"Debian {p.suite} ({p.arch}) from {p.mirror}; "
             + (f"cached in {tree}, made in {made:.0f}s" if made is not None else f"from the cache {tree}")
             + f"; copied in {cloned:.1f}s"]
    if not hidden_from_users(root):
        notes.append(f"host users can reach {root}: prisond will not start a confined prison there (they could "
                     "run set-uid programs its root holds); move it below a directory of root's closed "
                     "to others (0700), such as /var/lib/prisond/roots")
    return Result(root, [], notes), Timing(made, cloned)
