"""Prometheus's text exposition of prisond's figures (format 0.0.4).  Pure: the figures in
(each prison's full summary: `prisonctl list --json` with usage and counters), the text out.

Names follow Prometheus's conventions: base units (seconds, bytes), `_total` for counters,
one `prison` label (and `state`, `jid`, `hostname`, `enforcement` on the info and state
series).  A figure the host cannot give (no controller, no kernel layer) is left out, not 0.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

STATES = ("starting", "running", "exited", "restarting", "stopping", "stopped", "failed")
UP_STATES = ("running", "exited", "restarting")

# name, type, help, how to get it from a prison's summary (None: not known)
Getter = Callable[[dict], "float | int | None"]


def _usage(key: str, scale: float = 1.0) -> Getter:
    def get(p: dict):
        v = (p.get("usage") or {}).get(key)
        return None if v is None else v * scale
    return get


def _counter(*keys: str) -> Getter:
    def get(p: dict):
        c = p.get("kernel_counters")
        if not c or any(c.get(k) is None for k in keys):
            return None
        return sum(c[k] for k in keys)
    return get


SERIES: tuple[tuple[str, str, str, Getter], ...] = (
    ("prisond_prison_up", "gauge", "1 when the prison is up (running, exited or restarting)",
     lambda p: 1 if p["state"] in UP_STATES else 0),
    ("prisond_prison_processes", "gauge", "Processes in the prison's cgroup, its init included",
     lambda p: p.get("procs")),
    ("prisond_prison_restarts_total", "counter", "Restarts of the prison's service or of the whole prison",
     lambda p: p.get("restarts")),
    ("prisond_prison_cpu_seconds_total", "counter", "CPU time used by the prison's processes",
     _usage("cpu_usec", 1e-6)),
    ("prisond_prison_memory_bytes", "gauge", "Memory the prison's cgroup uses now", _usage("memory_current")),
    ("prisond_prison_memory_peak_bytes", "gauge", "The most memory the prison's cgroup used", _usage("memory_peak")),
    ("prisond_prison_oom_kills_total", "counter", "Processes of the prison the OOM killer ended",
     _usage("oom_kills")),
    ("prisond_prison_forks_refused_total", "counter", "Forks refused at limits.pids", _usage("pids_refused")),
    ("prisond_prison_cpu_throttled_periods_total", "counter", "CPU periods the prison was throttled at limits.cpu",
     _usage("cpu_throttled")),
    ("prisond_prison_network_receive_bytes_total", "counter", "Bytes the prison received (kernel layer)",
     _counter("ingress_bytes")),
    ("prisond_prison_network_transmit_bytes_total", "counter", "Bytes the prison sent (kernel layer)",
     _counter("egress_bytes")),
    ("prisond_prison_network_receive_packets_total", "counter", "Packets the prison received (kernel layer)",
     _counter("ingress_packets")),
    ("prisond_prison_network_transmit_packets_total", "counter", "Packets the prison sent (kernel layer)",
     _counter("egress_packets")),
    ("prisond_prison_coerced_total", "counter", "Socket calls the kernel layer rewrote onto the prison's addresses",
     _counter("rewritten")),
    ("prisond_prison_refused_total", "counter", "Socket calls the kernel layer refused", _counter("denied")),
    ("prisond_prison_dropped_packets_total", "counter", "Packets dropped for a foreign address (both ways)",
     _counter("egress_dropped", "ingress_dropped")),
)


def _label(value) -> str:
    """A label value, escaped as the format asks: backslash, newline, double quote."""
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _num(v) -> str:
    return repr(float(v)) if isinstance(v, float) and not float(v).is_integer() else str(int(v))


def exposition(prisons: Iterable[dict], daemon_up: bool = True) -> str:
    prisons = list(prisons)
    out = ["# HELP prisond_up 1 while the daemon answers", "# TYPE prisond_up gauge",
           f"prisond_up {1 if daemon_up else 0}",
           "# HELP prisond_prison_info A prison's identity", "# TYPE prisond_prison_info gauge"]
    for p in prisons:
        out.append(f'prisond_prison_info{{prison="{_label(p["name"])}",jid="{p["jid"]}",'
                   f'hostname="{_label(p["hostname"])}",enforcement="{_label(p["enforcement"])}"}} 1')
    out += ["# HELP prisond_prison_state 1 for the state the prison is in", "# TYPE prisond_prison_state gauge"]
    for p in prisons:
        name = _label(p["name"])
        out += [f'prisond_prison_state{{prison="{name}",state="{s}"}} {1 if p["state"] == s else 0}' for s in STATES]
    for name, kind, text, get in SERIES:
        rows = [(p["name"], get(p)) for p in prisons]
        rows = [(n, v) for n, v in rows if v is not None]
        if not rows:
            continue
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        out += [f'{name}{{prison="{_label(n)}"}} {_num(v)}' for n, v in rows]
    return "\n".join(out) + "\n"
