"""All prisons of the running configuration: JIDs, start/stop of all, reload as a diff.

The registry also keeps the state record (what the daemon added) current, and on start-up
cleans up what a crashed predecessor left: its aliases and its prisons' cgroups.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from prisond.model.config import Config, PrisonSpec
from prisond.model.diff import diff
from prisond.model.errors import ConfigError, NoSuchPrison, PrisonError, StateConflict
from prisond.engine.prison import Deps, Prison
from prisond.model.states import ALIVE, UP, State
from prisond.host.store import StateStore

log = logging.getLogger("prisond")
START_CONCURRENCY = 16
LIST_INLINE = 200  # a list with more prisons than this whose figures are old reads them in a thread


class Registry:
    def __init__(self, config: Config, deps: Deps, store: StateStore):
        self.config = config
        self.deps = deps
        self.store = store
        self.prisons: dict[str, Prison] = {}
        self._next_jid = 1
        self._reload_lock = asyncio.Lock()
        self._uts_index: dict[tuple[int, int], str] | None = None  # UTS namespace -> prison (peer.py)
        self._uts_key_of: dict[str, tuple[int, int]] = {}  # its reverse
        self.shutting_down = False  # set on SIGTERM: prisons not yet started are left alone
        self.held: set[str] = set()  # stopped by an operator: not started again after a crash
        if deps.kernel is not None:  # which addresses prisons share: their binds get recorded
            deps.kernel.share(config.prisons)
        for spec in config.prisons:
            self._add(spec)

    def _add(self, spec: PrisonSpec) -> Prison:
        prison = Prison(spec, self._next_jid, self.deps, on_change=self.save)
        self._next_jid += 1
        self.prisons[spec.name] = prison
        return prison

    def get(self, name: str) -> Prison:
        """A prison by name, or by JID as jexec and jail -r take it (names are never all digits)."""
        prison = self.prisons.get(name)
        if prison is None and isinstance(name, str) and name.isdigit():
            prison = next((p for p in self.prisons.values() if p.jid == int(name)), None)
        if prison is None:
            raise NoSuchPrison(name)
        return prison

    # ------------------------------------------------------------ state record

    def save(self, prison: Prison | None = None) -> None:
        """Record one prison (or all): what a later daemon needs to adopt it.  Each prison calls
        it at each change of its state; a prison starting is recorded before anything is made,
        so what a crash mid-start leaves is this daemon's to end (recover ends nothing it has
        no record of)."""
        if prison is None:
            self._uts_index = None  # all of them: made again when next asked
        elif self._uts_index is not None:  # one prison: its entry alone (10,000 others stay)
            old = self._uts_key_of.pop(prison.spec.name, None)
            if old is not None and self._uts_index.get(old) == prison.spec.name:
                del self._uts_index[old]
            if prison.state != State.STOPPED and prison.uts_ns is not None:
                self._uts_index[prison.uts_ns] = prison.spec.name
                self._uts_key_of[prison.spec.name] = prison.uts_ns
        for p in [prison] if prison else list(self.prisons.values()):
            try:
                if p.state in ALIVE:  # stopping by hand too: held, so a crash meanwhile does not undo it
                    held = {"held": True} if p.spec.name in self.held else {}
                    self.store.put_prison(p.spec.name, {**p.record(), **held})
                elif p.spec.name in self.held:  # stopped by an operator: stays stopped after a crash
                    self.store.put_prison(p.spec.name, {"jid": p.jid, "state": State.STOPPED, "held": True})
                else:
                    self.store.drop_prison(p.spec.name)
            except OSError as exc:
                log.error("cannot write state in %s: %s", self.store.directory, exc.strerror)

    async def recover(self) -> None:
        """Adopt what a previous daemon of this boot left running, if it is still configured;
        end and remove the rest (its prisons no longer configured, half-made ones, aliases).

        A record from an earlier boot is discarded: its aliases and cgroups died with it."""
        records = self.store.prisons()
        # ours to remove once nobody uses them; a record of the host's address is not
        for ip in await asyncio.to_thread(self.deps.aliases.adopt_recorded, self.store.aliases()):
            log.warning("address %s was recorded but not added by prisond (the host has it): left alone", ip)
            self.store.drop_alias(ip)
        adopted = []
        for name in self.deps.cgroups.children():
            if name not in records:  # not made by a daemon of this state: not ours to end
                log.warning("cgroup %s is not in %s's records: left alone", self.deps.cgroups.for_prison(name).path,
                            self.store.directory)
                continue
            prison, rec = self.prisons.get(name), records[name]
            if prison and rec.get("state") in UP and rec.get("enforcement") == prison.enforcement:
                prison.jid = rec["jid"]
                try:
                    await prison.adopt(rec)
                    adopted.append(prison)
                    continue
                except PrisonError as exc:
                    log.error("prison %s: cannot adopt: %s", name, exc.message)
            await asyncio.to_thread(self._end_leftover, name)
        for name, rec in records.items():  # stopped by an operator before the crash: still stopped
            if rec.get("held") and name in self.prisons and name not in self.deps.cgroups.children():
                self.held.add(name)
                self.prisons[name].jid = rec["jid"]
        self.deps.launcher.forget_inits(keep={p.spec.name for p in adopted})
        self.deps.launcher.forget_hosts(keep={p.spec.name for p in adopted})
        self._renumber(adopted + [self.prisons[n] for n in self.held])
        errors = await asyncio.to_thread(self.deps.aliases.release_unused)
        for e in errors:
            log.error("%s", e)
        for name in set(records) - {p.spec.name for p in adopted} - self.held:
            self.store.drop_prison(name)
        self.store.prune(set(self.prisons), {str(a.ip) for p in self.prisons.values() for a in p.spec.addresses})

    def _end_leftover(self, name: str) -> None:
        cg = self.deps.cgroups.for_prison(name)
        pids = cg.procs()
        log.warning("ending leftover prison cgroup %s (%d processes)", cg.path, len(pids))
        if pids:
            cg.signal_all(signal.SIGKILL)
        try:
            cg.remove()
        except PrisonError as exc:
            log.error("%s", exc.message)
        if self.deps.resources:
            self.deps.resources.leftovers(name)

    def _renumber(self, adopted: list[Prison]) -> None:
        """Adopted prisons keep their JIDs; the others get fresh ones after the highest."""
        taken = {p.jid for p in adopted}
        self._next_jid = max(taken, default=0) + 1
        for p in self.prisons.values():
            if p not in adopted:
                p.jid = self._next_jid
                self._next_jid += 1

    # ------------------------------------------------------------ all prisons

    async def start_all(self, names=None) -> None:
        sem = asyncio.Semaphore(START_CONCURRENCY)

        async def one(p: Prison):
            if p.state in UP or p.spec.name in self.held:
                return  # adopted, or stopped by an operator before a crash
            async with sem:
                if self.shutting_down:
                    return
                try:
                    await p.start()
                except PrisonError:
                    pass  # recorded on the prison (state failed, reason) and logged

        await asyncio.gather(*(one(self.prisons[n]) for n in (list(self.prisons) if names is None else names)))

    async def stop_all(self, names=None) -> None:
        async def one(p: Prison):
            if p.state in UP | {State.FAILED}:
                try:
                    await p.stop()
                except PrisonError as exc:
                    log.error("prison %s: %s", p.spec.name, exc.message)

        await asyncio.gather(*(one(self.prisons[n]) for n in (list(self.prisons) if names is None else names)))

    # ------------------------------------------------------------ one prison

    async def start(self, name: str) -> dict:
        prison = self.get(name)
        self.held.discard(name)
        await prison.start()
        return prison.view.summary()

    async def stop(self, name: str) -> dict:
        """An operator's stop: the prison stays stopped, also after a crash of the daemon (a
        clean restart of the daemon starts every prison, as a boot does)."""
        prison = self.get(name)
        self.held.add(name)
        try:
            await prison.stop()
        finally:
            self.save(prison)
        return prison.view.summary()

    async def restart(self, name: str) -> dict:
        prison = self.get(name)
        self.held.discard(name)
        try:
            await prison.stop()
        except StateConflict:
            pass  # restart of a stopped prison starts it
        await prison.start()
        return prison.view.summary()

    # ------------------------------------------------------------ reload

    def plan(self, new: Config, keep_processes: bool = False) -> dict:
        """What a reload to new will do, prison by prison: started (new), stopped (removed),
        restarted (changed, and up or failed), changed in place (its processes stay), changed
        (but down: it stays down), unchanged; and the daemon: keys it leaves for a restart."""
        d = diff(self.config, new)
        self._refuse_limits(new, [n for n in d.changed if self.prisons[n].state in UP])
        in_place = [n for n in d.changed if self.prisons[n].changes_in_place(new.require(n), keep_processes)]
        rest = [n for n in d.changed if n not in in_place]
        up = [n for n in rest if self.prisons[n].state in UP | {State.FAILED}]
        return {"started": list(d.added), "stopped": list(d.removed), "restarted": up,
                "changed_in_place": in_place, "changed": [n for n in rest if n not in up],
                "unchanged": list(d.unchanged), "daemon": list(d.daemon)}

    def _refuse_limits(self, new: Config, names) -> None:
        """A reload that gives running prisons limits this daemon cannot enforce (no such
        controller; memory accounting off since it started, whatever the file now says) is
        refused whole: it would stop them for a start that fails.  A new prison with such
        limits is started and fails with the reason, as at the daemon's start."""
        problems = []
        for name in names:
            limits = new.require(name).limits
            old = self.config.prison(name)
            if not limits.controllers() or (old is not None and old.limits == limits):
                continue
            res = self.deps.resources
            why = res.unenforceable(limits) if res else "this daemon has no cgroup controllers to enforce them"
            if why:
                problems.append(f"{new.source}: prisons.{name}.limits: {why}")
        if problems:
            raise ConfigError(problems)

    async def reload(self, new: Config, dry_run: bool = False, keep_processes: bool = False) -> dict:
        """Apply only what changed (plan()); unchanged prisons are not touched."""
        async with self._reload_lock:
            plan = self.plan(new, keep_processes)
            if dry_run:
                return plan
            log.info("reload: %s", "; ".join(f"{k.replace('_', ' ')} {', '.join(v)}" for k, v in plan.items()
                                              if v and k != "unchanged") or "no changes")
            if plan["daemon"]:
                log.warning("reload: daemon: %s changed: read when prisond starts, not now", ", ".join(plan["daemon"]))
            if self.deps.kernel is not None:
                self.deps.kernel.share(new.prisons)
            for name in plan["changed_in_place"]:
                await self.prisons[name].change_in_place(new.require(name))
                self.save(self.prisons[name])
            changed = plan["restarted"] + plan["changed"]
            await self.stop_all(plan["stopped"] + changed)
            for name in plan["stopped"]:
                del self.prisons[name]
                self.store.drop_prison(name)
            if plan["stopped"]:  # their hosts files: nobody mounts them now
                self.deps.launcher.forget_hosts(keep={s.name for s in new.prisons})
            for name in changed:
                # the same JID, as jail -m keeps it; a fresh runtime for the new spec
                self.prisons[name] = Prison(new.require(name), self.prisons[name].jid, self.deps, on_change=self.save)
            for name in plan["started"]:
                self._add(new.require(name))
            if list(self.prisons) != list(new.by_name):  # config order (one comparison when it is kept)
                self.prisons = {name: self.prisons[name] for name in new.by_name}
            self.config = new
            # the hosts files that can have changed: those of prisons changed in place, and of
            # those listing every prison (hosts: all); not 10,000 files read for one change
            stale = set(plan["changed_in_place"]) | new.listing_all
            await asyncio.to_thread(self.deps.launcher.refresh_hosts,
                                    [self.prisons[n].spec for n in stale if self.prisons[n].state in UP])
            await self.start_all(plan["restarted"] + plan["started"])
            # what did not come up: the reload did its part, but its caller must hear of it
            plan["failed"] = [{"name": n, "reason": self.prisons[n].reason}
                              for n in plan["restarted"] + plan["started"] if self.prisons[n].state is State.FAILED]
            return plan

    # ------------------------------------------------------------ views

    def list(self, full: bool = False) -> list[dict]:
        """Every prison's summary; full: with all its figures (`prisonctl top`)."""
        return [p.view.summary(full) for p in self.prisons.values()]

    def stale_briefs(self) -> Sequence:
        """The views whose list figures must be read again (engine/view.py)."""
        return [p.view for p in self.prisons.values() if p.view.brief_stale()]

    async def read_briefs(self, views: Sequence) -> None:
        """list's figures of many prisons read in a worker thread, not on the loop: 10,000
        prisons are 30,000 cgroup files, 0.35 s in which the loop answered nobody (the shims'
        /proc questions included).  One thread: as fast as the loop was (365 against 371 ms,
        10,000 prisons, five rounds each); two were slower (624 against 435 ms), each read
        handing the GIL back and forth."""
        await asyncio.to_thread(_read_briefs, views)

    def uts_owner(self, ns: tuple[int, int]) -> str | None:
        """The prison whose UTS namespace this is ((st_dev, st_ino) of it: peer.py's second
        proof), or None."""
        if self._uts_index is None:  # no system call: each prison read its own when its init came up
            self._uts_index = {p.uts_ns: p.spec.name for p in self.prisons.values()
                               if p.state != State.STOPPED and p.uts_ns is not None}
            self._uts_key_of = {name: key for key, name in self._uts_index.items()}
        return self._uts_index.get(ns)

    def counts(self) -> dict:
        states = [p.state for p in self.prisons.values()]
        return {s.value: states.count(s) for s in State if s in states}

    def trouble(self) -> Sequence[dict]:
        """Prisons that are not as they should be: failed, restarting, or whose service exited
        with an error (health's answer to monitoring)."""
        return [{"name": p.spec.name, "state": p.state.value, "reason": p.reason} for p in self.prisons.values()
                if p.state is State.FAILED or (p.state in (State.RESTARTING, State.EXITED) and p.reason)]


def _read_briefs(views) -> None:
    for view in views:
        view.read_brief()
