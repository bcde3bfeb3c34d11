"""The ``openai_server`` fixture, driven by the official OpenAI SDK."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from daprforge.testing import OpenAIServer, ToolCall


@pytest.fixture
async def client(openai_server: OpenAIServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=openai_server.url, api_key=openai_server.api_key, max_retries=0
    ) as sdk:
        yield sdk


async def test_completion_echoes_by_default(
    client: AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    completion = await client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is Dapr?"},
        ],
    )
    assert completion.choices[0].message.content == "What is Dapr?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 3)
    recorded = openai_server.requests[-1]
    assert recorded.path == "/v1/chat/completions"
    assert recorded.body["messages"][0]["content"] == "Be brief."
    assert recorded.headers["authorization"] == f"Bearer {openai_server.api_key}"


async def test_scripted_replies_in_order(client: AsyncOpenAI, openai_server: OpenAIServer) -> None:
    openai_server.reply("first")
    openai_server.reply("second")
    answers = []
    for _ in range(3):
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "again"}]
        )
        answers.append(completion.choices[0].message.content)
    assert answers == ["first", "second", "again"]


async def test_streaming_with_a_final_usage_chunk(
    client: AsyncOpenAI, openai_server: OpenAIServer
) -> None:
    openai_server.reply("Hello there, streaming world")
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            assert chunk.choices == []  # the usage chunk comes last, alone
            usage = chunk.usage
            continue
        choice = chunk.choices[0]
        pieces.append(choice.delta.content or "")
        finish = choice.finish_reason or finish
    assert "".join(pieces) == "Hello there, streaming world"
    assert len([p for p in pieces if p]) == 4  # one chunk per word
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1, 4, 5)


async def test_streaming_without_usage(client: AsyncOpenAI, openai_server: OpenAIServer) -> None:
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "ping"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "ping"


async def test_tool_calls(client: AsyncOpenAI, openai_server: OpenAIServer) -> None:
    openai_server.reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})])
    completion = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]


async def test_scripted_errors(client: AsyncOpenAI, openai_server: OpenAIServer) -> None:
    openai_server.fail(
        429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "1"}
    )
    openai_server.fail(500, "boom")
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    ok = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert ok.choices[0].message.content == "x"


async def test_scripted_delay(client: AsyncOpenAI, openai_server: OpenAIServer) -> None:
    openai_server.reply("late", delay=0.6)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], timeout=0.1
        )
    assert time.monotonic() - started < 0.5


async def test_wrong_key_is_refused(openai_server: OpenAIServer) -> None:
    async with AsyncOpenAI(base_url=openai_server.url, api_key="wrong", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    async with httpx.AsyncClient() as http:
        models = await http.get(
            f"{openai_server.url}/models",
            headers={"authorization": f"Bearer {openai_server.api_key}"},
        )
    assert models.json()["data"][0]["id"] == "test-model"
