"""Compiling the suite's C programs, once per session, into a cache directory."""
from __future__ import annotations

import hashlib
import os
import subprocess

PROGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "progs")
OUT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_build")


def build(source: str, *flags: str, name: str | None = None) -> str:
    src = os.path.join(PROGS, source)
    h = hashlib.sha256(" ".join(flags).encode())
    for path in [src] + sorted(os.path.join(PROGS, f) for f in os.listdir(PROGS) if f.endswith(".h")):
        with open(path, "rb") as fh:
            h.update(fh.read())
    digest = h.hexdigest()[:12]
    os.makedirs(OUT, exist_ok=True)
    out = os.path.join(OUT, f"{name or os.path.splitext(source)[0]}-{digest}")
    if not os.path.exists(out):
        tmp = out + ".tmp"
        subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", tmp, src, *flags, "-lpthread"], check=True)
        os.replace(tmp, out)
    return out
