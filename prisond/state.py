"""The daemon's record of what it made (aliases, cgroups), kept in --state-dir.

Written atomically (temporary file, fsync, rename) so that a daemon killed at any moment
leaves either the old record or the new one.  The boot id tells a record of this boot from
one left by an earlier boot, whose aliases and cgroups died with it.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading

STATE_FILE = "state.json"


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


class StateStore:
    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE)
        self._lock = threading.Lock()  # saves come from the loop and from worker threads

    def ensure_dir(self) -> None:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)

    def load(self) -> dict | None:
        """The record of this boot, or None (absent, unreadable, or from an earlier boot)."""
        try:
            with open(self.path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("boot_id") != boot_id():
            return None
        return data

    def save(self, data: dict) -> None:
        data = dict(data, boot_id=boot_id())
        with self._lock:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".state.")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh, indent=1, sort_keys=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
