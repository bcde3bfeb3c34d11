"""What the ``state.postgresql`` v1 and v2 stores share with each other and with daprd.

daprd and this sidecar must be able to open the same database one after the other, or
both at once. So everything here follows components-contrib: the metadata table
(``key text PRIMARY KEY, value text``), the migration level stored under one key of it,
migrations serialised by a row lock on the ``lock`` key (not advisory locks), and the
``last-cleanup`` row that lets several processes share one garbage-collection schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from daprforge.sidecar.components.metadata import ComponentConfigError, ComponentMetadata
from daprforge.sidecar.state.base import (
    BulkGetResult,
    DeleteRequest,
    ETagMismatchError,
    Operation,
    Query,
    QueryResult,
    SetRequest,
    StateItem,
    StateStoreError,
)

logger = logging.getLogger("daprforge.sidecar.state.postgres")

Connection = AsyncConnection[TupleRow]
Migration = Callable[[Connection], Awaitable[None]]

DEFAULT_METADATA_TABLE = "dapr_metadata"
DEFAULT_TIMEOUT = 20.0
DEFAULT_CLEANUP_INTERVAL = 3600.0
# Deleting a large backlog of expired rows may take long; daprd allows it ten minutes.
CLEANUP_TIMEOUT = 600.0
# pgx's pool defaults, which daprd uses unless maxConns / connectionMaxIdleTime are set.
_PGX_MAX_IDLE = 30 * 60.0
_QUERY_EXEC_MODES = (
    "cache_statement",
    "cache_describe",
    "describe_exec",
    "exec",
    "simple_protocol",
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1; longer names are silently truncated by Postgres
_GO_ATOI = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class TableName:
    """A table name as daprd writes it into its SQL: ``table`` or ``schema.table``.

    daprd splices the configured name into SQL unquoted, so Postgres folds it to lower
    case. We accept only plain identifiers, fold them the same way and then always quote
    them: the same table as daprd's, with no way to smuggle SQL in through metadata.
    """

    schema: str | None
    name: str

    @classmethod
    def parse(cls, field: str, value: str) -> TableName:
        parts = value.split(".")
        if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
            raise ComponentConfigError(
                field,
                f"must be a table name such as 'state' or 'schema.state' (letters, digits "
                f"and underscores, not starting with a digit), not {value!r}",
            )
        if any(len(part) > _MAX_IDENTIFIER_BYTES for part in parts):
            raise ComponentConfigError(
                field, f"each part must be at most {_MAX_IDENTIFIER_BYTES} characters"
            )
        folded = [part.lower() for part in parts]
        return cls(folded[0], folded[1]) if len(folded) == 2 else cls(None, folded[0])

    @property
    def identifier(self) -> sql.Identifier:
        if self.schema is None:
            return sql.Identifier(self.name)
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """The metadata fields both versions share, validated."""

    conninfo: str
    metadata_table: TableName
    timeout: float
    cleanup_interval: float | None
    """Seconds between garbage collections; ``None`` when disabled."""
    max_conns: int
    max_idle: float
    prepare: bool
    """Whether to use server-side prepared statements (off for ``exec``/``simple_protocol``)."""


def parse_settings(metadata: ComponentMetadata) -> PostgresSettings:
    """Validate the shared fields without touching the network."""
    conninfo = metadata.require("connectionString", "url")
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        # libpq's message never contains the password, only the offending part.
        raise ComponentConfigError("connectionString", f"is not valid: {exc}") from None

    for flag in ("useAzureAD", "useAWSIAM"):
        if metadata.boolean(flag):
            raise ComponentConfigError(flag, "is not supported by the daprforge sidecar")

    timeout = metadata.duration("timeout", "timeoutInSeconds", default=DEFAULT_TIMEOUT)
    if timeout < 1:
        raise ComponentConfigError("timeout", "must be at least 1s")

    # daprd: "0", a negative value or any non-positive duration disables the collector.
    interval = metadata.duration(
        "cleanupInterval", "cleanupIntervalInSeconds", default=DEFAULT_CLEANUP_INTERVAL
    )

    # daprd only honours maxConns above 1; otherwise pgx picks max(4, number of CPUs).
    max_conns = metadata.integer("maxConns", 0)
    if max_conns <= 1:
        max_conns = max(4, os.cpu_count() or 1)

    max_idle = metadata.duration("connectionMaxIdleTime", default=0.0)

    mode = metadata.get("queryExecMode", "")
    if mode and mode not in _QUERY_EXEC_MODES:
        raise ComponentConfigError(
            "queryExecMode", f"must be one of {', '.join(_QUERY_EXEC_MODES)}, not {mode!r}"
        )

    return PostgresSettings(
        conninfo=conninfo,
        metadata_table=TableName.parse(
            "metadataTableName", metadata.get("metadataTableName") or DEFAULT_METADATA_TABLE
        ),
        timeout=timeout,
        cleanup_interval=interval if interval > 0 else None,
        max_conns=max_conns,
        max_idle=max_idle if max_idle > 0 else _PGX_MAX_IDLE,
        prepare=mode not in ("exec", "simple_protocol"),
    )


def utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


# --- Migrations ---------------------------------------------------------------------------


async def migrate(
    conn: Connection, metadata_table: TableName, key: str, migrations: Sequence[Migration]
) -> None:
    """Bring the schema to ``len(migrations)``, recording the level under ``key``.

    ``conn`` must be in autocommit mode. The migrations run inside the transaction that
    holds the lock, so they commit (or roll back) together with the new level. A daprd
    waiting on the same lock reads the level only after acquiring it, so it sees ours.
    """
    meta = metadata_table.identifier
    await _ensure_metadata_table(conn, metadata_table)
    # Outside a transaction, as daprd does: the row must exist, and be visible to every
    # process, before anyone can lock it.
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (key, value) VALUES ('lock', 'lock') ON CONFLICT (key) DO NOTHING"
        ).format(meta)
    )
    async with conn.transaction():
        # Waiting for another process's migration is fine; waiting forever is not.
        await conn.execute("SET LOCAL lock_timeout = '60s'")
        await conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'lock' FOR UPDATE").format(meta)
        )
        cur = await conn.execute(sql.SQL("SELECT value FROM {} WHERE key = %s").format(meta), [key])
        row = await cur.fetchone()
        level = 0
        if row is not None:
            text = str(row[0])
            if not _GO_ATOI.fullmatch(text) or int(text) < 0:
                raise StateStoreError(f"invalid migration level found in metadata table: {text}")
            level = int(text)
        for index in range(level, len(migrations)):
            logger.debug("Performing migration %d on %s (%s)", index + 1, metadata_table, key)
            await migrations[index](conn)
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ).format(meta),
                [key, str(index + 1)],
            )


# Two sessions running CREATE TABLE IF NOT EXISTS at once can still collide in the catalog:
# PostgreSQL reports either the unique index (pg_type_typname_nsp_index) or "type ...
# already exists", depending on timing. Either way the table exists afterwards.
_CATALOG_RACE = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateObject,
    psycopg.errors.DuplicateTable,
)


async def _ensure_metadata_table(conn: Connection, table: TableName) -> None:
    statement = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (key text NOT NULL PRIMARY KEY, value text NOT NULL)"
    ).format(table.identifier)
    # The loser of the catalog race retries, as daprd does.
    for attempt in range(3):
        try:
            await conn.execute(statement)
            return
        except _CATALOG_RACE:
            if attempt == 2:
                raise
            await asyncio.sleep(0.05)


async def create_table_tolerating_race(conn: Connection, statement: sql.Composed) -> None:
    """Run a CREATE TABLE IF NOT EXISTS, ignoring the catalog race described above.

    A savepoint keeps the migration transaction usable if the race is lost.
    """
    try:
        async with conn.transaction():
            await conn.execute(statement)
    except _CATALOG_RACE:
        logger.debug("Ignoring a concurrent creation of the same state table")


async def add_row_id(conn: Connection, table: TableName, created_column: str) -> None:
    """The ``row_id`` migration: a unique identity column, numbered by age for old rows.

    Same steps as components-contrib's migration, so the result (column, sequence
    position, index ``<table>_row_id_uidx``) is the one daprd would produce.
    """
    cur = await conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        [str(table)],
    )
    found = await cur.fetchone()
    if found is None:
        raise StateStoreError(f"table {table} not found")
    schema, relname = str(found[0]), str(found[1])
    target = sql.Identifier(schema, relname)

    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attname = 'row_id' AND NOT attisdropped)",
        [str(table)],
    )
    has_column = await cur.fetchone()
    if not (has_column and has_column[0]):
        await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN row_id BIGINT").format(target))

    await conn.execute(
        sql.SQL(
            "WITH ranked AS ("
            " SELECT key, ROW_NUMBER() OVER (ORDER BY {created} ASC, key ASC) AS rn"
            " FROM {t} WHERE row_id IS NULL)"
            " UPDATE {t} AS t SET row_id = r.rn FROM ranked r WHERE r.key = t.key"
        ).format(created=sql.Identifier(created_column), t=target)
    )
    await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN row_id SET NOT NULL").format(target))

    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s AND column_name = 'row_id' AND is_identity = 'YES')",
        [schema, relname],
    )
    is_identity = await cur.fetchone()
    if not (is_identity and is_identity[0]):
        await conn.execute(
            sql.SQL(
                "ALTER TABLE {} ALTER COLUMN row_id ADD GENERATED BY DEFAULT AS IDENTITY"
            ).format(target)
        )

    cur = await conn.execute(
        "SELECT pg_get_serial_sequence(%s, 'row_id')",
        [sql.Identifier(schema, relname).as_string(conn)],
    )
    sequence = await cur.fetchone()
    if sequence and sequence[0]:
        await conn.execute(
            sql.SQL(
                "SELECT setval(%s, COALESCE((SELECT MAX(row_id) FROM {}), 0) + 1, false)"
            ).format(target),
            [sequence[0]],
        )

    await conn.execute(
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (row_id)").format(
            sql.Identifier(relname + "_row_id_uidx"), target
        )
    )


# --- The store skeleton ---------------------------------------------------------------------


class PostgresStore:
    """Connection handling, migrations and garbage collection for both versions.

    Subclasses provide the SQL: their migrations, how to set, delete and read rows.
    """

    features: frozenset[str]

    def __init__(self, settings: PostgresSettings, state_table: TableName) -> None:
        self._settings = settings
        self._table = state_table
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._cleanup_task: asyncio.Task[None] | None = None

    # What subclasses provide.

    migrations_key: str
    """Key of the migration level in the metadata table."""
    last_cleanup_key: str
    """Key of the last garbage-collection time in the metadata table."""
    expires_column: str
    """Name of the expiry column, for the garbage collector."""
    etag_match: sql.SQL
    """The condition that a row carries the etag given as the second parameter."""

    @staticmethod
    def parse_etag(etag: str) -> str:
        """The etag as the database compares it; raises on one the store cannot accept."""
        raise NotImplementedError

    def migrations(self) -> Sequence[Migration]:
        raise NotImplementedError

    async def get_with(self, conn: Connection, key: str) -> StateItem | None:
        raise NotImplementedError

    async def bulk_get_with(self, conn: Connection, keys: list[str]) -> list[BulkGetResult]:
        raise NotImplementedError

    async def set_with(self, conn: Connection, request: SetRequest) -> None:
        raise NotImplementedError

    async def delete_with(self, conn: Connection, request: DeleteRequest) -> None:
        if not request.etag:
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE key = %s").format(self.table.identifier),
                [request.key],
            )
            return
        cur = await conn.execute(
            sql.SQL("DELETE FROM {} WHERE key = %s AND {}").format(
                self.table.identifier, self.etag_match
            ),
            [request.key, self.parse_etag(request.etag)],
        )
        if cur.rowcount != 1:
            raise ETagMismatchError("possible etag mismatch")

    # The StateStore protocol.

    @property
    def table(self) -> TableName:
        return self._table

    @property
    def settings(self) -> PostgresSettings:
        return self._settings

    async def init(self) -> None:
        if self._pool is not None:
            raise StateStoreError("the store is already initialised")
        settings = self._settings
        kwargs = self._connection_kwargs()
        # A direct connection first: its errors are specific ("password authentication
        # failed"), where a pool would only report that it timed out.
        try:
            async with asyncio.timeout(settings.timeout):
                conn = await AsyncConnection.connect(settings.conninfo, **kwargs)
        except (TimeoutError, psycopg.Error) as exc:
            raise StateStoreError(f"failed to connect to the database: {_describe(exc)}") from exc
        try:
            await migrate(conn, settings.metadata_table, self.migrations_key, self.migrations())
        except psycopg.Error as exc:
            raise StateStoreError(f"failed to migrate the database: {exc}") from exc
        finally:
            await conn.close()

        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            settings.conninfo,
            kwargs=kwargs,
            min_size=1,
            max_size=settings.max_conns,
            max_idle=settings.max_idle,
            timeout=settings.timeout,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=settings.timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise StateStoreError(f"failed to connect to the database: {exc}") from exc
        self._pool = pool

        if settings.cleanup_interval is not None:
            self._cleanup_task = asyncio.create_task(
                self._cleanup_loop(settings.cleanup_interval),
                name=f"postgres-cleanup-{self._table}",
            )

    async def close(self) -> None:
        task, self._cleanup_task = self._cleanup_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.execute("SELECT 1")

    async def get(self, key: str) -> StateItem | None:
        async with self.connection() as conn:
            return await self.get_with(conn, key)

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetResult]:
        if not keys:
            return []
        async with self.connection() as conn:
            return await self.bulk_get_with(conn, list(keys))

    async def set(self, request: SetRequest) -> None:
        async with self.connection() as conn:
            await self.set_with(conn, request)

    async def delete(self, request: DeleteRequest) -> None:
        async with self.connection() as conn:
            await self.delete_with(conn, request)

    async def multi(self, operations: Sequence[Operation]) -> None:
        if not operations:
            return
        async with self.connection() as conn:
            if len(operations) == 1:
                # daprd skips the transaction for a single operation too.
                await self._apply(conn, operations[0])
                return
            async with conn.transaction():
                for operation in operations:
                    await self._apply(conn, operation)

    async def query(self, query: Query) -> QueryResult:
        raise NotImplementedError

    async def cleanup_expired(self) -> int | None:
        """Delete expired rows, unless any process did so less than an interval ago.

        Returns how many rows were removed, or ``None`` when the run was skipped (too soon,
        or garbage collection is disabled). Public so that tests and tools can force a run.
        """
        interval = self._settings.cleanup_interval
        if interval is None:
            return None
        meta = self._settings.metadata_table.identifier
        async with self.connection(time_limit=CLEANUP_TIMEOUT) as conn:
            # Atomic check-and-set of the last run time, shared with every daprd and
            # sidecar using this metadata table; 100ms of slack as in daprd.
            claimed = await conn.execute(
                sql.SQL(
                    "INSERT INTO {meta} AS m (key, value) VALUES (%s, now()::text) "
                    "ON CONFLICT (key) DO UPDATE SET value = now()::text "
                    "WHERE (EXTRACT('epoch' FROM now() - m.value::timestamp with time zone)"
                    " * 1000)::bigint > %s"
                ).format(meta=meta),
                [self.last_cleanup_key, int(interval * 1000) - 100],
            )
            if claimed.rowcount == 0:
                return None
            deleted = await conn.execute(
                sql.SQL("DELETE FROM {t} WHERE {c} IS NOT NULL AND {c} < now()").format(
                    t=self._table.identifier, c=sql.Identifier(self.expires_column)
                )
            )
            return max(deleted.rowcount, 0)

    # Helpers for subclasses.

    @contextlib.asynccontextmanager
    async def connection(self, *, time_limit: float | None = None) -> AsyncIterator[Connection]:
        """A pooled autocommit connection; the whole block must finish within the timeout.

        Database and timeout errors come out as :class:`StateStoreError`.
        """
        pool = self._pool
        if pool is None:
            raise StateStoreError("the state store is not initialised")
        limit = self._settings.timeout if time_limit is None else time_limit
        try:
            async with asyncio.timeout(limit), pool.connection() as conn:
                yield conn
        except TimeoutError as exc:
            raise StateStoreError(f"the database did not answer within {limit:g}s") from exc
        except psycopg.Error as exc:
            raise StateStoreError(str(exc)) from exc

    # Internals.

    def _connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self._settings.prepare:
            kwargs["prepare_threshold"] = None
        return kwargs

    async def _apply(self, conn: Connection, operation: Operation) -> None:
        if isinstance(operation, SetRequest):
            await self.set_with(conn, operation)
        else:
            await self.delete_with(conn, operation)

    async def _cleanup_loop(self, interval: float) -> None:
        # Like daprd's ticker: the first run is one interval after start-up.
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.cleanup_expired()
            except Exception:
                # Keep the schedule alive: the next run may well succeed.
                logger.exception("Error removing expired data from %s", self._table)
            else:
                if removed:
                    logger.info("Removed %d expired rows from %s", removed, self._table)


def _describe(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else str(exc)
