"""`prisonctl check --host`: what a valid configuration still needs from this host, checked
before a start (each problem as file:line: key.path: reason, like the configuration's own):

- a confined prison's root is a directory, its mounts' sources exist (and an isolated
  prison's targets, unless in its private /run, /tmp or /var/tmp), a consolelog's directory
  exists;
- exec.start / exec.stop name a program that is there: in the prison's root (through its
  mounts) for a confined prison, on the host otherwise; a name without a slash is looked for
  in the service PATH;
- exec.jail_user is in the prison's passwd (the root's, or the host's);
- every named interface exists; an address that would need one (not loopback, none named,
  not on the host already) is reported;
- limits have their cgroup controllers here (and daemon.limits is not false).

The host is reached through the functions passed in (tests pass their own)."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from prisond.model.config import Config, PrisonSpec, dotted
from prisond.model import contract as C
from prisond.model.contract import SERVICE_PATH
from prisond.model.yamlsrc import Source


def is_local(ip: str) -> bool:
    """Is ip an address of this host?  (Binding to it works only then.)"""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
            return True
        except OSError:
            return False


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _iface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


@dataclass
class HostView:
    exists: Callable[[str], bool] = os.path.exists
    isdir: Callable[[str], bool] = os.path.isdir
    is_exec: Callable[[str], bool] = lambda p: os.path.isfile(p) and os.access(p, os.X_OK)
    read: Callable[[str], str] = _read
    realpath: Callable[[str], str] = os.path.realpath
    iface_exists: Callable[[str], bool] = _iface_exists
    has_address: Callable[[str], bool] = is_local
    controllers: set[str] | None = field(default=None)  # None: no cgroup controllers to enforce limits


def problems(config: Config, src: Source, host: HostView) -> list[str]:
    out: list[str] = []

    def bad(path: tuple, reason: str) -> None:
        line = src.line(path) or src.line(path[:2])
        out.append(f"{src.filename}:{line}: {dotted(path)}: {reason}" if line else
                   f"{src.filename}: {dotted(path)}: {reason}")

    for spec in config.prisons:
        base = ("prisons", spec.name)
        _files(spec, base, host, bad)
        _programs(spec, base, host, bad)
        _user(spec, base, host, bad)
        _addresses(spec, base, host, bad)
        wanted = spec.limits.controllers()
        if wanted:
            have = host.controllers if config.daemon.limits else None
            missing = sorted(wanted - (have or set()))
            if missing:
                why = "daemon.limits is false" if not config.daemon.limits else "this host has no such controller"
                bad(base + ("limits",), f"needs the cgroup controllers {', '.join(missing)} ({why})")
    return out


def _in_root(spec: PrisonSpec, path: str) -> str:
    """Where a path inside the prison is on the host: through its mounts, else under its root."""
    if spec.path is None:
        return path
    for m in sorted(spec.mounts, key=lambda m: -len(m.target)):
        if path == m.target or path.startswith(m.target.rstrip("/") + "/"):
            return m.source + path[len(m.target.rstrip("/")):]
    return os.path.join(spec.path, path.lstrip("/"))


# where prisonjail makes a missing mount point of an isolated prison
PRIVATE = tuple("/" + d for d in (C.MADE_UNDER_RUN, C.MADE_UNDER_TMP, C.MADE_UNDER_VAR_TMP))


def _files(spec: PrisonSpec, base: tuple, host: HostView, bad) -> None:
    if spec.path is not None and not host.isdir(spec.path):
        bad(base + ("path",), f"{spec.path} is not a directory here (prisonctl mkroot makes one)")
    for i, m in enumerate(spec.mounts):
        if not host.exists(m.source):
            bad(base + ("mounts", i), f"{m.source} does not exist here")
        elif host.realpath(m.source) != m.source:
            bad(base + ("mounts", i), f"{m.source}: a symbolic link on its way (it leads to "
                f"{host.realpath(m.source)}): prisond mounts no source through a link")
        elif spec.path is None and not host.exists(m.target) and not m.target.startswith(PRIVATE):
            bad(base + ("mounts", i), f"{m.target}: no such mount point on the host (an isolated prison's "
                "mounts go onto the host's tree, or into its private /run, /tmp or /var/tmp)")
    log = spec.exec.consolelog
    if log and not host.isdir(os.path.dirname(log)):
        bad(base + ("exec", "consolelog"), f"{os.path.dirname(log)} does not exist here")


def _programs(spec: PrisonSpec, base: tuple, host: HostView, bad) -> None:
    if spec.path is not None and not host.isdir(spec.path):
        return  # said already
    for hook in ("start", "stop"):
        cmd = getattr(spec.exec, hook)
        if cmd is None:
            continue
        prog = cmd.argv[0]
        where = [prog] if "/" in prog else [os.path.join(d, prog) for d in SERVICE_PATH.split(":")]
        if not any(host.is_exec(_in_root(spec, p)) for p in where):
            inside = "in the prison's root" if spec.path else "on this host"
            bad(base + ("exec", hook), f"{prog}: no such program {inside}"
                + ("" if "/" in prog else f" (PATH {SERVICE_PATH})"))


def _user(spec: PrisonSpec, base: tuple, host: HostView, bad) -> None:
    user = spec.exec.jail_user
    if not user:
        return
    passwd = _in_root(spec, "/etc/passwd")
    try:
        names = {line.split(":", 1)[0] for line in host.read(passwd).splitlines() if ":" in line}
    except OSError:
        bad(base + ("exec", "jail_user"), f"cannot read {passwd}")
        return
    if user not in names and not user.isdigit():
        bad(base + ("exec", "jail_user"), f"no user {user!r} in {passwd}")


def _addresses(spec: PrisonSpec, base: tuple, host: HostView, bad) -> None:
    for family, addrs in (("ip4", spec.ip4), ("ip6", spec.ip6)):
        for i, a in enumerate(addrs):
            iface = a.iface or spec.interface
            if iface:
                if not host.iface_exists(iface):
                    bad(base + ((family, i) if a.iface else ("interface",)), f"no interface {iface!r} here")
            elif not a.ip.is_loopback and not host.has_address(str(a.ip)):
                bad(base + (family, i), f"{a.ip} is not on this host and no interface is named for it "
                    "(iface|address, or the prison's interface:)")
