"""state.sqlite against real database files: what the HTTP conformance suite cannot see.

Expiry is tested by moving ``expiration_time`` into the past with SQL rather than by
sleeping: SQLite timestamps have one-second resolution.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daprforge.sidecar.components.metadata import (
    ComponentConfig,
    ComponentConfigError,
    ComponentMetadata,
)
from daprforge.sidecar.state.base import (
    FEATURE_ETAG,
    FEATURE_KEYS_LIKE,
    FEATURE_TRANSACTIONAL,
    FEATURE_TTL,
    DeleteRequest,
    ETagMismatchError,
    Query,
    QueryError,
    SetRequest,
    StateItem,
    StateStoreError,
)
from daprforge.sidecar.state.sqlite import SQLiteStore, create

OpenStore = Callable[..., Awaitable[SQLiteStore]]
SQLITE_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

# The layout daprd's migration 0 creates, as PRAGMA table_info reports it:
# (name, declared type, not null, default, primary key).
DAPRD_STATE_COLUMNS = [
    ("key", "TEXT", 1, None, 1),
    ("value", "TEXT", 1, None, 0),
    ("is_binary", "BOOLEAN", 1, None, 0),
    ("etag", "TEXT", 1, None, 0),
    ("expiration_time", "TIMESTAMP", 0, "NULL", 0),
    ("update_time", "TIMESTAMP", 1, "CURRENT_TIMESTAMP", 0),
]


def make(metadata: dict[str, str]) -> SQLiteStore:
    store = create(ComponentConfig("statestore", ComponentMetadata(metadata)))
    assert isinstance(store, SQLiteStore)
    return store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def open_store(db_path: Path) -> AsyncIterator[OpenStore]:
    """Open (and later close) stores; by default all on the same file, like two sidecars."""
    stores: list[SQLiteStore] = []

    async def open_(**metadata: str) -> SQLiteStore:
        store = make({"connectionString": str(db_path), **metadata})
        await store.init()
        stores.append(store)
        return store

    yield open_
    for store in stores:
        await store.close()


@pytest.fixture
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to the same file, standing in for daprd or an inspector."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)
    yield conn
    conn.close()


def expire(raw: sqlite3.Connection, *keys: str, table: str = "state") -> None:
    for key in keys:
        raw.execute(
            f"UPDATE {table} SET expiration_time = DATETIME(CURRENT_TIMESTAMP, '-10 seconds') "
            "WHERE key = ?",
            (key,),
        )


async def must_get(store: SQLiteStore, key: str) -> StateItem:
    item = await store.get(key)
    assert item is not None, f"{key!r} is missing"
    return item


async def etag_of(store: SQLiteStore, key: str) -> str:
    etag = (await must_get(store, key)).etag
    assert etag is not None
    return etag


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({}, "connectionString"),
        ({"connectionString": ""}, "connectionString"),
        ({"connectionString": "x.db", "tableName": "not.valid"}, "tableName"),
        ({"connectionString": "x.db", "tableName": "state; DROP"}, "tableName"),
        ({"connectionString": "x.db", "metadataTableName": "a-b"}, "metadataTableName"),
        ({"connectionString": "x.db", "timeout": "500ms"}, "timeout"),
        ({"connectionString": "x.db", "timeout": "soon"}, "timeout"),
        ({"connectionString": "x.db", "busyTimeout": "2 s"}, "busyTimeout"),
        ({"connectionString": "x.db", "cleanupInterval": "1x"}, "cleanupInterval"),
        ({"connectionString": "x.db", "disableWAL": "maybe"}, "disableWAL"),
        ({"connectionString": "x.db?_pragma=busy_timeout(10)"}, "connectionString"),
        ({"connectionString": "x.db?_pragma=journal_mode(WAL)"}, "connectionString"),
        ({"connectionString": "x.db?_pragma=foreign_keys(1)"}, "connectionString"),
        ({"connectionString": "file://otherhost/x.db"}, "connectionString"),
    ],
)
def test_bad_metadata_is_rejected_before_any_io(
    metadata: dict[str, str], field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ComponentConfigError) as caught:
        make(metadata)
    assert caught.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_metadata_defaults_and_aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = make({"connectionString": "data.db"}).settings
    assert settings.database == (tmp_path / "data.db").as_uri()
    assert (settings.table, settings.metadata_table) == ("state", "metadata")
    assert (settings.timeout, settings.busy_timeout, settings.cleanup_interval) == (20, 2, 0)
    assert settings.wal

    settings = make(
        {
            "URL": "file:data.db?mode=rwc&_txlock=deferred&cache=shared",
            "timeoutInSeconds": "1200",  # bare numbers are seconds, as in daprd
            "cleanupIntervalInSeconds": "22",
            "busyTimeout": "1500ms",
            "disableWAL": "true",
        }
    ).settings
    assert settings.database == (tmp_path / "data.db").as_uri() + "?mode=rwc"
    assert (settings.timeout, settings.busy_timeout, settings.cleanup_interval) == (1200, 1.5, 22)
    assert not settings.wal

    assert make({"connectionString": "file::memory:?cache=shared"}).settings.in_memory
    disabled = make({"connectionString": "x.db", "cleanupInterval": "-1"})
    assert disabled.settings.cleanup_interval == 0


def test_features() -> None:
    store = make({"connectionString": ":memory:"})
    assert store.features == {FEATURE_ETAG, FEATURE_TRANSACTIONAL, FEATURE_TTL, FEATURE_KEYS_LIKE}


async def test_relative_path_resolves_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = make({"connectionString": "file:rel.db"})
    monkeypatch.chdir("/")  # resolved when the component was created, not at init
    await store.init()
    try:
        await store.set(SetRequest("k", b"1"))
    finally:
        await store.close()
    assert (tmp_path / "rel.db").is_file()


# -- schema and interoperability with daprd ----------------------------------------------


async def test_schema_and_migration_bookkeeping_match_daprd(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    await open_store()
    assert raw.execute("PRAGMA table_info(state)").fetchall() == [
        (i, *column) for i, column in enumerate(DAPRD_STATE_COLUMNS)
    ]
    assert [row[1:3] for row in raw.execute("PRAGMA table_info(metadata)")] == [
        ("key", "TEXT"),
        ("value", "TEXT"),
    ]
    assert raw.execute("SELECT key, value FROM metadata").fetchall() == [("migrations", "1")]
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_migrations_are_idempotent_across_stores_and_restarts(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    first, second = await asyncio.gather(open_store(), open_store())
    await first.set(SetRequest("k", b"1"))
    await first.close()
    await open_store()
    await second.close()
    assert raw.execute("SELECT key, value FROM metadata").fetchall() == [("migrations", "1")]
    assert raw.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone() == (2,)
    assert raw.execute("SELECT value FROM state").fetchall() == [("1",)]


async def test_custom_table_names_and_a_shared_metadata_table(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    orders = await open_store(tableName="orders", metadataTableName="dapr_meta")
    # daprd keeps one migration level per metadata table, so it would never create this
    # second state table; we do.
    carts = await open_store(tableName="carts", metadataTableName="dapr_meta")
    await orders.set(SetRequest("k", b'"order"'))
    await carts.set(SetRequest("k", b'"cart"'))
    assert raw.execute("SELECT value FROM orders").fetchall() == [('"order"',)]
    assert raw.execute("SELECT value FROM carts").fetchall() == [('"cart"',)]
    assert raw.execute("SELECT key, value FROM dapr_meta").fetchall() == [("migrations", "1")]


async def test_rows_are_written_as_daprd_writes_them(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    store = await open_store()
    binary = b"\x00\xff\xfe raw"
    await store.set(SetRequest("json", b'{"a":"\xc3\xa9"}'))
    await store.set(SetRequest("binary", binary))
    await store.set(SetRequest("ttl", b"1", ttl_seconds=100))

    rows = {
        row[0]: row[1:]
        for row in raw.execute(
            "SELECT key, value, is_binary, typeof(is_binary), etag, expiration_time,"
            " update_time, DATETIME(update_time, '+100 seconds') FROM state"
        )
    }
    assert rows["json"][:3] == ('{"a":"é"}', 0, "integer")
    assert rows["binary"][:3] == (base64.b64encode(binary).decode(), 1, "integer")
    for *_, etag, _, updated, _ in rows.values():
        assert uuid.UUID(etag).version == 4
        assert SQLITE_TIMESTAMP.fullmatch(updated)
    assert rows["json"][4] is None
    # Same expression, same second: DATETIME(CURRENT_TIMESTAMP, '+100 seconds').
    assert rows["ttl"][4] == rows["ttl"][6]

    assert (await must_get(store, "binary")).value == binary
    expires_at = datetime.fromisoformat(rows["ttl"][4]).replace(tzinfo=UTC)
    assert (await must_get(store, "ttl")).expires_at == expires_at


async def test_reads_rows_daprd_wrote(db_path: Path, open_store: OpenStore) -> None:
    # A database as daprd leaves it, written with daprd's own statements.
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("CREATE TABLE metadata (key text NOT NULL PRIMARY KEY, value text NOT NULL)")
    raw.execute("INSERT INTO metadata VALUES ('migrations', '1')")
    raw.execute(
        "CREATE TABLE state (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL,"
        " is_binary BOOLEAN NOT NULL, etag TEXT NOT NULL,"
        " expiration_time TIMESTAMP DEFAULT NULL,"
        " update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    insert = (
        "INSERT OR REPLACE INTO state (key, value, is_binary, etag, update_time, expiration_time)"
        " VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP, DATETIME(CURRENT_TIMESTAMP, ?))"
    )
    binary = base64.b64encode(b"\x01\x02").decode()
    raw.execute(insert, ("app||json", '{"b":2}', False, "e-json", None))
    raw.execute(insert, ("app||bin", binary, True, "e-bin", None))
    raw.execute(insert, ("app||ttl", "3", False, "e-ttl", "+60 seconds"))
    raw.execute(insert, ("app||old", "4", False, "e-old", "-1 seconds"))
    raw.close()

    store = await open_store()
    json_item = await must_get(store, "app||json")
    assert (json_item.value, json_item.etag) == (b'{"b":2}', "e-json")
    assert (await must_get(store, "app||bin")).value == b"\x01\x02"
    expires_at = (await must_get(store, "app||ttl")).expires_at
    assert expires_at is not None
    assert 55 < (expires_at - datetime.now(UTC)).total_seconds() <= 61
    assert await store.get("app||old") is None
    await store.set(SetRequest("app||json", b"5", etag="e-json"))  # daprd's etags work as-is


async def test_an_unreadable_migration_level_fails_init(
    db_path: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("CREATE TABLE metadata (key text NOT NULL PRIMARY KEY, value text NOT NULL)")
    raw.execute("INSERT INTO metadata VALUES ('migrations', 'two')")
    store = make({"connectionString": str(db_path)})
    with pytest.raises(StateStoreError, match="migration level"):
        await store.init()
    with pytest.raises(StateStoreError, match="not initialised"):
        await store.get("k")


async def test_disable_wal(open_store: OpenStore, raw: sqlite3.Connection) -> None:
    store = await open_store(disableWAL="true")
    await store.set(SetRequest("k", b"1"))
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)


async def test_in_memory_databases_are_private_per_store() -> None:
    first = make({"connectionString": ":memory:"})
    second = make({"connectionString": "file::memory:"})
    await first.init()
    await second.init()
    try:
        await first.multi([SetRequest("a", b"1"), SetRequest("b", b"2")])
        assert [r.item is not None for r in await first.bulk_get(["a", "b"])] == [True, True]
        assert await second.get("a") is None
        await first.ping()
    finally:
        await first.close()
        await second.close()


# -- etags, first-write, TTL ----------------------------------------------------------


async def test_etag_semantics(open_store: OpenStore) -> None:
    store = await open_store()
    await store.set(SetRequest("k", b"1"))
    etag = await etag_of(store, "k")

    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"2", etag="wrong"))
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("missing", b"2", etag=etag))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest("k", etag="wrong"))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest("missing", etag=etag))
    await store.delete(DeleteRequest("missing"))

    await store.set(SetRequest("k", b"2", etag=etag))
    new_etag = await etag_of(store, "k")
    assert new_etag != etag
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"3", etag=etag))
    await store.delete(DeleteRequest("k", etag=new_etag))
    assert await store.get("k") is None


async def test_first_write(open_store: OpenStore, raw: sqlite3.Connection) -> None:
    store = await open_store()
    await store.set(SetRequest("k", b"1", first_write=True))
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"2", first_write=True))
    await store.set(SetRequest("k", b"2", etag=await etag_of(store, "k"), first_write=True))

    expire(raw, "k")  # an expired row not yet cleaned up counts as missing
    await store.set(SetRequest("k", b"3", first_write=True))
    item = await must_get(store, "k")
    assert (item.value, item.expires_at) == (b"3", None)


async def test_expired_rows_are_invisible(open_store: OpenStore, raw: sqlite3.Connection) -> None:
    store = await open_store()
    await store.set(SetRequest("k", b"1", ttl_seconds=3600))
    etag = await etag_of(store, "k")
    expire(raw, "k")
    assert await store.get("k") is None
    [result] = await store.bulk_get(["k"])
    assert (result.item, result.error) == (None, None)
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"2", etag=etag))
    assert raw.execute("SELECT count(*) FROM state").fetchone() == (1,)  # still there


async def test_a_write_without_ttl_clears_the_expiry(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    store = await open_store()
    await store.set(SetRequest("k", b"1", ttl_seconds=60))
    await store.set(SetRequest("k", b"2", etag=await etag_of(store, "k")))
    assert raw.execute("SELECT expiration_time FROM state").fetchone() == (None,)


async def test_cleanup_is_coordinated_between_stores_on_one_file(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    first = await open_store(cleanupInterval="1h")
    second = await open_store(cleanupInterval="1h")
    for key in ("a", "b", "live"):
        await first.set(SetRequest(key, b"1", ttl_seconds=3600))
    expire(raw, "a", "b")

    assert await first.cleanup_expired() == 2
    assert raw.execute("SELECT key FROM state").fetchall() == [("live",)]
    [last_cleanup] = raw.execute("SELECT value FROM metadata WHERE key = 'last-cleanup'")
    assert SQLITE_TIMESTAMP.fullmatch(last_cleanup[0])

    expire(raw, "live")
    assert await second.cleanup_expired() == 0  # the first store cleaned up under an hour ago
    raw.execute("UPDATE metadata SET value = DATETIME(value, '-2 hours') WHERE key != 'migrations'")
    assert await second.cleanup_expired() == 1


async def test_background_cleanup(open_store: OpenStore, raw: sqlite3.Connection) -> None:
    store = await open_store(cleanupInterval="20ms")
    await store.set(SetRequest("k", b"1", ttl_seconds=3600))
    expire(raw, "k")
    for _ in range(200):
        if raw.execute("SELECT count(*) FROM state").fetchone() == (0,):
            break
        await asyncio.sleep(0.01)
    assert raw.execute("SELECT count(*) FROM state").fetchone() == (0,)


# -- transactions and concurrency ------------------------------------------------------


async def test_a_failing_operation_rolls_back_the_transaction(
    open_store: OpenStore, raw: sqlite3.Connection
) -> None:
    store = await open_store()
    await store.multi([SetRequest("a", b"1"), SetRequest("b", b"1")])
    etag_a = await etag_of(store, "a")

    with pytest.raises(ETagMismatchError):
        await store.multi(
            [
                SetRequest("a", b"2", etag=etag_a),
                DeleteRequest("b"),
                SetRequest("c", b"2"),
                SetRequest("b", b"2", etag="wrong"),
            ]
        )
    assert raw.execute("SELECT key, value FROM state ORDER BY key").fetchall() == [
        ("a", "1"),
        ("b", "1"),
    ]
    assert await etag_of(store, "a") == etag_a
    assert not raw.in_transaction

    # The same operations without the bad one all apply.
    await store.multi(
        [SetRequest("a", b"2", etag=etag_a), DeleteRequest("b"), SetRequest("c", b"2")]
    )
    assert raw.execute("SELECT key, value FROM state ORDER BY key").fetchall() == [
        ("a", "2"),
        ("c", "2"),
    ]


async def test_concurrent_etag_writers_never_lose_an_update(open_store: OpenStore) -> None:
    # Two stores on one file, as two sidecars: 50 read-increment-write loops with etags.
    stores = [await open_store(), await open_store()]
    await stores[0].set(SetRequest("counter", b"0"))
    conflicts = 0

    async def increment(store: SQLiteStore) -> None:
        nonlocal conflicts
        while True:
            item = await store.get("counter")
            assert item is not None
            try:
                await store.set(
                    SetRequest("counter", str(int(item.value) + 1).encode(), etag=item.etag)
                )
                return
            except ETagMismatchError:
                conflicts += 1

    await asyncio.gather(*(increment(stores[i % 2]) for i in range(50)))
    assert (await must_get(stores[1], "counter")).value == b"50"
    assert conflicts > 0  # the writers really did race


async def test_bulk_get_in_chunks_with_missing_and_repeated_keys(open_store: OpenStore) -> None:
    store = await open_store()
    await store.multi([SetRequest(f"k{i}", str(i).encode()) for i in range(0, 1200, 2)])
    keys = [f"k{i}" for i in range(1200)] + ["k0"]
    results = await store.bulk_get(keys)
    assert [r.key for r in results] == keys
    assert all(r.error is None for r in results)
    assert [r.item.value if r.item else None for r in results] == [
        str(i).encode() if i % 2 == 0 else None for i in range(1200)
    ] + [b"0"]
    assert await store.bulk_get([]) == []


async def test_query_is_not_supported(open_store: OpenStore) -> None:
    store = await open_store()
    with pytest.raises(QueryError):
        await store.query(Query(filter=None))
