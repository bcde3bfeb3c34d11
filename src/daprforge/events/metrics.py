"""Prometheus counters of what happened to delivered events.

Registered on the app's own registry (``app.state.metrics``, from ``create_app``) the first
time an event arrives; an app built without ``create_app`` has no metrics and counts
nothing. Labels are the pub/sub component and the topic the event was published to (for a
dead letter, the topic it failed on: its envelope keeps it).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from daprforge.events.outcomes import Outcome


class EventMetrics:
    def __init__(self, registry: Any) -> None:
        labels = ["pubsub", "topic"]
        self.processed = Counter(
            "events_processed_total",
            "Events handled successfully (acknowledged after the handler ran).",
            labels,
            registry=registry,
        )
        self.duplicates = Counter(
            "events_duplicates_total",
            "Deliveries of events already processed, acknowledged without effect.",
            labels,
            registry=registry,
        )
        self.retried = Counter(
            "events_retried_total",
            "Deliveries answered RETRY (the handler failed or asked to retry).",
            labels,
            registry=registry,
        )
        self.dropped = Counter(
            "events_dropped_total",
            "Deliveries answered DROP (invalid data, or the handler gave up).",
            labels,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "events_dead_lettered_total",
            "Dead letters received and handled, by the topic they failed on.",
            labels,
            registry=registry,
        )

    def count(self, outcome: Outcome, pubsub: str, topic: str, *, duplicate: bool) -> None:
        if outcome is Outcome.SUCCESS:
            counter = self.duplicates if duplicate else self.processed
        elif outcome is Outcome.RETRY:
            counter = self.retried
        else:
            counter = self.dropped
        counter.labels(pubsub, topic).inc()


def event_metrics(state: Any) -> EventMetrics | None:
    """The counters of the app whose ``app.state`` is ``state``, made on first use."""
    found = getattr(state, "event_metrics", None)
    if isinstance(found, EventMetrics):
        return found
    metrics = getattr(state, "metrics", None)
    registry = getattr(metrics, "registry", None)
    if registry is None:
        return None
    created = EventMetrics(registry)
    state.event_metrics = created
    return created
