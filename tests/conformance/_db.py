"""Direct database access for checks that the data layout matches Dapr's (§7.2-7.4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from ._support import POSTGRES_URL


def sqlite_query(path: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def sqlite_execute(path: str, sql: str, params: Iterable[Any] = ()) -> None:
    conn = sqlite3.connect(path, timeout=5)
    try:
        with conn:
            conn.execute(sql, tuple(params))
    finally:
        conn.close()


def pg_query(sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, tuple(params))  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def stored_keys(kind: str, backend: Mapping[str, str], keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` (full, prefixed keys) exist as rows of the store's table."""
    wanted = list(keys)
    table = backend["table"]
    if kind == "sqlite":
        marks = ",".join("?" * len(wanted))
        rows = sqlite_query(
            backend["sqlite_path"], f'SELECT key FROM "{table}" WHERE key IN ({marks})', wanted
        )
    else:
        rows = pg_query(f'SELECT key FROM "{table}" WHERE key = ANY(%s)', [wanted])
    return {r[0] for r in rows}


def table_columns(kind: str, backend: Mapping[str, str], table: str) -> set[str]:
    if kind == "sqlite":
        rows = sqlite_query(backend["sqlite_path"], f'PRAGMA table_info("{table}")')
        return {r[1] for r in rows}
    rows = pg_query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table]
    )
    return {r[0] for r in rows}
