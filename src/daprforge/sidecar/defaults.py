"""The components a sidecar loads when no ``--resources-path`` is given."""

from __future__ import annotations

import os
from pathlib import Path

from daprforge.sidecar.components.loader import ComponentSpec, MetadataItem
from daprforge.sidecar.nameresolution import ResolverSettings

EMBEDDED = "<embedded defaults>"


def data_root() -> Path:
    """``$DAPRFORGE_DATA_DIR``, by default ``~/.daprforge/data``."""
    return Path(os.environ.get("DAPRFORGE_DATA_DIR") or Path.home() / ".daprforge" / "data")


def data_dir(app_id: str) -> Path:
    """Per-app folder for local data."""
    return data_root() / app_id


def default_resolver() -> ResolverSettings:
    """One registry file per data root: every sidecar sharing it can find the others."""
    return ResolverSettings(data_root() / "nameresolution.db")


def default_components(app_id: str) -> list[ComponentSpec]:
    database = data_dir(app_id) / "state.db"
    return [
        ComponentSpec(
            name="statestore",
            type="state.sqlite",
            version="v1",
            metadata=(MetadataItem("connectionString", value=str(database)),),
            source=EMBEDDED,
        ),
        ComponentSpec(
            name="pubsub",
            type="pubsub.in-memory",
            version="v1",
            metadata=(),
            source=EMBEDDED,
        ),
    ]
