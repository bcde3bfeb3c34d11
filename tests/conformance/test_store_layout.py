"""Dapr's table layouts, so data survives a switch between daprforge and daprd: reference §7.2
(postgresql v1: jsonb value, isbinary, xmin etag, expiredate, metadata table), §7.3 (v2: bytea
value, uuid etag, expires_at), §7.4 (sqlite: TEXT value, is_binary, uuid etag, expiration_time),
§1.3 (stored key `<appid>||<key>`), §1.5 interop note (binary values saved over gRPC)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from ._db import pg_query, sqlite_execute, sqlite_query, table_columns
from ._support import Sidecar, assert_legacy_error, describe, new_key

pytestmark = pytest.mark.own_process

COLUMNS = {
    "sqlite": {"key", "value", "is_binary", "etag", "expiration_time", "update_time"},
    "postgresql-v1": {"key", "value", "isbinary", "insertdate", "updatedate", "expiredate"},
    "postgresql-v2": {"key", "value", "etag", "created_at", "updated_at", "expires_at"},
}


def persistent(sidecar: Sidecar) -> None:
    if sidecar.kind not in COLUMNS:
        pytest.skip("no database behind this store")


def read_row(sidecar: Sidecar, full_key: str) -> tuple[object, bool, str, object] | None:
    """(json value, is_binary, etag, expiry) of the stored row."""
    table = sidecar.backend["table"]
    if sidecar.kind == "sqlite":
        rows = sqlite_query(
            sidecar.backend["sqlite_path"],
            f'SELECT value, is_binary, etag, expiration_time FROM "{table}" WHERE key = ?',
            [full_key],
        )
        return None if not rows else (json.loads(rows[0][0]), bool(rows[0][1]), *rows[0][2:])
    if sidecar.kind == "postgresql-v1":
        sql = f'SELECT value::text, isbinary, xmin::text, expiredate FROM "{table}" WHERE key = %s'
        rows = pg_query(sql, [full_key])
        return None if not rows else (json.loads(rows[0][0]), rows[0][1], rows[0][2], rows[0][3])
    sql = (
        f"SELECT convert_from(value, 'UTF8'), false, etag::text, expires_at"
        f' FROM "{table}" WHERE key = %s'
    )
    rows = pg_query(sql, [full_key])
    return None if not rows else (json.loads(rows[0][0]), rows[0][1], rows[0][2], rows[0][3])


async def test_table_columns(sidecar: Sidecar) -> None:
    persistent(sidecar)
    await sidecar.save_ok(new_key(), 1)
    columns = table_columns(sidecar.kind, sidecar.backend, sidecar.backend["table"])
    assert COLUMNS[sidecar.kind] <= columns, columns


async def test_metadata_table_tracks_migrations(sidecar: Sidecar) -> None:
    persistent(sidecar)
    if sidecar.kind == "sqlite":
        rows = sqlite_query(
            sidecar.backend["sqlite_path"],
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'metadata'",
        )
        assert rows == [("metadata",)]
        return
    meta_table = sidecar.backend["meta_table"]
    assert {"key", "value"} <= table_columns(sidecar.kind, sidecar.backend, meta_table)
    keys = {r[0] for r in pg_query(f'SELECT key FROM "{meta_table}"')}
    expected = "migrations" if sidecar.kind == "postgresql-v1" else "migrations-state-v2-"
    assert any(k.startswith(expected) for k in keys), keys


async def test_saved_row_layout(sidecar: Sidecar) -> None:
    persistent(sidecar)
    key = new_key()
    value = {"name": "row", "n": [1, 2]}
    await sidecar.save_ok(key, value)
    etag = await sidecar.get_etag(key)
    row = read_row(sidecar, f"{sidecar.app_id}||{key}")
    assert row is not None, "row not stored under <appid>||<key>"
    stored, is_binary, stored_etag, expiry = row
    assert stored == value
    assert is_binary is False
    assert stored_etag == etag
    assert expiry is None
    assert read_row(sidecar, key) is None


async def test_ttl_column(sidecar: Sidecar) -> None:
    persistent(sidecar)
    key = new_key()
    full = f"{sidecar.app_id}||{key}"
    await sidecar.save_ok(key, 1, metadata={"ttlInSeconds": "100"})
    row = read_row(sidecar, full)
    assert row is not None
    assert row[3] is not None, row
    await sidecar.save_ok(key, 2)
    row = read_row(sidecar, full)
    assert row is not None
    assert row[3] is None, row


async def test_row_written_by_dapr_is_readable(sidecar: Sidecar) -> None:
    persistent(sidecar)
    key = new_key()
    full = f"{sidecar.app_id}||{key}"
    table = sidecar.backend["table"]
    value = {"written": "directly", "list": [1, "a"]}
    if sidecar.kind == "sqlite":
        etag = str(uuid.uuid4())
        sqlite_execute(
            sidecar.backend["sqlite_path"],
            f'INSERT INTO "{table}" (key, value, is_binary, etag, update_time)'
            " VALUES (?, ?, 0, ?, CURRENT_TIMESTAMP)",
            [full, json.dumps(value), etag],
        )
    elif sidecar.kind == "postgresql-v1":
        pg_query(
            f'INSERT INTO "{table}" (key, value, isbinary) VALUES (%s, %s::jsonb, false)',
            [full, json.dumps(value)],
        )
        etag = pg_query(f'SELECT xmin::text FROM "{table}" WHERE key = %s', [full])[0][0]
    else:
        etag = pg_query(
            f"INSERT INTO \"{table}\" (key, value) VALUES (%s, convert_to(%s, 'UTF8'))"
            " RETURNING etag::text",
            [full, json.dumps(value)],
        )[0][0]
    resp = await sidecar.get(key)
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == value
    assert resp.headers.get("etag") == etag
    bulk = (await sidecar.bulk({"keys": [key]})).json()
    assert bulk[0]["data"] == value
    # and it can be updated with that etag
    assert (await sidecar.save([{"key": key, "value": 2, "etag": etag}])).status_code == 204


async def test_binary_row_saved_over_grpc_is_returned_raw(sidecar: Sidecar) -> None:
    persistent(sidecar)
    key = new_key()
    full = f"{sidecar.app_id}||{key}"
    table = sidecar.backend["table"]
    raw = b"hello \x00\xff binary"
    encoded = base64.b64encode(raw).decode()
    if sidecar.kind == "sqlite":
        sqlite_execute(
            sidecar.backend["sqlite_path"],
            f'INSERT INTO "{table}" (key, value, is_binary, etag, update_time)'
            " VALUES (?, ?, 1, ?, CURRENT_TIMESTAMP)",
            [full, encoded, str(uuid.uuid4())],
        )
    elif sidecar.kind == "postgresql-v1":
        pg_query(
            f'INSERT INTO "{table}" (key, value, isbinary) VALUES (%s, %s::jsonb, true)',
            [full, json.dumps(encoded)],
        )
    else:
        pg_query(f'INSERT INTO "{table}" (key, value) VALUES (%s, %s)', [full, raw])
    resp = await sidecar.get(key)
    assert resp.status_code == 200, describe(resp)
    assert resp.content == raw


async def test_unreadable_row_is_a_store_error(sidecar: Sidecar) -> None:
    """A row the store cannot decode: GET -> 500 ERR_STATE_GET (§1.5); bulk get reports it per
    key as ``{"key", "error"}`` (§1.6)."""
    if sidecar.kind not in ("sqlite", "postgresql-v1"):
        pytest.skip("only stores with a binary flag can hold an undecodable row")
    key = new_key()
    full = f"{sidecar.app_id}||{key}"
    table = sidecar.backend["table"]
    if sidecar.kind == "sqlite":
        sqlite_execute(
            sidecar.backend["sqlite_path"],
            f'INSERT INTO "{table}" (key, value, is_binary, etag, update_time)'
            " VALUES (?, '%%% not base64 %%%', 1, ?, CURRENT_TIMESTAMP)",
            [full, str(uuid.uuid4())],
        )
    else:
        pg_query(
            f"INSERT INTO \"{table}\" (key, value, isbinary) VALUES (%s, '123'::jsonb, true)",
            [full],
        )
    resp = await sidecar.get(key)
    body = assert_legacy_error(resp, 500, "ERR_STATE_GET")
    assert body["message"].startswith(f"fail to get {key} from state store {sidecar.store}: ")
    ok = new_key()
    await sidecar.save_ok(ok, "fine")
    bulk = await sidecar.bulk({"keys": [key, ok]})
    assert bulk.status_code == 200, describe(bulk)
    items = {item["key"]: item for item in bulk.json()}
    assert set(items[key]) == {"key", "error"}, items
    assert items[key]["error"]
    assert items[ok]["data"] == "fine"
