"""Transactions: reference §1.8 (transactions), §1.2, §1.3."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ._support import (
    Sidecar,
    assert_kit_error,
    assert_legacy_error,
    assert_no_content,
    new_key,
    wrong_etag,
)

TX_FAILED = re.compile(r"^error while executing state transaction: ")


def upsert(key: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"operation": "upsert", "request": {"key": key, "value": value, **extra}}


def delete(key: str, **extra: Any) -> dict[str, Any]:
    return {"operation": "delete", "request": {"key": key, **extra}}


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_upsert_and_delete(sidecar: Sidecar, method: str) -> None:
    a, b, gone = new_key(), new_key(), new_key()
    await sidecar.save_ok(gone, "to delete")
    resp = await sidecar.client.request(
        method,
        f"{sidecar.state_path()}/transaction",
        json={"operations": [upsert(a, {"n": 1}), upsert(b, "two"), delete(gone)]},
    )
    assert_no_content(resp)
    assert (await sidecar.get(a)).json() == {"n": 1}
    assert (await sidecar.get(b)).json() == "two"
    assert_no_content(await sidecar.get(gone))


async def test_single_operation(sidecar: Sidecar) -> None:
    key = new_key()
    assert_no_content(await sidecar.transaction({"operations": [upsert(key, 1)]}))
    assert (await sidecar.get(key)).json() == 1


async def test_operations_apply_in_order(sidecar: Sidecar) -> None:
    key = new_key()
    ops = [upsert(key, 1), delete(key), upsert(key, 3)]
    assert_no_content(await sidecar.transaction({"operations": ops}))
    assert (await sidecar.get(key)).json() == 3


@pytest.mark.parametrize("body", [{"operations": []}, {}], ids=["empty-list", "no-operations"])
async def test_empty_operations_is_204(sidecar: Sidecar, body: dict[str, Any]) -> None:
    assert_no_content(await sidecar.transaction(body))


async def test_unknown_operation_is_400_and_nothing_applied(sidecar: Sidecar) -> None:
    key = new_key()
    resp = await sidecar.transaction(
        {"operations": [upsert(key, 1), {"operation": "merge", "request": {"key": key}}]}
    )
    assert_legacy_error(
        resp, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION", "operation type merge not supported"
    )
    assert_no_content(await sidecar.get(key))


async def test_stale_etag_is_500_and_nothing_applied(sidecar: Sidecar) -> None:
    fresh, existing = new_key(), new_key()
    await sidecar.save_ok(existing, "original")
    ops = [upsert(fresh, "new"), upsert(existing, "changed", etag=wrong_etag(sidecar.kind))]
    resp = await sidecar.transaction({"operations": ops})
    assert_legacy_error(resp, 500, "ERR_STATE_TRANSACTION", TX_FAILED)
    assert_no_content(await sidecar.get(fresh))
    assert (await sidecar.get(existing)).json() == "original"


async def test_delete_with_stale_etag_is_500_and_nothing_applied(sidecar: Sidecar) -> None:
    fresh, existing = new_key(), new_key()
    await sidecar.save_ok(existing, "original")
    ops = [upsert(fresh, "new"), delete(existing, etag=wrong_etag(sidecar.kind))]
    resp = await sidecar.transaction({"operations": ops})
    assert_legacy_error(resp, 500, "ERR_STATE_TRANSACTION", TX_FAILED)
    assert_no_content(await sidecar.get(fresh))
    assert (await sidecar.get(existing)).json() == "original"


async def test_unparsable_etag_is_500_never_400(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "original")
    ops = [upsert(key, "changed", etag="not-a-valid-etag")]
    resp = await sidecar.transaction({"operations": ops})
    assert_legacy_error(resp, 500, "ERR_STATE_TRANSACTION", TX_FAILED)
    assert (await sidecar.get(key)).json() == "original"


async def test_matching_etags_commit(sidecar: Sidecar) -> None:
    a, b = new_key(), new_key()
    await sidecar.save([{"key": a, "value": 1}, {"key": b, "value": 2}])
    etag_a, etag_b = await sidecar.get_etag(a), await sidecar.get_etag(b)
    ops = [upsert(a, 10, etag=etag_a), delete(b, etag=etag_b)]
    assert_no_content(await sidecar.transaction({"operations": ops}))
    assert (await sidecar.get(a)).json() == 10
    assert_no_content(await sidecar.get(b))
    assert await sidecar.get_etag(a) != etag_a


async def test_request_fields_match_case_insensitively(sidecar: Sidecar) -> None:
    # requests are decoded with mapstructure, which ignores case (§1.8)
    a, b = new_key(), new_key()
    await sidecar.save_ok(b, "x")
    ops = [
        {"operation": "upsert", "request": {"KEY": a, "Value": {"ok": True}}},
        {"operation": "delete", "request": {"Key": b}},
    ]
    assert_no_content(await sidecar.transaction({"operations": ops}))
    assert (await sidecar.get(a)).json() == {"ok": True}
    assert_no_content(await sidecar.get(b))


async def test_upsert_without_value_stores_null(sidecar: Sidecar) -> None:
    key = new_key()
    ops = [{"operation": "upsert", "request": {"key": key}}]
    assert_no_content(await sidecar.transaction({"operations": ops}))
    resp = await sidecar.get(key)
    assert resp.status_code == 200
    assert resp.content == b"null"


async def test_invalid_json_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.client.post(f"{sidecar.state_path()}/transaction", content=b"{nope")
    assert_legacy_error(resp, 400, "ERR_MALFORMED_REQUEST")


async def test_illegal_key_is_400(sidecar: Sidecar) -> None:
    fresh = new_key()
    resp = await sidecar.transaction({"operations": [upsert(fresh, 1), upsert("a||b", 2)]})
    assert_kit_error(resp, 400, "ERR_MALFORMED_REQUEST", "DAPR_STATE_ILLEGAL_KEY")
    assert_no_content(await sidecar.get(fresh))


async def test_unknown_store_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.transaction({"operations": [upsert("k", 1)]}, store="nostore")
    assert_kit_error(
        resp,
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        "DAPR_STATE_NOT_FOUND",
        "state store nostore is not found",
    )
