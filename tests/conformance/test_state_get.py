"""Get state: reference §1.5 (get), §1.2 (store lookup), §1.3 (illegal key), §7.2-7.4 (etag
formats)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ._support import (
    UUID_RE,
    Sidecar,
    assert_json_content_type,
    assert_kit_error,
    assert_no_content,
    describe,
    new_key,
)

VALUES: list[Any] = [
    "DeathStar",
    "",
    42,
    -1.5,
    True,
    False,
    None,
    [],
    {},
    [1, "two", {"three": 3}],
    {"nested": {"list": [1, 2, {"deep": "x"}], "unicode": "ünïcødé ✓"}},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: json.dumps(v)[:20])
async def test_get_returns_the_json_text(sidecar: Sidecar, value: Any) -> None:
    key = new_key()
    await sidecar.save_ok(key, value)
    resp = await sidecar.get(key)
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    assert json.loads(resp.content) == value


async def test_string_value_comes_back_quoted(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "DeathStar")
    resp = await sidecar.get(key)
    assert resp.content == b'"DeathStar"'


async def test_get_has_etag_header(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, {"x": 1})
    resp = await sidecar.get(key)
    etag = resp.headers.get("ETag")  # httpx compares header names case-insensitively
    assert etag, describe(resp)
    if sidecar.kind == "postgresql-v1":
        assert etag.isdigit(), etag  # xmin (§7.2)
        assert int(etag) < 2**32, etag
    elif sidecar.kind in ("postgresql-v2", "sqlite", "in-memory"):
        assert UUID_RE.match(etag), etag  # random uuid per write (§7.3, §7.4)


async def test_missing_key_is_204_with_empty_body(sidecar: Sidecar) -> None:
    resp = await sidecar.get(new_key("missing"))
    assert_no_content(resp)
    assert "etag" not in resp.headers


@pytest.mark.parametrize("consistency", ["strong", "eventual"])
async def test_get_with_consistency(sidecar: Sidecar, consistency: str) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v")
    resp = await sidecar.get(key, params={"consistency": consistency})
    assert resp.status_code == 200
    assert resp.json() == "v"


async def test_get_after_delete_is_204(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v")
    assert_no_content(await sidecar.delete(key))
    assert_no_content(await sidecar.get(key))


async def test_get_illegal_key_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.get("a||b")
    assert_kit_error(resp, 400, "ERR_MALFORMED_REQUEST", "DAPR_STATE_ILLEGAL_KEY")


async def test_get_from_unknown_store_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.get("k", store="nostore")
    assert_kit_error(
        resp,
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        "DAPR_STATE_NOT_FOUND",
        "state store nostore is not found",
    )


async def test_etags_agree_between_get_and_bulk(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, 7)
    etag = await sidecar.get_etag(key)
    bulk = (await sidecar.bulk({"keys": [key]})).json()
    assert bulk == [{"key": key, "data": 7, "etag": etag, **_meta(bulk[0])}]


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": item["metadata"]} if "metadata" in item else {}
