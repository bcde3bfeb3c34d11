"""Pub/sub subscriptions for FastAPI services. See docs/runtime.md.

from daprforge.events import EventRouter, CloudEvent, Retry, Drop, Idempotency, UnitOfWork
"""

from daprforge.client.cloudevents import CloudEvent
from daprforge.events.idempotency import Idempotency
from daprforge.events.outcomes import Drop, Outcome, Retry
from daprforge.events.router import EventRouter, Subscription
from daprforge.events.unit import UnitOfWork

__all__ = [
    "CloudEvent",
    "Drop",
    "EventRouter",
    "Idempotency",
    "Outcome",
    "Retry",
    "Subscription",
    "UnitOfWork",
]
