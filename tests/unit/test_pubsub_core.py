"""The pub/sub pieces daprd's behaviour is defined by: envelope, routing rules, the app's
answers, resiliency policies, topic scopes, subscription parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daprforge.sidecar.components.loader import ResourceError
from daprforge.sidecar.pubsub import envelope
from daprforge.sidecar.pubsub.delivery import Outcome, read_outcome
from daprforge.sidecar.pubsub.match import MatchSyntaxError, Rule, find_route
from daprforge.sidecar.pubsub.scopes import topic_allowed
from daprforge.sidecar.pubsub.subscriptions import from_app, from_resource
from daprforge.sidecar.resiliency import load_resiliency

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make(body: bytes, content_type: str, **metadata: str) -> dict[str, object]:
    return envelope.new_envelope(
        app_id="publisher",
        pubsub="pubsub",
        topic="orders",
        body=body,
        content_type=content_type,
        traceparent=TRACE,
        tracestate="",
        metadata=metadata,
    )


def test_json_body_becomes_json_data_with_exact_numbers() -> None:
    event = make(b'{"b": 12345678901234567890, "a": 1.50}', "application/json; charset=utf-8")
    assert event["datacontenttype"] == "application/json; charset=utf-8"
    assert event["source"] == "publisher"
    assert event["type"] == "com.dapr.event.sent"
    assert event["specversion"] == "1.0"
    assert event["traceid"] == event["traceparent"] == TRACE
    encoded = envelope.encode(event)
    assert b'"data":{"a":1.50,"b":12345678901234567890}' in encoded
    # Go's map encoding: keys sorted.
    keys = list(json.loads(encoded))
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("content_type", "field", "value"),
    [
        ("", "data", "plain"),
        ("text/plain", "data", "plain"),
        ("application/xml", "data", "plain"),
        ("application/octet-stream", "data_base64", "cGxhaW4="),
        ("application/json", "data", "plain"),  # invalid JSON falls back to the string
    ],
)
def test_wrapping_by_content_type(content_type: str, field: str, value: str) -> None:
    event = make(b"plain", content_type)
    assert event[field] == value
    assert event["datacontenttype"] == (content_type or "text/plain")


def test_metadata_overrides_envelope_fields() -> None:
    event = make(
        b"x",
        "text/plain",
        **{"cloudevent.id": "my-id", "CloudEvent.Type": "my.type", "cloudevent.subject": "s"},
    )
    assert (event["id"], event["type"], event["subject"]) == ("my-id", "my.type", "s")


def test_user_cloudevent_is_completed_not_replaced() -> None:
    event = envelope.from_cloudevent(
        b'{"id": "e1", "type": "mine", "topic": "wrong", "data": {"x": 1}}',
        pubsub="pubsub",
        topic="orders",
        traceparent=TRACE,
        tracestate="",
    )
    assert (event["id"], event["type"], event["topic"]) == ("e1", "mine", "orders")
    assert (event["source"], event["specversion"]) == ("Dapr", "1.0")
    assert "time" in event
    without_id = envelope.from_cloudevent(
        b"{}", pubsub="p", topic="t", traceparent=TRACE, tracestate=""
    )
    assert "id" not in without_id
    with pytest.raises(envelope.EnvelopeError):
        envelope.from_cloudevent(b"[1]", pubsub="p", topic="t", traceparent=TRACE, tracestate="")


def test_ttl_sets_expiration_and_expiry_is_detected() -> None:
    event = make(b"x", "text/plain")
    envelope.apply_ttl(event, {"ttlInSeconds": "60"})
    expiry = datetime.fromisoformat(str(event["expiration"]).replace("Z", "+00:00"))
    assert timedelta(seconds=55) < expiry - datetime.now(UTC) <= timedelta(seconds=60)
    assert not envelope.has_expired(event)
    event["expiration"] = "2000-01-01T00:00:00Z"
    assert envelope.has_expired(event)
    invalid = make(b"x", "text/plain")
    envelope.apply_ttl(invalid, {"ttlInSeconds": "soon"})  # ignored, as in Dapr
    assert "expiration" not in invalid


def test_child_traceparent_keeps_the_trace() -> None:
    child = envelope.child_traceparent(TRACE)
    assert child.split("-")[1] == TRACE.split("-")[1]
    assert child.split("-")[2] != TRACE.split("-")[2]
    fresh = envelope.child_traceparent("garbage")
    assert len(fresh.split("-")[1]) == 32


EVENT = {"type": "order.created", "data": {"total": 150, "customer": {"tier": "gold"}}}


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ('event.type == "order.created"', True),
        ("event.data.total > 100", True),
        ("event.data.total > 100.5 && event.data.total < 200", True),
        ('event.data.customer.tier == "silver" || event.data.total >= 150', True),
        ('!(event.type == "order.created")', False),
        ("event.data.missing == 1", False),
        ('event.data.total == "150"', False),
        ('event.type.startsWith("order.")', True),
        ('event.type in ["a", "order.created"]', True),
    ],
)
def test_rule_matching(match: str, expected: bool) -> None:
    assert Rule.build(match, "/p").matches(EVENT) is expected


@pytest.mark.parametrize("match", ['event.type = "x"', "other.type == 1", "event.x.size() > 0"])
def test_unsupported_rules_fail_at_load(match: str) -> None:
    with pytest.raises(MatchSyntaxError):
        Rule.build(match, "/p")


def test_first_matching_rule_wins_and_default_catches_the_rest() -> None:
    rules = [
        Rule.build('event.type == "order.created"', "/created"),
        Rule.build("event.data.total > 0", "/positive"),
        Rule.build("", "/default"),
    ]
    assert find_route(rules, EVENT) == "/created"
    assert find_route(rules, {"type": "x", "data": {"total": 1}}) == "/positive"
    assert find_route(rules, {"type": "x"}) == "/default"
    assert find_route(rules[:1], {"type": "x"}) is None


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b"", Outcome.SUCCESS),
        (204, b"", Outcome.SUCCESS),
        (200, b"not json", Outcome.SUCCESS),
        (200, b"null", Outcome.SUCCESS),
        (200, b'{"status": ""}', Outcome.SUCCESS),
        (200, b'{"status": "SUCCESS"}', Outcome.SUCCESS),
        (200, b'{"status": "RETRY"}', Outcome.RETRY),
        (200, b'{"status": "DROP"}', Outcome.DROP),
        (200, b'{"status": "success"}', Outcome.RETRY),  # case-sensitive, as daprd
        (404, b"", Outcome.DROP),
        (400, b"", Outcome.RETRY),
        (500, b'{"status": "SUCCESS"}', Outcome.RETRY),
        (302, b"", Outcome.RETRY),
    ],
)
def test_app_answers(status: int, body: bytes, outcome: Outcome) -> None:
    assert read_outcome(status, body) is outcome


RESILIENCY = {
    "kind": "Resiliency",
    "spec": {
        "policies": {
            "retries": {
                "fast": {"policy": "constant", "duration": "10ms", "maxRetries": 3},
                "DefaultRetryPolicy": {"policy": "exponential", "maxInterval": "2s"},
            },
            "timeouts": {"short": "1s"},
        },
        "targets": {"components": {"pubsub": {"inbound": {"retry": "fast", "timeout": "short"}}}},
    },
}


def test_resiliency_targets_and_defaults() -> None:
    resiliency = load_resiliency([("r.yaml", RESILIENCY)], "app")
    named = resiliency.pubsub_inbound("pubsub")
    assert named.retry is not None
    assert list(named.retry.delays()) == [0.01, 0.01, 0.01]
    assert named.timeout == 1.0
    default = resiliency.pubsub_inbound("other")
    assert default.retry is not None
    assert default.retry.exponential
    delays = default.retry.delays()
    assert all(0 < next(delays) <= 2.0 for _ in range(20))  # -1: forever, capped


def test_no_resiliency_means_one_attempt() -> None:
    assert load_resiliency([], "app").pubsub_inbound("pubsub").retry is None
    scoped = {**RESILIENCY, "scopes": ["someone-else"]}
    assert load_resiliency([("r.yaml", scoped)], "app").pubsub_inbound("pubsub").retry is None


def test_resiliency_unknown_policy_is_an_error() -> None:
    bad = json.loads(json.dumps(RESILIENCY))
    bad["spec"]["targets"]["components"]["pubsub"]["inbound"]["retry"] = "nope"
    with pytest.raises(ResourceError, match="no retry policy named 'nope'"):
        load_resiliency([("r.yaml", bad)], "app")


def test_topic_scopes() -> None:
    metadata = {
        "publishingScopes": "a=orders,audit;b=",
        "allowedTopics": "orders,audit,news",
        "protectedTopics": "audit",
    }
    assert topic_allowed(metadata, "publishingScopes", "a", "orders")
    assert not topic_allowed(metadata, "publishingScopes", "a", "news")
    assert not topic_allowed(metadata, "publishingScopes", "b", "orders")
    assert topic_allowed(metadata, "publishingScopes", "c", "news")
    assert not topic_allowed(metadata, "publishingScopes", "c", "audit")
    assert not topic_allowed(metadata, "publishingScopes", "c", "elsewhere")


def test_programmatic_subscriptions_v1_and_v2() -> None:
    subscriptions = from_app(
        [
            {"pubsubname": "pubsub", "topic": "a", "route": "/a"},
            {
                "pubsubname": "pubsub",
                "topic": "b",
                "route": "/ignored",
                "routes": {
                    "rules": [{"match": 'event.type == "x"', "path": "/x"}],
                    "default": "/b",
                },
                "deadLetterTopic": "poison",
                "metadata": {"rawPayload": "true"},
            },
            {"pubsubname": "pubsub", "topic": "no-route"},
            {"topic": "missing-pubsub", "route": "/m"},
            {
                "pubsubname": "pubsub",
                "topic": "bad",
                "routes": {"rules": [{"match": "=", "path": "/"}]},
            },
        ]
    )
    assert [s.topic for s in subscriptions] == ["a", "b"]
    second = subscriptions[1]
    assert [r.path for r in second.rules] == ["/x", "/b"]
    assert second.raw_payload
    assert second.describe()["deadLetterTopic"] == "poison"
    assert second.describe()["type"] == "PROGRAMMATIC"


def test_declarative_subscriptions(tmp_path: Path) -> None:
    v2 = {
        "apiVersion": "dapr.io/v2alpha1",
        "kind": "Subscription",
        "metadata": {"name": "s"},
        "spec": {"pubsubname": "pubsub", "topic": "t", "routes": {"default": "/t"}},
        "scopes": ["app"],
    }
    v1 = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": "old"},
        "spec": {"pubsubname": "pubsub", "topic": "t", "route": "/old"},
    }
    subscription = from_resource("s.yaml", v2, "app")
    assert subscription is not None
    assert subscription.describe()["type"] == "DECLARATIVE"
    assert from_resource("s.yaml", v2, "other-app") is None
    old = from_resource("s.yaml", v1, "app")
    assert old is not None
    assert old.rules[0].path == "/old"
    with pytest.raises(ResourceError, match=r"needs spec\.routes"):
        from_resource("s.yaml", {**v1, "spec": {"pubsubname": "p", "topic": "t"}}, "app")
