"""Secrets, metadata and health through DaprClient, against the shared sidecar."""

from __future__ import annotations

import pytest

from daprforge.client import ComponentNotFoundError, DaprClient

from .conftest import SESSION, new_key

pytestmark = SESSION


async def test_secret(dapr: DaprClient) -> None:
    assert await dapr.secrets.get("envsecrets", "DB_PASSWORD") == {"DB_PASSWORD": "s3cret"}


async def test_bulk_secrets(dapr: DaprClient) -> None:
    secrets = await dapr.secrets.get_bulk("envsecrets")
    assert secrets["DB_PASSWORD"] == {"DB_PASSWORD": "s3cret"}


async def test_unknown_secret_store(dapr: DaprClient) -> None:
    with pytest.raises(ComponentNotFoundError) as caught:
        await dapr.secrets.get("nope", "x")
    assert (caught.value.status, caught.value.error_code) == (401, "ERR_SECRET_STORE_NOT_FOUND")


async def test_metadata(dapr: DaprClient) -> None:
    key = new_key("attr")
    await dapr.set_metadata(key, "value 1")
    metadata = await dapr.metadata()
    assert metadata.id == "runtime-tests"
    assert metadata.runtime_version
    store = metadata.component("memstore")
    assert store is not None
    assert store.type == "state.in-memory"
    assert "ETAG" in store.capabilities
    assert metadata.extended[key] == "value 1"


async def test_health(dapr: DaprClient) -> None:
    assert await dapr.is_healthy()
    assert await dapr.is_healthy(outbound=True)
    await dapr.wait_for_sidecar(timeout=1)
