"""state.postgresql v1 and v2 against a real PostgreSQL: what the HTTP suite cannot see.

Every test gets its own state and metadata tables (random names) and drops them after,
so runs sharing the ``test`` database do not collide. The "raw" helpers read and write
the tables with plain SQL, the way daprd would, to check data compatibility both ways.
Expiry is tested mostly by moving the expiry column into the past with SQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql

from daprforge.sidecar.components.metadata import (
    ComponentConfig,
    ComponentConfigError,
    ComponentMetadata,
)
from daprforge.sidecar.state import postgres_v1, postgres_v2
from daprforge.sidecar.state.base import (
    FEATURE_ETAG,
    FEATURE_KEYS_LIKE,
    FEATURE_QUERY_API,
    FEATURE_TRANSACTIONAL,
    FEATURE_TTL,
    DeleteRequest,
    ETagInvalidError,
    ETagMismatchError,
    Query,
    QueryError,
    SetRequest,
    StateStoreError,
)
from daprforge.sidecar.state.postgres_common import PostgresStore, TableName
from daprforge.sidecar.state.postgres_query import go_float, go_sprint
from daprforge.sidecar.state.postgres_v1 import PostgresV1Store
from daprforge.sidecar.state.postgres_v2 import PostgresV2Store

POSTGRES_URL = os.environ.get(
    "DAPRFORGE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)
postgres = pytest.mark.postgres


@dataclass(frozen=True)
class Names:
    """Unique table names for one test."""

    tag: str

    @property
    def v1(self) -> str:
        return f"dft_{self.tag}"

    @property
    def prefix(self) -> str:
        return f"dft_{self.tag}_"

    @property
    def v2(self) -> str:
        return f"dft_{self.tag}_state"

    @property
    def meta(self) -> str:
        return f"dft_{self.tag}_meta"

    @property
    def schema(self) -> str:
        return f"dft_{self.tag}_schema"


def config(**metadata: str) -> ComponentConfig:
    return ComponentConfig(
        "statestore", ComponentMetadata({"connectionString": POSTGRES_URL, **metadata})
    )


def make_v1(**metadata: str) -> PostgresV1Store:
    store = postgres_v1.create(config(**metadata))
    assert isinstance(store, PostgresV1Store)
    return store


def make_v2(**metadata: str) -> PostgresV2Store:
    store = postgres_v2.create(config(**metadata))
    assert isinstance(store, PostgresV2Store)
    return store


async def raw(statement: LiteralString | sql.Composed, params: Sequence[Any] = ()) -> list[Any]:
    """Run SQL on a connection of its own; returns the rows (if any)."""
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute(statement, params)
        return await cur.fetchall() if cur.description else []


def table(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


async def expire(name: str, column: LiteralString, key: str) -> None:
    await raw(
        sql.SQL("UPDATE {} SET {} = now() - interval '1 minute' WHERE key = %s").format(
            table(name), sql.Identifier(column)
        ),
        [key],
    )


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    names = Names(uuid.uuid4().hex[:10])
    yield names
    drops = [
        sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name))
        for name in (names.v1, names.v2, names.meta)
    ]
    drops.append(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(names.schema)))
    for statement in drops:
        await raw(statement)


Opener = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def open_store(names: Names) -> AsyncIterator[Opener]:
    """``await open_store("v1", **metadata)``: an initialised store on this test's tables."""
    opened: list[PostgresStore] = []

    async def open_(version: str, **metadata: str) -> PostgresStore:
        defaults = {"metadataTableName": names.meta}
        if version == "v1":
            store: PostgresStore = make_v1(**{"tableName": names.v1, **defaults, **metadata})
        else:
            store = make_v2(**{"tablePrefix": names.prefix, **defaults, **metadata})
        await store.init()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def v1(open_store: Opener) -> PostgresV1Store:
    store = await open_store("v1")
    assert isinstance(store, PostgresV1Store)
    return store


@pytest.fixture
async def v2(open_store: Opener) -> PostgresV2Store:
    store = await open_store("v2")
    assert isinstance(store, PostgresV2Store)
    return store


@pytest.fixture(params=["v1", "v2"])
async def store(request: pytest.FixtureRequest, open_store: Opener) -> PostgresStore:
    return await open_store(request.param)


def state_table(store: PostgresStore) -> str:
    return str(store.table)


# --------------------------------------------------------------------------- configuration


def test_connection_string_is_required() -> None:
    with pytest.raises(ComponentConfigError) as info:
        postgres_v1.create(ComponentConfig("s", ComponentMetadata({})))
    assert info.value.field == "connectionString"


def test_url_is_an_alias_of_connection_string() -> None:
    store = postgres_v2.create(ComponentConfig("s", ComponentMetadata({"url": POSTGRES_URL})))
    assert isinstance(store, PostgresV2Store)


def test_malformed_connection_string_is_rejected_before_connecting() -> None:
    with pytest.raises(ComponentConfigError) as info:
        make_v1(connectionString="postgres://h/db?pool_max_conns=3")
    assert info.value.field == "connectionString"


@pytest.mark.parametrize(
    "name", ["state; DROP TABLE x", "1state", "a.b.c", 'st"ate', "st ate", "a" * 64, "x.", ".x"]
)
def test_table_names_are_validated(name: str) -> None:
    with pytest.raises(ComponentConfigError) as info:
        make_v1(tableName=name)
    assert info.value.field == "tableName"
    with pytest.raises(ComponentConfigError) as info:
        make_v1(metadataTableName=name)
    assert info.value.field == "metadataTableName"


def test_table_names_fold_to_lower_case_like_unquoted_sql() -> None:
    # daprd splices the name into SQL unquoted, so Postgres folds it: same table as daprd.
    store = make_v1(tableName="MySchema.MyState", metadataTableName="Meta")
    assert store.table == TableName("myschema", "mystate")
    assert store.settings.metadata_table == TableName(None, "meta")


def test_v2_table_prefix() -> None:
    store = make_v2(tablePrefix="Sch.App_")
    assert store.table == TableName("sch", "app_state")
    # The bookkeeping keys keep the prefix exactly as configured, as daprd does.
    assert store.migrations_key == "migrations-state-v2-Sch.App_"
    assert store.last_cleanup_key == "last-cleanup-state-v2-Sch.App_"
    assert make_v2().table == TableName(None, "state")
    with pytest.raises(ComponentConfigError) as info:
        make_v2(tablePrefix="bad-prefix")
    assert info.value.field == "tablePrefix"


def test_defaults() -> None:
    store = make_v1()
    assert store.table == TableName(None, "state")
    assert store.settings.metadata_table == TableName(None, "dapr_metadata")
    assert store.settings.timeout == 20
    assert store.settings.cleanup_interval == 3600
    assert store.settings.max_conns >= 4
    assert store.settings.prepare
    assert store.features == {
        FEATURE_ETAG,
        FEATURE_TRANSACTIONAL,
        FEATURE_TTL,
        FEATURE_KEYS_LIKE,
        FEATURE_QUERY_API,
    }
    assert make_v2().features == {
        FEATURE_ETAG,
        FEATURE_TRANSACTIONAL,
        FEATURE_TTL,
        FEATURE_KEYS_LIKE,
    }


@pytest.mark.parametrize(
    ("metadata", "seconds"),
    [({"timeout": "5"}, 5), ({"timeout": "1m"}, 60), ({"timeoutInSeconds": "7"}, 7)],
)
def test_timeout(metadata: dict[str, str], seconds: float) -> None:
    assert make_v1(**metadata).settings.timeout == seconds


@pytest.mark.parametrize("value", ["500ms", "0", "-5s", "soon"])
def test_bad_timeout(value: str) -> None:
    with pytest.raises(ComponentConfigError) as info:
        make_v2(timeout=value)
    assert info.value.field == "timeout"


@pytest.mark.parametrize(
    ("metadata", "interval"),
    [
        ({}, 3600),
        ({"cleanupInterval": ""}, 3600),
        ({"cleanupInterval": "30"}, 30),
        ({"cleanupInterval": "2m"}, 120),
        ({"cleanupIntervalInSeconds": "45"}, 45),
        ({"cleanupInterval": "0"}, None),
        ({"cleanupInterval": "-1"}, None),
        ({"cleanupInterval": "-1h"}, None),
    ],
)
def test_cleanup_interval(metadata: dict[str, str], interval: float | None) -> None:
    assert make_v1(**metadata).settings.cleanup_interval == interval


def test_pool_and_driver_options() -> None:
    assert make_v1(maxConns="12").settings.max_conns == 12
    # daprd ignores maxConns of 1 or less and keeps pgx's default.
    assert make_v1(maxConns="1").settings.max_conns >= 4
    assert make_v1(connectionMaxIdleTime="5m").settings.max_idle == 300
    assert not make_v1(queryExecMode="simple_protocol").settings.prepare
    assert make_v1(queryExecMode="cache_statement").settings.prepare
    with pytest.raises(ComponentConfigError) as info:
        make_v1(queryExecMode="fast")
    assert info.value.field == "queryExecMode"


@pytest.mark.parametrize("flag", ["useAzureAD", "useAWSIAM"])
def test_cloud_authentication_is_refused(flag: str) -> None:
    with pytest.raises(ComponentConfigError) as info:
        make_v1(**{flag: "true"})
    assert info.value.field == flag


# --------------------------------------------------------------------------- Go formatting


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1, "1"),
        (0, "0"),
        (-2.5, "-2.5"),
        (123456, "123456"),
        (1000000, "1e+06"),
        (12345678, "1.2345678e+07"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (100.25, "100.25"),
    ],
)
def test_filter_numbers_print_like_go(number: float, text: str) -> None:
    assert go_float(float(number)) == text


def test_filter_values_print_like_go() -> None:
    assert go_sprint(True) == "true"
    assert go_sprint(None) == "<nil>"
    assert go_sprint("x y") == "x y"
    assert go_sprint([1, "a", 2.5]) == "[1 a 2.5]"
    assert go_sprint({"b": 1, "a": [True]}) == "map[a:[true] b:1]"


# --------------------------------------------------------------------------- layout and migrations


async def columns(name: str) -> list[tuple[Any, ...]]:
    schema, _, relname = name.rpartition(".")
    rows = await raw(
        "SELECT column_name, data_type, is_nullable, column_default, is_identity"
        " FROM information_schema.columns"
        " WHERE table_schema = COALESCE(NULLIF(%s, ''), current_schema()) AND table_name = %s"
        " ORDER BY ordinal_position",
        [schema, relname],
    )
    return [tuple(row) for row in rows]


async def indexes(name: str) -> dict[str, str]:
    rows = await raw(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [name.split(".")[-1]]
    )
    return {row[0]: row[1] for row in rows}


async def metadata_rows(name: str) -> dict[str, str]:
    rows = await raw(sql.SQL("SELECT key, value FROM {}").format(table(name)))
    return {row[0]: row[1] for row in rows}


TIMESTAMPTZ = "timestamp with time zone"


@postgres
async def test_v1_table_layout_matches_daprd(v1: PostgresV1Store, names: Names) -> None:
    assert await columns(names.v1) == [
        ("key", "text", "NO", None, "NO"),
        ("value", "jsonb", "NO", None, "NO"),
        ("isbinary", "boolean", "NO", None, "NO"),
        ("insertdate", TIMESTAMPTZ, "NO", "now()", "NO"),
        ("updatedate", TIMESTAMPTZ, "YES", None, "NO"),
        ("expiredate", TIMESTAMPTZ, "YES", None, "NO"),
        ("row_id", "bigint", "NO", None, "YES"),
    ]
    assert set(await indexes(names.v1)) == {f"{names.v1}_pkey", f"{names.v1}_row_id_uidx"}
    assert await columns(names.meta) == [
        ("key", "text", "NO", None, "NO"),
        ("value", "text", "NO", None, "NO"),
    ]
    assert await metadata_rows(names.meta) == {"lock": "lock", "migrations": "3"}


@postgres
async def test_v2_table_layout_matches_daprd(v2: PostgresV2Store, names: Names) -> None:
    assert await columns(names.v2) == [
        ("key", "text", "NO", None, "NO"),
        ("value", "bytea", "NO", None, "NO"),
        ("etag", "uuid", "NO", "gen_random_uuid()", "NO"),
        ("created_at", TIMESTAMPTZ, "NO", "now()", "NO"),
        ("updated_at", TIMESTAMPTZ, "YES", None, "NO"),
        ("expires_at", TIMESTAMPTZ, "YES", None, "NO"),
        ("row_id", "bigint", "NO", None, "YES"),
    ]
    found = await indexes(names.v2)
    assert set(found) == {
        f"{names.v2}_pkey",
        f"{names.v2}_expires_at_idx",
        f"{names.v2}_row_id_uidx",
    }
    assert "UNIQUE" in found[f"{names.v2}_row_id_uidx"]
    assert await metadata_rows(names.meta) == {
        "lock": "lock",
        f"migrations-state-v2-{names.prefix}": "2",
    }


@postgres
async def test_migrations_are_idempotent(open_store: Opener, names: Names) -> None:
    first = await open_store("v2")
    await first.set(SetRequest("k", b"1"))
    await first.close()
    second = await open_store("v2")
    assert (await second.get("k")) is not None
    # Migration 1 is not run again: it would add a second, unnamed expires_at index.
    assert len(await indexes(names.v2)) == 3
    assert (await metadata_rows(names.meta))[f"migrations-state-v2-{names.prefix}"] == "2"


@postgres
async def test_concurrent_initialisation(names: Names) -> None:
    # Several sidecars starting at once on one database: v1 and v2 share the metadata
    # table and therefore the lock row.
    stores: list[PostgresStore] = [
        *(make_v1(tableName=names.v1, metadataTableName=names.meta) for _ in range(3)),
        *(make_v2(tablePrefix=names.prefix, metadataTableName=names.meta) for _ in range(3)),
    ]
    try:
        await asyncio.gather(*(store.init() for store in stores))
        await asyncio.gather(*(s.set(SetRequest(f"k{i}", b"1")) for i, s in enumerate(stores)))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert await metadata_rows(names.meta) == {
        "lock": "lock",
        "migrations": "3",
        f"migrations-state-v2-{names.prefix}": "2",
    }
    assert len(await indexes(names.v2)) == 3


@postgres
async def test_v1_upgrades_a_table_from_an_older_daprd(open_store: Opener, names: Names) -> None:
    # What daprd releases before the row_id migration leave behind: migrations 0 and 1.
    t, meta = sql.Identifier(names.v1), sql.Identifier(names.meta)
    await raw(
        sql.SQL(
            "CREATE TABLE {} (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL,"
            " isbinary boolean NOT NULL, insertdate TIMESTAMP WITH TIME ZONE NOT NULL"
            " DEFAULT NOW(), updatedate TIMESTAMP WITH TIME ZONE NULL,"
            " expiredate TIMESTAMP WITH TIME ZONE)"
        ).format(t)
    )
    await raw(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text NOT NULL)").format(meta))
    await raw(sql.SQL("INSERT INTO {} VALUES ('migrations', '2')").format(meta))
    await raw(
        sql.SQL(
            "INSERT INTO {} (key, value, isbinary, insertdate) VALUES"
            " ('b', '1', false, now() - interval '2 days'),"
            " ('a', '2', false, now() - interval '1 day')"
        ).format(t)
    )
    store = await open_store("v1")
    await store.set(SetRequest("c", b"3"))
    rows = await raw(sql.SQL("SELECT key, row_id FROM {} ORDER BY row_id").format(t))
    assert rows == [("b", 1), ("a", 2), ("c", 3)]  # old rows numbered by age
    assert (await metadata_rows(names.meta))["migrations"] == "3"


@postgres
async def test_invalid_migration_level_fails_init(names: Names) -> None:
    meta = sql.Identifier(names.meta)
    await raw(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text NOT NULL)").format(meta))
    await raw(sql.SQL("INSERT INTO {} VALUES ('migrations', 'x1')").format(meta))
    store = make_v1(tableName=names.v1, metadataTableName=names.meta)
    with pytest.raises(StateStoreError, match="invalid migration level"):
        await store.init()
    await store.close()


@postgres
async def test_schema_qualified_names(open_store: Opener, names: Names) -> None:
    await raw(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(names.schema)))
    upper = names.schema.upper()
    v1 = await open_store("v1", tableName=f"{upper}.State", metadataTableName=f"{upper}.Meta")
    v2 = await open_store("v2", tablePrefix=f"{upper}.App_", metadataTableName=f"{upper}.Meta")
    await v1.set(SetRequest("k", b'"one"'))
    await v2.set(SetRequest("k", b'"two"'))
    assert await raw(
        sql.SQL("SELECT value::text FROM {}").format(sql.Identifier(names.schema, "state"))
    ) == [('"one"',)]
    assert await raw(
        sql.SQL("SELECT value FROM {}").format(sql.Identifier(names.schema, "app_state"))
    ) == [(b'"two"',)]
    assert set(await metadata_rows(f"{names.schema}.meta")) == {
        "lock",
        "migrations",
        f"migrations-state-v2-{upper}.App_",
    }


async def test_init_failure_is_a_store_error() -> None:
    store = make_v1(connectionString="postgres://postgres@127.0.0.1:1/test", timeout="2s")
    with pytest.raises(StateStoreError, match="failed to connect"):
        await store.init()
    await store.close()
    with pytest.raises(StateStoreError, match="not initialised"):
        await store.get("k")


@postgres
async def test_ping(store: PostgresStore) -> None:
    await store.ping()


@postgres
async def test_operations_time_out_and_the_pool_recovers(open_store: Opener) -> None:
    store = await open_store("v2", timeout="1s", maxConns="2")
    with pytest.raises(StateStoreError, match="within 1s"):
        async with store.connection() as conn:
            await conn.execute("SELECT pg_sleep(5)")
    for _ in range(3):  # more requests than connections: none was lost to the timeout
        await store.set(SetRequest("k", b"1"))


# --------------------------------------------------------------------------- value encoding


@postgres
async def test_v1_stores_json_as_jsonb(v1: PostgresV1Store, names: Names) -> None:
    await v1.set(SetRequest("k", b'{"b":1,"a":[1,2]}'))
    assert await raw(
        sql.SQL("SELECT value::text, isbinary FROM {}").format(sql.Identifier(names.v1))
    ) == [('{"a": [1, 2], "b": 1}', False)]
    item = await v1.get("k")
    assert item is not None
    # jsonb's own text form, exactly what daprd returns for this row.
    assert item.value == b'{"a": [1, 2], "b": 1}'


@postgres
async def test_v1_stores_other_bytes_as_base64(v1: PostgresV1Store, names: Names) -> None:
    payload = b"\xff\x00 not json"
    await v1.set(SetRequest("k", payload))
    expected = '"' + base64.b64encode(payload).decode() + '"'
    assert await raw(
        sql.SQL("SELECT value::text, isbinary FROM {}").format(sql.Identifier(names.v1))
    ) == [(expected, True)]
    item = await v1.get("k")
    assert item is not None
    assert item.value == payload


@postgres
async def test_v1_reads_rows_written_by_daprd(v1: PostgresV1Store, names: Names) -> None:
    t = sql.Identifier(names.v1)
    await raw(
        sql.SQL(
            "INSERT INTO {} (key, value, isbinary) VALUES"
            " ('json', '{{\"x\": 1}}', false), ('bin', '\"aGVsbG8=\"', true),"
            " ('broken', '\"***\"', true)"
        ).format(t)
    )
    json_item, bin_item = await v1.get("json"), await v1.get("bin")
    assert json_item is not None
    assert json_item.value == b'{"x": 1}'
    assert bin_item is not None
    assert bin_item.value == b"hello"
    with pytest.raises(StateStoreError, match="decode"):
        await v1.get("broken")
    # In a bulk get a row that cannot be decoded is a per-key error, as in daprd.
    results = {r.key: r for r in await v1.bulk_get(["json", "broken", "missing"])}
    assert results["broken"].error
    assert results["missing"].item is None
    assert results["missing"].error is None


@postgres
async def test_v2_stores_bytes_unchanged(v2: PostgresV2Store, names: Names) -> None:
    await v2.set(SetRequest("json", b'{"b":1,  "a":2}'))
    await v2.set(SetRequest("bin", b"\x00\xff"))
    rows = await raw(sql.SQL("SELECT key, value FROM {} ORDER BY key").format(table(names.v2)))
    assert rows == [("bin", b"\x00\xff"), ("json", b'{"b":1,  "a":2}')]
    item = await v2.get("json")
    assert item is not None
    assert item.value == b'{"b":1,  "a":2}'


@postgres
async def test_keys_are_data_not_sql(store: PostgresStore) -> None:
    key = "app||k'; DROP TABLE x; --\\\"%s"
    await store.set(SetRequest(key, b'"v"'))
    item = await store.get(key)
    assert item is not None
    assert item.value == b'"v"'
    await store.delete(DeleteRequest(key))
    assert await store.get(key) is None


# --------------------------------------------------------------------------- etags


@postgres
async def test_v1_etag_is_xmin(v1: PostgresV1Store, names: Names) -> None:
    await v1.set(SetRequest("k", b"1"))
    item = await v1.get("k")
    assert item is not None
    assert [(item.etag,)] == await raw(
        sql.SQL("SELECT xmin::text FROM {} WHERE key = 'k'").format(sql.Identifier(names.v1))
    )
    await v1.set(SetRequest("k", b"2", etag=item.etag))
    updated = await v1.get("k")
    assert updated is not None
    assert updated.etag != item.etag
    assert updated.value == b"2"
    with pytest.raises(ETagMismatchError):
        await v1.set(SetRequest("k", b"3", etag=item.etag))
    with pytest.raises(ETagMismatchError):
        await v1.delete(DeleteRequest("k", etag=item.etag))
    await v1.delete(DeleteRequest("k", etag=updated.etag))
    assert await v1.get("k") is None


@postgres
@pytest.mark.parametrize("etag", ["abc", "-1", "+1", "4294967296", " 1", "1.0", "\u0661"])
async def test_v1_etag_must_be_uint32(v1: PostgresV1Store, etag: str) -> None:
    await v1.set(SetRequest("k", b"1"))
    with pytest.raises(ETagInvalidError):
        await v1.set(SetRequest("k", b"2", etag=etag))
    with pytest.raises(ETagInvalidError):
        await v1.delete(DeleteRequest("k", etag=etag))


@postgres
async def test_v2_etag_is_a_new_uuid_on_every_write(v2: PostgresV2Store, names: Names) -> None:
    etags = []
    for value in (b"1", b"2", b"2"):
        await v2.set(SetRequest("k", value))
        item = await v2.get("k")
        assert item is not None
        etags.append(item.etag)
    assert len(set(etags)) == 3
    assert [(uuid.UUID(etags[-1]),)] == await raw(
        sql.SQL("SELECT etag FROM {}").format(sql.Identifier(names.v2))
    )


@postgres
async def test_v2_etag_forms_accepted_by_go_uuid(v2: PostgresV2Store) -> None:
    forms: list[Callable[[str], str]] = [
        str.upper,
        lambda e: "{" + e + "}",
        lambda e: "urn:uuid:" + e,
        lambda e: e.replace("-", ""),
    ]
    await v2.set(SetRequest("k", b"0"))
    for i, form in enumerate(forms):
        item = await v2.get("k")
        assert item is not None
        assert item.etag is not None
        await v2.set(SetRequest("k", str(i).encode(), etag=form(item.etag)))


@postgres
@pytest.mark.parametrize("etag", ["1", "not-a-uuid", "{" + "0" * 32 + "}", str(uuid.uuid4())])
async def test_v2_bad_or_stale_etag_is_a_mismatch(v2: PostgresV2Store, etag: str) -> None:
    await v2.set(SetRequest("k", b"1"))
    with pytest.raises(ETagMismatchError):
        await v2.set(SetRequest("k", b"2", etag=etag))
    with pytest.raises(ETagMismatchError):
        await v2.delete(DeleteRequest("k", etag=etag))


@postgres
async def test_etag_on_a_missing_key(store: PostgresStore) -> None:
    etag = "12345" if isinstance(store, PostgresV1Store) else str(uuid.uuid4())
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("missing", b"1", etag=etag))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest("missing", etag=etag))
    await store.delete(DeleteRequest("missing"))  # without an etag: fine


# --------------------------------------------------------------------------- TTL and first-write


def expires_column(store: PostgresStore) -> LiteralString:
    return "expiredate" if isinstance(store, PostgresV1Store) else "expires_at"


@postgres
async def test_ttl_sets_and_clears_the_expiry(store: PostgresStore) -> None:
    await store.set(SetRequest("k", b"1", ttl_seconds=100))
    item = await store.get("k")
    assert item is not None
    assert item.expires_at is not None
    assert item.expires_at.tzinfo == UTC
    remaining = item.expires_at - datetime.now(UTC)
    assert timedelta(seconds=95) < remaining <= timedelta(seconds=100)
    await store.set(SetRequest("k", b"2"))  # a save without a TTL removes the expiry
    item = await store.get("k")
    assert item is not None
    assert item.expires_at is None


@postgres
async def test_expired_rows_are_invisible(store: PostgresStore) -> None:
    await store.set(SetRequest("old", b"1", ttl_seconds=100))
    await store.set(SetRequest("new", b"2"))
    before = await store.get("old")
    assert before is not None
    await expire(state_table(store), expires_column(store), "old")
    assert await store.get("old") is None
    results = {r.key: r.item for r in await store.bulk_get(["old", "new"])}
    assert results["old"] is None
    assert results["new"] is not None
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("old", b"3", etag=before.etag))


@postgres
async def test_ttl_really_expires(store: PostgresStore) -> None:
    await store.set(SetRequest("k", b"1", ttl_seconds=1))
    assert await store.get("k") is not None
    await asyncio.sleep(1.2)
    assert await store.get("k") is None


@postgres
async def test_first_write(store: PostgresStore) -> None:
    await store.set(SetRequest("k", b"1", first_write=True))  # a new key is written
    with pytest.raises(StateStoreError, match="no item was updated") as info:
        await store.set(SetRequest("k", b"2", first_write=True))
    # A plain store error (HTTP 500), not an etag mismatch (409) as on SQLite.
    assert not isinstance(info.value, ETagMismatchError)
    await store.set(SetRequest("k", b"3", ttl_seconds=60))
    await expire(state_table(store), expires_column(store), "k")
    await store.set(SetRequest("k", b"4", first_write=True))  # expired: may be replaced
    item = await store.get("k")
    assert item is not None
    assert item.value == b"4"
    assert item.expires_at is None


# --------------------------------------------------------------------------- garbage collection


@postgres
async def test_cleanup_is_shared_through_the_metadata_table(
    store: PostgresStore, open_store: Opener, names: Names
) -> None:
    version = "v1" if isinstance(store, PostgresV1Store) else "v2"
    other = await open_store(version)  # a second sidecar on the same tables
    await store.set(SetRequest("dead", b"1", ttl_seconds=60))
    await store.set(SetRequest("alive", b"1", ttl_seconds=60))
    await store.set(SetRequest("forever", b"1"))
    await expire(state_table(store), expires_column(store), "dead")

    assert await other.cleanup_expired() == 1
    assert await store.cleanup_expired() is None  # ran less than an interval ago
    keys = await raw(sql.SQL("SELECT key FROM {} ORDER BY key").format(table(state_table(store))))
    assert keys == [("alive",), ("forever",)]
    key = "last-cleanup" if version == "v1" else f"last-cleanup-state-v2-{names.prefix}"
    assert key in await metadata_rows(names.meta)


@postgres
async def test_cleanup_runs_in_the_background(open_store: Opener, names: Names) -> None:
    store = await open_store("v2", cleanupInterval="1s")
    await store.set(SetRequest("dead", b"1", ttl_seconds=60))
    await expire(names.v2, "expires_at", "dead")
    count: Sequence[Any] = [(1,)]
    for _ in range(40):
        await asyncio.sleep(0.1)
        count = await raw(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(names.v2)))
        if count == [(0,)]:
            break
    assert count == [(0,)]


@postgres
async def test_cleanup_can_be_disabled(open_store: Opener, names: Names) -> None:
    store = await open_store("v1", cleanupInterval="0")
    await store.set(SetRequest("dead", b"1", ttl_seconds=60))
    await expire(names.v1, "expiredate", "dead")
    assert await store.cleanup_expired() is None
    assert len(await raw(sql.SQL("SELECT key FROM {}").format(sql.Identifier(names.v1)))) == 1


# --------------------------------------------------------------------------- transactions


@postgres
async def test_multi_applies_everything(store: PostgresStore) -> None:
    await store.set(SetRequest("c", b"0"))
    await store.multi(
        [SetRequest("a", b"1"), SetRequest("b", b"2", ttl_seconds=60), DeleteRequest("c")]
    )
    results = {r.key: r.item for r in await store.bulk_get(["a", "b", "c"])}
    assert results["a"] is not None
    assert results["b"] is not None
    assert results["b"].expires_at is not None
    assert results["c"] is None


@postgres
async def test_multi_is_atomic(store: PostgresStore) -> None:
    await store.set(SetRequest("c", b"0"))
    stale = "1" if isinstance(store, PostgresV1Store) else str(uuid.uuid4())
    with pytest.raises(ETagMismatchError):
        await store.multi(
            [SetRequest("a", b"1"), DeleteRequest("c"), SetRequest("b", b"2", etag=stale)]
        )
    assert await store.get("a") is None
    assert await store.get("c") is not None
    with pytest.raises(StateStoreError, match="no item was updated"):
        await store.multi([SetRequest("a", b"1"), SetRequest("c", b"2", first_write=True)])
    assert await store.get("a") is None


@postgres
async def test_v1_invalid_etag_in_multi_rolls_back(v1: PostgresV1Store) -> None:
    with pytest.raises(ETagInvalidError):
        await v1.multi([SetRequest("a", b"1"), DeleteRequest("b", etag="nope")])
    assert await v1.get("a") is None


@postgres
async def test_bulk_get_appends_missing_keys(store: PostgresStore) -> None:
    await store.set(SetRequest("a", b"1"))
    await store.set(SetRequest("b", b"2"))
    results = await store.bulk_get(["x", "a", "y", "b"])
    assert [r.key for r in results[:2]] in (["a", "b"], ["b", "a"])
    assert [(r.key, r.item) for r in results[2:]] == [("x", None), ("y", None)]
    assert await store.bulk_get([]) == []


# --------------------------------------------------------------------------- query (v1)

PEOPLE = {
    "1": {"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA", "n": 10},
    "2": {"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR", "n": 9},
    "3": {"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA", "n": 3},
    "4": {"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA", "n": "7"},
}


@pytest.fixture
async def people(v1: PostgresV1Store) -> PostgresV1Store:
    for key, value in PEOPLE.items():
        await v1.set(SetRequest(f"app||{key}", json.dumps(value).encode()))
    # A row that has expired.
    await v1.set(SetRequest("app||gone", json.dumps(PEOPLE["1"]).encode(), ttl_seconds=60))
    await expire(str(v1.table), "expiredate", "app||gone")
    return v1


async def keys_of(
    store: PostgresV1Store,
    filter_: dict[str, Any] | None = None,
    sort: Sequence[tuple[str, bool]] = (),
) -> list[str]:
    result = await store.query(Query(filter=filter_, sort=sort))
    return [key for key, _ in result.items]


@postgres
async def test_query_filters(people: PostgresV1Store) -> None:
    assert await keys_of(people) == ["app||1", "app||2", "app||3", "app||4"]
    assert await keys_of(people, {"EQ": {"person.org": "Dev Ops"}}) == ["app||1", "app||4"]
    assert await keys_of(people, {"NEQ": {"state": "WA"}}) == ["app||2", "app||3"]
    assert await keys_of(people, {"IN": {"state": ["CA", "OR"]}}) == ["app||2", "app||3"]
    assert await keys_of(
        people,
        {
            "OR": [
                {"EQ": {"person.org": "Finance"}},
                {"AND": [{"EQ": {"person.org": "Dev Ops"}}, {"IN": {"city": ["Spokane", "x"]}}]},
            ]
        },
    ) == ["app||3", "app||4"]
    assert await keys_of(people, {"EQ": {"person.missing.deeper": "x"}}) == []


@postgres
async def test_query_compares_text_like_daprd(people: PostgresV1Store) -> None:
    # value->>'n' is text: a number filter matches the number 10 and the string "7" alike,
    # and ordering comparisons are textual ('10' < '5'), exactly as in daprd.
    assert await keys_of(people, {"EQ": {"n": 10}}) == ["app||1"]
    assert await keys_of(people, {"EQ": {"n": "7"}}) == ["app||4"]
    assert await keys_of(people, {"EQ": {"n": 7}}) == ["app||4"]
    assert await keys_of(people, {"GT": {"n": 5}}) == ["app||2", "app||4"]
    assert await keys_of(people, {"LTE": {"person.id": 1036}}) == ["app||1", "app||2"]
    with pytest.raises(QueryError, match="string type not permitted"):
        await keys_of(people, {"GT": {"n": "5"}})


@postgres
async def test_query_sort(people: PostgresV1Store) -> None:
    assert await keys_of(people, sort=[("person.id", True)]) == [
        "app||3",
        "app||4",
        "app||1",
        "app||2",
    ]
    assert await keys_of(people, sort=[("state", False), ("person.id", True)]) == [
        "app||3",
        "app||2",
        "app||4",
        "app||1",
    ]


@postgres
async def test_query_pages_with_offset_tokens(people: PostgresV1Store) -> None:
    seen: list[str] = []
    tokens: list[str | None] = []
    token: str | None = None
    while True:
        page = await people.query(Query(filter=None, sort=[("city", False)], limit=3, token=token))
        tokens.append(page.token)
        if not page.items:
            break
        seen.extend(key for key, _ in page.items)
        token = page.token
    # The token is the next offset, and comes back even on the last (short) page.
    assert tokens == ["3", "4", "4"]
    assert seen == ["app||2", "app||3", "app||1", "app||4"]
    unlimited = await people.query(Query(filter=None, token="2"))
    assert unlimited.token is None
    assert len(unlimited.items) == 2


@postgres
async def test_query_results(people: PostgresV1Store, names: Names) -> None:
    result = await people.query(Query(filter={"EQ": {"city": "Seattle"}}))
    [(key, item)] = result.items
    assert key == "app||1"
    assert item.value.startswith(b'{"n": 10, ')
    assert [(item.etag,)] == await raw(
        sql.SQL("SELECT xmin::text FROM {} WHERE key = 'app||1'").format(sql.Identifier(names.v1))
    )
    # Like daprd, a query sees every app's keys: the HTTP layer strips whatever prefix.
    await people.set(SetRequest("other||1", json.dumps(PEOPLE["1"]).encode()))
    everyone = await people.query(Query(filter=None))
    assert {key for key, _ in everyone.items} == {
        "app||1",
        "app||2",
        "app||3",
        "app||4",
        "other||1",
    }


@postgres
@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ({"AND": [{"EQ": {"a": 1}}]}, "at least two entries"),
        ({"OR": {"EQ": {"a": 1}}}, "must be an array"),
        ({"EQ": {"a": 1}, "NEQ": {"a": 2}}, "single element"),
        ({"EQ": {"a": 1, "b": 2}}, "single key/value pair"),
        ({"EQ": [1]}, "must be a map"),
        ({"IN": {"a": 1}}, "must be an array"),
        ({"IN": {"a": []}}, "empty IN operator"),
        ({"LIKE": {"a": "x%"}}, "unsupported filter"),
        ({"AND": [{"EQ": {"a": 1}}, "x"]}, "filter unit must be a map"),
    ],
)
async def test_query_rejects_bad_filters(
    people: PostgresV1Store, filter_: dict[str, Any], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        await keys_of(people, filter_)


@postgres
@pytest.mark.parametrize("token", ["abc", "-1", "1.5", " 2", "99999999999999999999"])
async def test_query_rejects_bad_tokens(people: PostgresV1Store, token: str) -> None:
    with pytest.raises(QueryError, match="token"):
        await people.query(Query(filter=None, limit=1, token=token))


@postgres
async def test_query_paths_and_values_are_data_not_sql(
    people: PostgresV1Store, names: Names
) -> None:
    hostile = "state'); DROP TABLE " + names.v1 + "; --"
    assert await keys_of(people, {"EQ": {hostile: "x"}}) == []
    assert await keys_of(people, {"EQ": {"state": "WA' OR '1'='1"}}) == []
    assert await keys_of(people, {"IN": {"a.b%s": ["%s", "%(x)s"]}}) == []
    assert len(await keys_of(people, sort=[(hostile, True), ("x%s", False)])) == 4
    assert (
        len(await raw(sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(names.v1)))) == 5
    )  # 4 people + 1 expired row: nothing dropped


@postgres
async def test_v2_has_no_query_api(v2: PostgresV2Store) -> None:
    with pytest.raises(QueryError):
        await v2.query(Query(filter=None))
