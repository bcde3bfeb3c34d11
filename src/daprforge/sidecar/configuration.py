"""The Dapr ``Configuration`` resource given with ``--config``: the parts we honour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daprforge.sidecar.components.loader import ResourceError, parse_documents


def load_secret_scopes(path: Path) -> dict[str, dict[str, Any]]:
    """``spec.secrets.scopes`` by store name; other sections are read by daprd only."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResourceError(path, f"cannot read the configuration file: {exc.strerror}") from None
    scopes: dict[str, dict[str, Any]] = {}
    for doc in parse_documents(path, text):
        if doc.get("kind") != "Configuration":
            raise ResourceError(path, f"expected kind: Configuration, found {doc.get('kind')!r}")
        secrets = (doc.get("spec") or {}).get("secrets") or {}
        for index, scope in enumerate(secrets.get("scopes") or []):
            if not isinstance(scope, dict) or not isinstance(scope.get("storeName"), str):
                raise ResourceError(path, f"spec.secrets.scopes[{index}] needs a storeName")
            scopes[scope["storeName"]] = scope
    return scopes
