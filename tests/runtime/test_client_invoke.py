"""Service invocation: a client on one sidecar calls an app behind another sidecar, found
through the name resolution the two share (same DAPRFORGE_DATA_DIR)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

from daprforge.client import (
    DaprClient,
    DaprError,
    InvocationError,
    TraceContext,
    use_trace,
)
from daprforge.testing import Sidecar, start_sidecar

from .apps import Order, running, service


class Echo(BaseModel):
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    headers: dict[str, str]


def echo_routes() -> APIRouter:
    router = APIRouter()

    @router.api_route("/echo/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def echo(request: Request) -> Echo:
        raw = await request.body()
        return Echo(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            body=raw.decode() if raw else None,
            headers=dict(request.headers),
        )

    @router.post("/orders")
    async def create(order: Order) -> Order:
        return order.model_copy(update={"quantity": order.quantity * 10})

    @router.get("/teapot")
    async def teapot() -> Response:
        return Response(b"short and stout", status_code=418, headers={"x-kind": "teapot"})

    return router


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def caller(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DaprClient]:
    """A client on the caller's sidecar; the target app "target" runs behind its own.
    Shared by the module: starting three processes per test would be slow."""
    tmp = tmp_path_factory.mktemp("invoke")
    env = {"DAPRFORGE_DATA_DIR": str(tmp / "shared-data")}
    started: list[Sidecar] = []

    async def factory(**options: Any) -> Sidecar:
        sidecar = await start_sidecar(tmp / f"sidecar-{len(started)}", **options)
        started.append(sidecar)
        return sidecar

    def build(url: str) -> FastAPI:
        app = service(url)
        app.include_router(echo_routes())
        return app

    try:
        async with running(factory, build, env=env, app_id="target"):
            own = await factory(app_id="caller", env=env)
            async with own.client() as client:
                yield client
    finally:
        for sidecar in started:
            await sidecar.stop()


async def test_invoke_with_json(caller: DaprClient) -> None:
    response = await caller.invoke("target", "orders", json=Order(order_id="o", quantity=2))
    assert response.status_code == 200
    assert response.json(Order) == Order(order_id="o", quantity=20)


async def test_verbs_paths_queries_and_headers(caller: DaprClient) -> None:
    trace = TraceContext.new()
    with use_trace(trace):
        response = await caller.invoke(
            "target",
            "echo/a/b",
            verb="PUT",
            content="plain body",
            params={"q": "1 2"},
            headers={"x-custom": "yes"},
        )
    echo = response.raise_for_status().json(Echo)
    assert (echo.method, echo.path, echo.query, echo.body) == (
        "PUT",
        "/echo/a/b",
        {"q": "1 2"},
        "plain body",
    )
    assert echo.headers["x-custom"] == "yes"
    assert echo.headers["dapr-caller-app-id"] == "caller"
    # The caller's trace goes along (as the parent of the sidecars' spans).
    traceparent = TraceContext.parse(echo.headers.get("traceparent"))
    assert traceparent is not None
    assert traceparent.trace_id == trace.trace_id

    get = (await caller.invoke("target", "echo/x")).json(Echo)
    assert (get.method, get.body) == ("GET", None)
    post = (await caller.invoke("target", "echo/x", content=b"data")).json(Echo)
    assert post.method == "POST"


async def test_method_paths_are_escaped(caller: DaprClient) -> None:
    response = await caller.invoke("target", "echo/a b/c%d")
    assert response.raise_for_status().json(Echo).path == "/echo/a b/c%d"


async def test_app_errors_come_back_as_responses(caller: DaprClient) -> None:
    response = await caller.invoke("target", "teapot")
    assert (response.status_code, response.text) == (418, "short and stout")
    assert response.headers["x-kind"] == "teapot"
    assert not response.is_success
    with pytest.raises(InvocationError) as caught:
        response.raise_for_status()
    assert (caught.value.status, caught.value.message) == (418, "short and stout")

    missing = await caller.invoke("target", "no/such/route")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_unknown_app_raises(caller: DaprClient) -> None:
    with pytest.raises(DaprError) as caught:
        await caller.invoke("nobody-here", "x")
    assert (caught.value.status, caught.value.error_code) == (500, "ERR_DIRECT_INVOKE")
