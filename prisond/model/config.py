"""Configuration: YAML in, validated immutable model out.  Pure: no I/O but reading the file.

Every problem is reported, each as ``file:line: key.path: reason``; nothing is half-accepted.
The model is made of frozen dataclasses so that a reload can compare prisons with ``==``.
"""
from __future__ import annotations

import functools
import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any

from prisond.model.contract import HOSTNAME_MAX, MAX_ADDRESSES, POLICY_VAR
from prisond.model.params import PARAMS, default, keys
from prisond.model.restart import POLICIES, RestartPolicy
from prisond.model.errors import ConfigError
from prisond.model.yamlsrc import Source, YamlError, load

DEFAULT_STOP_TIMEOUT: float = default("prisons.NAME.stop", "timeout")
ENFORCE_LEVELS = ("shim", "kernel")
ALLOW_FLAGS = tuple(p.key for p in PARAMS if p.section == "prisons.NAME.allow")
EXEC_HOOKS = ("prestart", "start", "poststart", "prestop", "stop", "poststop")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_IFACE_RE = re.compile(r"^[^\s/|:]{1,15}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Address:
    ip: IPAddr
    prefix: int
    iface: str | None = None

    def __str__(self) -> str:
        return str(self.ip)

    def spec(self) -> str:
        head = f"{self.iface}|" if self.iface else ""
        return f"{head}{self.ip}/{self.prefix}"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]

    @classmethod
    def shell(cls, text: str) -> Command:
        return cls(("/bin/sh", "-c", text))


@dataclass(frozen=True)
class ExecSpec:
    prestart: Command | None = None
    start: Command | None = None
    poststart: Command | None = None
    prestop: Command | None = None
    stop: Command | None = None
    poststop: Command | None = None
    consolelog: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    jail_user: str | None = None  # exec.start / exec.stop run as this user (jail.conf's name)


@dataclass(frozen=True)
class Limits:
    """What a prison may use (rctl's memoryuse, maxproc, pcpu, openfiles), through its cgroup."""
    memory: int | None = None       # bytes: hard limit (OOM kill inside the prison beyond it)
    memory_high: int | None = None  # bytes: soft limit (v2 memory.high, v1 soft_limit_in_bytes)
    pids: int | None = None         # processes and threads
    cpu: float | None = None        # CPUs (0.5 = half of one CPU)
    nofile: int | None = None       # RLIMIT_NOFILE of the prison's processes

    def controllers(self) -> set[str]:
        """The cgroup controllers these limits need."""
        need = set()
        if self.memory is not None or self.memory_high is not None:
            need.add("memory")
        if self.pids is not None:
            need.add("pids")
        if self.cpu is not None:
            need.add("cpu")
        return need


@dataclass(frozen=True)
class Mount:
    """A host directory or file shown inside a confined prison (jail(8)'s mount.fstab, simpler)."""
    source: str
    target: str
    readonly: bool = True


@dataclass(frozen=True)
class PrisonSpec:
    name: str
    hostname: str
    ip4: tuple[Address, ...] = ()
    ip6: tuple[Address, ...] = ()
    interface: str | None = None
    exec: ExecSpec = field(default_factory=ExecSpec)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    allow: frozenset[str] = frozenset()
    enforce: str | None = None  # None: the host's default (kernel where possible)
    path: str | None = None     # the prison's root: set, the prison is confined (see README)
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    isolate: bool = True        # a PID namespace and private /run, /tmp, ... even without path
    hosts: str = "own"          # own | all | inherit: the prison's /etc/hosts
    runtime_directory: tuple[str, ...] = ()  # made in its private /run, jail_user's

    @property
    def confined(self) -> bool:
        return self.path is not None

    @property
    def own_pids(self) -> bool:
        """Whether the prison has a PID namespace of its own (confined or isolated)."""
        return self.path is not None or self.isolate

    @property
    def addresses(self) -> tuple[Address, ...]:
        return self.ip4 + self.ip6

    @functools.cached_property
    def ips(self) -> frozenset[IPAddr]:
        """Its addresses, hashed once: a reload among 10,000 prisons unions them all (a set's
        union reuses the hashes; an address's own hash is Python code), and keeps the spec."""
        return frozenset(a.ip for a in self.ip4 + self.ip6)


@dataclass(frozen=True)
class DaemonSpec:  # the defaults are the parameter table's (params.py)
    cgroup_parent: str = default("daemon", "cgroup_parent")
    kernel_layer: bool = default("daemon", "kernel_layer")  # false: load no BPF; prisons default to the shim
    limits: bool = default("daemon", "limits")  # false: leave the cgroup controllers alone
    memory_accounting: bool = default("daemon", "memory_accounting")  # false: no memory cgroup per prison
    control_group: str = default("daemon", "control_group")  # its members may change things
    public_read: bool = default("daemon", "public_read")  # any local user may read; false: root and the group
    metrics_listen: tuple[str, int] | None = None  # (host address, port) of the Prometheus listener
    log_dir: str = default("daemon", "log_dir")
    log_max_bytes: int = default("daemon", "log_max_bytes")
    log_keep: int = default("daemon", "log_keep")


@dataclass(frozen=True)
class Config:
    source: str
    prisons: tuple[PrisonSpec, ...] = ()
    daemon: DaemonSpec = field(default_factory=DaemonSpec)

    @functools.cached_property
    def by_name(self) -> dict[str, PrisonSpec]:
        """Each prison by name, in the file's order: made once per configuration (a reload
        among 10,000 prisons looks up the few it changes, and diffs against the last one's)."""
        return {p.name: p for p in self.prisons}

    @functools.cached_property
    def listing_all(self) -> frozenset[str]:
        """The prisons whose hosts file lists every prison (hosts: all)."""
        return frozenset(p.name for p in self.prisons if p.hosts == "all")

    def prison(self, name: str) -> PrisonSpec | None:
        return self.by_name.get(name)

    def require(self, name: str) -> PrisonSpec:
        """The prison of that name, which the caller knows is there (a reload's diff)."""
        spec = self.prison(name)
        if spec is None:
            raise KeyError(name)
        return spec


# ---------------------------------------------------------------- loading


def load_file(path: str) -> Config:
    return parse(read_text(path), path)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None


def parse(text: str, filename: str) -> Config:
    return parse_source(text, filename)[0]


def parse_source(text: str, filename: str) -> tuple[Config, Source]:
    """The configuration, and the YAML it was read from (with the line of every key)."""
    try:
        src = load(text, filename)
    except YamlError as exc:
        raise ConfigError([str(exc)]) from None
    v = _Validator(src)
    config = v.config()
    if v.problems:
        raise ConfigError(v.problems)
    return config, src


def cross_problems(prisons) -> list[str]:
    """What only several prisons together can get wrong (an address held twice, a path inside
    another's root), without lines: configfile.py's question whether the whole file must be
    read again to say where."""
    v = _Validator(Source("", None))
    v.overlaps(prisons)
    v.inside_roots(prisons)
    return v.problems


# ---------------------------------------------------------------- validation


def dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


class _Validator:
    def __init__(self, src: Source):
        self.src = src
        self.problems: list[str] = []
        self.origin: dict = {}  # merged path -> path where the value was written
        self.memory_accounting = True  # daemon.memory_accounting, read before the prisons

    def bad(self, path, reason: str) -> None:
        """Record a problem where it was written (a default is blamed once, on `defaults`)."""
        path = self.origin.get(path, path)
        line = self.src.line(path)
        where = f"{self.src.filename}:{line}" if line else self.src.filename
        problem = f"{where}: {dotted(path)}: {reason}"
        if problem not in self.problems:
            self.problems.append(problem)

    # -- shapes

    def mapping(self, value, path, allowed=None) -> dict:
        """A mapping (empty if absent); with `allowed`, unknown keys are problems."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(path, f"must be a mapping, not {_kind(value)}")
            return {}
        for key in value if allowed is not None else ():
            if key not in allowed:
                hint = f" (known: {', '.join(sorted(allowed))})"
                self.bad(path + (key,), f"unknown key{hint}")
        return value

    def string(self, value, path) -> str | None:
        if not isinstance(value, str) or not value:
            self.bad(path, f"must be a non-empty string, not {_kind(value)}")
            return None
        if "\0" in value:
            self.bad(path, "must not hold a NUL character")
            return None
        return value

    def boolean(self, value, path) -> bool:
        if not isinstance(value, bool):
            self.bad(path, f"must be true or false, not {_kind(value)}")
            return False
        return value

    # -- top level

    def config(self) -> Config:
        for path, first, second in self.src.duplicates:
            what = "prison" if len(path) == 2 and path[0] == "prisons" else "key"
            self.bad(path, f"duplicate {what} {path[-1]!r} (first at line {first}, again at line {second})")
        top = self.mapping(self.src.data, (), keys(""))
        daemon = self.daemon(top.get("daemon"), ("daemon",))
        defaults = self.mapping(top.get("defaults"), ("defaults",), _PRISON_KEYS - {"hostname", "ip4", "ip6"})
        prisons_raw = self.mapping(top.get("prisons"), ("prisons",))
        prisons = []
        for name, body in prisons_raw.items():
            path = ("prisons", name)
            if isinstance(name, bool):  # YAML 1.1 reads on/off/yes/no as booleans
                self.bad(path, f"YAML read this prison's name as {str(name).lower()}: quote it (\"off\": ...)")
                continue
            elif not isinstance(name, str) or not _NAME_RE.match(name) or name.isdigit():
                self.bad(path, "prison names are 1-63 letters, digits, '_' or '-', not all digits")
                continue
            merged = self.merge(defaults, body, ("defaults",), path)
            spec = self.prison(name, merged, path)
            if spec:
                prisons.append(spec)
        self.overlaps(prisons)
        self.inside_roots(prisons)
        return Config(source=self.src.filename, prisons=tuple(prisons), daemon=daemon)

    def daemon(self, value, path) -> DaemonSpec:
        d = self.mapping(value, path, keys("daemon"))
        dflt = DaemonSpec()
        parent = dflt.cgroup_parent
        if "cgroup_parent" in d:
            parent = self.string(d["cgroup_parent"], path + ("cgroup_parent",)) or parent
            if ".." in parent.split("/"):
                self.bad(path + ("cgroup_parent",), "must not contain '..'")
        kernel = self.boolean(d["kernel_layer"], path + ("kernel_layer",)) if "kernel_layer" in d else dflt.kernel_layer
        limits = self.boolean(d["limits"], path + ("limits",)) if "limits" in d else dflt.limits
        memory = d.get("memory_accounting", dflt.memory_accounting)
        if not isinstance(memory, bool):  # reported; the default meanwhile, so that no prison's memory limit is too
            memory = self.boolean(memory, path + ("memory_accounting",)) or dflt.memory_accounting
        self.memory_accounting = memory
        group = self.string(d["control_group"], path + ("control_group",)) if "control_group" in d else None
        public = self.boolean(d["public_read"], path + ("public_read",)) if "public_read" in d else dflt.public_read
        listen = self.listen_address(d["metrics_listen"], path + ("metrics_listen",)) if "metrics_listen" in d else None
        log_dir = dflt.log_dir
        if "log_dir" in d:
            log_dir = self.string(d["log_dir"], path + ("log_dir",)) or log_dir
            if not _clean_abs(log_dir):
                self.bad(path + ("log_dir",), f"must be an absolute path without '..', not {log_dir!r}")
        max_bytes = dflt.log_max_bytes
        if "log_max_bytes" in d:
            try:
                max_bytes = parse_size(d["log_max_bytes"]) or 0
                if max_bytes < 4096:
                    raise ValueError
            except (ValueError, TypeError):
                self.bad(path + ("log_max_bytes",), f"must be a size of at least 4K, not {d['log_max_bytes']!r}")
        keep = d.get("log_keep", dflt.log_keep)
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 100:
            self.bad(path + ("log_keep",), f"must be a whole number from 1 to 100, not {keep!r}")
            keep = dflt.log_keep
        return DaemonSpec(cgroup_parent=parent.strip("/"), kernel_layer=kernel, limits=limits, memory_accounting=memory,
                          control_group=group or dflt.control_group, public_read=public, metrics_listen=listen,
                          log_dir=_norm(log_dir), log_max_bytes=max_bytes, log_keep=keep)

    def listen_address(self, value, path) -> tuple[str, int] | None:
        text = self.string(value, path)
        host, _, port = (text or "").rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ipaddress.ip_address(host)
            number = int(port)
            if not 0 < number < 65536:
                raise ValueError
        except ValueError:
            self.bad(path, f"must be ADDRESS:PORT (127.0.0.1:9688, [::1]:9688), not {value!r}")
            return None
        return host, number

    def merge(self, defaults: dict, body, dpath, ppath):
        """Deep-merge defaults under a prison's own keys, remembering where each came from."""
        if not isinstance(body, dict) or not isinstance(defaults, dict):
            return body if body is not None else defaults
        out = dict(defaults)
        for key, value in defaults.items():
            self._mark_origin(ppath + (key,), dpath + (key,), value)
        for key, value in body.items():
            if isinstance(value, dict) and isinstance(defaults.get(key), dict):
                out[key] = self.merge(defaults[key], value, dpath + (key,), ppath + (key,))
            else:
                out[key] = value
                self._unmark_origin(ppath + (key,))
        return out

    def _mark_origin(self, merged, written, value):
        self.origin[merged] = written
        if isinstance(value, dict):
            for k, v in value.items():
                self._mark_origin(merged + (k,), written + (k,), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._mark_origin(merged + (i,), written + (i,), v)

    def _unmark_origin(self, merged):
        for key in [k for k in self.origin if k[: len(merged)] == merged]:
            del self.origin[key]

    # -- one prison

    def prison(self, name: str, body, path) -> PrisonSpec | None:
        before = len(self.problems)
        body = self.mapping(body, path, _PRISON_KEYS)
        hostname = body.get("hostname", name)
        if "hostname" not in body and not _valid_hostname(name):
            self.bad(path, f"no hostname given and the name {name!r} is not a valid hostname")
        elif self.string(hostname, path + ("hostname",)) and not _valid_hostname(hostname):
            self.bad(path + ("hostname",), f"{hostname!r} is not a valid hostname "
                     "(RFC 1123 labels of letters, digits and '-', at most 64 characters)")
        interface = None
        if "interface" in body:
            interface = self.string(body["interface"], path + ("interface",))
            if interface and not _IFACE_RE.match(interface):
                self.bad(path + ("interface",), f"{interface!r} is not an interface name")
        ip4 = self.addresses(body.get("ip4"), path + ("ip4",), 4)
        ip6 = self.addresses(body.get("ip6"), path + ("ip6",), 6)
        execs = self.exec_spec(body.get("exec"), path + ("exec",))
        stop = self.mapping(body.get("stop"), path + ("stop",), keys("prisons.NAME.stop"))
        timeout = stop.get("timeout", DEFAULT_STOP_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < math.inf:
            self.bad(path + ("stop", "timeout"), f"must be a number of seconds >= 0, not {timeout!r}")
            timeout = DEFAULT_STOP_TIMEOUT
        allow_raw = self.mapping(body.get("allow"), path + ("allow",), set(ALLOW_FLAGS))
        allow = frozenset(k for k in ALLOW_FLAGS if k in allow_raw and self.boolean(allow_raw[k], path + ("allow", k)))
        enforce = body.get("enforce")
        if enforce is not None and enforce not in ENFORCE_LEVELS:
            self.bad(path + ("enforce",), f"must be one of {', '.join(ENFORCE_LEVELS)}, not {enforce!r}")
        root = None
        if "path" in body:
            root = self.string(body["path"], path + ("path",))
            if root and not _clean_abs(root):
                self.bad(path + ("path",), f"must be an absolute path without '..', not {root!r}")
        mounts = self.mounts(body.get("mounts"), path + ("mounts",))
        isolate = body.get("isolate", True)
        if not isinstance(isolate, bool):  # reported once; the default then, so nothing else follows from it
            self.boolean(isolate, path + ("isolate",))
            isolate = True
        if mounts and root is None and not isolate:
            self.bad(path + ("mounts",), "needs path: or isolate: true (a mount namespace to mount into)")
        hosts = body.get("hosts", "own" if root is not None or isolate else "inherit")
        if hosts not in HOSTS_KINDS:
            self.bad(path + ("hosts",), f"must be one of {', '.join(HOSTS_KINDS)}, not {hosts!r}")
        elif hosts != "inherit" and root is None and not isolate:
            self.bad(path + ("hosts",), "needs path: or isolate: true (or hosts: inherit)")
        rundirs = self.rundirs(body.get("runtime_directory"), path + ("runtime_directory",))
        if rundirs and root is None and not isolate:
            self.bad(path + ("runtime_directory",), "needs path: or isolate: true (a private /run)")
        if root is not None and "set_hostname" in allow:
            self.bad(path + ("allow", "set_hostname"), "not available in a confined prison (path:): its root "
                     "has no CAP_SYS_ADMIN; the hostname is the configuration's")
        limits = self.limits(body.get("limits"), path + ("limits",))
        restart = self.restart(body.get("restart"), path + ("restart",))
        if len(self.problems) != before:
            return None
        return PrisonSpec(name=name, hostname=hostname, ip4=tuple(ip4), ip6=tuple(ip6), interface=interface,
                          exec=execs, stop_timeout=float(timeout), allow=allow, enforce=enforce,
                          path=_norm(root) if root else None, mounts=tuple(mounts), limits=limits,
                          restart=restart, isolate=isolate, hosts=hosts, runtime_directory=tuple(rundirs))

    def rundirs(self, value, path) -> list[str]:
        """runtime_directory: names relative to /run, as systemd's RuntimeDirectory=."""
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.bad(path, f"must be a list of directory names, not {_kind(value)}")
            return []
        if len(value) > MAX_RUNDIRS:
            self.bad(path, f"at most {MAX_RUNDIRS} directories, not {len(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if (not isinstance(item, str) or not _RUNDIR_RE.match(item.lstrip("/"))
                    or {".", ".."} & set(item.split("/"))):
                self.bad(path + (i,), f"must be a relative path of letters, digits, '.', '_', '-' "
                         f"(no '.' or '..'), not {item!r}")
            elif item.strip("/").split("/")[0] == "lock":
                self.bad(path + (i,), "/run/lock is every user's (1777), not a runtime directory")
            else:
                out.append(item.strip("/"))
        return out

    def restart(self, value, path) -> RestartPolicy:
        shorthand = isinstance(value, str) or value is False  # YAML reads a bare `no` as false
        if shorthand:
            value = {"policy": "no" if value is False else value}
        body = self.mapping(value, path, keys("prisons.NAME.restart"))
        out: dict[str, Any] = {}
        if "policy" in body:
            policy = "no" if body["policy"] is False else body["policy"]
            if policy not in POLICIES:
                self.bad(path if shorthand else path + ("policy",),
                         f"must be one of {', '.join(POLICIES)}, not {body['policy']!r}")
            else:
                out["policy"] = policy
        for key, least in (("delay", 0), ("max_delay", 0), ("interval", 0.001)):
            if key in body:
                v = body[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not least <= v < math.inf:
                    self.bad(path + (key,), f"must be a number of seconds >= {least:g}, not {v!r}")
                else:
                    out[key] = float(v)
        if "burst" in body:
            v = body["burst"]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                self.bad(path + ("burst",), f"must be a whole number >= 1, not {v!r}")
            else:
                out["burst"] = v
        return RestartPolicy(**out)

    def limits(self, value, path) -> Limits:
        body = self.mapping(value, path, keys("prisons.NAME.limits"))
        out: dict[str, Any] = {}
        for key in ("memory", "memory_high"):
            if key in body:
                n = parse_size(body[key])
                if n is None or n < 1 << 20:
                    self.bad(path + (key,), f"must be a size of at least 1M (e.g. 512M, 2G), not {body[key]!r}")
                elif not self.memory_accounting:
                    self.bad(path + (key,), "needs a memory cgroup per prison: daemon.memory_accounting is false")
                else:
                    out[key] = n
        for key, top in (("pids", 4194304), ("nofile", 1 << 20)):
            if key in body:
                v = body[key]
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
                    self.bad(path + (key,), f"must be a whole number from 1 to {top}, not {v!r}")
                else:
                    out[key] = v
        if "cpu" in body:
            c = parse_cpu(body["cpu"])
            if c is None:
                self.bad(path + ("cpu",), f"must be a share of CPUs such as 50% or 1.5 (at least 1%), "
                         f"not {body['cpu']!r}")
            else:
                out["cpu"] = c
        if "memory" in out and "memory_high" in out and out["memory_high"] > out["memory"]:
            self.bad(path + ("memory_high",), "is above memory (the hard limit)")
        return Limits(**out)

    def mounts(self, value, path) -> list[Mount]:
        """mounts: a list of {source, target (default: source), readonly (default: true)}."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(path, f"must be a list of mounts, not {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            here = path + (i,)
            if isinstance(item, str):
                item = {"source": item}
            body = self.mapping(item, here, keys("prisons.NAME.mounts[]"))
            if not body:
                if isinstance(item, dict) or item is None:  # `- ~` or a bare `-`: not nothing
                    self.bad(here, "needs source:")
                continue
            src = self.string(body.get("source"), here + ("source",)) if "source" in body else None
            if src is None:
                self.bad(here, "needs source:")
                continue
            dst = self.string(body["target"], here + ("target",)) if "target" in body else src
            ro = self.boolean(body["readonly"], here + ("readonly",)) if "readonly" in body else True
            for key, val in (("source", src), ("target", dst if "target" in body else None)):
                if val is not None and not _clean_abs(val):
                    self.bad(here + (key,), f"must be an absolute path without '..', not {val!r}")
            if dst is not None and _norm(dst) == "/":
                self.bad(here + ("target",), "cannot be the prison's root itself (that is path:)")
            if src and dst and _clean_abs(src) and _clean_abs(dst):
                out.append(Mount(_norm(src), _norm(dst), ro))
        return out

    def exec_spec(self, value, path) -> ExecSpec:
        body = self.mapping(value, path, keys("prisons.NAME.exec"))
        hooks = {}
        for hook in EXEC_HOOKS:
            if hook in body:
                hooks[hook] = self.command(body[hook], path + (hook,))
        consolelog = None
        if "consolelog" in body:
            consolelog = self.string(body["consolelog"], path + ("consolelog",))
            if consolelog and not consolelog.startswith("/"):
                self.bad(path + ("consolelog",), "must be an absolute path")
        env = []
        for key, val in self.mapping(body.get("env"), path + ("env",)).items():
            if not isinstance(key, str) or not _ENV_RE.match(key):
                self.bad(path + ("env", key), "not a valid environment variable name")
            elif key in ("LD_PRELOAD", POLICY_VAR):
                self.bad(path + ("env", key), "is set by prisond")
            elif not isinstance(val, (str, int, float)) or isinstance(val, bool):
                self.bad(path + ("env", key), f"must be a string, not {_kind(val)}")
            elif "\0" in str(val):
                self.bad(path + ("env", key), "must not hold a NUL character")
            else:
                env.append((key, str(val)))
        jail_user = None
        if "jail_user" in body:
            user = body["jail_user"]
            jail_user = str(user) if isinstance(user, int) and not isinstance(user, bool) else \
                self.string(user, path + ("jail_user",))
        return ExecSpec(consolelog=consolelog, env=tuple(sorted(env)), jail_user=jail_user, **hooks)

    def command(self, value, path) -> Command | None:
        if isinstance(value, str) and value.strip() and "\0" not in value:
            return Command.shell(value)
        if isinstance(value, list) and value and all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                                     for a in value):
            argv = tuple(str(a) for a in value)
            if any("\0" in a for a in argv):
                self.bad(path, "must not hold a NUL character (no program can be given one)")
                return None
            if argv[0]:
                return Command(argv)
        self.bad(path, "must be a command: a non-empty list of arguments, or a string for /bin/sh -c")
        return None

    def addresses(self, value, path, family: int) -> list[Address]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.bad(path, f"must be a list of addresses, not {_kind(value)}")
            return []
        out, seen = [], set()
        if len(value) > MAX_ADDRESSES:
            self.bad(path, f"at most {MAX_ADDRESSES} addresses per family")
            return []
        for i, item in enumerate(value):
            addr = self.address(item, path + (i,), family)
            if addr is None:
                continue
            if addr.ip in seen:
                self.bad(path + (i,), f"{addr.ip} is listed twice")
                continue
            seen.add(addr.ip)
            out.append(addr)
        return out

    def address(self, item, path, family: int) -> Address | None:
        if not isinstance(item, str):
            self.bad(path, f"must be an address string, not {_kind(item)}")
            return None
        iface, _, rest = item.rpartition("|")
        if iface and not _IFACE_RE.match(iface):
            self.bad(path, f"{iface!r} is not an interface name")
            return None
        text, _, plen = rest.partition("/")
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            self.bad(path, f"{item!r} is not an IPv{family} address")
            return None
        if ip.version != family:
            self.bad(path, f"{ip} is an IPv{ip.version} address; put it under ip{ip.version}")
            return None
        width = 32 if family == 4 else 128
        try:
            prefix = int(plen) if plen else width
            if not 0 < prefix <= width:
                raise ValueError
        except ValueError:
            self.bad(path, f"bad prefix length in {item!r}")
            return None
        reason = _unusable(ip, prefix)
        if reason:
            self.bad(path, f"{ip} {reason}")
            return None
        return Address(ip=ip, prefix=prefix, iface=iface or None)

    def inside_roots(self, prisons: list[PrisonSpec]) -> None:
        """No host path the daemon opens or mounts may lie inside a confined prison's root: the
        prison's root user owns everything there and can turn any directory on the way into a
        symlink to a host directory (consolelog: the daemon would write where the prison says)
        or a fifo (the daemon would hang opening it), or change a neighbour's mount under it."""
        roots: dict[str, str] = {}  # a root (normalised, no trailing '/') -> the first prison it is of
        for p in prisons:
            roots.setdefault(p.path.rstrip("/") or "/", p.name) if p.path else None
            # a read-write mount's source is the prison's to change as well (isolated prisons' too)
            for m in p.mounts:
                roots.setdefault(m.source.rstrip("/") or "/", p.name) if not m.readonly else None
        if not roots:
            return
        for p in prisons:
            paths: list[tuple[tuple, str]] = [(("exec", "consolelog"), p.exec.consolelog)] if p.exec.consolelog else []
            paths += [(("mounts", i, "source"), m.source) for i, m in enumerate(p.mounts)]
            for key, path in paths:
                owner = _owner(roots, path, itself=key[0] != "mounts")
                if owner is not None:
                    self.bad(("prisons", p.name) + key, f"{path} is inside the root of prison {owner!r} "
                             "(its root user could aim it anywhere on the host): put it outside every prison's path")

    def overlaps(self, prisons: list[PrisonSpec]) -> None:
        """An address may be in two prisons only when both have exactly one of that family (FreeBSD)."""
        if not _any_twice(prisons):
            return
        owners: dict = {}
        for p in prisons:
            for fam in ("ip4", "ip6"):
                addrs = getattr(p, fam)
                for i, a in enumerate(addrs):
                    prev = owners.get(a.ip)
                    if prev:
                        other, other_count = prev
                        if not (other_count == 1 and len(addrs) == 1):
                            self.bad(("prisons", p.name, fam, i),
                                     f"{a.ip} is also an address of prison {other!r} "
                                     "(shared only when both have exactly one address)")
                    else:
                        owners[a.ip] = (p.name, len(addrs))


def _any_twice(prisons) -> bool:
    """Whether some address is written twice (in one prison or two)."""
    seen: set = set()
    count = 0
    for p in prisons:
        seen |= p.ips
        count += len(p.ip4) + len(p.ip6)
    return len(seen) != count


def _owner(roots: dict[str, str], path: str, itself: bool) -> str | None:
    """The prison one of whose roots holds path (each of its ancestors looked up: a host with
    10,000 confined prisons checks 10,000 paths, not 10,000 squared); itself: the root counts."""
    cut = _norm(path)
    if itself and cut in roots:
        return roots[cut]
    while cut != "/":
        cut = cut.rsplit("/", 1)[0] or "/"
        if cut in roots:
            return roots[cut]
    return None


_PRISON_KEYS = keys("prisons.NAME")
HOSTS_KINDS = ("own", "all", "inherit")
MAX_RUNDIRS = 16  # prisonjail init's --rundir holds as many
_RUNDIR_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value) -> int | None:
    """512M, 2G, 1.5G, 1048576 (bytes); binary units.  None if it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value).strip()) if isinstance(value, str) else None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else None


def parse_cpu(value) -> float | None:
    """50% or 0.5 or 2 (CPUs).  None if it is not a share."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not 0.01 <= value <= 4096:
        return None
    return float(value)


def _clean_abs(p: str) -> bool:
    return p.startswith("/") and ".." not in p.split("/") and "\0" not in p


def _norm(p: str) -> str:
    return "/" + "/".join(c for c in p.split("/") if c and c != ".")


def _unusable(ip: IPAddr, prefix: int) -> str | None:
    if ip.is_unspecified:
        return "is the unspecified address"
    if ip.is_multicast:
        return "is a multicast address"
    if ip.version == 4:
        if ip == ipaddress.IPv4Address("255.255.255.255"):
            return "is the broadcast address"
        if prefix < 31 and ip == ipaddress.ip_network(f"{ip}/{prefix}", strict=False).broadcast_address:
            return f"is the broadcast address of its /{prefix} network"
    else:
        if ip.ipv4_mapped is not None:
            return "is a v4-mapped address; list the IPv4 address under ip4"
        if ip.is_link_local:
            return "is link-local; prisons need addresses that do not depend on a scope"
    return None


def _valid_hostname(name) -> bool:
    if not isinstance(name, str) or not name or len(name) > HOSTNAME_MAX:
        return False
    return all(_LABEL_RE.match(label) for label in name.rstrip(".").split("."))


def _kind(value) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
