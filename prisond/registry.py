"""All prisons of the running configuration: JIDs, start/stop of all, reload as a diff.

The registry also keeps the state record (what the daemon added) current, and on start-up
cleans up what a crashed predecessor left: its aliases and its prisons' cgroups.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from .config import Config, PrisonSpec
from .diff import ConfigDiff, diff
from .errors import NoSuchPrison, PrisonError, StateConflict
from .prison import FAILED, RUNNING, STOPPED, Deps, Prison
from .state import StateStore

log = logging.getLogger("prisond")
START_CONCURRENCY = 16


class Registry:
    def __init__(self, config: Config, deps: Deps, store: StateStore):
        self.config = config
        self.deps = deps
        self.store = store
        self.prisons: dict[str, Prison] = {}
        self._next_jid = 1
        self._reload_lock = asyncio.Lock()
        for spec in config.prisons:
            self._add(spec)
        deps.aliases.on_change = self.save

    def _add(self, spec: PrisonSpec) -> Prison:
        prison = Prison(spec, self._next_jid, self.deps)
        self._next_jid += 1
        self.prisons[spec.name] = prison
        return prison

    def get(self, name: str) -> Prison:
        prison = self.prisons.get(name)
        if prison is None:
            raise NoSuchPrison(name)
        return prison

    # ------------------------------------------------------------ state record

    def save(self) -> None:
        try:
            self.store.save({
                "aliases": self.deps.aliases.snapshot(),
                "cgroup_parent": self.deps.cgroups.parent,
                "prisons": {p.spec.name: {"jid": p.jid, "state": p.state} for p in self.prisons.values()},
            })
        except OSError as exc:
            log.error("cannot write state in %s: %s", self.store.directory, exc.strerror)

    def recover(self) -> None:
        """Undo what a predecessor that died without stopping left behind (blocking; at start-up)."""
        old = self.store.load()
        for name in self.deps.cgroups.children():
            cg = self.deps.cgroups.for_prison(name)
            pids = cg.procs()
            log.warning("cleaning up leftover prison cgroup %s (%d processes)", cg.path, len(pids))
            if pids:
                cg.signal_all(signal.SIGKILL)
            try:
                cg.remove()
            except PrisonError as exc:
                log.error("%s", exc.message)
        for rec in (old or {}).get("aliases", []):
            self.deps.aliases.forget_leftover(rec["ip"], rec["prefix"], rec["iface"])
        self.store.clear()

    # ------------------------------------------------------------ all prisons

    async def start_all(self, names=None) -> None:
        sem = asyncio.Semaphore(START_CONCURRENCY)

        async def one(p: Prison):
            async with sem:
                try:
                    await p.start()
                except PrisonError:
                    pass  # recorded on the prison (state failed, reason) and logged

        await asyncio.gather(*(one(self.prisons[n]) for n in (names or list(self.prisons))))
        self.save()

    async def stop_all(self, names=None) -> None:
        async def one(p: Prison):
            if p.state in (RUNNING, FAILED):
                try:
                    await p.stop()
                except PrisonError as exc:
                    log.error("prison %s: %s", p.spec.name, exc.message)

        await asyncio.gather(*(one(self.prisons[n]) for n in (names or list(self.prisons))))
        self.save()

    # ------------------------------------------------------------ one prison

    async def start(self, name: str) -> dict:
        prison = self.get(name)
        await prison.start()
        self.save()
        return prison.summary()

    async def stop(self, name: str) -> dict:
        prison = self.get(name)
        await prison.stop()
        self.save()
        return prison.summary()

    async def restart(self, name: str) -> dict:
        prison = self.get(name)
        try:
            await prison.stop()
        except StateConflict:
            pass  # restart of a stopped prison starts it
        await prison.start()
        self.save()
        return prison.summary()

    # ------------------------------------------------------------ reload

    async def reload(self, new: Config, dry_run: bool = False) -> ConfigDiff:
        """Apply only what changed: unchanged prisons are not touched."""
        async with self._reload_lock:
            d = diff(self.config, new)
            if dry_run:
                return d
            log.info("reload: added %s, changed %s, removed %s", list(d.added) or "-", list(d.changed) or "-",
                     list(d.removed) or "-")
            # a changed prison comes back if it was up (or had failed: the new spec may fix it)
            restart = [n for n in d.changed if self.prisons[n].state in (RUNNING, FAILED)]
            await self.stop_all(list(d.removed + d.changed))
            for name in d.removed:
                del self.prisons[name]
            for name in d.changed:
                # the same JID, as jail -m keeps it; a fresh runtime for the new spec
                self.prisons[name] = Prison(new.prison(name), self.prisons[name].jid, self.deps)
            for name in d.added:
                self._add(new.prison(name))
            self.prisons = {s.name: self.prisons[s.name] for s in new.prisons}  # config order
            self.config = new
            await self.start_all(restart + list(d.added))
            return d

    # ------------------------------------------------------------ views

    def list(self) -> list[dict]:
        return [p.summary() for p in self.prisons.values()]

    def counts(self) -> dict:
        states = [p.state for p in self.prisons.values()]
        return {s: states.count(s) for s in (RUNNING, STOPPED, FAILED) if s in states}
