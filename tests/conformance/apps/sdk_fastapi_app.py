"""A FastAPI app written the way the official Dapr Python SDK teaches, with no daprforge code:
``DaprApp`` serves ``/dapr/subscribe`` and the ``@dapr_app.subscribe`` handler receives the
events. Run with uvicorn; configured by environment:

- ``PUBSUB_NAME``, ``TOPIC``: what to subscribe to;
- ``EVENTS_FILE``: every event the handler gets is appended to it as one JSON line;
- ``DAPR_HTTP_PORT``: the handler also saves each event's data in the sidecar's
  ``statestore`` under ``received-<event id>``, through the Dapr HTTP state API.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI

PUBSUB = os.environ["PUBSUB_NAME"]
TOPIC = os.environ["TOPIC"]
EVENTS_FILE = os.environ["EVENTS_FILE"]
DAPR_URL = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}"

app = FastAPI()
dapr_app = DaprApp(app)


@dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC)
def on_event(event_data: Any = Body()) -> None:  # noqa: B008 - the SDK's documented form
    with open(EVENTS_FILE, "a", encoding="utf-8") as events:
        events.write(json.dumps(event_data) + "\n")
    state = [{"key": f"received-{event_data['id']}", "value": event_data["data"]}]
    httpx.post(f"{DAPR_URL}/v1.0/state/statestore", json=state, timeout=5).raise_for_status()
