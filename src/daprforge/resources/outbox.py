"""Change events that are never lost once their write committed: a transactional outbox
over the Dapr state API.

Every write puts its event in the state store as an outbox record, in the same state
transaction as the change itself: either both are stored or neither is. After the commit,
the :class:`EventRelay` (one background task per app) publishes pending events, in bulk
when several are waiting, and then deletes their records. A publish that fails is logged
and retried with capped exponential back-off for as long as the process runs; it never
turns the client's successful write into an error.

If the process stops before an event went out, its record is still in the store.
:meth:`EventRelay.sweep` finds such records (soon after start-up, then periodically) and
publishes them: by a state query where the store has the query API (PostgreSQL v1 in
production), else through the index buckets, which list pending event ids (see
store.py). Delivery is therefore at least once: a crash between publishing and deleting
a record publishes it again, with the same CloudEvent ``id`` so subscribers can
de-duplicate (the ``Idempotency`` of ``daprforge.events`` does exactly that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daprforge.client import BulkMessage, BulkPublishError, CloudEvent, DaprClient, Delete
from daprforge.client.transport import backoff
from daprforge.resources.models import format_timestamp, now

log = logging.getLogger("daprforge.resources")

FORGOTTEN = 10_000


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One change event: ``type`` is ``<resource>.created|updated|deleted``."""

    id: str
    type: str
    subject: str
    data: dict[str, Any]
    key: str
    """The outbox record's state key."""
    created_at: datetime = field(default_factory=now)

    def record(self, marker: str) -> dict[str, Any]:
        """The stored outbox record; ``marker`` lets a query find this app's records."""
        return {
            "outbox": marker,
            "created_at": format_timestamp(self.created_at),
            "event": {"id": self.id, "type": self.type, "subject": self.subject, "data": self.data},
        }

    @classmethod
    def from_record(cls, key: str, record: Any) -> OutboxEvent | None:
        try:
            event = record["event"]
            return cls(
                id=str(event["id"]),
                type=str(event["type"]),
                subject=str(event["subject"]),
                data=dict(event["data"]),
                key=key,
                created_at=datetime.fromisoformat(str(record["created_at"]).replace("Z", "+00:00")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def cloud_event(self, source: str) -> CloudEvent[dict[str, Any]]:
        return CloudEvent(
            id=self.id,
            source=source,
            type=self.type,
            subject=self.subject,
            datacontenttype="application/json",
            data=self.data,
        )


class EventRelay:
    """Publishes committed outbox events and deletes their records; see the module doc."""

    def __init__(
        self,
        dapr: DaprClient,
        *,
        state_store: str,
        pubsub: str,
        topic: str,
        source: str,
        marker: str,
        batch_size: int = 100,
        max_backoff: float = 30.0,
        sweep_interval: float = 60.0,
        sweep_grace: float = 30.0,
    ) -> None:
        self.dapr = dapr
        self.state_store = state_store
        self.pubsub = pubsub
        self.topic = topic
        self.source = source
        self.marker = marker
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.sweep_interval = sweep_interval
        self.sweep_grace = sweep_grace
        self.published = 0
        self.failures = 0
        self._queue: list[OutboxEvent] = []
        self._known: set[str] = set()  # ids queued or being published by this process
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.finder: Callable[[], Awaitable[list[OutboxEvent]]] = self.query_records
        self.forgotten: OrderedDict[str, None] = OrderedDict()
        """Ids of events published and whose records are deleted (the latest ones)."""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, *, sweep: bool = False) -> None:
        """Start publishing; with ``sweep``, also look for records a stopped process left
        (needs the state store's query API)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="daprforge-event-relay")
        if sweep and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="daprforge-sweep")

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Give pending events ``timeout`` seconds to go out, then stop. What is left stays
        in the store for the next sweep."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.drained()
        if self._queue:
            log.warning(
                "stopping with %d unpublished events; their outbox records stay in the store",
                len(self._queue),
            )
        for task in (self._task, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sweeper = None

    async def drained(self) -> None:
        """Wait until every event submitted so far is published (tests, shutdown)."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # --- submitting -----------------------------------------------------------------------

    def submit(self, events: Sequence[OutboxEvent]) -> None:
        """Queue committed events; returns at once."""
        fresh = [event for event in events if event.id not in self._known]
        if not fresh:
            return
        self._known.update(event.id for event in fresh)
        self._queue.extend(fresh)
        self._idle.clear()
        self._wakeup.set()

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        streak = 0  # consecutive failed rounds
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self.batch_size]
            del self._queue[: len(batch)]
            sent, failed = await self._publish(batch)
            if sent:
                await self._forget(sent)
            if failed:
                self._queue[:0] = failed  # first again, in order
                self.failures += 1
                # Jittered, capped exponential back-off: a broker outage is not hammered.
                await asyncio.sleep(backoff(streak, cap=self.max_backoff))
                streak += 1
            else:
                streak = 0

    async def _publish(
        self, batch: list[OutboxEvent]
    ) -> tuple[list[OutboxEvent], list[OutboxEvent]]:
        """(published, failed)."""
        try:
            if len(batch) == 1:
                await self.dapr.pubsub.publish(
                    self.pubsub, self.topic, batch[0].cloud_event(self.source)
                )
            else:
                await self.dapr.pubsub.publish_bulk(
                    self.pubsub,
                    self.topic,
                    [BulkMessage(e.cloud_event(self.source), entry_id=e.id) for e in batch],
                )
        except BulkPublishError as exc:
            failed = [e for e in batch if e.id in exc.failed_entries]
            log.warning(
                "publishing %d of %d events to %s failed; retrying: %s",
                len(failed),
                len(batch),
                self.topic,
                exc,
            )
            return [e for e in batch if e.id not in exc.failed_entries], failed
        except Exception as exc:  # any failure: the events stay queued and their records stored
            log.warning(
                "publishing %d events to %s failed; retrying: %s", len(batch), self.topic, exc
            )
            return [], batch
        self.published += len(batch)
        return batch, []

    async def _forget(self, sent: list[OutboxEvent]) -> None:
        try:
            if len(sent) == 1:
                await self.dapr.state.delete(self.state_store, sent[0].key)
            else:
                await self.dapr.state.transaction(
                    self.state_store, [Delete(event.key) for event in sent]
                )
        except Exception as exc:
            # Published but still recorded: a sweep publishes them again (same ids).
            log.warning("could not delete %d published outbox records: %s", len(sent), exc)
        else:
            for event in sent:
                self.forgotten[event.id] = None
            while len(self.forgotten) > FORGOTTEN:
                self.forgotten.popitem(last=False)
        finally:
            self._known.difference_update(event.id for event in sent)

    # --- recovery -------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Queue the outbox records older than ``sweep_grace`` that this process does not
        know (left by a process that stopped); returns how many. ``finder`` lists the
        records (default: a state query, which needs the query API)."""
        cutoff = now() - timedelta(seconds=self.sweep_grace)
        found = [
            event
            for event in await self.finder()
            # Published and forgotten while the finder ran: not to be sent again.
            if event.created_at < cutoff
            and event.id not in self._known
            and event.id not in self.forgotten
        ]
        if found:
            log.info("re-publishing %d events left in the outbox", len(found))
            self.submit(found)
        return len(found)

    async def query_records(self) -> list[OutboxEvent]:
        """Every outbox record of this resource, by a state query."""
        found: list[OutboxEvent] = []
        token: str | None = None
        while True:
            page: dict[str, Any] = {"limit": 200}
            if token:
                page["token"] = token
            result = await self.dapr.state.query(
                self.state_store, {"filter": {"EQ": {"outbox": self.marker}}, "page": page}
            )
            for item in result.items:
                event = OutboxEvent.from_record(item.key, item.value)
                if event is not None:
                    found.append(event)
            if not result.items or not result.token:
                return found
            token = result.token

    async def _sweep_forever(self) -> None:
        await asyncio.sleep(min(self.sweep_grace, self.sweep_interval))
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("outbox sweep failed: %s", exc)
            await asyncio.sleep(self.sweep_interval)
