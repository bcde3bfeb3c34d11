"""Subscriptions: reference §2.3 (programmatic ``/dapr/subscribe``, v1 ``route`` and v2
``routes.rules`` with the match expressions the Dapr docs use, ``routes.default`` winning
over ``route``, an event matching no rule is dropped, an entry without routes is ignored),
§2.4 (declarative ``Subscription`` YAML v2alpha1 and v1alpha1 with ``scopes``), §5.4
(subscriptions in ``/v1.0/metadata`` with type DECLARATIVE / PROGRAMMATIC), §7.5 (a dropped
event is acknowledged on Redis).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ._apps import wait_quiet
from ._pubsub import (
    KINDS,
    PubSubWorld,
    Topics,
    pending_count,
    pubsub_component,
    redis_available,
    start_world,
    subscription_entry,
    subscription_resource,
)

APP_ID = "conf-subs"
T = Topics("subs")
RULES = [
    ('event.type == "widget"', "rules-widget"),
    ("event.data.n > 5", "rules-big"),
    ('event.type == "a" && event.data.n == 1', "rules-and"),
    ('event.type == "b" || event.type == "c"', "rules-or"),
]
ROUTED = [
    # (cloudevent type, data.n, expected route name)
    ("widget", 1, "rules-widget"),
    ("widget", 10, "rules-widget"),  # the first matching rule wins
    ("other", 10, "rules-big"),
    ("a", 1, "rules-and"),
    ("a", 2, "rules-default"),
    ("b", 0, "rules-or"),
    ("c", 0, "rules-or"),
    ("z", 0, "rules-default"),
]


def kinds() -> list[str]:
    return ["in-memory", "redis"] if redis_available() else ["in-memory"]


def name_of(kind: str) -> str:
    return "mem" if kind == "in-memory" else "redis"


async def build_world(tmp: Any) -> PubSubWorld:
    resources: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    for kind in kinds():
        pubsub = name_of(kind)
        resources.append(pubsub_component(kind, pubsub))

        def topic(name: str, kind: str = kind) -> str:
            return T.topic(kind, name)

        def route(name: str, kind: str = kind) -> str:
            return T.route(kind, name)

        subscriptions += [
            subscription_entry(
                pubsub,
                topic("rules"),
                rules=[(match, route(path)) for match, path in RULES],
                default=route("rules-default"),
            ),
            subscription_entry(
                pubsub, topic("no-default"), rules=[('event.type == "widget"', route("nd-widget"))]
            ),
            subscription_entry(
                pubsub,
                topic("no-default-dlq"),
                rules=[('event.type == "widget"', route("ndd-widget"))],
                dead_letter_topic=topic("nd-dlq"),
            ),
            subscription_entry(pubsub, topic("nd-dlq"), route=route("nd-dlq")),
            subscription_entry(
                pubsub, topic("v1-and-v2"), route=route("v1-ignored"), default=route("v2-default")
            ),
            subscription_entry(pubsub, topic("v1"), route=route("v1")),
            {"pubsubname": pubsub, "topic": topic("no-route")},
        ]
        resources += [
            subscription_resource(
                f"decl-v2-{kind}",
                pubsub,
                topic("decl-v2"),
                rules=[('event.type == "special"', route("decl-special"))],
                default=route("decl-v2"),
                dead_letter_topic=topic("decl-dlq"),
                scopes=[APP_ID, "someone-else"],
            ),
            subscription_resource(
                f"decl-v1-{kind}",
                pubsub,
                topic("decl-v1"),
                version="v1alpha1",
                route=route("decl-v1"),
            ),
            subscription_resource(
                f"decl-other-{kind}",
                pubsub,
                topic("decl-other"),
                default=route("decl-other"),
                scopes=["someone-else"],
            ),
        ]
    return await start_world(
        tmp,
        app_id=APP_ID,
        topics=T,
        pubsubs={kind: name_of(kind) for kind in kinds()},
        resources=resources,
        subscriptions=subscriptions,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PubSubWorld]:
    w = await build_world(tmp_path_factory.mktemp("pubsub-subscriptions"))
    try:
        yield w
    finally:
        await w.stop()


async def publish_typed(world: PubSubWorld, kind: str, topic: str, type_: str, **data: Any) -> None:
    await world.publish_ok(
        world.pubsub(kind),
        world.topic(kind, topic),
        json.dumps(data),
        content_type="application/json",
        params={"metadata.cloudevent.type": type_},
    )


async def tags_at(world: PubSubWorld, kind: str, route: str) -> list[Any]:
    return [r.json()["data"]["tag"] for r in await world.app.records(world.route(kind, route))]


async def wait_total(world: PubSubWorld, routes: list[str], count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        total = sum([len(await world.app.records(r)) for r in routes])
        if total >= count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"fewer than {count} deliveries to {routes}", pytrace=False)


# --------------------------------------------------------------------------- routing rules


@KINDS
async def test_routing_rules(world: PubSubWorld, kind: str) -> None:
    for tag, (type_, n, _) in enumerate(ROUTED):
        await publish_typed(world, kind, "rules", type_, n=n, tag=tag)
    paths = sorted({path for _, _, path in ROUTED})
    await wait_total(world, [world.route(kind, p) for p in paths], len(ROUTED))
    await wait_quiet(0.3)
    for path in paths:
        expected = [tag for tag, (_, _, p) in enumerate(ROUTED) if p == path]
        assert sorted(await tags_at(world, kind, path)) == expected, path


@KINDS
async def test_event_matching_no_rule_is_dropped(world: PubSubWorld, kind: str) -> None:
    await publish_typed(world, kind, "no-default", "nothing-matches", tag="dropped")
    await publish_typed(world, kind, "no-default", "widget", tag="kept")
    await world.app.wait_records(world.route(kind, "nd-widget"))
    await wait_quiet(0.3)
    assert await tags_at(world, kind, "nd-widget") == ["kept"]
    if kind == "redis":
        assert pending_count(world.topic(kind, "no-default"), APP_ID) == 0, "dropped = acked"


@KINDS
async def test_event_matching_no_rule_goes_to_the_dead_letter_topic(
    world: PubSubWorld, kind: str
) -> None:
    await publish_typed(world, kind, "no-default-dlq", "nothing-matches", tag="to-dlq")
    records = await world.app.wait_records(world.route(kind, "nd-dlq"))
    assert [r.json()["data"]["tag"] for r in records] == ["to-dlq"]
    assert await world.app.records(world.route(kind, "ndd-widget")) == []


@KINDS
async def test_routes_default_wins_over_route(world: PubSubWorld, kind: str) -> None:
    await publish_typed(world, kind, "v1-and-v2", "t", tag="v2")
    await world.app.wait_records(world.route(kind, "v2-default"))
    assert await world.app.records(world.route(kind, "v1-ignored")) == []


@KINDS
async def test_v1_route(world: PubSubWorld, kind: str) -> None:
    await publish_typed(world, kind, "v1", "t", tag="v1")
    records = await world.app.wait_records(world.route(kind, "v1"))
    assert [r.json()["data"]["tag"] for r in records] == ["v1"]


# --------------------------------------------------------------------------- declarative


@KINDS
async def test_declarative_v2alpha1(world: PubSubWorld, kind: str) -> None:
    await publish_typed(world, kind, "decl-v2", "special", tag="special")
    await publish_typed(world, kind, "decl-v2", "plain", tag="plain")
    special = await world.app.wait_records(world.route(kind, "decl-special"))
    plain = await world.app.wait_records(world.route(kind, "decl-v2"))
    assert [r.json()["data"]["tag"] for r in special] == ["special"]
    assert [r.json()["data"]["tag"] for r in plain] == ["plain"]


@KINDS
async def test_declarative_v1alpha1(world: PubSubWorld, kind: str) -> None:
    await publish_typed(world, kind, "decl-v1", "t", tag="v1alpha1")
    records = await world.app.wait_records(world.route(kind, "decl-v1"))
    assert [r.json()["data"]["tag"] for r in records] == ["v1alpha1"]


@KINDS
async def test_declarative_scoped_to_another_app_is_ignored(world: PubSubWorld, kind: str) -> None:
    await publish_typed(world, kind, "decl-other", "t", tag="not-mine")
    await publish_typed(world, kind, "v1", "t", tag="after")  # something that is delivered
    await wait_quiet(0.5)
    assert await world.app.records(world.route(kind, "decl-other")) == []


# --------------------------------------------------------------------------- metadata


@KINDS
async def test_metadata_lists_subscriptions(world: PubSubWorld, kind: str) -> None:
    meta = (await world.client.get("/v1.0/metadata")).json()
    pubsub = world.pubsub(kind)
    subs = {s["topic"]: s for s in meta.get("subscriptions", []) if s.get("pubsubname") == pubsub}

    def paths(topic: str) -> list[str]:
        return [r["path"] for r in subs[world.topic(kind, topic)]["rules"]]

    rules = subs[world.topic(kind, "rules")]
    assert rules["type"] == "PROGRAMMATIC"
    assert paths("rules") == [world.route(kind, p) for _, p in RULES] + [
        world.route(kind, "rules-default")
    ]
    assert [r.get("match", "") for r in rules["rules"]][: len(RULES)] == [m for m, _ in RULES]
    assert paths("v1-and-v2") == [world.route(kind, "v2-default")]
    assert paths("v1") == [world.route(kind, "v1")]
    assert subs[world.topic(kind, "no-default-dlq")].get("deadLetterTopic") == world.topic(
        kind, "nd-dlq"
    )

    decl = subs[world.topic(kind, "decl-v2")]
    assert decl["type"] == "DECLARATIVE"
    assert paths("decl-v2") == [world.route(kind, "decl-special"), world.route(kind, "decl-v2")]
    assert decl["rules"][0]["match"] == 'event.type == "special"'
    assert decl.get("deadLetterTopic") == world.topic(kind, "decl-dlq")
    assert subs[world.topic(kind, "decl-v1")]["type"] == "DECLARATIVE"
    assert paths("decl-v1") == [world.route(kind, "decl-v1")]

    assert world.topic(kind, "decl-other") not in subs, "scoped to another app"
    assert world.topic(kind, "no-route") not in subs, "an entry without routes is dropped"
