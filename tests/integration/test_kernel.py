"""The kernel layer's lifecycle: it outlives a killed daemon, a new daemon adopts its prisons,
addresses change without restarting processes, and a thousand prisons come and go cleanly."""
import os
import socket
import subprocess
import time

from support.daemon import addresses_on_lo, prisonctl_cmd, wait_for
from support.fixtures import TcpServer
from support.wire import Wire

SERVICE = 'start: [sleep, "3600"]'


def worker(d, prison, nettool_static):
    """A process in the prison that runs one static connect per line it reads."""
    return subprocess.Popen(
        prisonctl_cmd() + ["--socket", d.socket, "exec", prison, "--", "sh", "-c",
                           f'while read port; do {nettool_static} connect 127.0.0.9 "$port"; done'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def connect_from(w, port) -> str:
    w.stdin.write(f"{port}\n".encode())
    w.stdin.flush()
    return w.stdout.readline().decode()


def test_enforcement_outlives_a_killed_daemon_and_a_new_daemon_adopts(daemon, nettool_static):
    before_lo = addresses_on_lo()
    d = daemon(f"prisons:\n  k:\n    enforce: kernel\n    ip4: [127.0.3.1]\n    exec:\n      {SERVICE}\n"
               f"  s:\n    enforce: shim\n    ip4: [127.0.2.1]\n    exec:\n      {SERVICE}\n")
    listed = {p["name"]: p for p in d.call("prison.list")}
    service = {n: d.show(n)["service"]["pid"] for n in ("k", "s")}
    w = worker(d, "k", nettool_static)
    wait_for(lambda: d.show("k")["procs"] == 3, what="the worker in k (with init and the service)")
    d.kill9()
    sink = TcpServer("127.0.0.9")
    with Wire() as wire:
        out = connect_from(w, sink.port)  # a static binary, no daemon alive: the kernel alone
    assert "ok local=127.0.3.1:" in out, out
    assert {s for s, _ in wire.syns(sink.port)} == {"127.0.3.1"}

    d.start()  # same config, same state dir: adopt
    again = {p["name"]: p for p in d.call("prison.list")}
    for name in ("k", "s"):
        assert again[name]["jid"] == listed[name]["jid"] and again[name]["state"] == "running"
        assert d.show(name)["service"]["pid"] == service[name]
    assert again["k"]["procs"] == 3 and again["k"]["enforcement"] == "kernel"
    assert "adopted" in d.log()
    assert connect_from(w, sink.port).startswith("ok local=127.0.3.1:")
    assert d.stop() == 0
    assert w.wait(10) != 0  # stopped with its prison
    assert addresses_on_lo() == before_lo  # the aliases the first daemon added are gone too
    assert not os.path.exists(d.cgroup_dir())


def test_a_restart_without_the_prison_ends_it(daemon):
    d = daemon(f"prisons:\n  k:\n    ip4: [127.0.3.1]\n    exec:\n      {SERVICE}\n")
    pid = d.show("k")["service"]["pid"]
    d.kill9()
    d.write_config("prisons: {}\n")
    d.start()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the unconfigured prison to end")
    assert "127.0.3.1" not in addresses_on_lo()


def test_a_reload_that_keeps_processes_changes_addresses_in_place(daemon, nettool_static, nettool):
    """jail -m: `reload --keep-processes` moves a kernel prison to its new address with its
    processes (by default an address change restarts the prison: test_restart.py)."""
    d = daemon(f"prisons:\n  k:\n    enforce: kernel\n    ip4: [127.0.3.1]\n    exec:\n      {SERVICE}\n")
    pid = d.show("k")["service"]["pid"]
    w = worker(d, "k", nettool_static)
    wait_for(lambda: d.show("k")["procs"] == 3, what="the worker (with init and the service)")
    d.write_config(f"prisons:\n  k:\n    enforce: kernel\n    ip4: [127.0.3.9]\n    exec:\n      {SERVICE}\n")
    r = d.ctl("reload", "--keep-processes")
    assert r.returncode == 0 and r.stdout.decode().splitlines()[0] == "changed in place: k", r
    assert d.show("k")["service"]["pid"] == pid and d.show("k")["procs"] == 3
    lo = addresses_on_lo()
    assert "127.0.3.9" in lo and "127.0.3.1" not in lo
    sink = TcpServer("127.0.0.9")
    with Wire() as wire:
        assert connect_from(w, sink.port).startswith("ok local=127.0.3.9:")
    assert {s for s, _ in wire.syns(sink.port)} == {"127.0.3.9"}
    r = d.exec("k", nettool, "bind", "127.0.3.1", 0)
    assert "EADDRNOTAVAIL" in r.stdout.decode()


def test_list_and_show_tell_the_level_and_why(daemon):
    d = daemon("prisons:\n  k: {ip4: [127.0.3.1]}\n  s: {ip4: [127.0.2.1], enforce: shim}\n")
    listed = {p["name"]: p for p in d.call("prison.list")}
    assert listed["k"]["enforcement"] == "kernel" and listed["k"]["enforcement_why"].startswith("default: cgroup v2")
    assert listed["s"]["enforcement"] == "shim" and listed["s"]["enforcement_why"] == "asked for in the configuration"
    text = d.ctl("show", "k").stdout.decode()
    assert "kernel (default: cgroup v2" in text and "egress_dropped" in text


def test_a_thousand_prisons_start_and_stop_cleanly(daemon):
    n = 1000
    body = "prisons:\n" + "".join(f"  p{i}: {{ip4: [127.9.{i // 250}.{i % 250 + 1}]}}\n" for i in range(n))
    t0 = time.monotonic()
    d = daemon(body)
    started = time.monotonic() - t0
    listed = d.call("prison.list")
    assert len(listed) == n and {p["state"] for p in listed} == {"running"}
    assert {p["enforcement"] for p in listed} == {"kernel"}
    assert len(os.listdir(d.cgroup_dir())) >= n
    assert sum(1 for a in addresses_on_lo() if a.startswith("127.9.")) == n
    t0 = time.monotonic()
    assert d.stop() == 0
    stopped = time.monotonic() - t0
    assert not os.path.exists(d.cgroup_dir())
    assert not any(a.startswith("127.9.") for a in addresses_on_lo())
    print(f"\n1000 prisons: started in {started:.1f} s (daemon start to ready), stopped in {stopped:.1f} s")


def test_asking_for_kernel_where_it_is_unavailable_is_an_error(daemon):
    d = daemon("daemon:\n  cgroup_parent: prisond-test-nokernel\n  kernel_layer: false\n"
               "prisons:\n  k: {ip4: [127.0.3.1], enforce: kernel}\n  s: {ip4: [127.0.2.1]}\n")
    listed = {p["name"]: p for p in d.call("prison.list")}
    assert listed["k"]["state"] == "failed"
    assert listed["k"]["reason"] == ("enforce: kernel was asked for, but this host cannot: "
                                     "disabled by daemon.kernel_layer: false")
    assert listed["s"]["state"] == "running" and listed["s"]["enforcement"] == "shim"
    assert listed["s"]["enforcement_why"] == ("default: kernel enforcement unavailable "
                                              "(disabled by daemon.kernel_layer: false)")
    assert "127.0.3.1" not in addresses_on_lo()
