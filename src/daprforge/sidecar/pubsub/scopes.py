"""Topic scoping on pub/sub components (``allowedTopics``, ``publishingScopes``, ...).

Semantics as Dapr documents them: ``allowedTopics`` limits every app; an app named in
``publishingScopes``/``subscriptionScopes`` may use only the topics listed for it; a topic in
``protectedTopics`` is usable only by apps that are granted it explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping


def _topics(text: str) -> set[str]:
    return {t.strip() for t in text.split(",") if t.strip()}


def _scopes(text: str) -> dict[str, set[str]]:
    scopes: dict[str, set[str]] = {}
    for part in text.split(";"):
        app, sep, topics = part.partition("=")
        if sep and app.strip():
            scopes[app.strip()] = _topics(topics)
    return scopes


def topic_allowed(metadata: Mapping[str, str], scope_key: str, app_id: str, topic: str) -> bool:
    """``scope_key`` is ``publishingScopes`` or ``subscriptionScopes``."""
    allowed = _topics(metadata.get("allowedTopics", ""))
    if allowed and topic not in allowed:
        return False
    granted = _scopes(metadata.get(scope_key, "")).get(app_id)
    if granted is not None:
        return topic in granted
    return topic not in _topics(metadata.get("protectedTopics", ""))
