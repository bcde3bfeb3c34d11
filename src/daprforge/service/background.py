"""Work that must finish although the request that started it is gone (recording usage,
publishing an event), kept so the app's shutdown can wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    def __init__(self) -> None:
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Wait for what is still running, ``timeout`` seconds at most."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
