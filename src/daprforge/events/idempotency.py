"""Processing each event once, even when the sidecar delivers it again.

Pub/sub is at-least-once: an event comes again when the app's answer got lost, timed out,
or the broker redelivered it. Each processed event leaves a *marker* in the state store,
keyed by pubsub, topic and event id, kept for ``ttl`` seconds. Two ways to use it:

- **Exactly once** (handlers taking a :class:`~daprforge.events.unit.UnitOfWork`): the
  marker is a first-write inside the same state transaction as the handler's changes, so
  marker and effect are written together or not at all (:meth:`Idempotency.marker`).
- **At most one run at a time** (any other handler, whose effects the router cannot see):
  a delivery first *claims* the id (a first-write save, so exactly one concurrent delivery
  wins), runs the handler, then records the id as done. A later delivery of a done event
  is acknowledged without running the handler; one arriving while another is being
  handled is asked to retry. A claim expires after ``lease`` seconds, so an event whose
  handler crashed the process runs again: its effects may then happen twice.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from daprforge.client import ConcurrencyError, DaprClient, Upsert

log = logging.getLogger("daprforge.events")

_PROCESSING = "processing"
_DONE = "done"


def is_done(value: Any) -> bool:
    """Whether a stored marker value says the event was processed."""
    return isinstance(value, dict) and value.get("status") == _DONE


class Claim(enum.Enum):
    CLAIMED = "claimed"
    """This delivery may process the event."""
    DONE = "done"
    """An earlier delivery processed it."""
    BUSY = "busy"
    """Another delivery is processing it right now."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    store: str
    """The state store that records processed event ids (keys are prefixed per app)."""
    ttl: int = 24 * 3600
    """Seconds a processed id is remembered: longer than any redelivery can come."""
    lease: int = 60
    """Seconds a delivery in progress holds its claim: longer than a handler runs."""
    prefix: str = "processed-event"

    def key(self, pubsub: str, topic: str, event_id: str) -> str:
        # "||" is daprd's key-prefix separator and is refused inside keys.
        return f"{self.prefix}:{pubsub}:{topic}:{event_id}".replace("||", "|%7C")

    async def claim(self, dapr: DaprClient, key: str) -> Claim:
        try:
            await dapr.state.save(
                self.store,
                key,
                {"status": _PROCESSING},
                concurrency="first-write",
                ttl=self.lease,
            )
        except ConcurrencyError:
            item = await dapr.state.get(self.store, key)
            value: Any = item.value if item is not None else None
            if is_done(value):
                return Claim.DONE
            # Still processing elsewhere, or the claim expired just now: try again later.
            return Claim.BUSY
        return Claim.CLAIMED

    def marker(self, key: str, outbox: list[dict[str, Any]]) -> Upsert:
        """The marker as a transaction operation: a first-write, so the transaction fails
        if the event was processed already. ``outbox``: derived events still to publish."""
        value: dict[str, Any] = {"status": _DONE}
        if outbox:
            value["outbox"] = outbox
        return Upsert(key, value, ttl=self.ttl, concurrency="first-write")

    async def done(self, dapr: DaprClient, key: str) -> dict[str, Any] | None:
        """The marker of a processed event (with any ``outbox`` still to publish), or
        None when the event was not processed."""
        item = await dapr.state.get(self.store, key, consistency="strong")
        value: Any = item.value if item is not None else None
        return value if is_done(value) else None

    async def complete(self, dapr: DaprClient, key: str) -> None:
        await dapr.state.save(self.store, key, {"status": _DONE}, ttl=self.ttl)

    async def release(self, dapr: DaprClient, key: str) -> None:
        await dapr.state.delete(self.store, key)
