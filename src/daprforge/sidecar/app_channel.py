"""The sidecar's connection to its app: subscriptions, event delivery, invocation.

One pooled HTTP client per sidecar. Every call carries ``dapr-api-token`` when
``APP_API_TOKEN`` is set, as daprd does for everything it sends to the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

log = logging.getLogger("daprforge.sidecar.app")

# daprd's built-in initialization policy for /dapr/subscribe: 3 retries, exponential.
_SUBSCRIBE_RETRY_DELAYS = (0.5, 1.0, 2.0)


class AppChannel:
    def __init__(self, address: str, port: int, app_id: str, app_token: str | None) -> None:
        self.base_url = f"http://{address}:{port}"
        self.app_id = app_id
        self.app_token = app_token
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(None, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.app_token:
            headers["dapr-api-token"] = self.app_token
        return headers

    async def close(self) -> None:
        await self.client.aclose()

    async def subscriptions(self) -> Any:
        """The app's ``/dapr/subscribe`` answer, or ``None`` when it has none."""
        headers = self.headers({"content-type": "application/json", "dapr-app-id": self.app_id})
        for delay in (*_SUBSCRIBE_RETRY_DELAYS, None):
            try:
                response = await self.client.get("/dapr/subscribe", headers=headers)
                break
            except httpx.TransportError as exc:
                if delay is None:
                    log.error("could not fetch /dapr/subscribe from the app: %s", exc)
                    return None
                await asyncio.sleep(delay)
        if response.status_code == 404:
            log.debug("the app has no /dapr/subscribe endpoint")
            return None
        if response.status_code != 200:
            log.error("/dapr/subscribe answered %s: no subscriptions", response.status_code)
            return None
        if not response.content.strip():
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            log.error("/dapr/subscribe did not return JSON: no subscriptions")
            return None

    async def post_event(
        self, path: str, body: bytes, headers: dict[str, str], attempt_timeout: float | None
    ) -> httpx.Response:
        if not path.startswith("/"):
            path = "/" + path
        return await self.client.post(
            path,
            content=body,
            headers=self.headers(headers),
            timeout=httpx.Timeout(attempt_timeout, connect=5.0),
        )
