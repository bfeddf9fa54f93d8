"""The control server on its own, with a stand-in handler: idle connections are dropped, a
method that waits keeps the replies in request order."""
import asyncio
import json

from prisond.service.api import Peer
from prisond.service.control import ControlServer


def host_peer(sock) -> Peer:
    return Peer(pid=1, uid=0, gid=0)


def sync_or_wait(req, peer: Peer):
    if req.method == "prison.start":  # a method that waits
        async def slow():
            await asyncio.sleep(0.3)
            return "started"
        return slow()
    return req.method


async def test_an_idle_half_request_is_dropped(tmp_path):
    srv = ControlServer(str(tmp_path / "s.sock"), sync_or_wait, identify=host_peer, idle_timeout=0.5)
    await srv.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        writer.write(b'{"v":1,"id":1,"method":"daemon.he')
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert srv.clients == 0
    finally:
        await srv.close()


async def test_replies_keep_the_order_of_requests(tmp_path):
    srv = ControlServer(str(tmp_path / "s.sock"), sync_or_wait, identify=host_peer)
    await srv.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        lines = [{"v": 1, "id": i, "method": m} for i, m in
                 enumerate(["daemon.health", "prison.start", "prison.list", "daemon.health"])]
        writer.write(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
        replies = [json.loads(await reader.readline()) for _ in lines]
        assert [(r["id"], r["result"]) for r in replies] == [
            (0, "daemon.health"), (1, "started"), (2, "prison.list"), (3, "daemon.health")]
        writer.close()
    finally:
        await srv.close()
