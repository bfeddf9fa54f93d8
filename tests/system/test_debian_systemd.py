"""The Debian package, installed with apt and run by a real systemd (PID 1 of a Debian 12
container under systemd-nspawn; see container.py for how and why it is booted so).

What users install is what this proves: the .deb is built from this tree by scripts/deb, as a
user would, then in the container

 1. `apt install ./prisond_*.deb`: the unit is enabled and started (no prisons configured);
 2. `systemctl start prisond` returns once READY=1 came, with two prisons serving
    (python3 -m http.server on 127.0.2.1 and 127.0.3.1, checked with curl inside);
 3. `systemctl reload prisond` after a third prison (and one with limits) is added;
 4. `systemctl kill -s KILL prisond`: the prisons keep serving while systemd restarts the
    daemon (Restart=on-failure), which adopts them (same service pids);
 5. the daemon stalled (SIGSTOP): systemd's watchdog kills it and restarts it, and the new one
    adopts the prisons;
 6. `journalctl -u prisond` shows each prison's lines;
 7. `systemctl stop prisond` leaves no prison process, no cgroup, no address;
 8. `apt remove` stops it and leaves only the conffile (and systemd's record that the unit was
    enabled), `apt purge` leaves nothing.

Before them, lintian (pedantic, info and experimental tags) must find nothing that
debian/prisond.lintian-overrides does not explain.

The steps run in order on one container; a step after a failed one fails too (never skips).
A transcript of what each step saw goes to tests/_build/systemd-transcript.txt.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from system.container import Container, ContainerError, cached_root, host_net

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, "tests", "_build")
TRANSCRIPT = os.path.join(BUILD, "systemd-transcript.txt")

WEB = {"web1": "127.0.2.1", "web2": "127.0.3.1", "web3": "127.0.4.1"}
CAPPED = ("capped", "127.0.5.1")
PRESTART = 2  # seconds web2's exec.prestart takes


def prison_yaml(names, capped=False) -> str:
    out = "defaults:\n  stop:\n    timeout: 5\nprisons:\n"
    for n in names:
        out += (f"  {n}:\n    hostname: {n}.example.test\n    ip4: [{WEB[n]}]\n    exec:\n"
                f"      start: [python3, -m, http.server, --directory, /srv/{n}, \"8080\"]\n")
        if n == "web2":  # a slow start: `systemctl start` must wait for it (READY=1 comes after)
            out += f"      prestart: [sleep, \"{PRESTART}\"]\n"
    if capped:
        out += (f"  {CAPPED[0]}:\n    ip4: [{CAPPED[1]}]\n    limits: {{memory: 64M, pids: 50}}\n"
                "    exec:\n      start: [sleep, infinity]\n")
    return out


# ------------------------------------------------------------------ the run's record

LINES: list[str] = []
FAILED: list[str] = []
STATE: dict = {}


def say(text: str) -> None:
    stamp = f"{time.monotonic() - STATE.get('t0', time.monotonic()):7.1f}s"
    for line in str(text).splitlines() or [""]:
        LINES.append(f"{stamp}  {line}")
    os.makedirs(BUILD, exist_ok=True)
    with open(TRANSCRIPT, "w") as fh:
        fh.write("\n".join(LINES) + "\n")


def step(fn):
    """Steps depend on the ones before: after a failure the rest fail at once, saying why."""
    @functools.wraps(fn)
    def run(box):
        if FAILED:
            raise AssertionError(f"not run: {FAILED[0]} failed before it")
        say(f"== {fn.__name__}: {fn.__doc__.strip().splitlines()[0]}")
        t = time.monotonic()
        try:
            fn(box)
        except BaseException as exc:
            FAILED.append(fn.__name__)
            say(f"   FAILED: {str(exc)[:2000]}")
            raise
        say(f"   ok ({time.monotonic() - t:.1f}s)")
    return run


# ------------------------------------------------------------------ fixtures


def build_deb() -> str:
    given = os.environ.get("PRISOND_TEST_DEB")
    if given:
        say(f"deb: using {given} (PRISOND_TEST_DEB)")
        return given
    out = os.path.join(BUILD, "deb")
    shutil.rmtree(out, ignore_errors=True)
    t = time.monotonic()
    # in the host's network namespace: scripts/deb installs missing build dependencies with apt
    r = subprocess.run(host_net([os.path.join(REPO, "scripts", "deb"), "--out", out]), capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, f"scripts/deb failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    (deb,) = [os.path.join(out, f) for f in os.listdir(out) if re.match(r"prisond_.*\.deb$", f)]
    say(f"deb: scripts/deb built {os.path.basename(deb)} in {time.monotonic() - t:.0f}s")
    return deb


def deb_packages(deb: str) -> list[str]:
    """What the package depends on and recommends (first alternatives), for the cached root."""
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Depends", "Recommends"], capture_output=True, text=True,
                            check=True).stdout
    names = set()
    for line in fields.splitlines():
        _, _, rel = line.partition(":")
        for item in rel.split(","):
            name = item.split("|")[0].split("(")[0].strip().split(":")[0]
            if name:
                names.add(name)
    return sorted(names)


@pytest.fixture(scope="module")
def deb():
    STATE["t0"] = time.monotonic()
    LINES.clear()
    FAILED.clear()
    for tool, package in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"),
                          ("lintian", "lintian"), ("nsenter", "util-linux")):
        assert shutil.which(tool), f"{tool} is missing: apt-get install {package} (scripts/setup does)"
    return build_deb()


@pytest.fixture(scope="module")
def box(deb):
    packages = deb_packages(deb)
    say(f"deb: depends/recommends {' '.join(packages)}")
    root, made = cached_root(packages, say)
    say(f"root: {root} ({'made now' if made else 'cached'})")
    share = os.path.join(BUILD, "systest-share")
    shutil.rmtree(share, ignore_errors=True)
    os.makedirs(share)
    shutil.copy(deb, share)
    c = Container(root, share, say)
    try:
        took = c.boot()
        say(f"boot: systemd reached {c.out('systemctl is-system-running')} in {took:.1f}s "
            f"(container PID 1 is host pid {c.leader})")
        say("boot: " + c.out("systemctl --version | head -1"))
        links = c.out("ip -o link | awk -F': ' '{print $2}'").split()
        say(f"boot: network: links {links} (--private-network)")
        assert links == ["lo"], links
        mounts = c.out("grep cgroup /proc/self/mounts")
        say("boot: cgroups: " + mounts.replace("\n", "; "))
        say("boot: v2 controllers: " + (c.out("cat /sys/fs/cgroup/cgroup.controllers") or "(none)"))
        STATE["deb"] = os.path.basename(deb)
        yield c
    finally:
        try:  # the container's journal, for whoever reads a failure (a hung container must still halt)
            journal = c.sh("journalctl -b --no-pager -o short-monotonic", timeout=30, check=False).stdout
        except ContainerError as exc:
            journal = f"(no journal: {exc})"
        with open(os.path.join(BUILD, "systemd-journal.txt"), "w") as fh:
            fh.write(journal + "\n--- console ---\n" + c.console_tail(200))
        forced = c.halt()
        say("halt: " + ("; ".join(forced) if forced else "the container powered off; its cgroup is removed"))
        say(f"total: {time.monotonic() - STATE['t0']:.0f}s")
        leftover = c.cgroup.path if c.cgroup and os.path.exists(c.cgroup.path) else None
        assert not forced and not leftover, f"cleanup: {forced} {leftover}"


# ------------------------------------------------------------------ helpers


def unit(c: Container, *props: str) -> dict:
    text = c.out("systemctl show prisond " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in text.splitlines())


def prisons(c: Container) -> dict:
    return {p["name"]: p for p in json.loads(c.out("prisonctl list --json"))}


def show(c: Container, name: str) -> dict:
    return json.loads(c.out(f"prisonctl show {name} --json"))


def curl(c: Container, name: str, settle: float = 0.0) -> None:
    """The prison's web server answers, at once; settle: a prison started just now, whose
    server may refuse for that many seconds ("running" means its service was started, as
    with jail(8), not that it listens yet: python3's http.server needs a moment)."""
    def answer():
        r = c.sh(f"curl -sS -m 5 http://{WEB[name]}:8080/", check=not settle)
        return r.stdout if r.returncode != 7 else None  # 7: refused (not listening yet)
    body = wait(f"{name} answers on {WEB[name]}:8080", answer, settle) if settle else answer()
    assert f"hello from {name}" in body, body


def wait(what: str, fn, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout}s")
        time.sleep(every)


def service_pids(c: Container, names) -> dict:
    return {n: show(c, n)["service"]["pid"] for n in names}


def leftovers(c: Container) -> list[str]:
    """Anything of prisond's left in the container: processes, cgroups, addresses, runtime dir."""
    found = []
    # (bracketed so that the shell running pgrep does not match)
    procs = c.sh("pgrep -a -f '[h]ttp.server|[p]risonjail|[p]risond|[s]leep infinity'", check=False).stdout.strip()
    if procs:
        found.append(f"processes: {procs}")
    cg = c.sh("ls -d /sys/fs/cgroup/prisond 2>/dev/null", check=False).stdout.strip()
    if cg:
        found.append(f"cgroups: {c.out('find /sys/fs/cgroup/prisond -type d')}")
    addrs = c.out("ip -o addr show dev lo")
    extra = [a for a in re.findall(r"inet6? (\S+)", addrs) if a not in ("127.0.0.1/8", "::1/128")]
    if extra:
        found.append(f"addresses on lo: {extra}")
    if c.sh("test -e /run/prisond", check=False).returncode == 0:
        found.append(f"/run/prisond: {c.out('find /run/prisond')}")
    return found


# ------------------------------------------------------------------ the steps


def test_0_lintian_is_clean(deb):
    """lintian, pedantic, with info and experimental tags: nothing but what
    debian/prisond.lintian-overrides explains"""
    changes = re.sub(r"\.deb$", ".changes", deb)
    r = subprocess.run(["lintian", "--pedantic", "--display-info", "--display-experimental", changes],
                       capture_output=True, text=True, timeout=600)
    tags = [line for line in r.stdout.splitlines() if re.match(r"^[EWIPXCO]: ", line)]
    say(f"lintian --pedantic --display-info --display-experimental {os.path.basename(changes)}: "
        f"{len(tags)} tags (exit {r.returncode})")
    assert r.returncode == 0 and tags == [], r.stdout + r.stderr



@step
def test_1_apt_install_enables_and_starts_the_unit(box: Container):
    """apt install ./prisond_*.deb (offline: every dependency is in the cached root)"""
    c = box
    r = c.out(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q /srv/systest/{STATE['deb']} 2>&1 "
              "| grep -v '^(Reading database'", timeout=180)
    say("   " + "\n   ".join(line for line in r.splitlines() if line.startswith(("Setting up", "Created", "Unpack"))))
    assert c.out("dpkg-query -W -f='${Status} ${Version}' prisond").startswith("install ok installed")
    assert c.out("systemctl is-enabled prisond") == "enabled"
    wait("prisond active after install", lambda: c.sh("systemctl is-active prisond", check=False).stdout.strip()
         == "active", 30)
    u = unit(c, "ExecStart", "FragmentPath", "WatchdogUSec", "Type", "StatusText")
    say(f"   unit {u['FragmentPath']}: Type={u['Type']} WatchdogUSec={u['WatchdogUSec']} "
        f"StatusText={u['StatusText']!r}")
    assert u["FragmentPath"] == "/lib/systemd/system/prisond.service"
    assert "path=/usr/bin/prisond " in u["ExecStart"] and "/usr/local" not in u["ExecStart"]
    assert u["WatchdogUSec"] == "30s" and u["Type"] == "notify"
    assert u["StatusText"] == "no prisons"
    say("   " + c.out("prisond --version; prisonctl --version; prisonctl health"))
    assert c.out("prisonctl health").endswith("ready (no prisons)")
    for f in ("/usr/share/man/man8/prisond.8.gz", "/usr/share/man/man8/prisonctl.8.gz",
              "/usr/share/man/man5/prisond.yaml.5.gz", "/usr/share/bash-completion/completions/prisonctl",
              "/usr/lib/python3/dist-packages/prisond/libprisonshim.so",
              "/usr/lib/python3/dist-packages/prisond/prisonjail"):
        c.out(f"test -s {f}")
    assert c.out("cat /var/lib/dpkg/info/prisond.conffiles") == "/etc/prisond/prisond.yaml"
    # Debian 12 has no python3-orjson: the daemon's protocol runs on the standard json
    assert c.out("python3 -c 'import prisond.model.protocol as p; print(p.orjson)'") == "None"
    pyroute2 = c.out("dpkg-query -W -f='${Version}' python3-pyroute2")
    uvloop = c.out("dpkg-query -W -f='${Version}' python3-uvloop")
    say(f"   python3 {c.out('python3 -V')}, python3-pyroute2 {pyroute2}, python3-uvloop {uvloop}")
    log = c.out("journalctl -u prisond -b -o cat")
    say("   journal: " + " | ".join(line for line in log.splitlines() if "Landlock" in line or "kernel" in line
                                   or "ready" in line))
    assert "kernel enforcement unavailable" not in log, log


@step
def test_2_start_waits_for_ready_with_two_prisons(box: Container):
    """systemctl start prisond returns after READY=1: two prisons serving"""
    c = box
    c.out("systemctl stop prisond")
    for n in WEB:
        c.write(f"/srv/{n}/index.html", f"hello from {n}\n")
    c.write("/etc/prisond/prisond.yaml", prison_yaml(["web1", "web2"]))
    say("   " + c.out("prisonctl check /etc/prisond/prisond.yaml"))
    t = time.monotonic()
    c.out("systemctl start prisond", timeout=120)
    took = time.monotonic() - t
    # no waiting here: READY=1 means every prison was started
    ps = prisons(c)
    u = unit(c, "MainPID", "StatusText", "ActiveState")
    say(f"   systemctl start returned in {took:.1f}s: {u['ActiveState']}, StatusText={u['StatusText']!r}, "
        f"MainPID={u['MainPID']}")
    say("   " + "\n   ".join(c.out("prisonctl list").splitlines()))
    assert {n: p["state"] for n, p in ps.items()} == {"web1": "running", "web2": "running"}, {n: p.get("reason") for n, p in ps.items()}
    assert u["StatusText"] == "2 running"
    assert took >= PRESTART, f"systemctl start returned before web2's {PRESTART}s exec.prestart was over"
    for n in ("web1", "web2"):
        curl(c, n)
        assert ps[n]["enforcement"] == "kernel", ps[n]
    refused = c.sh("curl -sS -m 3 http://127.0.0.1:8080/", check=False)
    assert refused.returncode == 7, refused  # bound to 0.0.0.0, coerced onto the prison's address
    assert c.out("prisonctl exec web1 -- hostname") == "web1.example.test"
    say("   curl 127.0.2.1:8080 and 127.0.3.1:8080 answer (kernel enforcement); 127.0.0.1:8080 refused; "
        "prisonctl exec web1 -- hostname: web1.example.test")
    STATE["pids"] = service_pids(c, ["web1", "web2"])


@step
def test_3_reload_adds_a_prison(box: Container):
    """systemctl reload prisond after adding web3 (and a prison with limits)"""
    c = box
    c.write("/etc/prisond/prisond.yaml", prison_yaml(["web1", "web2", "web3"], capped=True))
    c.out("systemctl reload prisond")
    ps = wait("web3 running after reload", lambda: (lambda p: p if p.get("web3", {}).get("state") == "running"
                                                   else None)(prisons(c)), 30)
    wait("prisond active again after reload", lambda: unit(c, "ActiveState")["ActiveState"] == "active", 30)
    say("   " + "\n   ".join(c.out("prisonctl list").splitlines()))
    curl(c, "web3", settle=10)  # started by this reload
    assert service_pids(c, ["web1", "web2"]) == STATE["pids"], "reload touched unchanged prisons"
    say("   web3 serves; web1 and web2 kept their service pids " + str(STATE["pids"]))
    # limits: what this cgroup tree offers decides, and the daemon must say so, not run unlimited
    controllers = set(c.out("cat /sys/fs/cgroup/cgroup.controllers").split())
    capped = ps[CAPPED[0]]
    if {"memory", "pids"} <= controllers:
        assert capped["state"] == "running", capped
        assert c.out(f"cat /sys/fs/cgroup/prisond/{CAPPED[0]}/memory.max") == str(64 << 20)
        assert c.out(f"cat /sys/fs/cgroup/prisond/{CAPPED[0]}/pids.max") == "50"
        say(f"   capped: running with memory.max 64M and pids.max 50 (controllers: {sorted(controllers)})")
    else:
        assert capped["state"] == "failed", capped
        assert "cannot enforce limits on memory, pids" in capped["reason"], capped
        say(f"   capped: failed, as it must here: {capped['reason']}")
    STATE["pids"] = service_pids(c, WEB)
    STATE["jids"] = {n: p["jid"] for n, p in prisons(c).items() if n in WEB}


def _restart_keeps_prisons(c: Container, old_main: str, timeout: float, what: str) -> dict:
    """Until a new daemon runs: curl every prison meanwhile; then check it adopted them."""
    rounds = down = 0
    t = time.monotonic()
    noticed = None
    while True:
        u = unit(c, "MainPID", "SubState", "ActiveState", "NRestarts")
        if u["MainPID"] not in ("0", old_main) and u["SubState"] == "running":
            break
        if noticed is None and u["MainPID"] != old_main:
            noticed = time.monotonic() - t
        if time.monotonic() - t > timeout:
            raise AssertionError(f"{what}: no new daemon after {timeout}s: {u}")
        for n in WEB:
            curl(c, n)
        rounds += 1
        down += u["MainPID"] in ("0", "") or u["SubState"] != "running"
        time.sleep(0.2)
    took = time.monotonic() - t
    say(f"   new daemon pid {u['MainPID']} running {took:.1f}s later (NRestarts={u['NRestarts']}); "
        f"all three prisons answered curl in each of {rounds} rounds meanwhile, {down} of them "
        f"while systemd had no daemon running (SubState auto-restart/stop)")
    return {"rounds": rounds, "down": down, "took": took, "unit": u, "noticed": noticed}


@step
def test_4_sigkill_then_restart_adopts_the_prisons(box: Container):
    """systemctl kill -s KILL prisond: prisons keep serving; the restarted daemon adopts them"""
    c = box
    old = unit(c, "MainPID", "NRestarts")
    c.out("systemctl kill -s KILL prisond")
    r = _restart_keeps_prisons(c, old["MainPID"], 60, "after SIGKILL")
    assert r["down"] >= 1, "no curl happened while the daemon was down"
    assert int(r["unit"]["NRestarts"]) == int(old["NRestarts"]) + 1
    assert c.sh(f"kill -0 {old['MainPID']}", check=False).returncode != 0
    ps = prisons(c)
    assert {n: ps[n]["state"] for n in WEB} == dict.fromkeys(WEB, "running"), ps
    assert {n: ps[n]["jid"] for n in WEB} == STATE["jids"]
    assert service_pids(c, WEB) == STATE["pids"], "the services were not adopted"
    adopted = [line for line in c.out("journalctl -u prisond -b -o cat").splitlines() if "adopted" in line]
    say("   " + "\n   ".join(adopted[-3:]))
    assert len(adopted) >= 3
    say(f"   same JIDs {STATE['jids']} and service pids {STATE['pids']}")
    for n in WEB:
        curl(c, n)


@step
def test_5_watchdog_restarts_a_stalled_daemon(box: Container):
    """kill -STOP the daemon: systemd's watchdog (WatchdogSec=30s) restarts it; prisons adopted"""
    c = box
    old = unit(c, "MainPID", "NRestarts", "WatchdogUSec")
    assert old["WatchdogUSec"] == "30s"
    c.out(f"kill -STOP {old['MainPID']}")
    say(f"   daemon pid {old['MainPID']} stopped (SIGSTOP)")
    r = _restart_keeps_prisons(c, old["MainPID"], 75, "after SIGSTOP")
    assert int(r["unit"]["NRestarts"]) == int(old["NRestarts"]) + 1
    log = c.out("journalctl -u prisond -b -o cat")
    dog = [line for line in log.splitlines() if "atchdog" in line]
    say("   " + "\n   ".join(dog))
    assert any("Watchdog timeout" in line for line in dog), log[-3000:]
    assert c.sh(f"kill -0 {old['MainPID']}", check=False).returncode != 0
    assert r["took"] <= 30 + 2 + 15, r
    assert service_pids(c, WEB) == STATE["pids"], "the services were not adopted"
    ps = prisons(c)
    assert {n: ps[n]["jid"] for n in WEB} == STATE["jids"]
    for n in WEB:
        curl(c, n)
    core = c.sh("ls -la /core* 2>/dev/null", check=False).stdout.strip()
    say(f"   same JIDs and service pids; core file left by SIGABRT: {core or 'none'}")


@step
def test_6_journal_shows_each_prisons_lines(box: Container):
    """journalctl -u prisond: each prison's lines, its service's output included"""
    c = box
    log = c.out("journalctl -u prisond -b -o cat --no-pager")
    for n, ip in WEB.items():
        mine = [line for line in log.splitlines() if line.startswith(f"prison {n}: ")]
        served = [line for line in mine if '"GET / HTTP/1.1" 200' in line]
        assert any(line == f"prison {n}: running" for line in mine), mine
        assert served, f"no service output of {n} in the journal"
        say(f"   {n}: {len(mine)} lines, e.g. {served[0]!r}")
    assert any(line.startswith(f"prison {CAPPED[0]}: failed") or line == f"prison {CAPPED[0]}: running"
               for line in log.splitlines())
    # each service line carries its prison in fields: one prison's log is one query
    fields = json.loads(c.out("journalctl -b PRISON=web1 -o json -n 1 --no-pager"))
    assert (fields["PRISON"], fields["JID"], fields["PRISOND_STREAM"]) == ("web1", "1", "err"), fields
    assert fields["_SYSTEMD_UNIT"] == "prisond.service"
    own = c.out("prisonctl logs -n 2 web1").splitlines()
    assert len(own) == 2 and all("prison web1: " in line for line in own), own
    say(f"   journalctl PRISON=web1: {fields['MESSAGE']!r}; prisonctl logs -n 2 web1: {own[-1]!r}")
    tagged = int(c.out("journalctl -b -t prisond -o cat | wc -l"))
    warn = c.out("journalctl -u prisond -b -p warning -o cat | head -2")
    say(f"   {tagged} lines with SYSLOG_IDENTIFIER=prisond; priorities kept (-p warning): {warn.splitlines()}")
    assert tagged > 0


@step
def test_7_stop_leaves_nothing(box: Container):
    """systemctl stop prisond: no prison process, cgroup or address left"""
    c = box
    t = time.monotonic()
    c.out("systemctl stop prisond", timeout=150)
    say(f"   stopped in {time.monotonic() - t:.1f}s: {c.sh('systemctl is-active prisond', check=False).stdout.strip()}")
    assert leftovers(c) == []
    # the lock and the event log outlive a stop; so do the record files, emptied, for the next start
    assert c.out("ls -A /var/lib/prisond").split() == ["aliases", "boot_id", "events.jsonl", "prisond.lock",
                                                       "prisons"]
    records = c.out("find /var/lib/prisond/aliases /var/lib/prisond/prisons -type f").split()
    assert len(records) >= len(WEB) * 2, records  # each prison's record and its address's
    assert c.out("find /var/lib/prisond/aliases /var/lib/prisond/prisons -type f ! -empty") == ""
    say("   no http.server, prisonjail or prisond process; no /sys/fs/cgroup/prisond; lo holds 127.0.0.1 "
        f"and ::1 only; /run/prisond gone; /var/lib/prisond holds its lock file, the event log and "
        f"{len(records)} empty record files")


@step
def test_8_remove_leaves_the_conffile_purge_nothing(box: Container):
    """apt remove on a running prisond, then apt purge"""
    c = box
    c.out("systemctl start prisond", timeout=120)
    assert prisons(c)["web1"]["state"] == "running"
    c.out("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q prisond", timeout=180)
    assert leftovers(c) == []
    status = c.out("dpkg-query -W -f='${Status}' prisond")
    assert status == "deinstall ok config-files", status
    # (dpkg's own record of the package, in /var/lib/dpkg, aside)
    left = c.out("find /etc /lib/systemd /usr /var/lib /run -path /var/lib/dpkg -prune -o -name '*prisond*' "
                 "-print | sort")
    say(f"   after remove: {status}; left:\n     " + "\n     ".join(left.splitlines()))
    assert set(left.splitlines()) == {
        "/etc/prisond", "/etc/prisond/prisond.yaml",
        "/etc/systemd/system/multi-user.target.wants/prisond.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/prisond.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/prisond.service.dsh-also",
    }, left
    c.out("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q prisond", timeout=180)
    left = c.out("find /etc /lib/systemd /usr /var/lib /run -name '*prisond*'")  # dpkg's record too
    assert left == "" and c.sh("dpkg-query -W prisond", check=False).returncode != 0, left
    say("   after purge: nothing named prisond under /etc, /lib/systemd, /usr, /var/lib, /run; dpkg knows none")
