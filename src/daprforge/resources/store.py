"""A resource in the Dapr state store: create, read, replace, patch, delete and list, with
version checks, change events through the outbox, and listing on any transactional store.

Each item is one key, ``<plural>:<id>``, holding an envelope::

    {"kind": "<app id>/<plural>", "rev": "<revision>", "deleted": false, "item": {...},
     "sort": {"<field>": "<sort text>"}}

``rev`` is the version clients see as the ETag; ``kind`` lets a state query (which sees
every app's keys) find this resource's items; ``sort`` holds each declared sort field as
text that sorts like its value, since a state query sorts JSON values as text. Writes are
compare-and-swap on the state store's own ETag, read just before, so a concurrent change
is never overwritten: it either shows as a 412 (the client's If-Match is stale) or,
without If-Match, the change is applied again on the fresh copy.

Lists use the store's query API when it has one. Otherwise ids live in index buckets,
``<plural>-index:NN`` = ``{"ids": [...], "outbox": [pending event ids]}``, changed in the
same transaction as every write (compare-and-swap on the bucket's ETag), so the index
never disagrees with the items and a sweep can find unpublished events without a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from daprforge.client import ConcurrencyError, DaprClient, DaprError, Delete, Upsert
from daprforge.client.transport import backoff
from daprforge.resources.cursor import (
    INVALID,
    CursorError,
    decode_cursor,
    encode_cursor,
    fingerprint,
)
from daprforge.resources.errors import (
    IdempotencyKeyError,
    InvalidListError,
    NotFoundError,
    PreconditionFailedError,
    PreconditionRequiredError,
)
from daprforge.resources.models import format_timestamp, new_id, new_revision, now, sort_text
from daprforge.resources.outbox import EventRelay, OutboxEvent
from daprforge.resources.preconditions import etag_of, if_match_allows
from daprforge.resources.spec import M, ResourceOptions, ResourceSpec

log = logging.getLogger("daprforge.resources")

# Attempts of a compare-and-swap that lost to a concurrent write (each re-reads first).
WRITE_ATTEMPTS = 20
# Keys per bulk read when listing from the index.
BULK_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Versioned(Generic[M]):
    item: M
    revision: str
    replayed: bool = False
    """A create answered from its Idempotency-Key: the item an earlier request made."""


@dataclass(frozen=True, slots=True)
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated list request: ``filters`` map field names to values of their type."""

    filters: Mapping[str, Any]
    sort: str = "created_at"
    descending: bool = False
    limit: int = 20
    cursor: str | None = None

    def fingerprint(self, adapters: Mapping[str, TypeAdapter[Any]]) -> str:
        return fingerprint(
            {
                "f": {k: adapters[k].dump_python(v, mode="json") for k, v in self.filters.items()},
                "s": [self.sort, self.descending],
            }
        )


@dataclass(frozen=True, slots=True)
class _BucketChange:
    """What a write changes in an index bucket: an id added or removed, and the id of
    its event, listed there until published (so a sweep can find its outbox record)."""

    number: int
    add: str | None = None
    remove: str | None = None
    event: str | None = None


@dataclass(frozen=True, slots=True)
class _Current:
    envelope: dict[str, Any]
    etag: str | None

    @property
    def revision(self) -> str:
        return str(self.envelope["rev"])

    @property
    def deleted(self) -> bool:
        return bool(self.envelope.get("deleted"))


B = TypeVar("B", bound=BaseModel)

IDEMPOTENCY_TTL = 24 * 3600
"""Seconds an Idempotency-Key is remembered after the create it made."""


class _Claim:
    """One create's ``Idempotency-Key``: a record ``<plural>-idempotency:<hash of key>``
    = ``{"id": <item id>, "request": <hash of the fields>}``, written in the create's
    transaction, insert-only."""

    def __init__(self, store: ResourceStore[Any], key: str, fields: BaseModel) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.store = store
        self.key = f"{store.spec.plural}-idempotency:{digest}"
        self.request = hashlib.sha256(fields.model_dump_json().encode()).hexdigest()

    def record(self, item_id: str) -> Upsert:
        value = {"id": item_id, "request": self.request}
        return Upsert(self.key, value, concurrency="first-write", ttl=IDEMPOTENCY_TTL)

    async def earlier(self) -> Versioned[Any] | None:
        """What an earlier create with this key made, if there was one."""
        store = self.store
        found = await store.dapr.state.get(store.options.state_store, self.key)
        if found is None or not isinstance(found.value, dict):
            return None
        if found.value.get("request") != self.request:
            raise IdempotencyKeyError(
                422, "This Idempotency-Key was used for a create with other fields."
            )
        item_id = str(found.value.get("id"))
        made = await store.get(item_id)
        if made is None:
            raise IdempotencyKeyError(
                409, f"This Idempotency-Key created {item_id!r}, which has since been deleted."
            )
        return Versioned(made.item, made.revision, replayed=True)


def _validated(model: type[B], data: dict[str, Any]) -> B:
    """``data`` as ``model``; the model's own validators fail as a 422 on the body, like
    the request's fields do."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


class ResourceStore(Generic[M]):
    def __init__(self, dapr: DaprClient, spec: ResourceSpec[M], options: ResourceOptions) -> None:
        self.dapr = dapr
        self.spec = spec
        self.options = options
        self.kind = f"{options.app_id}/{spec.plural}"
        self._listing: Literal["query", "index"] | None = (
            None if options.listing == "auto" else options.listing
        )
        self._listing_lock = asyncio.Lock()
        self._filter_adapters = {
            name: TypeAdapter(spec.filter_annotation(name)) for name in spec.filters
        }
        self._probe: asyncio.Task[None] | None = None
        self._backfill: asyncio.Task[None] | None = None
        self.relay: EventRelay | None = None
        if options.topic:
            self.relay = EventRelay(
                dapr,
                state_store=options.state_store,
                pubsub=options.pubsub,
                topic=options.topic,
                source=options.app_id,
                marker=self.kind,
            )

    # --- keys -----------------------------------------------------------------------------

    def item_key(self, item_id: str) -> str:
        return f"{self.spec.plural}:{item_id}"

    def bucket_key(self, bucket: int) -> str:
        return f"{self.spec.plural}-index:{bucket:02d}"

    def bucket_of(self, item_id: str) -> int:
        # The id's last digits are random, so items spread evenly over the buckets.
        return int(item_id[-4:], 16) % self.options.index_buckets

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the event relay (call from the app's lifespan). With ``listing="auto"``
        the store's capabilities are asked in the background, so that the outbox sweep
        and the sort backfill start even before the first request (the sidecar may still
        be starting)."""
        if self.relay is not None:
            self.relay.start()
        if self._listing is not None:
            self._listing_known(self._listing)
        else:
            self._probe = asyncio.create_task(self._probe_listing(), name="daprforge-listing")

    async def _probe_listing(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.listing()
                return
            except Exception as exc:  # the sidecar is not up yet: ask again later
                log.debug("cannot ask the sidecar for the store's capabilities yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def close(self) -> None:
        for task in (self._probe, self._backfill):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.relay is not None:
            await self.relay.close()

    async def listing(self) -> Literal["query", "index"]:
        """How this store lists: asked of the sidecar once (its component capabilities)."""
        if self._listing is None:
            async with self._listing_lock:
                if self._listing is None:
                    meta = await self.dapr.metadata()
                    component = meta.component(self.options.state_store)
                    capabilities = set(component.capabilities) if component else set()
                    self._listing = "query" if "QUERY_API" in capabilities else "index"
                    log.info("listing %s with the %s strategy", self.spec.plural, self._listing)
                    self._listing_known(self._listing)
        return self._listing

    def _listing_known(self, listing: Literal["query", "index"]) -> None:
        """Look for events a stopped process left (by query, or through the index) and,
        for the query listing, give older items their sort text."""
        if self.relay is not None:
            if listing == "index":
                self.relay.finder = self._index_records
            self.relay.start(sweep=True)
        if listing == "query" and self.spec.keyed_sorts and self._backfill is None:
            self._backfill = asyncio.create_task(self._backfill_sorts(), name="daprforge-sorts")

    async def _backfill_sorts(self) -> None:
        """Items written before a sort field was declared (or by an older version) lack
        its sort text, and a query sorts a missing value as null: at the end, whatever
        the order. Each such item gets it, compare-and-swap on its ETag; nothing else
        changes, no event."""
        store, wanted = self.options.state_store, set(self.spec.keyed_sorts)
        fixed = 0
        token: str | None = None
        try:
            while True:
                page: dict[str, Any] = {"limit": 200, **({"token": token} if token else {})}
                result = await self.dapr.state.query(
                    store, {"filter": {"EQ": {"kind": self.kind}}, "page": page}
                )
                for entry in result.items:
                    envelope = entry.value
                    if not isinstance(envelope, dict) or set(envelope.get("sort", ())) == wanted:
                        continue
                    # A writer got there first, or the item no longer fits the model.
                    with contextlib.suppress(ConcurrencyError, ValidationError):
                        sorts = self._sorts(self._model(envelope))
                        await self.dapr.state.save(
                            store, entry.key, {**envelope, "sort": sorts}, etag=entry.etag
                        )
                        fixed += 1
                if not result.items or not result.token:
                    break
                token = result.token
        except Exception as exc:  # the next start tries again
            log.warning("could not give every %s its sort text: %s", self.spec.name, exc)
        if fixed:
            log.info("gave %d %s their sort text", fixed, self.spec.plural)

    # --- reads ----------------------------------------------------------------------------

    async def _read(self, item_id: str) -> _Current | None:
        found = await self.dapr.state.get(self.options.state_store, self.item_key(item_id))
        if found is None or not isinstance(found.value, dict) or "item" not in found.value:
            return None
        return _Current(found.value, found.etag)

    def _model(self, envelope: Mapping[str, Any]) -> M:
        return self.spec.model.model_validate(envelope["item"])

    async def get(self, item_id: str) -> Versioned[M] | None:
        current = await self._read(item_id)
        if current is None or current.deleted:
            return None
        return Versioned(self._model(current.envelope), current.revision)

    # --- writes ---------------------------------------------------------------------------

    def _envelope(self, item: M, revision: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rev": revision,
            "deleted": False,
            "item": item.model_dump(mode="json", by_alias=True),
            "sort": self._sorts(item),
        }

    def _sorts(self, item: M) -> dict[str, str]:
        values = item.model_dump(mode="json", include=set(self.spec.keyed_sorts), by_alias=False)
        return {name: sort_text(value) for name, value in values.items()}

    def _event(self, change: str, item_id: str, changed: dict[str, Any]) -> OutboxEvent:
        event_id = new_id()
        return OutboxEvent(
            id=event_id,
            type=f"{self.spec.name}.{change}",
            subject=item_id,
            data={"id": item_id, "changed": changed},
            key=f"{self.spec.plural}-outbox:{event_id}",
        )

    def _outbox(self, event: OutboxEvent) -> list[Upsert]:
        if self.relay is None:
            return []
        return [Upsert(event.key, event.record(self.kind))]

    def _announce(self, event: OutboxEvent) -> None:
        if self.relay is not None:
            self.relay.submit([event])

    def _bucket(
        self,
        item_id: str,
        event: OutboxEvent,
        indexed: bool,
        *,
        add: bool = False,
        remove: bool = False,
    ) -> _BucketChange | None:
        if not indexed:
            return None
        event_id = event.id if self.relay is not None else None
        if not (add or remove or event_id):
            return None
        return _BucketChange(
            self.bucket_of(item_id),
            add=item_id if add else None,
            remove=item_id if remove else None,
            event=event_id,
        )

    async def _commit(
        self, operations: Sequence[Upsert | Delete], bucket: _BucketChange | None
    ) -> bool:
        """Run ``operations`` in one transaction, with ``bucket`` changing that index
        bucket too (compare-and-swap). False when a compare-and-swap lost."""
        ops = list(operations)
        if bucket is not None:
            key = self.bucket_key(bucket.number)
            found = await self.dapr.state.get(self.options.state_store, key)
            doc = found.value if found is not None and isinstance(found.value, dict) else {}
            ids = [i for i in doc.get("ids", []) if i != bucket.remove]
            if bucket.add:
                ids.append(bucket.add)
            done = self.relay.forgotten if self.relay is not None else {}
            pending = [e for e in doc.get("outbox", []) if e not in done]
            if bucket.event:
                pending.append(bucket.event)
            value = {"ids": ids, "outbox": pending}
            if found is not None and found.etag:
                ops.append(Upsert(key, value, etag=found.etag))
            else:
                ops.append(Upsert(key, value, concurrency="first-write"))
        try:
            if len(ops) == 1 and isinstance(ops[0], Upsert):
                # One save request rather than a transaction (the Upsert whole: its etag,
                # ttl, concurrency and metadata).
                await self.dapr.state.save_many(self.options.state_store, [ops[0]])
            else:
                await self.dapr.state.transaction(self.options.state_store, ops)
        except ConcurrencyError:
            return False
        return True

    async def _index_records(self) -> list[OutboxEvent]:
        """The outbox records the index buckets list (stores without the query API);
        references to records already published are pruned on the way."""
        store = self.options.state_store
        keys = [self.bucket_key(n) for n in range(self.options.index_buckets)]
        buckets = await self.dapr.state.get_bulk(store, keys)
        # Event ids without repeats, in bucket order: a sweep re-publishes an item's
        # events in the order they happened (a set would not keep it).
        listed = dict.fromkeys(
            event_id
            for found in buckets.values()
            if found is not None and isinstance(found.value, dict)
            for event_id in found.value.get("outbox", [])
        )
        record_keys = [f"{self.spec.plural}-outbox:{event_id}" for event_id in listed]
        events: list[OutboxEvent] = []
        for start in range(0, len(record_keys), BULK_CHUNK):
            chunk = await self.dapr.state.get_bulk(store, record_keys[start : start + BULK_CHUNK])
            for key, found in chunk.items():
                event = OutboxEvent.from_record(key, found.value) if found else None
                if event is not None:
                    events.append(event)
        present = {event.id for event in events}
        for key, found in buckets.items():
            if found is None or not isinstance(found.value, dict) or not found.etag:
                continue
            pending = found.value.get("outbox", [])
            kept = [e for e in pending if e in present]
            if len(kept) < len(pending):
                with contextlib.suppress(ConcurrencyError):  # a writer got there first
                    await self.dapr.state.save(
                        store, key, {**found.value, "outbox": kept}, etag=found.etag
                    )
        return events

    async def create(
        self, fields: BaseModel, *, idempotency_key: str | None = None
    ) -> Versioned[M]:
        """A new item. With ``idempotency_key``, a repeat of the request (same key, same
        fields, within IDEMPOTENCY_TTL) answers with the item the first one made, so a
        client may retry a create whose answer it never got."""
        moment = now()
        item = _validated(
            self.spec.model,
            {**fields.model_dump(), "id": new_id(), "created_at": moment, "updated_at": moment},
        )
        revision = new_revision()
        event = self._event("created", item.id, item.model_dump(mode="json", by_alias=True))
        operations = [Upsert(self.item_key(item.id), self._envelope(item, revision))]
        operations += self._outbox(event)
        claim = None
        if idempotency_key is not None:
            claim = _Claim(self, idempotency_key, fields)
            if earlier := await claim.earlier():
                return earlier
            # Insert-only: a request with the same key that commits first makes this
            # transaction fail as a conflict.
            operations.append(claim.record(item.id))
        bucket = self._bucket(item.id, event, await self.listing() == "index", add=True)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                committed = await self._commit(operations, bucket)
            except DaprError:
                # Another create with the key won, or ours committed but its answer was
                # lost (a timeout): the key's record tells which.
                if claim is None or not (earlier := await claim.earlier()):
                    raise
                if earlier.item.id != item.id:
                    return earlier
                committed = True
            if committed:
                self._announce(event)
                return Versioned(item, revision)
            if claim is not None and (earlier := await claim.earlier()):
                return earlier
            await asyncio.sleep(backoff(attempt, base=0.005, cap=0.2))
        raise ConcurrencyError(409, "ERR_STATE_TRANSACTION", "the index kept changing")

    def _precondition(self, current: _Current, if_match: str | None, *, required: bool) -> None:
        if if_match is None:
            if required:
                raise PreconditionRequiredError(
                    "Send If-Match with the ETag of the version you changed (GET it first)."
                )
            return
        if not if_match_allows(if_match, current.revision):
            raise PreconditionFailedError(
                "The resource changed since that ETag: GET it again, reapply your change "
                "and send the new ETag.",
                headers={"ETag": etag_of(current.revision)},
            )

    async def _current(self, item_id: str) -> _Current:
        current = await self._read(item_id)
        if current is None or current.deleted:
            raise NotFoundError(f"No {self.spec.name} with id {item_id!r}.")
        return current

    async def replace(self, item_id: str, fields: BaseModel, if_match: str | None) -> Versioned[M]:
        return await self._update(item_id, fields.model_dump(), if_match)

    async def patch(
        self, item_id: str, changes: Mapping[str, Any], if_match: str | None
    ) -> Versioned[M]:
        """``changes``: the fields sent (``model_dump(exclude_unset=True)`` of the patch)."""
        return await self._update(item_id, changes, if_match)

    async def _update(
        self, item_id: str, changes: Mapping[str, Any], if_match: str | None
    ) -> Versioned[M]:
        required = self.options.require_if_match
        for attempt in range(WRITE_ATTEMPTS):
            current = await self._current(item_id)
            self._precondition(current, if_match, required=required)
            old = self._model(current.envelope)
            writable = set(self.spec.fields.model_fields)
            merged = {**old.model_dump(include=writable), **changes}
            fields = _validated(self.spec.fields, merged)
            before = old.model_dump(mode="json", by_alias=True)
            candidate = _validated(
                self.spec.model,
                {
                    **fields.model_dump(),
                    "id": old.id,
                    "created_at": old.created_at,
                    "updated_at": old.updated_at,
                },
            )
            after = candidate.model_dump(mode="json", by_alias=True)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            if not changed:  # nothing to write: the same version stays current
                return Versioned(old, current.revision)
            item = candidate.model_copy(update={"updated_at": now()})
            changed["updated_at"] = item.model_dump(mode="json")["updated_at"]
            revision = new_revision()
            event = self._event("updated", item_id, changed)
            operations = [
                Upsert(self.item_key(item_id), self._envelope(item, revision), etag=current.etag),
                *self._outbox(event),
            ]
            bucket = self._bucket(item_id, event, await self.listing() == "index")
            if await self._commit(operations, bucket):
                self._announce(event)
                return Versioned(item, revision)
            # Lost to a concurrent write: re-read; a stale If-Match is then a 412.
            await asyncio.sleep(backoff(attempt, base=0.005, cap=0.2))
        raise ConcurrencyError(409, "ERR_STATE_SAVE", f"{item_id} kept changing")

    async def delete(self, item_id: str, if_match: str | None) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            current = await self._current(item_id)
            self._precondition(current, if_match, required=False)
            event = self._event("deleted", item_id, {})
            key = self.item_key(item_id)
            indexed = await self.listing() == "index"
            operation: Upsert | Delete
            if self.options.soft_delete:
                deleted_at = format_timestamp(now())
                envelope = {**current.envelope, "deleted": True, "deleted_at": deleted_at}
                operation = Upsert(key, envelope, etag=current.etag)
                bucket = self._bucket(item_id, event, indexed)
            else:
                operation = Delete(key, etag=current.etag)
                bucket = self._bucket(item_id, event, indexed, remove=True)
            if await self._commit([operation, *self._outbox(event)], bucket):
                self._announce(event)
                return
            await asyncio.sleep(backoff(attempt, base=0.005, cap=0.2))
        raise ConcurrencyError(409, "ERR_STATE_TRANSACTION", f"{item_id} kept changing")

    # --- listing --------------------------------------------------------------------------

    def filter_value(self, name: str, raw: str) -> Any:
        """A query-string value as the field's type; InvalidListError if it is not one."""
        try:
            return self._filter_adapters[name].validate_strings(raw)
        except ValidationError:
            raise InvalidListError(
                f"Filter {name}={raw!r} is not a valid value for {name}."
            ) from None

    async def list(self, query: ListQuery) -> Page[M]:
        if query.sort not in self.spec.sort_fields:
            raise InvalidListError(
                f"Cannot sort by {query.sort!r}; sort by one of "
                f"{', '.join(self.spec.sort_fields)} (prefix - for descending)."
            )
        unknown = set(query.filters) - set(self.spec.filters)
        if unknown:
            raise InvalidListError(f"Cannot filter by {', '.join(sorted(unknown))}.")
        if await self.listing() == "query":
            return await self._list_by_query(query)
        return await self._list_by_index(query)

    def _position(self, query: ListQuery, fingerprint_: str) -> Any:
        if query.cursor is None:
            return None
        try:
            return decode_cursor(query.cursor, fingerprint_)
        except CursorError as exc:
            raise InvalidListError(str(exc)) from None

    def _text(self, name: str, value: Any) -> str:
        # The query API compares JSON values as text (PostgreSQL: value->>'field').
        dumped = self._filter_adapters[name].dump_python(value, mode="json")
        return dumped if isinstance(dumped, str) else json.dumps(dumped)

    async def _list_by_query(self, query: ListQuery) -> Page[M]:
        print_ = query.fingerprint(self._filter_adapters)
        position = self._position(query, print_)
        if position is not None and not (
            isinstance(position, dict) and isinstance(position.get("t"), str)
        ):
            raise InvalidListError(INVALID)
        conditions: list[dict[str, Any]] = [
            {"EQ": {"kind": self.kind}},
            {"EQ": {"deleted": "false"}},
        ]
        conditions += [
            {"EQ": {f"item.{name}": self._text(name, value)}}
            for name, value in sorted(query.filters.items())
        ]
        order = "DESC" if query.descending else "ASC"
        sort_key = "sort" if query.sort in self.spec.keyed_sorts else "item"
        page: dict[str, Any] = {"limit": query.limit}
        if position is not None:
            page["token"] = position["t"]
        document = {
            "filter": {"AND": conditions},
            "sort": [
                {"key": f"{sort_key}.{query.sort}", "order": order},
                {"key": "item.id", "order": order},
            ],
            "page": page,
        }
        try:
            result = await self.dapr.state.query(self.options.state_store, document)
        except DaprError as exc:
            if position is not None and exc.error_code == "ERR_STATE_QUERY":
                raise InvalidListError(INVALID) from None
            raise
        items = [self._model(entry.value) for entry in result.items]
        more = result.token is not None and len(items) == query.limit
        next_cursor = encode_cursor({"t": result.token}, print_) if more else None
        return Page(items, next_cursor)

    async def _list_by_index(self, query: ListQuery) -> Page[M]:
        print_ = query.fingerprint(self._filter_adapters)
        position = self._position(query, print_)
        if position is not None and not (
            isinstance(position, dict) and isinstance(position.get("id"), str) and "k" in position
        ):
            raise InvalidListError(INVALID)
        store = self.options.state_store
        buckets = await self.dapr.state.get_bulk(
            store, [self.bucket_key(n) for n in range(self.options.index_buckets)]
        )
        ids = sorted(
            {
                item_id
                for found in buckets.values()
                if found is not None and isinstance(found.value, dict)
                for item_id in found.value.get("ids", [])
            }
        )
        keys = [self.item_key(item_id) for item_id in ids]
        chunks = await asyncio.gather(
            *(
                self.dapr.state.get_bulk(store, keys[start : start + BULK_CHUNK])
                for start in range(0, len(keys), BULK_CHUNK)
            )
        )
        rows: list[tuple[tuple[Any, ...], M]] = []
        for chunk in chunks:
            for found in chunk.values():
                if found is None or not isinstance(found.value, dict) or found.value.get("deleted"):
                    continue
                item = self._model(found.value)
                if all(getattr(item, k) == v for k, v in query.filters.items()):
                    rows.append((self._sort_key(item, query.sort), item))
        rows.sort(key=lambda row: row[0], reverse=query.descending)
        start = 0
        if position is not None:
            after = _sort_tuple(position["k"], position["id"])
            start = next(
                (
                    i
                    for i, (key, _) in enumerate(rows)
                    if (key < after if query.descending else key > after)
                ),
                len(rows),
            )
        selected = rows[start : start + query.limit]
        next_cursor = None
        if start + query.limit < len(rows) and selected:
            last = selected[-1][1]
            value = last.model_dump(mode="json", include={query.sort}, by_alias=False)[query.sort]
            next_cursor = encode_cursor({"k": value, "id": last.id}, print_)
        return Page([item for _, item in selected], next_cursor)

    def _sort_key(self, item: M, sort: str) -> tuple[Any, ...]:
        value = item.model_dump(mode="json", include={sort}, by_alias=False)[sort]
        return _sort_tuple(value, item.id)


def _sort_tuple(value: Any, item_id: str) -> tuple[Any, ...]:
    # None sorts first; values of one field share a type, so they compare among themselves.
    if value is None:
        return (0, "", item_id)
    if isinstance(value, bool | int | float):
        # Not float(): a huge int overflows it; Python compares ints and floats exactly.
        return (1, int(value) if isinstance(value, bool) else value, item_id)
    return (2, str(value), item_id)
