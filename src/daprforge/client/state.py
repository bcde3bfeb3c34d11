"""The state API: ``client.state.get(...)``, ``save``, ``delete``, bulk, transactions, query,
and ``update`` for optimistic read-modify-write.

Status codes follow daprd (Dapr HTTP API reference §1): a missing key is a 204, an ETag
mismatch a 409 (a 500 inside a transaction); both are turned into ``None`` and
:class:`ConcurrencyError` here so callers never look at status codes.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, overload

from daprforge.client.codec import decode_json, decode_value, encode_json, to_jsonable
from daprforge.client.errors import ConcurrencyError, DaprError, error_from_response
from daprforge.client.transport import (
    JSON,
    Reply,
    Transport,
    backoff,
    metadata_params,
    segment,
)

T = TypeVar("T")


class Unread(enum.Enum):
    """``update(current=UNREAD)``: the caller has not read the key."""

    UNREAD = enum.auto()


UNREAD = Unread.UNREAD
Concurrency = Literal["first-write", "last-write"]
Consistency = Literal["strong", "eventual"]


@dataclass(frozen=True, slots=True)
class StateItem(Generic[T]):
    """A stored value with its ETag and the store's metadata. Metadata keys are
    lower-case (``ttlexpiretime``): daprd sends them as HTTP headers, which lose case."""

    key: str
    value: T
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def expires_at(self) -> datetime | None:
        """When a value saved with a TTL expires (UTC), if the store says."""
        text = self.metadata.get("ttlexpiretime")
        if not text:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class QueryResult(Generic[T]):
    items: list[StateItem[T]]
    token: str | None = None
    """Pass as ``page.token`` to get the next page."""
    metadata: Mapping[str, str] = field(default_factory=dict)


def _options(concurrency: str | None, consistency: str | None) -> dict[str, str]:
    options = {}
    if concurrency:
        options["concurrency"] = concurrency
    if consistency:
        options["consistency"] = consistency
    return options


def _item_metadata(ttl: int | None, metadata: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(metadata or {})
    if ttl is not None:
        merged["ttlInSeconds"] = str(ttl)
    return merged


@dataclass(frozen=True, slots=True)
class Upsert:
    """Write ``value`` under ``key``: an item of ``save_many`` or a transaction operation.
    ``ttl`` is in seconds; with ``etag`` the write succeeds only if the item is unchanged."""

    key: str
    value: Any
    etag: str | None = None
    ttl: int | None = None
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None
    metadata: Mapping[str, str] | None = None

    def request(self) -> dict[str, Any]:
        item: dict[str, Any] = {"key": self.key, "value": self.value}
        if self.etag is not None:
            item["etag"] = self.etag
        if metadata := _item_metadata(self.ttl, self.metadata):
            item["metadata"] = metadata
        if options := _options(self.concurrency, self.consistency):
            item["options"] = options
        return item


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key`` in a transaction; with ``etag`` only if the item is unchanged."""

    key: str
    etag: str | None = None
    concurrency: Concurrency | None = None
    consistency: Consistency | None = None
    metadata: Mapping[str, str] | None = None

    def request(self) -> dict[str, Any]:
        item: dict[str, Any] = {"key": self.key}
        if self.etag is not None:
            item["etag"] = self.etag
        if self.metadata:
            item["metadata"] = dict(self.metadata)
        if options := _options(self.concurrency, self.consistency):
            item["options"] = options
        return item


def _response_metadata(response: Reply) -> dict[str, str]:
    # daprd returns store metadata as "metadata.<key>" headers (e.g. metadata.ttlExpireTime);
    # Header names arrive in the sidecar's case, so match the prefix case-insensitively.
    found = {}
    for name, value in response.headers.items():
        if name.lower().startswith("metadata."):
            found[name[len("metadata.") :].lower()] = value
    return found


class StateAPI:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _check(self, response: Reply) -> Reply:
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    # --- get ----------------------------------------------------------------------------

    @overload
    async def get(
        self,
        store: str,
        key: str,
        *,
        type: type[T],
        consistency: Consistency | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StateItem[T] | None: ...

    @overload
    async def get(
        self,
        store: str,
        key: str,
        *,
        type: None = None,
        consistency: Consistency | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StateItem[Any] | None: ...

    async def get(
        self,
        store: str,
        key: str,
        *,
        type: type[T] | None = None,
        consistency: Consistency | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StateItem[Any] | None:
        """The item under ``key``, or None when there is none (or it expired). With
        ``type``, the value is validated as that type (``type=bytes``: the raw bytes)."""
        params = metadata_params(metadata)
        if consistency:
            params["consistency"] = consistency
        response = self._check(
            await self._transport.request(
                "state.get",
                "GET",
                f"/v1.0/state/{segment(store)}/{segment(key)}",
                idempotent=True,
                params=params,
            )
        )
        if response.status_code == 204 or not response.content:
            return None
        return StateItem(
            key=key,
            value=decode_json(response.content, type),
            etag=response.headers.get("etag"),
            metadata=_response_metadata(response),
        )

    @overload
    async def get_bulk(
        self,
        store: str,
        keys: Iterable[str],
        *,
        type: type[T],
        parallelism: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, StateItem[T] | None]: ...

    @overload
    async def get_bulk(
        self,
        store: str,
        keys: Iterable[str],
        *,
        type: None = None,
        parallelism: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, StateItem[Any] | None]: ...

    async def get_bulk(
        self,
        store: str,
        keys: Iterable[str],
        *,
        type: type[T] | None = None,
        parallelism: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, StateItem[Any] | None]:
        """Several keys at once: ``{key: item or None}`` in the order asked (daprd answers
        in store order). A key the store failed to read raises DaprError."""
        wanted = list(dict.fromkeys(keys))
        body: dict[str, Any] = {"keys": wanted}
        if parallelism is not None:
            body["parallelism"] = parallelism
        response = self._check(
            await self._transport.request(
                "state.get_bulk",
                "POST",
                f"/v1.0/state/{segment(store)}/bulk",
                idempotent=True,
                content=encode_json(body),
                headers=JSON,
                params=metadata_params(metadata),
            )
        )
        found: dict[str, StateItem[Any] | None] = dict.fromkeys(wanted)
        for entry in json.loads(response.content or b"[]"):
            key = entry.get("key", "")
            if entry.get("error"):
                raise DaprError(500, "ERR_STATE_BULK_GET", f"bulk get of {key!r}: {entry['error']}")
            if "data" in entry:
                found[key] = StateItem(
                    key=key,
                    value=decode_value(entry["data"], type),
                    etag=entry.get("etag"),
                    metadata={k.lower(): v for k, v in (entry.get("metadata") or {}).items()},
                )
        return found

    # --- writes -------------------------------------------------------------------------

    async def save(
        self,
        store: str,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        ttl: int | None = None,
        concurrency: Concurrency | None = None,
        consistency: Consistency | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Save ``value`` (JSON; Pydantic models welcome). With ``etag``, or with
        ``concurrency="first-write"`` for a key that must not exist yet, a conflicting
        write raises ConcurrencyError. ``ttl`` is in seconds."""
        item = Upsert(key, value, etag, ttl, concurrency, consistency, metadata)
        await self.save_many(store, [item])

    async def save_many(
        self,
        store: str,
        items: Mapping[str, Any] | Iterable[Upsert],
        *,
        ttl: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Save several items in one call: a ``{key: value}`` mapping, or Upsert items
        for per-item etags and options. Not atomic (use ``transaction`` for that): items
        that succeeded stay written when another fails."""
        if isinstance(items, Mapping):
            upserts = [Upsert(key, value) for key, value in items.items()]
        else:
            upserts = list(items)
        # Without an etag a save is last-write-wins, so repeating it changes nothing.
        idempotent = all(u.etag is None and u.concurrency != "first-write" for u in upserts)
        self._check(
            await self._transport.request(
                "state.save",
                "POST",
                f"/v1.0/state/{segment(store)}",
                idempotent=idempotent,
                content=encode_json([u.request() for u in upserts]),
                headers=JSON,
                params=metadata_params(_item_metadata(ttl, metadata)),
            )
        )

    async def delete(
        self,
        store: str,
        key: str,
        *,
        etag: str | None = None,
        concurrency: Concurrency | None = None,
        consistency: Consistency | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Delete ``key`` (deleting a missing key is fine). With ``etag``, a changed item
        raises ConcurrencyError."""
        params = metadata_params(metadata)
        params.update(_options(concurrency, consistency))
        headers = {"if-match": etag} if etag is not None else None
        self._check(
            await self._transport.request(
                "state.delete",
                "DELETE",
                f"/v1.0/state/{segment(store)}/{segment(key)}",
                idempotent=etag is None,
                params=params,
                headers=headers,
            )
        )

    async def transaction(
        self,
        store: str,
        operations: Iterable[Upsert | Delete],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Run upserts and deletes atomically. Any etag mismatch raises ConcurrencyError
        and nothing is written. ``metadata`` goes to the store (e.g. ``partitionKey``)."""
        operations = list(operations)
        body: dict[str, Any] = {
            "operations": [
                {
                    "operation": "upsert" if isinstance(op, Upsert) else "delete",
                    "request": op.request(),
                }
                for op in operations
            ]
        }
        if metadata:
            body["metadata"] = dict(metadata)
        # A first-write resent after a lost answer would fail against its own first try.
        idempotent = all(op.etag is None and op.concurrency != "first-write" for op in operations)
        self._check(
            await self._transport.request(
                "state.transaction",
                "POST",
                f"/v1.0/state/{segment(store)}/transaction",
                idempotent=idempotent,
                content=encode_json(body),
                headers=JSON,
            )
        )

    # --- query --------------------------------------------------------------------------

    @overload
    async def query(
        self,
        store: str,
        query: Mapping[str, Any],
        *,
        type: type[T],
        metadata: Mapping[str, str] | None = None,
    ) -> QueryResult[T]: ...

    @overload
    async def query(
        self,
        store: str,
        query: Mapping[str, Any],
        *,
        type: None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> QueryResult[Any]: ...

    async def query(
        self,
        store: str,
        query: Mapping[str, Any],
        *,
        type: type[T] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> QueryResult[Any]:
        """The alpha query API: ``query`` is Dapr's document, e.g.
        ``{"filter": {"EQ": {"status": "open"}}, "sort": [...], "page": {"limit": 10}}``.
        Only some stores support it (PostgreSQL v1 among ours)."""
        response = self._check(
            await self._transport.request(
                "state.query",
                "POST",
                f"/v1.0-alpha1/state/{segment(store)}/query",
                idempotent=True,
                content=encode_json(to_jsonable(query)),
                headers=JSON,
                params=metadata_params(metadata),
            )
        )
        if response.status_code == 204 or not response.content:
            return QueryResult([])
        body = json.loads(response.content)
        items: list[StateItem[Any]] = []
        for entry in body.get("results") or []:
            key = entry.get("key", "")
            if entry.get("error"):
                raise DaprError(500, "ERR_STATE_QUERY", f"query result {key!r}: {entry['error']}")
            items.append(
                StateItem(key, decode_value(entry.get("data"), type), entry.get("etag") or None)
            )
        return QueryResult(items, body.get("token") or None, body.get("metadata") or {})

    # --- read-modify-write --------------------------------------------------------------

    @overload
    async def update(
        self,
        store: str,
        key: str,
        change: Callable[[T | None], T | Awaitable[T]],
        *,
        type: type[T],
        retries: int = 10,
        ttl: int | None = None,
        metadata: Mapping[str, str] | None = None,
        current: StateItem[T] | Unread | None = UNREAD,
    ) -> T: ...

    @overload
    async def update(
        self,
        store: str,
        key: str,
        change: Callable[[Any], Any],
        *,
        type: None = None,
        retries: int = 10,
        ttl: int | None = None,
        metadata: Mapping[str, str] | None = None,
        current: StateItem[Any] | Unread | None = UNREAD,
    ) -> Any: ...

    async def update(
        self,
        store: str,
        key: str,
        change: Callable[[Any], Any],
        *,
        type: Any = None,
        retries: int = 10,
        ttl: int | None = None,
        metadata: Mapping[str, str] | None = None,
        current: StateItem[Any] | Unread | None = UNREAD,
    ) -> Any:
        """Read ``key``, compute ``change(current)`` (current is None when the key is
        missing; sync or async), and write the result only if nobody wrote in between
        (ETag, or first-write for a new key). On a conflict it starts over, up to
        ``retries`` times, then raises ConcurrencyError. Returns the value written.
        ``current``: the item as the caller already read it (None: missing), so an
        uncontended update needs no read of its own.

        ``change`` may run more than once, so it must not have side effects."""
        attempt = 0
        while True:
            if isinstance(current, Unread) or (current is not None and current.etag is None):
                current = await self.get(store, key, type=type, consistency="strong")
            new_value = change(None if current is None else current.value)
            if inspect.isawaitable(new_value):
                new_value = await new_value
            if current is not None and current.etag is None:
                raise RuntimeError(f"state store {store!r} returned no ETag: update() needs one")
            try:
                await self.save(
                    store,
                    key,
                    new_value,
                    etag=None if current is None else current.etag,
                    concurrency="first-write" if current is None else None,
                    consistency="strong",
                    ttl=ttl,
                    metadata=metadata,
                )
            except ConcurrencyError:
                if attempt >= retries:
                    raise
                await asyncio.sleep(backoff(attempt, base=0.01, cap=0.5))
                attempt += 1
                current = UNREAD
                continue
            return new_value
