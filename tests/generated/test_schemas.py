"""The Dapr resource schemas we ship catch the mistakes Kubernetes would let through."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.generated._manifests import dapr_errors

COMPONENT: dict[str, Any] = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "statestore"},
    "spec": {
        "type": "state.postgresql",
        "version": "v2",
        "metadata": [
            {"name": "connectionString", "secretKeyRef": {"name": "db", "key": "url"}},
            {"name": "timeout", "value": "20s"},
        ],
    },
    "scopes": ["orders"],
}
SUBSCRIPTION: dict[str, Any] = {
    "apiVersion": "dapr.io/v2alpha1",
    "kind": "Subscription",
    "metadata": {"name": "orders"},
    "spec": {
        "pubsubname": "pubsub",
        "topic": "orders",
        "routes": {"rules": [{"match": 'event.type == "x"', "path": "/x"}], "default": "/o"},
        "deadLetterTopic": "orders-failed",
    },
    "scopes": ["orders"],
}
RESILIENCY: dict[str, Any] = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Resiliency",
    "metadata": {"name": "orders"},
    "spec": {
        "policies": {
            "timeouts": {"general": "5s"},
            "retries": {"again": {"policy": "constant", "duration": "1s", "maxRetries": 3}},
        },
        "targets": {"components": {"pubsub": {"inbound": {"retry": "again"}}}},
    },
}
CONFIGURATION: dict[str, Any] = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Configuration",
    "metadata": {"name": "orders-config"},
    "spec": {"tracing": {"samplingRate": "1"}, "metric": {"enabled": True}},
}


@pytest.mark.parametrize("document", [COMPONENT, SUBSCRIPTION, RESILIENCY, CONFIGURATION])
def test_valid_resources_pass(document: dict[str, Any]) -> None:
    assert dapr_errors(document) == []


def test_a_v1alpha1_subscription_has_a_single_route() -> None:
    document = copy.deepcopy(SUBSCRIPTION)
    document["apiVersion"] = "dapr.io/v1alpha1"
    assert dapr_errors(document)  # routes belong to v2alpha1
    document["spec"].pop("routes")
    document["spec"]["route"] = "/orders"
    assert dapr_errors(document) == []


def _broken(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = broken
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return broken


MISTAKES = [
    pytest.param(_broken(COMPONENT, "spec.metdata", []), id="misspelt-field"),
    pytest.param(_broken(COMPONENT, "spec.metadata", None), id="missing-metadata"),
    pytest.param(_broken(COMPONENT, "spec.type", "postgresql"), id="type-without-category"),
    pytest.param(_broken(COMPONENT, "spec.version", "2"), id="bad-version"),
    pytest.param(_broken(COMPONENT, "apiVersion", "dapr.io/v1"), id="bad-api-version"),
    pytest.param(_broken(COMPONENT, "metadata.name", "State_Store"), id="bad-name"),
    pytest.param(
        _broken(COMPONENT, "spec.metadata.1.secretKeyRef", {"name": "a", "key": "b"}),
        id="value-and-secret",
    ),
    pytest.param(_broken(COMPONENT, "spec.metadata.1.value", None), id="neither"),
    pytest.param(_broken(SUBSCRIPTION, "spec.topic", None), id="subscription-no-topic"),
    pytest.param(
        _broken(RESILIENCY, "spec.policies.retries.again.policy", "linear"), id="retry-policy"
    ),
    pytest.param(_broken(RESILIENCY, "spec.policies.timeouts.general", "5"), id="duration"),
    pytest.param(
        _broken(RESILIENCY, "spec.targets.components.pubsub.inbound.retry", "missing"),
        id="dangling-policy",
    ),
    pytest.param(_broken(CONFIGURATION, "spec.tracing.samplingRate", "2"), id="sampling-rate"),
    pytest.param(_broken(CONFIGURATION, "spec.tracng", {}), id="config-typo"),
]


@pytest.mark.parametrize("document", MISTAKES)
def test_mistakes_are_caught(document: dict[str, Any]) -> None:
    assert dapr_errors(document) != []
