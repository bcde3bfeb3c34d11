"""A crud service built the way the generated crud-api builds its own: a resource spec,
a ResourceStore in the lifespan, the routes from ``resource_router``."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from daprforge.resources import (
    Resource,
    ResourceOptions,
    ResourceSpec,
    ResourceStore,
    resource_router,
)
from daprforge.service import ServiceSettings, create_app

Tag = Annotated[str, Field(min_length=1, max_length=50)]


class Level(enum.StrEnum):
    beginner = "beginner"
    advanced = "advanced"


class ExerciseFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    level: Level = Level.beginner
    points: int = Field(default=0, ge=0, le=1_000_000)
    tags: list[Tag] = Field(default_factory=list, max_length=100)


class Exercise(ExerciseFields, Resource):
    pass


SPEC = ResourceSpec(
    name="exercise",
    plural="exercises",
    fields=ExerciseFields,
    model=Exercise,
    filters=("name", "level", "points"),
    sorts=("name", "points"),
)


async def get_store(request: Request) -> ResourceStore[Any]:
    store = request.app.state.store
    assert isinstance(store, ResourceStore)
    return store


def build_app(settings: ServiceSettings, **options: Any) -> FastAPI:
    resource_options = ResourceOptions(app_id=settings.app_id, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = ResourceStore(app.state.dapr, SPEC, resource_options)
        app.state.store = store
        await store.start()
        try:
            yield
        finally:
            await store.close()

    app = create_app(settings, lifespan=lifespan)
    app.include_router(resource_router(SPEC, get_store, max_limit=100))
    return app
