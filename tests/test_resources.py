"""Limits and figures over recorded cgroup layouts: a pure-v2 host (as most production hosts
are) and this machine's hybrid one, as trees of files in a temporary directory."""
import os

import pytest

from prisond.host.cgroup import Layout
from prisond.model.config import Limits
from prisond.model.errors import SystemLayerError
from prisond.host.resources import Host, v1_settings, v2_settings

LIMITS = Limits(memory=512 << 20, memory_high=400 << 20, pids=50, cpu=0.25, nofile=100)

# recorded from a Debian 12 / kernel 6.x pure-v2 host (a prison's cgroup, some seconds in)
V2_FILES = {
    "cpu.stat": "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 80\n"
                "nr_throttled 12\nthrottled_usec 345678\nnr_bursts 0\nburst_usec 0\n",
    "memory.current": "7340032\n",
    "memory.peak": "67108864\n",
    "memory.events": "low 0\nhigh 3\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
    "pids.events": "max 17\n",
    "memory.max": "max\n", "memory.high": "max\n", "pids.max": "max\n", "cpu.max": "max 100000\n",
}
# recorded from this machine's v1 hierarchies (hybrid)
V1_FILES = {
    "cpuacct": {"cpuacct.usage": "2500000000\n"},
    "cpu": {"cpu.stat": "nr_periods 40\nnr_throttled 30\nthrottled_time 4500000000\nnr_bursts 0\n"
                        "burst_time 0\n", "cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"},
    "memory": {"memory.usage_in_bytes": "1048576\n", "memory.max_usage_in_bytes": "67108864\n",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
               "memory.limit_in_bytes": "9223372036854771712\n", "memory.soft_limit_in_bytes": "9223372036854771712\n"},
    "pids": {"pids.events": "max 5\n", "pids.max": "max\n"},
}


def write_tree(base, files: dict) -> None:
    os.makedirs(base, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(base, name), "w") as fh:
            fh.write(text)


def read(path) -> str:
    with open(path) as fh:
        return fh.read()


def test_settings_for_both_layouts():
    assert v2_settings(LIMITS) == [("memory.high", str(400 << 20)), ("memory.max", str(512 << 20)),
                                   ("pids.max", "50"), ("cpu.max", "25000 100000")]
    assert v2_settings(Limits()) == [("memory.high", "max"), ("memory.max", "max"), ("pids.max", "max"),
                                     ("cpu.max", "max 100000")]
    assert ("cpu", "cpu.cfs_quota_us", "150000") in v1_settings(Limits(cpu=1.5))
    assert ("memory", "memory.limit_in_bytes", "-1") in v1_settings(Limits())


@pytest.fixture
def v2_host(tmp_path):
    root = tmp_path / "cgroup"
    write_tree(root, {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n"})
    write_tree(root / "prisond", {"cgroup.subtree_control": ""})
    write_tree(root / "prisond" / "web", V2_FILES)
    return Host(Layout("v2", str(root)), "prisond"), root


def test_v2_limits_and_figures(v2_host):
    host, root = v2_host
    host.ensure_parents(str(root / "prisond"))
    assert read(root / "prisond" / "cgroup.subtree_control") == "+cpu +memory +pids"
    res = host.for_prison("web", str(root / "prisond" / "web"))
    assert res.procs_files() == []  # one cgroup does it all on v2
    res.apply(LIMITS)
    web = root / "prisond" / "web"
    assert (read(web / "memory.max"), read(web / "memory.high"), read(web / "pids.max"), read(web / "cpu.max")) == \
        (str(512 << 20), str(400 << 20), "50", "25000 100000")
    assert res.stats() == {"cpu_usec": 1234567, "memory_current": 7340032, "memory_peak": 67108864,
                           "oom_kills": 1, "pids_refused": 17, "cpu_throttled": 12, "cpu_throttled_usec": 345678}
    assert res.cpu_memory() == {"cpu_usec": 1234567, "memory_current": 7340032}


def test_a_v2_host_without_a_controller_refuses_that_limit(tmp_path):
    root = tmp_path / "cgroup"
    write_tree(root, {"cgroup.controllers": "memory pids\n"})
    write_tree(root / "prisond" / "web", V2_FILES)
    res = Host(Layout("v2", str(root)), "prisond").for_prison("web", str(root / "prisond" / "web"))
    res.apply(Limits(memory=64 << 20, pids=10))  # these it has
    with pytest.raises(SystemLayerError, match=r"cannot enforce limits on cpu \(it has cgroup v2: memory, pids\)"):
        res.apply(Limits(cpu=0.5))


def test_v1_limits_and_figures(tmp_path):
    mounts = {c: tmp_path / c for c in ("memory", "pids", "cpu", "cpuacct")}
    for c, files in V1_FILES.items():
        write_tree(mounts[c] / "prisond" / "web", files)
    layout = Layout("hybrid", str(tmp_path / "unified"), tuple((c, str(m)) for c, m in mounts.items()))
    host = Host(layout, "prisond")
    res = host.for_prison("web", str(tmp_path / "unified" / "prisond" / "web"))
    assert res.procs_files() == sorted(str(mounts[c] / "prisond" / "web" / "cgroup.procs") for c in mounts)
    res.apply(LIMITS)
    web = {c: mounts[c] / "prisond" / "web" for c in mounts}
    assert read(web["memory"] / "memory.limit_in_bytes") == str(512 << 20)
    assert read(web["memory"] / "memory.soft_limit_in_bytes") == str(400 << 20)
    assert read(web["pids"] / "pids.max") == "50"
    assert read(web["cpu"] / "cpu.cfs_quota_us") == "25000"
    assert res.stats() == {"cpu_usec": 2500000, "memory_current": 1048576, "memory_peak": 67108864,
                           "oom_kills": 2, "pids_refused": 5, "cpu_throttled": 30, "cpu_throttled_usec": 4500000}
    res.apply(Limits())  # a reload that removed the limits
    assert read(web["pids"] / "pids.max") == "max" and read(web["cpu"] / "cpu.cfs_quota_us") == "-1"


def test_counter_watch_turns_counters_into_events():
    from prisond.engine.events import CounterWatch
    w = CounterWatch()
    base = {"oom_kills": 0, "pids_refused": 0, "cpu_throttled": 0, "rewritten": 4, "denied": 0}
    assert w.check("a", base, 0.0) == []  # first sight: the past is not news
    assert w.check("a", dict(base, oom_kills=1, pids_refused=3, cpu_throttled=5, rewritten=6), 1.0) == [
        ("oom_kill", "oom_kills", 1), ("pids_max", "pids_refused", 3), ("cpu_throttled", "cpu_throttled", 5),
        ("coerced", "rewritten", 2)]
    # OOM kills and refused forks: each time; throttling: a minute on; the kernel's: ten seconds on
    assert w.check("a", dict(base, oom_kills=2, pids_refused=3, cpu_throttled=9, rewritten=9), 2.0) == [
        ("oom_kill", "oom_kills", 1)]
    assert w.check("a", dict(base, oom_kills=2, pids_refused=3, cpu_throttled=9, rewritten=10), 11.5) == [
        ("coerced", "rewritten", 4)]
    assert w.check("a", dict(base, oom_kills=2, pids_refused=3, cpu_throttled=20, rewritten=10), 62.0) == [
        ("cpu_throttled", "cpu_throttled", 15)]
    assert w.check("b", {"denied": 7}, 0.0) == [] and w.check("b", {"denied": 8}, 0.5) == [("refused", "denied", 1)]


def test_a_fresh_cgroup_gets_only_the_limits_that_are_set(tmp_path):
    """A new cgroup holds the kernel's defaults (no limit): writing them again is skipped (each
    cpu.cfs_* write costs the kernel a bandwidth update over every cgroup), a set limit is
    written, and a cgroup that was there before gets every value (an old limit goes)."""
    mounts = {c: tmp_path / c for c in ("memory", "pids", "cpu", "cpuacct")}
    layout = Layout("hybrid", str(tmp_path / "unified"), tuple((c, str(m)) for c, m in mounts.items()))
    for m in mounts.values():
        os.makedirs(m / "prisond")
    res = Host(layout, "prisond").for_prison("web", str(tmp_path / "unified" / "prisond" / "web"))
    assert res.create() is True
    for c in mounts:  # what the kernel makes with the directory; marked to see what is written
        write_tree(mounts[c] / "prisond" / "web", {n: "untouched" for n in V1_FILES[c]})
    res.apply(Limits(pids=50), fresh=True)
    written = sorted(f"{c}/{n}" for c in mounts for n in os.listdir(mounts[c] / "prisond" / "web")
                     if read(mounts[c] / "prisond" / "web" / n) != "untouched")
    assert written == ["pids/pids.max"] and read(mounts["pids"] / "prisond" / "web" / "pids.max") == "50"
    assert res.create() is False  # there already: not fresh
    res.apply(Limits(), fresh=False)
    assert read(mounts["pids"] / "prisond" / "web" / "pids.max") == "max"
    assert read(mounts["cpu"] / "prisond" / "web" / "cpu.cfs_quota_us") == "-1"


def test_without_memory_accounting_no_memory_cgroup_is_made_per_prison(tmp_path):
    """v2: memory off in the parent's subtree_control (a daemon before may have switched it on);
    v1: every prison joins one memory cgroup, the parent, and its own (an adopted prison's
    from a daemon before) is removed at its stop."""
    root = tmp_path / "cgroup"
    write_tree(root, {"cgroup.controllers": "cpu memory pids\n"})
    write_tree(root / "prisond", {"cgroup.subtree_control": ""})
    host = Host(Layout("v2", str(root)), "prisond", memory=False)
    host.ensure_parents(str(root / "prisond"))
    assert read(root / "prisond" / "cgroup.subtree_control") == "+cpu +pids -memory"
    assert host.available() == {"cpu", "pids"}

    mounts = {c: tmp_path / c for c in ("memory", "pids", "cpu", "cpuacct")}
    layout = Layout("hybrid", str(tmp_path / "unified"), tuple((c, str(m)) for c, m in mounts.items()))
    host = Host(layout, "prisond", memory=False)
    host.ensure_parents(str(tmp_path / "unified" / "prisond"))
    assert (mounts["memory"] / "prisond").is_dir()
    res = host.for_prison("web", str(tmp_path / "unified" / "prisond" / "web"))
    assert res.procs_files() == [*sorted(str(mounts[c] / "prisond" / "web" / "cgroup.procs")
                                         for c in ("cpu", "cpuacct", "pids")),
                                 str(mounts["memory"] / "prisond" / "cgroup.procs")]
    assert res.create() and not (mounts["memory"] / "prisond" / "web").exists()
    assert res.cpu_memory()["memory_current"] is None and res.stats()["memory_peak"] is None
    with pytest.raises(SystemLayerError, match=r"cannot enforce limits on memory \(it has cgroup v1: cpu, cpuacct, "
                       r"pids; memory accounting is off: daemon.memory_accounting was false when prisond started\)"):
        res.apply(Limits(memory=64 << 20))  # a reload from a file that turns it on is read before the restart
    (mounts["memory"] / "prisond" / "web").mkdir()  # made by a daemon that counted memory per prison
    res.remove()
    assert sorted(os.listdir(tmp_path / "memory" / "prisond")) == []
    host.remove_parents()
    assert not any((m / "prisond").exists() for m in mounts.values())

    both = Layout("hybrid", str(tmp_path / "unified"), (("memory", str(tmp_path / "mc")), ("cpu", str(tmp_path / "mc"))))
    assert "memory" in Host(both, "prisond", memory=False).available()  # memory shares a kept hierarchy
