"""Authentication for the two kinds of callers a service has.

- Public clients: ``require_api_key`` checks ``X-API-Key`` against ``API_KEY`` (settings)
  on the routes it guards; with no key configured it lets everything through.
- The Dapr sidecar: ``require_dapr_token`` checks the ``dapr-api-token`` header daprd sends
  on every call into the app (event deliveries, invocations, ``/dapr/subscribe``) when
  ``APP_API_TOKEN`` is set, the same variable daprd reads.

Both compare in constant time and answer 401 with a problem body.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from daprforge.service.dependencies import get_settings

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Required when the service is configured with API_KEY.",
)


def _matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(
    request: Request, api_key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    expected = get_settings(request).api_key
    if expected is None or not expected.get_secret_value():
        return
    if not _matches(api_key, expected.get_secret_value()):
        raise HTTPException(
            401, "A valid X-API-Key header is required.", headers={"www-authenticate": "ApiKey"}
        )


class DaprTokenVerifier:
    """Checks ``dapr-api-token``; ``token`` None means: read ``APP_API_TOKEN`` on each call
    (so it can be set after the app object was built)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    async def __call__(self, request: Request) -> None:
        expected = self.token if self.token is not None else os.environ.get("APP_API_TOKEN", "")
        if expected and not _matches(request.headers.get("dapr-api-token"), expected):
            raise HTTPException(401, "A valid dapr-api-token header is required.")


require_dapr_token = DaprTokenVerifier()
