"""``state.postgresql`` v2: values in ``bytea``, random UUID etags.

Table layout, bookkeeping keys and etags match components-contrib, so a table written here
is read by daprd and the other way round:

* The table is ``<tablePrefix>state``; its migration level is stored under
  ``migrations-state-v2-<tablePrefix>`` and its last garbage collection under
  ``last-cleanup-state-v2-<tablePrefix>``, with the prefix exactly as configured.
* ``value`` holds the saved bytes unchanged (JSON text for values saved over HTTP).
* The etag is a UUID that every write replaces. An etag that is not a UUID can never
  match, and daprd reports it as a mismatch, not as an invalid etag.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import sql

from daprforge.sidecar.components.metadata import ComponentConfig, ComponentConfigError
from daprforge.sidecar.state.base import (
    FEATURE_ETAG,
    FEATURE_KEYS_LIKE,
    FEATURE_TRANSACTIONAL,
    FEATURE_TTL,
    BulkGetResult,
    ETagMismatchError,
    Query,
    QueryError,
    QueryResult,
    SetRequest,
    StateItem,
    StateStore,
    StateStoreError,
)
from daprforge.sidecar.state.postgres_common import (
    Connection,
    Migration,
    PostgresSettings,
    PostgresStore,
    TableName,
    add_row_id,
    create_table_tolerating_race,
    parse_settings,
    utc,
)

_LIVE: LiteralString = "(expires_at IS NULL OR expires_at >= now())"
_EXPIRES_AT = sql.SQL("now() + %(ttl)s::integer * interval '1 second'")
_ONLY_EXPIRED = sql.SQL(" WHERE (t.expires_at IS NOT NULL AND t.expires_at < now())")
_DASHED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_BARE = re.compile(r"[0-9a-fA-F]{32}")


def create(config: ComponentConfig) -> StateStore:
    """Validate the component metadata and return an uninitialised store."""
    settings = parse_settings(config.metadata)
    prefix = config.metadata.get("tablePrefix", "")
    # The prefix may name a schema ("myschema.app_"), so the whole name is validated.
    table = TableName.parse("tablePrefix", prefix + "state")
    if table == settings.metadata_table:
        raise ComponentConfigError("metadataTableName", "must differ from the state table")
    return PostgresV2Store(settings, table, prefix)


class PostgresV2Store(PostgresStore):
    features = frozenset({FEATURE_ETAG, FEATURE_TRANSACTIONAL, FEATURE_TTL, FEATURE_KEYS_LIKE})
    expires_column = "expires_at"
    etag_match = sql.SQL("etag = %s::uuid")

    @staticmethod
    def parse_etag(etag: str) -> str:
        return _parse_etag(etag)

    def __init__(self, settings: PostgresSettings, table: TableName, prefix: str) -> None:
        super().__init__(settings, table)
        # daprd uses the prefix as configured (not case-folded) in its bookkeeping keys.
        self.migrations_key = "migrations-state-v2-" + prefix
        self.last_cleanup_key = "last-cleanup-state-v2-" + prefix

    def migrations(self) -> Sequence[Migration]:
        table = self.table

        async def create_table(conn: Connection) -> None:
            await create_table_tolerating_race(
                conn,
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {t} ("
                    " key text NOT NULL PRIMARY KEY,"
                    " value bytea NOT NULL,"
                    " etag uuid NOT NULL DEFAULT gen_random_uuid(),"
                    " created_at timestamp with time zone NOT NULL DEFAULT now(),"
                    " updated_at timestamp with time zone,"
                    " expires_at timestamp with time zone)"
                ).format(t=table.identifier),
            )
            # Unnamed as in daprd, so Postgres picks the same name: <table>_expires_at_idx.
            await conn.execute(sql.SQL("CREATE INDEX ON {} (expires_at)").format(table.identifier))

        async def add_row_id_column(conn: Connection) -> None:
            await add_row_id(conn, table, "created_at")

        return (create_table, add_row_id_column)

    async def get_with(self, conn: Connection, key: str) -> StateItem | None:
        cur = await conn.execute(
            sql.SQL(
                "SELECT value, etag::text, expires_at FROM {} WHERE key = %s AND " + _LIVE
            ).format(self.table.identifier),
            [key],
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return StateItem(bytes(row[0]), row[1], utc(row[2]))

    async def bulk_get_with(self, conn: Connection, keys: list[str]) -> list[BulkGetResult]:
        cur = await conn.execute(
            sql.SQL(
                "SELECT key, value, etag::text, expires_at FROM {} WHERE key = ANY(%s) AND " + _LIVE
            ).format(self.table.identifier),
            [keys],
        )
        results = [
            BulkGetResult(key, StateItem(bytes(value), etag, utc(expires)))
            for key, value, etag, expires in await cur.fetchall()
        ]
        # As daprd: found rows in database order, then every requested key not found.
        found = {result.key for result in results}
        results.extend(BulkGetResult(key) for key in keys if key not in found)
        return results

    async def set_with(self, conn: Connection, request: SetRequest) -> None:
        params: dict[str, Any] = {
            "key": request.key,
            "value": request.value,
            "ttl": request.ttl_seconds,
        }
        if request.etag:
            params["etag"] = _parse_etag(request.etag)
            statement = sql.SQL(
                "UPDATE {t} SET value = %(value)s, updated_at = now(),"
                " etag = gen_random_uuid(), expires_at = {expires}"
                " WHERE key = %(key)s AND etag = %(etag)s::uuid"
                " AND (expires_at IS NULL OR expires_at >= now())"
            )
        else:
            # An upsert even for first-write: the row may exist but be expired and not yet
            # collected. With first-write only such an expired row may be overwritten.
            statement = sql.SQL(
                "INSERT INTO {t} AS t (key, value, etag, expires_at)"
                " VALUES (%(key)s, %(value)s, gen_random_uuid(), {expires})"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now(),"
                " etag = gen_random_uuid(), expires_at = {expires}{only_expired}"
            )
        cur = await conn.execute(
            statement.format(
                t=self.table.identifier,
                expires=_EXPIRES_AT if request.ttl_seconds else sql.SQL("NULL"),
                only_expired=_ONLY_EXPIRED if request.first_write else sql.SQL(""),
            ),
            params,
        )
        if cur.rowcount != 1:
            if request.etag:
                raise ETagMismatchError("possible etag mismatch")
            raise StateStoreError("no item was updated")

    async def query(self, query: Query) -> QueryResult:
        raise QueryError("state.postgresql v2 does not support the query API")


def _parse_etag(etag: str) -> str:
    """The canonical form of ``etag``; anything uuid.Parse rejects is a mismatch in daprd."""
    # github.com/google/uuid accepts four shapes: dashed, {dashed}, urn:uuid:dashed, bare hex.
    body = etag
    if len(etag) == 45 and etag[:9].lower() == "urn:uuid:":
        body = etag[9:]
    elif len(etag) == 38 and etag[0] == "{" and etag[-1] == "}":
        body = etag[1:-1]
    if _DASHED.fullmatch(body) or _BARE.fullmatch(etag):
        return str(uuid.UUID(body))
    raise ETagMismatchError(f"possible etag mismatch: {etag!r} is not a UUID")
