"""The sidecar's ASGI application: daprd's middleware chain in front of the API routes.

Order matters and follows daprd: clean the path, apply the API token check (health routes
are exempt), route, decode parameters, then run the handler. Errors a handler raises as
:class:`DaprError` become Dapr's JSON bodies; anything else is logged and answered with
daprd's generic 500 body, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from daprforge.sidecar.errors import DaprError
from daprforge.sidecar.request import DaprRequest
from daprforge.sidecar.routing import (
    Handler,
    Route,
    Router,
    UnescapeError,
    clean_path,
    unescape_params,
)
from daprforge.sidecar.runtime import Runtime

log = logging.getLogger("daprforge.sidecar.http")

_TOKEN_EXEMPT = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound"})


def _plain_error(message: str, status: int) -> Response:
    # Go's http.Error: text/plain body with a trailing newline.
    response = PlainTextResponse(message + "\n", status_code=status)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


class SidecarApp:
    def __init__(
        self,
        runtime: Runtime,
        routes: Iterable[Route],
        fallback: Handler,
        *,
        max_body_size: int,
        api_token: str | None,
    ) -> None:
        self.runtime = runtime
        self.router = Router(routes, fallback)
        self.max_body_size = max_body_size
        self.api_token = api_token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is driven by the server module, websockets are not served
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        scope = request.scope
        raw_path: bytes | None = scope.get("raw_path")
        escaped = raw_path.decode("latin-1") if raw_path else scope["path"]
        path = clean_path(escaped.split("?", 1)[0])
        method = request.method

        if self.api_token is not None:
            token = request.headers.get("dapr-api-token")
            if token != self.api_token and not (method == "GET" and path in _TOKEN_EXEMPT):
                return _plain_error("invalid api token", 401)

        handler, params = self.router.resolve(method, path)
        if params:
            try:
                params = unescape_params(params)
            except UnescapeError as exc:
                return _plain_error(str(exc), 400)
        call = DaprRequest(request, params, self.runtime, self.max_body_size)
        try:
            return await handler(call)
        except DaprError as exc:
            return exc.response()
        except Exception:
            log.exception("unhandled error serving %s %s", method, path)
            return DaprError(500, "ERROR", "internal error").response()
