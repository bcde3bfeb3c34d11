"""``secretstores.local.file``: secrets from a JSON file, read once at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from daprforge.sidecar.components.metadata import ComponentConfig, ComponentConfigError
from daprforge.sidecar.secrets.base import SecretNotFoundError

FEATURE_MULTIPLE_KEY_VALUES = "MULTIPLE_KEY_VALUES_PER_SECRET"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def flatten(document: Any, separator: str, prefix: str = "") -> dict[str, str]:
    """Nested objects and arrays become ``parent<sep>child`` / ``parent<sep>0`` keys."""
    if isinstance(document, dict):
        items: list[tuple[str, Any]] = list(document.items())
    elif isinstance(document, list):
        items = [(str(i), v) for i, v in enumerate(document)]
    else:
        return {prefix: _text(document)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, separator, f"{prefix}{separator}{key}" if prefix else key))
    return flat


class FileSecretStore:
    def __init__(self, path: Path, separator: str, multi_valued: bool) -> None:
        self.path = path
        self.separator = separator
        self.multi_valued = multi_valued
        self.features = frozenset({FEATURE_MULTIPLE_KEY_VALUES} if multi_valued else ())
        self._secrets: dict[str, dict[str, str]] = {}

    async def init(self) -> None:
        try:
            text = await anyio.Path(self.path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ComponentConfigError(
                "secretsFile", f"cannot read {self.path}: {exc.strerror}"
            ) from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ComponentConfigError("secretsFile", f"{self.path} is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ComponentConfigError("secretsFile", f"{self.path} must hold a JSON object")
        if self.multi_valued:
            # Each top-level entry is one secret; an object's leaves are its keys.
            self._secrets = {
                name: flatten(value, self.separator)
                if isinstance(value, dict | list)
                else {name: _text(value)}
                for name, value in document.items()
            }
        else:
            self._secrets = {
                name: {name: value} for name, value in flatten(document, self.separator).items()
            }

    async def close(self) -> None:
        pass

    async def get(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        try:
            return dict(self._secrets[name])
        except KeyError:
            raise SecretNotFoundError(f"secret {name} not found") from None

    async def bulk_get(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        return {name: dict(values) for name, values in self._secrets.items()}


def create(config: ComponentConfig) -> FileSecretStore:
    return FileSecretStore(
        path=Path(config.metadata.require("secretsFile")),
        separator=config.metadata.get("nestedSeparator") or ":",
        multi_valued=config.metadata.boolean("multiValued"),
    )
