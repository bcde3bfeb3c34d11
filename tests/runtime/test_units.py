"""The pure parts of the runtime: trace context, error mapping, value encoding, settings
from the environment, subscription descriptions and handler binding. No processes."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field, ValidationError

from daprforge.client import (
    CloudEvent,
    ComponentNotFoundError,
    ConcurrencyError,
    DaprError,
    Delete,
    TraceContext,
    Upsert,
    current_trace,
    endpoint_from_env,
    use_trace,
)
from daprforge.client.codec import decode_json, decode_value, encode_json
from daprforge.client.errors import error_from_response
from daprforge.client.pubsub import _bulk_entry, encode_event
from daprforge.client.state import StateItem
from daprforge.client.transport import backoff, segment
from daprforge.events import EventRouter
from daprforge.events.binding import HandlerBinding, PayloadError
from daprforge.service import ServiceSettings
from daprforge.service.context import request_id_from


class Order(BaseModel):
    order_id: str = Field(alias="orderId")
    quantity: int


# --- trace context -----------------------------------------------------------------------

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_traceparent_round_trip() -> None:
    context = TraceContext.parse(VALID, "vendor=1")
    assert context is not None
    assert (context.trace_id, context.span_id, context.flags) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
    )
    assert context.traceparent == VALID
    assert context.tracestate == "vendor=1"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        VALID + "-extra",  # version 00 has exactly four fields
    ],
)
def test_invalid_traceparent_is_ignored(header: str | None) -> None:
    assert TraceContext.parse(header) is None


def test_future_versions_may_carry_more_fields() -> None:
    context = TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
    assert context is not None
    assert context.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_child_keeps_the_trace_and_changes_the_span() -> None:
    parent = TraceContext.new()
    child = parent.child()
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id
    assert TraceContext.parse(child.traceparent) == child


def test_use_trace_is_scoped() -> None:
    context = TraceContext.new()
    assert current_trace() is None
    with use_trace(context):
        assert current_trace() is context
    assert current_trace() is None


# --- errors ------------------------------------------------------------------------------


def response(status: int, body: Any, content_type: str = "application/json") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"content-type": content_type})


def test_etag_mismatch_is_a_concurrency_error() -> None:
    error = error_from_response(
        response(
            409,
            {
                "errorCode": "ERR_STATE_SAVE",
                "message": "failed saving state: possible etag mismatch",
            },
        )
    )
    assert isinstance(error, ConcurrencyError)
    assert (error.status, error.error_code) == (409, "ERR_STATE_SAVE")


def test_transaction_etag_mismatch_is_a_concurrency_error() -> None:
    # daprd reports it as a 500 (Dapr HTTP API reference §1.8).
    message = (
        "error while executing state transaction: possible etag mismatch. error from state store: x"
    )
    error = error_from_response(
        response(500, {"errorCode": "ERR_STATE_TRANSACTION", "message": message})
    )
    assert isinstance(error, ConcurrencyError)


def test_postgres_first_write_conflict_is_a_concurrency_error() -> None:
    body = {"errorCode": "ERR_STATE_SAVE", "message": "failed saving state: no item was updated"}
    assert isinstance(error_from_response(response(500, body)), ConcurrencyError)


def test_other_store_errors_are_plain_dapr_errors() -> None:
    body = {"errorCode": "ERR_STATE_TRANSACTION", "message": "connection reset"}
    error = error_from_response(response(500, body))
    assert type(error) is DaprError
    assert error.message == "connection reset"


def test_kit_error_details_and_reason() -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.ResourceInfo", "resource_name": "nope"},
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "DAPR_STATE_NOT_FOUND"},
    ]
    body = {
        "errorCode": "ERR_STATE_STORE_NOT_FOUND",
        "message": "state store nope is not found",
        "details": details,
    }
    error = error_from_response(response(400, body))
    assert isinstance(error, ComponentNotFoundError)
    assert error.reason == "DAPR_STATE_NOT_FOUND"
    assert error.details == details
    assert "ERR_STATE_STORE_NOT_FOUND" in str(error)


def test_plain_text_error() -> None:
    error = error_from_response(response(401, b"invalid api token\n", "text/plain"))
    assert (error.status, error.error_code, error.message) == (401, "", "invalid api token")
    assert str(error) == "HTTP 401: invalid api token"


# --- encoding ----------------------------------------------------------------------------


def test_models_are_encoded_by_alias_and_read_back() -> None:
    order = Order(orderId="o-1", quantity=2)
    encoded = encode_json({"value": order})
    assert json.loads(encoded) == {"value": {"orderId": "o-1", "quantity": 2}}
    assert decode_json(encode_json(order), Order) == order
    assert decode_value({"orderId": "o-1", "quantity": "2"}, Order) == order


def test_decoding_without_a_type_is_plain_json_and_bytes_are_raw() -> None:
    assert decode_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert decode_json(b"not json", bytes) == b"not json"
    with pytest.raises(ValidationError):
        decode_json(b'{"orderId": "x"}', Order)


def test_segments_escape_what_go_would_unescape() -> None:
    assert segment("a/b c+d%") == "a%2Fb%20c%2Bd%25"


def test_backoff_grows_and_is_capped() -> None:
    assert all(0 <= backoff(0) <= 0.1 for _ in range(50))
    assert all(0 <= backoff(10) <= 2.0 for _ in range(50))


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        ({"a": 1}, None, (b'{"a":1}', "application/json")),
        ("hello", None, (b"hello", "text/plain")),
        (b"\x00\x01", None, (b"\x00\x01", "application/octet-stream")),
        ("<a/>", "application/xml", (b"<a/>", "application/xml")),
        ([1, 2], None, (b"[1,2]", "application/json")),
    ],
)
def test_publish_encoding(data: Any, content_type: str | None, expected: Any) -> None:
    assert encode_event(data, content_type) == expected


def test_publishing_a_cloudevent_sends_the_envelope() -> None:
    event = CloudEvent[Order](type="order.created", data=Order(orderId="o", quantity=1))
    body, content_type = encode_event(event)
    assert content_type == "application/cloudevents+json"
    sent = json.loads(body)
    assert sent["id"] == event.id
    assert sent["data"] == {"orderId": "o", "quantity": 1}
    assert "source" not in sent  # left for daprd to fill


def test_bulk_entries() -> None:
    assert _bulk_entry(0, {"a": 1}) == {
        "entryId": "0",
        "event": {"a": 1},
        "contentType": "application/json",
    }
    assert _bulk_entry(1, b"\xff")["event"] == "/w=="
    assert _bulk_entry(2, "text")["contentType"] == "text/plain"


def test_state_requests() -> None:
    assert Upsert("k", 1, etag="e", ttl=30, concurrency="first-write").request() == {
        "key": "k",
        "value": 1,
        "etag": "e",
        "metadata": {"ttlInSeconds": "30"},
        "options": {"concurrency": "first-write"},
    }
    assert Delete("k").request() == {"key": "k"}
    item = StateItem("k", 1, metadata={"ttlexpiretime": "2030-01-02T03:04:05Z"})
    assert item.expires_at is not None
    assert item.expires_at.year == 2030
    assert item.expires_at.utcoffset() is not None


# --- configuration -----------------------------------------------------------------------


def test_endpoint_from_env() -> None:
    assert endpoint_from_env({}) == "http://127.0.0.1:3500"
    assert endpoint_from_env({"DAPR_HTTP_PORT": "3600"}) == "http://127.0.0.1:3600"
    both = {"DAPR_HTTP_PORT": "3600", "DAPR_HTTP_ENDPOINT": "http://dapr:3501/"}
    assert endpoint_from_env(both) == "http://dapr:3501"
    with pytest.raises(ValueError, match="DAPR_HTTP_PORT"):
        endpoint_from_env({"DAPR_HTTP_PORT": "x"})


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ID", "orders")
    monkeypatch.setenv("API_KEY", "key-9f3a")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3601")
    monkeypatch.setenv("MAX_BODY_SIZE", "10")
    settings = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.app_id == "orders"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "key-9f3a"
    assert settings.dapr_endpoint == "http://127.0.0.1:3601"
    assert settings.max_body_size == 10
    assert "key-9f3a" not in repr(settings)


def test_request_ids_from_callers_are_kept_only_when_harmless() -> None:
    assert request_id_from("abc-123") == "abc-123"
    generated = request_id_from("bad id\r\ninjected: yes")
    assert len(generated) == 32
    assert request_id_from(None) != request_id_from(None)


# --- subscriptions -----------------------------------------------------------------------


def test_subscriptions_describe_routes_rules_and_dead_letters() -> None:
    events = EventRouter()

    @events.subscribe("pubsub", "orders", dead_letter_topic="orders-dead")
    async def on_order(order: Order) -> None: ...

    @events.subscribe("pubsub", "orders", match='event.type == "refund"')
    async def on_refund(event: CloudEvent[Order]) -> None: ...

    @events.subscribe("other", "a/b c", metadata={"rawPayload": "true"})
    async def on_raw(payload: bytes) -> None: ...

    assert [s.describe() for s in events.subscriptions.values()] == [
        {
            "pubsubname": "pubsub",
            "topic": "orders",
            "routes": {
                "rules": [
                    {"match": 'event.type == "refund"', "path": "/events/pubsub/orders/on_refund"}
                ],
                "default": "/events/pubsub/orders",
            },
            "deadLetterTopic": "orders-dead",
        },
        {
            "pubsubname": "other",
            "topic": "a/b c",
            "routes": {"default": "/events/other/a_b_c"},
            "metadata": {"rawPayload": "true"},
        },
    ]


async def test_handlers_the_app_does_not_serve_are_not_offered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = EventRouter()

    @events.subscribe("pubsub", "orders")
    async def on_order(order: Order) -> None: ...

    async def subscriptions(app: FastAPI, path: str) -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return (await http.get(path)).json()

    served = FastAPI()
    served.include_router(events)
    assert [entry["topic"] for entry in await subscriptions(served, "/dapr/subscribe")] == [
        "orders"
    ]
    assert "not subscribing" not in caplog.text

    # With a prefix the handler lives at /v1/events/...: daprd's POSTs would get 404.
    prefixed = FastAPI()
    prefixed.include_router(events, prefix="/v1")
    assert await subscriptions(prefixed, "/v1/dapr/subscribe") == []
    assert "not subscribing to pubsub/orders" in caplog.text


def test_conflicting_registrations_are_refused() -> None:
    events = EventRouter()

    @events.subscribe("pubsub", "orders", dead_letter_topic="dead-1")
    async def first(order: Order) -> None: ...

    with pytest.raises(ValueError, match="without match"):

        @events.subscribe("pubsub", "orders")
        async def second(order: Order) -> None: ...

    with pytest.raises(ValueError, match="dead-letter"):

        @events.subscribe("pubsub", "orders", match="true", dead_letter_topic="dead-2")
        async def third(order: Order) -> None: ...

    with pytest.raises(TypeError, match="async def"):

        @events.subscribe("pubsub", "sync")
        def not_async(order: Order) -> None: ...


def _raw(data: Any = None, **fields: Any) -> dict[str, Any]:
    event = {"id": "e-1", "source": "s", "type": "t", "specversion": "1.0", **fields}
    if data is not None:
        event["data"] = data
    return event


def test_binding_the_data_to_the_handler_type() -> None:
    async def handler(order: Order) -> None: ...

    binding = HandlerBinding.of(handler)
    assert binding.argument(_raw({"orderId": "o", "quantity": 1})) == Order(orderId="o", quantity=1)
    # JSON published as text arrives as a string.
    assert binding.argument(_raw('{"orderId": "o", "quantity": 1}')).quantity == 1
    # Raw payloads come as data_base64.
    assert (
        binding.argument(_raw(data_base64="eyJvcmRlcklkIjoibyIsInF1YW50aXR5IjoyfQ==")).quantity == 2
    )
    with pytest.raises(ValidationError):
        binding.argument(_raw({"orderId": "o"}))


def get_answer() -> int:
    return 42


def test_binding_the_whole_event_bytes_and_dependencies() -> None:
    async def typed(
        event: CloudEvent[Order], answer: Annotated[int, Depends(get_answer)]
    ) -> None: ...

    binding = HandlerBinding.of(typed)
    event = binding.argument(_raw({"orderId": "o", "quantity": 3}, topic="orders", custom="x"))
    assert isinstance(event, CloudEvent)
    assert event.data == Order(orderId="o", quantity=3)
    assert (event.topic, event.model_extra) == ("orders", {"custom": "x"})
    assert [p.name for p in binding.dependencies] == ["answer"]

    async def raw(payload: bytes) -> None: ...

    raw_binding = HandlerBinding.of(raw)
    assert raw_binding.argument(_raw(data_base64="AAEC")) == b"\x00\x01\x02"
    assert raw_binding.argument(_raw("text")) == b"text"
    assert raw_binding.argument(_raw({"a": 1})) == b'{"a":1}'
    with pytest.raises(PayloadError):
        raw_binding.argument(_raw(data_base64="!!!"))


def test_handler_types_must_be_resolvable() -> None:
    class Local(BaseModel):
        x: int

    async def handler(item: Local) -> None: ...

    # With postponed annotations a type local to a function cannot be looked up.
    with pytest.raises(TypeError, match="module level"):
        HandlerBinding.of(handler)
