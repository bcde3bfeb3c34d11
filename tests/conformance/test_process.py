"""Process-level behaviour: reference §6 (DAPR_API_TOKEN: 401 plain text, healthz exempt,
metadata covered), §0.1 (--max-body-size), §7.4 (SQLite data survives a restart), graceful
SIGTERM, and daprforge's embedded default store (DAPRFORGE_DATA_DIR, no --resources-path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from ._support import (
    INVOKE_NO_APP_ID,
    Sidecar,
    assert_legacy_error,
    assert_no_content,
    component,
    describe,
    new_key,
    start_sidecar,
    write_components,
)

pytestmark = pytest.mark.own_process

TOKEN = "conformance-token-7f3a"


# --------------------------------------------------------------------------- API token (§6)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def token_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    tmp = tmp_path_factory.mktemp("token")
    res = tmp / "resources"
    write_components(res / "store.yaml", component("statestore", "state.in-memory"))
    process = await start_sidecar(
        tmp, app_id="token-app", resources=[res], env={"DAPR_API_TOKEN": TOKEN}
    )
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            yield Sidecar(process.url, "statestore", "token-app", "in-memory", client, process)
    finally:
        await process.stop()


def good() -> dict[str, str]:
    return {"dapr-api-token": TOKEN}


def assert_unauthorized(resp: httpx.Response) -> None:
    assert resp.status_code == 401, describe(resp)
    assert resp.text.strip() == "invalid api token", describe(resp)
    assert resp.headers.get("content-type", "").startswith("text/plain"), describe(resp)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1.0/state/statestore"),
        ("GET", "/v1.0/state/statestore/k"),
        ("DELETE", "/v1.0/state/statestore/k"),
        ("POST", "/v1.0/state/statestore/bulk"),
        ("GET", "/v1.0/metadata"),
        ("PUT", "/v1.0/metadata/x"),
        ("GET", "/v1.0/secrets/any/key"),
        ("GET", "/v1.0/nonsense"),
        ("POST", "/v1.0/healthz"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"dapr-api-token": "wrong"}, {"dapr-api-token": ""}],
    ids=["none", "wrong", "empty"],
)
async def test_token_required(
    token_sidecar: Sidecar, method: str, path: str, headers: dict[str, str]
) -> None:
    resp = await token_sidecar.client.request(method, path, headers=headers, json=[])
    assert_unauthorized(resp)


@pytest.mark.parametrize("path", ["/v1.0/healthz", "/v1.0/healthz/outbound"])
async def test_health_is_exempt(token_sidecar: Sidecar, path: str) -> None:
    assert_no_content(await token_sidecar.client.get(path))


async def test_correct_token_works(token_sidecar: Sidecar) -> None:
    sc = token_sidecar
    key = new_key()
    resp = await sc.client.post(sc.state_path(), json=[{"key": key, "value": 1}], headers=good())
    assert_no_content(resp)
    got = await sc.client.get(sc.state_path(key), headers=good())
    assert got.status_code == 200, describe(got)
    assert got.json() == 1
    meta = await sc.client.get("/v1.0/metadata", headers=good())
    assert meta.status_code == 200, describe(meta)
    assert meta.json()["id"] == "token-app"
    fallback = await sc.client.get("/v1.0/nonsense", headers=good())
    assert_legacy_error(fallback, 404, "ERR_DIRECT_INVOKE", INVOKE_NO_APP_ID)


async def test_token_header_name_is_case_insensitive(token_sidecar: Sidecar) -> None:
    resp = await token_sidecar.client.get("/v1.0/metadata", headers={"DAPR-API-TOKEN": TOKEN})
    assert resp.status_code == 200, describe(resp)


# --------------------------------------------------------------------------- body size (§0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_body_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    tmp = tmp_path_factory.mktemp("bodysize")
    res = tmp / "resources"
    write_components(
        res / "store.yaml",
        component("statestore", "state.sqlite", metadata={"connectionString": str(tmp / "s.db")}),
    )
    process = await start_sidecar(
        tmp, app_id="small-body", resources=[res], extra_args=["--max-body-size", "2Ki"]
    )
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            yield Sidecar(process.url, "statestore", "small-body", "sqlite", client, process)
    finally:
        await process.stop()


async def test_body_under_the_limit_is_accepted(small_body_sidecar: Sidecar) -> None:
    key = new_key()
    await small_body_sidecar.save_ok(key, "x" * 1500)
    assert (await small_body_sidecar.get(key)).json() == "x" * 1500


async def test_oversize_body_is_rejected_and_nothing_stored(small_body_sidecar: Sidecar) -> None:
    sc = small_body_sidecar
    keys = [new_key() for _ in range(4)]
    resp = await sc.save([{"key": k, "value": "y" * 1000} for k in keys])
    assert resp.status_code in (400, 413), describe(resp)
    for key in keys:
        assert_no_content(await sc.get(key))
    one = new_key()
    resp = await sc.save([{"key": one, "value": "z" * 5000}])
    assert resp.status_code in (400, 413), describe(resp)
    assert_no_content(await sc.get(one))
    ops = [{"operation": "upsert", "request": {"key": one, "value": "z" * 5000}}]
    resp = await sc.transaction({"operations": ops})
    assert resp.status_code in (400, 413), describe(resp)
    assert_no_content(await sc.get(one))
    # the sidecar is still fine afterwards
    await sc.save_ok(one, "small")
    assert (await sc.get(one)).json() == "small"


# --------------------------------------------------------------------------- lifecycle


async def test_sigterm_is_graceful_and_sqlite_data_survives_restart(tmp_path: Path) -> None:
    res = tmp_path / "resources"
    db = tmp_path / "persist.db"
    write_components(
        res / "store.yaml",
        component("statestore", "state.sqlite", metadata={"connectionString": str(db)}),
    )
    key = new_key()
    first = await start_sidecar(tmp_path / "first", app_id="persist", resources=[res])
    async with httpx.AsyncClient(base_url=first.url, timeout=10.0) as client:
        sc = Sidecar(first.url, "statestore", "persist", "sqlite", client, first)
        await sc.save_ok(key, {"kept": True})
        etag = await sc.get_etag(key)
    code = await first.stop(limit=10.0)
    assert code == 0, f"exit code {code} after SIGTERM\n{first.log()}"

    second = await start_sidecar(tmp_path / "second", app_id="persist", resources=[res])
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=10.0) as client:
            sc = Sidecar(second.url, "statestore", "persist", "sqlite", client, second)
            resp = await sc.get(key)
            assert resp.status_code == 200, describe(resp)
            assert resp.json() == {"kept": True}
            assert resp.headers.get("etag") == etag
    finally:
        await second.stop()


async def test_embedded_default_state_store(tmp_path: Path) -> None:
    """Without --resources-path daprforge runs an embedded SQLite state store in
    DAPRFORGE_DATA_DIR (daprforge contract, not a daprd behaviour)."""
    process = await start_sidecar(tmp_path, app_id="embedded", resources=None)
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            meta = (await client.get("/v1.0/metadata")).json()
            stores = [c for c in meta.get("components", []) if c["type"] == "state.sqlite"]
            assert len(stores) == 1, meta
            sc = Sidecar(process.url, stores[0]["name"], "embedded", "sqlite", client, process)
            key = new_key()
            await sc.save_ok(key, "embedded")
            assert (await sc.get(key)).json() == "embedded"
        data_dir = tmp_path / "data"
        written = [p for p in data_dir.rglob("*") if p.is_file()] if data_dir.is_dir() else []
        assert written, f"nothing written under DAPRFORGE_DATA_DIR={data_dir}"
    finally:
        await process.stop()
