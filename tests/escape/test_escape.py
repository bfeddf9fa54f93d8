"""Escape attempts, each run in a `shim` prison and in a `kernel` prison; scapy judges.

Outcomes, read from the wire (and, for refusals, from the errno the program got):
  coerced   packets left, all from a prison address
  refused   the call failed; nothing left
  dropped   the call "worked" but no packet left (the egress filter took it)
  blocked   a listener in the prison was not reachable on a foreign address: it held its own
            address only, or it kept the wildcard and the ingress filter dropped foreign SYNs
  escaped   a packet with a foreign source left, or a foreign address reached the listener

In `kernel` prisons nothing may escape.  In `shim` prisons the suite pins down which attempts
escape: they are the known limits stated in the README's security model; a change in them
fails here so that the README is kept true.  The table of outcomes is written to
tests/_build/escape-results.md and printed at the end of the run.
"""
import os
import socket
import subprocess
import tempfile

import pytest

from support.daemon import Daemon, prisonctl_cmd
from support.fixtures import free_port
from support.wire import Wire

PRISONS = {  # name: (level, ip4, ip6, allow raw)
    "s": ("shim", "127.0.2.1", "fd00:2::1", False),
    "k": ("kernel", "127.0.3.1", "fd00:3::1", False),
    "sraw": ("shim", "127.0.4.1", "fd00:4::1", True),
    "kraw": ("kernel", "127.0.5.1", "fd00:5::1", True),
}
RESULTS: dict = {}
RESULTS_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_build", "escape-results.md")


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    body = "prisons:\n"
    for name, (level, ip4, ip6, raw) in PRISONS.items():
        body += f"  {name}:\n    enforce: {level}\n    ip4: [{ip4}]\n    ip6: [\"lo|{ip6}\"]\n"
        # io_uring allowed: its connect is one of the attempts (refused otherwise)
        body += "    allow: {raw_sockets: true, io_uring: true}\n" if raw else "    allow: {io_uring: true}\n"
    d = Daemon(str(tmp_path_factory.mktemp("escape")), body).start()
    yield d
    try:
        assert d.stop() == 0
    finally:
        d.remove_cgroups()
    write_results()


def write_results():
    if not RESULTS:
        return
    attempts = sorted({a for a, _ in RESULTS})
    lines = ["| attempt | shim prison | kernel prison |", "|---|---|---|"]
    for a in attempts:
        lines.append(f"| {a} | {RESULTS.get((a, 'shim'), '-')} | {RESULTS.get((a, 'kernel'), '-')} |")
    os.makedirs(os.path.dirname(RESULTS_FILE), exist_ok=True)
    with open(RESULTS_FILE, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def prison_addrs(name):
    _, ip4, ip6, _ = PRISONS[name]
    return {ip4, ip6, f"::ffff:{ip4}"}


def run(d, prison, *argv, timeout=20):
    r = d.exec(prison, *map(str, argv), timeout=timeout)
    return r.stdout.decode() + r.stderr.decode()


class Sink:
    """A host-side TCP listener and UDP socket on 127.0.0.9:port, outside any prison."""

    def __init__(self):
        self.port = free_port()
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.9", self.port))
        self.tcp.listen(64)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.9", self.port))

    def close(self):
        self.tcp.close()
        self.udp.close()


def outbound(wire, port, prison, out) -> str:
    packets = wire.syns(port) + wire.udp(port)
    sources = {src for src, _ in packets}
    if sources - prison_addrs(prison):
        return "escaped"
    if sources:
        return "coerced"
    if "err errno" in out:  # "err errno=1 EPERM sendto": which call failed, and how
        name, call = out.split("err errno=")[1].split()[1:3]
        return f"refused ({call} {name})"
    return "dropped"


def inbound(d, prison, argv, port, foreign=("127.0.0.1", "::1")) -> str:
    """Start a listener in the prison, try to reach it on foreign addresses from the host."""
    proc = subprocess.Popen(prisonctl_cmd() + ["--socket", d.socket, "exec", prison, "--", *map(str, argv)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline().decode()
        if not first.startswith("ok local="):
            return "refused"
        port = port or int(first.split("local=")[1].split()[0].rsplit(":", 1)[1])
        reached = False
        with Wire() as wire:
            for addr in foreign:
                fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
                with socket.socket(fam, socket.SOCK_STREAM) as c:
                    c.settimeout(1.0)
                    try:
                        c.connect((addr, port))
                        reached = True
                    except OSError:
                        pass
        synacks = [s for s, _, f in wire.tcp_from(port) if f & 0x12 == 0x12 and s in foreign]
        if reached or synacks:
            return "escaped"
        # how: a listener on its own address (foreign SYNs are answered with a reset), or one
        # left on the wildcard whose foreign SYNs the ingress filter drops (clients time out)
        local = first.split("local=")[1].split()[0].rsplit(":", 1)[0]
        return "blocked (wildcard, SYNs dropped)" if local in ("0.0.0.0", "[::]") else "blocked (own address)"
    finally:
        proc.kill()
        proc.wait()


PORT = object()  # stands for the sink's port in an attempt's command line


def attempt_out(d, prison, *argv) -> str:
    """Run argv in the prison against a fresh host-side sink on 127.0.0.9 and judge the wire."""
    sink = Sink()
    try:
        with Wire() as wire:
            out = run(d, prison, *(sink.port if a is PORT else a for a in argv))
        return outbound(wire, sink.port, prison, out)
    finally:
        sink.close()


# ---------------------------------------------------------------- the attempts
# each: (jail, prison, tools) -> outcome; EXPECT_SHIM: what a shim prison lets through


def static_connect(d, p, t):
    return attempt_out(d, p, t["static"], "connect", "127.0.0.9", PORT)


def static_bind_any_listen(d, p, t):
    port = free_port()
    return inbound(d, p, [t["static"], "serve", "0.0.0.0", port], port)


def syscall_connect(d, p, t):
    return attempt_out(d, p, t["dynamic"], "sys", "connect", "127.0.0.9", PORT)


def syscall_sendto(d, p, t):
    return attempt_out(d, p, t["dynamic"], "sys", "sendto", "127.0.0.9", PORT)


def syscall_bind_any_listen(d, p, t):
    port = free_port()
    return inbound(d, p, [t["dynamic"], "sys", "bind", "0.0.0.0", port], port)


def env_unset_preload(d, p, t):
    return attempt_out(d, p, "env", "-u", "LD_PRELOAD", "-u", "PRISOND_POLICY", t["dynamic"], "connect",
                       "127.0.0.9", PORT)


def raw_execve_clean_env(d, p, t):
    return attempt_out(d, p, t["dynamic"], "sys-exec-clean", t["dynamic"], "connect", "127.0.0.9", PORT)


def listen_without_bind(d, p, t):
    return inbound(d, p, [t["static"], "listen-unbound", "4", "hold"], None)


def udp_sendto_unbound(d, p, t):
    return attempt_out(d, p, t["static"], "udp", "sendto", "127.0.0.9", PORT)


def dual_stack_listener(d, p, t):
    port = free_port()
    return inbound(d, p, [t["static"], "serve", "::", port, 0], port)


def v4_mapped_connect(d, p, t):
    return attempt_out(d, p, t["static"], "v4mapped", "127.0.0.9", PORT)


def io_uring_connect(d, p, t):
    return attempt_out(d, p, t["uring"], "127.0.0.9", PORT)


def raw_forged_source(d, p, t):
    """As root in the prison: a raw socket writing a packet from 127.0.0.77."""
    return attempt_out(d, p, t["static"], "raw-forge", "127.0.0.77", "127.0.0.9", PORT)


def resolver_query(d, p, t):
    """glibc's resolver (libc-internal socket calls): getent asks a nameserver on 127.0.0.53."""
    port = 53
    # beside the test programs, which the prisons see (their /tmp is their own)
    os.makedirs(os.path.dirname(RESULTS_FILE), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False, dir=os.path.dirname(RESULTS_FILE)) as fh:
        fh.write("nameserver 127.0.0.53\noptions timeout:1 attempts:1\n")
    os.chmod(fh.name, 0o644)
    ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ns.bind(("127.0.0.53", port))
    try:
        with Wire() as wire:
            out = run(d, p, "unshare", "--mount", "sh", "-c",
                      f"mount --bind {fh.name} /etc/resolv.conf && getent ahosts prison-test.invalid")
        return outbound(wire, port, p, out)
    finally:
        ns.close()
        os.unlink(fh.name)


ATTEMPTS = {
    "static binary: connect": (static_connect, "escaped"),
    "static binary: bind 0.0.0.0 + listen": (static_bind_any_listen, "escaped"),
    "syscall(SYS_connect)": (syscall_connect, "escaped"),
    "syscall(SYS_sendto)": (syscall_sendto, "escaped"),
    "syscall(SYS_bind 0.0.0.0) + listen": (syscall_bind_any_listen, "escaped"),
    "env -u LD_PRELOAD then exec": (env_unset_preload, "coerced"),
    "syscall(SYS_execve) with env cleared": (raw_execve_clean_env, "escaped"),
    "listen() without bind (static)": (listen_without_bind, "escaped"),
    "UDP sendto unbound (static)": (udp_sendto_unbound, "escaped"),
    "dual-stack :: listener (static)": (dual_stack_listener, "escaped"),
    "v4-mapped connect (static)": (v4_mapped_connect, "escaped"),
    "io_uring connect": (io_uring_connect, "escaped"),
    "glibc resolver (getent ahosts)": (resolver_query, "escaped"),
}
RAW_ATTEMPTS = {
    "raw socket, forged source, not allowed": (raw_forged_source, "escaped"),
    "raw socket, forged source, allow.raw_sockets": (raw_forged_source, "escaped"),
}


@pytest.fixture(scope="module")
def tools(nettool, nettool_static, uring_static):
    return {"dynamic": nettool, "static": nettool_static, "uring": uring_static}


@pytest.mark.parametrize("level", ["shim", "kernel"])
@pytest.mark.parametrize("attempt", list(ATTEMPTS) + list(RAW_ATTEMPTS))
def test_escape(jail, tools, attempt, level):
    fn, expect_shim = {**ATTEMPTS, **RAW_ATTEMPTS}[attempt]
    raw = attempt.endswith("allow.raw_sockets")
    prison = {"shim": "sraw" if raw else "s", "kernel": "kraw" if raw else "k"}[level]
    outcome = fn(jail, prison, tools)
    RESULTS[(attempt, level)] = outcome
    if level == "kernel":
        assert outcome.split()[0] in ("coerced", "refused", "dropped", "blocked"), f"{attempt}: {outcome}"
    else:
        assert outcome == expect_shim, f"{attempt}: the shim now gives {outcome}; update the README's limits"


def test_kernel_drops_are_counted(jail, tools):
    """The forged packet dropped in the kernel prison shows in its counters."""
    from support.daemon import wait_for
    before = jail.show("kraw")["kernel_counters"]["egress_dropped"]
    raw_forged_source(jail, "kraw", tools)
    # show's figures may be a quarter of a second old
    wait_for(lambda: jail.show("kraw")["kernel_counters"]["egress_dropped"] >= before + 1, what="the drop counted")
    assert jail.show("s")["kernel_counters"] is None  # a shim prison has none


def test_results_are_recorded(jail, tools):
    for level, prison in (("shim", "s"), ("kernel", "k")):  # run alone (-k), it makes its own row
        if ("static binary: connect", level) not in RESULTS:
            RESULTS[("static binary: connect", level)] = static_connect(jail, prison, tools)
    write_results()
    with open(RESULTS_FILE) as fh:
        text = fh.read()
    print("\n" + text)
    assert "| static binary: connect | escaped | coerced |" in text


