"""The contract every pub/sub component implements.

A component moves opaque bytes between publishers and subscribers. Everything Dapr-specific
(the CloudEvent envelope, routing rules, retries, dead letters, TTL) is done by the sidecar
around it, exactly as daprd does around components-contrib brokers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Capability strings as reported by /v1.0/metadata (components-contrib pubsub/feature.go).
FEATURE_SUBSCRIBE_WILDCARDS = "SUBSCRIBE_WILDCARDS"


class PubSubError(Exception):
    """A pub/sub component failure."""


class PublishError(PubSubError):
    """The broker refused or failed the publish (HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the broker hands it to a subscriber."""

    topic: str
    """The subscribed topic (for a wildcard subscription, its pattern, as upstream)."""
    data: bytes
    """The bytes as published: usually the CloudEvent JSON, or the raw payload."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Broker metadata; for Redis Streams this is the publish request's metadata."""


Handler = Callable[[Message], Awaitable[None]]
"""Delivers one message. Returning means processed (ack); raising means it failed.

What a failure does is the component's own semantics, as in components-contrib: the
in-memory broker tries the handler up to 10 times, then drops the message; Redis Streams
acknowledges it anyway (Dapr ≥ 1.17) unless the handler was cancelled (shutdown), in
which case the message stays pending and is redelivered later. Resiliency retries and
dead-lettering have already happened inside the handler.
"""


class PubSub(Protocol):
    features: frozenset[str]

    async def init(self) -> None:
        """Connect; called once before publish or subscribe."""

    async def close(self) -> None:
        """Stop every subscription (in-flight handlers are cancelled) and disconnect."""

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        """Raise :class:`PublishError` when the broker cannot take the message."""

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> None:
        """Start delivering ``topic`` to ``handler`` in the background and return.

        ``metadata`` is the subscription's metadata (e.g. ``rawPayload``). Concurrency is
        bounded by the component (Redis: ``concurrency`` workers; in-memory: one message at
        a time per subscription).
        """
