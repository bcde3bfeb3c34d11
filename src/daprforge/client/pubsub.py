"""Publishing: ``client.pubsub.publish(...)`` and ``publish_bulk``.

How ``data`` is sent decides what subscribers get (Dapr HTTP API reference §2.1): JSON
values and Pydantic models go as ``application/json`` and arrive as JSON ``data``; ``str``
goes as ``text/plain``; ``bytes`` as ``application/octet-stream`` (``data_base64``); a
:class:`CloudEvent` is sent as the envelope itself. ``raw=True`` skips the envelope.

A publish is not retried once the request may have reached the sidecar: the broker may
already hold the event, and a silent duplicate is worse than an error.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from daprforge.client.cloudevents import CloudEvent
from daprforge.client.codec import encode_json, to_jsonable
from daprforge.client.errors import BulkPublishError, error_from_response
from daprforge.client.transport import JSON, Transport, metadata_params, segment

CLOUDEVENTS_JSON = "application/cloudevents+json"


def _topic(topic: str) -> str:
    # The topic is the rest of the path, so it may contain "/"; everything else is escaped.
    return quote(topic, safe="/")


def encode_event(data: Any, content_type: str | None = None) -> tuple[bytes, str]:
    """The request body and content type for publishing ``data``."""
    if isinstance(data, CloudEvent):
        return encode_json(data.to_json_dict()), content_type or CLOUDEVENTS_JSON
    if isinstance(data, bytes):
        return data, content_type or "application/octet-stream"
    if isinstance(data, str):
        return data.encode(), content_type or "text/plain"
    return encode_json(data), content_type or "application/json"


@dataclass(frozen=True, slots=True)
class BulkMessage:
    """One entry of a bulk publish, when it needs its own id, content type or metadata."""

    event: Any
    entry_id: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] | None = None


def _bulk_entry(index: int, message: Any) -> dict[str, Any]:
    if not isinstance(message, BulkMessage):
        message = BulkMessage(message)
    event = message.event
    value: Any
    # daprd expects the event as a JSON value; binary content travels base64-encoded.
    if isinstance(event, CloudEvent):
        value, content_type = event.to_json_dict(), CLOUDEVENTS_JSON
    elif isinstance(event, bytes):
        value, content_type = base64.b64encode(event).decode(), "application/octet-stream"
    elif isinstance(event, str):
        value, content_type = event, "text/plain"
    else:
        value, content_type = to_jsonable(event), "application/json"
    entry: dict[str, Any] = {
        "entryId": message.entry_id or str(index),
        "event": value,
        "contentType": message.content_type or content_type,
    }
    if message.metadata:
        entry["metadata"] = dict(message.metadata)
    return entry


def _publish_metadata(
    metadata: Mapping[str, str] | None, ttl: int | None, raw: bool
) -> dict[str, str]:
    merged = dict(metadata or {})
    if ttl is not None:
        merged["ttlInSeconds"] = str(ttl)
    if raw:
        merged["rawPayload"] = "true"
    return metadata_params(merged)


class PubSubAPI:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def publish(
        self,
        pubsub: str,
        topic: str,
        data: Any,
        *,
        content_type: str | None = None,
        ttl: int | None = None,
        raw: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Publish one event. ``ttl`` (seconds): subscribers never see it once expired.
        ``raw``: publish the body as-is, without a CloudEvent envelope."""
        body, kind = encode_event(data, content_type)
        response = await self._transport.request(
            "pubsub.publish",
            "POST",
            f"/v1.0/publish/{segment(pubsub)}/{_topic(topic)}",
            idempotent=False,
            content=body,
            headers={"content-type": kind},
            params=_publish_metadata(metadata, ttl, raw),
        )
        if response.status_code >= 400:
            raise error_from_response(response)

    async def publish_bulk(
        self,
        pubsub: str,
        topic: str,
        events: Iterable[Any],
        *,
        raw: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Publish several events in one call; each is a value (encoded as for
        ``publish``) or a BulkMessage. Raises BulkPublishError naming the failed entries."""
        entries = [_bulk_entry(index, event) for index, event in enumerate(events)]
        response = await self._transport.request(
            "pubsub.publish_bulk",
            "POST",
            # The alpha route: the stable one only exists from Dapr 1.17 on.
            f"/v1.0-alpha1/publish/bulk/{segment(pubsub)}/{_topic(topic)}",
            idempotent=False,
            content=encode_json(entries),
            headers=JSON,
            params=_publish_metadata(metadata, None, raw),
        )
        if response.status_code < 400:
            return
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("failedEntries"), list):
            failed = {
                str(entry.get("entryId")): str(entry.get("error", ""))
                for entry in body["failedEntries"]
                if isinstance(entry, dict)
            }
            first = next(iter(failed.values()), "")
            raise BulkPublishError(
                response.status_code, f"{len(failed)} of {len(entries)} failed: {first}", failed
            )
        raise error_from_response(response)
