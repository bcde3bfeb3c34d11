"""Key prefixing across apps sharing one database: reference §1.3 (keyPrefix appid / name /
namespace / none / custom, case-insensitive metadata name, lower-cased value, `||` separator,
un-prefixed keys in bulk get), §7.2-7.4 (stored keys in Dapr's tables).

Two sidecar processes (apps ``appa`` and ``appb``) load the same component files, all pointing at
one SQLite file or one PostgreSQL table. ``appa`` runs with ``NAMESPACE=ns1``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ._db import stored_keys
from ._support import (
    POSTGRES_URL,
    Sidecar,
    assert_no_content,
    component,
    new_key,
    spawn_sidecar,
    write_components,
)

pytestmark = pytest.mark.own_process

STORES = {
    # store name -> extra component metadata
    "statestore": [],
    "shared-none": [("keyPrefix", "none")],
    "shared-name": [("keyPrefix", "name")],
    "ns-store": [("keyPrefix", "namespace")],
    "custom-store": [("keyPrefix", "MyPrefix")],
    "upper-meta": [("KEYPREFIX", "NONE")],
}


@dataclass
class Pair:
    kind: str
    a: Sidecar
    b: Sidecar
    backend: dict[str, str]


@pytest_asyncio.fixture(
    scope="module",
    loop_scope="session",
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql-v1", marks=pytest.mark.postgres),
        pytest.param("postgresql-v2", marks=pytest.mark.postgres),
    ],
)
async def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_prefix: str
) -> AsyncIterator[Pair]:
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(f"prefix-{kind}")
    base: list[tuple[str, Any]]
    if kind == "sqlite":
        base = [("connectionString", str(tmp / "shared.db"))]
        backend = {"sqlite_path": str(tmp / "shared.db"), "table": "state"}
        type_, version = "state.sqlite", "v1"
    elif kind == "postgresql-v1":
        table = f"{pg_prefix}_kp_v1"
        base = [
            ("connectionString", POSTGRES_URL),
            ("tableName", table),
            ("metadataTableName", f"{table}_meta"),
        ]
        backend = {"table": table}
        type_, version = "state.postgresql", "v1"
    else:
        prefix = f"{pg_prefix}_kp_v2_"
        base = [
            ("connectionString", POSTGRES_URL),
            ("tablePrefix", prefix),
            ("metadataTableName", f"{prefix}meta"),
        ]
        backend = {"table": f"{prefix}state"}
        type_, version = "state.postgresql", "v2"
    res = tmp / "resources"
    docs = [
        component(name, type_, version=version, metadata=[*base, *extra])
        for name, extra in STORES.items()
    ]
    write_components(res / "stores.yaml", *docs)
    # Both start at once: six components per process initialize (and migrate) one shared table
    # concurrently, which Dapr's migration lock makes safe (§7.2).
    proc_a = await spawn_sidecar(
        tmp / "a", app_id="appa", resources=[res], env={"NAMESPACE": "ns1"}
    )
    proc_b = await spawn_sidecar(tmp / "b", app_id="appb", resources=[res])
    try:
        await asyncio.gather(proc_a.wait_ready(), proc_b.wait_ready())
        async with (
            httpx.AsyncClient(base_url=proc_a.url, timeout=10.0) as client_a,
            httpx.AsyncClient(base_url=proc_b.url, timeout=10.0) as client_b,
        ):
            yield Pair(
                kind,
                Sidecar(proc_a.url, "statestore", "appa", kind, client_a, proc_a, backend),
                Sidecar(proc_b.url, "statestore", "appb", kind, client_b, proc_b, backend),
                backend,
            )
    finally:
        await asyncio.gather(proc_a.stop(), proc_b.stop())


async def test_default_prefix_is_the_app_id(pair: Pair) -> None:
    key = new_key()
    await pair.a.save_ok(key, "from a")
    assert (await pair.a.get(key)).json() == "from a"
    assert_no_content(await pair.b.get(key))  # other app, other key
    await pair.b.save_ok(key, "from b")
    assert (await pair.a.get(key)).json() == "from a"
    assert (await pair.b.get(key)).json() == "from b"
    assert stored_keys(pair.kind, pair.backend, [key, f"appa||{key}", f"appb||{key}"]) == {
        f"appa||{key}",
        f"appb||{key}",
    }


async def test_delete_only_touches_own_key(pair: Pair) -> None:
    key = new_key()
    await pair.a.save_ok(key, "a")
    await pair.b.save_ok(key, "b")
    assert_no_content(await pair.b.delete(key))
    assert (await pair.a.get(key)).json() == "a"


async def test_prefix_none_shares_keys(pair: Pair) -> None:
    key = new_key()
    assert_no_content(await pair.a.save([{"key": key, "value": 1}], store="shared-none"))
    assert (await pair.b.get(key, store="shared-none")).json() == 1
    assert stored_keys(pair.kind, pair.backend, [key]) == {key}


async def test_prefix_name_shares_keys_per_store(pair: Pair) -> None:
    key = new_key()
    assert_no_content(await pair.a.save([{"key": key, "value": 2}], store="shared-name"))
    assert (await pair.b.get(key, store="shared-name")).json() == 2
    assert stored_keys(pair.kind, pair.backend, [f"shared-name||{key}"]) == {f"shared-name||{key}"}


async def test_prefix_namespace(pair: Pair) -> None:
    key = new_key()
    assert_no_content(await pair.a.save([{"key": key, "value": "a"}], store="ns-store"))
    assert_no_content(await pair.b.save([{"key": key, "value": "b"}], store="ns-store"))
    # appa has NAMESPACE=ns1; appb has none and falls back to its app id
    expected = {f"ns1.appa||{key}", f"appb||{key}"}
    assert stored_keys(pair.kind, pair.backend, [*expected, key, f"appa||{key}"]) == expected
    assert (await pair.a.get(key, store="ns-store")).json() == "a"


async def test_custom_prefix_is_lower_cased(pair: Pair) -> None:
    key = new_key()
    assert_no_content(await pair.a.save([{"key": key, "value": "c"}], store="custom-store"))
    assert (await pair.b.get(key, store="custom-store")).json() == "c"
    assert stored_keys(pair.kind, pair.backend, [f"myprefix||{key}", f"MyPrefix||{key}"]) == {
        f"myprefix||{key}"
    }
    bulk = (await pair.b.bulk({"keys": [key]}, store="custom-store")).json()
    assert [(i["key"], i["data"]) for i in bulk] == [(key, "c")]


async def test_key_prefix_metadata_name_is_case_insensitive(pair: Pair) -> None:
    key = new_key()
    assert_no_content(await pair.a.save([{"key": key, "value": "u"}], store="upper-meta"))
    assert (await pair.b.get(key, store="upper-meta")).json() == "u"
    assert stored_keys(pair.kind, pair.backend, [key]) == {key}


async def test_shared_etag_and_transaction_across_apps(pair: Pair) -> None:
    key = new_key()
    assert_no_content(await pair.a.save([{"key": key, "value": 1}], store="shared-none"))
    etag = (await pair.b.get(key, store="shared-none")).headers["etag"]
    ops = [{"operation": "upsert", "request": {"key": key, "value": 2, "etag": etag}}]
    assert_no_content(await pair.b.transaction({"operations": ops}, store="shared-none"))
    stale = await pair.a.save([{"key": key, "value": 3, "etag": etag}], store="shared-none")
    assert stale.status_code == 409, stale.text
    assert (await pair.a.get(key, store="shared-none")).json() == 2


async def test_bulk_returns_unprefixed_keys(pair: Pair) -> None:
    keys = [new_key(), new_key()]
    await pair.a.save([{"key": k, "value": k} for k in keys])
    bulk = (await pair.a.bulk({"keys": keys})).json()
    assert sorted(i["key"] for i in bulk) == sorted(keys)
    assert all(i["data"] == i["key"] for i in bulk)
