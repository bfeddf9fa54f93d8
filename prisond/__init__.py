"""prisond: FreeBSD-style prisons for Linux services."""


def version() -> str:
    """The installed distribution's version (one place: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("prisond")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
