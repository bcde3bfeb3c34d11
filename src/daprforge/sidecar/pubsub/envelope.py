"""The CloudEvent envelope daprd wraps around published data, and reads back on delivery.

Rules by request ``Content-Type`` (components-contrib ``pubsub/envelope.go``): JSON bodies
become a JSON ``data`` value (numbers kept exactly), ``application/octet-stream`` becomes
``data_base64``, anything else a string ``data``; ``application/cloudevents+json`` is taken
as the user's own CloudEvent and only completed. The published bytes are Go's encoding of
the envelope map, so they are the bytes daprd would publish.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from daprforge.sidecar import gojson
from daprforge.sidecar.components.metadata import parse_duration

DEFAULT_TYPE = "com.dapr.event.sent"
DEFAULT_SOURCE = "Dapr"
SPEC_VERSION = "1.0"
DEFAULT_CONTENT_TYPE = "text/plain"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_OVERRIDABLE = ("id", "source", "type", "subject", "traceid", "tracestate", "traceparent")


class EnvelopeError(ValueError):
    """The body was declared a CloudEvent but is not a JSON object."""


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_cloudevent(content_type: str) -> bool:
    return _media_type(content_type) == "application/cloudevents+json"


def is_json(content_type: str) -> bool:
    return _media_type(content_type) == "application/json"


def is_binary(content_type: str) -> bool:
    return _media_type(content_type) == "application/octet-stream"


def child_traceparent(incoming: str | None) -> str:
    """A W3C traceparent for a new span, child of ``incoming`` when that is valid."""
    match = _TRACEPARENT.match((incoming or "").strip().lower())
    span = secrets.token_hex(8)
    if match and match.group(2) != "0" * 32:
        return f"00-{match.group(2)}-{span}-{match.group(4)}"
    return f"00-{secrets.token_hex(16)}-{span}-01"


def _now() -> str:
    # RFC 3339 at second precision in the sidecar's local time zone, like Go's time.Now().
    return datetime.now().astimezone().replace(microsecond=0).isoformat()


def _cloudevent_overrides(metadata: Mapping[str, str]) -> dict[str, str]:
    """``metadata.cloudevent.<field>`` values (matched case-insensitively)."""
    overrides: dict[str, str] = {}
    for name, value in metadata.items():
        lowered = name.lower()
        if lowered.startswith("cloudevent."):
            field = lowered.removeprefix("cloudevent.")
            if field in _OVERRIDABLE and value:
                overrides[field] = value
    return overrides


def new_envelope(
    *,
    app_id: str,
    pubsub: str,
    topic: str,
    body: bytes,
    content_type: str,
    traceparent: str,
    tracestate: str,
    metadata: Mapping[str, str],
) -> dict[str, Any]:
    """The envelope for a plain (non-CloudEvent) publish."""
    overrides = _cloudevent_overrides(metadata)
    content_type = content_type or DEFAULT_CONTENT_TYPE
    trace = overrides.get("traceparent") or overrides.get("traceid") or traceparent
    envelope: dict[str, Any] = {
        "id": overrides.get("id") or str(uuid.uuid4()),
        "source": overrides.get("source") or app_id or DEFAULT_SOURCE,
        "type": overrides.get("type") or DEFAULT_TYPE,
        "specversion": SPEC_VERSION,
        "datacontenttype": content_type,
        "topic": topic,
        "pubsubname": pubsub,
        "traceid": trace,
        "traceparent": trace,
        "tracestate": overrides.get("tracestate", tracestate),
        "time": _now(),
    }
    if is_json(content_type):
        try:
            envelope["data"] = gojson.decode(body, use_number=True)
        except gojson.DecodeError:
            envelope["data"] = body.decode("utf-8", errors="replace")
    elif is_binary(content_type):
        envelope["data_base64"] = base64.b64encode(body).decode()
    else:
        envelope["data"] = body.decode("utf-8", errors="replace")
    if "subject" in overrides:
        envelope["subject"] = overrides["subject"]
    return envelope


def from_cloudevent(
    body: bytes, *, pubsub: str, topic: str, traceparent: str, tracestate: str
) -> dict[str, Any]:
    """Complete a CloudEvent the publisher built itself; ``id`` is not added if missing."""
    try:
        event = gojson.decode(body, use_number=True)
    except gojson.DecodeError as exc:
        raise EnvelopeError(str(exc)) from None
    if not isinstance(event, dict):
        raise EnvelopeError("a CloudEvent must be a JSON object")
    event["topic"] = topic
    event["pubsubname"] = pubsub
    event.setdefault("time", _now())
    if event.get("traceid") is None:
        event["traceid"] = traceparent
        event["traceparent"] = traceparent
    if event.get("tracestate") is None:
        event["tracestate"] = tracestate
    for field, default in (
        ("source", DEFAULT_SOURCE),
        ("type", DEFAULT_TYPE),
        ("specversion", SPEC_VERSION),
    ):
        if event.get(field) is None:
            event[field] = default
    return event


def ttl_seconds(metadata: Mapping[str, str]) -> float | None:
    """Message TTL from ``ttlInSeconds`` (or ``ttl``); invalid values are ignored, as in Dapr."""
    raw = metadata.get("ttlInSeconds") or metadata.get("ttl")
    if not raw:
        return None
    try:
        seconds = parse_duration(raw, bare_unit="s")
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def apply_ttl(envelope: dict[str, Any], metadata: Mapping[str, str]) -> None:
    """Set ``expiration`` (RFC 3339, UTC) when the publish asked for a TTL."""
    ttl = ttl_seconds(metadata)
    if ttl is not None:
        expiry = datetime.now(UTC) + timedelta(seconds=ttl)
        envelope["expiration"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")


def has_expired(event: Mapping[str, Any]) -> bool:
    expiration = event.get("expiration")
    if not isinstance(expiration, str) or not expiration:
        return False
    try:
        moment = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        return False
    return moment < datetime.now(UTC)


def from_raw_payload(data: bytes, *, pubsub: str, topic: str) -> dict[str, Any]:
    """The envelope a subscriber with ``rawPayload`` gets around the broker's bytes."""
    return {
        "id": str(uuid.uuid4()),
        "source": DEFAULT_SOURCE,
        "type": DEFAULT_TYPE,
        "specversion": SPEC_VERSION,
        "datacontenttype": "application/octet-stream",
        "topic": topic,
        "pubsubname": pubsub,
        "data_base64": base64.b64encode(data).decode(),
    }


def encode(envelope: Mapping[str, Any]) -> bytes:
    return gojson.encode(envelope)
