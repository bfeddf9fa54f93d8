"""What a prison's processes are told: the shim's policy string and their environment.  Pure.

The policy's form, its letters and limits are the contract's (contract.py), which the C side
reads too.
"""
from __future__ import annotations

from prisond.model.contract import (ALLOW_ANYAF, ALLOW_RAW, ALLOW_URING, FLAG_ANYAF, FLAG_KERNEL, FLAG_RAW,
                                     POLICY_VAR, POLICY_VERSION, SERVICE_PATH)

TYPE_CHECKING = False  # not typing's: prisonctl exec uses with_preload and must load neither
if TYPE_CHECKING:      # yaml (through config) nor typing (which loads re)
    from prisond.model.config import PrisonSpec

PRELOAD_VAR = "LD_PRELOAD"


def shim_policy(spec: PrisonSpec, *, kernel: bool = False, socket: str | None = None) -> str:
    flags = ""
    if "raw_sockets" in spec.allow:
        flags += FLAG_RAW
    if "socket_af" in spec.allow:
        flags += FLAG_ANYAF
    if kernel:
        flags += FLAG_KERNEL
    parts = [POLICY_VERSION, f"n={spec.name}", f"h={spec.hostname}",
             "4=" + ",".join(str(a.ip) for a in spec.ip4),
             "6=" + ",".join(str(a.ip) for a in spec.ip6),
             f"f={flags}"]
    if socket:
        parts.append(f"s={socket}")
    return ";".join(parts)


def with_preload(existing: str | None, shim_path: str) -> str:
    """LD_PRELOAD with the shim first, keeping what the caller already preloads."""
    rest = [p for p in (existing or "").replace(" ", ":").split(":") if p and p != shim_path]
    return ":".join([shim_path] + rest)


def prison_env(spec: PrisonSpec, shim_path: str, base: dict[str, str], *, kernel: bool = False,
               socket: str | None = None) -> dict[str, str]:
    """The environment of a process entering the prison, given the one it came with."""
    env = dict(base)
    env.update(spec.exec.env)
    env[PRELOAD_VAR] = with_preload(base.get(PRELOAD_VAR), shim_path)
    env[POLICY_VAR] = shim_policy(spec, kernel=kernel, socket=socket)
    return env


def service_env(spec: PrisonSpec, shim_path: str, *, kernel: bool = False,
                socket: str | None = None) -> dict[str, str]:
    """A clean environment for exec.* commands run in the prison, as jail(8) gives them."""
    base = {"PATH": SERVICE_PATH, "HOME": "/", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh",
            "LANG": "C.UTF-8"}
    return prison_env(spec, shim_path, base, kernel=kernel, socket=socket)


def jail_flags(spec: PrisonSpec) -> str:
    """prisonjail init --allow: r raw sockets, a any socket family, u io_uring."""
    letters = {"raw_sockets": ALLOW_RAW, "socket_af": ALLOW_ANYAF, "io_uring": ALLOW_URING}
    return "".join(letter for flag, letter in letters.items() if flag in spec.allow) or "-"
