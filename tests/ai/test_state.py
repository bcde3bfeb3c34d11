"""What the agent keeps in the Dapr state store: usage, limits, sessions, the cache; and
the usage event it publishes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from daprforge.ai import AISettings
from daprforge.ai.usage import utc_day
from daprforge.events import EventRouter
from daprforge.launch import free_port
from daprforge.testing import OpenAIServer, SidecarFactory
from tests.ai.conftest import eventually, online, running, sse_events, streamed_text

PROMPT = {"prompt": "Explain Python lists"}


async def test_usage_per_user_and_day(settings: AISettings, user: str) -> None:
    async with running(settings) as client:
        answers = [
            (await client.post("/process", json={**PROMPT, "user_id": user})).json()
            for _ in range(3)
        ]
        report = (await client.get(f"/usage/{user}")).json()
        other = (await client.get("/usage/somebody-else")).json()
    tokens = sum(answer["tokens"] for answer in answers)
    today = utc_day(time.time())
    assert report["user_id"] == user
    assert report["total"]["requests"] == 3
    assert report["total"]["total_tokens"] == tokens
    assert report["days"][today] == report["total"] == report["today"]
    assert report["daily_token_budget"] == settings.daily_token_budget
    assert report["remaining_today"] == settings.daily_token_budget - tokens
    assert other["total"]["requests"] == 0


async def test_concurrent_answers_lose_no_tokens(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    """Twenty answers for one user at once: every increment of the usage document
    survives the ETag conflicts."""
    configured = online(settings, openai_server, rate_limit=0)
    async with running(configured) as client:
        responses = await asyncio.gather(
            *(
                client.post("/process", json={"prompt": f"question {i} " * i, "user_id": user})
                for i in range(1, 21)
            )
        )
        assert all(response.status_code == 200 for response in responses)
        report = (await client.get(f"/usage/{user}")).json()
    assert report["total"]["requests"] == 20
    assert report["total"]["total_tokens"] == sum(r.json()["tokens"] for r in responses)


async def test_rate_limit_is_429_with_retry_after(settings: AISettings, user: str) -> None:
    async with running(settings.model_copy(update={"rate_limit": 2})) as client:
        ok = [await client.post("/process", json={**PROMPT, "user_id": user}) for _ in range(2)]
        limited = await client.post("/process", json={**PROMPT, "user_id": user})
        limited_stream = await client.post("/process/stream", json={**PROMPT, "user_id": user})
        other_user = await client.post("/process", json={**PROMPT, "user_id": f"{user}-2"})
    assert [r.status_code for r in ok] == [200, 200]
    assert limited.status_code == limited_stream.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    body = limited.json()
    assert body["code"] == "rate_limited"
    assert body["limit"] == 2
    assert "2 requests per minute" in body["detail"]
    assert other_user.status_code == 200


async def test_racing_requests_never_exceed_the_rate_limit(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    """Ten requests of one user at once against a limit of three: the counting writes
    conflict, are read again, and exactly three get through."""
    openai_server.always("ok", delay=0.2)
    async with running(online(settings, openai_server, rate_limit=3)) as client:
        responses = await asyncio.gather(
            *(client.post("/process", json={**PROMPT, "user_id": user}) for _ in range(10))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 3 + [429] * 7


async def test_daily_budget_is_429_until_midnight(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    configured = online(settings, openai_server, daily_token_budget=10)
    async with running(configured) as client:
        first = await client.post("/process", json={**PROMPT, "user_id": user})
        assert first.status_code == 200
        assert first.json()["tokens"] >= 10
        refused = await client.post("/process", json={**PROMPT, "user_id": user})
        report = (await client.get(f"/usage/{user}")).json()
    assert refused.status_code == 429
    assert refused.json()["code"] == "token_budget_exhausted"
    assert refused.json()["used"] == first.json()["tokens"]
    seconds_left = 86400 - time.time() % 86400
    assert abs(int(refused.headers["retry-after"]) - seconds_left) < 60
    assert len(openai_server.requests) == 1  # the refused request never reached the model
    assert report["remaining_today"] == 0


async def test_a_refused_stream_never_reaches_the_model(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    """A stream's model request is built while the limits are read, and held: a refused
    one is cancelled before a byte of it is sent."""
    async with (
        running(online(settings, openai_server, rate_limit=1)) as rated,
        running(online(settings, openai_server, daily_token_budget=10)) as budgeted,
    ):
        question = {**PROMPT, "user_id": user}
        answered = [await rated.post("/process/stream", json=question)]
        limited = await rated.post("/process/stream", json=question)
        answered.append(
            await budgeted.post("/process/stream", json={**question, "user_id": f"{user}-b"})
        )
        over_budget = await budgeted.post(
            "/process/stream", json={**question, "user_id": f"{user}-b"}
        )
    assert [response.status_code for response in answered] == [200, 200]
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert (over_budget.status_code, over_budget.json()["code"]) == (429, "token_budget_exhausted")
    await asyncio.sleep(0.1)  # a request let go late would have arrived by now
    assert len(openai_server.requests) == 2


async def test_cache_serves_deterministic_answers(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    configured = online(settings, openai_server, temperature=0.0)
    question = {"prompt": f"Define a tuple for {user}", "user_id": user}
    async with running(configured) as client:
        first = (await client.post("/process", json=question)).json()
        second = (await client.post("/process", json=question)).json()
        streamed = await client.post("/process/stream", json=question)
        report = (await client.get(f"/usage/{user}")).json()
    assert len(openai_server.requests) == 1
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["response"] == first["response"]
    assert second["tokens"] == 0  # a cache hit costs no tokens
    events = sse_events(streamed.text)
    assert events[0][1]["cached"] is True
    assert streamed_text(events) == first["response"]
    assert report["total"]["requests"] == 3
    assert report["total"]["cached_requests"] == 2
    assert report["total"]["total_tokens"] == first["tokens"]


async def test_no_cache_when_temperature_is_above_zero(
    settings: AISettings, openai_server: OpenAIServer
) -> None:
    async with running(online(settings, openai_server, temperature=0.7)) as client:
        for _ in range(2):
            body = (await client.post("/process", json=PROMPT)).json()
            assert body["cached"] is False
    assert len(openai_server.requests) == 2


async def test_a_session_keeps_the_conversation(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    async with running(online(settings, openai_server)) as client:
        openai_server.reply("Hello Ada.")
        first = (await client.post("/process", json={"prompt": "I am Ada", "user_id": user})).json()
        session_id = first["session_id"]
        second = await client.post(
            "/process", json={"prompt": "Who am I?", "session_id": session_id, "user_id": user}
        )
        assert second.json()["session_id"] == session_id
        sent = openai_server.requests[-1].body["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert "I am Ada" in sent[1]["content"]
        assert sent[2]["content"] == "Hello Ada."

        session = (await client.get(f"/sessions/{session_id}")).json()
        assert session["user_id"] == user
        assert [m["content"] for m in session["messages"]][:2] == ["I am Ada", "Hello Ada."]

        stolen = await client.post(
            "/process", json={"prompt": "x", "session_id": session_id, "user_id": "mallory"}
        )
        assert stolen.status_code == 403
        assert stolen.json()["code"] == "session_forbidden"

        assert (await client.delete(f"/sessions/{session_id}")).status_code == 204
        assert (await client.get(f"/sessions/{session_id}")).status_code == 404
        assert (await client.delete(f"/sessions/{session_id}")).status_code == 404


async def test_history_is_trimmed_to_its_token_budget(
    settings: AISettings, openai_server: OpenAIServer, user: str
) -> None:
    configured = online(settings, openai_server, memory_tokens=120, rate_limit=0)
    async with running(configured) as client:
        session_id = None
        for turn in range(8):
            request: dict[str, Any] = {"prompt": f"turn {turn} " + "word " * 15, "user_id": user}
            if session_id:
                request["session_id"] = session_id
            session_id = (await client.post("/process", json=request)).json()["session_id"]
        stream = await client.post(
            "/process/stream", json={"prompt": "last", "session_id": session_id, "user_id": user}
        )
        stored = (await client.get(f"/sessions/{session_id}")).json()["messages"]
    sent = openai_server.requests[-1].body["messages"]
    assert sent[0]["role"] == "system"
    assert sent[1]["role"] == "user"  # the kept history starts on a question
    assert "last" in sent[-1]["content"]
    history = sent[1:-1]
    assert 0 < len(history) < 16
    assert "turn 7" in history[-2]["content"]  # the newest turns are kept
    assert not any("turn 0" in m["content"] for m in history)
    assert sse_events(stream.text)[0][1]["history_trimmed"] == 16 - len(history)
    assert len(stored) == 18  # the store keeps everything up to memory_max_messages


async def test_a_usage_event_is_published_after_each_answer(
    settings: AISettings, dapr_sidecar_factory: SidecarFactory, user: str
) -> None:
    received: list[dict[str, Any]] = []
    events = EventRouter()

    @events.subscribe("pubsub", "ai-usage")
    async def on_usage(event: dict[str, Any]) -> None:
        received.append(event)

    sidecar_port, app_port = free_port(), free_port()
    sidecar = await dapr_sidecar_factory(port=sidecar_port, app_port=app_port)
    configured = settings.model_copy(update={"dapr_http_endpoint": sidecar.url})
    async with running(configured, events, port=app_port) as client:
        await sidecar.wait_for_app()
        answer = (await client.post("/process", json={**PROMPT, "user_id": user})).json()

        async def published() -> bool:
            return len(received) == 1

        await eventually(published)
    event = received[0]
    assert event["user_id"] == user
    assert event["session_id"] == answer["session_id"]
    assert event["provider"] == "offline"
    assert event["usage"] == answer["usage"]
    # No learner content in analytics events.
    assert "prompt" not in event
    assert "response" not in event
