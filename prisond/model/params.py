"""Every configuration key, once: where it sits, its type as the man page writes it, its
default, what it maps to (a flag letter, a cgroup file, a limit) and its documentation.

config.py takes the keys each level allows from here; prisond.yaml(5)'s list of keys is made
from it (``man_text``; tests/test_params.py checks the page holds exactly that) and the
README's example must name every key (the same test).  Documentation is scdoc markup.  Pure.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    section: str        # "" (the top level), "daemon", "prisons.NAME", "prisons.NAME.exec", ...
    key: str
    kind: str = ""      # as the man page writes the value: _BOOL_, _SIZE_, ...
    doc: str = ""
    default: object = None
    maps_to: str = ""


PARAMS: tuple[Param, ...] = (
    Param('', 'daemon', '',
          doc="The daemon's settings (below)."),
    Param('', 'defaults', '',
          doc=("Keys merged under every prison, deeply (a prison's own keys win): any prison key but\n"
               '*hostname*, *ip4* and *ip6*. A problem in a default is reported once, where it is\n'
               'written.')),
    Param('', 'prisons', '',
          doc=('The prisons, by name: 1 to 63 letters, digits, _\\__ or _-_, not all digits. Each is\n'
               'a mapping of the keys below.')),
    Param('daemon', 'cgroup_parent', '_NAME_', default='prisond',
          doc=('The cgroup, in the cgroup v2 tree, that holds one cgroup per prison (default\n'
               '*prisond*: _/sys/fs/cgroup/prisond_, or _/sys/fs/cgroup/unified/prisond_ on hosts that\n'
               "still mount cgroup v1 controllers). It lies outside the daemon's own unit on purpose:\n"
               'the prisons outlive a daemon that dies. No _.._ component.')),
    Param('daemon', 'kernel_layer', '_BOOL_', default=True,
          doc=("*true* (the default): load the cgroup BPF programs that enforce prisons' addresses in\n"
               'the kernel, where the host allows it. *false*: load none; prisons default to the shim.')),
    Param('daemon', 'limits', '_BOOL_', default=True,
          doc=('*true* (the default): use the cgroup controllers for *limits* and for the figures\n'
               '*prisonctl show* and *top* report. *false*: leave the controllers alone.')),
    Param('daemon', 'memory_accounting', '_BOOL_', default=True,
          doc=("*true* (the default): each prison has a memory cgroup of its own, for *limits.memory*\n"
               "and the memory figures. *false*: none; the prisons' memory is counted together, in\n"
               "*cgroup_parent*'s (on hybrid hosts the v1 memory cgroup of that name; prisond removes it\n"
               'when it stops: a limit on all prisons goes on an ancestor, as with *cgroup_parent:\n'
               'hosting/prisond*), *limits.memory* and *memory_high* are refused, and the memory and OOM\n'
               'figures are gone. Read when prisond starts. A memory cgroup costs the kernel about\n'
               '16 bytes for each file system the host has held at once at its busiest since it booted\n'
               '(each running prison holds three to five): about 1 MB a prison among 10,000.')),
    Param('daemon', 'control_group', '_GROUP_', default='prisond',
          doc=('Members of this group may change things through the control socket, as root may\n'
               '(default *prisond*; root alone when the host has no such group: create it with\n'
               '*addgroup --system prisond*).')),
    Param('daemon', 'public_read', '_BOOL_', default=True,
          doc=('*true* (the default): any local user may read (*list*, *show*, *ps*, *which*, *health*,\n'
               '*events*). *false*: only root and *control_group*.')),
    Param('daemon', 'metrics_listen', '_ADDRESS_:_PORT_',
          doc=('Serve every prison\'s figures for Prometheus over HTTP (*GET /metrics*) on this host\n'
               'address, such as _127.0.0.1:9688_ or _[::1]:9688_ (default: none; *prisonctl metrics*\n'
               'gives the same text). The figures say what runs on the host: bind it where only your\n'
               'monitoring reaches.')),
    Param('daemon', 'log_dir', '_DIR_', default='/var/log/prisond',
          doc=('Where each prison\'s service output goes, as _NAME.log_, when prisond does not run\n'
               'under systemd (under systemd it goes to the journal, with *PRISON=* and *JID=*\n'
               'fields). Default _/var/log/prisond_. *prisonctl logs* reads either.')),
    Param('daemon', 'log_max_bytes', '_SIZE_', default=10 << 20,
          doc='A prison\'s log file is rotated past this size (default 10M).'),
    Param('daemon', 'log_keep', '_N_', default=5,
          doc='Rotated files kept per prison, _NAME.log.1_ being the newest (default 5).'),
    Param('prisons.NAME', 'hostname', '_NAME_', default="the prison's name",
          doc=("The prison's hostname, in a UTS namespace of its own: RFC 1123 labels, at most 64\n"
               "characters. Default: the prison's name.")),
    Param('prisons.NAME', 'ip4', '[_ADDRESS_, ...]',
          maps_to="the kernel layer's policy map: at most contract.MAX_ADDRESSES",
          doc=("The prison's IPv4 addresses, at most 16, each _[IFACE|]ADDRESS[/PREFIX]_; the first is\n"
               'the primary. An address already on the host is used and never removed; one prisond adds\n'
               "goes on _IFACE_, else the prison's *interface*, else *lo* for 127.0.0.0/8, and is\n"
               'removed when the last prison using it stops.')),
    Param('prisons.NAME', 'ip6', '[_ADDRESS_, ...]',
          maps_to="the kernel layer's policy map: at most contract.MAX_ADDRESSES",
          doc='The same for IPv6 (*lo* for _::1_).'),
    Param('prisons.NAME', 'interface', '_IFACE_',
          doc='Where aliases go when an address names no interface.'),
    Param('prisons.NAME', 'exec', '',
          doc="The prison's commands (below)."),
    Param('prisons.NAME', 'stop', '',
          doc='How it is stopped (below).'),
    Param('prisons.NAME', 'allow', '',
          doc='What its processes may do beyond the default (below).'),
    Param('prisons.NAME', 'enforce', '*kernel* | *shim*', default='kernel where the host can, else shim',
          doc=('The enforcement level: *kernel* (the cgroup BPF programs: every socket of every\n'
               'program, static binaries and raw system calls included) or *shim* (the preloaded library\n'
               'alone: dynamically linked programs that call libc). Default: *kernel* where the host\n'
               'can. A prison that asks for *kernel* where the host cannot is not started (state\n'
               '*failed*, with the reason), never quietly downgraded.')),
    Param('prisons.NAME', 'path', '_DIR_',
          doc=("The prison's own root: the prison is confined (its own mount and PID namespace, _/proc_,\n"
               "a minimal _/dev_, capabilities cut to a jail root's, a seccomp filter). *prisonctl mkroot*\n"
               'makes one. An absolute path, no _.._ component.')),
    Param('prisons.NAME', 'mounts', '[_MOUNT_, ...]',
          doc=('Host paths shown inside the prison, in order (needs *path* or *isolate*). Each is a\n'
               'path (mounted read-only at the same place) or a mapping (below). In an isolated\n'
               "prison without *path* the target must exist on the host, or lie in its private\n"
               '_/run_, _/tmp_ or _/var/tmp_.')),
    Param('prisons.NAME', 'isolate', '_BOOL_', default=True,
          doc=("*true* (the default): the prison's processes live apart, as in every FreeBSD jail,\n"
               'even without *path*: a PID namespace and _/proc_ of their own, and private _/run_\n'
               '(with _/run/lock_), _/tmp_, _/var/tmp_, _/dev/shm_ and _/dev/mqueue_; the rest of the\n'
               "host's tree is shared (a \"thin\" prison). *false*: the prison sees the host's processes\n"
               "and those directories (a confined prison, *path*, always has its own).")),
    Param('prisons.NAME', 'hosts', '*own* | *all* | *inherit*', default='own',
          doc=("The prison's _/etc/hosts_, which the daemon writes and mounts read-only: *own* (the\n"
               'default): _localhost_, and the prison\'s hostname on its first address of each family;\n'
               '*all*: also every other prison of the configuration, by hostname; *inherit*: the\n'
               "root's own file (the host's, without *path*). Needs *path* or *isolate*.")),
    Param('prisons.NAME', 'runtime_directory', '[_NAME_, ...]',
          doc=("Directories made in the prison's private _/run_ before its service starts, owned by\n"
               '*exec.jail_user* (mode 0755), as systemd\'s _RuntimeDirectory=_: _sshd_ for sshd,\n'
               '_postgresql_ for PostgreSQL. At most 16; relative paths without _.._.')),
    Param('prisons.NAME', 'limits', '',
          doc='What the prison may use, through its cgroup (below).'),
    Param('prisons.NAME', 'restart', '*no* | *on-failure* | *always* | {...}',
          doc=('What happens when the service (*exec.start*) ends: a policy, or a mapping (below).\n'
               'Default *on-failure*.')),
    Param('prisons.NAME.exec', 'prestart', '_COMMAND_',
          doc='Run on the host before anything else.'),
    Param('prisons.NAME.exec', 'start', '_COMMAND_',
          doc=("The prison's service, run in the prison. Its output goes to the daemon's log (each line\n"
               'as *prison* _NAME_*: ...*) unless *consolelog* is set.')),
    Param('prisons.NAME.exec', 'poststart', '_COMMAND_',
          doc='Run on the host after the service started.'),
    Param('prisons.NAME.exec', 'prestop', '_COMMAND_',
          doc='Run on the host before stopping.'),
    Param('prisons.NAME.exec', 'stop', '_COMMAND_',
          doc='Run in the prison before SIGTERM is sent to every process.'),
    Param('prisons.NAME.exec', 'poststop', '_COMMAND_',
          doc='Run on the host after every process of the prison is gone.'),
    Param('prisons.NAME.exec', 'consolelog', '_FILE_',
          doc="Where the service's output goes instead of the daemon's log (an absolute path)."),
    Param('prisons.NAME.exec', 'env', '{_NAME_: _VALUE_, ...}',
          doc=("Added to the service's clean environment. *LD_PRELOAD* and *PRISOND_POLICY* are\n"
               "prisond's.")),
    Param('prisons.NAME.exec', 'jail_user', '_USER_', default='root',
          doc='*start* and *stop* run as this user (default root).'),
    Param('prisons.NAME.stop', 'timeout', '_SECONDS_', default=10.0,
          doc="From SIGTERM to SIGKILL (default 10), as jail's *stop.timeout*."),
    Param('prisons.NAME.allow', 'raw_sockets', '_BOOL_', default=False,
          maps_to='shim f=r, prisonjail --allow r: CAP_NET_RAW kept',
          doc='Raw IP sockets (SOCK_RAW); refused unless true. Even then forged sources are dropped.'),
    Param('prisons.NAME.allow', 'socket_af', '_BOOL_', default=False,
          maps_to='shim f=a, prisonjail --allow a',
          doc='Socket families other than inet, inet6, unix and route netlink.'),
    Param('prisons.NAME.allow', 'io_uring', '_BOOL_', default=False,
          maps_to='prisonjail --allow u',
          doc=('io_uring (*io_uring_setup*(2)); refused unless true. Its *IORING_OP_SOCKET* makes sockets\n'
               'that the socket-family filter (and *socket_af*) never sees; the kernel layer still forces\n'
               'their addresses.')),
    Param('prisons.NAME.allow', 'sysvipc', '_BOOL_', default=False,
          maps_to='no CLONE_NEWIPC',
          doc="Share the host's System V IPC instead of a namespace of the prison's own."),
    Param('prisons.NAME.allow', 'set_hostname', '_BOOL_', default=False,
          doc='Let the prison set its (own) hostname; not with *path*.'),
    Param('prisons.NAME.mounts[]', 'source', '_PATH_',
          doc='The host path: absolute, no _.._ component.'),
    Param('prisons.NAME.mounts[]', 'target', '_PATH_',
          doc="Where it appears inside the prison's root (default: *source*); not _/_."),
    Param('prisons.NAME.mounts[]', 'readonly', '_BOOL_', default=True,
          doc=('Default *true*, which holds for the whole tree below, submounts included. *false* gives\n'
               "the prison's root write access to that host directory.")),
    Param('prisons.NAME.restart', 'policy', '*no* | *on-failure* | *always*', default='on-failure',
          doc=('*on-failure* (the default): start the service again when it exits non-zero or is\n'
               'killed by a signal; *always*: whatever its end; *no*: the prison stays up without it\n'
               '(state *exited*). A prison whose init is gone (killed, out of memory) is started\n'
               'again whole unless the policy is *no*.')),
    Param('prisons.NAME.restart', 'delay', '_SECONDS_', default=1.0,
          doc=('Wait before a restart (default 1), doubled for each restart in a row up to\n'
               '*max_delay*; a service that ran *interval* seconds starts the doubling afresh.')),
    Param('prisons.NAME.restart', 'max_delay', '_SECONDS_', default=30.0,
          doc='The longest wait between restarts (default 30).'),
    Param('prisons.NAME.restart', 'burst', '_N_', default=5,
          doc=('At most this many restarts within *interval* (default 5); one more and the prison\n'
               'fails, with the start limit as its reason (systemd\'s *StartLimitBurst=*).')),
    Param('prisons.NAME.restart', 'interval', '_SECONDS_', default=60.0,
          doc='The window *burst* counts in (default 60; systemd\'s *StartLimitIntervalSec=*).'),
    Param('prisons.NAME.limits', 'memory', '_SIZE_',
          maps_to='memory.max (v1 memory.limit_in_bytes)',
          doc=('Hard limit, at least 1M: beyond it the OOM killer kills inside the prison (cgroup v2\n'
               '_memory.max_, v1 _memory.limit_in_bytes_).')),
    Param('prisons.NAME.limits', 'memory_high', '_SIZE_',
          maps_to='memory.high (v1 memory.soft_limit_in_bytes)',
          doc=('Soft limit, at most *memory*: reclaim pressure (v2 _memory.high_, v1\n'
               '_memory.soft_limit_in_bytes_).')),
    Param('prisons.NAME.limits', 'pids', '_N_',
          maps_to='pids.max',
          doc='Processes and threads, 1 to 4194304: a fork bomb stops here (_pids.max_).'),
    Param('prisons.NAME.limits', 'cpu', '_SHARE_',
          maps_to='cpu.max (v1 cpu.cfs_quota_us)',
          doc=('A share of CPUs: _50%_ or _0.5_; _1.5_ is one and a half (v2 _cpu.max_, v1\n'
               '_cpu.cfs_quota_us_), at least 1%.')),
    Param('prisons.NAME.limits', 'nofile', '_N_',
          maps_to='RLIMIT_NOFILE',
          doc='RLIMIT_NOFILE (soft and hard) of every process of the prison, 1 to 1048576.'),
)

SECTION_TITLES = {"": "top level"}


def default(section: str, key: str):
    """A key's default, as the table has it."""
    return next(p.default for p in PARAMS if p.section == section and p.key == key)


def keys(section: str) -> set[str]:
    """The keys a level allows."""
    return {p.key for p in PARAMS if p.section == section}


def man_text() -> str:
    """prisond.yaml(5)'s list of keys, level by level, in scdoc."""
    out: list[str] = []
    section = None
    for p in PARAMS:
        if p.section != section:
            section = p.section
            out += [f"## {SECTION_TITLES.get(section, section)}", ""]
        out.append(f"*{p.key}:*" + (f" {p.kind}" if p.kind else ""))
        out += ["\t" + line for line in p.doc.split("\n")]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(man_text())
