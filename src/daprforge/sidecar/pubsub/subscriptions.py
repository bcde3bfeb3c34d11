"""Subscriptions: from the app's ``GET /dapr/subscribe`` and from ``Subscription`` YAML.

Both forms end up as the same :class:`Subscription`. As in daprd, a v2 ``routes.default``
wins over a v1 ``route`` in the same entry, rules are tried in order, and an entry that
ends up with no route at all is dropped with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daprforge.sidecar.components.loader import ResourceError
from daprforge.sidecar.pubsub.match import MatchSyntaxError, Rule

log = logging.getLogger("daprforge.sidecar.pubsub")

DECLARATIVE = "DECLARATIVE"
PROGRAMMATIC = "PROGRAMMATIC"


class SubscriptionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Subscription:
    pubsub: str
    topic: str
    rules: tuple[Rule, ...]
    kind: str
    dead_letter_topic: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def raw_payload(self) -> bool:
        return self.metadata.get("rawPayload", "").lower() == "true"

    def describe(self) -> dict[str, Any]:
        """The entry ``/v1.0/metadata`` reports."""
        entry: dict[str, Any] = {"pubsubname": self.pubsub, "topic": self.topic}
        if self.metadata:
            entry["metadata"] = self.metadata
        entry["rules"] = [
            {"match": rule.match, "path": rule.path} if rule.match else {"path": rule.path}
            for rule in self.rules
        ]
        if self.dead_letter_topic:
            entry["deadLetterTopic"] = self.dead_letter_topic
        entry["type"] = self.kind
        return entry


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SubscriptionError(f"{where} must be a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def build(entry: dict[str, Any], kind: str, route_key: str = "route") -> Subscription:
    """One subscription from the shared fields of both forms; raises SubscriptionError."""
    pubsub, topic = entry.get("pubsubname"), entry.get("topic")
    if not isinstance(pubsub, str) or not pubsub:
        raise SubscriptionError("'pubsubname' is required")
    if not isinstance(topic, str) or not topic:
        raise SubscriptionError("'topic' is required")
    routes = entry.get("routes") or {}
    if not isinstance(routes, dict):
        raise SubscriptionError("'routes' must be an object with 'rules' and/or 'default'")
    rules: list[Rule] = []
    for index, rule in enumerate(routes.get("rules") or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("path"), str):
            raise SubscriptionError(f"routes.rules[{index}] needs 'match' and 'path'")
        try:
            rules.append(Rule.build(str(rule.get("match") or ""), rule["path"]))
        except MatchSyntaxError as exc:
            raise SubscriptionError(f"routes.rules[{index}].match: {exc}") from None
    default = routes.get("default") or entry.get(route_key)
    if isinstance(default, str) and default:
        rules.append(Rule.build("", default))
    dead_letter = entry.get("deadLetterTopic") or ""
    return Subscription(
        pubsub=pubsub,
        topic=topic,
        rules=tuple(rules),
        kind=kind,
        dead_letter_topic=str(dead_letter),
        metadata=_string_map(entry.get("metadata"), "metadata"),
    )


def from_app(entries: Any) -> list[Subscription]:
    """Parse the JSON array the app returned from ``/dapr/subscribe``."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        log.error("/dapr/subscribe must return a JSON array; got %s", type(entries).__name__)
        return []
    subscriptions = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise SubscriptionError("each entry must be an object")
            subscription = build(entry, PROGRAMMATIC)
        except SubscriptionError as exc:
            log.error("ignoring /dapr/subscribe entry %d: %s", index, exc)
            continue
        if not subscription.rules:
            log.warning(
                "ignoring subscription to %s/%s: it has no route",
                subscription.pubsub,
                subscription.topic,
            )
            continue
        subscriptions.append(subscription)
    return subscriptions


def from_resource(source: Path | str, doc: dict[str, Any], app_id: str) -> Subscription | None:
    """A declarative ``Subscription`` (v2alpha1 ``routes`` or v1alpha1 ``route``)."""
    scopes = doc.get("scopes") or []
    if scopes and app_id not in scopes:
        return None
    spec = doc.get("spec")
    name = (doc.get("metadata") or {}).get("name", "?")
    if not isinstance(spec, dict):
        raise ResourceError(source, f"subscription {name!r}: 'spec' is required")
    try:
        subscription = build(spec, DECLARATIVE)
    except SubscriptionError as exc:
        raise ResourceError(source, f"subscription {name!r}: spec: {exc}") from None
    if not subscription.rules:
        raise ResourceError(
            source, f"subscription {name!r}: needs spec.routes (v2alpha1) or spec.route (v1alpha1)"
        )
    return subscription
