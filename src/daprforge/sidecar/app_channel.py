"""The sidecar's connection to its app: subscriptions, event delivery, invocation.

Every call carries ``dapr-api-token`` when ``APP_API_TOKEN`` is set, as daprd does for
everything it sends to the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from daprforge.sidecar.outbound import exact_url

log = logging.getLogger("daprforge.sidecar.app")

# daprd's built-in initialization policy for /dapr/subscribe: 3 retries, exponential.
_SUBSCRIBE_RETRY_DELAYS = (0.5, 1.0, 2.0)


class AppChannel:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        address: str,
        port: int,
        app_id: str,
        app_token: str | None,
    ) -> None:
        self.session = session
        self.base_url = f"http://{address}:{port}"
        self.app_id = app_id
        self.app_token = app_token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.app_token:
            headers["dapr-api-token"] = self.app_token
        return headers

    async def subscriptions(self) -> Any:
        """The app's ``/dapr/subscribe`` answer, or ``None`` when it has none."""
        headers = self.headers({"content-type": "application/json", "dapr-app-id": self.app_id})
        url = exact_url(self.base_url + "/dapr/subscribe")
        for delay in (*_SUBSCRIBE_RETRY_DELAYS, None):
            try:
                async with self.session.get(url, headers=headers) as response:
                    status, body = response.status, await response.read()
                break
            except aiohttp.ClientError as exc:
                if delay is None:
                    log.error("could not fetch /dapr/subscribe from the app: %s", exc)
                    return None
                await asyncio.sleep(delay)
        if status == 404:
            log.debug("the app has no /dapr/subscribe endpoint")
            return None
        if status != 200:
            log.error("/dapr/subscribe answered %s: no subscriptions", status)
            return None
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            log.error("/dapr/subscribe did not return JSON: no subscriptions")
            return None

    async def post_event(
        self, path: str, body: bytes, headers: dict[str, str], attempt_timeout: float | None
    ) -> tuple[int, bytes]:
        """POST an event; the app's status and body. Raises on transport errors/timeouts."""
        if not path.startswith("/"):
            path = "/" + path
        async with asyncio.timeout(attempt_timeout):
            async with self.session.post(
                exact_url(self.base_url + path),
                data=body,
                headers=self.headers(headers),
                allow_redirects=False,
            ) as response:
                return response.status, await response.read()
