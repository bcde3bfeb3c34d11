"""Fixtures for the AI layer's tests: an app built the way a generated ai-agent builds it,
served on a real port, a real sidecar shared by the module, and the local OpenAI server
(``openai_server``, driven through the real SDK)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import SecretStr

from daprforge.ai import (
    ID_PATTERN,
    Agent,
    AISettings,
    EventStreamResponse,
    ProcessRequest,
    ProcessResponse,
    Session,
    UsageReport,
    install_ai_error_handler,
)
from daprforge.service import create_app
from daprforge.testing import OpenAIServer, Sidecar, serve_app, start_sidecar


async def get_agent(request: Request) -> Agent:
    agent = request.app.state.agent
    assert isinstance(agent, Agent)
    return agent


AgentDep = Annotated[Agent, Depends(get_agent)]
Id = Annotated[str, PathParam(pattern=ID_PATTERN)]


def ai_router() -> APIRouter:
    """The routes of the generated ai-agent (templates/ai-agent/app/routes.py.j2)."""
    router = APIRouter()

    @router.post("/process")
    async def process(request: ProcessRequest, agent: AgentDep) -> ProcessResponse:
        return await agent.answer(request)

    @router.post("/process/stream", response_class=EventStreamResponse)
    async def process_stream(request: ProcessRequest, agent: AgentDep) -> EventStreamResponse:
        stream = await agent.stream(request)
        return EventStreamResponse(stream.events(), keepalive=agent.settings.sse_keepalive)

    @router.get("/usage/{user_id}")
    async def usage(user_id: Id, agent: AgentDep) -> UsageReport:
        return await agent.usage(user_id)

    @router.get("/sessions/{session_id}")
    async def get_session(session_id: Id, agent: AgentDep) -> Session:
        session = await agent.session(session_id)
        if session is None:
            raise HTTPException(404, f"No session {session_id}.")
        return session

    @router.delete("/sessions/{session_id}", status_code=204)
    async def delete_session(session_id: Id, agent: AgentDep) -> None:
        if not await agent.delete_session(session_id):
            raise HTTPException(404, f"No session {session_id}.")

    return router


def build_app(settings: AISettings, *routers: APIRouter) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Agent(settings, app.state.dapr) as agent:
            app.state.agent = agent
            yield

    app = create_app(settings, lifespan=lifespan)
    install_ai_error_handler(app)
    app.include_router(ai_router())
    for router in routers:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def running(
    settings: AISettings, *routers: APIRouter, port: int | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_app(build_app(settings, *routers), port=port) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30.0) as client,
    ):
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    """One sidecar (in-memory state and pub/sub) per module; tests keep apart by using
    their own user and session ids."""
    started = await start_sidecar(tmp_path_factory.mktemp("ai-sidecar"), app_id="ai-tests")
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(sidecar: Sidecar) -> AISettings:
    """Offline settings against the module's sidecar, nothing from the environment."""
    return AISettings(
        _env_file=None,  # type: ignore[call-arg]
        dapr_http_endpoint=sidecar.url,
        log_json=False,
        openai_api_key=None,
        openai_base_url=None,
    )


def online(settings: AISettings, server: OpenAIServer, **changes: Any) -> AISettings:
    return settings.model_copy(
        update={
            "openai_api_key": SecretStr(server.api_key or "unused"),
            "openai_base_url": server.url,
            "openai_max_retries": 0,
            **changes,
        }
    )


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream; comments left out."""
    found = []
    for block in body.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def streamed_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


async def eventually(
    condition: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.05
) -> None:
    """Wait until ``condition()`` holds (for work the service finishes after answering)."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)
