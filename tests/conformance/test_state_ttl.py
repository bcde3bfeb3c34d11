"""TTL: reference §1.4 (ttlInSeconds), §1.5 (metadata.ttlExpireTime header), §0.1 (metadata.*
query parameters), §1.8 (metadata scoping in transactions), §7.2-7.4 (TTL per store).

Dapr's in-memory store expires keys but does not report ``metadata.ttlExpireTime`` (it has no TTL
feature); the header is only required for SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest

from ._support import (
    RFC3339_UTC_RE,
    Sidecar,
    assert_legacy_error,
    assert_no_content,
    describe,
    new_key,
    seed_expiring_keys,
)

REPORTS_TTL = ("sqlite", "postgresql-v1", "postgresql-v2")
TOLERANCE = 10.0


def expire_header(resp: httpx.Response) -> str | None:
    return resp.headers.get("metadata.ttlExpireTime")


def assert_expires_in(sidecar: Sidecar, resp: httpx.Response, seconds: float) -> None:
    assert resp.status_code == 200, describe(resp)
    value = expire_header(resp)
    if value is None and sidecar.kind not in REPORTS_TTL:
        return
    assert value is not None, f"no metadata.ttlExpireTime header: {dict(resp.headers)}"
    assert RFC3339_UTC_RE.match(value), value
    expires = datetime.fromisoformat(value.replace("Z", "+00:00"))
    delta = (expires - datetime.now(UTC)).total_seconds()
    assert abs(delta - seconds) <= TOLERANCE, f"expires in {delta:.1f}s, wanted ~{seconds}s"


def assert_no_expiry(resp: httpx.Response) -> None:
    assert resp.status_code == 200, describe(resp)
    assert expire_header(resp) is None, dict(resp.headers)


async def test_ttl_in_item_metadata(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v", metadata={"ttlInSeconds": "100"})
    assert_expires_in(sidecar, await sidecar.get(key), 100)


async def test_ttl_in_query_parameter(sidecar: Sidecar) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": "v"}], params={"metadata.ttlInSeconds": "200"})
    assert_no_content(resp)
    assert_expires_in(sidecar, await sidecar.get(key), 200)


async def test_query_parameter_wins_over_item_metadata(sidecar: Sidecar) -> None:
    key = new_key()
    items = [{"key": key, "value": "v", "metadata": {"ttlInSeconds": "1000"}}]
    assert_no_content(await sidecar.save(items, params={"metadata.ttlInSeconds": "100"}))
    assert_expires_in(sidecar, await sidecar.get(key), 100)


async def test_query_ttl_applies_to_every_item(sidecar: Sidecar) -> None:
    keys = [new_key(), new_key()]
    items = [{"key": k, "value": 1} for k in keys]
    assert_no_content(await sidecar.save(items, params={"metadata.ttlInSeconds": "300"}))
    for key in keys:
        assert_expires_in(sidecar, await sidecar.get(key), 300)


async def test_first_query_value_wins(sidecar: Sidecar) -> None:
    key = new_key()
    url = f"{sidecar.state_path()}?metadata.ttlInSeconds=100&metadata.ttlInSeconds=900"
    assert_no_content(await sidecar.client.post(url, json=[{"key": key, "value": 1}]))
    assert_expires_in(sidecar, await sidecar.get(key), 100)


async def test_metadata_query_prefix_is_case_sensitive(sidecar: Sidecar) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1}], params={"Metadata.ttlInSeconds": "1"})
    assert_no_content(resp)
    assert_no_expiry(await sidecar.get(key))


@pytest.mark.parametrize("ttl", ["0", "-1"])
async def test_zero_and_minus_one_mean_no_expiry(sidecar: Sidecar, ttl: str) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v", metadata={"ttlInSeconds": ttl})
    assert_no_expiry(await sidecar.get(key))


@pytest.mark.parametrize("ttl", ["abc", "1.5", "10s"])
async def test_non_integer_ttl_is_500(sidecar: Sidecar, ttl: str) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1, "metadata": {"ttlInSeconds": ttl}}])
    assert_legacy_error(resp, 500, "ERR_STATE_SAVE")
    assert_no_content(await sidecar.get(key))


@pytest.mark.parametrize("ttl", ["-2", "2147483648"])
async def test_out_of_range_ttl_is_500(sidecar: Sidecar, ttl: str) -> None:
    # utils.ParseTTL (SQLite, Postgres) accepts -1..MaxInt32; in-memory parses on its own.
    if sidecar.kind not in REPORTS_TTL:
        pytest.skip("Dapr's in-memory store does not use ParseTTL")
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1}], params={"metadata.ttlInSeconds": ttl})
    assert_legacy_error(resp, 500, "ERR_STATE_SAVE")
    assert_no_content(await sidecar.get(key))


async def test_save_without_ttl_clears_expiry(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1, metadata={"ttlInSeconds": "100"})
    assert_expires_in(sidecar, await sidecar.get(key), 100)
    await sidecar.save_ok(key, 2)
    assert_no_expiry(await sidecar.get(key))


async def test_transaction_ttl_per_operation_and_from_url(sidecar: Sidecar) -> None:
    per_op, from_url, body_level = new_key(), new_key(), new_key()
    op_meta = {"ttlInSeconds": "100"}
    ops = [{"operation": "upsert", "request": {"key": per_op, "value": 1, "metadata": op_meta}}]
    assert_no_content(await sidecar.transaction({"operations": ops}))
    assert_expires_in(sidecar, await sidecar.get(per_op), 100)

    ops = [{"operation": "upsert", "request": {"key": from_url, "value": 1}}]
    resp = await sidecar.transaction({"operations": ops}, params={"metadata.ttlInSeconds": "200"})
    assert_no_content(resp)
    assert_expires_in(sidecar, await sidecar.get(from_url), 200)

    # body-level metadata is transaction metadata, not item metadata (§1.8)
    ops = [{"operation": "upsert", "request": {"key": body_level, "value": 1}}]
    resp = await sidecar.transaction({"operations": ops, "metadata": {"ttlInSeconds": "100"}})
    assert_no_content(resp)
    assert_no_expiry(await sidecar.get(body_level))


async def test_keys_expire(sidecar: Sidecar) -> None:
    """Everything that needs an expired key, with one wait of at most 3 s. The keys were saved
    with a 2 s TTL when the sidecar started (SQLite has one-second resolution, so a 1 s TTL
    could lapse at once); usually they are long gone by now."""
    probe = sidecar.expiring
    if probe is None:
        probe = await seed_expiring_keys(sidecar)
    assert probe.present_after_save, "a key with ttlInSeconds=2 was gone right after saving"
    item_ttl, query_ttl, stale, first_write, _ = probe.keys
    for key in probe.keys:
        while (resp := await sidecar.get(key)).status_code != 204:
            assert resp.status_code == 200, describe(resp)
            elapsed = time.monotonic() - probe.started
            assert elapsed < 3.0, f"{key} (ttlInSeconds=2) still there after {elapsed:.1f}s"
            await asyncio.sleep(0.05)
        assert_no_content(resp)

    bulk = (await sidecar.bulk({"keys": [item_ttl, query_ttl]})).json()
    assert sorted(bulk, key=lambda i: i["key"]) == sorted(
        [{"key": item_ttl}, {"key": query_ttl}], key=lambda i: i["key"]
    )
    # an expired row cannot be updated with its old etag (§7.2-7.4: "not expired")...
    resp = await sidecar.save([{"key": stale, "value": "x", "etag": probe.stale_etag}])
    assert_legacy_error(resp, 409, "ERR_STATE_SAVE")
    # ...but first-write treats it as absent
    options = {"concurrency": "first-write"}
    assert_no_content(await sidecar.save([{"key": first_write, "value": "z", "options": options}]))
    assert (await sidecar.get(first_write)).json() == "z"
