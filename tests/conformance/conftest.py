"""Fixtures for the conformance suite.

``sidecar`` is a real sidecar process per state store kind (in-memory, sqlite, postgresql v1 and
v2), shared by the whole session. Every async test runs in one session-wide event loop so the
sidecars and their HTTP clients are reused.

Set ``DAPR_CONFORMANCE_HTTP_URL`` (plus ``DAPR_CONFORMANCE_STORE``, default ``statestore``, and
``DAPR_CONFORMANCE_APP_ID``) to run the same tests against an already running real daprd; tests
marked ``own_process`` (they need to start and configure sidecars themselves) are then skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import service_unavailable_reason

from ._failures import run_failure_cases
from ._support import (
    EARLY,
    POSTGRES_URL,
    Sidecar,
    SidecarProcess,
    start_sidecar,
    store_component,
    store_kind_from_metadata,
    try_seed_expiring_keys,
    write_components,
)

REMOTE_URL = os.environ.get("DAPR_CONFORMANCE_HTTP_URL", "").rstrip("/")
REMOTE_STORE = os.environ.get("DAPR_CONFORMANCE_STORE", "statestore")
REMOTE_APP_ID = os.environ.get("DAPR_CONFORMANCE_APP_ID", "")
HERE = Path(__file__).parent
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


def store_params() -> list[object]:
    if REMOTE_URL:
        return [pytest.param("remote", id="remote")]
    return [
        pytest.param("in-memory", id="in-memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql-v1", id="postgresql-v1", marks=pytest.mark.postgres),
        pytest.param("postgresql-v2", id="postgresql-v2", marks=pytest.mark.postgres),
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_remote = pytest.mark.skip(
        reason="needs its own sidecar process (DAPR_CONFORMANCE_HTTP_URL)"
    )
    for item in items:
        if HERE not in Path(str(item.path)).parents:
            continue
        if pytest_asyncio.is_async_test(item):
            item.add_marker(SESSION_LOOP, append=False)
        if REMOTE_URL and item.get_closest_marker("own_process") is not None:
            item.add_marker(skip_remote)


@pytest.fixture(scope="session")
def pg_prefix() -> Iterator[str]:
    """A table-name prefix unique to this session; its tables are dropped at the end."""
    prefix = f"dfc_{uuid.uuid4().hex[:10]}"
    yield prefix
    drop_pg_tables(prefix)


def drop_pg_tables(prefix: str) -> None:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg comes with the sidecar extra
        return
    with (
        contextlib.suppress(psycopg.OperationalError),
        psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn,
    ):
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_name LIKE %s",
            (prefix.replace("_", r"\_") + "%",),
        ).fetchall()
        for schema, table in rows:
            conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE')


async def launch_store_sidecar(
    kind: str, tmp: Path, pg_prefix: str
) -> tuple[SidecarProcess, dict[str, str]]:
    """Start the sidecar of one store kind; returns it with where its data lives."""
    resources = tmp / "resources"
    write_components(
        resources / "statestore.yaml",
        store_component(kind, name="statestore", tmp=tmp, pg_prefix=pg_prefix),
    )
    backend = {
        "in-memory": {},
        "sqlite": {"sqlite_path": str(tmp / "state.db"), "table": "state"},
        "postgresql-v1": {"table": f"{pg_prefix}_v1", "meta_table": f"{pg_prefix}_v1_meta"},
        "postgresql-v2": {"table": f"{pg_prefix}_v2_state", "meta_table": f"{pg_prefix}_v2_meta"},
    }[kind]
    process = await start_sidecar(tmp, app_id=f"conf-{kind}", resources=[resources])
    return process, backend


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def early_starts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_prefix: str
) -> AsyncIterator[None]:
    """Start the slow processes the selected tests will need all at once, up front: the
    per-store sidecars and the startup-failure runs. Saves ~10 s on a two-core machine."""
    if REMOTE_URL:
        yield
        return
    items = request.session.items
    kinds = {
        item.callspec.params["sidecar"]
        for item in items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "sidecar" in item.callspec.params
    }
    for kind in sorted(kinds):
        if kind.startswith("postgresql") and service_unavailable_reason("postgres"):
            continue  # the test hook skips (or, in CI, fails) those tests
        tmp = tmp_path_factory.mktemp(f"sidecar-{kind}")
        EARLY[f"sidecar:{kind}"] = asyncio.create_task(launch_store_sidecar(kind, tmp, pg_prefix))
    if any(item.name.startswith("test_invalid_component_fails_startup") for item in items):
        tmp = tmp_path_factory.mktemp("failures")
        EARLY["failures"] = asyncio.create_task(run_failure_cases(tmp))
    yield
    for name in list(EARLY):
        task = EARLY.pop(name)
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            result = await task
            if name.startswith("sidecar:"):
                await result[0].stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=store_params())
async def sidecar(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_prefix: str
) -> AsyncIterator[Sidecar]:
    kind: str = request.param
    if kind == "remote":
        async with httpx.AsyncClient(base_url=REMOTE_URL, timeout=15.0) as client:
            meta = (await client.get("/v1.0/metadata")).json()
            comps = [c for c in meta.get("components", []) if c.get("name") == REMOTE_STORE]
            remote_kind = store_kind_from_metadata(comps[0]) if comps else "other"
            sc = Sidecar(
                url=REMOTE_URL,
                store=REMOTE_STORE,
                app_id=REMOTE_APP_ID or meta.get("id", ""),
                kind=remote_kind,
                client=client,
            )
            await try_seed_expiring_keys(sc)
            yield sc
        return

    task = EARLY.pop(f"sidecar:{kind}", None)
    if task is not None:
        process, backend = await task
    else:
        tmp = tmp_path_factory.mktemp(f"sidecar-{kind}")
        process, backend = await launch_store_sidecar(kind, tmp, pg_prefix)
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=15.0) as client:
            sc = Sidecar(
                url=process.url,
                store="statestore",
                app_id=process.app_id,
                kind=kind,
                client=client,
                process=process,
                backend=backend,
            )
            await try_seed_expiring_keys(sc)
            yield sc
    finally:
        await process.stop()
