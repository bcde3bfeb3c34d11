"""The outermost middleware: request id, trace context, access log, HTTP metrics, and a
500 problem for any exception nobody handled.

It is plain ASGI rather than ``BaseHTTPMiddleware`` so streaming responses pass through
untouched and the context variables it sets are visible to the route code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daprforge.client.tracecontext import TraceContext, use_trace
from daprforge.service.context import request_id_from, use_request_id
from daprforge.service.errors import unexpected_error
from daprforge.service.metrics import Metrics

log = logging.getLogger("daprforge.service")
access_log = logging.getLogger("daprforge.access")

# Probes and scrapes: logged at DEBUG so they do not drown the access log.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


def route_label(scope: Scope) -> str:
    """The matched route's template (``/orders/{order_id}``): bounded label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics | None = None,
        quiet_paths: Collection[str] = QUIET_PATHS,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_from(headers.get("x-request-id"))
        caller = TraceContext.parse(headers.get("traceparent"), headers.get("tracestate"))
        trace = caller.child() if caller else TraceContext.new()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        begin = time.perf_counter()
        with use_request_id(request_id), use_trace(trace):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled error in %s %s", scope["method"], scope["path"])
                if started:
                    raise  # too late for a problem body; the server drops the connection
                await unexpected_error(scope["path"])(scope, receive, send_with_id)
            finally:
                self._record(scope, status, time.perf_counter() - begin)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method, path = scope["method"], scope["path"]
        if self.metrics is not None:
            self.metrics.observe_request(method, route_label(scope), status, seconds)
        level = logging.DEBUG if path in self.quiet_paths else logging.INFO
        access_log.log(
            level,
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
