"""state.in-memory: store-level behaviour the HTTP conformance suite cannot see."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from daprforge.sidecar.components.metadata import ComponentConfig, ComponentMetadata
from daprforge.sidecar.state.base import (
    FEATURE_ETAG,
    FEATURE_QUERY_API,
    FEATURE_TRANSACTIONAL,
    FEATURE_TTL,
    BulkGetResult,
    DeleteRequest,
    ETagMismatchError,
    Query,
    QueryError,
    SetRequest,
    StateItem,
)
from daprforge.sidecar.state.memory import InMemoryStore, create


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(clock: FakeClock) -> AsyncIterator[InMemoryStore]:
    store = InMemoryStore(clock=clock)
    await store.init()
    yield store
    await store.close()


async def must_get(store: InMemoryStore, key: str) -> StateItem:
    item = await store.get(key)
    assert item is not None, f"{key!r} is missing"
    return item


async def etag_of(store: InMemoryStore, key: str) -> str:
    etag = (await must_get(store, key)).etag
    assert etag is not None
    return etag


def test_create_ignores_metadata_and_declares_daprd_features() -> None:
    store = create(ComponentConfig("s", ComponentMetadata({"anything": "x"})))
    assert isinstance(store, InMemoryStore)
    assert {FEATURE_ETAG, FEATURE_TRANSACTIONAL, FEATURE_TTL} <= store.features
    assert FEATURE_QUERY_API not in store.features


async def test_values_round_trip_with_a_new_uuid_etag_per_write(store: InMemoryStore) -> None:
    await store.set(SetRequest("k", b'{"a":1}'))
    first = await must_get(store, "k")
    assert (first.value, first.expires_at) == (b'{"a":1}', None)
    assert uuid.UUID(first.etag or "").version == 4

    await store.set(SetRequest("k", b'{"a":2}'))
    second = await must_get(store, "k")
    assert second.value == b'{"a":2}'
    assert second.etag != first.etag
    assert await store.get("missing") is None


async def test_stored_values_cannot_be_mutated_by_the_caller(store: InMemoryStore) -> None:
    buffer = bytearray(b'"before"')
    await store.set(SetRequest("k", buffer))  # type: ignore[arg-type]
    buffer[:] = b'"after!!"'
    item = await must_get(store, "k")
    assert item.value == b'"before"'
    assert type(item.value) is bytes


async def test_etag_checks_on_set_and_delete(store: InMemoryStore) -> None:
    await store.set(SetRequest("k", b"1"))
    etag = await etag_of(store, "k")

    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"2", etag="not-the-etag"))
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("missing", b"2", etag=etag))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest("k", etag="not-the-etag"))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest("missing", etag=etag))

    await store.set(SetRequest("k", b"2", etag=etag))
    with pytest.raises(ETagMismatchError):  # the etag changed with the write
        await store.set(SetRequest("k", b"3", etag=etag))
    await store.delete(DeleteRequest("k", etag=await etag_of(store, "k")))
    assert await store.get("k") is None

    await store.delete(DeleteRequest("missing"))  # no etag: deleting nothing succeeds


async def test_first_write(store: InMemoryStore) -> None:
    await store.set(SetRequest("k", b"1", first_write=True))
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"2", first_write=True))
    # daprd's in-memory store applies the same rule to deletes.
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest("k", first_write=True))
    etag = await etag_of(store, "k")
    await store.set(SetRequest("k", b"2", etag=etag, first_write=True))
    await store.delete(DeleteRequest("k", etag=await etag_of(store, "k"), first_write=True))
    await store.delete(DeleteRequest("k", first_write=True))  # missing: nothing to protect


async def test_ttl_expiry(store: InMemoryStore, clock: FakeClock) -> None:
    await store.set(SetRequest("k", b"1", ttl_seconds=10))
    item = await must_get(store, "k")
    assert item.expires_at == datetime.fromtimestamp(clock.now + 10, UTC)
    etag = item.etag

    clock.now += 10  # expiry is strictly after the deadline, as in daprd
    assert await store.get("k") is not None
    clock.now += 0.001
    assert await store.get("k") is None
    assert await store.bulk_get(["k"]) == [BulkGetResult("k")]
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest("k", b"2", etag=etag))
    await store.set(SetRequest("k", b"2", first_write=True))  # expired counts as missing

    # A write without a TTL removes the old expiry.
    await store.set(SetRequest("k", b"3", ttl_seconds=5))
    await store.set(SetRequest("k", b"4"))
    clock.now += 3600
    item = await must_get(store, "k")
    assert (item.value, item.expires_at) == (b"4", None)


async def test_sweep_removes_only_expired_items(store: InMemoryStore, clock: FakeClock) -> None:
    await store.set(SetRequest("short", b"1", ttl_seconds=1))
    await store.set(SetRequest("long", b"1", ttl_seconds=100))
    await store.set(SetRequest("forever", b"1"))
    await store.set(SetRequest("rewritten", b"1", ttl_seconds=1))
    await store.set(SetRequest("rewritten", b"2", ttl_seconds=100))
    await store.set(SetRequest("deleted", b"1", ttl_seconds=1))
    await store.delete(DeleteRequest("deleted"))

    clock.now += 2
    assert store.sweep() == 1
    assert len(store) == 3
    assert await store.get("rewritten") is not None

    clock.now += 100
    assert store.sweep() == 2
    assert len(store) == 1


async def test_background_sweep_and_close(clock: FakeClock) -> None:
    store = InMemoryStore(clock=clock, sweep_interval=0.005)
    await store.init()
    await store.set(SetRequest("k", b"1", ttl_seconds=1))
    clock.now += 2
    for _ in range(200):
        if not len(store):
            break
        await asyncio.sleep(0.005)
    assert len(store) == 0  # gone without anyone reading it
    await store.close()
    await store.close()  # idempotent


async def test_multi_is_all_or_nothing(store: InMemoryStore) -> None:
    await store.set(SetRequest("a", b"1"))
    await store.set(SetRequest("b", b"1"))
    etag_a = await etag_of(store, "a")

    with pytest.raises(ETagMismatchError):
        await store.multi(
            [
                SetRequest("a", b"2", etag=etag_a),
                SetRequest("new", b"2"),
                DeleteRequest("b", etag="wrong"),
            ]
        )
    item = await must_get(store, "a")
    assert (item.value, item.etag) == (b"1", etag_a)
    assert await store.get("new") is None
    assert await store.get("b") is not None

    await store.multi(
        [SetRequest("a", b"2", etag=etag_a), SetRequest("new", b"2"), DeleteRequest("b")]
    )
    assert [r.item.value if r.item else None for r in await store.bulk_get(["a", "new", "b"])] == [
        b"2",
        b"2",
        None,
    ]


async def test_multi_checks_etags_against_the_state_before_it(store: InMemoryStore) -> None:
    # As daprd: every etag is compared with the pre-transaction state, so a later operation
    # on the same key may use the etag the earlier one is about to replace.
    await store.set(SetRequest("k", b"1"))
    etag = await etag_of(store, "k")
    await store.multi([SetRequest("k", b"2", etag=etag), DeleteRequest("k", etag=etag)])
    assert await store.get("k") is None


async def test_bulk_get_keeps_request_order(store: InMemoryStore) -> None:
    await store.set(SetRequest("a", b"1"))
    await store.set(SetRequest("c", b"3"))
    results = await store.bulk_get(["c", "b", "a", "c"])
    assert [r.key for r in results] == ["c", "b", "a", "c"]
    assert [r.item.value if r.item else None for r in results] == [b"3", None, b"1", b"3"]


async def test_query_is_not_supported(store: InMemoryStore) -> None:
    with pytest.raises(QueryError):
        await store.query(Query(filter=None))
