"""Reload as a diff: which prisons a new configuration adds, changes, removes.  Pure."""
from __future__ import annotations

from dataclasses import dataclass, fields

from prisond.model.config import Config


@dataclass(frozen=True)
class ConfigDiff:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    daemon: tuple[str, ...] = ()  # daemon: keys that changed: they take effect when prisond restarts

    def as_dict(self) -> dict:
        return {"added": list(self.added), "changed": list(self.changed),
                "removed": list(self.removed), "unchanged": list(self.unchanged), "daemon": list(self.daemon)}


def diff(old: Config, new: Config) -> ConfigDiff:
    old_by = {p.name: p for p in old.prisons}
    new_by = {p.name: p for p in new.prisons}
    # a prison configfile.py kept from the last load is the very same object: no field compared
    same = {n for n, p in new_by.items() if n in old_by and (old_by[n] is p or old_by[n] == p)}
    return ConfigDiff(
        added=tuple(n for n in new_by if n not in old_by),
        changed=tuple(n for n in new_by if n in old_by and n not in same),
        removed=tuple(n for n in old_by if n not in new_by),
        unchanged=tuple(n for n in new_by if n in same),
        daemon=tuple(f.name for f in fields(new.daemon) if getattr(new.daemon, f.name) != getattr(old.daemon, f.name)),
    )
