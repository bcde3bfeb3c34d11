"""The component types this sidecar supports, by ``spec.type`` and ``spec.version``.

Factories are named by import path and imported on first use, so a sidecar that only uses
SQLite never imports the PostgreSQL driver.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from daprforge.sidecar.components.loader import ComponentSpec, ResourceError

_STATE_POSTGRES = {
    "v1": "daprforge.sidecar.state.postgres_v1:create",
    "v2": "daprforge.sidecar.state.postgres_v2:create",
}

# type -> version -> "module:factory". The first version listed is the default, as in daprd
# (where a version-less state.postgresql means v1).
FACTORIES: dict[str, dict[str, str]] = {
    "state.in-memory": {"v1": "daprforge.sidecar.state.memory:create"},
    "state.sqlite": {"v1": "daprforge.sidecar.state.sqlite:create"},
    "state.postgresql": _STATE_POSTGRES,
    "state.postgres": _STATE_POSTGRES,
    "secretstores.local.env": {"v1": "daprforge.sidecar.secrets.env:create"},
    "secretstores.local.file": {"v1": "daprforge.sidecar.secrets.file:create"},
    "pubsub.in-memory": {"v1": "daprforge.sidecar.pubsub.memory:create"},
    "pubsub.redis": {"v1": "daprforge.sidecar.pubsub.redis:create"},
}
"""An empty factory path means the type loads and is reported, but is served elsewhere."""


def supported_types() -> str:
    return ", ".join(sorted(FACTORIES))


def resolve_version(spec: ComponentSpec) -> str:
    """The version to use, or a :class:`ResourceError` naming the supported ones."""
    versions = FACTORIES.get(spec.type)
    if versions is None:
        raise ResourceError(
            spec.source,
            f"component {spec.name!r}: spec.type {spec.type!r} is not supported; "
            f"supported types: {supported_types()}",
        )
    version = spec.version or next(iter(versions))
    if version not in versions:
        raise ResourceError(
            spec.source,
            f"component {spec.name!r}: spec.version {version!r} of {spec.type} is not "
            f"supported; use one of: {', '.join(versions)}",
        )
    return version


def factory(spec: ComponentSpec) -> Callable[..., Any] | None:
    path = FACTORIES[spec.type][resolve_version(spec)]
    if not path:
        return None
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
