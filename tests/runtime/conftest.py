"""Fixtures for the runtime tests.

The plugin fixtures (``dapr_sidecar``, ``dapr_sidecar_factory``, ``openai_server``) are
imported here until the ``pytest11`` entry point makes them global. Client tests share
session-wide sidecars (``shared_sidecar``, ``pg_sidecar``) to stay fast; modules using them
run in the session event loop (``SESSION``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from daprforge.client import DaprClient
from daprforge.testing import Sidecar, component, start_sidecar
from daprforge.testing.plugin import (  # noqa: F401 - fixtures
    dapr_sidecar,
    dapr_sidecar_factory,
    openai_server,
)
from tests.conftest import service_address, service_unavailable_reason

SESSION = pytest.mark.asyncio(loop_scope="session")

PG_HOST, PG_PORT = service_address("postgres")
POSTGRES_URL = os.environ.get(
    "DAPRFORGE_TEST_POSTGRES_URL",
    f"postgres://postgres@{PG_HOST}:{PG_PORT}/test?sslmode=disable",
)

# Store name on a sidecar -> how the parametrized tests refer to it.
STORES = [
    pytest.param("memstore", id="in-memory"),
    pytest.param("sqlitestore", id="sqlite"),
    pytest.param("pgstore", id="postgresql-v1", marks=pytest.mark.postgres),
]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    """In-memory and SQLite state stores, an in-memory pub/sub, an env secret store."""
    workdir = tmp_path_factory.mktemp("shared-sidecar")
    sidecar = await start_sidecar(
        workdir,
        app_id="runtime-tests",
        resources=[
            component("memstore", "state.in-memory"),
            component("sqlitestore", "state.sqlite", {"connectionString": workdir / "state.db"}),
            component("pubsub", "pubsub.in-memory"),
            component("envsecrets", "secretstores.local.env", {"prefix": "DFR_TEST_"}),
        ],
        env={"DFR_TEST_DB_PASSWORD": "s3cret"},
    )
    try:
        yield sidecar
    finally:
        await sidecar.stop()


@pytest.fixture(scope="session")
def pg_prefix() -> Iterator[str]:
    prefix = f"dfr_{uuid.uuid4().hex[:10]}"
    yield prefix
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            for table in (f"{prefix}_state", f"{prefix}_meta"):
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_sidecar(
    tmp_path_factory: pytest.TempPathFactory, pg_prefix: str
) -> AsyncIterator[Sidecar]:
    reason = service_unavailable_reason("postgres")
    if reason:
        pytest.skip(reason)
    sidecar = await start_sidecar(
        tmp_path_factory.mktemp("pg-sidecar"),
        app_id="runtime-tests",
        resources=[
            component(
                "pgstore",
                "state.postgresql",
                {
                    "connectionString": POSTGRES_URL,
                    "tableName": f"{pg_prefix}_state",
                    "metadataTableName": f"{pg_prefix}_meta",
                },
            )
        ],
    )
    try:
        yield sidecar
    finally:
        await sidecar.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def dapr(shared_sidecar: Sidecar) -> AsyncIterator[DaprClient]:
    async with shared_sidecar.client() as client:
        yield client


@pytest.fixture(params=STORES)
def store_sidecar(request: pytest.FixtureRequest) -> tuple[Sidecar, str]:
    name: str = request.param
    fixture = "pg_sidecar" if name == "pgstore" else "shared_sidecar"
    return request.getfixturevalue(fixture), name


@pytest_asyncio.fixture(loop_scope="session")
async def store(store_sidecar: tuple[Sidecar, str]) -> AsyncIterator[tuple[DaprClient, str]]:
    """(client, store name), once per state store kind."""
    sidecar, name = store_sidecar
    async with sidecar.client() as client:
        yield client, name


def new_key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
