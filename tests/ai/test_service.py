"""The ai-agent's HTTP API against a real sidecar and, through the real OpenAI SDK, the
local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json

import pytest

from daprforge.ai import AISettings
from daprforge.testing import OpenAIServer
from tests.ai.conftest import online, running, sse_events, streamed_text

PROMPT = {"prompt": "Explain Python lists", "context": {"level": "beginner"}}


async def test_plain_answer(settings: AISettings, openai_server: OpenAIServer, user: str) -> None:
    openai_server.reply("Lists keep items in order.")
    async with running(online(settings, openai_server)) as client:
        response = await client.post("/process", json={**PROMPT, "user_id": user})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == "Lists keep items in order."
    assert body["provider"] == "openai-compatible"
    assert body["model"] == settings.openai_model
    assert body["cached"] is False
    assert body["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": body["usage"]["prompt_tokens"],
        "completion_tokens": 5,
        "total_tokens": body["usage"]["prompt_tokens"] + 5,
        "estimated": False,
    }
    assert body["tokens"] == body["usage"]["total_tokens"]
    sent = openai_server.requests[-1].body
    assert sent["max_completion_tokens"] == settings.max_tokens
    assert sent["temperature"] == settings.temperature
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "Explain Python lists" not in sent["messages"][0]["content"]


async def test_max_tokens_parameter_name_is_configurable(
    settings: AISettings, openai_server: OpenAIServer
) -> None:
    configured = online(settings, openai_server, openai_max_tokens_param="max_tokens")
    async with running(configured) as client:
        assert (await client.post("/process", json=PROMPT)).status_code == 200
    sent = openai_server.requests[-1].body
    assert sent["max_tokens"] == settings.max_tokens
    assert "max_completion_tokens" not in sent


async def test_streamed_answer_with_the_usage_chunk(
    settings: AISettings, openai_server: OpenAIServer
) -> None:
    openai_server.reply("One two three four.")
    async with running(online(settings, openai_server)) as client:
        response = await client.post("/process/stream", json=PROMPT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["cache-control"] == "no-cache"
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == ["meta", "delta", "delta", "delta", "delta", "usage", "done"]
    assert streamed_text(events) == "One two three four."
    meta, usage, done = events[0][1], events[-2][1], events[-1][1]
    assert meta["provider"] == "openai-compatible"
    assert usage["completion_tokens"] == 4
    assert usage["estimated"] is False
    assert done == {"finish_reason": "stop", "tokens": usage["total_tokens"],
                    "session_id": meta["session_id"]}  # fmt: skip
    assert openai_server.requests[-1].body["stream_options"] == {"include_usage": True}


async def test_a_provider_without_stream_usage_is_estimated(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    openai_server.reply("No usage from me.", stream_usage=False)
    async with running(online(settings, openai_server)) as client:
        response = await client.post("/process/stream", json={**PROMPT, "user_id": user})
        usage = dict(sse_events(response.text))["usage"]
        assert usage["estimated"] is True
        assert usage["completion_tokens"] > 0
        report = (await client.get(f"/usage/{user}")).json()
    assert report["total"]["estimated_tokens"] == usage["total_tokens"]


async def test_stream_options_can_be_switched_off(
    settings: AISettings, openai_server: OpenAIServer
) -> None:
    openai_server.reject_stream_options = True
    async with running(online(settings, openai_server)) as client:
        refused = await client.post("/process/stream", json=PROMPT)
        assert refused.status_code == 502  # the provider said 400
    async with running(online(settings, openai_server, openai_stream_usage=False)) as client:
        response = await client.post("/process/stream", json=PROMPT)
    assert "stream_options" not in openai_server.requests[-1].body
    assert dict(sse_events(response.text))["usage"]["estimated"] is True


async def test_429_is_retried_by_the_sdk(settings: AISettings, openai_server: OpenAIServer) -> None:
    openai_server.fail(429, "slow down", headers={"retry-after-ms": "10"}, times=2)
    openai_server.reply("Finally.")
    async with running(online(settings, openai_server, openai_max_retries=2)) as client:
        response = await client.post("/process", json=PROMPT)
    assert response.status_code == 200
    assert response.json()["response"] == "Finally."
    assert len(openai_server.requests) == 3


async def test_lasting_429_is_a_503_with_retry_after(
    settings: AISettings, openai_server: OpenAIServer
) -> None:
    openai_server.fail(
        429, "Rate limit reached for org-123", headers={"retry-after-ms": "10"}, times=2
    )
    async with running(online(settings, openai_server, openai_max_retries=1)) as client:
        response = await client.post("/process", json=PROMPT)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    body = response.json()
    assert body["code"] == "provider_rate_limited"
    assert body["retryable"] is True
    assert "org-123" not in response.text
    assert len(openai_server.requests) == 2


async def test_lasting_500_is_a_502(settings: AISettings, openai_server: OpenAIServer) -> None:
    openai_server.fail(500, "database at 10.0.0.7 is down", headers={"retry-after-ms": "10"},
                       times=3)  # fmt: skip
    async with running(online(settings, openai_server, openai_max_retries=2)) as client:
        response = await client.post("/process", json=PROMPT)
        stream = await client.post("/process/stream", json=PROMPT)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "provider_failed"
    assert "10.0.0.7" not in response.text
    assert len(openai_server.requests) == 4  # three attempts, then the stream's one
    assert stream.status_code == 200  # the server answers the stream's request


async def test_a_slow_provider_times_out(settings: AISettings, openai_server: OpenAIServer) -> None:
    openai_server.reply("too late", delay=3.0)
    async with running(online(settings, openai_server, openai_timeout=0.3)) as client:
        response = await client.post("/process", json=PROMPT)
    assert response.status_code == 504
    assert response.json()["code"] == "provider_timeout"


async def test_an_unreachable_provider_is_a_503(settings: AISettings) -> None:
    from daprforge.launch import free_port

    nowhere = settings.model_copy(
        update={"openai_base_url": f"http://127.0.0.1:{free_port()}/v1", "openai_max_retries": 0}
    )
    async with running(nowhere) as client:
        response = await client.post("/process", json=PROMPT)
    assert response.status_code == 503
    assert response.json()["code"] == "provider_unreachable"


async def test_an_unreadable_provider_reply_is_a_502(settings: AISettings) -> None:
    """A provider whose reply is not HTTP a client can parse (a header line without a
    colon): a clear 502, for the plain and the streamed answer, never a 500."""

    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    garbled = settings.model_copy(
        update={"openai_base_url": f"http://127.0.0.1:{port}/v1", "openai_max_retries": 0}
    )
    try:
        async with running(garbled) as client:
            plain = await client.post("/process", json=PROMPT)
            streamed = await client.post("/process/stream", json=PROMPT)
    finally:
        server.close()
        await server.wait_closed()
    for response in (plain, streamed):
        assert response.status_code == 502, response.text
        assert response.json()["code"] == "provider_failed"


@pytest.mark.parametrize(
    ("role", "prompt", "expected"),
    [
        ("code-review", "```python\ndef f(x)\n    return x\n```", "does not compile"),
        ("code-review", "```python\nimport os\nx = 1\n```", "`os` is imported but never used"),
        ("concepts", "What is a generator?", "Generators:"),
        ("triage", "I get KeyError: 'name' on line 4", "runtime error (KeyError)"),
        ("general", "Explain tuples", "Tuples:"),
    ],
)
async def test_offline_mode_for_each_role(
    settings: AISettings, role: str, prompt: str, expected: str
) -> None:
    async with running(settings.model_copy(update={"ai_role": role})) as client:
        response = await client.post("/process", json={"prompt": prompt})
        stream = await client.post("/process/stream", json={"prompt": prompt})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "offline"
    assert body["model"] == "offline"
    assert body["usage"]["estimated"] is True
    assert body["response"].startswith("Offline help")
    assert expected in body["response"]
    assert streamed_text(sse_events(stream.text)) == body["response"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"prompt": ""}, ["body", "prompt"]),
        ({"prompt": "  \n "}, ["body", "prompt"]),
        ({"prompt": "x" * 20_001}, ["body", "prompt"]),
        ({"prompt": 42}, ["body", "prompt"]),
        ({"prompt": "hi", "context": "not an object"}, ["body", "context"]),
        ({"prompt": "hi", "context": {"code": "x" * 20_001}}, ["body", "context"]),
        ({"prompt": "hi", "session_id": "../etc"}, ["body", "session_id"]),
        ({"prompt": "hi", "user_id": "a||b"}, ["body", "user_id"]),
        ({"prompt": "hi", "temperature": 2}, ["body", "temperature"]),
        ({}, ["body", "prompt"]),
    ],
)
async def test_bad_input_is_a_clear_422(
    settings: AISettings, body: dict[str, object], where: list[str]
) -> None:
    async with running(settings) as client:
        response = await client.post("/process", json=body)
        stream = await client.post("/process/stream", json=body)
    assert response.status_code == stream.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["loc"] == where
    assert problem["errors"][0]["msg"]


async def test_a_context_that_is_not_utf8_is_a_clear_422(settings: AISettings) -> None:
    """A lone surrogate is valid JSON (escaped) but cannot reach the model as UTF-8."""
    body = json.dumps({"prompt": "hi", "context": {"x": "\ud800"}})
    headers = {"content-type": "application/json"}
    async with running(settings) as client:
        response = await client.post("/process", content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "context"]


async def test_bad_ids_in_paths_are_422(settings: AISettings) -> None:
    async with running(settings) as client:
        assert (await client.get("/usage/a%7C%7Cb")).status_code == 422
        assert (await client.get("/sessions/" + "x" * 200)).status_code == 422


async def test_concurrent_requests_are_all_answered(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    configured = online(settings, openai_server, rate_limit=0)
    async with running(configured) as client:
        responses = await asyncio.gather(
            *(client.post("/process", json={**PROMPT, "user_id": user}) for _ in range(10))
        )
    assert [r.status_code for r in responses] == [200] * 10
