"""The publish API: ``/v1.0/publish`` and bulk publish (alpha and, since Dapr 1.17, v1.0)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from daprforge.sidecar import gojson
from daprforge.sidecar.errors import DaprError, pubsub_error
from daprforge.sidecar.pubsub import envelope
from daprforge.sidecar.request import BodyTooLargeError, DaprRequest
from daprforge.sidecar.responses import no_content
from daprforge.sidecar.routing import Route, route
from daprforge.sidecar.runtime import PubSubBinding

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _pubsub(call: DaprRequest) -> tuple[str, str, PubSubBinding, dict[str, str]]:
    name = call.params.get("pubsubname", "")
    metadata = call.metadata()
    if not name:
        raise pubsub_error(
            404,
            "ERR_PUBSUB_EMPTY",
            "pubsub name is empty",
            "NAME_EMPTY",
            name,
            metadata,
        )
    binding = call.runtime.pubsubs.get(name)
    if binding is None:
        raise pubsub_error(
            404,
            "ERR_PUBSUB_NOT_FOUND",
            f"pubsub {name} is not found",
            "NOT_FOUND",
            name,
            metadata,
            resource=False,
        )
    topic = call.params.get("*", "")
    if not topic:
        raise pubsub_error(
            404,
            "ERR_TOPIC_NAME_EMPTY",
            f"topic is empty in pubsub {name}",
            "TOPIC_NAME_EMPTY",
            name,
            metadata,
        )
    return name, topic, binding, metadata


def _raw_payload(name: str, metadata: dict[str, str]) -> bool:
    value = metadata.get("rawPayload")
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise pubsub_error(
        400,
        "ERR_PUBSUB_REQUEST_METADATA",
        "failed deserializing metadata. Error: "
        f"rawPayload value must be a valid boolean: actual is '{value}'",
        "METADATA_DESERIALIZATION",
        name,
        metadata,
    )


def _forbidden(name: str, topic: str, app_id: str) -> DaprError:
    reason = f"topic {topic} is not allowed for app id {app_id}"
    return pubsub_error(
        403,
        "ERR_PUBSUB_FORBIDDEN",
        reason,
        "FORBIDDEN",
        name,
        {"topic": topic, "error": reason},
    )


def _publish_failed(name: str, topic: str, error: Exception) -> DaprError:
    return pubsub_error(
        500,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"error when publishing to topic {topic} in pubsub {name}: {error}",
        "PUBLISH_MESSAGE",
        name,
        {"topic": topic, "error": str(error)},
    )


def build_event(
    call: DaprRequest,
    name: str,
    topic: str,
    body: bytes,
    content_type: str,
    metadata: Mapping[str, str],
) -> bytes:
    """The bytes daprd publishes for one event: the CloudEvent envelope, Go-encoded."""
    traceparent = envelope.child_traceparent(call.header("traceparent"))
    tracestate = call.header("tracestate") or ""
    app_id = call.runtime.app_id
    if envelope.is_cloudevent(content_type):
        try:
            event = envelope.from_cloudevent(
                body, pubsub=name, topic=topic, traceparent=traceparent, tracestate=tracestate
            )
        except envelope.EnvelopeError as exc:
            raise pubsub_error(
                500,
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                "cannot create cloudevent",
                "CLOUD_EVENT_CREATION",
                name,
                {"appID": app_id, "error": str(exc)},
            ) from None
    else:
        event = envelope.new_envelope(
            app_id=app_id,
            pubsub=name,
            topic=topic,
            body=body,
            content_type=content_type,
            traceparent=traceparent,
            tracestate=tracestate,
            metadata=metadata,
        )
    envelope.apply_ttl(event, metadata)
    return envelope.encode(event)


async def publish(call: DaprRequest) -> Response:
    name, topic, binding, metadata = _pubsub(call)
    try:
        body = await call.body()
    except BodyTooLargeError as exc:
        raise _publish_failed(name, topic, exc) from None
    if not binding.can_publish(call.runtime.app_id, topic):
        raise _forbidden(name, topic, call.runtime.app_id)
    raw = _raw_payload(name, metadata)
    data = (
        body
        if raw
        else build_event(call, name, topic, body, call.header("content-type") or "", metadata)
    )
    try:
        await binding.pubsub.publish(topic, data, metadata)
    except Exception as exc:
        raise _publish_failed(name, topic, exc) from None
    return no_content()


def event_bytes(event: Any, content_type: str) -> bytes:
    """daprd's ``ConvertEventToBytes`` for one bulk entry."""
    if envelope.is_binary(content_type):
        if not isinstance(event, str):
            raise ValueError("error: expected base64 encoded data for binary content type")
        try:
            return base64.b64decode(event, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"error: unable to decode base64 encoded binary data: {exc}") from None
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media == "application/xml":
        if not isinstance(event, str):
            raise ValueError("error: mismatch between contentType and event")
        return event.encode()
    if envelope.is_json(content_type) or envelope.is_cloudevent(content_type):
        return gojson.encode(event)
    raise ValueError(
        f"error: cannot convert event data of type {gojson.go_type_name(event)} to bytes. "
        f"content-type: {content_type}"
    )


async def bulk_publish(call: DaprRequest) -> Response:
    name, topic, binding, metadata = _pubsub(call)
    app_id = call.runtime.app_id
    raw = _raw_payload(name, metadata)
    try:
        entries = gojson.decode(await call.body())
        if not isinstance(entries, list):
            raise ValueError(
                f"json: cannot unmarshal {gojson.go_type_name(entries)} into Go value of type "
                "[]http.bulkPublishMessageEntry"
            )
    except (ValueError, BodyTooLargeError) as exc:
        raise pubsub_error(
            400,
            "ERR_PUBSUB_EVENTS_SER",
            f"error when unmarshaling the request for topic {topic} pubsub {name}: {exc}",
            "UNMARSHAL_EVENTS",
            name,
            {"appID": app_id},
        ) from None

    prepared: list[tuple[str, bytes, dict[str, str]]] = []
    seen: set[str] = set()
    for entry in entries:
        fields = entry if isinstance(entry, dict) else {}
        content_type = str(fields.get("contentType") or "")
        try:
            data = event_bytes(fields.get("event"), content_type)
        except ValueError as exc:
            raise pubsub_error(
                400,
                "ERR_PUBSUB_EVENTS_SER",
                f"error when marshalling cloud event envelope for topic {topic} pubsub {name}: "
                f"{exc}",
                "MARSHAL_ENVELOPE",
                name,
                {"appID": app_id, "error": str(exc)},
            ) from None
        entry_id = fields.get("entryId")
        if not isinstance(entry_id, str) or not entry_id or entry_id in seen:
            reason = "entryId is duplicated or not present for entry"
            raise pubsub_error(
                400,
                "ERR_PUBSUB_EVENTS_SER",
                f"error marshaling events to bytes for topic {topic} pubsub {name}. "
                f"error: {reason}",
                "MARSHAL_EVENTS",
                name,
                {"appID": app_id, "error": reason},
            )
        seen.add(entry_id)
        entry_metadata = fields.get("metadata")
        # As daprd: request metadata reaches an entry only when the entry has metadata.
        merged = {**metadata, **entry_metadata} if isinstance(entry_metadata, dict) else {}
        if not raw:
            data = build_event(call, name, topic, data, content_type, merged)
        prepared.append((entry_id, data, merged))

    if not binding.can_publish(app_id, topic):
        raise _forbidden(name, topic, app_id)
    outcomes = await asyncio.gather(
        *(binding.pubsub.publish(topic, data, md or metadata) for _, data, md in prepared),
        return_exceptions=True,
    )
    failed = [
        {"entryId": entry_id, "error": str(outcome)}
        for (entry_id, _, _), outcome in zip(prepared, outcomes, strict=True)
        if isinstance(outcome, BaseException)
    ]
    if not failed:
        return no_content()
    error = _publish_failed(name, topic, Exception(failed[0]["error"]))
    body = json.dumps(
        {"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"},
        separators=(",", ":"),
    )
    return Response(
        body.encode(),
        status_code=500,
        media_type="application/json",
        headers={"metadata.responseData": body, "metadata.error": error.message},
    )


ROUTES: list[Route] = [
    route(["POST", "PUT"], "v1.0/publish/{pubsubname}/*", publish),
    route(["POST", "PUT"], "v1.0-alpha1/publish/bulk/{pubsubname}/*", bulk_publish),
    route(["POST", "PUT"], "v1.0/publish/bulk/{pubsubname}/*", bulk_publish),
]
