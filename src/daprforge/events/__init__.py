"""Pub/sub subscriptions for FastAPI services. See docs/runtime.md.

from daprforge.events import EventRouter, CloudEvent, Retry, Drop, Idempotency
"""

from daprforge.client.cloudevents import CloudEvent
from daprforge.events.idempotency import Idempotency
from daprforge.events.outcomes import Drop, Outcome, Retry
from daprforge.events.router import EventRouter, Subscription

__all__ = ["CloudEvent", "Drop", "EventRouter", "Idempotency", "Outcome", "Retry", "Subscription"]
