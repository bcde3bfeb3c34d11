"""FastAPI dependencies for what the app factory puts on ``app.state``.

@router.post("/orders")
async def create(order: Order, dapr: DaprDep) -> Order: ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from daprforge.client import DaprClient
from daprforge.service.settings import ServiceSettings


def get_dapr(request: Request) -> DaprClient:
    """The app's DaprClient, created in the lifespan by ``create_app``."""
    dapr = getattr(request.app.state, "dapr", None)
    if not isinstance(dapr, DaprClient):
        raise RuntimeError(
            "no DaprClient on app.state.dapr: build the app with daprforge.service.create_app "
            "(or set app.state.dapr in your lifespan)"
        )
    return dapr


def get_settings(request: Request) -> ServiceSettings:
    settings = getattr(request.app.state, "settings", None)
    if not isinstance(settings, ServiceSettings):
        raise RuntimeError(
            "no ServiceSettings on app.state.settings: build the app with "
            "daprforge.service.create_app"
        )
    return settings


# The dependencies are ``async`` for FastAPI's sake: it runs a plain ``def`` dependency in
# its thread pool, a thread hop on every request for an attribute lookup.
async def _dapr(request: Request) -> DaprClient:
    return get_dapr(request)


async def _settings(request: Request) -> ServiceSettings:
    return get_settings(request)


DaprDep = Annotated[DaprClient, Depends(_dapr)]
SettingsDep = Annotated[ServiceSettings, Depends(_settings)]
