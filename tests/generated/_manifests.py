"""Offline validation of a generated project's manifests.

Kubernetes objects: ``kubernetes-validate --strict`` (its Python API), so unknown fields
are errors. Dapr resources: the JSON schemas daprforge ships in
``daprforge/generator/schemas``, plus what a schema cannot say (a Resiliency target names
policies that exist). Then the production rules we promise, checked one by one.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

# The oldest Kubernetes release we support, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
DAPR_KINDS = {
    "Component": "component",
    "Configuration": "configuration",
    "Resiliency": "resiliency",
    "Subscription": "subscription",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@cache
def dapr_validator(kind: str) -> jsonschema.protocols.Validator:
    name = DAPR_KINDS[kind]
    text = resources.files("daprforge.generator").joinpath("schemas", f"{name}.json").read_text()
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def dapr_errors(document: dict[str, Any]) -> list[str]:
    """Schema errors and dangling policy names of one Dapr resource."""
    validator = dapr_validator(document["kind"])
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    if document["kind"] == "Resiliency" and not errors:
        errors += _resiliency_references(document)
    return errors


def _resiliency_references(document: dict[str, Any]) -> list[str]:
    policies = document["spec"]["policies"]
    defined = {
        "retry": set(policies.get("retries", {})),
        "timeout": set(policies.get("timeouts", {})),
        "circuitBreaker": set(policies.get("circuitBreakers", {})),
    }
    errors = []
    for name, target in document["spec"]["targets"].get("components", {}).items():
        for direction, refs in target.items():
            for kind, policy in refs.items():
                if kind in defined and policy not in defined[kind]:
                    errors.append(f"targets.components.{name}.{direction}.{kind}: no {policy!r}")
    return errors


def kubernetes_errors(document: dict[str, Any]) -> list[str]:
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"k8s {version}: {path}: {error.message}")
    return errors
