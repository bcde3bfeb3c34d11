"""Bulk get: reference §1.6 (bulk get), §1.3 (keys come back un-prefixed), §12 item 1 (`data`,
not `value`)."""

from __future__ import annotations

from typing import Any

import pytest

from ._support import (
    Sidecar,
    assert_json_content_type,
    assert_kit_error,
    assert_legacy_error,
    describe,
    new_key,
)


def by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {item["key"]: item for item in items}
    assert len(result) == len(items), f"duplicate keys in {items!r}"
    return result


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_bulk_get_found_and_missing(sidecar: Sidecar, method: str) -> None:
    k1, k2, missing = new_key(), new_key(), new_key("missing")
    await sidecar.save_ok(k1, {"v": 1})
    await sidecar.save_ok(k2, "two")
    resp = await sidecar.client.request(
        method, f"{sidecar.state_path()}/bulk", json={"keys": [k1, missing, k2]}
    )
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    items = resp.json()
    assert isinstance(items, list), items
    assert len(items) == 3, items
    found = by_key(items)  # order is not guaranteed (§1.6)
    assert set(found) == {k1, k2, missing}
    assert found[missing] == {"key": missing}
    for key, value in ((k1, {"v": 1}), (k2, "two")):
        item = found[key]
        assert "value" not in item, item
        assert item["data"] == value, item
        assert isinstance(item.get("etag"), str), item
        assert item["etag"], item
        assert set(item) <= {"key", "data", "etag", "metadata"}, item
        assert item["etag"] == await sidecar.get_etag(key)


async def test_bulk_get_empty_keys_is_empty_array(sidecar: Sidecar) -> None:
    resp = await sidecar.bulk({"keys": []})
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    assert resp.json() == []


async def test_bulk_get_only_missing_keys(sidecar: Sidecar) -> None:
    keys = [new_key("missing") for _ in range(3)]
    resp = await sidecar.bulk({"keys": keys})
    assert resp.status_code == 200, describe(resp)
    assert sorted(resp.json(), key=lambda i: i["key"]) == [{"key": k} for k in sorted(keys)]


@pytest.mark.parametrize("parallelism", [0, 1, 10])
async def test_bulk_get_parallelism(sidecar: Sidecar, parallelism: int) -> None:
    keys = [new_key() for _ in range(5)]
    await sidecar.save([{"key": k, "value": i} for i, k in enumerate(keys)])
    resp = await sidecar.bulk({"keys": keys, "parallelism": parallelism, "metadata": {"a": "b"}})
    assert resp.status_code == 200, describe(resp)
    found = by_key(resp.json())
    assert {k: found[k]["data"] for k in keys} == {k: i for i, k in enumerate(keys)}


async def test_bulk_get_many_keys(sidecar: Sidecar) -> None:
    keys = [new_key() for _ in range(60)]
    await sidecar.save([{"key": k, "value": k} for k in keys])
    missing = [new_key("missing") for _ in range(5)]
    resp = await sidecar.bulk({"keys": keys + missing})
    found = by_key(resp.json())
    assert {k: found[k].get("data") for k in keys} == {k: k for k in keys}
    assert all(found[k] == {"key": k} for k in missing)


async def test_bulk_get_invalid_body_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.client.post(f"{sidecar.state_path()}/bulk", content=b"{not json")
    assert_legacy_error(resp, 400, "ERR_MALFORMED_REQUEST")


async def test_bulk_get_illegal_key_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.bulk({"keys": [new_key(), "x||y"]})
    assert_kit_error(resp, 400, "ERR_MALFORMED_REQUEST", "DAPR_STATE_ILLEGAL_KEY")


async def test_bulk_get_unknown_store_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.bulk({"keys": ["a"]}, store="nostore")
    assert_kit_error(resp, 400, "ERR_STATE_STORE_NOT_FOUND", "DAPR_STATE_NOT_FOUND")


async def test_bulk_get_null_value(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save([{"key": key}])
    resp = await sidecar.bulk({"keys": [key]})
    [item] = resp.json()
    assert item["key"] == key
    assert "data" in item, item
    assert item["data"] is None, item
