"""Publishing with DaprClient and receiving with EventRouter, through a real sidecar and
its pub/sub component (in-memory; Redis Streams where marked)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from daprforge.client import BulkMessage, CloudEvent, TraceContext, current_trace, use_trace
from daprforge.events import Drop, EventRouter, Idempotency, Retry, UnitOfWork
from daprforge.launch import free_port
from daprforge.testing import (
    SidecarFactory,
    component,
    in_memory_components,
    pubsub_retry_policy,
    serve_app,
)
from tests.conftest import service_address

from .apps import Order, eventually, running, service


def topic_name(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


REDIS_HOST, REDIS_PORT = service_address("redis")
PUBSUB_KINDS = [
    pytest.param("pubsub.in-memory", id="in-memory"),
    pytest.param("pubsub.redis", id="redis", marks=pytest.mark.redis),
]


def pubsub_component(kind: str) -> dict[str, Any]:
    if kind == "pubsub.redis":
        return component(
            "pubsub",
            kind,
            {"redisHost": f"{REDIS_HOST}:{REDIS_PORT}", "processingTimeout": "0"},
        )
    return component("pubsub", kind)


@pytest.fixture
async def redis_cleanup() -> AsyncIterator[list[str]]:
    """Streams (topics) to delete after a Redis test."""
    topics: list[str] = []
    yield topics
    if topics:
        from redis.asyncio import Redis

        client = Redis(host=REDIS_HOST, port=REDIS_PORT)
        try:
            await client.delete(*topics)
        finally:
            await client.aclose()


# --- publish -> handler ------------------------------------------------------------------


async def test_published_data_reaches_typed_handlers(dapr_sidecar_factory: SidecarFactory) -> None:
    orders: list[Order] = []
    refunds: list[CloudEvent[Order]] = []
    texts: list[CloudEvent[str]] = []
    raw: list[bytes] = []
    traces: list[str | None] = []

    def build(url: str) -> FastAPI:
        events = EventRouter()

        @events.subscribe("pubsub", "orders")
        async def on_order(order: Order) -> None:
            orders.append(order)
            trace = current_trace()
            traces.append(trace.trace_id if trace else None)

        @events.subscribe("pubsub", "orders", match='event.type == "refund"')
        async def on_refund(event: CloudEvent[Order]) -> None:
            refunds.append(event)

        @events.subscribe("pubsub", "texts")
        async def on_text(event: CloudEvent[str]) -> None:
            texts.append(event)

        @events.subscribe("pubsub", "raw", metadata={"rawPayload": "true"})
        async def on_raw(payload: bytes) -> None:
            raw.append(payload)

        return service(url, events)

    async with running(dapr_sidecar_factory, build) as (sidecar, _), sidecar.client() as dapr:
        trace = TraceContext.new()
        with use_trace(trace):
            await dapr.pubsub.publish("pubsub", "orders", Order(order_id="o-1", quantity=1))
        await dapr.pubsub.publish("pubsub", "orders", {"order_id": "o-2", "quantity": 2})
        refund = CloudEvent[Order](
            type="refund", source="tests", data=Order(order_id="r-1", quantity=1)
        )
        await dapr.pubsub.publish("pubsub", "orders", refund)
        await dapr.pubsub.publish("pubsub", "texts", "hello", ttl=60)
        await dapr.pubsub.publish("pubsub", "raw", b"\x00binary", raw=True)
        await dapr.pubsub.publish_bulk(
            "pubsub",
            "orders",
            [Order(order_id="b-1", quantity=1), BulkMessage({"order_id": "b-2", "quantity": 2})],
        )
        await eventually(lambda: len(orders) == 4 and refunds and texts and raw)

    assert [o.order_id for o in orders] == ["o-1", "o-2", "b-1", "b-2"]
    # The trace of the publishing request continues in the subscriber.
    assert traces[0] == trace.trace_id
    assert refunds[0].id == refund.id
    assert refunds[0].data == Order(order_id="r-1", quantity=1)
    assert (refunds[0].source, refunds[0].topic, refunds[0].pubsubname) == (
        "tests",
        "orders",
        "pubsub",
    )
    assert texts[0].data == "hello"
    assert texts[0].datacontenttype == "text/plain"
    assert texts[0].expiration is not None
    assert texts[0].source == "test-app"
    assert raw == [b"\x00binary"]


# --- outcomes, retries and dead letters -------------------------------------------------


@pytest.mark.parametrize("kind", PUBSUB_KINDS)
async def test_failing_handler_is_retried_then_dead_lettered(
    dapr_sidecar_factory: SidecarFactory, kind: str, redis_cleanup: list[str]
) -> None:
    topic, dead = topic_name("orders"), topic_name("orders-dead")
    redis_cleanup += [topic, dead]
    attempts: list[str] = []
    dead_letters: list[CloudEvent[Order]] = []

    def build(url: str) -> FastAPI:
        events = EventRouter()

        @events.subscribe("pubsub", topic, dead_letter_topic=dead)
        async def on_order(event: CloudEvent[Order]) -> None:
            attempts.append(event.id)
            raise RuntimeError("the database is down")

        @events.subscribe("pubsub", dead)
        async def on_dead_letter(event: CloudEvent[Order]) -> None:
            dead_letters.append(event)

        return service(url, events)

    resources = [
        pubsub_component(kind),
        pubsub_retry_policy("pubsub", max_retries=2, interval="50ms"),
    ]
    async with (
        running(dapr_sidecar_factory, build, resources=resources) as (sidecar, _),
        sidecar.client() as dapr,
    ):
        await dapr.pubsub.publish("pubsub", topic, Order(order_id="o-1", quantity=1))
        await eventually(lambda: len(dead_letters) == 1)
        await asyncio.sleep(0.3)  # nothing more should arrive

    assert len(attempts) == 3  # the first delivery and two retries, as the policy says
    assert len(set(attempts)) == 1
    assert dead_letters[0].id == attempts[0]
    assert dead_letters[0].data == Order(order_id="o-1", quantity=1)


async def test_outcomes(
    dapr_sidecar_factory: SidecarFactory, caplog: pytest.LogCaptureFixture
) -> None:
    calls: dict[str, int] = {"retry": 0, "drop": 0, "ok": 0}
    dead_letters: list[str | None] = []

    def build(url: str) -> FastAPI:
        events = EventRouter()

        @events.subscribe("pubsub", "orders", dead_letter_topic="dead")
        async def on_order(order: Order) -> None:
            if order.order_id == "retry":
                calls["retry"] += 1
                raise Retry("not yet")
            if order.order_id == "drop":
                calls["drop"] += 1
                raise Drop("unknown customer")
            calls["ok"] += 1

        @events.subscribe("pubsub", "dead")
        async def on_dead(event: CloudEvent[dict[str, Any]]) -> None:
            dead_letters.append(event.data.get("order_id") if event.data else None)

        return service(url, events)

    resources = [
        component("pubsub", "pubsub.in-memory"),
        pubsub_retry_policy("pubsub", max_retries=1, interval="20ms"),
    ]
    caplog.set_level(logging.INFO, logger="daprforge.events")
    async with (
        running(dapr_sidecar_factory, build, resources=resources) as (sidecar, _),
        sidecar.client() as dapr,
    ):
        for order_id in ("ok", "retry", "drop"):
            await dapr.pubsub.publish("pubsub", "orders", {"order_id": order_id, "quantity": 1})
        await dapr.pubsub.publish("pubsub", "orders", {"order_id": "invalid"})  # no quantity
        await eventually(lambda: len(dead_letters) == 3)

    assert calls == {"ok": 1, "retry": 2, "drop": 1}  # RETRY is redelivered, DROP is not
    assert sorted(map(str, dead_letters)) == ["drop", "invalid", "retry"]
    invalid = [r for r in caplog.records if "not a valid Order" in r.getMessage()]
    assert invalid
    assert "quantity: Field required" in invalid[0].getMessage()
    assert '"invalid"' not in invalid[0].getMessage()  # the payload itself is not logged


# --- idempotency -------------------------------------------------------------------------


def idempotent_app(processed: list[str], delay: Callable[[int], float]) -> Callable[[str], FastAPI]:
    def build(url: str) -> FastAPI:
        events = EventRouter(idempotency=Idempotency("statestore", ttl=60, lease=30))

        @events.subscribe("pubsub", "jobs", dead_letter_topic="jobs-dead")
        async def on_job(event: CloudEvent[dict[str, Any]]) -> None:
            processed.append(event.id)
            await asyncio.sleep(delay(len(processed)))

        return service(url, events)

    return build


def delivery_count(app: FastAPI) -> float:
    registry = app.state.metrics.registry
    labels = {"method": "POST", "route": "/events/pubsub/jobs", "status": "200"}
    return float(registry.get_sample_value("http_requests_total", labels) or 0)


async def test_idempotency_prevents_double_processing_under_redelivery(
    dapr_sidecar_factory: SidecarFactory,
) -> None:
    processed: list[str] = []
    # The first run outlasts the sidecar's 300 ms delivery timeout, so the sidecar delivers
    # again while it is still running, and again after it finished.
    build = idempotent_app(processed, lambda n: 0.8 if n == 1 else 0)
    resources = [
        component("statestore", "state.in-memory"),
        component("pubsub", "pubsub.in-memory"),
        pubsub_retry_policy("pubsub", max_retries=20, interval="150ms", timeout="300ms"),
    ]
    async with (
        running(dapr_sidecar_factory, build, resources=resources) as (sidecar, app),
        sidecar.client() as dapr,
    ):
        await dapr.pubsub.publish("pubsub", "jobs", {"n": 1})
        await eventually(lambda: delivery_count(app) >= 3)
        key = f"processed-event:pubsub:jobs:{processed[0]}"

        async def recorded_as_done() -> bool:
            record = await dapr.state.get("statestore", key)
            return record is not None and record.value == {"status": "done"}

        # Acknowledged at last, and remembered as done.
        await eventually(recorded_as_done)

        # The same event published again (same id) is acknowledged without running.
        duplicate = CloudEvent[dict[str, Any]](id=processed[0], source="x", type="t", data={})
        await dapr.pubsub.publish("pubsub", "jobs", duplicate)
        seen = delivery_count(app)
        await eventually(lambda: delivery_count(app) > seen)

    assert len(processed) == 1


async def test_without_idempotency_a_duplicate_runs_twice(
    dapr_sidecar_factory: SidecarFactory,
) -> None:
    processed: list[str] = []

    def build(url: str) -> FastAPI:
        events = EventRouter()

        @events.subscribe("pubsub", "jobs")
        async def on_job(event: CloudEvent[Any]) -> None:
            processed.append(event.id)

        return service(url, events)

    async with running(dapr_sidecar_factory, build) as (sidecar, _), sidecar.client() as dapr:
        event = CloudEvent[dict[str, Any]](source="x", type="t", data={})
        await dapr.pubsub.publish("pubsub", "jobs", event)
        await dapr.pubsub.publish("pubsub", "jobs", event)
        await eventually(lambda: len(processed) == 2)
    assert processed == [event.id, event.id]


# --- the sidecar's token -----------------------------------------------------------------


async def test_app_api_token(
    dapr_sidecar_factory: SidecarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "app-token-1")
    received: list[Order] = []

    def build(url: str) -> FastAPI:
        events = EventRouter()

        @events.subscribe("pubsub", "orders")
        async def on_order(order: Order) -> None:
            received.append(order)

        return service(url, events)

    env = {"APP_API_TOKEN": "app-token-1"}
    async with (
        running(dapr_sidecar_factory, build, env=env) as (sidecar, _),
        sidecar.client() as dapr,
    ):
        await dapr.pubsub.publish("pubsub", "orders", Order(order_id="o", quantity=1))
        await eventually(lambda: bool(received))
        metadata = await dapr.metadata()
        assert [s.topic for s in metadata.subscriptions] == ["orders"]
        app_url = f"http://127.0.0.1:{sidecar.app_port}"
        async with httpx.AsyncClient(base_url=app_url) as http:
            refused = await http.get("/dapr/subscribe")
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            wrong = await http.post(
                "/events/pubsub/orders", json={}, headers={"dapr-api-token": "guess"}
            )
            assert wrong.status_code == 401
            allowed = await http.get("/dapr/subscribe", headers={"dapr-api-token": "app-token-1"})
            assert allowed.status_code == 200
    assert received == [Order(order_id="o", quantity=1)]


async def test_unauthenticated_subscribe_gets_no_subscriptions(
    dapr_sidecar_factory: SidecarFactory,
) -> None:
    """An app expecting a token the sidecar does not send is not subscribed to anything."""

    def build(url: str) -> FastAPI:
        events = EventRouter(app_token="expected-but-not-sent")

        @events.subscribe("pubsub", "orders")
        async def on_order(order: Order) -> None: ...

        return service(url, events)

    async with running(dapr_sidecar_factory, build) as (sidecar, _), sidecar.client() as dapr:
        assert (await dapr.metadata()).subscriptions == []


# --- exactly once with a UnitOfWork ----------------------------------------------------------


def lose_first_answers(app: FastAPI, every: int) -> Any:
    """The app, except that the answer to the first delivery of every ``every``-th event
    is replaced by a 500 after the app handled it (an answer lost on the way: injected,
    since a real network loss cannot be made on demand)."""
    seen: set[bytes] = set()

    async def lossy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/events/"):
            await app(scope, receive, send)
            return
        chunks = [await receive()]
        while chunks[-1].get("more_body"):
            chunks.append(await receive())
        body = b"".join(chunk.get("body", b"") for chunk in chunks)
        message = {"type": "http.request", "body": body, "more_body": False}

        async def replay() -> dict[str, Any]:
            return message

        event_id = json.loads(body).get("id", "").encode()
        number = int(event_id.rsplit(b"-", 1)[-1] or 0)
        if number % every or event_id in seen:
            await app(scope, replay, send)
            return
        seen.add(event_id)

        async def swallow(_: dict[str, Any]) -> None:
            pass

        await app(scope, replay, swallow)
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return lossy


async def test_unit_of_work_changes_state_exactly_once(
    dapr_sidecar_factory: SidecarFactory,
) -> None:
    """Four topics deliver at once (the in-memory broker serializes per subscription only),
    every handler increments the same key, each event is published twice, and some answers
    are lost after the commit: the key counts each event exactly once."""
    topics = [f"count-{n}" for n in range(4)]

    def build(url: str) -> FastAPI:
        events = EventRouter(idempotency=Idempotency("statestore"))

        async def count(event: CloudEvent[dict[str, Any]], unit: UnitOfWork) -> None:
            total = await unit.get("total", type=int)
            unit.put("total", (total or 0) + 1)

        for topic in topics:
            events.subscribe("pubsub", topic)(count)
        return service(url, events)

    resources = [
        *in_memory_components(),
        pubsub_retry_policy("pubsub", max_retries=20, interval="10ms"),
    ]
    sidecar_port, app_port = free_port(), free_port()
    app = build(f"http://127.0.0.1:{sidecar_port}")
    sidecar = await dapr_sidecar_factory(port=sidecar_port, app_port=app_port, resources=resources)
    async with serve_app(lose_first_answers(app, 5), port=app_port), sidecar.client() as dapr:
        await sidecar.wait_for_app()

        async def publish(topic: str) -> None:
            for n in range(25):
                event = CloudEvent[dict[str, Any]](id=f"{topic}-{n}", source="t", type="t", data={})
                await dapr.pubsub.publish("pubsub", topic, event)
                await dapr.pubsub.publish("pubsub", topic, event)

        await asyncio.gather(*(publish(topic) for topic in topics))

        async def counted() -> bool:
            item = await dapr.state.get("statestore", "total")
            return item is not None and item.value == 100

        await eventually(counted, within=30)
        await asyncio.sleep(0.3)  # nothing more should arrive
        assert (await dapr.state.get("statestore", "total")).value == 100  # type: ignore[union-attr]
    registry = app.state.metrics.registry
    labels = {"pubsub": "pubsub", "topic": "count-0"}
    assert registry.get_sample_value("events_processed_total", labels) == 25
    assert registry.get_sample_value("events_duplicates_total", labels) >= 25


async def test_unit_of_work_publishes_derived_events_after_the_commit(
    dapr_sidecar_factory: SidecarFactory,
) -> None:
    derived: list[CloudEvent[dict[str, Any]]] = []

    def build(url: str) -> FastAPI:
        events = EventRouter(idempotency=Idempotency("statestore"))

        @events.subscribe("pubsub", "orders")
        async def on_order(event: CloudEvent[Order], unit: UnitOfWork) -> None:
            assert event.data is not None
            unit.put(f"order:{event.data.order_id}", event.data)
            unit.publish("pubsub", "shipments", {"order": event.data.order_id}, type="ship")

        @events.subscribe("pubsub", "shipments", idempotent=False)
        async def on_shipment(event: CloudEvent[dict[str, Any]]) -> None:
            derived.append(event)

        return service(url, events)

    async with running(dapr_sidecar_factory, build) as (sidecar, _), sidecar.client() as dapr:
        order = CloudEvent[Order](
            id="o-1", source="t", type="t", data=Order(order_id="1", quantity=2)
        )
        await dapr.pubsub.publish("pubsub", "orders", order)
        await dapr.pubsub.publish("pubsub", "orders", order)  # a duplicate: nothing new
        await eventually(lambda: bool(derived))
        await asyncio.sleep(0.3)
        stored = await dapr.state.get("statestore", "order:1", type=Order)
        marker = await dapr.state.get("statestore", "processed-event:pubsub:orders:o-1")
    assert [(e.id, e.type, e.data) for e in derived] == [("o-1:1", "ship", {"order": "1"})]
    assert stored is not None
    assert stored.value == Order(order_id="1", quantity=2)
    assert marker is not None
    assert marker.value == {"status": "done"}  # the outbox was cleared once published


def test_a_unit_of_work_needs_an_idempotency_store() -> None:
    events = EventRouter()
    with pytest.raises(ValueError, match="Idempotency"):

        @events.subscribe("pubsub", "orders")
        async def on_order(order: Order, unit: UnitOfWork) -> None: ...
