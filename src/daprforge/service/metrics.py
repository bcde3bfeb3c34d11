"""Prometheus metrics: HTTP requests by route and status, their latency, and the latency
and errors of calls to the Dapr sidecar.

Each app gets its own registry (so several apps in one test process do not collide),
with the usual process, platform and GC collectors added.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.responses import Response

# Latency buckets for a service on a local network (seconds).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.dapr_duration = Histogram(
            "dapr_client_request_duration_seconds",
            "Time of each attempt of a call to the Dapr sidecar, by operation.",
            ["operation"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.dapr_errors = Counter(
            "dapr_client_errors_total",
            "Failed attempts of calls to the Dapr sidecar, by operation and status "
            "(an HTTP status, or 'unreachable' when the sidecar did not answer).",
            ["operation", "status"],
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def observe_dapr_call(self, operation: str, status: int | None, seconds: float) -> None:
        """A ``CallObserver`` for the Dapr client."""
        self.dapr_duration.labels(operation).observe(seconds)
        if status is None:
            self.dapr_errors.labels(operation, "unreachable").inc()
        elif status >= 400:
            self.dapr_errors.labels(operation, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


router = APIRouter()


# A plain def: the process collector reads /proc, so FastAPI runs this in its threadpool.
@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
