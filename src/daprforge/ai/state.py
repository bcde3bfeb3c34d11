"""The agent's state access: one bulk read per request, then writes based on what it read.

A request needs several documents (its rate-limit window, the user's usage, the session,
the cached answer); reading them in one ``get_bulk`` costs one round trip to the sidecar
instead of one each. Later writes reuse the ETags of that read, so an uncontended update
is a single save; when somebody wrote in between, the save conflicts and the ordinary
read-modify-write loop (``state.update``) takes over, so no increment is ever lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from daprforge.client import ConcurrencyError, DaprClient, StateItem, Upsert
from daprforge.client.codec import decode_value

T = TypeVar("T")
RETRIES = 50
"""Conflicts tolerated per write: many answers of one user can land at once, and each
round of conflicts lets one writer through."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    items: dict[str, StateItem[Any] | None]

    def get(self, key: str, type: type[T]) -> StateItem[T] | None:
        item = self.items.get(key)
        if item is None:
            return None
        return StateItem(item.key, decode_value(item.value, type), item.etag, item.metadata)


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """``change`` applied to ``key``, which the request read as ``current``."""

    key: str
    change: Callable[[T | None], T]
    current: StateItem[T] | None
    type: type[T]
    ttl: int | None = None

    def upsert(self) -> Upsert:
        current = self.current
        return Upsert(
            self.key,
            self.change(current.value if current is not None else None),
            etag=current.etag if current is not None else None,
            ttl=self.ttl,
            concurrency="first-write" if current is None else None,
        )


async def read(dapr: DaprClient, store: str, keys: Iterable[str]) -> Snapshot:
    return Snapshot(await dapr.state.get_bulk(store, keys))


async def write(
    dapr: DaprClient,
    store: str,
    key: str,
    change: Callable[[T | None], T],
    current: StateItem[T] | None,
    *,
    type: type[T],
    ttl: int | None = None,
    retries: int = RETRIES,
) -> T:
    """Save ``change(current)`` if the key is still as read (ETag; first-write when it
    did not exist); after a conflict, read-modify-write until it holds (ConcurrencyError
    after ``retries``). ``change`` may run more than once and may raise to refuse."""
    return await dapr.state.update(
        store, key, change, type=type, ttl=ttl, retries=retries, current=current
    )


async def write_all(
    dapr: DaprClient, store: str, changes: Sequence[Change[Any]], plain: Sequence[Upsert] = ()
) -> None:
    """``changes`` and ``plain`` writes in one transaction, guarded by the ETags read (one
    round trip); when anything changed in between, each change runs its own
    read-modify-write loop instead."""
    if all(c.current is None or c.current.etag is not None for c in changes):
        try:
            await dapr.state.transaction(store, [*(c.upsert() for c in changes), *plain])
        except ConcurrencyError:
            pass
        else:
            return
    await asyncio.gather(
        *(
            dapr.state.update(store, c.key, c.change, type=c.type, ttl=c.ttl, retries=RETRIES)
            for c in changes
        ),
        *(dapr.state.save(store, p.key, p.value, ttl=p.ttl) for p in plain),
    )
