"""The engine against a host in memory (support/fakehost.py): a prison's lifecycle, the
registry's reload and recovery, and who may call what, in milliseconds and without root.
Each test asserts what the engine decided and what it asked of the host."""
import signal

import pytest

from prisond.engine.events import EventLog
from prisond.engine.prison import Deps
from prisond.engine.registry import Registry
from prisond.host.store import StateStore
from prisond.model.config import parse
from prisond.model.errors import PermissionDenied
from prisond.model.protocol import Request
from prisond.model.states import State
from prisond.service.api import Access, Api, Peer
from support.fakehost import FakeAliases, FakeCgroupTree, FakeLauncher, Host

WEB = "prisons:\n  web:\n    ip4: [127.0.2.1]\n    exec: {start: [httpd, -f]}\n"


def engine(tmp_path, text: str, host: Host | None = None):
    host = host or Host()
    events = EventLog()
    deps = Deps(cgroups=FakeCgroupTree(host), aliases=FakeAliases(host),
                launcher=FakeLauncher(host, str(tmp_path / "init")), events=events, kernel_why="a test")
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    return host, Registry(parse(text, "test.yaml"), deps, store), events


def kinds(events, name):
    return [e["kind"] for e in events.since(0, name)]


async def test_a_prison_starts_runs_its_service_and_stops_leaving_nothing(tmp_path):
    host, reg, events = engine(tmp_path, WEB)
    await reg.start_all()
    web = reg.get("web")
    assert web.state == State.RUNNING and host.aliases == {"web": web.spec.addresses}
    assert len(host.procs["web"]) == 2 and web.service is not None  # init and the service
    assert reg.store.prisons()["web"]["state"] == "running"  # the record a later daemon adopts from
    await reg.stop("web")
    assert web.state == State.STOPPED and host.aliases == {} and host.cgroups == set()
    assert reg.store.prisons()["web"] == {"jid": 1, "state": "stopped", "held": True}  # stopped by hand: stays so
    assert kinds(events, "web") == ["started", "stopped"]


async def test_a_failed_start_is_reported_and_leaves_nothing_half_made(tmp_path):
    host, reg, events = engine(tmp_path, WEB.replace("exec: {", "exec: {prestart: check-disk, "))
    host.hook_status["check-disk"] = 3
    await reg.start_all()
    web = reg.get("web")
    assert web.state == State.FAILED and web.reason == "exec.prestart exited with status 3"
    assert host.aliases == {} and host.cgroups == set() and host.procs.get("web", set()) == set()
    assert "web" not in reg.store.prisons() and kinds(events, "web") == ["failed"]


async def test_a_service_that_cannot_start_fails_the_prison_and_its_init_goes(tmp_path):
    host, reg, _ = engine(tmp_path, WEB)
    host.fail_start.add("httpd")
    await reg.start_all()
    assert reg.get("web").state == State.FAILED and "No such file" in reg.get("web").reason
    assert host.cgroups == set() and host.inits == {}


async def test_a_reload_touches_only_what_changed(tmp_path):
    text = WEB + "  db:\n    ip4: [127.0.3.1]\n    exec: {start: [postgres]}\n  old:\n    ip4: [127.0.4.1]\n"
    host, reg, _ = engine(tmp_path, text)
    await reg.start_all()
    db, web_service = reg.get("db"), reg.get("web").service
    new = text.replace("hostname", "x").replace("  old:\n    ip4: [127.0.4.1]\n", "  new:\n    ip4: [127.0.5.1]\n")
    new = new.replace("exec: {start: [httpd, -f]}", "hostname: web.example.test\n    exec: {start: [httpd, -f]}")
    plan = await reg.reload(parse(new, "test.yaml"))
    assert plan == {"started": ["new"], "stopped": ["old"], "restarted": ["web"], "changed_in_place": [],
                    "changed": [], "unchanged": ["db"], "daemon": [], "failed": []}
    assert reg.get("db") is db and db.state == State.RUNNING  # not touched
    assert reg.get("web").state == State.RUNNING and reg.get("web").service is not web_service  # restarted
    assert reg.get("web").jid == 1  # its JID kept, as jail -m keeps it
    assert "old" not in reg.prisons and "old" not in host.cgroups
    assert reg.get("new").state == State.RUNNING


async def test_a_new_daemon_adopts_what_the_last_one_left_running(tmp_path):
    host, reg, _ = engine(tmp_path, WEB)
    await reg.start_all()
    service_pid, jid = reg.get("web").service.pid, reg.get("web").jid
    # the daemon dies; a new one starts on the same host, state directory and configuration
    _, again, events = engine(tmp_path, WEB, host)
    await again.recover()
    web = again.get("web")
    assert web.state == State.RUNNING and web.jid == jid and web.service.pid == service_pid
    assert web.service_status == "running (adopted)" and kinds(events, "web") == ["adopted"]
    await again.stop("web")
    assert host.cgroups == set()


async def test_recovery_ends_a_prison_no_longer_configured_and_leaves_unknown_cgroups(tmp_path):
    host, reg, _ = engine(tmp_path, WEB)
    await reg.start_all()
    host.cgroups.add("someone-else")  # not in this daemon's records
    host.procs["someone-else"] = {4_199_999}
    _, again, _ = engine(tmp_path, "prisons: {}\n", host)
    await again.recover()
    assert "web" not in host.cgroups and host.procs.get("web", set()) == set()
    assert "someone-else" in host.cgroups and host.procs["someone-else"] == {4_199_999}


async def test_a_stubborn_service_is_killed_after_its_stop_timeout(tmp_path):
    host, reg, _ = engine(tmp_path, WEB.replace("exec:", "stop: {timeout: 0.05}\n    exec:"))
    await reg.start_all()
    web = reg.get("web")
    orig = host.kill

    def ignore_term(pid, sig):  # the service ignores SIGTERM
        if sig != signal.SIGTERM or pid == next(iter(host.inits.values())).init_pid:
            orig(pid, sig)
    host.kill = ignore_term
    await reg.stop("web")
    assert web.state == State.STOPPED and host.procs.get("web", set()) == set()


@pytest.mark.parametrize("peer,method,allowed", [
    (Peer(1, 0, 0), "prison.stop", True),
    (Peer(1, 1000, 1000), "prison.list", True),
    (Peer(1, 1000, 1000), "prison.stop", False),
    (Peer(1, 1000, 1000, (50,)), "prison.stop", True),  # a member of the control group
    (Peer(1, 0, 0, (), "web"), "prison.list", False),    # root inside a prison
    (Peer(1, 0, 0, (), ""), "prison.list", False),       # a prison the daemon cannot name
])
async def test_who_may_call_what(tmp_path, peer, method, allowed):
    _, reg, _ = engine(tmp_path, WEB)
    await reg.start_all()
    api = Api(reg, "/nonexistent/shim.so", access=Access(gid=50))
    params = {"name": "web"} if method == "prison.stop" else {}
    if allowed:
        result = api.handle(Request(1, method, params), peer)
        if hasattr(result, "__await__"):
            await result
    else:
        with pytest.raises(PermissionDenied):
            api.handle(Request(1, method, params), peer)


def service(reg):
    return reg.get("web").service


async def settle(reg, want: State, also=lambda: True, timeout: float = 2.0):
    """Until web is in state want (and also() holds)."""
    import asyncio
    import time
    end = time.monotonic() + timeout
    while not (reg.get("web").state == want and also()) and time.monotonic() < end:
        await asyncio.sleep(0.005)
    assert reg.get("web").state == want and also(), (reg.get("web").state, reg.get("web").reason)


async def test_a_service_that_exits_cleanly_leaves_the_prison_exited_and_enterable(tmp_path):
    host, reg, events = engine(tmp_path, WEB)
    await reg.start_all()
    service(reg).exit(0)
    await settle(reg, State.EXITED)
    web = reg.get("web")
    assert web.service_status == "exited with status 0" and web.reason is None
    assert web.link is not None and web.link.connected and host.aliases  # its init is up: exec works
    assert kinds(events, "web")[-1] == "exited"
    await reg.stop("web")
    assert host.cgroups == set() and web.state == State.STOPPED


async def test_a_crashing_service_is_restarted_then_fails_at_the_start_limit_leaving_nothing(tmp_path):
    host, reg, events = engine(tmp_path, WEB.replace("exec:", "restart: {delay: 0.01, max_delay: 0.02, burst: 3}\n"
                                                     "    exec:"))
    await reg.start_all()
    host.exit_at_once["httpd"] = 1  # from now on it crashes at once
    service(reg).exit(1)
    await settle(reg, State.FAILED)
    web = reg.get("web")
    assert web.reason == "exec.start exited with status 1; start limit reached: 3 restarts within 60s"
    assert host.cgroups == set() and host.aliases == {} and host.inits == {}
    assert kinds(events, "web") == ["started"] + ["restarting", "restarted"] * 3 + ["failed"]


@pytest.mark.parametrize("policy,code,want", [("no", 1, State.EXITED), ("on-failure", 0, State.EXITED),
                                              ("always", 0, State.RUNNING), ("on-failure", 3, State.RUNNING)])
async def test_the_policy_decides_what_an_end_means(tmp_path, policy, code, want):
    host, reg, _ = engine(tmp_path, WEB.replace("exec:", f"restart: {{policy: {policy}, delay: 0.01}}\n    exec:"))
    await reg.start_all()
    first = service(reg)
    first.exit(code)
    await settle(reg, want, lambda: service(reg) is not first if want is State.RUNNING else True)
    if want is State.RUNNING:
        assert service(reg).pid in host.procs["web"]


async def test_a_prison_whose_init_dies_is_started_again_whole(tmp_path):
    host, reg, events = engine(tmp_path, WEB.replace("exec:", "restart: {delay: 0.01}\n    exec:"))
    await reg.start_all()
    old_init = host.inits["web"]
    old_init.die()  # killed, or out of memory
    await settle(reg, State.RUNNING, lambda: host.inits.get("web") not in (None, old_init))
    assert kinds(events, "web") == ["started", "restarting", "started"]
    assert reg.get("web").reason is None and len(host.procs["web"]) == 2


async def test_without_restarts_a_dead_init_fails_the_prison(tmp_path):
    host, reg, _ = engine(tmp_path, WEB.replace("exec:", "restart: no\n    exec:"))
    await reg.start_all()
    host.inits["web"].die()
    await settle(reg, State.FAILED)
    assert reg.get("web").reason == "its init is gone" and host.cgroups == set()


async def test_stop_cancels_a_restart_that_waits(tmp_path):
    host, reg, _ = engine(tmp_path, WEB.replace("exec:", "restart: {delay: 5}\n    exec:"))
    await reg.start_all()
    service(reg).exit(1)
    await settle(reg, State.RESTARTING)
    await reg.stop("web")
    assert reg.get("web").state == State.STOPPED and host.cgroups == set()


async def test_a_service_that_ended_while_no_daemon_watched_is_restarted_on_adoption(tmp_path):
    host, reg, _ = engine(tmp_path, WEB.replace("exec:", "restart: {delay: 0.01}\n    exec:"))
    await reg.start_all()
    first = service(reg)
    first.exit(1)  # the daemon is dead meanwhile: nobody watches
    _, again, events = engine(tmp_path, WEB.replace("exec:", "restart: {delay: 0.01}\n    exec:"), host)
    await again.recover()
    await settle(again, State.RUNNING, lambda: again.get("web").service is not None)
    assert again.get("web").service is not None and again.get("web").service.pid != first.pid
    assert kinds(events, "web") == ["adopted", "restarting", "restarted"]


async def test_an_exited_prison_is_adopted_as_exited_not_restarted(tmp_path):
    host, reg, _ = engine(tmp_path, WEB.replace("exec:", "restart: no\n    exec:"))
    await reg.start_all()
    service(reg).exit(3)
    await settle(reg, State.EXITED)
    _, again, events = engine(tmp_path, WEB.replace("exec:", "restart: no\n    exec:"), host)
    await again.recover()
    web = again.get("web")
    assert web.state == State.EXITED and web.reason == "exec.start exited with status 3"
    assert web.service_status == "exited with status 3" and kinds(events, "web") == ["adopted", "exited"]


async def test_a_prison_an_operator_stopped_stays_stopped_after_a_crash_with_its_jid(tmp_path):
    two = WEB + "  db:\n    ip4: [127.0.3.1]\n"
    host, reg, _ = engine(tmp_path, two)
    await reg.start_all()
    await reg.stop("web")
    # the daemon dies; a new one on the same host and state directory
    _, again, _ = engine(tmp_path, two, host)
    await again.recover()
    await again.start_all()
    assert again.get("web").state == State.STOPPED and again.get("web").jid == 1
    assert again.get("db").state == State.RUNNING and again.get("db").jid == 2
    await again.start("web")
    assert again.get("web").state == State.RUNNING


async def test_a_prison_is_named_by_its_jid_too(tmp_path):
    _, reg, _ = engine(tmp_path, WEB + "  db:\n    ip4: [127.0.3.1]\n")
    await reg.start_all()
    assert reg.get("2") is reg.get("db") and reg.get("1") is reg.get("web")
    from prisond.model.errors import NoSuchPrison
    with pytest.raises(NoSuchPrison):
        reg.get("9")


async def test_a_list_with_many_old_figures_reads_them_off_the_loop(tmp_path, monkeypatch):
    """300 prisons whose figures are old: the cgroup reads happen in worker threads (the loop
    answers everyone else meanwhile), and the lines are the ones a list on the loop gives."""
    import threading
    from support.fakehost import FakeCgroup
    text = "prisons:\n" + "".join(f"  p{i}: {{ip4: [127.1.{i // 250}.{i % 250 + 1}], exec: {{start: [s]}}}}\n"
                                  for i in range(300))
    host, reg, _ = engine(tmp_path, text)
    await reg.start_all()
    api = Api(reg, "/nonexistent/shim.so")
    readers: list[int] = []
    real = FakeCgroup.count
    monkeypatch.setattr(FakeCgroup, "count", lambda self: (readers.append(threading.get_ident()), real(self))[1])
    for p in reg.prisons.values():
        p.view.refresh()  # as if the last list were long ago
    result = api.handle(Request(1, "prison.list", {}), Peer(1, 0, 0))
    assert hasattr(result, "__await__")  # many to read: a coroutine, not an answer made on the loop
    lines = await result
    assert len(readers) == 300 and threading.get_ident() not in readers
    assert [(x["name"], x["procs"]) for x in lines] == [(f"p{i}", 2) for i in range(300)]  # init and service
    readers.clear()
    again = api.handle(Request(2, "prison.list", {}), Peer(1, 0, 0))
    assert again == lines and readers == []  # less than a second later: nothing read again
