"""``daprforge demo``: a scripted tour of the local sidecar, printed as a table.

It starts a real sidecar on the embedded default components (state in SQLite) and walks
through the state API the way a service would use it: save, read with an ETag, a
concurrent update refused, a transaction, and a delete.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from daprforge.launch import SidecarProcess, free_port

STORE = "statestore"


@dataclass
class Step:
    action: str
    request: str
    status: int
    outcome: str
    expected: int

    @property
    def ok(self) -> bool:
        return self.status == self.expected


def _short(response: httpx.Response) -> str:
    if not response.content:
        return "(empty)"
    try:
        body = response.json()
    except ValueError:
        return response.text[:80]
    if isinstance(body, dict) and "errorCode" in body:
        return f"{body['errorCode']}: {body['message'][:60]}…"
    return json.dumps(body)[:80]


async def state_tour(client: httpx.AsyncClient) -> list[Step]:
    steps: list[Step] = []
    base = f"/v1.0/state/{STORE}"

    async def record(action: str, label: str, expected: int, response: httpx.Response) -> None:
        steps.append(Step(action, label, response.status_code, _short(response), expected))

    learner = {"name": "Ada", "level": 1}
    r = await client.post(base, json=[{"key": "learner-42", "value": learner}])
    await record("save", "POST learner-42", 204, r)

    r = await client.get(f"{base}/learner-42")
    etag = r.headers.get("etag", "")
    await record("get", "GET learner-42", 200, r)
    steps[-1].outcome += f"  ETag {etag[:12]}…"

    r = await client.post(
        base, json=[{"key": "learner-42", "value": {**learner, "level": 2}, "etag": etag}]
    )
    await record("update with current ETag", "POST learner-42 + etag", 204, r)

    r = await client.post(
        base, json=[{"key": "learner-42", "value": {**learner, "level": 9}, "etag": etag}]
    )
    await record("update with stale ETag", "POST learner-42 + old etag", 409, r)

    r = await client.post(
        f"{base}/transaction",
        json={
            "operations": [
                {"operation": "upsert", "request": {"key": "progress-42", "value": {"done": 3}}},
                {"operation": "upsert", "request": {"key": "streak-42", "value": 5}},
            ]
        },
    )
    await record("transaction (2 upserts)", "POST transaction", 204, r)

    r = await client.post(f"{base}/bulk", json={"keys": ["learner-42", "progress-42", "streak-42"]})
    await record("bulk get", "POST bulk", 200, r)
    steps[-1].outcome = ", ".join(f"{e['key']}={json.dumps(e.get('data'))}" for e in r.json())[:80]

    r = await client.delete(f"{base}/learner-42")
    await record("delete", "DELETE learner-42", 204, r)

    r = await client.get(f"{base}/learner-42")
    await record("get after delete", "GET learner-42", 204, r)
    return steps


def render(steps: list[Step], console: Console) -> None:
    table = Table(title="daprforge sidecar: state, pub/sub, invocation", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("request")
    table.add_column("status", justify="right")
    table.add_column("result")
    for i, step in enumerate(steps, 1):
        style = "green" if step.ok else "bold red"
        table.add_row(str(i), step.action, step.request, f"[{style}]{step.status}[/]", step.outcome)
    console.print(table)


REDIS = ("127.0.0.1", 6379)
COMPONENTS = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:6379"}
"""


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


async def _wait_for(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> bool:
    """Poll ``check`` until it is true; False if it never was within ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def two_apps_tour(tmp: Path, console: Console) -> list[Step]:
    """learner-api publishes ``lesson-completed``; progress-tracker (its own process and
    sidecar) receives it, and learner-api then asks it for the learner's progress."""
    resources = tmp / "components"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(COMPONENTS)
    topic_stream = "lesson-completed"
    env = {"DAPRFORGE_DATA_DIR": str(tmp / "data")}
    app_port = free_port()
    app = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "daprforge.demo_app:app",
        "--port", str(app_port), "--log-level", "warning",
    )  # fmt: skip
    tracker = SidecarProcess(
        "progress-tracker", resources_paths=[resources], app_port=app_port, env=env
    )
    publisher = SidecarProcess("learner-api", resources_paths=[resources], env=env)
    steps: list[Step] = []
    try:
        with console.status("starting progress-tracker and learner-api with their sidecars…"):
            await asyncio.gather(tracker.start(), publisher.start())
            async with httpx.AsyncClient(timeout=2) as probe:

                async def tracker_ready() -> bool:
                    response = await probe.get(f"{tracker.url}/v1.0/healthz")
                    return response.status_code == 204

                await _wait_for(tracker_ready)
        async with httpx.AsyncClient(base_url=publisher.url, timeout=10) as client:
            r = await client.post(
                f"/v1.0/publish/pubsub/{topic_stream}", json={"learner": "42", "lesson": "loops"}
            )
            steps.append(
                Step("publish (learner-api)", "POST publish", r.status_code, _short(r), 204)
            )

            async def delivered() -> bool:
                got = await client.get("/v1.0/invoke/progress-tracker/method/progress/42")
                return got.status_code == 200 and bool(got.json()["lessons"])

            await _wait_for(delivered)
            r = await client.get("/v1.0/invoke/progress-tracker/method/progress/42")
            outcome = "no event arrived"
            if r.status_code == 200 and r.json()["events"]:
                event = r.json()["events"][0]
                outcome = (
                    f"lessons={r.json()['lessons']}  source={event['source']} type={event['type']}"
                )
            ok = r.status_code == 200 and bool(r.json().get("lessons"))
            steps.append(
                Step(
                    "received by progress-tracker",
                    "invoke progress/42",
                    r.status_code if ok else 0,
                    outcome,
                    200,
                )
            )
    finally:
        await asyncio.gather(tracker.stop(), publisher.stop())
        app.terminate()
        await app.wait()
        await _delete_stream(topic_stream)
    return steps


async def _delete_stream(stream: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        await client.delete(stream)
    finally:
        await client.aclose()


async def run_demo(console: Console) -> bool:
    with tempfile.TemporaryDirectory(prefix="daprforge-demo-") as tmp:
        env = {"DAPRFORGE_DATA_DIR": str(Path(tmp) / "data")}
        with console.status("starting the sidecar (embedded components: sqlite, in-memory)…"):
            sidecar = SidecarProcess("demo", env=env)
            await sidecar.start()
        try:
            console.print(f"sidecar ready on {sidecar.url}\n")
            async with httpx.AsyncClient(base_url=sidecar.url, timeout=10) as client:
                metadata = (await client.get("/v1.0/metadata")).json()
                for component in metadata.get("components", []):
                    console.print(
                        f"  component [bold]{component['name']}[/]: "
                        f"{component['type']}/{component['version']}"
                    )
                console.print()
                steps = await state_tour(client)
        finally:
            await sidecar.stop()
        if _redis_reachable():
            steps += await two_apps_tour(Path(tmp), console)
        else:
            console.print(
                "[yellow]Redis is not reachable on 127.0.0.1:6379: skipping the two-app "
                "pub/sub step (pubsub.in-memory is local to one sidecar, as in Dapr).[/]"
            )
    render(steps, console)
    failed = [s for s in steps if not s.ok]
    if failed:
        console.print(f"[bold red]{len(failed)} step(s) did not answer as Dapr would.[/]")
        return False
    console.print(
        f"[green]All {len(steps)} steps returned the status the Dapr HTTP API specifies.[/]"
    )
    return True
