"""Errors of the AI layer, each with the HTTP answer a client gets for it.

What the provider said stays in the log: its text can echo the request or name internals.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from daprforge.service.errors import problem


class AIError(Exception):
    """A request the agent cannot answer. ``detail`` is safe to show to the client."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str,
        retry_after: float | None = None,
        retryable: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.retry_after = retry_after
        self.retryable = retryable or retry_after is not None
        self.extra = extra

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}

    def body(self) -> dict[str, Any]:
        """For an SSE ``error`` event: the same facts as the HTTP answer."""
        body: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            "retryable": self.retryable,
        }
        if self.retry_after is not None:
            body["retry_after"] = max(1, math.ceil(self.retry_after))
        return body | self.extra


class LimitExceededError(AIError):
    """429: the user's rate limit or daily token budget."""

    def __init__(self, detail: str, *, code: str, retry_after: float, **extra: Any) -> None:
        super().__init__(429, detail, code=code, retry_after=retry_after, **extra)


class ProviderError(AIError):
    """The model provider failed (after the SDK's retries): 502, 503 or 504."""


async def ai_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AIError)
    return problem(
        exc.status,
        exc.detail,
        instance=request.url.path,
        headers=exc.headers(),
        code=exc.code,
        retryable=exc.retryable,
        **exc.extra,
    )


def install_ai_error_handler(app: FastAPI) -> None:
    """AIError → a problem+json answer with its status, ``code`` and ``Retry-After``."""
    app.add_exception_handler(AIError, ai_error_handler)
