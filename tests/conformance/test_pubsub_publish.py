"""Publishing: reference §2.1 (routes, CloudEvent envelope and wrapping rules by content type,
user CloudEvents, ``metadata.rawPayload``, ``metadata.cloudevent.*`` overrides,
``ttlInSeconds`` → ``expiration``, traceparent, every error status), §2.2 (bulk publish on
the alpha and v1.0 routes, entry errors), §12 item 8 (pubsub not found is 404).

What was published is observed where an app sees it: a recorder app subscribed to every
topic of this module, over pubsub.in-memory and pubsub.redis. The error tests need no app
and also run against a real daprd (``DAPR_CONFORMANCE_HTTP_URL``, pub/sub component
``DAPR_CONFORMANCE_PUBSUB``, default ``pubsub``).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ._apps import Record, wait_quiet
from ._pubsub import (
    CE_CONTENT_TYPE,
    KIND_PARAMS,
    KINDS,
    PubSubWorld,
    Topics,
    pubsub_component,
    redis_available,
    redis_client,
    start_world,
    subscription_entry,
)
from ._support import (
    ERROR_INFO,
    RESOURCE_INFO,
    UUID_RE,
    describe,
    error_body,
    find_details,
)

REMOTE_URL = os.environ.get("DAPR_CONFORMANCE_HTTP_URL", "").rstrip("/")
REMOTE_PUBSUB = os.environ.get("DAPR_CONFORMANCE_PUBSUB", "pubsub")
APP_ID = "conf-pub"
T = Topics("pub")
TOPICS = [
    "absent",
    "json",
    "json-charset",
    "json-invalid",
    "text",
    "xml",
    "octet",
    "ce",
    "ce-minimal",
    "ce-keep",
    "raw",
    "overrides",
    "overrides-case",
    "ttl",
    "trace",
    "nested/a/b",
    "put",
    "bulk-v1.0-alpha1",
    "bulk-v1.0",
    "bulk-invalid",
    "scoped",
]
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
EXPIRATION_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BULK_ROUTES = ["v1.0-alpha1", "v1.0"]


def kinds() -> list[str]:
    return ["in-memory", "redis"] if redis_available() else ["in-memory"]


async def build_world(tmp: Any) -> PubSubWorld:
    resources: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    pubsubs: dict[str, str] = {}
    for kind in kinds():
        name = "mem" if kind == "in-memory" else "redis"
        scoped = f"{name}-scoped"
        pubsubs[kind], pubsubs[f"{kind}-scoped"] = name, scoped
        resources.append(pubsub_component(kind, name))
        resources.append(
            pubsub_component(kind, scoped, publishingScopes=f"{APP_ID}={T.topic(kind, 'scoped')}")
        )
        for topic in TOPICS:
            pubsub = scoped if topic == "scoped" else name
            subscriptions.append(
                subscription_entry(pubsub, T.topic(kind, topic), route=T.route(kind, topic))
            )
    return await start_world(
        tmp,
        app_id=APP_ID,
        topics=T,
        pubsubs=pubsubs,
        resources=resources,
        subscriptions=subscriptions,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PubSubWorld]:
    w = await build_world(tmp_path_factory.mktemp("pubsub-publish"))
    try:
        yield w
    finally:
        await w.stop()


# --------------------------------------------------------------------------- helpers


async def published(
    world: PubSubWorld, kind: str, topic: str, body: bytes | str = b"", **kw: Any
) -> dict[str, Any]:
    """Publish one event to the module's topic ``topic``; return it as the app got it."""
    record = await published_record(world, kind, topic, body, **kw)
    event = record.json()
    assert isinstance(event, dict), record.body
    return event


async def published_record(
    world: PubSubWorld, kind: str, topic: str, body: bytes | str = b"", **kw: Any
) -> Record:
    await world.publish_ok(world.pubsub(kind), world.topic(kind, topic), body, **kw)
    records = await world.app.wait_records(world.route(kind, topic))
    assert len(records) == 1, [r.body for r in records]
    return records[0]


def assert_envelope(
    event: dict[str, Any], world: PubSubWorld, kind: str, topic: str, content_type: str
) -> None:
    """The fields daprd's ``NewCloudEventsEnvelope`` writes (§2.1)."""
    assert UUID_RE.match(event.get("id", "")), event
    assert event["source"] == world.app_id, event
    assert event["type"] == "com.dapr.event.sent", event
    assert event["specversion"] == "1.0", event
    assert event["datacontenttype"] == content_type, event
    assert event["topic"] == world.topic(kind, topic), event
    assert event["pubsubname"] == world.pubsub(kind), event
    assert TRACEPARENT_RE.match(event.get("traceparent", "")), event
    assert event["traceid"] == event["traceparent"], event
    assert isinstance(event.get("tracestate"), str), event
    assert TIME_RE.match(event.get("time", "")), event
    assert "expiration" not in event, event
    assert "subject" not in event, event


def decimal_json(data: bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


# --------------------------------------------------------------------------- wrapping rules


@KINDS
async def test_no_content_type_is_text_plain(world: PubSubWorld, kind: str) -> None:
    event = await published(world, kind, "absent", b"hello plain")
    assert_envelope(event, world, kind, "absent", "text/plain")
    assert event["data"] == "hello plain"
    assert "data_base64" not in event


@KINDS
async def test_json_body_becomes_json_data_with_big_numbers_exact(
    world: PubSubWorld, kind: str
) -> None:
    body = b'{"big":123456789012345678901234567890,"exact":1.10,"list":[1,"two",null],"ok":true}'
    record = await published_record(world, kind, "json", body, content_type="application/json")
    event = decimal_json(record.body)
    assert_envelope(event, world, kind, "json", "application/json")
    assert event["data"] == {
        "big": 123456789012345678901234567890,
        "exact": Decimal("1.10"),
        "list": [1, "two", None],
        "ok": True,
    }
    assert b"123456789012345678901234567890" in record.body, record.body
    assert b"1.10" in record.body, record.body  # the literal, not a float's shortest form


@KINDS
async def test_json_with_charset_parameter(world: PubSubWorld, kind: str) -> None:
    ctype = "application/json; charset=utf-8"
    event = await published(
        world, kind, "json-charset", '{"word":"héllo ✓"}'.encode(), content_type=ctype
    )
    assert_envelope(event, world, kind, "json-charset", ctype)
    assert event["data"] == {"word": "héllo ✓"}


@KINDS
async def test_invalid_json_falls_back_to_a_string(world: PubSubWorld, kind: str) -> None:
    event = await published(
        world, kind, "json-invalid", b"{not json", content_type="application/json"
    )
    assert_envelope(event, world, kind, "json-invalid", "application/json")
    assert event["data"] == "{not json"


@KINDS
@pytest.mark.parametrize(
    ("topic", "content_type"), [("text", "text/csv; charset=utf-8"), ("xml", "application/xml")]
)
async def test_text_types_become_string_data(
    world: PubSubWorld, kind: str, topic: str, content_type: str
) -> None:
    body = "a,b\n1,ü" if topic == "text" else "<order id='1'>x &amp; y</order>"
    event = await published(world, kind, topic, body.encode(), content_type=content_type)
    assert_envelope(event, world, kind, topic, content_type)
    assert event["data"] == body
    assert "data_base64" not in event


@KINDS
async def test_octet_stream_becomes_data_base64(world: PubSubWorld, kind: str) -> None:
    body = bytes(range(256)) + b"\xff\xfe tail"
    event = await published(world, kind, "octet", body, content_type="application/octet-stream")
    assert_envelope(event, world, kind, "octet", "application/octet-stream")
    assert "data" not in event, event
    assert base64.b64decode(event["data_base64"]) == body


@KINDS
async def test_user_cloudevent_is_completed_not_replaced(world: PubSubWorld, kind: str) -> None:
    user = {
        "specversion": "1.0",
        "type": "com.example.order.created",
        "source": "https://example.com/orders",
        "id": "user-event-1",
        "subject": "order-1",
        "datacontenttype": "application/json",
        "data": {"n": 1, "items": ["a", "b"]},
        "customext": "kept",
        "topic": "not-this-topic",
        "pubsubname": "not-this-pubsub",
    }
    event = await published(world, kind, "ce", json.dumps(user), content_type=CE_CONTENT_TYPE)
    for field in ("specversion", "type", "source", "id", "subject", "datacontenttype", "data"):
        assert event[field] == user[field], (field, event)
    assert event["customext"] == "kept"
    assert event["topic"] == world.topic(kind, "ce"), "topic is overwritten"
    assert event["pubsubname"] == world.pubsub(kind), "pubsubname is overwritten"
    assert TIME_RE.match(event.get("time", "")), "time is added when missing"
    assert TRACEPARENT_RE.match(event.get("traceparent", "")), event
    assert event["traceid"] == event["traceparent"], event


@KINDS
async def test_user_cloudevent_defaults_and_no_id(world: PubSubWorld, kind: str) -> None:
    user = {"type": "minimal.type", "data": "x"}
    event = await published(
        world, kind, "ce-minimal", json.dumps(user), content_type=CE_CONTENT_TYPE
    )
    assert "id" not in event, "daprd does not add an id to a user CloudEvent"
    assert event["type"] == "minimal.type"
    assert event["source"] == "Dapr"
    assert event["specversion"] == "1.0"
    assert event["data"] == "x"
    assert event["topic"] == world.topic(kind, "ce-minimal")
    assert event["pubsubname"] == world.pubsub(kind)
    assert TIME_RE.match(event.get("time", "")), event
    assert TRACEPARENT_RE.match(event.get("traceid", "")), event


@KINDS
async def test_user_cloudevent_keeps_its_time_and_trace(world: PubSubWorld, kind: str) -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    user = {
        "id": "keep-1",
        "source": "src",
        "type": "t",
        "specversion": "1.0",
        "time": "2020-01-02T03:04:05Z",
        "traceid": trace,
        "tracestate": "vendor=1",
        "data": 1,
    }
    event = await published(
        world,
        kind,
        "ce-keep",
        json.dumps(user),
        content_type=CE_CONTENT_TYPE,
        params={"metadata.cloudevent.type": "not.applied"},
    )
    assert event["time"] == "2020-01-02T03:04:05Z"
    assert event["traceid"] == trace
    assert "traceparent" not in event, "traceparent is set only together with a missing traceid"
    assert event["tracestate"] == "vendor=1"
    assert event["type"] == "t", "cloudevent.* overrides do not apply to a user CloudEvent"


@KINDS
async def test_raw_payload_is_published_as_is(world: PubSubWorld, kind: str) -> None:
    body = b'{"not":"a cloudevent","big":123456789012345678901234567890,"spaces": [1, 2]}'
    record = await published_record(
        world,
        kind,
        "raw",
        body,
        content_type="application/json",
        params={"metadata.rawPayload": "true", "metadata.ttlInSeconds": "60"},
    )
    assert record.body == body, "no envelope and no TTL handling with rawPayload"


@KINDS
async def test_cloudevent_metadata_overrides(world: PubSubWorld, kind: str) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    params = {
        "metadata.cloudevent.id": "override-id",
        "metadata.cloudevent.source": "override-source",
        "metadata.cloudevent.type": "override.type",
        "metadata.cloudevent.subject": "override-subject",
        "metadata.cloudevent.traceparent": trace,
        "metadata.cloudevent.tracestate": "congo=t61rcWkgMzE",
    }
    event = await published(
        world, kind, "overrides", b'{"x":1}', content_type="application/json", params=params
    )
    assert event["id"] == "override-id"
    assert event["source"] == "override-source"
    assert event["type"] == "override.type"
    assert event["subject"] == "override-subject"
    assert event["traceparent"] == trace
    assert event["traceid"] == trace, "a traceparent override replaces traceid too"
    assert event["tracestate"] == "congo=t61rcWkgMzE"
    assert event["data"] == {"x": 1}
    assert event["specversion"] == "1.0"


@KINDS
async def test_cloudevent_overrides_are_case_insensitive(world: PubSubWorld, kind: str) -> None:
    params = {"metadata.CloudEvent.Type": "mixed.case", "metadata.cloudevent.ID": "upper-id"}
    event = await published(world, kind, "overrides-case", b"x", params=params)
    assert event["type"] == "mixed.case"
    assert event["id"] == "upper-id"


@KINDS
async def test_ttl_sets_expiration_and_bad_ttl_is_ignored(world: PubSubWorld, kind: str) -> None:
    pubsub, topic = world.pubsub(kind), world.topic(kind, "ttl")
    before = datetime.now(UTC).replace(microsecond=0)
    await world.publish_ok(pubsub, topic, b"60s", params={"metadata.ttlInSeconds": "60"})
    await world.publish_ok(pubsub, topic, b"bad", params={"metadata.ttlInSeconds": "soon"})
    records = await world.app.wait_records(world.route(kind, "ttl"), 2)
    events = {e["data"]: e for e in (r.json() for r in records)}
    expiration = events["60s"]["expiration"]
    assert EXPIRATION_RE.match(expiration), f"RFC3339 UTC expected: {expiration!r}"
    moment = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    assert 59 <= (moment - before).total_seconds() <= 62, (expiration, before)
    assert "expiration" not in events["bad"], "an invalid TTL is silently ignored"


@KINDS
async def test_traceparent_of_the_request_is_the_parent(world: PubSubWorld, kind: str) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    incoming = f"00-{trace_id}-b7ad6b7169203331-01"
    event = await published(world, kind, "trace", b"t", headers={"traceparent": incoming})
    match = TRACEPARENT_RE.match(event["traceparent"])
    assert match, event
    assert match.group(1) == trace_id, "the event continues the caller's trace"
    assert event["traceid"] == event["traceparent"], "traceid holds the full traceparent"


@KINDS
async def test_topic_may_contain_slashes(world: PubSubWorld, kind: str) -> None:
    event = await published(world, kind, "nested/a/b", b"deep")
    assert event["topic"] == world.topic(kind, "nested/a/b")
    assert event["data"] == "deep"


@KINDS
async def test_put_publishes_too(world: PubSubWorld, kind: str) -> None:
    path = f"/v1.0/publish/{world.pubsub(kind)}/{world.topic(kind, 'put')}"
    resp = await world.client.put(path, content=b"by put")
    assert resp.status_code == 204, describe(resp)
    records = await world.app.wait_records(world.route(kind, "put"))
    assert records[0].json()["data"] == "by put"


# --------------------------------------------------------------------------- bulk publish


@KINDS
@pytest.mark.parametrize("version", BULK_ROUTES)
async def test_bulk_publish(world: PubSubWorld, kind: str, version: str) -> None:
    topic = f"bulk-{version}"
    entries = [
        {
            "entryId": "e1",
            "event": {"n": 1, "nested": {"ok": True}},
            "contentType": "application/json",
        },
        {"entryId": "e2", "event": "plain text", "contentType": "text/plain"},
        {
            "entryId": "e3",
            "event": base64.b64encode(b"\x00\x01bin").decode(),
            "contentType": "application/octet-stream",
        },
        {
            "entryId": "e4",
            "event": {"specversion": "1.0", "id": "bulk-ce", "source": "s", "type": "bulk.t"},
            "contentType": CE_CONTENT_TYPE,
        },
        {
            "entryId": "e5",
            "event": {"n": 5},
            "contentType": "application/json",
            "metadata": {"ttlInSeconds": "60"},
        },
    ]
    path = f"/{version}/publish/bulk/{world.pubsub(kind)}/{world.topic(kind, topic)}"
    resp = await world.client.post(path, json=entries)
    assert resp.status_code == 204, describe(resp)
    assert resp.content == b""
    records = await world.app.wait_records(world.route(kind, topic), len(entries))
    await wait_quiet(0.2)
    records = await world.app.records(world.route(kind, topic))
    assert len(records) == len(entries), [r.body for r in records]
    events = [decimal_json(r.body) for r in records]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event.get("datacontenttype", event.get("type")), []).append(event)
    json_events = sorted(by_type["application/json"], key=lambda e: e["data"]["n"])
    assert json_events[0]["data"] == {"n": 1, "nested": {"ok": True}}
    assert "expiration" not in json_events[0]
    assert EXPIRATION_RE.match(json_events[1].get("expiration", "")), "entry metadata applies"
    assert by_type["text/plain"][0]["data"] == "plain text"
    assert base64.b64decode(by_type["application/octet-stream"][0]["data_base64"]) == (
        b"\x00\x01bin"
    )
    user = [e for e in events if e.get("id") == "bulk-ce"]
    assert len(user) == 1, events
    assert user[0]["type"] == "bulk.t"
    assert user[0]["topic"] == world.topic(kind, topic)
    wrapped = [e for e in events if e.get("id") != "bulk-ce"]
    for event in wrapped:
        assert event["source"] == world.app_id
        assert event["topic"] == world.topic(kind, topic)
        assert event["pubsubname"] == world.pubsub(kind)
        assert UUID_RE.match(event["id"]), event
    assert len({e["id"] for e in wrapped}) == len(wrapped)
    traces = [e["traceparent"] for e in events]
    assert len(set(traces)) == len(traces), f"each entry has its own span: {traces}"


@KINDS
async def test_bulk_with_one_invalid_entry_publishes_nothing(world: PubSubWorld, kind: str) -> None:
    pubsub, topic = world.pubsub(kind), world.topic(kind, "bulk-invalid")
    entries = [
        {"entryId": "good", "event": "fine", "contentType": "text/plain"},
        {"event": "no id", "contentType": "text/plain"},
    ]
    resp = await world.client.post(f"/v1.0-alpha1/publish/bulk/{pubsub}/{topic}", json=entries)
    assert_pubsub_error(resp, 400, "ERR_PUBSUB_EVENTS_SER")
    await world.publish_ok(pubsub, topic, b"marker")
    await world.app.wait_records(world.route(kind, "bulk-invalid"))
    await wait_quiet(0.3)
    bodies = [r.json()["data"] for r in await world.app.records(world.route(kind, "bulk-invalid"))]
    assert bodies == ["marker"]


# --------------------------------------------------------------------------- errors (§2.1, §2.2)


@dataclass
class Publisher:
    client: httpx.AsyncClient
    pubsub: str
    app_id: str


def publisher_params() -> list[Any]:
    return [pytest.param("remote", id="remote")] if REMOTE_URL else KIND_PARAMS


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def remote_publisher() -> AsyncIterator[Publisher]:
    async with httpx.AsyncClient(base_url=REMOTE_URL, timeout=15.0) as client:
        meta = (await client.get("/v1.0/metadata")).json()
        yield Publisher(client, REMOTE_PUBSUB, meta.get("id", ""))


@pytest.fixture
def publisher(request: pytest.FixtureRequest) -> Publisher:
    """The real daprd of DAPR_CONFORMANCE_HTTP_URL, or this module's sidecar (a sync
    fixture: an async one cannot start another async fixture on demand)."""
    kind: str = request.param
    if kind == "remote":
        remote: Publisher = request.getfixturevalue("remote_publisher")
        return remote
    world: PubSubWorld = request.getfixturevalue("world")
    return Publisher(world.client, world.pubsub(kind), world.app_id)


def with_publisher(func: Any) -> Any:
    return pytest.mark.parametrize("publisher", publisher_params(), indirect=True)(func)


def assert_pubsub_error(
    resp: httpx.Response,
    status: int,
    code: str,
    *,
    reason: str | None = None,
    pubsub: str | None = None,
    message: str | re.Pattern[str] | None = None,
) -> dict[str, Any]:
    """A kit error (§0.2): legacy fields, one ErrorInfo (domain dapr.io, reason DAPR_PUBSUB_*),
    and, when ``pubsub`` is given, a ResourceInfo naming it."""
    body = error_body(resp, status, code)
    if isinstance(message, re.Pattern):
        assert message.search(body["message"]), describe(resp)
    elif message is not None:
        assert body["message"] == message, describe(resp)
    infos = find_details(body, ERROR_INFO)
    assert len(infos) == 1, body
    assert infos[0].get("domain") == "dapr.io", body
    assert str(infos[0].get("reason", "")).startswith("DAPR_PUBSUB_"), body
    if reason is not None:
        assert infos[0]["reason"] == reason, body
    if pubsub is not None:
        resources = find_details(body, RESOURCE_INFO)
        assert len(resources) == 1, body
        assert resources[0].get("resource_type") == "pubsub", body
        assert resources[0].get("resource_name") == pubsub, body
    return body


@with_publisher
@pytest.mark.parametrize("route", ["/v1.0/publish", *(f"/{v}/publish/bulk" for v in BULK_ROUTES)])
async def test_unknown_pubsub_is_404(publisher: Publisher, route: str) -> None:
    name = "no-such-pubsub"
    body = b"[]" if "bulk" in route else b"x"
    resp = await publisher.client.post(f"{route}/{name}/topic", content=body)
    error = assert_pubsub_error(
        resp,
        404,
        "ERR_PUBSUB_NOT_FOUND",
        reason="DAPR_PUBSUB_NOT_FOUND",
        message=f"pubsub {name} is not found",
    )
    assert len(error["details"]) == 1, error  # as daprd's own integration test checks


@with_publisher
@pytest.mark.parametrize("route", ["/v1.0/publish", *(f"/{v}/publish/bulk" for v in BULK_ROUTES)])
async def test_empty_topic_is_404(publisher: Publisher, route: str) -> None:
    resp = await publisher.client.post(f"{route}/{publisher.pubsub}/", content=b"[]")
    assert_pubsub_error(resp, 404, "ERR_TOPIC_NAME_EMPTY")


@with_publisher
@pytest.mark.parametrize("value", ["maybe", "yes", "2"])
async def test_bad_raw_payload_is_400(publisher: Publisher, value: str) -> None:
    resp = await publisher.client.post(
        f"/v1.0/publish/{publisher.pubsub}/t", content=b"x", params={"metadata.rawPayload": value}
    )
    assert_pubsub_error(
        resp,
        400,
        "ERR_PUBSUB_REQUEST_METADATA",
        reason="DAPR_PUBSUB_METADATA_DESERIALIZATION",
        pubsub=publisher.pubsub,
        message=re.compile(r"^failed deserializing metadata\. Error: "),
    )


@with_publisher
async def test_bad_raw_payload_message(publisher: Publisher) -> None:
    """The message daprd's own integration test expects
    (tests/integration/suite/daprd/pubsub/http/errors.go, the source §2.1 cites; the text
    comes from components-contrib ``metadata.IsRawPayload``)."""
    resp = await publisher.client.post(
        f"/v1.0/publish/{publisher.pubsub}/t",
        content=b"x",
        params={"metadata.rawPayload": "invalidBooleanValue"},
    )
    body = error_body(resp, 400, "ERR_PUBSUB_REQUEST_METADATA")
    assert body["message"] == (
        "failed deserializing metadata. Error: "
        "rawPayload value must be a valid boolean: actual is 'invalidBooleanValue'"
    ), describe(resp)


@with_publisher
@pytest.mark.parametrize("body", [b'{"}', b"not json at all", b"[1, 2]", b'"a string"'])
async def test_body_declared_cloudevent_but_not_a_json_object_is_500(
    publisher: Publisher, body: bytes
) -> None:
    resp = await publisher.client.post(
        f"/v1.0/publish/{publisher.pubsub}/t",
        content=body,
        headers={"content-type": CE_CONTENT_TYPE},
    )
    assert_pubsub_error(
        resp,
        500,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
        reason="DAPR_PUBSUB_CLOUD_EVENT_CREATION",
        pubsub=publisher.pubsub,
        message="cannot create cloudevent",
    )


@with_publisher
@pytest.mark.parametrize("version", BULK_ROUTES)
@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([{"event": "x", "contentType": "text/plain"}], id="missing-entryId"),
        pytest.param(
            [{"entryId": "", "event": "x", "contentType": "text/plain"}], id="empty-entryId"
        ),
        pytest.param(
            [
                {"entryId": "same", "event": "x", "contentType": "text/plain"},
                {"entryId": "same", "event": "y", "contentType": "text/plain"},
            ],
            id="duplicate-entryId",
        ),
        pytest.param([{"entryId": "a", "event": {"x": 1}}], id="no-contentType"),
        pytest.param(
            [{"entryId": "a", "event": {"x": 1}, "contentType": "application/x-unknown"}],
            id="unknown-contentType",
        ),
        pytest.param(
            [{"entryId": "a", "event": "%%%not base64", "contentType": "application/octet-stream"}],
            id="binary-not-base64",
        ),
    ],
)
async def test_invalid_bulk_entries_are_400(
    publisher: Publisher, version: str, entries: list[dict[str, Any]]
) -> None:
    resp = await publisher.client.post(
        f"/{version}/publish/bulk/{publisher.pubsub}/t", json=entries
    )
    assert_pubsub_error(resp, 400, "ERR_PUBSUB_EVENTS_SER")


@with_publisher
@pytest.mark.parametrize("version", BULK_ROUTES)
async def test_bulk_body_not_an_array_is_400(publisher: Publisher, version: str) -> None:
    name = publisher.pubsub
    resp = await publisher.client.post(
        f"/{version}/publish/bulk/{name}/topic", content=b'{"entryID": ""}'
    )
    assert_pubsub_error(
        resp,
        400,
        "ERR_PUBSUB_EVENTS_SER",
        reason="DAPR_PUBSUB_UNMARSHAL_EVENTS",
        pubsub=name,
        message=(
            f"error when unmarshaling the request for topic topic pubsub {name}: "
            "json: cannot unmarshal object into Go value of type []http.bulkPublishMessageEntry"
        ),
    )
    resp = await publisher.client.post(
        f"/{version}/publish/bulk/{name}/topic", content=b'{"entryID": "}'
    )
    assert_pubsub_error(
        resp,
        400,
        "ERR_PUBSUB_EVENTS_SER",
        reason="DAPR_PUBSUB_UNMARSHAL_EVENTS",
        pubsub=name,
        message=re.compile(rf"^error when unmarshaling the request for topic topic pubsub {name}:"),
    )


@pytest.mark.redis
@pytest.mark.own_process
async def test_broker_failure_is_500(world: PubSubWorld) -> None:
    """A Redis key of the wrong type makes XADD fail: a broker error (§2.1, §2.2)."""
    pubsub, topic = world.pubsub("redis"), world.topic("redis", "not-a-stream")
    with redis_client() as client:
        client.set(topic, "a plain string, not a stream")
    resp = await world.publish(pubsub, topic, b"x")
    assert_pubsub_error(
        resp,
        500,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        reason="DAPR_PUBSUB_PUBLISH_MESSAGE",
        pubsub=pubsub,
        message=re.compile(
            rf"^error when publishing to topic {re.escape(topic)} in pubsub redis: "
        ),
    )
    entries = [
        {"entryId": "one", "event": "a", "contentType": "text/plain"},
        {"entryId": "two", "event": "b", "contentType": "text/plain"},
    ]
    resp = await world.client.post(f"/v1.0/publish/bulk/{pubsub}/{topic}", json=entries)
    assert resp.status_code == 500, describe(resp)
    body = resp.json()
    assert set(body) == {"failedEntries", "errorCode"}, body
    assert body["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert sorted(e["entryId"] for e in body["failedEntries"]) == ["one", "two"]
    assert all(isinstance(e["error"], str) and e["error"] for e in body["failedEntries"])
    assert "metadata.responseData" in resp.headers, dict(resp.headers)
    assert "metadata.error" in resp.headers, dict(resp.headers)


@KINDS
async def test_publishing_scopes_forbid_other_topics(world: PubSubWorld, kind: str) -> None:
    pubsub = world.pubsub(kind, "scoped")
    allowed = world.topic(kind, "scoped")
    await world.publish_ok(pubsub, allowed, b"allowed")
    assert (await world.app.wait_records(world.route(kind, "scoped")))[0].json()["data"] == (
        "allowed"
    )
    denied = world.topic(kind, "denied")
    message = f"topic {denied} is not allowed for app id {world.app_id}"
    resp = await world.publish(pubsub, denied, b"no")
    assert_pubsub_error(
        resp, 403, "ERR_PUBSUB_FORBIDDEN", reason="DAPR_PUBSUB_FORBIDDEN", message=message
    )
    bulk = [{"entryId": "1", "event": "no", "contentType": "text/plain"}]
    resp = await world.client.post(f"/v1.0-alpha1/publish/bulk/{pubsub}/{denied}", json=bulk)
    assert_pubsub_error(resp, 403, "ERR_PUBSUB_FORBIDDEN")
