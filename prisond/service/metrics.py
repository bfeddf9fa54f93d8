"""daemon.metrics_listen: Prometheus's scrape, over HTTP/1.0: `GET /metrics` answers the text
exposition (model/metrics.py), anything else 404.  One short request a connection, a bounded
head (8 KB, 5 s), so a client that dawdles costs a socket and nothing more."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("prisond.service.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD = 8192


class MetricsServer:
    def __init__(self, host: str, port: int, text: Callable[[], str]):
        self.host, self.port, self.text = host, port, text
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD)
        log.info("metrics on http://%s/metrics", f"[{self.host}]:{self.port}" if ":" in self.host else
                 f"{self.host}:{self.port}")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, target, *_ = head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""]
            if method in (b"GET", b"HEAD") and target.split(b"?")[0] == b"/metrics":
                body = self.text().encode()
                status = b"200 OK"
            else:
                body, status = b"not found: GET /metrics\n", b"404 Not Found"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: " + CONTENT_TYPE.encode() +
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" +
                         (body if method != b"HEAD" else b""))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
