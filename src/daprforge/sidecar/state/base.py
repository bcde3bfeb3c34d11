"""The contract every state store component implements.

The HTTP layer (``state/api.py``) does everything Dapr does before a request reaches a
store: it validates the body, prefixes keys (``appid||key``), parses TTLs and options, and
maps the exceptions below to Dapr's status codes and error bodies. A store only stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

# Capability strings as reported by /v1.0/metadata (components-contrib state/feature.go).
FEATURE_ETAG = "ETAG"
FEATURE_TRANSACTIONAL = "TRANSACTIONAL"
FEATURE_TTL = "TTL"
FEATURE_QUERY_API = "QUERY_API"
FEATURE_KEYS_LIKE = "KEYS_LIKE"
FEATURE_DELETE_WITH_PREFIX = "DELETE_WITH_PREFIX"


class StateStoreError(Exception):
    """A store failure that is not the client's fault (HTTP 500)."""


class ETagMismatchError(StateStoreError):
    """The etag given does not match the stored one, or the key is missing (HTTP 409)."""


class ETagInvalidError(StateStoreError):
    """The store cannot parse the etag at all, e.g. not a uint32 on Postgres v1 (HTTP 400)."""


class QueryError(StateStoreError):
    """A query the store cannot run: bad filter, bad token, wrong value types (HTTP 500)."""


@dataclass(frozen=True, slots=True)
class StateItem:
    """One stored value, as a read returns it."""

    value: bytes
    """The stored bytes exactly as saved: JSON text for values saved over HTTP."""
    etag: str | None
    expires_at: datetime | None = None
    """When the item expires (UTC), reported as ``metadata.ttlExpireTime``."""


@dataclass(frozen=True, slots=True)
class SetRequest:
    """Save one item. ``key`` is already prefixed; ``value`` is already JSON-encoded."""

    key: str
    value: bytes
    etag: str | None = None
    """``None`` when the client sent no etag (an empty string counts as none)."""
    first_write: bool = False
    ttl_seconds: int | None = None
    """Positive number of seconds until expiry; ``None`` means the item never expires."""


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete one item. ``key`` is already prefixed."""

    key: str
    etag: str | None = None
    first_write: bool = False


Operation = SetRequest | DeleteRequest


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed Dapr state query document (``/v1.0-alpha1/state/{store}/query``)."""

    filter: Mapping[str, Any] | None
    """The raw filter tree, e.g. ``{"AND": [{"EQ": {"a.b": 1}}, {"IN": {"c": [1, 2]}}]}``."""
    sort: Sequence[tuple[str, bool]] = ()
    """``(dotted key, descending)`` pairs, in order."""
    limit: int = 0
    """Page size; 0 means no limit."""
    token: str | None = None
    """Opaque continuation token returned by the previous page."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    items: Sequence[tuple[str, StateItem]]
    """``(stored key, item)`` pairs; the HTTP layer strips the key prefix."""
    token: str | None = None


@dataclass(frozen=True, slots=True)
class BulkGetResult:
    key: str
    item: StateItem | None = None
    error: str | None = None


class StateStore(Protocol):
    """A state store component. Every method may raise :class:`StateStoreError`."""

    features: frozenset[str]

    async def init(self) -> None:
        """Connect, create tables and run migrations. Called once before serving."""

    async def close(self) -> None:
        """Release connections; called once on shutdown after in-flight requests finish."""

    async def ping(self) -> None:
        """Raise if the backing service cannot be reached."""

    async def get(self, key: str) -> StateItem | None:
        """Return the live item, or ``None`` if it is missing or expired."""

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetResult]:
        """One result per requested key, in any order."""

    async def set(self, request: SetRequest) -> None:
        """Raise :class:`ETagMismatchError` or :class:`ETagInvalidError` on etag problems."""

    async def delete(self, request: DeleteRequest) -> None:
        """Deleting a missing key without an etag succeeds."""

    async def multi(self, operations: Sequence[Operation]) -> None:
        """Apply every operation atomically, or none of them (``TRANSACTIONAL`` stores)."""

    async def query(self, query: Query) -> QueryResult:
        """Run a query (``QUERY_API`` stores only)."""
