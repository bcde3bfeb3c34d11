"""The service kit, served by uvicorn next to a real sidecar: health and readiness,
metrics, logs, problem errors, body limit, API key."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from pydantic import BaseModel

from daprforge.client import TraceContext
from daprforge.launch import free_port
from daprforge.service import DaprDep, ServiceSettings, add_ready_check, create_app, require_api_key
from daprforge.testing import Sidecar, SidecarFactory, serve_app, start_sidecar

log = logging.getLogger("tests.service")


class Item(BaseModel):
    name: str
    price: float


def routes() -> APIRouter:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise HTTPException(404, "No item 0.")
        log.info("item served", extra={"item_id": item_id})
        return {"item_id": item_id}

    @router.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("password=hunter2 in an internal error")

    @router.get("/state/{store}/{key}")
    async def read_state(store: str, key: str, dapr: DaprDep) -> Any:
        item = await dapr.state.get(store, key)
        return item.value if item else None

    @router.put("/state/{key}")
    async def write_state(key: str, etag: str, dapr: DaprDep) -> None:
        await dapr.state.save("statestore", key, "v", etag=etag)

    return router


def guarded() -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key)])

    @router.get("/private")
    async def private() -> dict[str, str]:
        return {"secret": "data"}

    return router


async def always_ok() -> bool:
    return True


def build(sidecar_url: str, **settings: Any) -> FastAPI:
    app = create_app(
        ServiceSettings(
            _env_file=None,  # type: ignore[call-arg]
            app_id="kit",
            dapr_http_endpoint=sidecar_url,
            **settings,
        ),
        ready_checks={"cache": always_ok},
    )
    app.include_router(routes())
    app.include_router(guarded())
    return app


MODULE = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kit_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    """One sidecar for the tests that do not stop it (starting one per test is slow)."""
    sidecar = await start_sidecar(tmp_path_factory.mktemp("kit"))
    try:
        yield sidecar
    finally:
        await sidecar.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kit(kit_sidecar: Sidecar) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = build(kit_sidecar.url, max_body_size=100, api_key="key-123")
    async with serve_app(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        yield http, app


def sample(app: FastAPI, name: str, **labels: str) -> float:
    return float(app.state.metrics.registry.get_sample_value(name, labels) or 0)


@MODULE
async def test_health_needs_nothing(kit: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, _ = kit
    response = await http.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_ready_follows_the_sidecar(dapr_sidecar_factory: SidecarFactory) -> None:
    sidecar_port = free_port()
    app = build(f"http://127.0.0.1:{sidecar_port}")
    async with serve_app(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/ready")
        assert response.status_code == 503
        assert response.json()["failing"] == ["dapr"]

        sidecar = await dapr_sidecar_factory(port=sidecar_port)
        response = await http.get("/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"dapr": "ok", "cache": "ok"}}

        await sidecar.stop()
        response = await http.get("/ready")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "failing": ["dapr"],
            "checks": {"dapr": "failing", "cache": "ok"},
        }
        assert (await http.get("/health")).status_code == 200  # liveness is unaffected

        await sidecar.start()
        assert (await http.get("/ready")).status_code == 200


@MODULE
async def test_ready_names_failing_and_slow_checks(kit_sidecar: Sidecar) -> None:
    app = build(kit_sidecar.url, ready_timeout=0.2)

    async def broken() -> bool:
        raise ConnectionError("db at 10.0.0.1 refused")

    async def slow() -> None:
        await asyncio.sleep(5)

    async def unhealthy() -> bool:
        return False

    add_ready_check(app, "db", broken)
    add_ready_check(app, "search", slow)
    add_ready_check(app, "queue", unhealthy)
    for taken in ("db", "dapr"):
        with pytest.raises(ValueError, match="exists already"):
            add_ready_check(app, taken, broken)
    async with serve_app(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/ready")
    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == ["db", "search", "queue"]
    assert body["checks"] == {
        "dapr": "ok",
        "cache": "ok",
        "db": "failing",
        "search": "timeout",
        "queue": "failing",
    }
    assert "10.0.0.1" not in response.text


@MODULE
async def test_metrics(kit: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, app = kit
    route = {"method": "GET", "route": "/items/{item_id}"}
    ok = {**route, "status": "200"}
    before = (
        sample(app, "http_requests_total", **ok),
        sample(app, "http_requests_total", **route, status="404"),
        sample(app, "http_request_duration_seconds_count", **route),
        sample(app, "dapr_client_request_duration_seconds_count", operation="state.get"),
        sample(app, "dapr_client_errors_total", operation="state.get", status="400"),
    )
    for item_id in (1, 2, 0):
        await http.get(f"/items/{item_id}")
    await http.get("/state/statestore/missing")
    await http.get("/state/no-such-store/k")
    after = (
        sample(app, "http_requests_total", **ok),
        sample(app, "http_requests_total", **route, status="404"),
        sample(app, "http_request_duration_seconds_count", **route),
        sample(app, "dapr_client_request_duration_seconds_count", operation="state.get"),
        sample(app, "dapr_client_errors_total", operation="state.get", status="400"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 3, 2, 1]
    text = (await http.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/items/{item_id}",status="404"}' in text
    assert 'dapr_client_errors_total{operation="state.get",status="400"}' in text
    assert "process_cpu_seconds_total" in text


@MODULE
async def test_json_logs_carry_request_and_trace_ids(
    kit: tuple[httpx.AsyncClient, FastAPI], capsys: pytest.CaptureFixture[str]
) -> None:
    http, _ = kit
    caller = TraceContext.new()
    response = await http.get(
        "/items/7", headers={"x-request-id": "req-42", "traceparent": caller.traceparent}
    )
    assert response.headers["x-request-id"] == "req-42"
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    served = next(line for line in lines if line["message"] == "item served")
    access = next(line for line in lines if line["message"] == "GET /items/7 200")
    for line in (served, access):
        assert line["request_id"] == "req-42"
        assert line["trace_id"] == caller.trace_id
        assert line["span_id"] != caller.span_id  # our own span within the caller's trace
        assert line["service"] == "kit"
    assert served["item_id"] == 7
    assert (access["status"], access["method"], access["path"]) == (200, "GET", "/items/7")
    assert access["duration_ms"] >= 0

    generated = await http.get("/items/8")
    assert len(generated.headers["x-request-id"]) == 32


@MODULE
async def test_problem_bodies(kit: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, _ = kit
    missing = await http.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["title"] == "Not Found"

    no_item = (await http.get("/items/0")).json()
    assert (no_item["status"], no_item["detail"], no_item["instance"]) == (
        404,
        "No item 0.",
        "/items/0",
    )
    assert no_item["request_id"]

    invalid = await http.post("/items", json={"name": "x", "price": "cheap"})
    body = invalid.json()
    assert invalid.status_code == 422
    assert body["errors"] == [
        {
            "loc": ["body", "price"],
            "msg": "Input should be a valid number, unable to parse string as a number",
            "type": "float_parsing",
        }
    ]
    assert "cheap" not in invalid.text


@MODULE
async def test_unexpected_errors_leak_nothing(
    kit: tuple[httpx.AsyncClient, FastAPI], capsys: pytest.CaptureFixture[str]
) -> None:
    http, _ = kit
    response = await http.get("/crash", headers={"x-request-id": "req-crash"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert response.json()["request_id"] == "req-crash"
    logged = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "req-crash" in line
    ]
    error = next(line for line in logged if line["level"] == "ERROR")
    assert "hunter2" in error["exception"]  # the details are in the log, for the operator


async def test_dapr_errors_become_problems(dapr_sidecar: Sidecar) -> None:
    app = build(dapr_sidecar.url)
    async with serve_app(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        async with dapr_sidecar.client() as dapr:
            await dapr.state.save("statestore", "doc", "v1")
        conflict = await http.put("/state/doc", params={"etag": "stale"})
        assert conflict.status_code == 409
        assert conflict.json()["detail"] == "The resource was changed concurrently; retry."

        unknown = await http.get("/state/no-such-store/k")
        assert unknown.status_code == 502
        assert "ERR_STATE_STORE_NOT_FOUND" not in unknown.text
        assert "is not found" not in unknown.text

        await dapr_sidecar.stop()
        down = await http.get("/state/statestore/doc")
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        assert str(dapr_sidecar.port) not in down.text


@MODULE
async def test_body_size_limit(kit: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, _ = kit
    small = await http.post("/items", json={"name": "x", "price": 1})
    assert small.status_code == 200
    large = await http.post("/items", json={"name": "x" * 200, "price": 1})
    assert large.status_code == 413
    assert large.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 20
        yield b'", "price": 1}'

    chunked = await http.post(
        "/items", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413


@MODULE
async def test_api_key(kit: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, _ = kit
    assert (await http.get("/private")).status_code == 401
    wrong = await http.get("/private", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "ApiKey"
    right = await http.get("/private", headers={"x-api-key": "key-123"})
    assert right.json() == {"secret": "data"}
    assert (await http.get("/items/1")).status_code == 200  # unguarded routes stay open


@MODULE
async def test_without_an_api_key_guarded_routes_are_open(kit_sidecar: Sidecar) -> None:
    async with (
        serve_app(build(kit_sidecar.url)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        assert (await http.get("/private")).status_code == 200


@MODULE
async def test_user_lifespan_runs_inside(kit_sidecar: Sidecar) -> None:
    import contextlib

    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert await app.state.dapr.is_healthy(outbound=True)  # the client exists already
        seen.append("start")
        yield
        seen.append("stop")

    app = create_app(
        ServiceSettings(_env_file=None, dapr_http_endpoint=kit_sidecar.url),  # type: ignore[call-arg]
        lifespan=lifespan,
    )
    async with serve_app(app):
        assert seen == ["start"]
    assert seen == ["start", "stop"]
