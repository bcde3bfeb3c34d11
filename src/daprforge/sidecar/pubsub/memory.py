"""``pubsub.in-memory``: a broker inside the sidecar process, as components-contrib's.

Behaviour taken from components-contrib ``pubsub/in-memory/in-memory.go`` and the event bus
under it (``common/eventbus/event_bus.go``, created with wildcards on and subscriptions
"async, transactional"):

- nothing is stored: a message published while nobody subscribes to its topic is lost;
- every subscription whose topic matches gets its own copy of each message;
- delivery is asynchronous, but serialised per subscription: ``publish`` waits until the
  previous delivery to a subscription has finished before starting the next one there, so a
  slow subscriber holds its publishers back and sees its messages in publish order;
- the handler gets the *subscription's* topic and metadata, not the publisher's (the
  publish metadata is dropped);
- a wildcard is a trailing ``*``: subscribing to ``orders*`` receives ``orders.new`` and
  ``orders/eu`` but not ``orders`` itself. The bus knows no other wildcard (no MQTT
  ``+``/``#``): a topic with any other character in it is matched literally;
- a handler failure is logged, and the message is not delivered again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from daprforge.sidecar.components.metadata import ComponentConfig
from daprforge.sidecar.pubsub.base import (
    FEATURE_SUBSCRIBE_WILDCARDS,
    Handler,
    Message,
    PublishError,
    PubSub,
)

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Subscription:
    topic: str
    handler: Handler
    metadata: Mapping[str, str]
    # Held from the start of a delivery until the handler returns. asyncio.Lock wakes its
    # waiters first-in first-out, which is what keeps messages in publish order.
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    def matches(self, topic: str) -> bool:
        """The event bus's rule: the exact topic, or a prefix ending in ``*``."""
        if topic == self.topic:
            return True
        if not self.topic.endswith("*"):
            return False
        prefix = self.topic[:-1]
        return topic.startswith(prefix) and topic != prefix


HANDLER_ATTEMPTS = 10
HANDLER_RETRY_INTERVAL = 0.1


class InMemoryPubSub:
    features: frozenset[str] = frozenset({FEATURE_SUBSCRIBE_WILDCARDS})

    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._closed = False

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        self._subscriptions.clear()
        # A cancelled delivery still releases its subscription's lock, which lets any
        # publisher waiting on it go on and find the component closed.
        deliveries = list(self._deliveries)
        for task in deliveries:
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        for subscription in self._matching(topic):
            await subscription.busy.acquire()
            if self._closed:
                subscription.busy.release()
                raise PublishError("component is closed")
            message = Message(subscription.topic, bytes(data), dict(subscription.metadata))
            task = asyncio.get_running_loop().create_task(
                self._deliver(subscription, message), name=f"daprforge-in-memory-{topic}"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            # Released by a callback, not in _deliver: a task cancelled before it starts
            # never runs its body, and the lock must be released all the same.
            task.add_done_callback(functools.partial(_release, subscription.busy))

    def _matching(self, topic: str) -> list[_Subscription]:
        """A snapshot: a subscription added while publish waits gets the next message only."""
        if self._closed:
            raise PublishError("component is closed")
        return [s for s in self._subscriptions if s.matches(topic)]

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> None:
        if self._closed:
            raise RuntimeError("component is closed")
        self._subscriptions.append(_Subscription(topic, handler, dict(metadata)))

    async def _deliver(self, subscription: _Subscription, message: Message) -> None:
        # As components-contrib's in-memory broker: a failing handler is tried again up to
        # HANDLER_ATTEMPTS times, 100 ms apart, while the subscription waits; then dropped.
        for attempt in range(1, HANDLER_ATTEMPTS + 1):
            try:
                await subscription.handler(message)
                return
            except Exception as exc:
                if attempt == HANDLER_ATTEMPTS:
                    logger.error(
                        "pubsub.in-memory: handler for topic %r failed %d times, "
                        "message dropped: %s",
                        subscription.topic,
                        attempt,
                        exc,
                    )
                    return
                await asyncio.sleep(HANDLER_RETRY_INTERVAL)


def _release(lock: asyncio.Lock, _: asyncio.Task[None]) -> None:
    lock.release()


def create(config: ComponentConfig) -> PubSub:
    """The in-memory broker takes no metadata (daprd ignores any it is given, and so do we)."""
    return InMemoryPubSub()
