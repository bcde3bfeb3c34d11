"""50 concurrent PATCHes of one resource with ETags, against a real sidecar on real
PostgreSQL (state.postgresql v1) and on SQLite: no update is lost, and every 412 is
for an ETag that really was stale."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.crud.conftest import Crud

URL = "/exercises"
WRITERS = 50


async def test_the_same_etag_wins_once(crud: Crud) -> None:
    created = await crud.client.post(URL, json={"name": "counter"})
    url, etag = created.headers["location"], created.headers["etag"]

    responses = await asyncio.gather(
        *(
            crud.client.patch(url, json={"points": n}, headers={"If-Match": etag})
            for n in range(1, WRITERS + 1)
        )
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 412: WRITERS - 1}
    (winner,) = [r for r in responses if r.status_code == 200]
    current = await crud.client.get(url)
    assert current.json()["points"] == winner.json()["points"]
    assert current.headers["etag"] == winner.headers["etag"]
    # Every loser is told which version is current now.
    assert {r.headers["etag"] for r in responses if r.status_code == 412} == {
        winner.headers["etag"]
    }


async def test_no_increment_is_lost(crud: Crud) -> None:
    created = await crud.client.post(URL, json={"name": "counter"})
    url = created.headers["location"]
    successes: list[tuple[str, str]] = []  # (If-Match sent, ETag received)
    refused: list[str] = []  # If-Match of each 412

    async def increment() -> None:
        while True:
            read = await crud.client.get(url)
            etag = read.headers["etag"]
            patched = await crud.client.patch(
                url, json={"points": read.json()["points"] + 1}, headers={"If-Match": etag}
            )
            if patched.status_code == 200:
                successes.append((etag, patched.headers["etag"]))
                return
            assert patched.status_code == 412, patched.text
            refused.append(etag)

    await asyncio.gather(*(increment() for _ in range(WRITERS)))

    final = await crud.client.get(url)
    assert final.json()["points"] == WRITERS  # no lost update
    # The successful writes form one chain of versions, each built on the one before.
    based_on = [sent for sent, _ in successes]
    produced = [received for _, received in successes]
    assert len(set(based_on)) == WRITERS  # no two writes succeeded on the same version
    assert set(based_on) == {created.headers["etag"], *produced} - {final.headers["etag"]}
    # Every 412 named a version some successful write had already replaced.
    assert set(refused) <= set(based_on)
    assert refused, "50 writers racing should have lost at least once"


async def test_concurrent_creates_and_deletes_keep_the_list_exact(crud: Crud) -> None:
    created = await asyncio.gather(
        *(crud.client.post(URL, json={"name": f"item {n}"}) for n in range(30))
    )
    assert {r.status_code for r in created} == {201}
    doomed = created[::3]
    deleted = await asyncio.gather(
        *(
            crud.client.delete(r.headers["location"], headers={"If-Match": r.headers["etag"]})
            for r in doomed
        )
    )
    assert {r.status_code for r in deleted} == {204}
    items: list[dict[str, Any]] = (await crud.client.get(URL, params={"limit": 100})).json()[
        "items"
    ]
    kept = {r.json()["id"] for r in created} - {r.json()["id"] for r in doomed}
    assert {item["id"] for item in items} == kept
