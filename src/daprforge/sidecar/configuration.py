"""The Dapr ``Configuration`` resource given with ``--config``: the parts we honour."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daprforge.sidecar.components.loader import ResourceError, parse_documents
from daprforge.sidecar.nameresolution import NameResolutionError, ResolverSettings


@dataclass(frozen=True, slots=True)
class Configuration:
    secret_scopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``spec.secrets.scopes`` by store name."""
    name_resolution: ResolverSettings | None = None
    """``spec.nameResolution`` when it selects the sqlite resolver."""


def load_configuration(path: Path) -> Configuration:
    """Read ``path``; sections other than secrets and nameResolution are daprd's only."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResourceError(path, f"cannot read the configuration file: {exc.strerror}") from None
    scopes: dict[str, dict[str, Any]] = {}
    resolver: ResolverSettings | None = None
    for doc in parse_documents(path, text):
        if doc.get("kind") != "Configuration":
            raise ResourceError(path, f"expected kind: Configuration, found {doc.get('kind')!r}")
        spec = doc.get("spec") or {}
        secrets = spec.get("secrets") or {}
        for index, scope in enumerate(secrets.get("scopes") or []):
            if not isinstance(scope, dict) or not isinstance(scope.get("storeName"), str):
                raise ResourceError(path, f"spec.secrets.scopes[{index}] needs a storeName")
            scopes[scope["storeName"]] = scope
        resolution = spec.get("nameResolution") or {}
        component = str(resolution.get("component") or "").lower()
        if component in ("", "mdns"):
            continue  # the default: our shared local registry plays mDNS's part
        if component != "sqlite":
            raise ResourceError(
                path,
                f"spec.nameResolution.component {component!r} is not supported locally; "
                "use sqlite (or leave it out)",
            )
        try:
            resolver = ResolverSettings.from_configuration(resolution.get("configuration") or {})
        except NameResolutionError as exc:
            raise ResourceError(path, f"spec.{exc}") from None
    return Configuration(secret_scopes=scopes, name_resolution=resolver)
