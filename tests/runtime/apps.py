"""Apps under test for the delivery tests: a service built with ``create_app`` and an
``EventRouter``, run with uvicorn next to a real sidecar that delivers to it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from daprforge.launch import free_port
from daprforge.service import ServiceSettings, create_app
from daprforge.testing import Sidecar, SidecarFactory, serve_app


class Order(BaseModel):
    order_id: str
    quantity: int


async def eventually(condition: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail the test if it does not within the time."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


def service(sidecar_url: str, *routers: Any, **settings: Any) -> FastAPI:
    app = create_app(
        ServiceSettings(
            _env_file=None,  # type: ignore[call-arg]
            app_id="app-under-test",
            dapr_http_endpoint=sidecar_url,
            log_json=True,
            **settings,
        )
    )
    for router in routers:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def running(
    factory: SidecarFactory,
    build: Callable[[str], FastAPI],
    *,
    resources: Sequence[Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
    app_id: str = "test-app",
) -> AsyncIterator[tuple[Sidecar, FastAPI]]:
    """Start a sidecar for an app, then the app (built with the sidecar's URL), and wait
    until the sidecar has read the app's subscriptions."""
    sidecar_port, app_port = free_port(), free_port()
    app = build(f"http://127.0.0.1:{sidecar_port}")
    sidecar = await factory(
        app_id=app_id, port=sidecar_port, app_port=app_port, resources=resources, env=env
    )
    async with serve_app(app, port=app_port):
        await sidecar.wait_for_app()
        try:
            yield sidecar, app
        except AssertionError as exc:
            exc.add_note(f"sidecar log:\n{sidecar.logs()}")
            raise
