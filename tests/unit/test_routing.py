"""Path cleaning, parameter decoding and route precedence as daprd's chi router does them."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from daprforge.sidecar.request import DaprRequest
from daprforge.sidecar.routing import (
    Router,
    UnescapeError,
    clean_path,
    query_unescape,
    route,
    unescape_params,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("/v1.0/state/s/k/", "/v1.0/state/s/k"),
        ("//v1.0///state/s", "/v1.0/state/s"),
        ("/v1.0/./state/../state/s", "/v1.0/state/s"),
        ("/../..", "/"),
        ("", "/"),
    ],
)
def test_clean_path(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean


@pytest.mark.parametrize(
    ("escaped", "decoded"),
    [
        ("plain", "plain"),
        ("a%2Fb", "a/b"),
        ("a+b", "a b"),
        ("%E2%9C%93", "✓"),
        ("100%25", "100%"),
    ],
)
def test_query_unescape(escaped: str, decoded: str) -> None:
    assert query_unescape(escaped) == decoded


@pytest.mark.parametrize("bad", ["%zz", "abc%", "%4"])
def test_query_unescape_rejects_bad_escapes(bad: str) -> None:
    with pytest.raises(UnescapeError, match="invalid URL escape"):
        query_unescape(bad)


def test_unescape_params_names_the_parameter() -> None:
    with pytest.raises(UnescapeError, match='parameter "key"'):
        unescape_params({"key": "%zz"})


def _handler(name: str):  # type: ignore[no-untyped-def]
    async def handler(call: DaprRequest) -> Response:
        return Response(name)

    handler.__name__ = name
    return handler


FALLBACK = _handler("fallback")
ROUTER = Router(
    [
        route(["GET"], "v1.0/state/{storeName}/{key}", _handler("get")),
        route(["POST", "PUT"], "v1.0/state/{storeName}/bulk", _handler("bulk")),
        route(["POST"], "v1.0/publish/{pubsubname}/*", _handler("publish")),
    ],
    FALLBACK,
)


@pytest.mark.parametrize(
    ("method", "path", "handler", "params"),
    [
        ("GET", "/v1.0/state/s/k", "get", {"storeName": "s", "key": "k"}),
        # A static segment wins over a parameter, but only for the methods it serves.
        ("POST", "/v1.0/state/s/bulk", "bulk", {"storeName": "s"}),
        ("GET", "/v1.0/state/s/bulk", "get", {"storeName": "s", "key": "bulk"}),
        ("POST", "/v1.0/publish/ps/a/b/c", "publish", {"pubsubname": "ps", "*": "a/b/c"}),
        # Unknown paths and wrong methods go to the invocation fallback, never 404/405.
        ("DELETE", "/v1.0/state/s/bulk/x", "fallback", {}),
        ("POST", "/v1.0/state/s/k", "fallback", {}),
        ("GET", "/v1.0/nonsense", "fallback", {}),
    ],
)
def test_router_precedence(method: str, path: str, handler: str, params: dict[str, str]) -> None:
    found, found_params = ROUTER.resolve(method, path)
    assert found.__name__ == handler
    assert found_params == params
