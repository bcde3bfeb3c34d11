"""Finding other sidecars on this machine: Dapr's SQLite name resolver.

Every sidecar registers ``app id → internal address`` in a shared SQLite file and renews
the row while it runs; a lookup picks a random fresh row. The table layout and the
Configuration keys follow Dapr's ``nameresolution.sqlite`` component. With no
configuration, every sidecar using the same data folder shares one file, which gives what
Dapr's default mDNS resolver gives: sidecars started separately find each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daprforge.sidecar.components.metadata import ComponentMetadata, parse_duration

log = logging.getLogger("daprforge.sidecar.nameresolution")

_TABLE = re.compile(r"^[A-Za-z0-9_]+$")


class NameResolutionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    path: Path
    table: str = "hosts"
    update_interval: float = 5.0
    timeout: float = 1.0

    @classmethod
    def from_configuration(cls, configuration: dict[str, Any]) -> ResolverSettings:
        """``spec.nameResolution.configuration`` of a Dapr Configuration (sqlite resolver)."""
        metadata = ComponentMetadata({k: str(v) for k, v in configuration.items()})
        path = metadata.first("connectionString")
        if not path:
            raise NameResolutionError("nameResolution.configuration.connectionString is required")
        table = metadata.get("tableName") or "hosts"
        if not _TABLE.match(table):
            raise NameResolutionError("nameResolution tableName may use only A-Z, a-z, 0-9, _")
        try:
            interval = parse_duration(metadata.get("updateInterval") or "5s")
            timeout = parse_duration(metadata.get("timeout") or "1s")
        except ValueError as exc:
            raise NameResolutionError(f"nameResolution: {exc}") from None
        if timeout >= interval:
            raise NameResolutionError("nameResolution timeout must be less than updateInterval")
        return cls(Path(path.removeprefix("file:").split("?", 1)[0]), table, interval, timeout)


class SQLiteResolver:
    def __init__(self, settings: ResolverSettings) -> None:
        self.settings = settings
        self.registration_id = str(uuid.uuid4())
        self.address: str | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._connection: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.settings.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.settings.path, timeout=self.settings.timeout, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            table = self.settings.table
            connection.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    registration_id TEXT NOT NULL PRIMARY KEY,
                    address TEXT NOT NULL,
                    app_id TEXT NOT NULL,
                    namespace TEXT NOT NULL DEFAULT '',
                    last_update INTEGER NOT NULL
                );
                CREATE UNIQUE INDEX IF NOT EXISTS {table}_address_idx ON {table} (address);
                CREATE INDEX IF NOT EXISTS {table}_app_id_idx ON {table} (app_id);
                """
            )
            self._connection = connection
        return self._connection

    async def _run(self, sql: str, *params: Any) -> list[Any]:
        def run() -> list[Any]:
            with self._db() as connection:
                return connection.execute(sql, params).fetchall()

        return await asyncio.to_thread(run)

    async def register(self, app_id: str, address: str) -> None:
        self.address = address
        # REPLACE takes over a stale registration left at the same address.
        await self._run(
            f"REPLACE INTO {self.settings.table} (registration_id, address, app_id, last_update) "
            "VALUES (?, ?, ?, unixepoch(CURRENT_TIMESTAMP))",
            self.registration_id,
            address,
            app_id,
        )
        self._renewal = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        period = max(self.settings.update_interval - self.settings.timeout, 0.1)
        while True:
            await asyncio.sleep(period)
            try:
                await self._run(
                    f"UPDATE {self.settings.table} SET last_update = unixepoch(CURRENT_TIMESTAMP) "
                    "WHERE registration_id = ?",
                    self.registration_id,
                )
            except sqlite3.Error as exc:
                log.error("failed to renew the name registration: %s", exc)

    async def resolve(self, app_id: str) -> str | None:
        rows = await self._run(
            f"SELECT address FROM {self.settings.table} WHERE app_id = ? "
            "AND unixepoch(CURRENT_TIMESTAMP) - last_update < ? ORDER BY RANDOM() LIMIT 1",
            app_id,
            int(self.settings.update_interval),
        )
        return str(rows[0][0]) if rows else None

    async def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        if self.address is not None:
            try:
                await self._run(
                    f"DELETE FROM {self.settings.table} WHERE registration_id = ?",
                    self.registration_id,
                )
            except sqlite3.Error as exc:
                log.warning("could not remove the name registration: %s", exc)
        if self._connection is not None:
            self._connection.close()
