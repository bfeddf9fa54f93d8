"""Layout detection over recorded /proc/self/mountinfo of the three kinds of host."""
from prisond.host.cgroup import detect

PURE_V2 = """\
24 1 0:22 / / rw - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""

HYBRID = """\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid shared:16 - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:17 - cgroup cgroup rw,cpu,cpuacct
"""

PURE_V1 = """\
30 24 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
35 30 0:31 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw shared:16 - cgroup cgroup rw,pids
"""


def test_pure_v2():
    layout = detect(PURE_V2)
    assert (layout.kind, layout.root, layout.has_v2) == ("v2", "/sys/fs/cgroup", True)


def test_hybrid_puts_prisons_in_the_unified_tree():
    layout = detect(HYBRID)
    assert (layout.kind, layout.root) == ("hybrid", "/sys/fs/cgroup/unified")
    assert ("memory", "/sys/fs/cgroup/memory") in layout.v1 and ("cpu", "/sys/fs/cgroup/cpu,cpuacct") in layout.v1


def test_pure_v1_tracks_in_the_pids_hierarchy():
    layout = detect(PURE_V1)
    assert (layout.kind, layout.root, layout.has_v2) == ("v1", "/sys/fs/cgroup/pids", False)


def test_no_cgroups():
    assert detect("24 1 0:22 / / rw - ext4 /dev/vda rw\n") is None


def test_this_host_is_detected():
    from prisond.host.cgroup import detect_host
    assert detect_host() is not None


def test_v2_path_of_a_process():
    from prisond.host.cgroup import v2_path_of
    text = "12:pids:/user.slice\n1:name=systemd:/user.slice\n0::/prisond/web1\n"
    assert v2_path_of(text) == "/prisond/web1"
    assert v2_path_of("5:memory:/x\n") is None
