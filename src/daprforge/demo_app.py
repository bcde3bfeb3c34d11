"""The demo's second service: subscribes to ``lesson-completed`` and keeps a tally.

Run by ``daprforge demo`` with uvicorn; its sidecar delivers events to ``/events`` and
service invocation reaches ``/progress/{learner}``. It deliberately uses nothing but
Starlette, to show that the sidecar speaks plain Dapr HTTP to any app.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

received: list[dict[str, Any]] = []


async def subscribe(request: Request) -> JSONResponse:
    return JSONResponse([{"pubsubname": "pubsub", "topic": "lesson-completed", "route": "/events"}])


async def events(request: Request) -> JSONResponse:
    event = json.loads(await request.body())
    received.append(event)
    return JSONResponse({"status": "SUCCESS"})


async def progress(request: Request) -> JSONResponse:
    learner = request.path_params["learner"]
    lessons = [e["data"]["lesson"] for e in received if e["data"].get("learner") == learner]
    return JSONResponse({"learner": learner, "lessons": lessons, "events": received})


app = Starlette(
    routes=[
        Route("/dapr/subscribe", subscribe),
        Route("/events", events, methods=["POST"]),
        Route("/progress/{learner}", progress),
    ]
)
