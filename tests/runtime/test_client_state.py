"""The state API of DaprClient against a real sidecar, for each state store kind."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from daprforge.client import (
    ComponentNotFoundError,
    ConcurrencyError,
    DaprClient,
    DaprError,
    Delete,
    Upsert,
)
from daprforge.testing import Sidecar

from .conftest import SESSION, new_key

pytestmark = SESSION

Store = tuple[DaprClient, str]


class Account(BaseModel):
    owner: str
    balance: int


async def test_missing_key_is_none(store: Store) -> None:
    dapr, name = store
    assert await dapr.state.get(name, new_key()) is None


async def test_save_and_get_a_model(store: Store) -> None:
    dapr, name = store
    key = new_key()
    await dapr.state.save(name, key, Account(owner="ada", balance=10))
    item = await dapr.state.get(name, key, type=Account)
    assert item is not None
    assert item.value == Account(owner="ada", balance=10)
    assert item.etag
    untyped = await dapr.state.get(name, key)
    assert untyped is not None
    assert untyped.value == {"owner": "ada", "balance": 10}


async def test_keys_with_reserved_characters(store: Store) -> None:
    dapr, name = store
    key = new_key("a/b c+d%e")
    await dapr.state.save(name, key, "v")
    item = await dapr.state.get(name, key, type=str)
    assert item is not None
    assert (item.key, item.value) == (key, "v")
    found = await dapr.state.get_bulk(name, [key])
    assert found[key] is not None


async def test_etag_conflict_raises_concurrency_error(store: Store) -> None:
    dapr, name = store
    key = new_key()
    await dapr.state.save(name, key, {"n": 1})
    first = await dapr.state.get(name, key)
    assert first is not None
    await dapr.state.save(name, key, {"n": 2}, etag=first.etag)  # still current: accepted
    with pytest.raises(ConcurrencyError) as caught:
        await dapr.state.save(name, key, {"n": 3}, etag=first.etag)  # stale now
    assert caught.value.error_code == "ERR_STATE_SAVE"
    current = await dapr.state.get(name, key)
    assert current is not None
    assert current.value == {"n": 2}
    with pytest.raises(ConcurrencyError):
        await dapr.state.delete(name, key, etag=first.etag)
    await dapr.state.delete(name, key, etag=current.etag)
    assert await dapr.state.get(name, key) is None


async def test_first_write_refuses_an_existing_key(store: Store) -> None:
    dapr, name = store
    key = new_key()
    await dapr.state.save(name, key, 1, concurrency="first-write")
    with pytest.raises(ConcurrencyError):
        await dapr.state.save(name, key, 2, concurrency="first-write")


async def test_ttl_is_reported(store: Store) -> None:
    dapr, name = store
    key = new_key()
    await dapr.state.save(name, key, "short-lived", ttl=60)
    item = await dapr.state.get(name, key)
    assert item is not None
    assert item.expires_at is not None


async def test_ttl_expires(dapr: DaprClient) -> None:
    key = new_key()
    await dapr.state.save("memstore", key, "short-lived", ttl=1)
    assert await dapr.state.get("memstore", key) is not None
    await asyncio.sleep(2.1)
    assert await dapr.state.get("memstore", key) is None


async def test_save_many_and_get_bulk(store: Store) -> None:
    dapr, name = store
    a, b, missing = new_key("a"), new_key("b"), new_key("missing")
    await dapr.state.save_many(name, {a: 1, b: {"x": [1, 2]}})
    found = await dapr.state.get_bulk(name, [missing, b, a])
    assert list(found) == [missing, b, a]  # the order asked for
    assert found[missing] is None
    assert found[a] is not None
    assert found[a].value == 1
    assert found[b] is not None
    assert found[b].value == {"x": [1, 2]}
    assert found[b].etag
    typed = await dapr.state.get_bulk(name, [a, missing], type=int)
    assert typed[a] is not None
    assert typed[a].value == 1


async def test_save_many_with_upserts_and_ttl(store: Store) -> None:
    dapr, name = store
    a, b = new_key("a"), new_key("b")
    await dapr.state.save_many(
        name, [Upsert(a, Account(owner="a", balance=1)), Upsert(b, 2)], ttl=60
    )
    item = await dapr.state.get(name, a, type=Account)
    assert item is not None
    assert item.value.owner == "a"
    assert item.expires_at is not None


async def test_transaction_is_atomic(store: Store) -> None:
    dapr, name = store
    keep, remove = new_key("keep"), new_key("remove")
    await dapr.state.save(name, remove, "old")
    await dapr.state.transaction(name, [Upsert(keep, {"v": 1}), Delete(remove)])
    assert await dapr.state.get(name, remove) is None
    kept = await dapr.state.get(name, keep)
    assert kept is not None
    assert kept.value == {"v": 1}


async def test_transaction_etag_conflict_raises_concurrency_error(store: Store) -> None:
    dapr, name = store
    key, other = new_key(), new_key()
    await dapr.state.save(name, key, 1)
    item = await dapr.state.get(name, key)
    assert item is not None
    await dapr.state.save(name, key, 2)  # the etag read above is stale now
    with pytest.raises(ConcurrencyError):
        await dapr.state.transaction(name, [Upsert(other, "x"), Upsert(key, 3, etag=item.etag)])
    assert await dapr.state.get(name, other) is None  # nothing written


async def test_update_creates_and_changes(store: Store) -> None:
    dapr, name = store
    key = new_key()

    def deposit(account: Account | None) -> Account:
        if account is None:
            return Account(owner="new", balance=5)
        return account.model_copy(update={"balance": account.balance + 5})

    assert await dapr.state.update(name, key, deposit, type=Account) == Account(
        owner="new", balance=5
    )

    async def double(account: Account | None) -> Account:
        assert account is not None
        return account.model_copy(update={"balance": account.balance * 2})

    assert (await dapr.state.update(name, key, double, type=Account)).balance == 10


async def test_update_from_an_item_already_read(store: Store) -> None:
    """``current=``: the caller's read is used first; a stale one still loses no write
    (the conflict makes update read again), and a missing key is created first-write."""
    dapr, name = store
    key, fresh = new_key(), new_key()
    await dapr.state.save(name, key, 1)
    stale = await dapr.state.get(name, key, type=int)
    await dapr.state.save(name, key, 10)  # someone else wrote after our read
    seen: list[int | None] = []

    def add_one(n: int | None) -> int:
        seen.append(n)
        return (n or 0) + 1

    assert await dapr.state.update(name, key, add_one, type=int, current=stale) == 11
    assert seen == [1, 10]  # the caller's value first, then the one read after the conflict
    assert await dapr.state.update(name, fresh, add_one, type=int, current=None) == 1
    item = await dapr.state.get(name, key, type=int)
    assert item is not None
    assert item.value == 11


async def test_concurrent_read_modify_write_loses_no_update(store: Store) -> None:
    dapr, name = store
    key = new_key("counter")
    loops, rounds = 20, 2

    async def loop() -> None:
        for _ in range(rounds):
            await dapr.state.update(name, key, lambda n: (n or 0) + 1, retries=100)

    await asyncio.gather(*(loop() for _ in range(loops)))
    item = await dapr.state.get(name, key)
    assert item is not None
    assert item.value == loops * rounds


async def test_without_retries_conflicts_surface_and_nothing_is_lost(store: Store) -> None:
    dapr, name = store
    key = new_key("counter")
    await dapr.state.save(name, key, 0)
    succeeded = 0

    async def attempt() -> None:
        nonlocal succeeded
        try:
            await dapr.state.update(name, key, lambda n: n + 1, retries=0)
        except ConcurrencyError:
            return
        succeeded += 1

    await asyncio.gather(*(attempt() for _ in range(20)))
    item = await dapr.state.get(name, key)
    assert item is not None
    assert 1 <= succeeded < 20  # some lost the race, and said so
    assert item.value == succeeded


async def test_unknown_store(dapr: DaprClient) -> None:
    with pytest.raises(ComponentNotFoundError) as caught:
        await dapr.state.get("no-such-store", "k")
    assert caught.value.status == 400
    assert caught.value.reason == "DAPR_STATE_NOT_FOUND"


@pytest.mark.postgres
async def test_query_on_postgres(pg_sidecar: Sidecar) -> None:
    prefix = new_key("q")
    async with pg_sidecar.client() as dapr:
        await dapr.state.save_many(
            "pgstore",
            {
                f"{prefix}-1": {"team": prefix, "owner": "ada", "balance": 1},
                f"{prefix}-2": {"team": prefix, "owner": "bob", "balance": 2},
                f"{prefix}-3": {"team": "other", "owner": "cy", "balance": 3},
            },
        )
        query = {
            "filter": {"EQ": {"team": prefix}},
            "sort": [{"key": "balance", "order": "DESC"}],
            "page": {"limit": 1},
        }
        page = await dapr.state.query("pgstore", query, type=dict[str, object])
        assert [item.key for item in page.items] == [f"{prefix}-2"]
        assert page.token
        rest = await dapr.state.query(
            "pgstore", {**query, "page": {"limit": 5, "token": page.token}}
        )
        assert [item.value["owner"] for item in rest.items] == ["ada"]
        none = await dapr.state.query("pgstore", {"filter": {"EQ": {"team": new_key()}}})
        assert none.items == []


async def test_query_unsupported_store(dapr: DaprClient) -> None:
    with pytest.raises(DaprError) as caught:
        await dapr.state.query("memstore", {})
    assert caught.value.error_code == "ERR_STATE_STORE_NOT_SUPPORTED"
