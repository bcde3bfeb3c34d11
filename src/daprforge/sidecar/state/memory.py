"""``state.in-memory``: a dict in the sidecar process, as components-contrib's in-memory store.

Every method runs to completion on the event loop without awaiting, so each one is atomic with
respect to the others and no lock is needed. That also makes ``multi`` atomic: it checks every
etag against the state before the transaction, then applies every operation, and nothing can
fail (or interleave) between the two steps.

Behaviour taken from components-contrib ``state/in-memory/in_memory.go``:

- a new random UUID etag on every write;
- an etag on a missing key, or a different etag, is an etag mismatch;
- ``first-write`` without an etag is a mismatch if the key exists, for saves *and* deletes;
- a TTL makes the item invisible once it has passed; reads drop expired items lazily and a
  background sweep removes the rest once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from daprforge.sidecar.components.metadata import ComponentConfig
from daprforge.sidecar.state.base import (
    FEATURE_DELETE_WITH_PREFIX,
    FEATURE_ETAG,
    FEATURE_KEYS_LIKE,
    FEATURE_TRANSACTIONAL,
    FEATURE_TTL,
    BulkGetResult,
    DeleteRequest,
    ETagMismatchError,
    Operation,
    Query,
    QueryError,
    QueryResult,
    SetRequest,
    StateItem,
    StateStore,
)

SWEEP_INTERVAL = 1.0
"""Seconds between background sweeps of expired items (daprd: 1 s)."""

# An entry is the item as reads return it, plus its deadline on ``clock`` (None: no TTL).
# Reads return the stored StateItem itself: it is frozen and its value is immutable bytes.
_Entry = tuple[StateItem, float | None]


class InMemoryStore:
    features: frozenset[str] = frozenset(
        {
            FEATURE_ETAG,
            FEATURE_TRANSACTIONAL,
            FEATURE_TTL,
            FEATURE_DELETE_WITH_PREFIX,
            FEATURE_KEYS_LIKE,
        }
    )

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        """``clock`` returns Unix seconds; tests pass a fake one to expire items at will."""
        self._entries: dict[str, _Entry] = {}
        # (deadline, key) for every TTL write. Entries go stale when a key is rewritten or
        # deleted; the sweep skips those, and rebuilds the heap if stale ones pile up.
        self._deadlines: list[tuple[float, str]] = []
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Number of stored entries, including expired ones not yet swept."""
        return len(self._entries)

    # -- lifecycle ------------------------------------------------------------------------

    async def init(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="daprforge-in-memory-sweep"
            )

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._entries.clear()
        self._deadlines.clear()

    async def ping(self) -> None:
        return None

    # -- reads ----------------------------------------------------------------------------

    async def get(self, key: str) -> StateItem | None:
        return self._live(key)

    async def bulk_get(self, keys: Sequence[str]) -> list[BulkGetResult]:
        return [BulkGetResult(key, self._live(key)) for key in keys]

    async def query(self, query: Query) -> QueryResult:
        raise QueryError("state.in-memory does not support the query API")

    # -- writes ---------------------------------------------------------------------------

    async def set(self, request: SetRequest) -> None:
        self._check(request)
        self._put(request)

    async def delete(self, request: DeleteRequest) -> None:
        self._check(request)
        self._entries.pop(request.key, None)

    async def multi(self, operations: Sequence[Operation]) -> None:
        # Check everything first, against the state before the transaction (as daprd does),
        # so that a mismatch anywhere leaves the store untouched.
        for operation in operations:
            self._check(operation)
        for operation in operations:
            if isinstance(operation, SetRequest):
                self._put(operation)
            else:
                self._entries.pop(operation.key, None)

    # -- expiry ---------------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove every expired item now; return how many were removed."""
        now = self._clock()
        heap, entries = self._deadlines, self._entries
        removed = 0
        while heap and heap[0][0] < now:
            deadline, key = heapq.heappop(heap)
            entry = entries.get(key)
            # Skip stale heap entries: the key was deleted, or rewritten with another TTL.
            if entry is not None and entry[1] == deadline:
                del entries[key]
                removed += 1
        # Keys rewritten over and over with a TTL leave a stale heap entry per write; keep the
        # heap within a constant factor of the live data.
        if len(heap) > 1024 and len(heap) > 2 * len(entries):
            self._deadlines = [(d, k) for k, (_, d) in entries.items() if d is not None]
            heapq.heapify(self._deadlines)
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()

    # -- internals ------------------------------------------------------------------------

    def _live(self, key: str) -> StateItem | None:
        """The item under ``key`` unless missing or expired (dropping it if expired)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        item, deadline = entry
        if deadline is not None and self._clock() > deadline:
            del self._entries[key]
            return None
        return item

    def _check(self, request: SetRequest | DeleteRequest) -> None:
        """Raise ETagMismatchError unless ``request`` may be applied to the current state.

        daprd looks the key up without checking its TTL, so an expired item not yet swept
        still "exists" there for up to a second; here an expired item is simply missing.
        """
        if request.etag:
            item = self._live(request.key)
            if item is None:
                raise ETagMismatchError(f"state not found or expired for key {request.key!r}")
            if item.etag != request.etag:
                raise ETagMismatchError(f"etag does not match for key {request.key!r}")
        elif request.first_write and self._live(request.key) is not None:
            raise ETagMismatchError(
                f"first-write: key {request.key!r} already exists and no etag was given"
            )

    def _put(self, request: SetRequest) -> None:
        # bytes() is a no-op for bytes and a copy for bytearray/memoryview, so a caller can
        # never mutate a stored value afterwards.
        value = bytes(request.value)
        etag = str(uuid.uuid4())
        if request.ttl_seconds is not None and request.ttl_seconds > 0:
            deadline = self._clock() + request.ttl_seconds
            expires_at = datetime.fromtimestamp(deadline, UTC)
            self._entries[request.key] = (StateItem(value, etag, expires_at), deadline)
            heapq.heappush(self._deadlines, (deadline, request.key))
        else:
            self._entries[request.key] = (StateItem(value, etag), None)


def create(config: ComponentConfig) -> StateStore:
    """The in-memory store takes no metadata (daprd ignores any it is given, and so do we)."""
    return InMemoryStore()
