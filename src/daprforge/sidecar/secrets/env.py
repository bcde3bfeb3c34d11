"""``secretstores.local.env``: secrets are the sidecar's environment variables."""

from __future__ import annotations

import logging
import os

from daprforge.sidecar.components.metadata import ComponentConfig

log = logging.getLogger("daprforge.sidecar.secrets")


def is_sensitive_variable(name: str) -> bool:
    """Variables Dapr never hands out: its own tokens and settings."""
    upper = name.upper()
    return upper == "APP_API_TOKEN" or upper.startswith("DAPR_")


class EnvSecretStore:
    features: frozenset[str] = frozenset()

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    async def init(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, name: str, metadata: dict[str, str]) -> dict[str, str]:
        variable = self.prefix + name
        if is_sensitive_variable(variable):
            log.warning("access to env var %s is forbidden", name)
            return {name: ""}
        # A missing variable is an empty value, not an error (as in Dapr).
        return {name: os.environ.get(variable, "")}

    async def bulk_get(self, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        size = len(self.prefix)
        return {
            key[size:]: {key[size:]: value}
            for key, value in os.environ.items()
            if (not self.prefix or (len(key) > size and key.startswith(self.prefix)))
            and not is_sensitive_variable(key)
        }


def create(config: ComponentConfig) -> EnvSecretStore:
    return EnvSecretStore(prefix=config.metadata.get("prefix", ""))
