"""The contract every secret store component implements."""

from __future__ import annotations

from typing import Protocol


class SecretNotFoundError(Exception):
    """The store has no secret by that name (daprd answers 500 ERR_SECRET_GET)."""


class SecretStore(Protocol):
    features: frozenset[str]

    async def init(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        """The key/value pairs of one secret."""
        ...

    async def bulk_get(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        """Every secret the store can list, by name."""
        ...
