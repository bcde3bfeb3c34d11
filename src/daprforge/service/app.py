"""``create_app``: a FastAPI app with everything every service needs already wired.

    settings = Settings()                     # a ServiceSettings subclass
    app = create_app(settings, lifespan=my_lifespan)
    app.include_router(orders.router, dependencies=[Depends(require_api_key)])
    app.include_router(events)                # an EventRouter

What it adds: a DaprClient on ``app.state.dapr`` for the app's lifetime (reach it with the
``DaprDep`` dependency), ``/health``, ``/ready``, ``/metrics``, JSON logs with request and
trace ids, problem-JSON errors, and the body size limit. ``lifespan`` is the service's own
start-up and shut-down, run inside ours, so the client is there when it starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from daprforge.client import DaprClient
from daprforge.service import health, metrics
from daprforge.service.errors import install_error_handlers
from daprforge.service.health import ReadyCheck, add_ready_check
from daprforge.service.limits import BodySizeLimitMiddleware
from daprforge.service.logs import configure_logging
from daprforge.service.metrics import Metrics
from daprforge.service.middleware import RequestContextMiddleware
from daprforge.service.settings import ServiceSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Mapping[str, Any] | None]]


def create_app(
    settings: ServiceSettings | None = None,
    *,
    lifespan: Lifespan | None = None,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
    title: str | None = None,
    version: str = "0.1.0",
    **fastapi_options: Any,
) -> FastAPI:
    """Build the app; ``settings`` default to ``ServiceSettings()`` (the environment).
    Other keyword arguments go to ``FastAPI(...)``."""
    settings = settings or ServiceSettings()
    app_metrics = Metrics()

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        # Here rather than at import: uvicorn configures logging before it starts the app.
        configure_logging(settings.log_level, json_lines=settings.log_json, service=settings.app_id)
        token = settings.dapr_api_token
        async with DaprClient(
            settings.dapr_endpoint,
            api_token=token.get_secret_value() if token is not None else None,
            timeout=settings.dapr_timeout,
            observer=app_metrics.observe_dapr_call,
        ) as dapr:
            app.state.dapr = dapr
            if lifespan is None:
                yield {}
            else:
                async with lifespan(app) as state:
                    yield state or {}

    app = FastAPI(
        title=title or settings.app_id, version=version, lifespan=app_lifespan, **fastapi_options
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.ready_checks = {}
    for name, check in (ready_checks or {}).items():
        add_ready_check(app, name, check)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # The last middleware added runs first: the request context must wrap everything,
    # so a 413 from the size limit is logged and counted too.
    app.add_middleware(BodySizeLimitMiddleware, max_body_size=settings.max_body_size)
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics)
    return app
