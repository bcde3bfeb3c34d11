"""``state.postgresql`` v1: daprd's original PostgreSQL state store.

Table layout, value encoding and etags match components-contrib, so a table written here
is read by daprd and the other way round:

* ``value`` is ``jsonb``. Values saved as JSON are stored as that JSON with
  ``isbinary = false``; anything else is stored as a base64 JSON string with
  ``isbinary = true``, which is how daprd stores raw bytes saved over gRPC.
* The etag is the row's ``xmin`` (the id of the transaction that last wrote it), as a
  decimal string. An etag that is not a uint32 can never match: ``ETagInvalidError``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import sql

from daprforge.sidecar.components.metadata import ComponentConfig, ComponentConfigError
from daprforge.sidecar.state.base import (
    FEATURE_ETAG,
    FEATURE_KEYS_LIKE,
    FEATURE_QUERY_API,
    FEATURE_TRANSACTIONAL,
    FEATURE_TTL,
    BulkGetResult,
    ETagInvalidError,
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
    PostgresStore,
    TableName,
    add_row_id,
    create_table_tolerating_race,
    parse_settings,
    utc,
)
from daprforge.sidecar.state.postgres_query import compile_query

DEFAULT_TABLE = "state"
_MAX_XID = 2**32 - 1
_LIVE: LiteralString = "(expiredate IS NULL OR expiredate >= CURRENT_TIMESTAMP)"
_EXPIRES_AT = sql.SQL("CURRENT_TIMESTAMP + %(ttl)s::integer * interval '1 second'")
_ONLY_EXPIRED = sql.SQL(" WHERE (t.expiredate IS NOT NULL AND t.expiredate < CURRENT_TIMESTAMP)")


def create(config: ComponentConfig) -> StateStore:
    """Validate the component metadata and return an uninitialised store."""
    settings = parse_settings(config.metadata)
    table = TableName.parse("tableName", config.metadata.get("tableName") or DEFAULT_TABLE)
    if table == settings.metadata_table:
        raise ComponentConfigError("metadataTableName", "must differ from tableName")
    return PostgresV1Store(settings, table)


class PostgresV1Store(PostgresStore):
    features = frozenset(
        {FEATURE_ETAG, FEATURE_TRANSACTIONAL, FEATURE_TTL, FEATURE_KEYS_LIKE, FEATURE_QUERY_API}
    )
    migrations_key = "migrations"
    last_cleanup_key = "last-cleanup"
    expires_column = "expiredate"
    etag_match = sql.SQL("xmin = %s::xid")

    @staticmethod
    def parse_etag(etag: str) -> str:
        return _parse_etag(etag)

    def migrations(self) -> Sequence[Migration]:
        table = self.table

        async def create_table(conn: Connection) -> None:
            await create_table_tolerating_race(
                conn,
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " key text NOT NULL PRIMARY KEY,"
                    " value jsonb NOT NULL,"
                    " isbinary boolean NOT NULL,"
                    " insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),"
                    " updatedate TIMESTAMP WITH TIME ZONE NULL)"
                ).format(table.identifier),
            )

        async def add_expiredate(conn: Connection) -> None:
            await conn.execute(
                sql.SQL("ALTER TABLE {} ADD expiredate TIMESTAMP WITH TIME ZONE").format(
                    table.identifier
                )
            )

        async def add_row_id_column(conn: Connection) -> None:
            await add_row_id(conn, table, "insertdate")

        return (create_table, add_expiredate, add_row_id_column)

    async def get_with(self, conn: Connection, key: str) -> StateItem | None:
        cur = await conn.execute(
            sql.SQL(
                "SELECT value::text, isbinary, xmin::text, expiredate FROM {} "
                "WHERE key = %s AND " + _LIVE
            ).format(self.table.identifier),
            [key],
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return StateItem(_decode(row[0], row[1]), row[2], utc(row[3]))

    async def bulk_get_with(self, conn: Connection, keys: list[str]) -> list[BulkGetResult]:
        cur = await conn.execute(
            sql.SQL(
                "SELECT key, value::text, isbinary, xmin::text, expiredate FROM {} "
                "WHERE key = ANY(%s) AND " + _LIVE
            ).format(self.table.identifier),
            [keys],
        )
        results: list[BulkGetResult] = []
        found: set[str] = set()
        for key, text, is_binary, etag, expires in await cur.fetchall():
            found.add(key)
            try:
                item = StateItem(_decode(text, is_binary), etag, utc(expires))
            except StateStoreError as exc:
                results.append(BulkGetResult(key, error=str(exc)))
            else:
                results.append(BulkGetResult(key, item))
        # As daprd: found rows in database order, then every requested key not found.
        results.extend(BulkGetResult(key) for key in keys if key not in found)
        return results

    async def set_with(self, conn: Connection, request: SetRequest) -> None:
        value, is_binary = _encode(request.value)
        params: dict[str, Any] = {
            "key": request.key,
            "value": value,
            "isbinary": is_binary,
            "ttl": request.ttl_seconds,
        }
        if request.etag:
            params["etag"] = _parse_etag(request.etag)
            statement = sql.SQL(
                "UPDATE {t} SET value = %(value)s::jsonb, isbinary = %(isbinary)s,"
                " updatedate = CURRENT_TIMESTAMP, expiredate = {expires}"
                " WHERE key = %(key)s AND xmin = %(etag)s::xid"
                " AND (expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)"
            )
        else:
            # An upsert even for first-write: the row may exist but be expired and not yet
            # collected. With first-write only such an expired row may be overwritten.
            statement = sql.SQL(
                "INSERT INTO {t} AS t (key, value, isbinary, expiredate)"
                " VALUES (%(key)s, %(value)s::jsonb, %(isbinary)s, {expires})"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " isbinary = excluded.isbinary, updatedate = CURRENT_TIMESTAMP,"
                " expiredate = {expires}{only_expired}"
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
        compiled = compile_query(self.table.identifier, query)
        try:
            async with self.connection() as conn:
                cur = await conn.execute(compiled.statement, compiled.params)
                rows = await cur.fetchall()
        except QueryError:
            raise
        except StateStoreError as exc:
            # daprd reports every failure of a query as a query failure (ERR_STATE_QUERY).
            raise QueryError(str(exc)) from exc
        # Like daprd, a query returns the jsonb column as is, base64 strings included.
        items = [(key, StateItem(text.encode(), etag)) for key, text, etag in rows]
        return QueryResult(items, compiled.next_token(len(items)))


def _parse_etag(etag: str) -> str:
    # Go: strconv.ParseUint(etag, 10, 32). Digits only, no sign, no spaces.
    if not (etag.isascii() and etag.isdigit()) or int(etag) > _MAX_XID:
        raise ETagInvalidError(f"invalid etag value: {etag!r} is not a uint32")
    return str(int(etag))


def _encode(value: bytes) -> tuple[str, bool]:
    """The ``(jsonb text, isbinary)`` pair daprd would write for these bytes."""
    try:
        text = value.decode("utf-8")
        json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        # Not JSON (UnicodeDecodeError is a ValueError too): raw bytes, stored as base64.
        return json.dumps(base64.b64encode(value).decode("ascii")), True
    return text, False


def _decode(text: str, is_binary: bool) -> bytes:
    if not is_binary:
        return text.encode("utf-8")
    try:
        encoded = json.loads(text)
        if not isinstance(encoded, str):
            raise ValueError("not a JSON string")
        return base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise StateStoreError(f"failed to decode binary value: {exc}") from exc


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; jsonb would refuse them.
    raise ValueError(f"{name} is not valid JSON")
