"""Keys in URLs and in the database: reference §0.1 (path cleaning, `url.QueryUnescape` of each
segment: `%2F` -> `/`, `+` -> space), §1.3 (keys), §1.6 (bulk returns the original key)."""

from __future__ import annotations

import pytest

from ._support import Sidecar, assert_no_content, describe, new_key

TRICKY_KEYS = [
    "it's",
    'say "hi"',
    "100%",
    "%41%",
    "a_b",
    "semi;colon",
    "'; DROP TABLE state; --",
    "x' OR '1'='1",
    "ключ-日本-😀",
    "back\\slash",
    "question?mark",
    "hash#tag",
    "amp&er=sand",
    "star*",
    "dot.dot",
    "tab\tand space",
    "slash/inside",
    "plus+sign",
    "colon:key",
    "$1",
    "{json}",
]


@pytest.mark.parametrize("suffix", TRICKY_KEYS, ids=range(len(TRICKY_KEYS)))
async def test_tricky_keys_round_trip(sidecar: Sidecar, suffix: str) -> None:
    key = f"{new_key()}-{suffix}"
    value = {"key": key}
    await sidecar.save_ok(key, value)
    got = await sidecar.get(key)  # the segment is percent-encoded, `/` included
    assert got.status_code == 200, describe(got)
    assert got.json() == value
    bulk = (await sidecar.bulk({"keys": [key]})).json()
    assert [item["key"] for item in bulk] == [key]
    assert bulk[0]["data"] == value
    assert_no_content(await sidecar.delete(key))
    assert_no_content(await sidecar.get(key))


async def test_like_wildcards_are_literal(sidecar: Sidecar) -> None:
    base = new_key()
    await sidecar.save_ok(f"{base}-a_c", "underscore")
    await sidecar.save_ok(f"{base}-100%", "percent")
    assert_no_content(await sidecar.get(f"{base}-abc"))
    assert_no_content(await sidecar.get(f"{base}-100"))
    assert_no_content(await sidecar.get(f"{base}-1000"))
    assert_no_content(await sidecar.delete(f"{base}-a%"))
    assert_no_content(await sidecar.delete(f"{base}-%"))
    assert (await sidecar.get(f"{base}-a_c")).json() == "underscore"
    assert (await sidecar.get(f"{base}-100%")).json() == "percent"


async def test_encoded_slash_is_decoded(sidecar: Sidecar) -> None:
    base = new_key()
    await sidecar.save_ok(f"{base}/child", "nested")
    resp = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{base}%2Fchild")
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == "nested"


async def test_plus_is_decoded_as_space(sidecar: Sidecar) -> None:
    base = new_key()
    await sidecar.save_ok(f"{base} with space", "space")
    await sidecar.save_ok(f"{base}+plus", "plus")
    by_plus = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{base}+with+space")
    assert by_plus.status_code == 200, describe(by_plus)
    assert by_plus.json() == "space"
    by_pct20 = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{base}%20with%20space")
    assert by_pct20.json() == "space"
    literal_plus = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{base}%2Bplus")
    assert literal_plus.json() == "plus"
    # a raw `+` means space, so this is the key "<base> plus", which does not exist
    assert_no_content(await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{base}+plus"))


async def test_delete_decodes_plus_and_slash(sidecar: Sidecar) -> None:
    base = new_key()
    await sidecar.save_ok(f"{base} a/b", 1)
    assert_no_content(await sidecar.client.delete(f"/v1.0/state/{sidecar.store}/{base}+a%2Fb"))
    assert_no_content(await sidecar.get(f"{base} a/b"))


async def test_percent_encoded_unicode_key(sidecar: Sidecar) -> None:
    base = new_key()
    await sidecar.save_ok(f"{base}-é", "e-acute")
    resp = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{base}-%C3%A9")
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == "e-acute"


async def test_store_name_segment_is_decoded(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v")
    encoded = "".join(f"%{b:02X}" for b in sidecar.store.encode())
    resp = await sidecar.client.get(f"/v1.0/state/{encoded}/{key}")
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == "v"


async def test_trailing_slash_is_stripped(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v")
    resp = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/{key}/")
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == "v"
    saved = await sidecar.client.post(
        f"/v1.0/state/{sidecar.store}/", json=[{"key": key, "value": "w"}]
    )
    assert_no_content(saved)
    assert (await sidecar.get(key)).json() == "w"


async def test_double_slashes_are_cleaned(sidecar: Sidecar) -> None:
    key = new_key()
    await sidecar.save_ok(key, "v")
    resp = await sidecar.client.get(f"{sidecar.url}//v1.0//state//{sidecar.store}//{key}")
    assert resp.status_code == 200, describe(resp)
    assert resp.json() == "v"


async def test_undecodable_segment_is_400_plain_text(sidecar: Sidecar) -> None:
    resp = await sidecar.client.get(f"/v1.0/state/{sidecar.store}/bad%zzkey")
    assert resp.status_code == 400, describe(resp)
    assert resp.headers.get("content-type", "").startswith("text/plain"), describe(resp)
