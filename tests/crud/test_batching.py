"""Group commit of creates (ResourceStore.create), against a fake state API: concurrent
creates share transactions, a refused batch fails only what the store refuses, and a
create whose request went away is still committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from daprforge.client import DaprClient, DaprError, Delete, StateItem, Upsert
from daprforge.resources import ResourceOptions, ResourceStore
from tests.crud._app import SPEC, ExerciseFields


class FakeState:
    """Commits every transaction after a short delay, refusing any that writes a "poison"."""

    def __init__(self) -> None:
        self.committed: list[list[Upsert | Delete]] = []

    async def get(self, store: str, key: str) -> StateItem[Any] | None:
        return None

    async def get_bulk(self, store: str, keys: Sequence[str]) -> dict[str, StateItem[Any] | None]:
        return dict.fromkeys(keys)

    async def transaction(self, store: str, operations: Sequence[Upsert | Delete]) -> None:
        await asyncio.sleep(0.01)
        names = [
            op.value["item"].get("name")
            for op in operations
            if isinstance(op, Upsert) and isinstance(op.value, dict) and "item" in op.value
        ]
        if "poison" in names:
            raise DaprError(500, "ERR_STATE_TRANSACTION", "refused")
        self.committed.append(list(operations))

    def items(self) -> list[str]:
        return [
            op.value["item"]["name"]
            for ops in self.committed
            for op in ops
            if isinstance(op, Upsert) and "item" in op.value
        ]


class FakeDapr:
    def __init__(self) -> None:
        self.state = FakeState()


def make_store() -> tuple[ResourceStore[Any], FakeState]:
    dapr = FakeDapr()
    options = ResourceOptions(app_id="batching", listing="index")
    return ResourceStore(cast(DaprClient, dapr), SPEC, options), dapr.state


async def test_concurrent_creates_share_transactions() -> None:
    store, state = make_store()
    names = [f"e{i}" for i in range(20)]
    created = await asyncio.gather(*(store.create(ExerciseFields(name=n)) for n in names))
    assert [c.item.name for c in created] == names
    assert sorted(state.items()) == sorted(names)  # each exactly once
    assert len(state.committed) < len(names)  # the first alone, the others together
    # Every transaction writes the index buckets of its items too.
    for ops in state.committed:
        assert any(op.key.startswith("exercises-index:") for op in ops)


async def test_a_refused_item_fails_alone() -> None:
    store, state = make_store()
    names = ["a", "b", "poison", "c", "d", "e"]
    results = await asyncio.gather(
        *(store.create(ExerciseFields(name=n)) for n in names), return_exceptions=True
    )
    failed = [n for n, r in zip(names, results, strict=True) if isinstance(r, BaseException)]
    assert failed == ["poison"]
    assert isinstance(results[2], DaprError)
    assert sorted(state.items()) == ["a", "b", "c", "d", "e"]


async def test_a_create_whose_request_went_away_is_still_committed() -> None:
    store, state = make_store()
    first = asyncio.create_task(store.create(ExerciseFields(name="first")))
    await asyncio.sleep(0)  # its batch is committing
    second = asyncio.create_task(store.create(ExerciseFields(name="gone")))
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await first
    await store.close()  # waits for the batches accepted so far
    assert sorted(state.items()) == ["first", "gone"]
