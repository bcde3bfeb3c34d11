"""A crud service (tests/crud/_app.py) on a free port, next to a real sidecar process whose
state store is SQLite (no query API: the index strategy) or PostgreSQL v1 (the query API),
and whose in-memory pub/sub delivers the change events back to the app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from daprforge.client import CloudEvent
from daprforge.events import EventRouter
from daprforge.launch import free_port
from daprforge.resources import ResourceStore
from daprforge.service import ServiceSettings
from daprforge.testing import Sidecar, component, serve_app, start_sidecar
from daprforge.testing.plugin import dapr_sidecar_factory  # noqa: F401 - fixture
from tests.conftest import service_address
from tests.crud._app import build_app

PG_HOST, PG_PORT = service_address("postgres")
POSTGRES_URL = os.environ.get(
    "DAPRFORGE_TEST_POSTGRES_URL",
    f"postgres://postgres@{PG_HOST}:{PG_PORT}/test?sslmode=disable",
)
TOPIC = "exercises"

BACKENDS = [
    pytest.param("sqlite", id="sqlite-index"),
    pytest.param("postgres", id="postgresql-v1-query", marks=pytest.mark.postgres),
]


def drop_tables(*tables: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        for table in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def state_component(backend: str, workdir: Path, tag: str) -> dict[str, Any]:
    if backend == "sqlite":
        return component("statestore", "state.sqlite", {"connectionString": workdir / "s.db"})
    return component(
        "statestore",
        "state.postgresql",
        {
            "connectionString": POSTGRES_URL,
            "tableName": f"crud_{tag}",
            "metadataTableName": f"crud_meta_{tag}",
        },
    )


@dataclass
class Crud:
    """A running service: ``client`` talks to the app, ``events`` are those delivered."""

    client: httpx.AsyncClient
    app: FastAPI
    sidecar: Sidecar
    events: list[CloudEvent[dict[str, Any]]] = field(default_factory=list)

    @property
    def store(self) -> ResourceStore[Any]:
        store = self.app.state.store
        assert isinstance(store, ResourceStore)
        return store

    async def wait_for_events(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.events) < count:  # noqa: ASYNC110 - the subscriber just appends
                await asyncio.sleep(0.02)


CrudFactory = Callable[..., Awaitable[Crud]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def crud_factory(backend: str, tmp_path: Path) -> AsyncIterator[CrudFactory]:
    """``await crud_factory(**ResourceOptions)``: a service on ``backend``; several share
    one state store (as replicas do)."""
    tag = uuid.uuid4().hex[:10]
    stack = contextlib.AsyncExitStack()
    sidecars: list[Sidecar] = []

    async def factory(*, pubsub: str = "pubsub", **options: Any) -> Crud:
        index = len(sidecars)
        app_port, sidecar_port = free_port(), free_port()
        settings = ServiceSettings(
            app_id="crud-tests",
            dapr_http_endpoint=f"http://127.0.0.1:{sidecar_port}",
            log_json=False,
        )
        app = build_app(settings, pubsub=pubsub, **{"topic": TOPIC, **options})
        crud = Crud(httpx.AsyncClient(), app, None)  # type: ignore[arg-type]
        events = EventRouter()

        @events.subscribe("pubsub", TOPIC)
        async def received(event: CloudEvent[dict[str, Any]]) -> None:
            crud.events.append(event)

        app.include_router(events)
        sidecar = await start_sidecar(
            tmp_path / f"sidecar-{index}",
            app_id="crud-tests",
            port=sidecar_port,
            app_port=app_port,
            resources=[
                state_component(backend, tmp_path, tag),
                component("pubsub", "pubsub.in-memory"),
            ],
        )
        sidecars.append(sidecar)
        stack.push_async_callback(sidecar.stop)
        server = await stack.enter_async_context(serve_app(app, port=app_port))
        await sidecar.wait_for_app()
        crud.sidecar = sidecar
        crud.client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=server.url, timeout=20)
        )
        return crud

    try:
        yield factory
    finally:
        await stack.aclose()
        if backend == "postgres":
            await asyncio.to_thread(drop_tables, f"crud_{tag}", f"crud_meta_{tag}")


@pytest.fixture
async def crud(crud_factory: CrudFactory) -> Crud:
    return await crud_factory()
