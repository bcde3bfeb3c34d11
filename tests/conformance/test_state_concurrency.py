"""Optimistic concurrency under load: reference §1.10 (etags, first-write), §1.4 (409 on etag
mismatch). No lost updates, exactly one winner per etag."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from ._support import Sidecar, describe, new_key

CLIENTS = 50
INCREMENTS_PER_CLIENT = 1


async def test_racing_read_modify_write_loses_no_update(sidecar: Sidecar) -> None:
    key = new_key("counter")
    await sidecar.save_ok(key, 0)
    conflicts = 0

    async def worker() -> None:
        nonlocal conflicts
        for _ in range(INCREMENTS_PER_CLIENT):
            for attempt in range(500):
                got = await sidecar.get(key)
                assert got.status_code == 200, describe(got)
                etag = got.headers["etag"]
                resp = await sidecar.save([{"key": key, "value": got.json() + 1, "etag": etag}])
                if resp.status_code == 204:
                    break
                assert resp.status_code == 409, describe(resp)
                assert resp.json()["errorCode"] == "ERR_STATE_SAVE"
                conflicts += 1
                # jittered exponential backoff keeps the race short without serializing it
                await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
            else:
                raise AssertionError("gave up after 500 conflicts")

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    assert (await sidecar.get(key)).json() == CLIENTS * INCREMENTS_PER_CLIENT
    assert conflicts > 0, "50 racing clients never conflicted: the race did not happen"


async def test_same_etag_has_exactly_one_winner(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "start")
    etag = await sidecar.get_etag(key)
    results = await asyncio.gather(
        *(sidecar.save([{"key": key, "value": i, "etag": etag}]) for i in range(20))
    )
    codes = Counter(r.status_code for r in results)
    assert codes == {204: 1, 409: 19}, codes
    winner = next(i for i, r in enumerate(results) if r.status_code == 204)
    assert (await sidecar.get(key)).json() == winner


async def test_racing_first_write_has_exactly_one_winner(sidecar: Sidecar) -> None:
    key = new_key()
    options = {"concurrency": "first-write"}
    results = await asyncio.gather(
        *(sidecar.save([{"key": key, "value": i, "options": options}]) for i in range(20))
    )
    codes = Counter(r.status_code for r in results)
    loser = 500 if sidecar.kind.startswith("postgresql") else 409
    assert codes == {204: 1, loser: 19}, codes
    winner = next(i for i, r in enumerate(results) if r.status_code == 204)
    assert (await sidecar.get(key)).json() == winner


async def test_racing_deletes_with_one_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    etag = await sidecar.get_etag(key)
    results = await asyncio.gather(*(sidecar.delete(key, etag=etag) for _ in range(10)))
    codes = Counter(r.status_code for r in results)
    assert codes == {204: 1, 409: 9}, codes
