"""The resource API end to end: a real sidecar process on SQLite (index listing) and on
PostgreSQL v1 (query listing), change events through the real in-memory pub/sub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from daprforge.client import SidecarUnavailableError
from daprforge.resources.models import is_id
from tests.crud.conftest import Crud, CrudFactory

URL = "/exercises"


async def create(crud: Crud, **fields: Any) -> dict[str, Any]:
    response = await crud.client.post(URL, json={"name": "Lists", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{URL}/{body['id']}"
    body["_etag"] = response.headers["etag"]
    return body


async def test_create_read_update_delete(crud: Crud) -> None:
    created = await create(crud, points=3, tags=["py"])
    assert is_id(created["id"])
    assert created["created_at"] == created["updated_at"]
    url, etag = f"{URL}/{created['id']}", created["_etag"]

    read = await crud.client.get(url)
    assert read.headers["etag"] == etag
    assert read.json()["points"] == 3
    assert (await crud.client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert (await crud.client.get(url, headers={"If-None-Match": '"old"'})).status_code == 200

    patched = await crud.client.patch(url, json={"points": 4}, headers={"If-Match": etag})
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == ["py"]
    assert patched.json()["updated_at"] > created["updated_at"]
    new_etag = patched.headers["etag"]
    assert new_etag != etag

    replaced = await crud.client.put(url, json={"name": "Tuples"}, headers={"If-Match": new_etag})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["points"] == 0  # PUT replaces every field
    assert replaced.json()["created_at"] == created["created_at"]

    stale = await crud.client.delete(url, headers={"If-Match": new_etag})
    assert stale.status_code == 412
    assert stale.headers["etag"] == replaced.headers["etag"]
    deleted = await crud.client.delete(url, headers={"If-Match": replaced.headers["etag"]})
    assert deleted.status_code == 204
    assert (await crud.client.get(url)).status_code == 404
    assert (await crud.client.patch(url, json={}, headers={"If-Match": "*"})).status_code == 404


async def test_writes_need_if_match(crud: Crud) -> None:
    created = await create(crud)
    url = f"{URL}/{created['id']}"
    for method, body in (("PUT", {"name": "x"}), ("PATCH", {"name": "x"})):
        response = await crud.client.request(method, url, json=body)
        assert response.status_code == 428, method
        assert "If-Match" in response.json()["detail"]
    assert (await crud.client.patch(url, json={"name": "x"}, headers={"If-Match": "*"})).is_success


async def test_without_required_if_match_a_write_applies_to_the_current_version(
    crud_factory: CrudFactory,
) -> None:
    crud = await crud_factory(require_if_match=False)
    created = await create(crud)
    url = f"{URL}/{created['id']}"
    await asyncio.gather(*(crud.client.patch(url, json={"points": n}) for n in range(1, 6)))
    assert (await crud.client.get(url)).json()["points"] in range(1, 6)


async def test_a_patch_that_changes_nothing_keeps_the_version(crud: Crud) -> None:
    created = await create(crud, points=2)
    url = f"{URL}/{created['id']}"
    same = await crud.client.patch(url, json={"points": 2}, headers={"If-Match": created["_etag"]})
    assert same.status_code == 200
    assert same.headers["etag"] == created["_etag"]
    assert same.json()["updated_at"] == created["updated_at"]


async def test_listing_pages_filters_and_sorts(crud: Crud) -> None:
    names = ["delta", "alpha", "charlie", "bravo", "echo", "alpha"]
    for points, name in enumerate(names):
        await create(crud, name=name, points=points, level="advanced" if points % 2 else "beginner")

    async def everything(**params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = await crud.client.get(URL, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= params.get("limit", 20)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    oldest_first = await everything(limit=4)
    assert [item["name"] for item in oldest_first] == names
    by_name = await everything(limit=2, sort="name")
    assert [item["name"] for item in by_name] == sorted(names)
    newest_first = await everything(limit=5, sort="-created_at")
    assert [item["name"] for item in newest_first] == names[::-1]
    advanced = await everything(limit=1, level="advanced")
    assert [item["name"] for item in advanced] == ["alpha", "bravo", "alpha"]
    alphas = await everything(name="alpha", sort="-points")
    assert [item["points"] for item in alphas] == [5, 1]
    assert await everything(name="zulu") == []


async def test_an_idempotency_key_makes_a_retried_create_answer_with_the_first_item(
    crud: Crud,
) -> None:
    body = {"name": "Lists", "points": 2}
    first = await crud.client.post(URL, json=body, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await crud.client.post(URL, json=body, headers={"Idempotency-Key": "order-1"})
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    other = await crud.client.post(URL, json=body, headers={"Idempotency-Key": "order-2"})
    assert other.json()["id"] != first.json()["id"]
    listed = (await crud.client.get(URL)).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted([first.json()["id"], other.json()["id"]])
    await crud.wait_for_events(2)
    await asyncio.sleep(0.2)  # a third event would have arrived by now
    assert sorted(e.data["id"] for e in crud.events) == sorted(i["id"] for i in listed)


async def test_a_create_whose_answer_was_lost_is_not_a_replay(
    crud: Crud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar commits the transaction but its answer is lost (a timeout, simulated:
    the real transaction runs, then the call raises as a timed-out one would)."""
    state = crud.store.dapr.state
    commit = state.transaction

    async def committed_then_timed_out(*args: Any, **kwargs: Any) -> None:
        await commit(*args, **kwargs)
        raise SidecarUnavailableError(504, "", "state.transaction: did not answer in time")

    monkeypatch.setattr(state, "transaction", committed_then_timed_out)
    made = await crud.client.post(URL, json={"name": "A"}, headers={"Idempotency-Key": "lost"})
    assert made.status_code == 201, made.text
    assert "idempotent-replayed" not in made.headers
    await crud.wait_for_events(1)  # announced now, not left for the sweep
    assert crud.events[0].data["id"] == made.json()["id"]


async def test_concurrent_creates_with_one_idempotency_key_make_one_item(crud: Crud) -> None:
    headers = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(
        *(crud.client.post(URL, json={"name": "Sets"}, headers=headers) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert len((await crud.client.get(URL)).json()["items"]) == 1


async def test_idempotency_key_misuse_is_a_clear_4xx(crud: Crud) -> None:
    made = await crud.client.post(URL, json={"name": "A"}, headers={"Idempotency-Key": "k"})
    reused = await crud.client.post(URL, json={"name": "B"}, headers={"Idempotency-Key": "k"})
    assert reused.status_code == 422
    assert "other fields" in reused.json()["detail"]
    for bad in ("", "x" * 256, "é"):
        response = await crud.client.post(
            URL, json={"name": "A"}, headers={"Idempotency-Key": bad.encode()}
        )
        assert response.status_code == 400, (bad, response.text)
        assert "Idempotency-Key" in response.json()["detail"]
    url = made.headers["location"]
    etag = made.headers["etag"]
    assert (await crud.client.delete(url, headers={"If-Match": etag})).status_code == 204
    gone = await crud.client.post(URL, json={"name": "A"}, headers={"Idempotency-Key": "k"})
    assert gone.status_code == 409
    assert "deleted" in gone.json()["detail"]
    assert (await crud.client.get(URL)).json()["items"] == []


async def test_numbers_sort_as_numbers_on_every_store(crud: Crud) -> None:
    """A state query sorts JSON values as text (PostgreSQL v1: 10 before 9); the stored
    sort text keeps the query listing in the same order as the index listing."""
    points = [9, 10, 100, 0, 2, 1_000_000, 35]
    for value in points:
        await create(crud, points=value)
    for sort, expected in (("points", sorted(points)), ("-points", sorted(points)[::-1])):
        response = await crud.client.get(URL, params={"sort": sort, "limit": 100})
        assert response.status_code == 200, response.text
        assert [item["points"] for item in response.json()["items"]] == expected


async def test_items_without_sort_text_get_it_when_a_replica_starts(
    crud_factory: CrudFactory,
) -> None:
    """Items written before a sort field was declared (or by an older version) have no
    sort text; on the query listing a new replica's start-up backfill gives it to them."""
    first = await crud_factory()
    points = [9, 10, 1, 100]
    ids = [(await create(first, points=value))["id"] for value in points]
    state = first.store.dapr.state
    store = first.store.options.state_store
    for item_id in ids:
        found = await state.get(store, first.store.item_key(item_id))
        assert found is not None
        assert "sort" in found.value
        legacy = {k: v for k, v in found.value.items() if k != "sort"}
        await state.save(store, first.store.item_key(item_id), legacy)

    second = await crud_factory()
    if await second.store.listing() == "query":
        async with asyncio.timeout(10):
            while True:
                found_all = await state.get_bulk(store, map(second.store.item_key, ids))
                if all("sort" in f.value for f in found_all.values() if f is not None):
                    break
                await asyncio.sleep(0.05)
    listed = (await second.client.get(URL, params={"sort": "points"})).json()["items"]
    assert [item["points"] for item in listed] == sorted(points)


async def test_bad_list_requests_are_400s(crud: Crud) -> None:
    await create(crud)
    await create(crud)
    first = (await crud.client.get(URL, params={"limit": 1})).json()
    assert first["next_cursor"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cursor": "garbage"}, "cursor is not valid"),
        ({"cursor": first["next_cursor"], "sort": "-name"}, "other filters or sort"),
        ({"cursor": first["next_cursor"], "name": "Lists"}, "other filters or sort"),
        ({"sort": "tags"}, "Cannot sort by 'tags'"),
        ({"sort": "-description"}, "Cannot sort by"),
        ({"colour": "red"}, "Unknown query parameter colour"),
    ]
    for params, message in cases:
        response = await crud.client.get(URL, params=params)
        assert response.status_code == 400, params
        assert response.headers["content-type"].startswith("application/problem+json")
        assert message in response.json()["detail"], (params, response.json())
    for params in ({"limit": 0}, {"limit": 101}, {"points": "many"}, {"level": "expert"}):
        assert (await crud.client.get(URL, params=params)).status_code == 422, params


async def test_bad_bodies_and_ids_are_4xx(crud: Crud) -> None:
    cases: list[tuple[Any, str]] = [
        ({}, "missing"),
        ({"name": 5}, "string_type"),
        ({"name": "x", "points": "many"}, "int_parsing"),
        ({"name": "x", "colour": "red"}, "extra_forbidden"),
        ({"name": "x", "id": "mine"}, "extra_forbidden"),  # ids are the server's
        ([1, 2], "model_attributes_type"),
    ]
    for body, error in cases:
        response = await crud.client.post(URL, json=body)
        assert response.status_code == 422, body
        assert error in {e["type"] for e in response.json()["errors"]}, response.json()
    broken = await crud.client.post(
        URL, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    huge = await crud.client.post(URL, content=b"x" * (2 << 20))
    assert huge.status_code == 413
    assert (await crud.client.get(f"{URL}/..%2Fsecrets")).status_code in (404, 422)
    assert (await crud.client.get(f"{URL}/not-an-id")).status_code == 422
    created = await create(crud)
    patched = await crud.client.patch(
        f"{URL}/{created['id']}", json={"name": None}, headers={"If-Match": created["_etag"]}
    )
    assert patched.status_code == 422


async def test_every_change_is_published_once(crud: Crud) -> None:
    created = await create(crud, points=1)
    url = f"{URL}/{created['id']}"
    patched = await crud.client.patch(url, json={"points": 2}, headers={"If-Match": "*"})
    await crud.client.delete(url, headers={"If-Match": patched.headers["etag"]})
    await crud.wait_for_events(3)
    await asyncio.sleep(0.2)  # nothing more arrives
    assert [e.type for e in crud.events] == [
        "exercise.created",
        "exercise.updated",
        "exercise.deleted",
    ]
    assert all(e.subject == created["id"] and e.source == "crud-tests" for e in crud.events)
    created_data, updated_data, deleted_data = (e.data for e in crud.events)
    assert created_data is not None
    assert created_data["changed"]["points"] == 1
    assert updated_data == {
        "id": created["id"],
        "changed": {"points": 2, "updated_at": patched.json()["updated_at"]},
    }
    assert deleted_data == {"id": created["id"], "changed": {}}
    # Published events leave no outbox records behind.
    await crud.store.relay.drained()  # type: ignore[union-attr]
    assert await outbox_keys(crud) == []


async def outbox_keys(crud: Crud) -> list[str]:
    """The outbox records in the store: found by a query (query API), or through the
    index buckets that list them."""
    store = crud.store
    if await store.listing() == "query":
        async with crud.sidecar.client() as dapr:
            result = await dapr.state.query(
                "statestore", {"filter": {"EQ": {"outbox": store.kind}}}
            )
        return [item.key for item in result.items]
    return [event.key for event in await store._index_records()]


async def test_a_failing_broker_never_fails_a_write(crud_factory: CrudFactory) -> None:
    """The pub/sub named does not exist, so every publish fails: writes still succeed and
    their events wait in the outbox."""
    crud = await crud_factory(pubsub="no-such-pubsub")
    created = await create(crud)
    patched = await crud.client.patch(
        f"{URL}/{created['id']}", json={"points": 9}, headers={"If-Match": created["_etag"]}
    )
    assert patched.status_code == 200
    relay = crud.store.relay
    assert relay is not None
    async with asyncio.timeout(10):
        while relay.failures < 2:  # noqa: ASYNC110 - a counter of the relay's retries
            await asyncio.sleep(0.05)
    assert relay.published == 0
    assert len(await outbox_keys(crud)) == 2


async def test_events_left_by_a_stopped_process_are_swept(crud_factory: CrudFactory) -> None:
    """A replica whose broker is gone leaves its events in the outbox; another replica
    (sharing the state store) sweeps them up: by query on PostgreSQL, through the index
    buckets on SQLite. They are published with their ids, and the records removed."""
    broken = await crud_factory(pubsub="no-such-pubsub")
    created = await create(broken)
    assert broken.store.relay is not None
    await broken.store.relay.close(timeout=0.1)  # "stops" with the event unpublished

    healthy = await crud_factory()
    relay = healthy.store.relay
    assert relay is not None
    await healthy.store.listing()  # the sweep starts once the strategy is known
    relay.sweep_grace = 0
    assert await relay.sweep() == 1
    await healthy.wait_for_events(1)
    assert healthy.events[0].type == "exercise.created"
    assert healthy.events[0].subject == created["id"]
    await relay.drained()
    assert await outbox_keys(healthy) == []


async def test_soft_delete_keeps_the_item_out_of_sight(crud_factory: CrudFactory) -> None:
    crud = await crud_factory(soft_delete=True)
    kept, gone = await create(crud, name="kept"), await create(crud, name="gone")
    url = f"{URL}/{gone['id']}"
    assert (await crud.client.delete(url, headers={"If-Match": gone["_etag"]})).status_code == 204
    assert (await crud.client.get(url)).status_code == 404
    assert (await crud.client.delete(url)).status_code == 404
    listed = (await crud.client.get(URL)).json()["items"]
    assert [item["id"] for item in listed] == [kept["id"]]
    async with crud.sidecar.client() as dapr:
        stored = await dapr.state.get("statestore", f"exercises:{gone['id']}")
    assert stored is not None
    assert stored.value["deleted"] is True
    await crud.wait_for_events(3)
    assert crud.events[-1].type == "exercise.deleted"
