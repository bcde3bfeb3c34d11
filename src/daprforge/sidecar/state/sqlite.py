"""``state.sqlite``: a table in a SQLite database, data-compatible with daprd's component.

daprd and this store can share one database file: same tables, same migration bookkeeping,
same value encoding, and timestamps written by the same SQL expressions (``CURRENT_TIMESTAMP``
and ``DATETIME(CURRENT_TIMESTAMP, '+N seconds')``, i.e. ``YYYY-MM-DD HH:MM:SS`` in UTC), so
the expiry checks, which compare those strings, agree. Facts come from components-contrib
``state/sqlite/*``, ``common/authentication/sqlite/metadata.go`` and
``common/component/sql/{cleanup.go,migrations/sqlite}``.

Threads: the ``sqlite3`` module blocks, so each connection lives behind an executor. All
writes go to one connection on one thread, which serialises them in this process and lets a
whole transaction (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error) run as one call that
a cancelled request cannot interrupt halfway. Reads use their own connections so that they do
not queue behind writes; in WAL mode they never wait for a writer either. Other processes
(say, a daprd on the same file) are kept in step by SQLite's file locks and ``busyTimeout``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import queue
import re
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlencode

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
    BulkGetResult,
    DeleteRequest,
    ETagMismatchError,
    Operation,
    Query,
    QueryError,
    QueryResult,
    SetRequest,
    StateItem,
    StateStore,
    StateStoreError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 20.0
DEFAULT_BUSY_TIMEOUT = 2.0
DEFAULT_TABLE = "state"
DEFAULT_METADATA_TABLE = "metadata"

READ_CONNECTIONS = 2
"""Reader connections (and threads). Reads are short and hold the GIL for much of their
time, so more than a couple of threads add contention rather than throughput."""

BULK_GET_CHUNK = 500
"""Keys per ``IN (...)`` query; well under SQLite's bound-parameter limit."""

MIGRATIONS_KEY = "migrations"
LAST_CLEANUP_KEY = "last-cleanup"

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")
_PRAGMA = re.compile(r"([A-Za-z_]+)(?:\(([-\w.]+)\))?")
# daprd rejects these in ``_pragma`` because metadata fields own them.
_FORBIDDEN_PRAGMAS = {
    "busy_timeout": "use the busyTimeout metadata field instead",
    "journal_mode": "use the disableWAL metadata field instead",
    "foreign_keys": "it cannot be set for this component",
}

# Migration N brings the schema from level N to N+1; the level is kept in the metadata table
# under MIGRATIONS_KEY. Same list, same order, same DDL as daprd.
_MIGRATIONS = (
    """CREATE TABLE IF NOT EXISTS {table} (
        key TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL,
        is_binary BOOLEAN NOT NULL,
        etag TEXT NOT NULL,
        expiration_time TIMESTAMP DEFAULT NULL,
        update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    )""",
)

_LIVE = "(expiration_time IS NULL OR expiration_time > CURRENT_TIMESTAMP)"


@dataclass(frozen=True, slots=True)
class SQLiteSettings:
    """Validated component metadata."""

    database: str
    """What ``sqlite3.connect(..., uri=True)`` opens: a ``file:`` URI or ``:memory:``."""
    in_memory: bool
    wal: bool
    timeout: float
    busy_timeout: float
    """Seconds; 0 means do not wait for locks."""
    table: str
    metadata_table: str
    cleanup_interval: float
    """Seconds between cleanups of expired rows; 0 disables them."""
    pragmas: tuple[tuple[str, str | None], ...] = ()
    """Extra ``_pragma=name(value)`` options from the connection string."""


def parse_settings(metadata: ComponentMetadata) -> SQLiteSettings:
    """Validate ``metadata`` as daprd does; raise ComponentConfigError. Does no I/O."""
    connection_string = metadata.require("connectionString", "url")
    timeout = metadata.duration("timeout", "timeoutInSeconds", default=DEFAULT_TIMEOUT)
    if timeout < 1:
        raise ComponentConfigError("timeout", "must be at least 1s")
    # daprd truncates to milliseconds and treats anything <= 0 as "do not wait".
    busy_timeout = int(metadata.duration("busyTimeout", default=DEFAULT_BUSY_TIMEOUT) * 1000)
    cleanup_interval = metadata.duration("cleanupInterval", "cleanupIntervalInSeconds", default=0.0)
    table = metadata.first("tableName") or DEFAULT_TABLE
    metadata_table = metadata.first("metadataTableName") or DEFAULT_METADATA_TABLE
    for field, name in (("tableName", table), ("metadataTableName", metadata_table)):
        if not _IDENTIFIER.fullmatch(name):
            raise ComponentConfigError(field, f"{name!r} may only contain A-Z, a-z, 0-9 and _")
    database, in_memory, read_only, pragmas = _parse_connection_string(connection_string)
    return SQLiteSettings(
        database=database,
        in_memory=in_memory,
        # WAL needs a writable file; daprd uses the default rollback journal otherwise.
        wal=not (in_memory or read_only or metadata.boolean("disableWAL")),
        timeout=timeout,
        busy_timeout=max(busy_timeout, 0) / 1000,
        table=table,
        metadata_table=metadata_table,
        cleanup_interval=max(cleanup_interval, 0.0),
        pragmas=pragmas,
    )


def _parse_connection_string(
    text: str,
) -> tuple[str, bool, bool, tuple[tuple[str, str | None], ...]]:
    """Return (database for sqlite3.connect, in memory, read-only, extra pragmas).

    daprd accepts a path or ``file:`` URI with an optional query string, and hands it to the
    modernc driver with ``file:`` prepended. Relative paths resolve from the current
    directory; we make them absolute here so a later chdir cannot move the database.
    """
    path, _, query = text.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    pragmas: list[tuple[str, str | None]] = []
    for option in params.pop("_pragma", []):
        match = _PRAGMA.fullmatch(option.strip())
        if match is None:
            raise ComponentConfigError("connectionString", f"invalid _pragma option {option!r}")
        name = match.group(1).lower()
        if name in _FORBIDDEN_PRAGMAS:
            raise ComponentConfigError(
                "connectionString",
                f"_pragma={name} is not allowed in the connection string: "
                f"{_FORBIDDEN_PRAGMAS[name]}",
            )
        pragmas.append((name, match.group(2)))
    # Keep only what SQLite itself understands: ``_txlock`` and other ``_`` options belong to
    # the Go driver (writes here always use BEGIN IMMEDIATE, daprd's default), and shared
    # cache would put table locks between our own connections.
    options = {k: v[0] for k, v in params.items() if not k.startswith("_") and k != "cache"}

    lowered = text.lower()
    in_memory = lowered.startswith((":memory:", "file::memory:")) or options.get("mode") == "memory"
    if in_memory:
        # One private database per store, like one daprd process per app (daprd's shared
        # cache only shares within a process).
        return ":memory:", True, False, tuple(pragmas)

    if path[:5].lower() == "file:":
        path = path[5:]
        if path.startswith("//"):  # file://[localhost]/abs/path
            authority, _, rest = path[2:].partition("/")
            if authority not in ("", "localhost"):
                raise ComponentConfigError(
                    "connectionString", f"unsupported URI authority {authority!r}"
                )
            path = "/" + rest
    path = unquote(path)
    if not path:
        raise ComponentConfigError("connectionString", "does not name a database file")
    read_only = options.get("mode") == "ro" or options.get("immutable") == "1"
    uri = Path(os.path.abspath(path)).as_uri()
    if options:
        uri += "?" + urlencode(options)
    return uri, False, read_only, tuple(pragmas)


class SQLiteStore:
    features: frozenset[str] = frozenset(
        {FEATURE_ETAG, FEATURE_TRANSACTIONAL, FEATURE_TTL, FEATURE_KEYS_LIKE}
    )

    def __init__(self, settings: SQLiteSettings) -> None:
        self.settings = settings
        t = settings.table
        # Table names are validated identifiers, so formatting them into SQL is safe. TTLs go
        # in as a DATETIME modifier parameter ('+N seconds', or NULL for no expiry, which
        # makes DATETIME return NULL), so every write uses one cached statement.
        self._sql_get = (
            f"SELECT CAST(value AS BLOB), is_binary, etag, expiration_time FROM {t} "
            f"WHERE key = ? AND {_LIVE}"
        )
        self._sql_bulk_get = (
            f"SELECT key, CAST(value AS BLOB), is_binary, etag, expiration_time FROM {t} "
            f"WHERE key IN ({{params}}) AND {_LIVE}"
        )
        self._sql_upsert = (
            f"INSERT OR REPLACE INTO {t} "
            "(key, value, is_binary, etag, update_time, expiration_time) "
            "VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP, DATETIME(CURRENT_TIMESTAMP, ?))"
        )
        # first-write without an etag: insert unless a live row exists. An expired row that
        # the cleanup has not removed yet counts as missing, and is replaced.
        self._sql_insert_first = (
            f"INSERT OR REPLACE INTO {t} "
            "(key, value, is_binary, etag, expiration_time, update_time) "
            "SELECT ?, ?, ?, ?, DATETIME(CURRENT_TIMESTAMP, ?), CURRENT_TIMESTAMP "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE key = ? AND {_LIVE})"
        )
        self._sql_update_etag = (
            f"UPDATE {t} SET value = ?, etag = ?, is_binary = ?, "
            "update_time = CURRENT_TIMESTAMP, expiration_time = DATETIME(CURRENT_TIMESTAMP, ?) "
            f"WHERE key = ? AND etag = ? AND {_LIVE}"
        )
        # As daprd: deletes do not look at expiry.
        self._sql_delete = f"DELETE FROM {t} WHERE key = ?"
        self._sql_delete_etag = f"DELETE FROM {t} WHERE key = ? AND etag = ?"
        # The cleanup first claims the run in the metadata table, atomically and only if the
        # last run (by any process sharing the database) is older than the interval; this
        # is how several sidecars on one file avoid all cleaning at once.
        self._sql_claim_cleanup = (
            f"INSERT INTO {settings.metadata_table} (key, value) "
            f"VALUES ('{LAST_CLEANUP_KEY}', CURRENT_TIMESTAMP) "
            "ON CONFLICT (key) DO UPDATE SET value = CURRENT_TIMESTAMP "
            "WHERE (unixepoch(CURRENT_TIMESTAMP) - unixepoch(value)) * 1000 > ?"
        )
        self._sql_delete_expired = (
            f"DELETE FROM {t} "
            "WHERE expiration_time IS NOT NULL AND expiration_time < CURRENT_TIMESTAMP"
        )

        self._writer: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_conns: list[sqlite3.Connection] = []
        self._cleaner: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def init(self) -> None:
        try:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="daprforge-sqlite-write")
            self._write_conn = await self._call(self._writer, self._connect)
            await self._write(self._migrate)
            # A private in-memory database exists only on its one connection, so reads share
            # the writer's thread there.
            if not self.settings.in_memory:
                self._reader = ThreadPoolExecutor(
                    READ_CONNECTIONS, thread_name_prefix="daprforge-sqlite-read"
                )
                for _ in range(READ_CONNECTIONS):
                    self._read_conns.put(await self._call(self._reader, self._connect))
        except BaseException:
            await self.close()
            raise
        if self.settings.cleanup_interval > 0:
            self._cleaner = asyncio.get_running_loop().create_task(
                self._clean_forever(), name=f"daprforge-sqlite-cleanup-{self.settings.table}"
            )

    async def close(self) -> None:
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
            self._cleaner = None
        # Waiting for the threads blocks, so do it off the event loop.
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        for executor in (self._reader, self._writer):
            if executor is not None:
                executor.shutdown(wait=True)
        self._reader = self._writer = None
        # The writer goes last: closing the last connection checkpoints the WAL into the
        # database file and removes the -wal and -shm files.
        for conn in reversed(self._all_conns):
            conn.close()
        self._all_conns.clear()
        self._write_conn = None
        self._read_conns = queue.SimpleQueue()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- reads ----------------------------------------------------------------------------

    async def get(self, key: str) -> StateItem | None:
        row = await self._read(lambda conn: conn.execute(self._sql_get, (key,)).fetchone())
        if row is None:
            return None
        try:
            return _decode_item(*row)
        except ValueError as exc:
            raise StateStoreError(f"cannot decode the value of key {key!r}: {exc}") from exc

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetResult]:
        if not keys:
            return []
        rows = await self._read(lambda conn: self._bulk_select(conn, keys))
        found: dict[str, BulkGetResult] = {}
        for key, *columns in rows:
            try:
                found[key] = BulkGetResult(key, _decode_item(*columns))
            except ValueError as exc:
                found[key] = BulkGetResult(key, error=f"cannot decode the value: {exc}")
        return [found.get(key) or BulkGetResult(key) for key in keys]

    def _bulk_select(self, conn: sqlite3.Connection, keys: Sequence[str]) -> list[Any]:
        unique = list(dict.fromkeys(keys))
        rows: list[Any] = []
        for start in range(0, len(unique), BULK_GET_CHUNK):
            chunk = unique[start : start + BULK_GET_CHUNK]
            sql = self._sql_bulk_get.format(params=",".join("?" * len(chunk)))
            rows.extend(conn.execute(sql, chunk).fetchall())
        return rows

    async def query(self, query: Query) -> QueryResult:
        raise QueryError("state.sqlite does not support the query API")

    # -- writes ---------------------------------------------------------------------------

    async def set(self, request: SetRequest) -> None:
        await self._write(lambda conn: self._apply(conn, request))

    async def delete(self, request: DeleteRequest) -> None:
        await self._write(lambda conn: self._apply(conn, request))

    async def multi(self, operations: Sequence[Operation]) -> None:
        if not operations:
            return
        await self._write(lambda conn: self._transaction(conn, operations))

    def _transaction(self, conn: sqlite3.Connection, operations: Sequence[Operation]) -> None:
        if len(operations) == 1:  # as daprd: a single operation needs no transaction
            self._apply(conn, operations[0])
            return
        # IMMEDIATE takes the write lock up front, so another process cannot slip a write
        # between our reads of etags and our writes (and no lock upgrade can deadlock).
        conn.execute("BEGIN IMMEDIATE")
        try:
            for operation in operations:
                self._apply(conn, operation)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _apply(self, conn: sqlite3.Connection, operation: Operation) -> None:
        if isinstance(operation, DeleteRequest):
            # daprd ignores first-write on deletes here.
            if operation.etag:
                cursor = conn.execute(self._sql_delete_etag, (operation.key, operation.etag))
                if cursor.rowcount == 0:
                    raise ETagMismatchError(f"etag does not match for key {operation.key!r}")
            else:
                conn.execute(self._sql_delete, (operation.key,))
            return

        value, is_binary = _encode_value(operation.value)
        etag = str(uuid.uuid4())
        ttl = operation.ttl_seconds
        modifier = f"+{int(ttl)} seconds" if ttl is not None and ttl > 0 else None
        if operation.etag:
            cursor = conn.execute(
                self._sql_update_etag,
                (value, etag, is_binary, modifier, operation.key, operation.etag),
            )
            if cursor.rowcount == 0:
                raise ETagMismatchError(
                    f"etag does not match, or key {operation.key!r} is missing or expired"
                )
        elif operation.first_write:
            cursor = conn.execute(
                self._sql_insert_first,
                (operation.key, value, is_binary, etag, modifier, operation.key),
            )
            if cursor.rowcount == 0:
                raise ETagMismatchError(
                    f"first-write: key {operation.key!r} already exists and no etag was given"
                )
        else:
            conn.execute(self._sql_upsert, (operation.key, value, is_binary, etag, modifier))

    # -- expired rows ---------------------------------------------------------------------

    async def cleanup_expired(self) -> int:
        """Delete expired rows unless this or another process did so within the interval.

        Returns the number of rows deleted. With cleanups disabled it always runs.
        """
        claim_after_ms = int(self.settings.cleanup_interval * 1000) - 100  # daprd's margin

        def clean(conn: sqlite3.Connection) -> int:
            if conn.execute(self._sql_claim_cleanup, (claim_after_ms,)).rowcount == 0:
                return 0
            return conn.execute(self._sql_delete_expired).rowcount

        return await self._write(clean)

    async def _clean_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cleanup_interval)
            try:
                removed = await self.cleanup_expired()
            except StateStoreError:
                logger.exception("state.sqlite: removing expired rows failed")
            else:
                logger.debug("state.sqlite: removed %d expired rows", removed)

    # -- connections and threads ----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        s = self.settings
        # isolation_level=None: autocommit, so transactions are exactly our BEGIN/COMMIT.
        # timeout= is the busy timeout (the sqlite3 module's default would be 5 s).
        conn = sqlite3.connect(
            s.database,
            uri=True,
            timeout=s.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        self._all_conns.append(conn)
        for name, value in s.pragmas:
            conn.execute(f"PRAGMA {name}" if value is None else f"PRAGMA {name} = {value}")
        journal = "MEMORY" if s.in_memory else "WAL" if s.wal else "DELETE"
        conn.execute(f"PRAGMA journal_mode = {journal}")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Run daprd's migrations, under an exclusive lock in case another process races us."""
        meta = self.settings.metadata_table
        conn.execute("BEGIN EXCLUSIVE")
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {meta} "
                "(key text NOT NULL PRIMARY KEY, value text NOT NULL)"
            )
            row = conn.execute(
                f"SELECT value FROM {meta} WHERE key = '{MIGRATIONS_KEY}'"
            ).fetchone()
            level = _migration_level(row[0]) if row is not None else 0
            for number in range(level, len(_MIGRATIONS)):
                logger.debug("state.sqlite: performing migration %d", number + 1)
                conn.execute(_MIGRATIONS[number].format(table=self.settings.table))
                conn.execute(
                    f"REPLACE INTO {meta} (key, value) VALUES ('{MIGRATIONS_KEY}', ?)",
                    (str(number + 1),),
                )
            # daprd keeps one migration level per metadata table, not per state table, so a
            # second state table sharing the metadata table would never be created. Creating
            # it here is idempotent, and leaves a schema daprd itself would have made.
            conn.execute(_MIGRATIONS[0].format(table=self.settings.table))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None or self._write_conn is None:
            raise StateStoreError("state.sqlite store is not initialised")
        conn = self._write_conn
        return await self._call(self._writer, lambda: fn(conn))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:  # in-memory database: reads share the writer's connection
            return await self._write(fn)
        pool = self._read_conns

        def run() -> T:
            # The executor runs at most READ_CONNECTIONS of these at once, so a connection is
            # always free and get() never waits.
            conn = pool.get()
            try:
                return fn(conn)
            finally:
                pool.put(conn)

        return await self._call(self._reader, run)

    async def _call(self, executor: Executor, fn: Callable[[], T]) -> T:
        """Run ``fn`` on ``executor`` within the component's ``timeout``.

        On timeout the call is dropped if it has not started; one already running finishes
        in its thread (a transaction still commits or rolls back as a whole).
        """
        future = asyncio.get_running_loop().run_in_executor(executor, fn)
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await future
        except TimeoutError:
            raise StateStoreError(
                f"state.sqlite: operation timed out after {self.settings.timeout:g}s"
            ) from None
        except sqlite3.Error as exc:
            raise StateStoreError(f"state.sqlite: {exc}") from exc


def _migration_level(text: str) -> int:
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level < 0:
        raise StateStoreError(f"invalid migration level found in metadata table: {text!r}")
    return level


def _encode_value(value: bytes) -> tuple[str, bool]:
    """The ``value`` column is TEXT: UTF-8 text as is, anything else base64 with is_binary.

    Values from the HTTP API are JSON, hence text. daprd stores gRPC byte values as base64
    with is_binary set; both decode to the same bytes on either side.
    """
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), True


def _decode_item(value: bytes, is_binary: int, etag: str, expiration: str | None) -> StateItem:
    if is_binary:
        try:
            value = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64: {exc}") from exc
    return StateItem(value, etag, _parse_timestamp(expiration))


def _parse_timestamp(text: str | None) -> datetime | None:
    """Read a TIMESTAMP column: SQLite's ``YYYY-MM-DD HH:MM:SS`` in UTC, or any ISO form."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        logger.warning("state.sqlite: ignoring unreadable expiration_time %r", text)
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def create(config: ComponentConfig) -> StateStore:
    return SQLiteStore(parse_settings(config.metadata))
