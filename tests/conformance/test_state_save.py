"""Save state: reference §1.4 (save), §1.10 (options / first-write), §1.2 (store lookup),
§1.3 (illegal keys), §0.2 (error shapes), §12 items 2."""

from __future__ import annotations

import re

import pytest

from ._support import (
    BAD_REQUEST,
    RESOURCE_INFO,
    Sidecar,
    assert_kit_error,
    assert_legacy_error,
    assert_no_content,
    error_info,
    find_details,
    new_key,
    wrong_etag,
)


def mismatch(sidecar: Sidecar) -> re.Pattern[str]:
    return re.compile(
        rf"^failed saving state in state store {re.escape(sidecar.store)}: "
        r"possible etag mismatch\. error from state store"
    )


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_save_array_returns_204_and_value_is_stored(sidecar: Sidecar, method: str) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": {"a": 1, "b": [True, None]}}], method=method)
    assert_no_content(resp)
    got = await sidecar.get(key)
    assert got.status_code == 200
    assert got.json() == {"a": 1, "b": [True, None]}


async def test_save_several_items(sidecar: Sidecar) -> None:
    keys = [new_key() for _ in range(3)]
    resp = await sidecar.save([{"key": k, "value": i} for i, k in enumerate(keys)])
    assert_no_content(resp)
    for i, key in enumerate(keys):
        assert (await sidecar.get(key)).json() == i


async def test_save_empty_array_returns_204(sidecar: Sidecar) -> None:
    assert_no_content(await sidecar.save([]))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty-body"),
        pytest.param(b"{}", id="object"),
        pytest.param(b'{"key": "k", "value": 1}', id="single-item-object"),
        pytest.param(b"[{", id="invalid-json"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[{}]", id="item-without-key"),
        pytest.param(b'[{"key": "", "value": 1}]', id="empty-key"),
        pytest.param(b"[1]", id="item-not-object"),
    ],
)
async def test_save_malformed_body_is_400(sidecar: Sidecar, body: bytes) -> None:
    resp = await sidecar.client.post(
        sidecar.state_path(), content=body, headers={"Content-Type": "application/json"}
    )
    assert_legacy_error(resp, 400, "ERR_MALFORMED_REQUEST")


async def test_save_numeric_etag_is_400_and_nothing_stored(sidecar: Sidecar) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1, "etag": 5}])
    assert_legacy_error(resp, 400, "ERR_MALFORMED_REQUEST")
    assert_no_content(await sidecar.get(key))


async def test_save_item_without_value_stores_json_null(sidecar: Sidecar) -> None:
    key = new_key()
    assert_no_content(await sidecar.save([{"key": key}]))
    got = await sidecar.get(key)
    assert got.status_code == 200
    assert got.content == b"null"


async def test_save_overwrites_without_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "first")
    await sidecar.save_ok(key, "second")
    assert (await sidecar.get(key)).json() == "second"


async def test_etag_update_and_mismatch(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    etag1 = await sidecar.get_etag(key)
    assert_no_content(await sidecar.save([{"key": key, "value": 2, "etag": etag1}]))
    etag2 = await sidecar.get_etag(key)
    assert etag2 != etag1, "every write must produce a new etag"
    stale = await sidecar.save([{"key": key, "value": 3, "etag": etag1}])
    assert_legacy_error(stale, 409, "ERR_STATE_SAVE", mismatch(sidecar))
    assert (await sidecar.get(key)).json() == 2


async def test_etag_on_missing_key_is_409(sidecar: Sidecar) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1, "etag": wrong_etag(sidecar.kind)}])
    assert_legacy_error(resp, 409, "ERR_STATE_SAVE", mismatch(sidecar))
    assert_no_content(await sidecar.get(key))


async def test_empty_string_etag_counts_as_no_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    assert_no_content(await sidecar.save([{"key": key, "value": 2, "etag": ""}]))
    assert (await sidecar.get(key)).json() == 2


async def test_unparsable_etag_status_depends_on_store(sidecar: Sidecar) -> None:
    # Postgres v1 etags are xmin (uint32): anything else is ETagInvalid -> 400. Stores with
    # string etags (v2 uuid, sqlite, in-memory) simply do not match -> 409. (§1.4, §7.2, §7.3)
    key = new_key()
    await sidecar.save_ok(key, 1)
    resp = await sidecar.save([{"key": key, "value": 2, "etag": "not-a-valid-etag"}])
    if sidecar.kind == "postgresql-v1":
        body = assert_legacy_error(resp, 400, "ERR_STATE_SAVE")
        assert "invalid etag value" in body["message"], body
    else:
        assert_legacy_error(resp, 409, "ERR_STATE_SAVE", mismatch(sidecar))
    assert (await sidecar.get(key)).json() == 1


async def test_multi_item_save_with_one_stale_etag_is_409(sidecar: Sidecar) -> None:
    good, bad = new_key(), new_key()
    await sidecar.save_ok(bad, "original")
    resp = await sidecar.save(
        [
            {"key": good, "value": "new"},
            {"key": bad, "value": "changed", "etag": wrong_etag(sidecar.kind)},
        ]
    )
    assert_legacy_error(resp, 409, "ERR_STATE_SAVE")
    assert (await sidecar.get(bad)).json() == "original"


async def test_first_write_on_new_key_succeeds(sidecar: Sidecar) -> None:
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1, "options": {"concurrency": "first-write"}}])
    assert_no_content(resp)
    assert (await sidecar.get(key)).json() == 1


async def test_first_write_without_etag_on_existing_key_is_store_specific(sidecar: Sidecar) -> None:
    # §1.10: SQLite and in-memory report an etag mismatch (409); Postgres fails with
    # "no item was updated", a plain error (500).
    key = new_key()
    await sidecar.save_ok(key, "original")
    resp = await sidecar.save(
        [{"key": key, "value": "second", "options": {"concurrency": "first-write"}}]
    )
    if sidecar.kind in ("postgresql-v1", "postgresql-v2"):
        assert_legacy_error(resp, 500, "ERR_STATE_SAVE")
    elif sidecar.kind in ("sqlite", "in-memory"):
        assert_legacy_error(resp, 409, "ERR_STATE_SAVE", mismatch(sidecar))
    else:
        assert resp.status_code in (409, 500), resp.text
    assert (await sidecar.get(key)).json() == "original"


async def test_first_write_with_etag(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 1)
    etag = await sidecar.get_etag(key)
    options = {"concurrency": "first-write"}
    ok = await sidecar.save([{"key": key, "value": 2, "etag": etag, "options": options}])
    assert_no_content(ok)
    stale = await sidecar.save([{"key": key, "value": 3, "etag": etag, "options": options}])
    assert_legacy_error(stale, 409, "ERR_STATE_SAVE", mismatch(sidecar))
    assert (await sidecar.get(key)).json() == 2


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": "last-write"},
        {"consistency": "strong"},
        {"consistency": "eventual"},
        {"concurrency": "last-write", "consistency": "eventual"},
    ],
)
async def test_valid_options_are_accepted(sidecar: Sidecar, options: dict[str, str]) -> None:
    key = new_key()
    await sidecar.save_ok(key, 0)
    assert_no_content(await sidecar.save([{"key": key, "value": 1, "options": options}]))
    assert (await sidecar.get(key)).json() == 1


@pytest.mark.parametrize("options", [{"concurrency": "bogus"}, {"consistency": "bogus"}])
async def test_invalid_options_are_500(sidecar: Sidecar, options: dict[str, str]) -> None:
    # CheckRequestOptions returns a plain error -> 500 (§1.4)
    key = new_key()
    resp = await sidecar.save([{"key": key, "value": 1, "options": options}])
    assert_legacy_error(resp, 500, "ERR_STATE_SAVE")
    assert_no_content(await sidecar.get(key))


async def test_key_with_separator_is_illegal(sidecar: Sidecar) -> None:
    key = f"a||{new_key()}"
    resp = await sidecar.save([{"key": key, "value": 1}])
    body = assert_kit_error(resp, 400, "ERR_MALFORMED_REQUEST", "DAPR_STATE_ILLEGAL_KEY")
    assert "||" in body["message"]
    violations = [v for d in find_details(body, BAD_REQUEST) for v in d.get("field_violations", [])]
    assert [v.get("field") for v in violations] == [key], body
    resources = find_details(body, RESOURCE_INFO)
    assert [(r.get("resource_type"), r.get("resource_name")) for r in resources] == [
        ("state", sidecar.store)
    ], body


async def test_save_to_unknown_store_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.save([{"key": new_key(), "value": 1}], store="nostore")
    body = assert_kit_error(
        resp,
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        "DAPR_STATE_NOT_FOUND",
        "state store nostore is not found",
    )
    assert len(body["details"]) == 1, body
    if sidecar.app_id:
        assert error_info(body).get("metadata") == {"appID": sidecar.app_id}, body


async def test_large_and_unicode_values_round_trip(sidecar: Sidecar) -> None:
    key = new_key()
    value = {"text": "héllo ☃ 日本語 😀", "blob": "x" * 200_000, "n": 12345678901234}
    await sidecar.save_ok(key, value)
    assert (await sidecar.get(key)).json() == value
