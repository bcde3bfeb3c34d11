"""Interop: an app built with the official Dapr Python SDK's FastAPI extension (``DaprApp``
and its ``subscribe`` decorator; ``dapr[fastapi]``, or ``dapr-ext-fastapi`` before Dapr
1.19) gets events through the daprforge sidecar, with no daprforge code in the app.

The app (``tests/conformance/apps/sdk_fastapi_app.py``) runs under uvicorn as its own
process; the sidecar is pointed at it with ``--app-port``, reads its ``/dapr/subscribe``
(the SDK's v1 ``route`` form, reference §2.3) and delivers a published event to the SDK's
handler, which writes it to a file and saves it through the sidecar's state API.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conformance._apps import APPS, spawn_app
from tests.conformance._pubsub import memory_pubsub, wait_healthy, write_resources
from tests.conformance._support import component, describe, free_port, spawn_sidecar
from tests.conftest import in_ci

PUBSUB, TOPIC = "orders-pubsub", "orders"


def require_sdk() -> None:
    if importlib.util.find_spec("dapr.ext.fastapi") is not None:
        return
    reason = "the Dapr SDK's FastAPI extension is missing (pip install 'dapr[fastapi]')"
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


async def test_sdk_fastapi_app_receives_events(tmp_path: Path) -> None:
    require_sdk()
    resources = write_resources(
        tmp_path / "resources",
        [memory_pubsub(PUBSUB), component("statestore", "state.in-memory")],
    )
    events_file = tmp_path / "events.jsonl"
    app_port = free_port()
    sidecar = await spawn_sidecar(
        tmp_path, app_id="sdk-app", resources=[resources], app_port=app_port
    )
    app = None
    try:
        env = {
            **os.environ,
            "PUBSUB_NAME": PUBSUB,
            "TOPIC": TOPIC,
            "EVENTS_FILE": str(events_file),
            "DAPR_HTTP_PORT": str(sidecar.port),
        }
        cmd = [sys.executable, "-m", "uvicorn", "sdk_fastapi_app:app", "--app-dir", str(APPS)]
        cmd += ["--host", "127.0.0.1", "--port", str(app_port), "--log-level", "warning"]
        app = await spawn_app(tmp_path, cmd, port=app_port, name="sdk-app", env=env)
        await app.wait_ready("/dapr/subscribe")
        await sidecar.wait_ready()
        await wait_healthy(sidecar)

        async with httpx.AsyncClient(base_url=sidecar.url, timeout=10.0) as client:
            meta = (await client.get("/v1.0/metadata")).json()
            subs = [s for s in meta.get("subscriptions", []) if s.get("topic") == TOPIC]
            assert len(subs) == 1, meta
            assert subs[0]["pubsubname"] == PUBSUB
            assert subs[0]["type"] == "PROGRAMMATIC"
            assert [r["path"] for r in subs[0]["rules"]] == [f"/events/{PUBSUB}/{TOPIC}"]

            resp = await client.post(
                f"/v1.0/publish/{PUBSUB}/{TOPIC}",
                json={"orderId": 42, "item": "book"},
            )
            assert resp.status_code == 204, describe(resp)

            deadline = time.monotonic() + 15
            while True:
                if events_file.exists() or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert events_file.exists(), f"the SDK handler got nothing\n{app.log()}"
            lines = events_file.read_text().splitlines()
            assert len(lines) == 1, lines
            event = json.loads(lines[0])
            assert event["data"] == {"orderId": 42, "item": "book"}
            assert event["source"] == "sdk-app"
            assert event["topic"] == TOPIC
            assert event["pubsubname"] == PUBSUB

            saved = None
            while time.monotonic() < deadline:
                resp = await client.get(f"/v1.0/state/statestore/received-{event['id']}")
                if resp.status_code == 200:
                    saved = resp.json()
                    break
                await asyncio.sleep(0.05)
            assert saved == {"orderId": 42, "item": "book"}, f"{app.log()}\n{sidecar.log()}"
    finally:
        await sidecar.stop()
        if app is not None:
            await app.stop()
