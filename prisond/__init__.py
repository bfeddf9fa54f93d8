"""prisond: FreeBSD-style prisons for Linux services.

Layers, each a folder: model (what prisond is told and says), host (the host's interfaces),
kernel (the BPF layer), engine (prisons' lifecycles), service (the daemon), client (prisonctl),
native (the C side: prisonjail and the shim, built by pip install next to this file)."""
import os


def built(name: str) -> str:
    """Where `pip install` put one of the C programs (prisonjail, libprisonshim.so): here."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def version() -> str:
    """The installed distribution's version (one place: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("prisond")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
