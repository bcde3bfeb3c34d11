"""Delete state: reference §1.7 (delete, If-Match), §1.2, §1.3, §12 item 2."""

from __future__ import annotations

import re

from ._support import (
    Sidecar,
    assert_kit_error,
    assert_legacy_error,
    assert_no_content,
    new_key,
    wrong_etag,
)


def mismatch(key: str) -> re.Pattern[str]:
    return re.compile(
        rf"^failed deleting state with key {re.escape(key)}: possible etag mismatch\."
    )


async def test_delete_existing_key(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    assert_no_content(await sidecar.delete(key))
    assert_no_content(await sidecar.get(key))


async def test_delete_missing_key_without_etag_is_204(sidecar: Sidecar) -> None:
    assert_no_content(await sidecar.delete(new_key("missing")))


async def test_delete_with_matching_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    etag = await sidecar.get_etag(key)
    assert_no_content(await sidecar.delete(key, etag=etag))
    assert_no_content(await sidecar.get(key))


async def test_delete_with_stale_etag_is_409(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    stale = await sidecar.get_etag(key)
    await sidecar.save_ok(key, 2)
    resp = await sidecar.delete(key, etag=stale)
    assert_legacy_error(resp, 409, "ERR_STATE_DELETE", mismatch(key))
    assert (await sidecar.get(key)).json() == 2


async def test_delete_with_etag_on_missing_key_is_409(sidecar: Sidecar) -> None:
    key = new_key("missing")
    resp = await sidecar.delete(key, etag=wrong_etag(sidecar.kind))
    assert_legacy_error(resp, 409, "ERR_STATE_DELETE", mismatch(key))


async def test_empty_if_match_counts_as_no_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    assert_no_content(await sidecar.delete(key, etag=""))
    assert_no_content(await sidecar.get(key))


async def test_delete_with_unparsable_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    resp = await sidecar.delete(key, etag="not-a-valid-etag")
    if sidecar.kind == "postgresql-v1":
        body = assert_legacy_error(resp, 400, "ERR_STATE_DELETE")
        assert "invalid etag value" in body["message"], body
    else:
        assert_legacy_error(resp, 409, "ERR_STATE_DELETE", mismatch(key))
    assert (await sidecar.get(key)).json() == 1


async def test_delete_with_invalid_concurrency_is_500(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    resp = await sidecar.delete(key, params={"concurrency": "bogus"})
    assert_legacy_error(resp, 500, "ERR_STATE_DELETE")
    assert (await sidecar.get(key)).json() == 1


async def test_delete_with_valid_query_options(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    resp = await sidecar.delete(key, params={"concurrency": "last-write", "consistency": "strong"})
    assert_no_content(resp)
    assert_no_content(await sidecar.get(key))


async def test_delete_illegal_key_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.delete("a||b")
    assert_kit_error(resp, 400, "ERR_MALFORMED_REQUEST", "DAPR_STATE_ILLEGAL_KEY")


async def test_delete_from_unknown_store_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.delete("k", store="nostore")
    assert_kit_error(resp, 400, "ERR_STATE_STORE_NOT_FOUND", "DAPR_STATE_NOT_FOUND")
