"""The components a sidecar loads when no ``--resources-path`` is given."""

from __future__ import annotations

import os
from pathlib import Path

from daprforge.sidecar.components.loader import ComponentSpec, MetadataItem

EMBEDDED = "<embedded defaults>"


def data_dir(app_id: str) -> Path:
    """Per-app folder for local data: ``$DAPRFORGE_DATA_DIR/<app-id>``."""
    root = os.environ.get("DAPRFORGE_DATA_DIR") or str(Path.home() / ".daprforge" / "data")
    return Path(root) / app_id


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
