"""How the client behaves when the sidecar is slow, absent, failing or strict: retries,
timeouts, waiting for it, API tokens.

The misbehaving "sidecars" here are real HTTP servers on local ports (a Starlette app
served by uvicorn) scripted to fail; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daprforge.client import DaprClient, DaprError, SidecarUnavailableError
from daprforge.launch import free_port
from daprforge.testing import AppServer, SidecarFactory, serve_app


class FlakySidecar:
    """Answers the first ``failures`` calls with ``status``, then like a sidecar would."""

    def __init__(self, failures: int, status: int = 503, delay: float = 0.0) -> None:
        self.failures = failures
        self.status = status
        self.delay = delay
        self.hits: list[str] = []
        self.app = Starlette(
            routes=[
                Route("/v1.0/state/{store}/{key}", self.get_state, methods=["GET"]),
                Route("/v1.0/publish/{pubsub}/{topic:path}", self.publish, methods=["POST"]),
            ]
        )

    async def _fail(self, request: Request) -> Response | None:
        self.hits.append(request.method)
        if self.delay:
            await asyncio.sleep(self.delay)
        if len(self.hits) <= self.failures:
            return JSONResponse({"errorCode": "ERR_X", "message": "busy"}, self.status)
        return None

    async def get_state(self, request: Request) -> Response:
        failed = await self._fail(request)
        return failed or Response(b'{"n":1}', media_type="application/json", headers={"etag": "7"})

    async def publish(self, request: Request) -> Response:
        return await self._fail(request) or Response(status_code=204)


@pytest.fixture
async def flaky(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FlakySidecar, AppServer]]:
    sidecar = FlakySidecar(**request.param)
    async with serve_app(sidecar.app) as server:
        yield sidecar, server


@pytest.mark.parametrize("flaky", [{"failures": 2}], indirect=True)
async def test_503_is_retried_for_reads(flaky: tuple[FlakySidecar, AppServer]) -> None:
    sidecar, server = flaky
    observed: list[tuple[str, int | None]] = []
    async with DaprClient(
        server.url, api_token="", observer=lambda op, status, _: observed.append((op, status))
    ) as dapr:
        item = await dapr.state.get("store", "k")
    assert item is not None
    assert (item.value, item.etag) == ({"n": 1}, "7")
    assert len(sidecar.hits) == 3
    assert observed == [("state.get", 503), ("state.get", 503), ("state.get", 200)]


@pytest.mark.parametrize("flaky", [{"failures": 5}], indirect=True)
async def test_retries_are_bounded(flaky: tuple[FlakySidecar, AppServer]) -> None:
    sidecar, server = flaky
    async with DaprClient(server.url, api_token="", retries=2) as dapr:
        with pytest.raises(DaprError) as caught:
            await dapr.state.get("store", "k")
    assert caught.value.status == 503
    assert len(sidecar.hits) == 3


@pytest.mark.parametrize("flaky", [{"failures": 1}], indirect=True)
async def test_publish_is_not_retried_once_sent(flaky: tuple[FlakySidecar, AppServer]) -> None:
    sidecar, server = flaky
    async with DaprClient(server.url, api_token="") as dapr:
        with pytest.raises(DaprError) as caught:
            await dapr.pubsub.publish("pubsub", "orders", {"id": 1})
    assert (caught.value.status, caught.value.error_code) == (503, "ERR_X")
    assert sidecar.hits == ["POST"]


@pytest.mark.parametrize("flaky", [{"failures": 0, "status": 400}], indirect=True)
async def test_client_errors_are_never_retried(flaky: tuple[FlakySidecar, AppServer]) -> None:
    sidecar, server = flaky
    sidecar.failures = 10
    async with DaprClient(server.url, api_token="") as dapr:
        with pytest.raises(DaprError) as caught:
            await dapr.state.get("store", "k")
    assert caught.value.status == 400
    assert len(sidecar.hits) == 1


@pytest.mark.parametrize("flaky", [{"failures": 0, "delay": 0.5}], indirect=True)
async def test_every_attempt_has_a_timeout(flaky: tuple[FlakySidecar, AppServer]) -> None:
    sidecar, server = flaky
    async with DaprClient(server.url, api_token="", timeout=0.1, retries=1) as dapr:
        started = time.monotonic()
        with pytest.raises(SidecarUnavailableError) as caught:
            await dapr.state.get("store", "k")
    assert caught.value.status == 504
    assert len(sidecar.hits) == 2  # a read may be repeated after a timeout
    assert time.monotonic() - started < 0.9  # two full waits would take 1 s


async def test_unreachable_sidecar() -> None:
    observed: list[int | None] = []
    url = f"http://127.0.0.1:{free_port()}"
    async with DaprClient(url, retries=2, observer=lambda _, s, __: observed.append(s)) as dapr:
        with pytest.raises(SidecarUnavailableError) as caught:
            # Not even a publish has any effect when the connection fails: it is retried.
            await dapr.pubsub.publish("pubsub", "t", {"a": 1})
        assert not await dapr.is_healthy()
    assert caught.value.status == 503
    assert url in caught.value.message
    assert observed == [None, None, None, None]  # three attempts, then one probe


async def test_wait_for_sidecar_gives_up_after_the_timeout() -> None:
    async with DaprClient(f"http://127.0.0.1:{free_port()}") as dapr:
        started = time.monotonic()
        with pytest.raises(SidecarUnavailableError, match=r"not ready after 0\.5s"):
            await dapr.wait_for_sidecar(timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 1.5


async def test_wait_for_sidecar_returns_once_it_is_up(dapr_sidecar_factory: SidecarFactory) -> None:
    port = free_port()
    async with DaprClient(f"http://127.0.0.1:{port}", api_token="") as dapr:
        waiting = asyncio.create_task(dapr.wait_for_sidecar(timeout=20))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # and the event loop is free meanwhile
        await dapr_sidecar_factory(port=port)
        await asyncio.wait_for(waiting, 5)


async def test_api_token(dapr_sidecar_factory: SidecarFactory) -> None:
    sidecar = await dapr_sidecar_factory(env={"DAPR_API_TOKEN": "secret-token"})
    async with DaprClient(sidecar.url, api_token="") as anonymous:
        assert await anonymous.is_healthy()  # health is exempt, as in daprd
        with pytest.raises(DaprError) as caught:
            await anonymous.state.get("statestore", "k")
        assert (caught.value.status, caught.value.message) == (401, "invalid api token")
    async with DaprClient(sidecar.url, api_token="secret-token") as client:
        await client.state.save("statestore", "k", 1)
        item = await client.state.get("statestore", "k")
        assert item is not None
        assert item.value == 1
    async with sidecar.client() as from_env:  # the fixture passes the sidecar's token on
        assert await from_env.state.get("statestore", "k") is not None
