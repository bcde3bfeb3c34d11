"""``DaprClient``: the async client for a Dapr sidecar's HTTP API.

Create one per process, in the app's lifespan, and share it: it holds one connection pool.

    async with DaprClient() as dapr:
        await dapr.wait_for_sidecar(timeout=30)
        await dapr.state.save("statestore", "order-1", order)
        item = await dapr.state.get("statestore", "order-1", type=Order)
        await dapr.pubsub.publish("pubsub", "orders", order)
        reply = await dapr.invoke("billing", "invoices", json=order)
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from daprforge.client.errors import SidecarUnavailableError, error_from_response
from daprforge.client.invoke import InvokeResponse, invoke
from daprforge.client.metadata import SidecarMetadata
from daprforge.client.pubsub import PubSubAPI
from daprforge.client.secrets import SecretsAPI
from daprforge.client.state import StateAPI
from daprforge.client.transport import CallObserver, Transport, segment

DEFAULT_HTTP_PORT = 3500
_PROBE_TIMEOUT = 2.0


def endpoint_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``DAPR_HTTP_ENDPOINT`` if set, else ``http://127.0.0.1:$DAPR_HTTP_PORT`` (3500)."""
    env = os.environ if environ is None else environ
    endpoint = env.get("DAPR_HTTP_ENDPOINT", "").strip()
    if endpoint:
        return endpoint.rstrip("/")
    port = env.get("DAPR_HTTP_PORT", "").strip() or str(DEFAULT_HTTP_PORT)
    if not port.isdigit():
        raise ValueError(f"DAPR_HTTP_PORT must be a port number, not {port!r}")
    return f"http://127.0.0.1:{port}"


class DaprClient:
    """Talks to the sidecar at ``endpoint`` (default: from the environment, see
    :func:`endpoint_from_env`), sending ``api_token`` (default ``$DAPR_API_TOKEN``) as
    ``dapr-api-token``. ``timeout`` bounds each attempt of each call (seconds);
    ``retries`` is how often a call that failed safely is repeated; ``observer`` sees
    every attempt (for metrics)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        api_token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        observer: CallObserver | None = None,
    ) -> None:
        self.endpoint = (endpoint or endpoint_from_env()).rstrip("/")
        token = os.environ.get("DAPR_API_TOKEN") if api_token is None else api_token
        self._transport = Transport(
            self.endpoint,
            api_token=token or None,
            timeout=timeout,
            retries=retries,
            observer=observer,
        )
        self.state = StateAPI(self._transport)
        self.pubsub = PubSubAPI(self._transport)
        self.secrets = SecretsAPI(self._transport)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> DaprClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- invocation ---------------------------------------------------------------------

    async def invoke(
        self,
        app_id: str,
        method: str,
        *,
        verb: str | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InvokeResponse:
        """Call ``method`` (a path such as ``"orders/42"``) on app ``app_id``. ``verb``
        defaults to POST when there is a body (``json`` or ``content``), else GET. The
        app's answer comes back whatever its status; ``raise_for_status()`` if you want
        an exception. The current ``traceparent`` goes along."""
        return await invoke(
            self._transport,
            app_id,
            method,
            verb=verb,
            json=json,
            content=content,
            params=params,
            headers=headers,
        )

    # --- metadata and health ------------------------------------------------------------

    async def metadata(self) -> SidecarMetadata:
        response = await self._transport.request(
            "metadata.get", "GET", "/v1.0/metadata", idempotent=True
        )
        if response.status_code >= 400:
            raise error_from_response(response)
        return SidecarMetadata.model_validate(jsonlib.loads(response.content))

    async def set_metadata(self, key: str, value: str) -> None:
        """Attach a custom attribute to the sidecar's metadata (``extended``)."""
        response = await self._transport.request(
            "metadata.set",
            "PUT",
            f"/v1.0/metadata/{segment(key)}",
            idempotent=True,
            content=value.encode(),
        )
        if response.status_code >= 400:
            raise error_from_response(response)

    async def is_healthy(self, *, outbound: bool = False) -> bool:
        """Whether the sidecar answers its health check. ``outbound=True`` asks only
        whether its API can be used (components loaded), not whether it has found the
        app yet: the question an app's readiness probe needs. Never retried, and bounded
        by a short timeout: a probe wants the current answer."""
        return await self._probe(outbound, _PROBE_TIMEOUT)

    async def _probe(self, outbound: bool, seconds: float) -> bool:
        path = "/v1.0/healthz/outbound" if outbound else "/v1.0/healthz"
        try:
            response = await self._transport.request(
                "health", "GET", path, idempotent=True, attempt_timeout=seconds, retries=0
            )
        except SidecarUnavailableError:
            return False
        return 200 <= response.status_code < 300

    # The deadline is the point of this call, and it raises SidecarUnavailableError
    # naming the sidecar rather than a bare TimeoutError, so it takes a timeout argument.
    async def wait_for_sidecar(
        self,
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        outbound: bool = True,
    ) -> None:
        """Wait until the sidecar is healthy (by default: its API is usable), polling
        without blocking the event loop; raise SidecarUnavailableError after ``timeout``
        seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if await self._probe(outbound, max(0.1, min(1.0, remaining))):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SidecarUnavailableError(
                    503, "", f"the Dapr sidecar at {self.endpoint} was not ready after {timeout}s"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)
