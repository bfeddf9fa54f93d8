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
    """One pass over the new prisons (each configuration's index by name is made once: the
    old one's at the last reload)."""
    old_by = old.by_name
    added, changed, unchanged = [], [], []
    for name, spec in new.by_name.items():
        was = old_by.get(name)
        if was is None:
            added.append(name)
        # a prison configfile.py kept from the last load is the very same object: no field compared
        elif was is spec or was == spec:
            unchanged.append(name)
        else:
            changed.append(name)
    new_by = new.by_name
    removed = () if len(old_by) == len(new_by) - len(added) else tuple(n for n in old_by if n not in new_by)
    return ConfigDiff(
        added=tuple(added), changed=tuple(changed), removed=removed, unchanged=tuple(unchanged),
        daemon=tuple(f.name for f in fields(new.daemon) if getattr(new.daemon, f.name) != getattr(old.daemon, f.name)),
    )
