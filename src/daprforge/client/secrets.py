"""Secrets: ``client.secrets.get(store, key)`` and ``get_bulk(store)``.

A secret is a flat ``{name: value}`` map; single-value stores (env, file) answer
``{key: value}``. A store that does not know the key answers as its component does (the
local file store with a 500 ``ERR_SECRET_GET``, the env store with an empty value).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from daprforge.client.errors import error_from_response
from daprforge.client.transport import Transport, metadata_params, segment


class SecretsAPI:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def get(
        self,
        store: str,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        found = await self._get("secrets.get", f"{segment(store)}/{segment(key)}", metadata)
        return {str(k): str(v) for k, v in found.items()}

    async def get_bulk(
        self,
        store: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, str]]:
        """Every secret the app may read: ``{secret name: {key: value}}``."""
        found = await self._get("secrets.get_bulk", f"{segment(store)}/bulk", metadata)
        return {
            str(name): {str(k): str(v) for k, v in values.items()} for name, values in found.items()
        }

    async def _get(
        self, name: str, path: str, metadata: Mapping[str, str] | None
    ) -> dict[str, Any]:
        response = await self._transport.request(
            name,
            "GET",
            f"/v1.0/secrets/{path}",
            idempotent=True,
            params=metadata_params(metadata),
        )
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return {}
        found: dict[str, Any] = json.loads(response.content)
        return found
