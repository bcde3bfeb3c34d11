"""Delivering broker messages to the app, with daprd's response semantics.

The app's answer decides: 2xx with no ``status`` (or SUCCESS) acks; ``RETRY``, any other
status string, a transport error or a non-2xx/404 code is retriable; ``DROP`` and 404 drop
the message (to the dead-letter topic when one is set). Retries happen only under a
Resiliency policy for the component's inbound direction; once they are used up the message
goes to the dead-letter topic, or the failure goes back to the component.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from daprforge.sidecar.app_channel import AppChannel
from daprforge.sidecar.pubsub import envelope
from daprforge.sidecar.pubsub.base import Handler, Message
from daprforge.sidecar.pubsub.match import find_route
from daprforge.sidecar.pubsub.subscriptions import Subscription
from daprforge.sidecar.resiliency import InboundPolicy

log = logging.getLogger("daprforge.sidecar.pubsub")

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Publish = Callable[[str, str, bytes, Mapping[str, str]], Awaitable[None]]
"""(pubsub, topic, data, metadata): publishes bytes as they are, for dead letters."""


class Outcome(enum.Enum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class DeliveryFailedError(Exception):
    """Retries are used up and there is no dead-letter topic."""


def read_outcome(status: int, content: bytes) -> Outcome:
    """daprd's reading of the app's answer to an event (case-sensitive statuses)."""
    if status == 404:
        log.error("app returned 404 for an event: dropping it")
        return Outcome.DROP
    if not 200 <= status < 300:
        return Outcome.RETRY
    if not content.strip():
        return Outcome.SUCCESS
    try:
        body = json.loads(content)
    except ValueError:
        return Outcome.SUCCESS  # not JSON: success, as daprd (debug log only)
    if not isinstance(body, dict):
        return Outcome.SUCCESS
    value = body.get("status")
    if value is None or value == "" or not isinstance(value, str):
        return Outcome.SUCCESS
    if value in ("SUCCESS", "RETRY", "DROP"):
        return Outcome(value)
    log.warning("unknown status %r from the app: the event will be retried", value)
    return Outcome.RETRY


def _headers(message: Message, event: Mapping[str, Any], pubsub: str) -> dict[str, str]:
    headers = {
        name: value
        for name, value in message.metadata.items()
        if _HEADER_NAME.match(name) and name.lower() != "content-length"
    }
    headers["pubsubName"] = pubsub
    headers["content-type"] = "application/cloudevents+json"
    parent = event.get("traceparent") or event.get("traceid")
    headers["traceparent"] = envelope.child_traceparent(parent if isinstance(parent, str) else None)
    state = event.get("tracestate")
    if isinstance(state, str) and state:
        headers["tracestate"] = state
    return headers


class Deliverer:
    def __init__(self, channel: AppChannel, publish: Publish, policy: InboundPolicy) -> None:
        self.channel = channel
        self.publish = publish
        self.policy = policy

    def handler(self, subscription: Subscription) -> Handler:
        async def handle(message: Message) -> None:
            await self.deliver(subscription, message)

        return handle

    async def deliver(self, subscription: Subscription, message: Message) -> None:
        if subscription.raw_payload:
            wrapper = envelope.from_raw_payload(
                message.data, pubsub=subscription.pubsub, topic=message.topic
            )
            body, event = envelope.encode(wrapper), wrapper
        else:
            body = message.data
            try:
                event = json.loads(message.data)
                if not isinstance(event, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                log.error("event on %s is not a CloudEvent (%s)", message.topic, exc)
                await self._dead_letter_or_fail(subscription, message, "not a CloudEvent")
                return
        if envelope.has_expired(event):
            log.warning("event %s on %s expired before delivery", event.get("id"), message.topic)
            await self._dead_letter(subscription, message)
            return
        path = find_route(list(subscription.rules), event)
        if path is None:
            log.debug("no route matched event %s on %s: dropped", event.get("id"), message.topic)
            await self._dead_letter(subscription, message)
            return
        headers = _headers(message, event, subscription.pubsub)
        delays = self.policy.retry.delays() if self.policy.retry else iter(())
        while True:
            outcome = await self._attempt(path, body, headers)
            if outcome is Outcome.SUCCESS:
                return
            if outcome is Outcome.DROP:
                log.warning("app dropped event %s on %s", event.get("id"), message.topic)
                await self._dead_letter(subscription, message)
                return
            delay = next(delays, None)
            if delay is None:
                break
            await asyncio.sleep(delay)
        await self._dead_letter_or_fail(subscription, message, "delivery failed")

    async def _attempt(self, path: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            status, content = await self.channel.post_event(
                path, body, headers, self.policy.timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not deliver to the app at %s: %s", path, exc or "timed out")
            return Outcome.RETRY
        return read_outcome(status, content)

    async def _dead_letter(self, subscription: Subscription, message: Message) -> None:
        if not subscription.dead_letter_topic:
            return
        # The original broker bytes and metadata, on the same component (30 s, as daprd).
        await asyncio.wait_for(
            self.publish(
                subscription.pubsub,
                subscription.dead_letter_topic,
                message.data,
                message.metadata,
            ),
            30,
        )

    async def _dead_letter_or_fail(
        self, subscription: Subscription, message: Message, reason: str
    ) -> None:
        if subscription.dead_letter_topic:
            await self._dead_letter(subscription, message)
            return
        raise DeliveryFailedError(f"{reason} for a message on {message.topic}")
