"""Delivery to the app: reference §2.5 (headers, body, the app-response table, retries under a
``Resiliency`` inbound policy and exactly one attempt without one, dead-lettering with the
original bytes, rawPayload subscriptions, expired events), §2.3 (the ``/dapr/subscribe``
request), §6 (``dapr-api-token`` = APP_API_TOKEN), §7.5 (Redis XACKs a failed message,
Dapr 1.17+), §7.6 (in-memory).

pubsub.in-memory tries a failing handler up to 10 times, 100 ms apart, before it gives up
(components-contrib ``pubsub/in-memory``); so once Dapr's own retries are used up without a
dead-letter topic, the in-memory app sees 10 times as many attempts as the Redis one.

Everything that waits for redeliveries runs once, concurrently, in the ``outcomes``
fixture; each test then checks its own case. Needs this suite's own sidecar and app.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from ._apps import Record
from ._pubsub import (
    KINDS,
    PubSubWorld,
    Topics,
    pending_count,
    pubsub_component,
    redis_available,
    resiliency,
    start_world,
    subscription_entry,
)
from ._support import UUID_RE

APP_ID = "conf-delivery"
APP_TOKEN = "delivery-app-token-5b1e"
T = Topics("dlv")
MAX_RETRIES = 2
RETRY_DELAY = 0.05
EXPO_RETRIES = 3
IN_MEMORY_HANDLER_ATTEMPTS = 10
QUIET = 0.8
"""Seconds without any further delivery before counts are taken as final."""
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
BLOCK_SECONDS = 1.6


@dataclass(frozen=True)
class Case:
    """One row of the §2.5 table, observed through attempts and dead letters."""

    response: Mapping[str, Any]
    attempts: int
    dead_lettered: bool
    variant: str = "retry"
    """Which component: ``retry`` (constant policy), ``expo`` (exponential), ``""`` (none)."""
    dead_letter_topic: str | None = "sem-dlq"
    in_memory_attempts: int | None = None
    """When the in-memory component retries the failure itself (no dead-letter topic)."""


N = MAX_RETRIES + 1
CASES: dict[str, Case] = {
    "empty-200": Case({"status": 200}, 1, False),
    "empty-204": Case({"status": 204}, 1, False),
    "text-200": Case({"body": "thanks!", "headers": {"Content-Type": "text/plain"}}, 1, False),
    "json-no-status": Case({"json": {"result": "ok"}}, 1, False),
    "json-empty-status": Case({"json": {"status": ""}}, 1, False),
    "json-null": Case({"json": None}, 1, False),
    "success": Case({"json": {"status": "SUCCESS"}}, 1, False),
    "success-201": Case({"status": 201, "json": {"status": "SUCCESS"}}, 1, False),
    "retry": Case({"json": {"status": "RETRY"}}, N, True),
    "drop": Case({"json": {"status": "DROP"}}, 1, True),
    "lowercase-success": Case({"json": {"status": "success"}}, N, True),
    "unknown-status": Case({"json": {"status": "DONE"}}, N, True),
    "status-404": Case({"status": 404, "json": {"status": "SUCCESS"}}, 1, True),
    "status-400": Case({"status": 400}, N, True),
    "status-500": Case({"status": 500, "body": "boom"}, N, True),
    "status-503": Case({"status": 503, "json": {"status": "SUCCESS"}}, N, True),
    "expo-500": Case({"status": 500}, EXPO_RETRIES + 1, True, "expo", "expo-dlq"),
    "retries-then-component": Case(
        {"status": 500}, N, False, "retry", None, N * IN_MEMORY_HANDLER_ATTEMPTS
    ),
    "no-policy-500": Case({"status": 500}, 1, False, "", None, IN_MEMORY_HANDLER_ATTEMPTS),
    "no-policy-retry-dlq": Case({"json": {"status": "RETRY"}}, 1, True, "", "np-dlq"),
    "no-policy-drop-dlq": Case({"json": {"status": "DROP"}}, 1, True, "", "np-dlq"),
}
DEAD_LETTER_TOPICS = {
    "sem-dlq": "retry",
    "expo-dlq": "expo",
    "np-dlq": "",
    "ttl-dlq": "ttl",
    "raw-dlq": "",
}
RAW_DEAD_LETTER_TOPICS = ("raw-dlq", "ttl-dlq")
"""raw-dlq gets bytes that are not a CloudEvent, ttl-dlq events that have expired: a plain
subscription would refuse (or drop) them again, only a rawPayload one can show them."""
PLAIN_TOPICS = ["headers", "redis-metadata", "raw-sub", "raw-both", "subscribe-check"]


def kinds() -> list[str]:
    return ["in-memory", "redis"] if redis_available() else ["in-memory"]


def component_names(kind: str) -> dict[str, str]:
    """variant -> component name, for one kind."""
    base = "mem" if kind == "in-memory" else "redis"
    names = {"": base, "retry": f"{base}-retry", "expo": f"{base}-expo"}
    # in-memory delivery is serialised per subscription already; Redis needs one worker
    names["ttl"] = base if kind == "in-memory" else f"{base}-serial"
    return names


async def build_world(tmp: Any) -> PubSubWorld:
    resources: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    scripts: dict[str, list[dict[str, Any]]] = {}
    pubsubs: dict[str, str] = {}
    inbound: dict[str, str] = {}
    for kind in kinds():
        names = component_names(kind)
        for variant, name in names.items():
            pubsubs[f"{kind}-{variant}" if variant else kind] = name
        resources += [
            pubsub_component(kind, names[""]),
            pubsub_component(kind, names["retry"]),
            pubsub_component(kind, names["expo"]),
        ]
        if kind == "redis":
            resources.append(pubsub_component(kind, names["ttl"], concurrency="1"))
        inbound[names["retry"]] = "fast"
        inbound[names["expo"]] = "expo"
        for case_name, case in CASES.items():
            subscriptions.append(
                subscription_entry(
                    names[case.variant],
                    T.topic(kind, case_name),
                    route=T.route(kind, case_name),
                    dead_letter_topic=(
                        T.topic(kind, case.dead_letter_topic) if case.dead_letter_topic else None
                    ),
                )
            )
            scripts[T.route(kind, case_name)] = [dict(case.response)]
        for topic, variant in DEAD_LETTER_TOPICS.items():
            metadata = {"rawPayload": "true"} if topic in RAW_DEAD_LETTER_TOPICS else None
            subscriptions.append(
                subscription_entry(
                    names[variant],
                    T.topic(kind, topic),
                    route=T.route(kind, topic),
                    metadata=metadata,
                )
            )
        for topic in PLAIN_TOPICS:
            metadata = {"rawPayload": "true"} if topic.startswith("raw") else None
            subscriptions.append(
                subscription_entry(
                    names[""], T.topic(kind, topic), route=T.route(kind, topic), metadata=metadata
                )
            )
        for topic, dead_letter in (("ttl-a", "ttl-dlq"), ("ttl-b", None)):
            subscriptions.append(
                subscription_entry(
                    names["ttl"],
                    T.topic(kind, topic),
                    route=T.route(kind, topic),
                    dead_letter_topic=T.topic(kind, dead_letter) if dead_letter else None,
                )
            )
            # the first delivery is slow: events published meanwhile wait (in-memory: per
            # subscription; redis: the component's single worker) and expire
            if kind == "in-memory" or topic == "ttl-a":
                scripts[T.route(kind, topic)] = [{"delay": BLOCK_SECONDS}, {}]
        subscriptions.append(
            subscription_entry(
                names[""],
                T.topic(kind, "not-a-cloudevent"),
                route=T.route(kind, "not-a-cloudevent"),
                dead_letter_topic=T.topic(kind, "raw-dlq"),
            )
        )
    policies = {
        "fast": {"policy": "constant", "duration": f"{int(RETRY_DELAY * 1000)}ms"}
        | {"maxRetries": MAX_RETRIES},
        "expo": {"policy": "exponential", "maxInterval": "60ms", "maxRetries": EXPO_RETRIES},
    }
    resources.append(resiliency("delivery-retries", policies, inbound))
    return await start_world(
        tmp,
        app_id=APP_ID,
        topics=T,
        pubsubs=pubsubs,
        resources=resources,
        subscriptions=subscriptions,
        scripts=scripts,
        env={"APP_API_TOKEN": APP_TOKEN},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PubSubWorld]:
    w = await build_world(tmp_path_factory.mktemp("pubsub-delivery"))
    try:
        yield w
    finally:
        await w.stop()


# --------------------------------------------------------------------------- the batch


@dataclass
class Observed:
    attempts: list[Record]
    dead_letters: list[Record]
    pending: int | None = None


def tag_of(record: Record) -> str:
    event = record.json()
    data = event.get("data") if isinstance(event, dict) else None
    return str(data.get("tag")) if isinstance(data, dict) else ""


async def dead_letters(world: PubSubWorld, route: str | None, tag: str) -> list[Record]:
    if route is None:
        return []
    return [r for r in await world.app.records(route) if tag_of(r) == tag]


async def run_case(world: PubSubWorld, kind: str, name: str, case: Case) -> Observed:
    names = component_names(kind)
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    await world.publish_ok(
        names[case.variant],
        world.topic(kind, name),
        f'{{"tag":"{tag}"}}',
        content_type="application/json",
    )
    expected = case.in_memory_attempts if kind == "in-memory" and case.in_memory_attempts else 0
    expected = expected or case.attempts
    route = world.route(kind, name)
    dlq_route = world.route(kind, case.dead_letter_topic) if case.dead_letter_topic else None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        attempts = await world.app.records(route)
        dead = (
            [r for r in await world.app.records(dlq_route) if tag_of(r) == tag] if dlq_route else []
        )
        if len(attempts) >= expected and (bool(dead) or not case.dead_lettered):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(QUIET)
    attempts = await world.app.records(route)
    dead = await dead_letters(world, dlq_route, tag)
    pending = None
    if kind == "redis":
        pending = pending_count(world.topic(kind, name), world.app_id)
    return Observed(attempts, dead, pending)


async def run_ttl(world: PubSubWorld, kind: str) -> dict[str, Observed]:
    """Events that expire while their subscription is busy are not delivered (§2.1 TTL)."""
    names = component_names(kind)
    pubsub = names["ttl"]
    topic_a, topic_b = world.topic(kind, "ttl-a"), world.topic(kind, "ttl-b")
    route_a, route_b = world.route(kind, "ttl-a"), world.route(kind, "ttl-b")
    blocked = ["ttl-a", "ttl-b"] if kind == "in-memory" else ["ttl-a"]
    for topic in blocked:
        await world.publish_ok(pubsub, world.topic(kind, topic), b'{"tag":"blocker"}',
                               content_type="application/json")  # fmt: skip
    for topic in blocked:
        await world.app.wait_records(world.route(kind, topic), what="the slow first delivery")

    async def publish(topic: str, tag: str, ttl: str) -> None:
        await world.publish_ok(
            pubsub,
            topic,
            f'{{"tag":"{tag}"}}',
            content_type="application/json",
            params={"metadata.ttlInSeconds": ttl},
        )

    # in-memory: these calls wait for the slow delivery, after their envelope is built
    tasks = [asyncio.create_task(publish(topic_a, "expired-a", "1"))]
    await asyncio.sleep(0.05)
    tasks.append(asyncio.create_task(publish(topic_b, "expired-b", "1")))
    await asyncio.sleep(0.05)
    tasks.append(asyncio.create_task(publish(topic_a, "fresh-a", "60")))
    await asyncio.gather(*tasks)
    dlq_route = world.route(kind, "ttl-dlq")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        fresh = [r for r in await world.app.records(route_a) if tag_of(r) == "fresh-a"]
        if fresh and await world.app.records(dlq_route):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(QUIET)
    return {
        "a": Observed(await world.app.records(route_a), await world.app.records(dlq_route)),
        "b": Observed(await world.app.records(route_b), []),
    }


@dataclass
class Outcomes:
    cases: dict[tuple[str, str], Observed]
    ttl: dict[str, dict[str, Observed]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outcomes(world: PubSubWorld) -> Outcomes:
    jobs: dict[Any, Any] = {}
    for kind in kinds():
        for name, case in CASES.items():
            jobs[(kind, name)] = run_case(world, kind, name, case)
        jobs[("ttl", kind)] = run_ttl(world, kind)
    results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    return Outcomes(
        cases={k: v for k, v in results.items() if k[0] != "ttl"},
        ttl={k[1]: v for k, v in results.items() if k[0] == "ttl"},
    )


# --------------------------------------------------------------------------- §2.5 table


@KINDS
@pytest.mark.parametrize("name", list(CASES))
async def test_app_response_semantics(outcomes: Outcomes, kind: str, name: str) -> None:
    case = CASES[name]
    seen = outcomes.cases[(kind, name)]
    expected = case.attempts
    if kind == "in-memory" and case.in_memory_attempts:
        expected = case.in_memory_attempts
    bodies = {r.body for r in seen.attempts}
    assert len(seen.attempts) == expected, (
        f"app answered {dict(case.response)}: expected {expected} attempt(s), "
        f"got {len(seen.attempts)}"
    )
    assert len(bodies) == 1, "every attempt carries the same bytes"
    if case.dead_lettered:
        assert len(seen.dead_letters) == 1, (
            f"expected one dead letter, got {len(seen.dead_letters)}"
        )
        assert seen.dead_letters[0].body == seen.attempts[0].body, (
            "the dead-letter topic gets the original event bytes"
        )
    else:
        assert seen.dead_letters == []
    if seen.pending is not None:
        assert seen.pending == 0, "Redis XACKs the message, also when its delivery failed"


@KINDS
async def test_constant_retry_policy_waits_between_attempts(outcomes: Outcomes, kind: str) -> None:
    times = [r.time for r in outcomes.cases[(kind, "retry")].attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == MAX_RETRIES
    assert all(gap >= RETRY_DELAY * 0.6 for gap in gaps), gaps


@KINDS
async def test_expired_event_is_not_delivered_and_goes_to_the_dead_letter_topic(
    outcomes: Outcomes, kind: str
) -> None:
    seen = outcomes.ttl[kind]
    tags_a = [tag_of(r) for r in seen["a"].attempts]
    assert tags_a == ["blocker", "fresh-a"], "the expired event must not reach the app"
    dead = [json.loads(base64.b64decode(r.json()["data_base64"])) for r in seen["a"].dead_letters]
    assert [e["data"]["tag"] for e in dead] == ["expired-a"]
    expired = dead[0]
    assert expired["expiration"].endswith("Z"), expired
    fresh = seen["a"].attempts[1].json()
    moment = datetime.fromisoformat(fresh["expiration"].replace("Z", "+00:00"))
    assert moment > datetime.now(UTC), fresh
    blocked_b = [tag_of(r) for r in seen["b"].attempts]
    expected_b = ["blocker"] if kind == "in-memory" else []
    assert blocked_b == expected_b, "expired and no dead-letter topic: dropped"


# --------------------------------------------------------------------------- headers and body


@KINDS
async def test_delivery_request(world: PubSubWorld, kind: str) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    pubsub = world.pubsub(kind)
    await world.publish_ok(
        pubsub,
        world.topic(kind, "headers"),
        b'{"hello":"headers"}',
        content_type="application/json",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    record = (await world.app.wait_records(world.route(kind, "headers")))[0]
    assert record.method == "POST"
    ctype = record.header("content-type") or ""
    assert ctype.split(";")[0].strip() == "application/cloudevents+json", record.headers
    assert record.header_values("dapr-api-token") == [APP_TOKEN], record.headers
    assert record.header("pubsubname") == pubsub, record.headers
    event = record.json()
    assert event["data"] == {"hello": "headers"}
    assert event["source"] == world.app_id
    traceparent = record.header("traceparent") or ""
    match = TRACEPARENT_RE.match(traceparent)
    assert match, record.headers
    assert match.group(1) == trace_id, "delivery continues the event's trace"


@pytest.mark.redis
@pytest.mark.own_process
async def test_redis_publish_metadata_arrives_as_headers(world: PubSubWorld) -> None:
    """Redis keeps the publish request's metadata with the message (§2.1, §2.5)."""
    await world.publish_ok(
        world.pubsub("redis"),
        world.topic("redis", "redis-metadata"),
        b"m",
        params={"metadata.customKey": "custom-value"},
    )
    record = (await world.app.wait_records(world.route("redis", "redis-metadata")))[0]
    assert record.header("customKey") == "custom-value", record.headers


@pytest.mark.own_process
async def test_subscribe_request(world: PubSubWorld) -> None:
    """``GET /dapr/subscribe``: JSON content type, own app id, the app token (§2.3, §6)."""
    records = await world.app.records("/dapr/subscribe")
    assert records, "the sidecar never asked for subscriptions"
    first = records[0]
    assert first.method == "GET"
    assert (first.header("content-type") or "").startswith("application/json"), first.headers
    assert first.header("dapr-app-id") == world.app_id, first.headers
    assert first.header("dapr-api-token") == APP_TOKEN, first.headers


@KINDS
async def test_raw_payload_subscription_gets_a_wrapper_envelope(
    world: PubSubWorld, kind: str
) -> None:
    pubsub, topic = world.pubsub(kind), world.topic(kind, "raw-sub")
    await world.publish_ok(pubsub, topic, b'{"n":1}', content_type="application/json")
    record = (await world.app.wait_records(world.route(kind, "raw-sub")))[0]
    wrapper = record.json()
    assert UUID_RE.match(wrapper["id"]), wrapper
    assert wrapper["source"] == "Dapr"
    assert wrapper["type"] == "com.dapr.event.sent"
    assert wrapper["specversion"] == "1.0"
    assert wrapper["datacontenttype"] == "application/octet-stream"
    assert wrapper["topic"] == topic
    assert wrapper["pubsubname"] == pubsub
    assert "data" not in wrapper
    inner = json.loads(base64.b64decode(wrapper["data_base64"]))
    assert inner["data"] == {"n": 1}, "data_base64 holds the published envelope"
    assert inner["source"] == world.app_id
    assert inner["id"] != wrapper["id"]


@KINDS
async def test_raw_payload_both_sides(world: PubSubWorld, kind: str) -> None:
    pubsub, topic = world.pubsub(kind), world.topic(kind, "raw-both")
    raw = b"\x00\x01 not json at all \xff"
    await world.publish_ok(pubsub, topic, raw, params={"metadata.rawPayload": "true"})
    record = (await world.app.wait_records(world.route(kind, "raw-both")))[0]
    assert base64.b64decode(record.json()["data_base64"]) == raw


@KINDS
async def test_non_cloudevent_bytes_go_to_the_dead_letter_topic(
    world: PubSubWorld, kind: str
) -> None:
    """A non-raw subscription that gets bytes that are not JSON: never delivered, DLQ'd."""
    pubsub = world.pubsub(kind)
    marker = f"not json {uuid.uuid4().hex}".encode()
    await world.publish_ok(
        pubsub,
        world.topic(kind, "not-a-cloudevent"),
        marker,
        params={"metadata.rawPayload": "true"},
    )
    dead: list[bytes] = []
    deadline = time.monotonic() + 10
    while not dead and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        records = await world.app.records(world.route(kind, "raw-dlq"))
        dead = [base64.b64decode(r.json()["data_base64"]) for r in records]
    assert dead == [marker], "the original bytes go to the dead-letter topic"
    assert await world.app.records(world.route(kind, "not-a-cloudevent")) == []
