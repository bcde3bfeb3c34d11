"""Routing: reference §0.1 (fallback route = service invocation; unknown path or wrong method ->
404 ERR_DIRECT_INVOKE), §1.1 (state routes and their methods)."""

from __future__ import annotations

import pytest

from ._support import INVOKE_NO_APP_ID, Sidecar, assert_legacy_error


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/publish/x/y"),
        ("GET", "/v1.0/nonsense"),
        ("POST", "/v1.0/nonsense/deeper/path"),
        ("GET", "/v2.0/state/statestore/k"),
        ("GET", "/nonsense"),
        ("DELETE", "/v1.0/state/statestore"),
        ("GET", "/v1.0/state/statestore"),
        ("PATCH", "/v1.0/state/statestore/k"),
        ("GET", "/v1.0/state/statestore/transaction/extra/segments"),
        ("DELETE", "/v1.0/metadata"),
    ],
)
async def test_unknown_route_falls_back_to_invoke(sidecar: Sidecar, method: str, path: str) -> None:
    resp = await sidecar.client.request(method, path)
    assert_legacy_error(resp, 404, "ERR_DIRECT_INVOKE", INVOKE_NO_APP_ID)


async def test_fallback_exact_body(sidecar: Sidecar) -> None:
    resp = await sidecar.client.get("/v1.0/publish/x/y")
    assert resp.status_code == 404
    assert resp.json() == {"errorCode": "ERR_DIRECT_INVOKE", "message": INVOKE_NO_APP_ID}
