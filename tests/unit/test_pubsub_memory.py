"""pubsub.in-memory: delivery, ordering, back-pressure and wildcards of the in-process broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from daprforge.sidecar.components import registry
from daprforge.sidecar.components.loader import ComponentSpec
from daprforge.sidecar.components.metadata import ComponentConfig, ComponentMetadata
from daprforge.sidecar.pubsub import memory
from daprforge.sidecar.pubsub.base import FEATURE_SUBSCRIBE_WILDCARDS, Message, PublishError
from daprforge.sidecar.pubsub.memory import InMemoryPubSub, create


class Inbox:
    """A handler that records what it receives, optionally held until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.received: list[Message] = []
        self.running = 0
        self.max_running = 0
        self._arrived = asyncio.Condition()
        self._gate = asyncio.Event()
        if not hold:
            self._gate.set()

    async def __call__(self, message: Message) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            async with self._arrived:
                self.received.append(message)
                self._arrived.notify_all()
            await self._gate.wait()
        finally:
            self.running -= 1

    def release(self) -> None:
        self._gate.set()

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.received]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(2):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.received) >= count)


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryPubSub]:
    pubsub = InMemoryPubSub()
    await pubsub.init()
    yield pubsub
    await pubsub.close()


async def settle() -> None:
    """Let every ready task run (deliveries are started in the background)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_create_ignores_metadata_and_reports_wildcards() -> None:
    pubsub = create(ComponentConfig("pubsub", ComponentMetadata({"anything": "x"})))
    assert isinstance(pubsub, InMemoryPubSub)
    assert pubsub.features == frozenset({FEATURE_SUBSCRIBE_WILDCARDS})


def test_registry_points_at_the_factory() -> None:
    spec = ComponentSpec("pubsub", "pubsub.in-memory", "v1", (), "test")
    assert registry.factory(spec) is create


async def test_delivers_data_with_the_subscription_topic_and_metadata(bus: InMemoryPubSub) -> None:
    inbox = Inbox()
    await bus.subscribe("orders", inbox, {"rawPayload": "true"})
    await bus.publish("orders", b'{"id": 1}', {"ttlInSeconds": "10"})
    await inbox.wait_for(1)
    assert inbox.received == [Message("orders", b'{"id": 1}', {"rawPayload": "true"})]


async def test_message_published_with_no_subscriber_is_lost(bus: InMemoryPubSub) -> None:
    await bus.publish("orders", b"early", {})
    inbox = Inbox()
    await bus.subscribe("orders", inbox, {})
    await bus.publish("orders", b"late", {})
    await inbox.wait_for(1)
    await settle()
    assert inbox.data == [b"late"]


async def test_other_topics_are_not_delivered(bus: InMemoryPubSub) -> None:
    inbox = Inbox()
    await bus.subscribe("orders", inbox, {})
    await bus.publish("order", b"x", {})
    await bus.publish("orders2", b"x", {})
    await settle()
    assert inbox.received == []


async def test_every_subscription_gets_every_message(bus: InMemoryPubSub) -> None:
    first, second = Inbox(), Inbox()
    await bus.subscribe("orders", first, {})
    await bus.subscribe("orders", second, {})
    for n in range(3):
        await bus.publish("orders", str(n).encode(), {})
    await first.wait_for(3)
    await second.wait_for(3)
    assert first.data == second.data == [b"0", b"1", b"2"]


async def test_publish_returns_before_the_handler_finishes(bus: InMemoryPubSub) -> None:
    inbox = Inbox(hold=True)
    await bus.subscribe("orders", inbox, {})
    async with asyncio.timeout(1):
        await bus.publish("orders", b"1", {})
    await inbox.wait_for(1)
    assert inbox.running == 1
    inbox.release()


async def test_next_publish_waits_for_the_previous_delivery(bus: InMemoryPubSub) -> None:
    inbox = Inbox(hold=True)
    await bus.subscribe("orders", inbox, {})
    await bus.publish("orders", b"1", {})
    second = asyncio.create_task(bus.publish("orders", b"2", {}))
    await asyncio.sleep(0.05)
    assert not second.done()  # back-pressure: message 1 is still being handled
    assert inbox.data == [b"1"]

    inbox.release()
    async with asyncio.timeout(1):
        await second
    await inbox.wait_for(2)
    assert inbox.max_running == 1


async def test_messages_arrive_in_publish_order_one_at_a_time(bus: InMemoryPubSub) -> None:
    received: list[int] = []
    running = 0
    done = asyncio.Event()

    async def slow(message: Message) -> None:
        nonlocal running
        running += 1
        assert running == 1
        await asyncio.sleep(0.001 * (int(message.data) % 3))
        received.append(int(message.data))
        running -= 1
        if len(received) == 50:
            done.set()

    await bus.subscribe("orders", slow, {})
    # Concurrent publishers too: each queues on the subscription in the order it arrives.
    await asyncio.gather(*(bus.publish("orders", str(n).encode(), {}) for n in range(50)))
    async with asyncio.timeout(2):
        await done.wait()
    assert received == list(range(50))


async def test_back_pressure_is_per_subscription(bus: InMemoryPubSub) -> None:
    slow, fast = Inbox(hold=True), Inbox()
    await bus.subscribe("slow", slow, {})
    await bus.subscribe("fast", fast, {})
    await bus.publish("slow", b"1", {})
    blocked = asyncio.create_task(bus.publish("slow", b"2", {}))
    async with asyncio.timeout(1):
        for n in range(3):
            await bus.publish("fast", str(n).encode(), {})
    await fast.wait_for(3)
    assert not blocked.done()
    slow.release()
    await blocked


async def test_a_slow_subscription_holds_back_publishes_to_the_others(bus: InMemoryPubSub) -> None:
    # As in daprd's event bus: publish visits the matching subscriptions in turn, so a
    # second message waits for the slow one before reaching the fast one.
    slow, fast = Inbox(hold=True), Inbox()
    await bus.subscribe("orders", slow, {})
    await bus.subscribe("orders", fast, {})
    await bus.publish("orders", b"1", {})
    second = asyncio.create_task(bus.publish("orders", b"2", {}))
    await asyncio.sleep(0.05)
    assert fast.data == [b"1"]
    slow.release()
    await second
    await fast.wait_for(2)


@pytest.mark.parametrize(
    ("pattern", "topic", "delivered"),
    [
        ("orders*", "orders.new", True),
        ("orders*", "orders/eu/new", True),
        ("orders*", "orders", False),
        ("orders*", "order", False),
        ("orders*", "orders*", True),  # the pattern itself, literally
        ("*", "anything", True),
        ("*", "", False),
        ("or*ers", "orders", False),  # only a trailing * is a wildcard
        ("orders/+", "orders/eu", False),  # no MQTT wildcards
        ("orders/#", "orders/eu", False),
        ("orders/+", "orders/+", True),
    ],
)
async def test_wildcards(bus: InMemoryPubSub, pattern: str, topic: str, delivered: bool) -> None:
    inbox = Inbox()
    await bus.subscribe(pattern, inbox, {})
    await bus.publish(topic, b"x", {})
    await settle()
    assert len(inbox.received) == int(delivered)
    if delivered:
        assert inbox.received[0].topic == pattern


async def test_wildcard_and_exact_subscriptions_both_receive(bus: InMemoryPubSub) -> None:
    exact, wildcard = Inbox(), Inbox()
    await bus.subscribe("orders.new", exact, {})
    await bus.subscribe("orders.*", wildcard, {})
    await bus.publish("orders.new", b"x", {})
    await exact.wait_for(1)
    await wildcard.wait_for(1)


async def test_failing_handler_is_retried_then_dropped(
    bus: InMemoryPubSub, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As components-contrib: up to 10 attempts, the subscription held meanwhile."""
    monkeypatch.setattr(memory, "HANDLER_RETRY_INTERVAL", 0.001)
    calls: list[bytes] = []

    async def failing(message: Message) -> None:
        calls.append(message.data)
        if message.data == b"bad":
            raise ValueError("boom")

    await bus.subscribe("orders", failing, {})
    with caplog.at_level(logging.ERROR, logger="daprforge.sidecar.pubsub.memory"):
        await bus.publish("orders", b"bad", {})
        await bus.publish("orders", b"good", {})
        await asyncio.sleep(0.05)
    assert calls == [b"bad"] * memory.HANDLER_ATTEMPTS + [b"good"]
    assert "failed 10 times" in caplog.text


async def test_close_cancels_handlers_and_refuses_publishes() -> None:
    bus = InMemoryPubSub()
    await bus.init()
    cancelled = asyncio.Event()

    async def stuck(message: Message) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await bus.subscribe("orders", stuck, {})
    await bus.publish("orders", b"1", {})
    waiting = asyncio.create_task(bus.publish("orders", b"2", {}))
    await settle()

    await bus.close()
    assert cancelled.is_set()
    with pytest.raises(PublishError):
        await waiting  # released by the cancelled delivery, then refused
    with pytest.raises(PublishError):
        await bus.publish("orders", b"3", {})
    with pytest.raises(RuntimeError):
        await bus.subscribe("orders", stuck, {})


async def test_close_releases_a_delivery_that_never_started() -> None:
    bus = InMemoryPubSub()
    inbox = Inbox()
    await bus.subscribe("orders", inbox, {})
    await bus.publish("orders", b"1", {})  # delivery task created, not yet run
    await bus.close()
    assert inbox.received == []
