"""Streams: errors midway, keep-alive comments, and a client that leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from daprforge.ai import AISettings, EventStreamResponse, ServerSentEvent
from daprforge.testing import OpenAIServer, serve_app
from tests.ai.conftest import eventually, online, running, sse_events, streamed_text

PROMPT = {"prompt": "Explain Python lists"}


async def test_an_error_midway_is_an_error_event(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    openai_server.reply("one two three four five", error_after=2)
    async with running(online(settings, openai_server)) as client:
        response = await client.post("/process/stream", json={**PROMPT, "user_id": user})
        events = sse_events(response.text)
        assert [name for name, _ in events] == ["meta", "delta", "delta", "error"]
        assert streamed_text(events) == "one two "
        error = events[-1][1]
        assert error["code"] == "provider_error"
        assert error["status"] == 502
        assert error["retryable"] is True
        assert "server had an error" not in response.text  # the provider's words stay out

        async def charged() -> bool:
            usage = (await client.get(f"/usage/{user}")).json()["total"]
            return bool(usage["requests"] == 1 and usage["estimated_tokens"] > 0)

        await eventually(charged)


async def test_keep_alive_comments_while_the_model_is_slow(
    settings: AISettings, openai_server: OpenAIServer
) -> None:
    openai_server.reply("slow words here", chunk_delay=0.3)
    configured = online(settings, openai_server, sse_keepalive=0.05)
    async with running(configured) as client:
        response = await client.post("/process/stream", json=PROMPT)
    assert ": keep-alive\n\n" in response.text
    assert streamed_text(sse_events(response.text)) == "slow words here"


async def test_a_client_leaving_stops_the_upstream_and_is_charged(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    openai_server.reply(words, chunk_delay=0.05)
    async with running(online(settings, openai_server)) as client:
        async with client.stream(
            "POST", "/process/stream", json={**PROMPT, "user_id": user}
        ) as response:
            received = ""
            async for text in response.aiter_text():
                received += text
                if received.count("event: delta") >= 3:
                    break  # leaving: the connection closes
        async with asyncio.timeout(5):
            await openai_server.wait_for_disconnect()
        assert openai_server.disconnects == 1
        assert openai_server.completed_streams == 0

        async def charged() -> bool:
            usage = (await client.get(f"/usage/{user}")).json()["total"]
            return bool(usage["requests"] == 1)

        await eventually(charged)
        usage = (await client.get(f"/usage/{user}")).json()["total"]
    assert usage["estimated_tokens"] == usage["total_tokens"] > 0
    assert usage["completion_tokens"] < 200  # only what was streamed


async def test_the_response_closes_its_events_when_the_client_leaves() -> None:
    """EventStreamResponse alone: the event source's finally runs at once, even while it
    waits (no write has to fail first)."""
    closed = asyncio.Event()
    started = asyncio.Event()

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent("delta", {"text": "hi"})
            started.set()
            await asyncio.sleep(60)
            yield ServerSentEvent("delta", {"text": "never"})
        finally:
            closed.set()

    app = FastAPI()

    @app.get("/events")
    async def stream() -> EventStreamResponse:
        return EventStreamResponse(events(), keepalive=30)

    async with serve_app(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        async with client.stream("GET", "/events") as response:
            async for _ in response.aiter_bytes():
                break
            async with asyncio.timeout(5):
                await started.wait()
        async with asyncio.timeout(5):
            await closed.wait()


async def test_an_exception_in_the_events_ends_the_stream() -> None:
    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent("delta", {"text": "hi"})
        raise RuntimeError("bug")

    app = FastAPI()

    @app.get("/events")
    async def stream() -> EventStreamResponse:
        return EventStreamResponse(events())

    received: list[bytes] = []

    async def read(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/events") as response:
            async for chunk in response.aiter_bytes():
                received.append(chunk)  # each chunk, up to the error

    async with serve_app(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # cut off, not ended as if complete
            await read(client)
    assert b"".join(received) == b'event: delta\ndata: {"text":"hi"}\n\n'
