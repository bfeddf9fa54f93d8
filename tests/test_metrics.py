"""Prometheus's text exposition (model/metrics.py), read back by Prometheus's own parser."""
from prometheus_client.parser import text_string_to_metric_families

from prisond.model.metrics import exposition

PRISONS = [
    {"name": 'we"b\\1', "jid": 1, "hostname": "web.example.test", "enforcement": "kernel", "state": "running",
     "procs": 3, "restarts": 2, "usage": {"cpu_usec": 1_500_000, "memory_current": 4096, "memory_peak": 8192,
                                          "oom_kills": 1, "pids_refused": 0, "cpu_throttled": 5},
     "kernel_counters": {"ingress_bytes": 10, "egress_bytes": 20, "ingress_packets": 1, "egress_packets": 2,
                         "rewritten": 3, "denied": 4, "egress_dropped": 5, "ingress_dropped": 6}},
    {"name": "down", "jid": 2, "hostname": "down", "enforcement": "shim", "state": "failed", "procs": 0,
     "restarts": 0, "usage": None},
]


def samples():
    out = {}
    for family in text_string_to_metric_families(exposition(PRISONS)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = (s.value, family.type)
    return out


def test_a_real_parser_reads_every_series_with_its_type_and_escaped_labels():
    got = samples()
    web = (("prison", 'we"b\\1'),)
    assert got[("prisond_prison_up", web)] == (1, "gauge")
    assert got[("prisond_prison_up", (("prison", "down"),))] == (0, "gauge")
    assert got[("prisond_prison_cpu_seconds_total", web)] == (1.5, "counter")
    assert got[("prisond_prison_restarts_total", web)] == (2, "counter")
    assert got[("prisond_prison_network_transmit_bytes_total", web)] == (20, "counter")
    assert got[("prisond_prison_dropped_packets_total", web)] == (11, "counter")
    assert got[("prisond_prison_state", (("prison", "down"), ("state", "failed")))][0] == 1
    assert got[("prisond_prison_info", (("enforcement", "kernel"), ("hostname", "web.example.test"), ("jid", "1"),
                                       ("prison", 'we"b\\1')))][0] == 1


def test_a_figure_the_host_cannot_give_is_left_out_not_zero():
    got = samples()
    assert ("prisond_prison_memory_bytes", (("prison", "down"),)) not in got
    assert ("prisond_prison_coerced_total", (("prison", "down"),)) not in got


def test_the_grafana_dashboard_asks_only_for_series_prisond_gives():
    import json
    import os
    import re
    from prisond.model.metrics import SERIES
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib", "grafana-prisond.json")
    with open(path) as fh:
        dash = json.load(fh)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    known = {name for name, *_ in SERIES} | {"prisond_up", "prisond_prison_info", "prisond_prison_state"}
    asked = {m for e in exprs for m in re.findall(r"\b(prisond_[a-z_]+)\b", e)}
    assert asked and asked <= known, asked - known
