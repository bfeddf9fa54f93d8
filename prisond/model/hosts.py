"""A prison's /etc/hosts (hosts: own | all): localhost as Debian writes it, then the prison's
hostname on its first address of each family, then (all) every other prison's.  Pure."""
from __future__ import annotations

from collections.abc import Iterable

from prisond.model.config import PrisonSpec

LOCALHOST = ("127.0.0.1\tlocalhost\n"
             "::1\tlocalhost ip6-localhost ip6-loopback\n"
             "ff02::1\tip6-allnodes\n"
             "ff02::2\tip6-allrouters\n")


def names(spec: PrisonSpec) -> str:
    """The hostname, and its first label when it has more than one (as Debian's installer writes)."""
    short = spec.hostname.split(".", 1)[0]
    return spec.hostname if short == spec.hostname else f"{spec.hostname} {short}"


def entries(spec: PrisonSpec) -> list[str]:
    """One line per family the prison has an address of (its primary); 127.0.1.1 without any,
    as Debian names a host without a fixed address."""
    primaries = [a for a in (spec.ip4[:1] + spec.ip6[:1])]
    return [f"{a.ip}\t{names(spec)}\n" for a in primaries] or [f"127.0.1.1\t{names(spec)}\n"]


def render(spec: PrisonSpec, others: Iterable[PrisonSpec] = ()) -> str:
    """The file for spec; others are the configuration's prisons (used with hosts: all)."""
    out = [f"# written by prisond for prison {spec.name} (hosts: {spec.hosts}); changes are lost\n", LOCALHOST,
           "\n", *entries(spec)]
    if spec.hosts == "all":
        peers = [p for p in others if p.name != spec.name and (p.ip4 or p.ip6)]
        if peers:
            out.append("\n# the other prisons\n")
            for p in sorted(peers, key=lambda p: p.name):
                out.extend(entries(p))
    return "".join(out)
