"""``pubsub.redis``: Redis Streams, data-compatible with daprd's component.

daprd and this component can share a Redis: same stream per topic, same entry fields, same
consumer group per app, so either can publish and either can consume. Facts come from
components-contrib ``pubsub/redis/redis.go`` and ``common/component/redis/{redis,settings}.go``.

- Publishing is ``XADD <topic> * data <bytes> metadata <JSON object>``, trimmed with
  ``MAXLEN ~ maxLenApprox`` when set, else ``MINID ~ <now - streamTTL>`` when set.
- Each subscription reads with ``XREADGROUP GROUP <consumerID> <consumerID> COUNT queueDepth
  BLOCK readTimeout STREAMS <topic> >``; the group is created at ``0`` (so a new group gets
  the whole stream) and the consumer is named after the group, as in daprd.
- Entries go through one in-process queue of ``queueDepth`` to ``concurrency`` workers,
  shared by every subscription of the component.
- An entry is ``XACK``ed once its handler returns, and also when it raises (Dapr 1.17+:
  retries and dead-lettering have already happened inside the handler). It is *not* acked
  when the handler is cancelled (shutdown) or overruns ``processingTimeout``: it stays
  pending and the redelivery loop (``XPENDING`` + ``XCLAIM`` every ``redeliverInterval``,
  for entries idle at least ``processingTimeout``) hands it out again, in this process or
  in the next one to start with the same ``consumerID``.

Two departures from daprd, both to avoid needless duplicates: the redelivery loop skips
entries that this process is still holding (queued or being handled), and pages through
the whole pending list instead of stopping at the first page with nothing to claim.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT, StreamIdT

from daprforge.sidecar import gojson
from daprforge.sidecar.components.metadata import (
    ComponentConfig,
    ComponentConfigError,
    ComponentMetadata,
)
from daprforge.sidecar.pubsub.base import Handler, Message, PublishError, PubSub

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORT = 6379
DEFAULT_QUEUE_DEPTH = 100
DEFAULT_CONCURRENCY = 10
DEFAULT_PROCESSING_TIMEOUT = 60.0
DEFAULT_REDELIVER_INTERVAL = 15.0
# go-redis defaults, which daprd inherits when the metadata leaves a field unset.
DEFAULT_DIAL_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 3.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_MIN_RETRY_INTERVAL = 0.008
DEFAULT_MAX_RETRY_INTERVAL = 0.512
BLOCKING_READ_MARGIN = 10.0
"""Seconds a blocking XREADGROUP may overrun its BLOCK time before we give up on the
connection (go-redis allows the same)."""
READ_ERROR_PAUSE = 1.0
"""Seconds between attempts while reading a stream fails (e.g. Redis is down), so that an
outage produces a log line a second rather than a hot loop."""

# Features the metadata may ask for that this component cannot provide.
_UNSUPPORTED_FLAGS = ("failover", "useEntraID", "useAzureAD", "useOIDC")
_UNSUPPORTED_VALUES = ("clientCert", "clientKey")
# go-redis connection tuning with no redis-py equivalent: checked, then ignored.
_IGNORED_DURATIONS = ("maxConnAge", "idleTimeout", "idleCheckFrequency")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Validated component metadata. Durations are seconds; ``None`` means no limit."""

    host: str
    port: int
    consumer_id: str
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_verify: bool = True
    queue_depth: int = DEFAULT_QUEUE_DEPTH
    concurrency: int = DEFAULT_CONCURRENCY
    max_len_approx: int = 0
    """Trim streams to about this many entries on publish; 0 means unbounded."""
    stream_ttl: float = 0.0
    """Trim entries older than this on publish (when max_len_approx is 0); 0 means never."""
    processing_timeout: float = DEFAULT_PROCESSING_TIMEOUT
    redeliver_interval: float = DEFAULT_REDELIVER_INTERVAL
    read_timeout: float | None = DEFAULT_READ_TIMEOUT
    write_timeout: float | None = DEFAULT_READ_TIMEOUT
    block_ms: int = 0
    """XREADGROUP's BLOCK: ``readTimeout`` if set, else 0 (wait for entries indefinitely)."""
    dial_timeout: float | None = DEFAULT_DIAL_TIMEOUT
    pool_size: int = 10
    pool_timeout: float | None = DEFAULT_READ_TIMEOUT + 1
    max_retries: int = DEFAULT_MAX_RETRIES
    min_retry_interval: float = DEFAULT_MIN_RETRY_INTERVAL
    max_retry_interval: float = DEFAULT_MAX_RETRY_INTERVAL

    @property
    def redelivery(self) -> bool:
        """Both settings non-zero turn on the processing timeout and the redelivery loop."""
        return self.processing_timeout > 0 and self.redeliver_interval > 0

    @property
    def block_deadline(self) -> float | None:
        return self.block_ms / 1000 + BLOCKING_READ_MARGIN if self.block_ms else None


def parse_settings(metadata: ComponentMetadata, app_id: str = "") -> RedisSettings:
    """Validate ``metadata`` as daprd does; raise ComponentConfigError. Does no I/O."""
    for flag in _UNSUPPORTED_FLAGS:
        if metadata.boolean(flag):
            raise ComponentConfigError(flag, "is not supported by the daprforge sidecar")
    for name in _UNSUPPORTED_VALUES:
        if metadata.first(name):
            raise ComponentConfigError(name, "is not supported by the daprforge sidecar")
    redis_type = (metadata.first("redisType") or "node").strip().lower()
    if redis_type == "cluster":
        raise ComponentConfigError("redisType", "cluster is not supported by the daprforge sidecar")
    if redis_type != "node":
        raise ComponentConfigError("redisType", f"must be node or cluster, not {redis_type!r}")
    for name in _IGNORED_DURATIONS:
        metadata.duration(name, default=0.0, bare_unit="ms")
    metadata.integer("minIdleConns", 0)

    host, port = _parse_address(metadata.require("redisHost"), metadata.integer("redisPort", 0))
    # daprd's runtime fills in the app id before the component sees the metadata; we do the
    # same here in case the caller did not.
    consumer_id = metadata.first("consumerID") or app_id
    if not consumer_id:
        raise ComponentConfigError("consumerID", "is required when the app has no id")

    read_timeout = _client_timeout(metadata, "readTimeout", DEFAULT_READ_TIMEOUT)
    block = metadata.duration("readTimeout", default=0.0, bare_unit="ms")
    write_timeout = _client_timeout(metadata, "writeTimeout", read_timeout)
    pool_timeout = _client_timeout(
        metadata, "poolTimeout", read_timeout + 1 if read_timeout is not None else 30.0
    )
    pool_size = metadata.integer("poolSize", 0)
    if pool_size < 0:
        raise ComponentConfigError("poolSize", "must not be negative")

    # go-redis: 0 means the default, -1 means none.
    max_retries = metadata.integer("redisMaxRetries", 0)
    max_retries = DEFAULT_MAX_RETRIES if max_retries == 0 else max(max_retries, 0)

    return RedisSettings(
        host=host,
        port=port,
        consumer_id=consumer_id,
        username=metadata.first("redisUsername"),
        password=metadata.first("redisPassword"),
        db=metadata.integer("redisDB", 0),
        tls=metadata.boolean("enableTLS"),
        tls_verify=not metadata.boolean("insecureSkipTLSVerify"),
        queue_depth=_positive(metadata, "queueDepth", DEFAULT_QUEUE_DEPTH),
        concurrency=_positive(metadata, "concurrency", DEFAULT_CONCURRENCY),
        max_len_approx=max(metadata.integer("maxLenApprox", 0), 0),
        stream_ttl=_non_negative(metadata, "streamTTL", 0.0),
        processing_timeout=_non_negative(metadata, "processingTimeout", DEFAULT_PROCESSING_TIMEOUT),
        redeliver_interval=_non_negative(metadata, "redeliverInterval", DEFAULT_REDELIVER_INTERVAL),
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        block_ms=max(int(block * 1000), 0),
        dial_timeout=_client_timeout(metadata, "dialTimeout", DEFAULT_DIAL_TIMEOUT),
        pool_size=pool_size or 10 * (os.cpu_count() or 1),
        pool_timeout=pool_timeout,
        max_retries=max_retries,
        min_retry_interval=_backoff(metadata, "redisMinRetryInterval", DEFAULT_MIN_RETRY_INTERVAL),
        max_retry_interval=_backoff(metadata, "redisMaxRetryInterval", DEFAULT_MAX_RETRY_INTERVAL),
    )


def _parse_address(address: str, port: int) -> tuple[str, int]:
    """Split ``host[:port]`` as daprd does; a separate ``redisPort`` must agree with it."""
    address = address.strip()
    if "," in address:
        raise ComponentConfigError(
            "redisHost", "several hosts need redisType cluster, which is not supported"
        )
    if not 0 <= port <= 65535:
        raise ComponentConfigError("redisPort", f"{port} is not a valid port")
    host, text = address, ""
    if address.startswith("["):  # [IPv6]:port
        host, _, rest = address[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ComponentConfigError("redisHost", f"{address!r} is not host:port")
        text = rest[1:]
    elif address.count(":") == 1:
        host, _, text = address.partition(":")
    if not host:
        raise ComponentConfigError("redisHost", f"{address!r} has no host name")
    if not text:
        return host, port or DEFAULT_PORT
    if not text.isdigit() or int(text) > 65535:
        raise ComponentConfigError("redisHost", f"{address!r} has an invalid port")
    if port and port != int(text):
        raise ComponentConfigError(
            "redisPort", f"redisHost {address!r} already has port {text}, but redisPort is {port}"
        )
    return host, int(text)


def _client_timeout(metadata: ComponentMetadata, name: str, default: float | None) -> float | None:
    """go-redis semantics: unset or 0 means the default, negative means no timeout."""
    value = metadata.duration(name, default=0.0, bare_unit="ms")
    if value < 0:
        return None
    return value or default


def _backoff(metadata: ComponentMetadata, name: str, default: float) -> float:
    value = metadata.duration(name, default=0.0, bare_unit="ms")
    return 0.0 if value < 0 else value or default


def _non_negative(metadata: ComponentMetadata, name: str, default: float) -> float:
    # daprd reads a bare number as milliseconds here, for backwards compatibility.
    value = metadata.duration(name, default=default, bare_unit="ms")
    if value < 0:
        raise ComponentConfigError(name, "must not be negative")
    return value


def _positive(metadata: ComponentMetadata, name: str, default: int) -> int:
    value = metadata.integer(name, default)
    if value < 1:
        raise ComponentConfigError(name, "must be at least 1")
    return value


@dataclass(frozen=True, slots=True)
class _Delivery:
    stream: str
    entry_id: str
    message: Message
    handler: Handler


class RedisStreams:
    features: frozenset[str] = frozenset()

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._client: Redis | None = None
        self._pool: BlockingConnectionPool | None = None
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue(settings.queue_depth)
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks: set[asyncio.Task[None]] = set()
        # (stream, entry id) of every entry queued or being handled here, which the
        # redelivery loop must leave alone.
        self._holding: set[tuple[str, str]] = set()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def init(self) -> None:
        if self._closed or self._client is not None:
            raise RuntimeError("init() may be called once, before close()")
        s = self.settings
        pool = _make_pool(s)
        client = Redis(connection_pool=pool)
        try:
            await _limit(client.ping(), s.dial_timeout)
        except BaseException as exc:
            # Also on cancellation (an init timeout): nobody will call close() for us.
            await pool.disconnect()
            if isinstance(exc, Exception):
                raise ConnectionError(
                    f"redis streams: error connecting to redis at {s.host}:{s.port}: "
                    f"{_describe(exc)}"
                ) from exc
            raise
        self._pool, self._client = pool, client
        for n in range(s.concurrency):
            self._start(self._work(), f"daprforge-redis-worker-{n}")

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Acks of handlers that had finished are let through, so that their entries are
        # not redelivered for nothing; each is bounded by the read timeout.
        await asyncio.gather(*self._acks, return_exceptions=True)
        if self._pool is not None:
            await self._pool.disconnect()
        self._client = self._pool = None

    # -- publish and subscribe ------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        client = self._open(PublishError)
        s = self.settings
        fields: dict[FieldT, EncodableT] = {
            "data": bytes(data),
            "metadata": gojson.encode(dict(metadata)),
        }
        trim: dict[str, Any] = {}
        if s.max_len_approx > 0:
            trim = {"maxlen": s.max_len_approx, "approximate": True}
        elif s.stream_ttl > 0:
            # Entry ids start with their creation time in Unix milliseconds.
            min_ms = int((time.time() - s.stream_ttl) * 1000)
            trim = {"minid": f"{min_ms}-1", "approximate": True}
        try:
            await _limit(client.xadd(topic, fields, **trim), s.write_timeout)
        except Exception as exc:
            raise PublishError(f"redis streams: error from publish: {_describe(exc)}") from exc

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> None:
        """Subscription metadata is not used: the consumer group is the component's."""
        self._open(RuntimeError)
        await self._create_group(topic)
        self._start(self._read_loop(topic, handler), f"daprforge-redis-read-{topic}")
        if self.settings.redelivery:
            self._start(self._reclaim_loop(topic, handler), f"daprforge-redis-reclaim-{topic}")

    # -- reading --------------------------------------------------------------------------

    async def _create_group(self, stream: str) -> None:
        client = self._connected()
        group = self.settings.consumer_id
        try:
            await _limit(
                client.xgroup_create(stream, group, id="0", mkstream=True),
                self.settings.write_timeout,
            )
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _read_loop(self, stream: str, handler: Handler) -> None:
        s = self.settings
        group = s.consumer_id
        while True:
            try:
                # Typed loosely: redis-py's own response types differ between its versions.
                reply: Any = await _limit(
                    self._connected().xreadgroup(
                        group, group, {stream: ">"}, count=s.queue_depth, block=s.block_ms
                    ),
                    s.block_deadline,
                )
            except Exception as exc:
                await self._read_failed(stream, exc)
                continue
            for _, entries in reply or ():
                await self._enqueue(stream, entries, handler)

    async def _read_failed(self, stream: str, exc: Exception) -> None:
        if isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP"):
            # The stream or group is gone (data loss on the server, or deleted by hand).
            logger.warning(
                "redis streams: consumer group %r does not exist for stream %r; recreating it",
                self.settings.consumer_id,
                stream,
            )
            try:
                await self._create_group(stream)
                return
            except Exception as create_exc:
                exc = create_exc
        logger.error("redis streams: error reading from stream %r: %s", stream, _describe(exc))
        await asyncio.sleep(READ_ERROR_PAUSE)

    async def _reclaim_loop(self, stream: str, handler: Handler) -> None:
        while True:
            try:
                await self._reclaim(stream, handler)
            except Exception as exc:
                logger.error(
                    "redis streams: error redelivering pending entries of %r: %s",
                    stream,
                    _describe(exc),
                )
            await asyncio.sleep(self.settings.redeliver_interval)

    async def _reclaim(self, stream: str, handler: Handler) -> None:
        """Claim and requeue every entry pending for at least processingTimeout."""
        s = self.settings
        group = s.consumer_id
        min_idle = int(s.processing_timeout * 1000)
        start = "-"
        while True:
            client = self._connected()
            pending: list[Any] = await _limit(
                client.xpending_range(stream, group, min=start, max="+", count=s.queue_depth),
                s.read_timeout,
            )
            if not pending:
                return
            ids: list[StreamIdT] = []
            for entry in pending:
                entry_id = _text(entry["message_id"])
                if entry["time_since_delivered"] >= min_idle and (stream, entry_id) not in (
                    self._holding
                ):
                    ids.append(entry_id)
            if ids:
                # XCLAIM re-checks the idle time, so an entry that another process claimed
                # in the meantime is left to it. Entries deleted from the stream (trimmed)
                # are dropped from the pending list by Redis 7 and not returned.
                claimed: list[Any] = await _limit(
                    client.xclaim(stream, group, group, min_idle, ids), s.read_timeout
                )
                await self._enqueue(stream, claimed, handler)
            if len(pending) < s.queue_depth:
                return
            start = _next_id(_text(pending[-1]["message_id"]))

    async def _enqueue(self, stream: str, entries: Sequence[Any], handler: Handler) -> None:
        deliveries = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            if not fields:
                # Redis 6 answers XCLAIM with an empty entry for one deleted from the stream;
                # acking it is the only way to get it off the pending list.
                await self._ack(stream, entry_id)
                continue
            deliveries.append(_Delivery(stream, entry_id, _message(stream, fields), handler))
        # Mark the whole batch first: while we wait for room in the queue, the redelivery
        # loop must not take the rest of it for abandoned entries.
        self._holding.update((stream, d.entry_id) for d in deliveries)
        for n, delivery in enumerate(deliveries):
            try:
                await self._queue.put(delivery)
            except BaseException:
                self._holding.difference_update((stream, d.entry_id) for d in deliveries[n:])
                raise

    # -- processing -----------------------------------------------------------------------

    async def _work(self) -> None:
        # Checking _closed too: a handler that swallows its cancellation must not leave the
        # worker running (and close() waiting for it) forever.
        while not self._closed:
            delivery = await self._queue.get()
            try:
                await self._process(delivery)
            finally:
                self._holding.discard((delivery.stream, delivery.entry_id))

    async def _process(self, delivery: _Delivery) -> None:
        s = self.settings
        limit = s.processing_timeout if s.redelivery else None
        try:
            async with asyncio.timeout(limit) as deadline:
                await delivery.handler(delivery.message)
        except TimeoutError as exc:
            if deadline.expired():
                logger.warning(
                    "redis streams: entry %s of %r not processed within %gs; "
                    "it will be redelivered",
                    delivery.entry_id,
                    delivery.stream,
                    s.processing_timeout,
                )
                return
            self._log_failure(delivery, exc)
        except Exception as exc:
            self._log_failure(delivery, exc)
        # CancelledError (shutdown) is not caught: the entry stays pending, unacked.

        # The ack runs in its own task so that close() lets it finish rather than cutting
        # it off: the handler is done, and a lost ack would mean a needless redelivery.
        ack = asyncio.get_running_loop().create_task(self._ack(delivery.stream, delivery.entry_id))
        self._acks.add(ack)
        ack.add_done_callback(self._acks.discard)
        await asyncio.shield(ack)

    def _log_failure(self, delivery: _Delivery, exc: Exception) -> None:
        # Acked all the same (Dapr 1.17+): retries and dead-lettering were the handler's job.
        logger.error(
            "redis streams: error processing entry %s of %r (acknowledged anyway): %s",
            delivery.entry_id,
            delivery.stream,
            exc,
            exc_info=exc,
        )

    async def _ack(self, stream: str, entry_id: str) -> None:
        group = self.settings.consumer_id
        try:
            client = self._connected()
            await _limit(client.xack(stream, group, entry_id), self.settings.read_timeout)
        except Exception as exc:
            logger.error(
                "redis streams: error acknowledging entry %s of %r: %s",
                entry_id,
                stream,
                _describe(exc),
            )

    # -- helpers --------------------------------------------------------------------------

    def _open(self, error: type[Exception]) -> Redis:
        """The client, for a caller from outside: refused once close() has begun."""
        if self._closed:
            raise error("component is closed")
        if self._client is None:
            raise error("component is not initialised")
        return self._client

    def _connected(self) -> Redis:
        """The client, for our own tasks: still there while close() lets acks finish."""
        if self._client is None:
            raise RuntimeError("component is not connected")
        return self._client

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("redis streams: %s stopped: %s", task.get_name(), exc, exc_info=exc)


def _make_pool(s: RedisSettings) -> BlockingConnectionPool:
    """One pool per component, configured like daprd's go-redis client."""
    tls: dict[str, Any] = {}
    if s.tls:
        tls = {"ssl_check_hostname": s.tls_verify, "ssl_cert_reqs": "required"}
        if not s.tls_verify:
            tls["ssl_cert_reqs"] = "none"
    return BlockingConnectionPool(
        connection_class=SSLConnection if s.tls else Connection,
        max_connections=s.pool_size,
        timeout=s.pool_timeout,
        host=s.host,
        port=s.port,
        db=s.db,
        username=s.username,
        password=s.password,
        socket_connect_timeout=s.dial_timeout,
        # No socket timeout: each call sets its own deadline (_limit), because a blocking
        # XREADGROUP must be allowed to wait longer than an ordinary command.
        socket_timeout=None,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(s.max_retry_interval, s.min_retry_interval), s.max_retries),
        protocol=2,
        **tls,
    )


async def _limit(call: Awaitable[T], seconds: float | None) -> T:
    """Await ``call`` for at most ``seconds`` (None: no limit)."""
    async with asyncio.timeout(seconds):
        return await call


def _message(stream: str, fields: Mapping[bytes, bytes]) -> Message:
    metadata: dict[str, str] = {}
    raw = fields.get(b"metadata")
    if raw:
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and all(isinstance(v, str) for v in decoded.values()):
            metadata = decoded
        else:
            logger.warning("redis streams: ignoring unreadable metadata in stream %r", stream)
    return Message(stream, fields.get(b"data", b""), metadata)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _next_id(entry_id: str) -> str:
    """The smallest stream id after ``entry_id`` (XPENDING's exclusive start needs 6.2)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def create(config: ComponentConfig) -> PubSub:
    return RedisStreams(parse_settings(config.metadata, config.app_id))
