"""Serve an ASGI app with uvicorn on a free port, inside the running event loop.

The app under test has to be reachable over TCP for the sidecar (a separate process) to
deliver events to it and fetch its ``/dapr/subscribe``; an in-process test transport is
not enough. Lifespan events run, so ``create_app`` apps get their DaprClient.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from daprforge.launch import free_port


@dataclass(frozen=True, slots=True)
class AppServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class _Server(uvicorn.Server):
    # Leave the test runner's signal handlers alone (Ctrl-C must still stop pytest).
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp, *, port: int | None = None, host: str = "127.0.0.1", start_timeout: float = 10
) -> AsyncIterator[AppServer]:
    """``async with serve_app(app) as server:`` then use ``server.url``."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port or free_port(),
        log_config=None,
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(start_timeout):
            while not server.started:
                if task.done():
                    # serve() ended before listening: port busy (uvicorn exits), lifespan error.
                    with contextlib.suppress(SystemExit):
                        await task
                    raise RuntimeError(f"the app did not start on {host}:{config.port}")
                await asyncio.sleep(0.01)
        yield AppServer(host, config.port)
    finally:
        server.should_exit = True
        with contextlib.suppress(SystemExit):
            await task
