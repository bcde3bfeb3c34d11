"""Query API (alpha): reference §1.9 (query), §7.2 (only Postgres v1 has QUERY_API), §7.3, §7.4,
§1.3 (keys come back un-prefixed).

Postgres v1 queries the whole table (no key-prefix filter), so every test tags its values with
a unique ``run`` field and filters on it. Sorting compares the ``->>`` text.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import pytest_asyncio

from ._support import (
    Sidecar,
    assert_json_content_type,
    assert_kit_error,
    assert_no_content,
    describe,
    new_key,
)

PEOPLE = [
    ("1", "Seattle", "WA", "Dev Ops"),
    ("2", "Portland", "OR", "Hardware"),
    ("3", "Spokane", "WA", "Dev Ops"),
    ("4", "San Diego", "CA", "Finance"),
    ("5", "Tacoma", "WA", "Hardware"),
]


def supports_query(sidecar: Sidecar) -> bool:
    return sidecar.kind == "postgresql-v1"


@pytest_asyncio.fixture(loop_scope="session")
async def people(sidecar: Sidecar) -> tuple[str, dict[str, dict[str, Any]]]:
    if not supports_query(sidecar):
        pytest.skip("only state.postgresql v1 implements the query API")
    run = uuid.uuid4().hex
    values = {
        new_key(f"p{pid}"): {
            "run": run,
            "city": city,
            "state": st,
            "person": {"id": pid, "org": org},
        }
        for pid, city, st, org in PEOPLE
    }
    resp = await sidecar.save([{"key": k, "value": v} for k, v in values.items()])
    assert_no_content(resp)
    return run, values


async def run_query(sidecar: Sidecar, body: dict[str, Any], *, method: str = "POST") -> Any:
    path = f"/v1.0-alpha1/state/{sidecar.store}/query"
    resp = await sidecar.client.request(method, path, json=body)
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    return resp.json()


def ids(result: dict[str, Any]) -> list[str]:
    return [r["data"]["person"]["id"] for r in result["results"]]


def with_run(run: str, flt: dict[str, Any]) -> dict[str, Any]:
    return {"AND": [{"EQ": {"run": run}}, flt]}


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_query_eq(sidecar: Sidecar, people: Any, method: str) -> None:
    run, values = people
    body = {"filter": with_run(run, {"EQ": {"state": "WA"}}), "sort": [{"key": "person.id"}]}
    result = await run_query(sidecar, body, method=method)
    assert ids(result) == ["1", "3", "5"]
    for item in result["results"]:
        assert item["key"] in values, item  # the app-id prefix is removed
        assert item["data"] == values[item["key"]]
        assert item["etag"] == await sidecar.get_etag(item["key"])


async def test_query_in(sidecar: Sidecar, people: Any) -> None:
    run, _ = people
    body = {
        "filter": with_run(run, {"IN": {"state": ["CA", "OR"]}}),
        "sort": [{"key": "person.id"}],
    }
    assert ids(await run_query(sidecar, body)) == ["2", "4"]


async def test_query_nested_key_and_or(sidecar: Sidecar, people: Any) -> None:
    run, _ = people
    flt = {
        "OR": [
            {"EQ": {"person.org": "Finance"}},
            {"AND": [{"EQ": {"person.org": "Dev Ops"}}, {"EQ": {"city": "Spokane"}}]},
        ]
    }
    body = {"filter": with_run(run, flt), "sort": [{"key": "person.id", "order": "ASC"}]}
    assert ids(await run_query(sidecar, body)) == ["3", "4"]


async def test_query_sort_desc(sidecar: Sidecar, people: Any) -> None:
    run, _ = people
    body = {"filter": {"EQ": {"run": run}}, "sort": [{"key": "person.id", "order": "DESC"}]}
    assert ids(await run_query(sidecar, body)) == ["5", "4", "3", "2", "1"]


async def test_query_multiple_sort_keys(sidecar: Sidecar, people: Any) -> None:
    run, _ = people
    sort = [{"key": "state", "order": "DESC"}, {"key": "person.id", "order": "DESC"}]
    body = {"filter": {"EQ": {"run": run}}, "sort": sort}
    assert ids(await run_query(sidecar, body)) == ["5", "3", "1", "2", "4"]


async def test_query_paging_with_token(sidecar: Sidecar, people: Any) -> None:
    run, _ = people
    query: dict[str, Any] = {
        "filter": {"EQ": {"run": run}},
        "sort": [{"key": "person.id"}],
        "page": {"limit": 2},
    }
    first = await run_query(sidecar, query)
    assert ids(first) == ["1", "2"]
    assert isinstance(first.get("token"), str), first
    assert first["token"], first
    seen = ids(first)
    token = first["token"]
    for _ in range(5):
        query["page"] = {"limit": 2, "token": token}
        resp = await sidecar.client.post(f"/v1.0-alpha1/state/{sidecar.store}/query", json=query)
        if resp.status_code == 204:
            break
        assert resp.status_code == 200, describe(resp)
        page = resp.json()
        assert 1 <= len(page["results"]) <= 2, page
        seen += ids(page)
        if not page.get("token") or len(page["results"]) < 2:
            break
        token = page["token"]
    assert seen == ["1", "2", "3", "4", "5"]


async def test_query_without_filter_returns_everything(sidecar: Sidecar, people: Any) -> None:
    _, values = people
    result = await run_query(sidecar, {})
    keys = {item["key"] for item in result["results"]}
    assert set(values) <= keys
    assert not any("||" in k for k in keys), "keys must come back without their prefix"


async def test_query_without_results_is_204(sidecar: Sidecar, people: Any) -> None:
    run, _ = people
    resp = await sidecar.query({"filter": with_run(run, {"EQ": {"state": "NY"}})})
    assert_no_content(resp)


async def test_unparsable_query_is_500(sidecar: Sidecar) -> None:
    if not supports_query(sidecar):
        pytest.skip("only state.postgresql v1 implements the query API")
    resp = await sidecar.client.post(
        f"/v1.0-alpha1/state/{sidecar.store}/query", content=b"{not json"
    )
    assert_kit_error(resp, 500, "ERR_STATE_QUERY", "DAPR_STATE_QUERY_FAILED")


async def test_string_comparison_is_500(sidecar: Sidecar) -> None:
    if not supports_query(sidecar):
        pytest.skip("only state.postgresql v1 implements the query API")
    resp = await sidecar.query({"filter": {"GT": {"state": "WA"}}})
    assert_kit_error(resp, 500, "ERR_STATE_QUERY", "DAPR_STATE_QUERY_FAILED")


async def test_query_not_supported(sidecar: Sidecar) -> None:
    if supports_query(sidecar) or sidecar.kind == "other":
        pytest.skip("this store supports the query API")
    resp = await sidecar.query({"filter": {"EQ": {"state": "WA"}}})
    assert_kit_error(
        resp,
        500,
        "ERR_STATE_STORE_NOT_SUPPORTED",
        "DAPR_STATE_QUERYING_NOT_SUPPORTED",
        "state store does not support querying",
    )


async def test_query_unknown_store_is_400(sidecar: Sidecar) -> None:
    resp = await sidecar.query({"filter": {"EQ": {"a": "b"}}}, store="nostore")
    assert_kit_error(resp, 400, "ERR_STATE_STORE_NOT_FOUND", "DAPR_STATE_NOT_FOUND")
