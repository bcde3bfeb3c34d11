"""``UnitOfWork``: a handler's state changes and derived events, committed with the event.

Pub/sub delivers at least once, and a handler that changes state and then records "done"
can crash in between: the change is made, the record is not, and the redelivery makes it
again. A handler that takes a ``UnitOfWork`` instead *stages* its changes::

    @events.subscribe("pubsub", "learning-events")
    async def on_event(event: CloudEvent[Activity], unit: UnitOfWork) -> None:
        progress = await unit.get(f"learner:{event.data.learner_id}", type=Progress)
        unit.put(f"learner:{event.data.learner_id}", (progress or Progress()).add(event))
        unit.publish("pubsub", "notifications", Notification(...), type="milestone")

and the router commits them in **one state transaction** together with the event's
idempotency marker: every key read carries its ETag (a key read as missing must still be
missing), and the marker is a first-write. Either all of it is written or none of it, so
an event changes state exactly once however often it is delivered, and two events
changing the same key at once never lose an update (the loser runs again on fresh data).

Derived events cannot join a state transaction, so they go into the marker (a
transactional outbox) and are published after the commit with ids derived from the
event's id; a redelivery of a done event publishes what is still pending. Subscribers
see each derived event at least once, always with the same id, so their own idempotency
makes it exactly once for them too.

Because the handler may run more than once for one event (after a conflict, or when a
done event is delivered again), everything it does must go through the unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from daprforge.client import CloudEvent, DaprClient, Delete, Upsert
from daprforge.client.codec import decode_value, to_jsonable
from daprforge.events.idempotency import is_done

T = TypeVar("T")

_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Read:
    etag: str | None
    """None: the key was missing when read."""


class AlreadyProcessedError(Exception):
    """Raised inside the handler when its first read shows the event's marker: the event
    was processed already, so the run stops there (the router acknowledges it)."""


class UnitOfWork:
    """Reads with ETags and staged writes and publishes on one state store; see the
    module docstring. The router creates one per attempt and commits it.

    ``marker``: the key of the event's idempotency marker. It is read along with the
    handler's first read (same request), so a redelivered event stops at once."""

    def __init__(
        self,
        dapr: DaprClient,
        store: str,
        event_id: str | None = None,
        marker: str | None = None,
    ) -> None:
        self.dapr = dapr
        self.store = store
        self.event_id = event_id
        self.marker = marker
        self.marker_value: dict[str, Any] | None = None
        """The marker as read: a dict when the event was processed already."""
        self.marker_read = False
        self._reads: dict[str, _Read] = {}
        self._values: dict[str, Any] = {}
        self._writes: dict[str, Upsert | Delete] = {}
        self._outbox: list[dict[str, Any]] = []

    # -- reading ----------------------------------------------------------------------------

    @overload
    async def get(self, key: str, *, type: type[T]) -> T | None: ...

    @overload
    async def get(self, key: str, *, type: None = None) -> Any: ...

    async def get(self, key: str, *, type: Any = None) -> Any:
        """The value under ``key`` (None when missing), as this unit will leave it: a key
        already put returns what was put. The commit fails if the key changes meanwhile."""
        return (await self.get_many([key], type=type))[key]

    @overload
    async def get_many(self, keys: Iterable[str], *, type: type[T]) -> dict[str, T | None]: ...

    @overload
    async def get_many(self, keys: Iterable[str], *, type: None = None) -> dict[str, Any]: ...

    async def get_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Any]:
        """Several keys in one call to the store: ``{key: value or None}``."""
        wanted = list(dict.fromkeys(keys))
        missing = [key for key in wanted if key not in self._reads and key not in self._writes]
        check_marker = bool(missing) and self.marker is not None and not self.marker_read
        if check_marker:
            assert self.marker is not None
            missing.append(self.marker)
        if len(missing) == 1:
            item = await self.dapr.state.get(self.store, missing[0], consistency="strong")
            found = {missing[0]: item}
        elif missing:
            found = await self.dapr.state.get_bulk(self.store, missing)
        else:
            found = {}
        if check_marker:
            assert self.marker is not None
            marker = found.pop(self.marker, None)
            self.marker_read = True
            value = marker.value if marker is not None else None
            if is_done(value):
                self.marker_value = value
                raise AlreadyProcessedError(self.event_id)
        for key, stored in found.items():
            if stored is not None and stored.etag is None:
                raise RuntimeError(f"state store {self.store!r} returned no ETag for {key!r}")
            self._reads[key] = _Read(stored.etag if stored is not None else None)
            self._values[key] = stored.value if stored is not None else None
        result: dict[str, Any] = {}
        for key in wanted:
            write = self._writes.get(key)
            if isinstance(write, Delete):
                result[key] = None
            elif isinstance(write, Upsert):
                result[key] = decode_value(to_jsonable(write.value), type)
            else:
                value = self._values.get(key)
                result[key] = None if value is None else decode_value(value, type)
        return result

    # -- staging ----------------------------------------------------------------------------

    def put(self, key: str, value: Any, *, ttl: int | None = None) -> None:
        """Write ``value`` at commit. Read the key first (``get``) so the write is checked
        against what you read; a key never read is written whatever it holds by then."""
        self._writes[key] = Upsert(key, value, ttl=ttl)

    def delete(self, key: str) -> None:
        """Delete ``key`` at commit (checked against what was read, like ``put``)."""
        self._writes[key] = Delete(key)

    def publish(
        self,
        pubsub: str,
        topic: str,
        data: Any,
        *,
        type: str | None = None,
        id: str | None = None,
    ) -> str:
        """Publish ``data`` as a CloudEvent once the unit has committed. Its id is
        ``id``, by default ``<event id>:<n>`` (n counts this unit's publishes), so a
        repeated publish of it is recognisable downstream. Returns the id."""
        event_id = id or f"{self.event_id or 'event'}:{len(self._outbox) + 1}"
        event = CloudEvent[Any](id=event_id, type=type, data=to_jsonable(data))
        self._outbox.append({"pubsub": pubsub, "topic": topic, "event": event.to_json_dict()})
        return event_id

    # -- for the router -----------------------------------------------------------------------

    @property
    def outbox(self) -> list[dict[str, Any]]:
        return list(self._outbox)

    def operations(self) -> list[Upsert | Delete]:
        """The staged writes, each checked against what was read."""
        operations: list[Upsert | Delete] = []
        for key, write in self._writes.items():
            read = self._reads.get(key)
            if isinstance(write, Upsert):
                if read is None:
                    operations.append(write)
                elif read.etag is None:
                    # Read as missing: it must still be missing.
                    operations.append(
                        Upsert(key, write.value, ttl=write.ttl, concurrency="first-write")
                    )
                else:
                    operations.append(Upsert(key, write.value, etag=read.etag, ttl=write.ttl))
            elif read is None or read.etag is None:
                # Deleting a key that was never read, or read as missing: nothing to check
                # (daprd accepts deleting a missing key).
                operations.append(Delete(key))
            else:
                operations.append(Delete(key, etag=read.etag))
        return operations
