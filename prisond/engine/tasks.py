"""Background tasks: created through one helper that names them and keeps a reference
(a bare asyncio.create_task can be garbage-collected mid-flight)."""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("prisond")
_live: set[asyncio.Task] = set()


def spawn(coro, name: str) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _live.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task) -> None:
    _live.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("task %s failed: %s", task.get_name(), exc, exc_info=exc)
