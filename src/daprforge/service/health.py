"""``/health`` (liveness) and ``/ready`` (readiness).

``/health`` answers 200 as long as the process serves HTTP: it checks no dependency, so a
sidecar or database outage never gets the pod restarted. ``/ready`` runs every readiness
check at once, each bounded by ``ready_timeout``: the sidecar's outbound health (``dapr``)
plus whatever the service registered. Any failure makes it 503 with a body naming the
failing checks, which takes the pod out of load balancing until they pass again. Failure
reasons go to the log, not the response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import JSONResponse

from daprforge.service.dependencies import get_dapr, get_settings

log = logging.getLogger("daprforge.service")

ReadyCheck = Callable[[], Awaitable[bool | None]]
"""Passes unless it returns False or raises."""

router = APIRouter()
SIDECAR_CHECK = "dapr"


def add_ready_check(app: FastAPI, name: str, check: ReadyCheck) -> None:
    """Make ``/ready`` depend on ``check`` too."""
    checks: dict[str, ReadyCheck] = app.state.ready_checks
    if name in checks or name == SIDECAR_CHECK:
        raise ValueError(f"a readiness check named {name!r} exists already")
    checks[name] = check


@router.get("/health", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _run(name: str, check: ReadyCheck, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            passed = await check()
    except TimeoutError:
        log.warning("readiness check %r timed out after %ss", name, seconds)
        return "timeout"
    except Exception as exc:
        log.warning("readiness check %r failed: %r", name, exc)
        return "failing"
    if passed is False:
        log.warning("readiness check %r failed", name)
        return "failing"
    return "ok"


@router.get("/ready", include_in_schema=False)
async def ready(request: Request) -> JSONResponse:
    dapr = get_dapr(request)

    async def sidecar() -> bool:
        return await dapr.is_healthy(outbound=True)

    checks: dict[str, ReadyCheck] = {SIDECAR_CHECK: sidecar, **request.app.state.ready_checks}
    timeout = get_settings(request).ready_timeout
    results = await asyncio.gather(*(_run(n, c, timeout) for n, c in checks.items()))
    outcome = dict(zip(checks, results, strict=True))
    failing = [name for name, result in outcome.items() if result != "ok"]
    if failing:
        return JSONResponse(
            {"status": "unavailable", "failing": failing, "checks": outcome}, status_code=503
        )
    return JSONResponse({"status": "ready", "checks": outcome})
