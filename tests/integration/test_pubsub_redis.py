"""pubsub.redis against a real Redis: delivery guarantees, and the stream layout daprd uses.

Every test uses streams and consumer groups with a random prefix and deletes its keys after.
Redelivery is tested with a 500ms processingTimeout and a 200ms redeliverInterval. The
"raw" client reads and writes the streams directly, the way daprd would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from daprforge.sidecar.components import registry
from daprforge.sidecar.components.loader import ComponentSpec
from daprforge.sidecar.components.metadata import (
    ComponentConfig,
    ComponentConfigError,
    ComponentMetadata,
)
from daprforge.sidecar.pubsub.base import Message, PublishError
from daprforge.sidecar.pubsub.redis import RedisStreams, create, parse_settings
from tests.conftest import service_address

HOST, PORT = service_address("redis")
FAST_REDELIVERY = {"processingTimeout": "500ms", "redeliverInterval": "200"}
redis = pytest.mark.redis

Factory = Callable[..., Awaitable[RedisStreams]]


def settings(**metadata: str) -> Any:
    return parse_settings(ComponentMetadata({"redisHost": "localhost:6379", **metadata}), "app")


# -- metadata (no Redis needed) ---------------------------------------------------------------


def test_defaults_match_daprd() -> None:
    s = settings()
    assert (s.host, s.port, s.consumer_id, s.db) == ("localhost", 6379, "app", 0)
    assert (s.queue_depth, s.concurrency) == (100, 10)
    assert (s.processing_timeout, s.redeliver_interval) == (60.0, 15.0)
    assert s.redelivery
    assert s.block_ms == 0  # readTimeout unset: XREADGROUP waits indefinitely
    assert (s.read_timeout, s.write_timeout, s.dial_timeout) == (3.0, 3.0, 5.0)
    assert (s.max_len_approx, s.stream_ttl, s.max_retries) == (0, 0.0, 3)
    assert s.pool_size == 10 * (os.cpu_count() or 1)


def test_bare_numbers_are_milliseconds() -> None:
    s = settings(processingTimeout="1500", redeliverInterval="250", readTimeout="2000")
    assert (s.processing_timeout, s.redeliver_interval) == (1.5, 0.25)
    assert (s.block_ms, s.read_timeout) == (2000, 2.0)


def test_durations_and_names_are_case_insensitive() -> None:
    s = settings(PROCESSINGTIMEOUT="2m", redeliverinterval="1s", streamTTL="1h", ConsumerId="g")
    assert (s.processing_timeout, s.redeliver_interval, s.stream_ttl) == (120.0, 1.0, 3600.0)
    assert s.consumer_id == "g"


@pytest.mark.parametrize("field", ["processingTimeout", "redeliverInterval"])
def test_zero_disables_redelivery(field: str) -> None:
    assert not settings(**{field: "0"}).redelivery


def test_client_options() -> None:
    s = settings(
        readTimeout="-1",
        dialTimeout="1s",
        redisMaxRetries="-1",
        poolSize="4",
        redisDB="2",
        redisPassword="pw",
        redisUsername="me",
        enableTLS="true",
        insecureSkipTLSVerify="true",
    )
    assert (s.read_timeout, s.write_timeout, s.block_ms) == (None, None, 0)
    assert (s.dial_timeout, s.max_retries, s.pool_size, s.db) == (1.0, 0, 4, 2)
    assert (s.username, s.password, s.tls, s.tls_verify) == ("me", "pw", True, False)


@pytest.mark.parametrize(
    ("metadata", "address"),
    [
        ({"redisHost": "redis"}, ("redis", 6379)),
        ({"redisHost": "redis:6380"}, ("redis", 6380)),
        ({"redisHost": "redis", "redisPort": "6381"}, ("redis", 6381)),
        ({"redisHost": "redis:6381", "redisPort": "6381"}, ("redis", 6381)),
        ({"redisHost": "[::1]:6380"}, ("::1", 6380)),
        ({"redisHost": "::1"}, ("::1", 6379)),
    ],
)
def test_redis_host(metadata: dict[str, str], address: tuple[str, int]) -> None:
    s = parse_settings(ComponentMetadata(metadata), "app")
    assert (s.host, s.port) == address


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({}, "redisHost"),
        ({"redisHost": "a:1,b:2"}, "redisHost"),
        ({"redisHost": "redis:x"}, "redisHost"),
        ({"redisHost": "redis:6380", "redisPort": "6381"}, "redisPort"),
        ({"redisType": "cluster"}, "redisType"),
        ({"redisType": "sentinel"}, "redisType"),
        ({"failover": "true"}, "failover"),
        ({"useEntraID": "true"}, "useEntraID"),
        ({"clientCert": "-----BEGIN"}, "clientCert"),
        ({"queueDepth": "0"}, "queueDepth"),
        ({"concurrency": "zero"}, "concurrency"),
        ({"processingTimeout": "soon"}, "processingTimeout"),
        ({"redeliverInterval": "-1s"}, "redeliverInterval"),
        ({"enableTLS": "maybe"}, "enableTLS"),
        ({"maxLenApprox": "1e3"}, "maxLenApprox"),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, str], field: str) -> None:
    if field != "redisHost":
        metadata = {"redisHost": "localhost", **metadata}
    with pytest.raises(ComponentConfigError) as info:
        parse_settings(ComponentMetadata(metadata), "app")
    assert info.value.field == field


def test_consumer_id_defaults_to_the_app_id_and_is_required() -> None:
    metadata = ComponentMetadata({"redisHost": "localhost"})
    assert create(ComponentConfig("pubsub", metadata, app_id="orders")).settings.consumer_id == (
        "orders"
    )
    with pytest.raises(ComponentConfigError) as info:
        create(ComponentConfig("pubsub", metadata))
    assert info.value.field == "consumerID"


def test_registry_points_at_the_factory() -> None:
    spec = ComponentSpec("pubsub", "pubsub.redis", "v1", (), "test")
    assert registry.factory(spec) is create
    assert create(ComponentConfig("p", ComponentMetadata({"redisHost": "h"}), "a")).features == (
        frozenset()
    )


async def test_init_fails_when_redis_is_unreachable() -> None:
    metadata = ComponentMetadata({"redisHost": "127.0.0.1:1", "dialTimeout": "1s"})
    pubsub = create(ComponentConfig("p", metadata, "a"))
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1"):
        await pubsub.init()
    with pytest.raises(PublishError):
        await pubsub.publish("t", b"x", {})


# -- against Redis ----------------------------------------------------------------------------


class Inbox:
    """A handler that records deliveries; ``behaviour`` may fail or hang on purpose."""

    def __init__(self, behaviour: Callable[[Message], Awaitable[None]] | None = None) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.received: list[Message] = []
        self._behaviour = behaviour

    async def __call__(self, message: Message) -> None:
        self.received.append(message)
        await self.messages.put(message)
        if self._behaviour is not None:
            await self._behaviour(message)

    async def take(self, count: int = 1, within: float = 3.0) -> list[Message]:
        async with asyncio.timeout(within):
            return [await self.messages.get() for _ in range(count)]

    async def expect_nothing(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.messages.empty(), [m.data for m in self.received]


async def hang(message: Message) -> None:
    await asyncio.Event().wait()


@pytest.fixture
def prefix() -> str:
    return f"dft-{uuid.uuid4().hex[:10]}-"


@pytest.fixture
async def raw(prefix: str) -> AsyncIterator[Redis]:
    client = Redis(host=HOST, port=PORT)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def make(prefix: str, raw: Redis) -> AsyncIterator[Factory]:
    """Start components; every one still open is closed after the test.

    Depending on ``raw`` makes the components close before ``raw`` deletes the keys: a
    running subscription would recreate a deleted stream.
    """
    started: list[RedisStreams] = []

    async def start(**metadata: str) -> RedisStreams:
        metadata.setdefault("consumerID", f"{prefix}group")
        config = ComponentConfig(
            "pubsub", ComponentMetadata({"redisHost": f"{HOST}:{PORT}", **metadata}), "app"
        )
        pubsub = create(config)
        assert isinstance(pubsub, RedisStreams)
        await pubsub.init()
        started.append(pubsub)
        return pubsub

    yield start
    for pubsub in started:
        await pubsub.close()


async def pending(raw: Redis, stream: str, group: str) -> int:
    summary = await raw.xpending(stream, group)
    return int(summary["pending"])


async def settled_pending(raw: Redis, stream: str, group: str) -> int:
    """The pending count once in-flight acks have landed (polls for up to a second)."""
    for _ in range(100):
        count = await pending(raw, stream, group)
        if count == 0:
            break
        await asyncio.sleep(0.01)
    return count


@redis
async def test_publish_writes_data_and_metadata_as_daprd_does(
    make: Factory, raw: Redis, prefix: str
) -> None:
    pubsub = await make()
    await pubsub.publish(f"{prefix}orders", b"\x00\xffbytes", {"b": "<2>", "a": "1"})
    [(_, fields)] = await raw.xrange(f"{prefix}orders")
    # Go's encoding/json: keys sorted, no spaces, HTML characters escaped.
    assert fields == {b"data": b"\x00\xffbytes", b"metadata": b'{"a":"1","b":"\\u003c2\\u003e"}'}


@redis
async def test_round_trip_acks_the_entry(make: Factory, raw: Redis, prefix: str) -> None:
    pubsub = await make()
    inbox = Inbox()
    topic = f"{prefix}orders"
    await pubsub.subscribe(topic, inbox, {})
    await pubsub.publish(topic, b"hello", {"traceid": "t1"})
    [message] = await inbox.take()
    assert message == Message(topic, b"hello", {"traceid": "t1"})
    assert await settled_pending(raw, topic, f"{prefix}group") == 0


@redis
async def test_entry_written_by_another_publisher_without_metadata(
    make: Factory, raw: Redis, prefix: str
) -> None:
    topic = f"{prefix}orders"
    await raw.xadd(topic, {"data": b"from daprd"})
    await raw.xadd(topic, {"data": b"odd", "metadata": b"not json"})
    inbox = Inbox()
    await (await make()).subscribe(topic, inbox, {})
    first, second = await inbox.take(2)
    assert (first.data, first.metadata) == (b"from daprd", {})
    assert (second.data, second.metadata) == (b"odd", {})


@redis
async def test_acked_message_is_never_delivered_again_to_the_group(
    make: Factory, raw: Redis, prefix: str
) -> None:
    topic = f"{prefix}orders"
    first = await make(**FAST_REDELIVERY)
    inbox = Inbox()
    await first.subscribe(topic, inbox, {})
    for n in range(5):
        await first.publish(topic, str(n).encode(), {})
    assert [m.data for m in await inbox.take(5)] == [b"0", b"1", b"2", b"3", b"4"]
    assert await settled_pending(raw, topic, f"{prefix}group") == 0
    await first.close()

    second = await make(**FAST_REDELIVERY)
    again = Inbox()
    await second.subscribe(topic, again, {})
    await again.expect_nothing(wait=1.0)  # several redelivery rounds
    assert await pending(raw, topic, f"{prefix}group") == 0
    await second.publish(topic, b"5", {})
    assert [m.data for m in await again.take()] == [b"5"]


@redis
async def test_failed_handler_is_acked_and_not_redelivered(
    make: Factory, raw: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail(message: Message) -> None:
        raise ValueError("app said RETRY")

    topic = f"{prefix}orders"
    pubsub = await make(**FAST_REDELIVERY)
    inbox = Inbox(fail)
    with caplog.at_level(logging.ERROR, logger="daprforge.sidecar.pubsub.redis"):
        await pubsub.subscribe(topic, inbox, {})
        await pubsub.publish(topic, b"x", {})
        await inbox.take()
        await inbox.expect_nothing(wait=1.0)
    assert await pending(raw, topic, f"{prefix}group") == 0
    assert "app said RETRY" in caplog.text


@redis
async def test_message_in_flight_at_close_is_redelivered_after_restart(
    make: Factory, raw: Redis, prefix: str
) -> None:
    topic = f"{prefix}orders"
    first = await make(**FAST_REDELIVERY)
    stuck = Inbox(hang)
    await first.subscribe(topic, stuck, {})
    await first.publish(topic, b"important", {"k": "v"})
    await stuck.take()
    await first.close()  # cancels the handler: no ack
    assert await pending(raw, topic, f"{prefix}group") == 1

    second = await make(**FAST_REDELIVERY)
    inbox = Inbox()
    await second.subscribe(topic, inbox, {})
    [message] = await inbox.take()
    assert (message.data, message.metadata) == (b"important", {"k": "v"})
    assert await settled_pending(raw, topic, f"{prefix}group") == 0
    await inbox.expect_nothing(wait=0.8)


@redis
async def test_queued_messages_at_close_are_redelivered_after_restart(
    make: Factory, prefix: str
) -> None:
    topic = f"{prefix}orders"
    first = await make(concurrency="1", **FAST_REDELIVERY)
    stuck = Inbox(hang)
    await first.subscribe(topic, stuck, {})
    for n in range(3):
        await first.publish(topic, str(n).encode(), {})
    await stuck.take()  # 0 is being handled, 1 and 2 wait in the queue
    await asyncio.sleep(0.05)
    await first.close()

    second = await make(**FAST_REDELIVERY)
    inbox = Inbox()
    await second.subscribe(topic, inbox, {})
    assert sorted(m.data for m in await inbox.take(3)) == [b"0", b"1", b"2"]
    await inbox.expect_nothing(wait=0.8)


@redis
async def test_handler_overrunning_processing_timeout_is_redelivered(
    make: Factory, raw: Redis, prefix: str
) -> None:
    attempts = 0

    async def slow_first_time(message: Message) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(5)

    topic = f"{prefix}orders"
    pubsub = await make(**FAST_REDELIVERY)
    inbox = Inbox(slow_first_time)
    await pubsub.subscribe(topic, inbox, {})
    await pubsub.publish(topic, b"x", {})
    first, second = await inbox.take(2)
    assert first.data == second.data == b"x"
    assert await settled_pending(raw, topic, f"{prefix}group") == 0
    await inbox.expect_nothing(wait=0.8)


@redis
async def test_no_redelivery_while_this_process_still_holds_the_message(
    make: Factory, prefix: str
) -> None:
    # Each handler call finishes within processingTimeout (300ms), but the last entries
    # wait in the queue for longer than that; the redelivery loop must not hand them out
    # a second time.
    topic = f"{prefix}orders"

    async def slow(message: Message) -> None:
        if message.data == b"slow":
            await asyncio.sleep(0.25)

    pubsub = await make(concurrency="1", processingTimeout="300ms", redeliverInterval="50ms")
    inbox = Inbox(slow)
    await pubsub.subscribe(topic, inbox, {})
    for data in (b"slow", b"slow", b"waiting"):
        await pubsub.publish(topic, data, {})
    await inbox.take(3)
    await inbox.expect_nothing(wait=0.5)


@redis
async def test_redelivery_after_kill_9(make: Factory, raw: Redis, prefix: str) -> None:
    topic = f"{prefix}orders"
    child = textwrap.dedent(
        """
        import asyncio, sys
        from daprforge.sidecar.components.metadata import ComponentConfig, ComponentMetadata
        from daprforge.sidecar.pubsub.redis import create

        async def main():
            host, topic, group = sys.argv[1:4]
            metadata = ComponentMetadata({"redisHost": host, "consumerID": group})
            pubsub = create(ComponentConfig("pubsub", metadata, "app"))
            await pubsub.init()

            async def handler(message):
                print("got", message.data.decode(), flush=True)
                await asyncio.Event().wait()

            await pubsub.subscribe(topic, handler, {})
            print("ready", flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child,
        f"{HOST}:{PORT}",
        topic,
        f"{prefix}group",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(10):
            assert await process.stdout.readline() == b"ready\n"
            publisher = await make()
            await publisher.publish(topic, b"survivor", {})
            assert await process.stdout.readline() == b"got survivor\n"
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    assert await pending(raw, topic, f"{prefix}group") == 1

    restarted = await make(**FAST_REDELIVERY)
    inbox = Inbox()
    await restarted.subscribe(topic, inbox, {})
    [message] = await inbox.take()
    assert message.data == b"survivor"


@redis
async def test_new_group_gets_messages_already_in_the_stream(make: Factory, prefix: str) -> None:
    topic = f"{prefix}orders"
    publisher = await make()
    for n in range(3):
        await publisher.publish(topic, str(n).encode(), {})
    late = await make(consumerID=f"{prefix}late")
    inbox = Inbox()
    await late.subscribe(topic, inbox, {})
    assert [m.data for m in await inbox.take(3)] == [b"0", b"1", b"2"]


@redis
async def test_each_group_gets_every_message(make: Factory, prefix: str) -> None:
    topic = f"{prefix}orders"
    one, two = await make(consumerID=f"{prefix}one"), await make(consumerID=f"{prefix}two")
    inbox_one, inbox_two = Inbox(), Inbox()
    await one.subscribe(topic, inbox_one, {})
    await two.subscribe(topic, inbox_two, {})
    for n in range(5):
        await one.publish(topic, str(n).encode(), {})
    expected = [str(n).encode() for n in range(5)]
    assert [m.data for m in await inbox_one.take(5)] == expected
    assert [m.data for m in await inbox_two.take(5)] == expected


@redis
async def test_concurrency_bounds_handlers_in_progress(make: Factory, prefix: str) -> None:
    running = peak = 0

    async def busy(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.03)
        running -= 1

    topic_a, topic_b = f"{prefix}a", f"{prefix}b"
    pubsub = await make(concurrency="3")
    inbox = Inbox(busy)
    # The workers are shared by the component's subscriptions.
    await pubsub.subscribe(topic_a, inbox, {})
    await pubsub.subscribe(topic_b, inbox, {})
    for n in range(10):
        await pubsub.publish(topic_a, str(n).encode(), {})
        await pubsub.publish(topic_b, str(n).encode(), {})
    await inbox.take(20)
    assert peak == 3


@redis
async def test_max_len_approx_trims_the_stream(make: Factory, raw: Redis, prefix: str) -> None:
    topic = f"{prefix}orders"
    pubsub = await make(maxLenApprox="10")
    for _ in range(500):
        await pubsub.publish(topic, b"x", {})
    # "~" trims whole stream nodes (100 entries by default), so the length is approximate.
    assert 10 <= await raw.xlen(topic) < 200


@redis
async def test_stream_ttl_trims_old_entries(make: Factory, raw: Redis, prefix: str) -> None:
    topic = f"{prefix}orders"
    for n in range(1, 201):
        await raw.xadd(topic, {"data": b"old"}, id=f"{n}-0")  # written in 1970
    pubsub = await make(streamTTL="1h")
    await pubsub.publish(topic, b"new", {})
    assert await raw.xlen(topic) < 100
    [(_, fields)] = await raw.xrevrange(topic, count=1)
    assert fields[b"data"] == b"new"


@redis
async def test_subscription_survives_the_stream_being_deleted(
    make: Factory, raw: Redis, prefix: str
) -> None:
    topic = f"{prefix}orders"
    pubsub = await make(readTimeout="100ms")
    inbox = Inbox()
    await pubsub.subscribe(topic, inbox, {})
    await raw.delete(topic)  # the group goes with it: the read loop must recreate it
    await asyncio.sleep(0.3)
    await pubsub.publish(topic, b"after", {})
    [message] = await inbox.take()
    assert message.data == b"after"


@redis
async def test_closed_component_refuses_work(make: Factory, prefix: str) -> None:
    pubsub = await make()
    await pubsub.close()
    await pubsub.close()  # idempotent
    with pytest.raises(PublishError, match="closed"):
        await pubsub.publish(f"{prefix}orders", b"x", {})
    with pytest.raises(RuntimeError, match="closed"):
        await pubsub.subscribe(f"{prefix}orders", Inbox(), {})
