"""prisonctl: query and drive prisond, as jls and jexec do for jails.

    prisonctl [--socket PATH] list [--json]
    prisonctl [--socket PATH] show NAME [--json]
    prisonctl [--socket PATH] start|stop|restart NAME...
    prisonctl [--socket PATH] exec [-l|-E] [-u USER] [-t|-T] NAME [--] [CMD [ARGS...]]
    prisonctl [--socket PATH] ps NAME [--json]
    prisonctl [--socket PATH] which PID [--json]
    prisonctl [--socket PATH] reload [--dry-run] [--json]
    prisonctl [--socket PATH] health [--json]
    prisonctl [--socket PATH] top [-d SECONDS] [-n COUNT]
    prisonctl [--socket PATH] events [--follow] [--json] [NAME]
    prisonctl check FILE
    prisonctl mkroot DIR [--force]
    prisonctl mkroot --debian [--suite SUITE] [--mirror URL] [--refresh] DIR

Exit status: 0 success; 1 the daemon refused or failed; 2 bad arguments or an invalid
configuration file; 69 the daemon is not running; 77 permission denied.  `exec` exits with
the command's own status (126 not executable, 127 not found), or dies of its signal.
Everything a prison controls (process names, arguments, event texts) is printed with its
control characters escaped (text.printable): no terminal sequence reaches the operator.
"""
from __future__ import annotations

import os
import sys

from prisond.client.connection import Client, ClientError, DaemonError
from prisond.model.contract import CONTROL_SOCKET, EX_ERROR, EX_NOPERM, EX_UNAVAILABLE, EX_USAGE, SOCKET_ENV

DEFAULT_SOCKET = CONTROL_SOCKET

USAGE = """usage: prisonctl [--socket PATH] COMMAND [ARGS]

commands:
  list [--json]                       prisons, like jls
  show NAME [--json]                  one prison: addresses, processes, what they bound
  start|stop|restart [--json] NAME...
  exec [-l|-E] [-u USER] [-t|-T] NAME [--] [CMD [ARGS...]]
                                      run CMD in the prison (default: a shell), like jexec;
                                      -u: as USER, -l: in USER's home with TERM only,
                                      -E: with the whole environment (default: TERM, locale);
                                      -t/-T: a terminal of its own (default when stdin and
                                      stdout are terminals) / none
  ps NAME [--json]                    the prison's processes and what each one bound
  which PID [--json]                  the prison a process is in
  reload [--dry-run] [--keep-processes] [--json]
                                      re-read the configuration; apply only what changed
                                      (an address change restarts the prison unless
                                      --keep-processes, as jail -m)
  health [--json]                     is the daemon up; exit 1 if a prison failed, restarts,
                                      or its service exited in error
  top [-d SECONDS] [-n COUNT] [--json] every prison's CPU, memory, limit hits, traffic, like top
  events [--follow] [--json] [NAME]   starts, stops, failures and limit hits
  logs [-f] [-n N] [--since TIME] NAME
                                      the prison's service output (journal or log files)
  metrics                             every prison's figures for Prometheus (text format)
  check [--host] [--json] FILE        validate a configuration file offline; --host: also
                                      against this host (programs, users, interfaces, ...)
  mkroot DIR [--force]                make a root for a confined prison (path: DIR) that
                                      shares the host's /usr read-only
  mkroot --debian [--suite SUITE] [--mirror URL] [--refresh] DIR
                                      a Debian root of its own (debootstrap minbase, apt),
                                      from the host's apt sources, cached once per suite,
                                      arch and mirror in /var/cache/prisond/roots and copied
                                      into DIR; --refresh makes the cache anew

--socket PATH (or $PRISOND_SOCKET) names the control socket (default /run/prisond/control.sock).
--version prints the version."""


class Usage(Exception):
    pass


def fail(message: str, status: int) -> int:
    print(f"prisonctl: {clean(message)}", file=sys.stderr)
    return status


def clean(text) -> str:
    """Text that came from the daemon (and may come from a prison) made safe for a terminal,
    line by line (its newlines are its own)."""
    from prisond.model.text import printable  # only here: exec's path imports nothing it does not need
    return "\n".join(printable(line) for line in str(text).split("\n"))


def one_line(text) -> str:
    """The same for a field or a record that is one line: a newline in it is escaped too
    (a prison's process named "x\n99999 root tcp:..." must not add a row to `ps`)."""
    from prisond.model.text import printable
    return printable(str(text))


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    socket_path = os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    try:
        while args and args[0].startswith("-") and args[0] != "--":
            opt = args.pop(0)
            if opt in ("-h", "--help"):
                print(USAGE)
                return 0
            if opt == "--version":
                from prisond import version
                print(f"prisonctl {version()}")
                return 0
            if opt in ("-s", "--socket"):
                if not args:
                    raise Usage("--socket needs a path")
                socket_path = args.pop(0)
            elif opt.startswith("--socket="):
                socket_path = opt.split("=", 1)[1]
            else:
                raise Usage(f"unknown option {opt}")
        if not args:
            raise Usage("no command given")
        command = args.pop(0)
        if command == "check":
            return cmd_check(args)
        if command == "mkroot":
            return cmd_mkroot(args)
        handler = COMMANDS.get(command)
        if handler is None:
            raise Usage(f"unknown command {command!r}")
        with Client(socket_path) as client:
            return handler(client, args)
    except Usage as exc:
        print(f"prisonctl: {exc}\n{USAGE}", file=sys.stderr)
        return EX_USAGE
    except ClientError as exc:
        return fail(str(exc), EX_NOPERM if exc.kind == "permission_denied" else
                    EX_UNAVAILABLE if exc.kind == "not_running" else EX_ERROR)
    except DaemonError as exc:
        if exc.problems:  # a reload refused for an invalid configuration
            return fail("invalid configuration, nothing changed:\n" + "\n".join(exc.problems), EX_USAGE)
        return fail(str(exc), EX_NOPERM if exc.code == "permission_denied" else EX_ERROR)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EX_ERROR


def flags(args: list[str], allowed: set[str], positional: int | None = None) -> tuple[set[str], list[str]]:
    seen, rest = set(), []
    for a in args:
        if a.startswith("--") or (a in allowed and a.startswith("-")):  # short ones where allowed (-f)
            if a not in allowed:
                raise Usage(f"unknown option {a}")
            seen.add(a)
        else:
            rest.append(a)
    if positional is not None and len(rest) != positional:
        raise Usage(f"expected {positional} argument{'s' if positional != 1 else ''}, got {len(rest)}")
    return seen, rest


# ------------------------------------------------------------------ commands


def cmd_list(client: Client, args: list[str]) -> int:
    opts, _ = flags(args, {"--json"}, 0)
    prisons = client.call("prison.list", full="--json" in opts)  # JSON: every figure
    if "--json" in opts:
        print_json(prisons)
        return 0
    rows = [("JID", "NAME", "HOSTNAME", "IP", "STATE", "PROCS", "CPU", "MEM")]
    for p in prisons:
        u = p.get("usage") or {}
        rows.append((str(p["jid"]), p["name"], p["hostname"], ",".join(p["ip4"] + p["ip6"]) or "-",
                     p["state"], str(p["procs"]), cpu_time(u.get("cpu_usec")), size(u.get("memory_current"))))
    print_table(rows)
    return 0


def size(n) -> str:
    """Bytes as ls -h would: 0, 512K, 12.5M, 2.0G."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def cpu_time(usec) -> str:
    if usec is None:
        return "-"
    s = usec / 1e6
    return f"{s:.2f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


def usage_lines(p: dict) -> list[tuple[str, str]]:
    """show's lines for the limits and what the prison used."""
    lim, u = p.get("limits") or {}, p.get("usage")
    lines = []
    if lim:
        shown = {"memory": size(lim.get("memory")), "memory_high": size(lim.get("memory_high")),
                 "pids": lim.get("pids"), "cpu": f"{lim['cpu'] * 100:g}%" if "cpu" in lim else None,
                 "nofile": lim.get("nofile")}
        lines.append(("limits", " ".join(f"{k}={v}" for k, v in shown.items() if k in lim)))
    if u:
        lines.append(("cpu", cpu_time(u.get("cpu_usec"))
                      + (f" (throttled {u['cpu_throttled']} times)" if u.get("cpu_throttled") else "")))
        lines.append(("memory", f"{size(u.get('memory_current'))} now, {size(u.get('memory_peak'))} peak"
                      + (f", {u['oom_kills']} OOM kills" if u.get("oom_kills") else "")))
        if u.get("pids_refused"):
            lines.append(("pids", f"{u['pids_refused']} forks refused at the limit"))
        if u.get("egress_bytes") is not None:
            lines.append(("network", f"in {size(u['ingress_bytes'])} / {u['ingress_packets']} packets, "
                          f"out {size(u['egress_bytes'])} / {u['egress_packets']} packets"))
    return lines


def cmd_show(client: Client, args: list[str]) -> int:
    opts, rest = flags(args, {"--json"}, 1)
    p = client.call("prison.show", name=rest[0])
    if "--json" in opts:
        print_json(p)
        return 0
    state = p["state"] + (f" ({p['reason']})" if p.get("reason") else "")
    print(one_line(f"{p['name']} (jid {p['jid']}): {state}"))
    svc = p.get("service")
    lines = [("hostname", p["hostname"]),
             ("addresses", " ".join(p["addresses"]) or "-"),
             ("enforcement", f"{p['enforcement']} ({p['enforcement_why']})"),
             ("cgroup", p.get("cgroup") or "-"),
             ("stop.timeout", f"{p['stop_timeout']:g}s"),
             ("allow", ", ".join(p["allow"]) or "-")]
    if p.get("path"):
        mounts = ", ".join(f"{m['source']}->{m['target']}" + ("" if m["readonly"] else " (rw)") for m in p["mounts"])
        lines.append(("path", f"{p['path']} (confined; init pid {p.get('init_pid') or '-'})"))
        lines.append(("mounts", mounts or "-"))
    if svc:
        state = svc["status"] or "not started"
        lines.append(("service", f"{' '.join(svc['argv'])} (pid {svc['pid'] or '-'}, {state})"))
    lines += usage_lines(p)
    counters = p.get("kernel_counters")
    if counters:
        lines.append(("kernel", " ".join(f"{k}={v}" for k, v in counters.items())))
    for k, v in lines:
        print(f"  {k:<13}{one_line(v)}")
    if p["processes"]:
        print()
        print_table(process_rows(p["processes"], indent="  "))
        unread_lines(p["processes"], indent="  ")
    return 0


def unread_lines(processes: list[dict], indent: str = "") -> None:
    """Why a process shows `?`: the daemon's look at it did not finish (host/looker.py)."""
    for proc in processes:
        if proc.get("unread"):
            print(one_line(f"{indent}{proc['pid']}: {proc['unread']}"))


def process_rows(processes: list[dict], indent: str = "") -> list[tuple]:
    """PID USER BOUND COMMAND, BOUND being what each process really holds (proto:address)."""
    rows = [(f"{indent}PID", "USER", "BOUND", "COMMAND")]
    for proc in processes:
        socks = proc["sockets"]
        bound = "?" if socks is None else ",".join(f"{s['proto']}:{s['local']}" for s in socks) or "-"
        rows.append((f"{indent}{proc['pid']}", proc["user"], bound, proc["command"][:70]))
    return rows


def _lifecycle(method: str):
    def run(client: Client, args: list[str]) -> int:
        opts, names = flags(args, {"--json"})
        if not names:
            raise Usage("name a prison")
        status, done = 0, []
        for name in names:
            try:
                r = client.call(method, name=name)
                done.append(r)
                if "--json" not in opts:
                    print(one_line(f"{r['name']}: {r['state']}"))
            except DaemonError as exc:
                done.append({"name": name, "error": {"code": exc.code, "message": str(exc)}})
                print(f"prisonctl: {clean(exc)}", file=sys.stderr)
                status = EX_NOPERM if exc.code == "permission_denied" else EX_ERROR
        if "--json" in opts:
            print_json(done)  # each prison's summary after the call, or its error
        return status
    return run


def cmd_reload(client: Client, args: list[str]) -> int:
    opts, _ = flags(args, {"--dry-run", "--json", "--keep-processes"}, 0)
    r = client.call("daemon.reload", dry_run="--dry-run" in opts, keep_processes="--keep-processes" in opts)
    if "--json" in opts:
        print_json(r)
        return 0
    would = r["dry_run"]
    words = (("started", "would start" if would else "started"), ("stopped", "would stop" if would else "stopped"),
             ("restarted", "would restart" if would else "restarted"),
             ("changed_in_place", "would change in place" if would else "changed in place"),
             ("changed", "would change (it stays down)" if would else "changed (it stays down)"))
    for key, word in words:
        for name in r.get(key, []):
            print(one_line(f"{word}: {name}"))
    if r.get("daemon"):
        print(clean(f"{'would not apply' if would else 'did not apply'}: daemon: {', '.join(r['daemon'])} "
                    "(read when prisond starts: restart it, which stops every prison)"))
    if r.get("changed_in_place") and "--keep-processes" in opts:
        print("note: processes kept: a server bound to a removed address must bind again (or restart)")
    if not any(r.get(k) for k, _ in words) and not r.get("daemon"):
        print("no changes")
    for f in r.get("failed", []):  # restarted or started, and then failed
        print(one_line(f"failed: {f['name']}: {f['reason']}"))
    return EX_ERROR if r.get("failed") else 0


def cmd_health(client: Client, args: list[str]) -> int:
    opts, _ = flags(args, {"--json"}, 0)
    r = client.call("daemon.health")
    if "--json" in opts:
        print_json(r)
    else:
        counts = ", ".join(f"{n} {s}" for s, n in r["prisons"].items()) or "no prisons"
        print(one_line(f"prisond pid {r['pid']}: {r['status']} ({counts})"))
        for t in r.get("trouble", []):
            print(one_line(f"  {t['name']}: {t['state']}" + (f" ({t['reason']})" if t.get("reason") else "")))
    # for scripts and monitoring: 0 only when ready and no prison failed, restarts or exited in error
    return 0 if r.get("healthy", r["status"] == "ready") else EX_ERROR


def cmd_exec(client: Client, args: list[str]) -> int:
    """jexec: handled by the C prisonctl (prisonjail under that name), which asks the daemon
    to have the prison's init run the command and relays its terminal or pipes; one
    implementation for both front ends."""
    from prisond import built
    jail = built("prisonjail")
    argv = ["prisonctl", "--socket", client.path, "exec", *args]
    try:
        os.execv(jail, argv)
    except OSError as exc:
        return fail(f"cannot run {jail}: {exc.strerror} (was prisond installed with 'pip install'?)", EX_ERROR)
    return EX_ERROR  # not reached


def cmd_ps(client: Client, args: list[str]) -> int:
    opts, rest = flags(args, {"--json"}, 1)
    r = client.call("prison.ps", name=rest[0])
    if "--json" in opts:
        print_json(r)
        return 0
    print_table(process_rows(r["processes"]))
    unread_lines(r["processes"])
    return 0


def cmd_which(client: Client, args: list[str]) -> int:
    opts, rest = flags(args, {"--json"}, 1)
    if not rest[0].isdigit():
        raise Usage(f"{rest[0]!r} is not a process id")
    r = client.call("prison.which", pid=int(rest[0]))
    if "--json" in opts:
        print_json(r)
    else:
        print(one_line(f"{r['pid']}: {r['prison']} (jid {r['jid']})") if r["prison"]
              else f"{r['pid']}: not in a prison")
    return 0


def cmd_check(args: list[str]) -> int:
    opts, rest = flags(args, {"--json", "--host"}, 1)
    from prisond.model.config import load_file  # only here: yaml is heavy for the other commands
    from prisond.model.errors import ConfigError
    try:
        config = load_file(rest[0])
        if "--host" in opts:
            host_problems = _host_problems(config)
            if host_problems:
                raise ConfigError(host_problems)
    except ConfigError as exc:
        if "--json" in opts:
            print_json({"file": rest[0], "ok": False, "problems": exc.problems})
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_USAGE
    if "--json" in opts:
        print_json({"file": rest[0], "ok": True, "prisons": [p.name for p in config.prisons]})
    else:
        print(f"{rest[0]}: ok, {len(config.prisons)} prison{'s' if len(config.prisons) != 1 else ''}")
    return 0


def _host_problems(config) -> list[str]:
    """check --host: what this host lacks for the configuration (host/check.py)."""
    from prisond.host import check
    from prisond.host.cgroup import detect_host
    from prisond.host.resources import Host
    from prisond.model.yamlsrc import load
    with open(config.source, encoding="utf-8") as fh:
        src = load(fh.read(), config.source)
    layout = detect_host()
    d = config.daemon
    controllers = Host(layout, d.cgroup_parent, d.memory_accounting).available() if layout else None
    return check.problems(config, src, check.HostView(controllers=controllers))


def cmd_mkroot(args: list[str]) -> int:
    values, args = _valued(args, ("--suite", "--mirror"))
    opts, rest = flags(args, {"--force", "--debian", "--refresh"}, 1)
    if not opts & {"--debian"} and (values or "--refresh" in opts):
        raise Usage("--suite, --mirror and --refresh go with --debian")
    if "--debian" in opts and "--force" in opts:
        raise Usage("--force does not go with --debian: a Debian root is copied into an empty directory")
    from prisond.client import mkroot
    if os.geteuid() != 0:
        return fail("mkroot: run it as root: a prison's root must be root's (whoever owns its /etc/passwd "
                    "is root inside the prison, and prisond refuses to start such a root)", EX_NOPERM)
    try:
        if "--debian" in opts:
            from prisond.client import debroot
            result, _ = debroot.make(rest[0], suite=values.get("--suite"), mirror=values.get("--mirror"),
                                     refresh="--refresh" in opts)
        else:
            result = mkroot.make(rest[0], force="--force" in opts)
    except mkroot.MkrootError as exc:
        return fail(f"mkroot: {exc}", EX_ERROR)
    except OSError as exc:
        return fail(f"mkroot: {exc.filename or rest[0]}: {exc.strerror}", EX_ERROR)
    print(f"made {result.root}; a prison uses it with:\n\n{result.snippet()}")
    for note in result.notes:
        print(f"\nnote: {note}")
    return 0


def _valued(args: list[str], names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Options that take a value (--suite S or --suite=S) taken out of args."""
    values, rest, it = {}, [], iter(args)
    for a in it:
        name, eq, value = a.partition("=")
        if name in names:
            if not eq:
                value = next(it, "")
            if not value or value.startswith("-"):
                raise Usage(f"{name} needs a value")
            values[name] = value
        else:
            rest.append(a)
    return values, rest


def print_json(obj) -> None:
    import json  # not at the top: only --json pays for it
    print(json.dumps(obj, indent=2))


def print_table(rows) -> None:
    rows = [[one_line(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _option(args: list[str], name: str, kind, default):
    if name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            raise Usage(f"{name} needs a value")
        try:
            value = kind(args[i + 1])
        except ValueError:
            raise Usage(f"{name}: not a number: {args[i + 1]}") from None
        del args[i:i + 2]
        return value
    return default


def cmd_top(client: Client, args: list[str]) -> int:
    """Like top: every prison's CPU share, memory, limit hits and traffic, refreshed."""
    import time
    delay = _option(args, "-d", float, 2.0)
    count = _option(args, "-n", int, 0)
    opts, _ = flags(args, {"--json"}, 0)
    as_json = "--json" in opts  # a JSON line per refresh: each prison's figures and CPU share
    if not delay >= 0.1:  # as top(1): no busy loop against the daemon (nor a NaN)
        raise Usage("-d: at least 0.1 seconds")
    if count < 0:
        raise Usage("-n: a count of refreshes (0, the default: until interrupted)")
    tty = sys.stdout.isatty()
    before, t_before, shown = {}, None, 0
    while True:
        prisons = client.call("prison.list", full=True)
        now = time.monotonic()
        rows = [("JID", "NAME", "STATE", "PROCS", "CPU%", "MEM", "PEAK", "OOM", "FORK-REFUSED", "THROTTLED",
                 "NET-IN", "NET-OUT")]
        for p in prisons:
            u = p.get("usage") or {}
            cpu = u.get("cpu_usec")
            share = None
            if cpu is not None and t_before is not None and before.get(p["name"]) is not None:
                share = round(100 * (cpu - before[p["name"]]) / 1e6 / (now - t_before), 1)
            before[p["name"]] = cpu
            p["cpu_percent"] = share
            pct = "-" if share is None else f"{share:.1f}"
            rows.append((str(p["jid"]), p["name"], p["state"], str(p["procs"]), pct, size(u.get("memory_current")),
                         size(u.get("memory_peak")), _n(u.get("oom_kills")), _n(u.get("pids_refused")),
                         _n(u.get("cpu_throttled")), size(u.get("ingress_bytes")), size(u.get("egress_bytes"))))
        t_before = now
        if as_json:
            import json
            print(json.dumps({"time": time.time(), "prisons": prisons}))
        else:
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(f"prisonctl top: {len(prisons)} prisons, {time.strftime('%H:%M:%S')} (every {delay:g}s)")
            print_table(rows)
        sys.stdout.flush()
        shown += 1
        if count and shown >= count:
            return 0
        time.sleep(delay)


def cmd_logs(client: Client, args: list[str]) -> int:
    """One prison's service output: from the journal (under systemd) or its log files."""
    count = _option(args, "-n", int, 50)
    since = _option(args, "--since", str, None)
    opts, rest = flags(args, {"-f", "--follow"}, 1)
    follow = bool(opts & {"-f", "--follow"})
    if count < 0:
        raise Usage("-n: a number of lines")
    r = client.call("prison.logs", name=rest[0])
    if r.get("journal"):
        argv = ["journalctl", f"PRISON={r['name']}", "--no-pager", "-o", "short-iso", "-n", str(count)]
        argv += (["-f"] if follow else []) + (["--since", since] if since else [])
        try:
            os.execvp("journalctl", argv)
        except OSError as exc:
            return fail(f"cannot run journalctl: {exc.strerror}", EX_ERROR)
    if since is not None:
        since = since.replace(" ", "T")
        if len(since) < 10 or not since[:4].isdigit():
            raise Usage("--since: a time as YYYY-MM-DD[ HH:MM[:SS]]")
    path = r["file"]
    rotated = sorted((f for f in _listdir(os.path.dirname(path)) if f.startswith(os.path.basename(path) + ".")
                      and f.rsplit(".", 1)[1].isdigit()), key=lambda f: -int(f.rsplit(".", 1)[1]))
    lines: list[str] = []
    for name in rotated + [os.path.basename(path)]:
        try:
            with open(os.path.join(os.path.dirname(path), name), errors="replace") as fh:
                lines += fh.read().splitlines()
        except FileNotFoundError:
            continue
        except PermissionError:
            return fail(f"cannot read {path}: permission denied (root or the log's group)", EX_NOPERM)
    if since is not None:
        lines = [line for line in lines if line[:19] >= since[:19]]
    for line in lines[-count:] if count else []:
        print(clean(line))
    if not follow:
        return 0
    return _follow(path)


def _listdir(d: str) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _follow(path: str) -> int:
    """Print what is appended to path from now on, across its rotation, until interrupted."""
    import time
    fh = None
    try:
        while True:
            try:
                ino = os.stat(path).st_ino
            except FileNotFoundError:
                ino = None
            if fh is None and ino is not None:
                fh = open(path, errors="replace")  # noqa: SIM115 (kept open while following)
                fh.seek(0, os.SEEK_END)
            elif fh is not None and ino != os.fstat(fh.fileno()).st_ino:  # rotated: the rest, then the new one
                sys.stdout.write("".join(clean(line) + "\n" for line in fh.read().splitlines()))
                fh.close()
                fh = open(path, errors="replace") if ino is not None else None  # noqa: SIM115
            if fh is not None:
                for line in fh.read().splitlines():
                    print(clean(line), flush=True)
            time.sleep(0.25)
    except KeyboardInterrupt:
        return 0
    finally:
        if fh is not None:
            fh.close()


def cmd_metrics(client: Client, args: list[str]) -> int:
    """Prometheus's text exposition of every prison's figures (as the daemon's listener serves
    it when daemon.metrics_listen is set)."""
    flags(args, set(), 0)
    sys.stdout.write(client.call("daemon.metrics")["text"])
    return 0


def _n(v) -> str:
    return "-" if v is None else str(v)


def cmd_events(client: Client, args: list[str]) -> int:
    """The daemon's events (starts, stops, failures, limit hits); --follow waits for more."""
    import time
    opts, rest = flags(args, {"--json", "--follow"}, None)
    if len(rest) > 1:
        raise Usage("events takes at most one prison name")
    params = {"name": rest[0]} if rest else {}
    after = 0
    while True:
        try:
            r = client.call("prison.events", after=after, **params)
        except ClientError as exc:
            if "--follow" not in opts or exc.kind not in ("broken", "not_running"):
                raise
            client.close()  # the daemon restarts: its events go on from the same ids
            time.sleep(1)
            continue
        for ev in r["events"]:
            if "--json" in opts:
                import json
                print(json.dumps(ev), flush=True)
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["time"]))
                print(one_line(f"{stamp}  {ev['prison']:<16} {ev['kind']:<14} {ev['text']}"), flush=True)
            after = ev["id"]
        if "--follow" not in opts:
            return 0
        time.sleep(0.5)


COMMANDS = {
    "list": cmd_list,
    "show": cmd_show,
    "start": _lifecycle("prison.start"),
    "stop": _lifecycle("prison.stop"),
    "restart": _lifecycle("prison.restart"),
    "exec": cmd_exec,
    "ps": cmd_ps,
    "which": cmd_which,
    "reload": cmd_reload,
    "health": cmd_health,
    "top": cmd_top,
    "events": cmd_events,
    "metrics": cmd_metrics,
    "logs": cmd_logs,
}

if __name__ == "__main__":
    sys.exit(main())
