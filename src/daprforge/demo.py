"""``daprforge demo``: a scripted tour of the local sidecar and of generated services,
printed as one table.

1. A real sidecar on the embedded default components (state in SQLite), used the way a
   service would use the state API: save, read with an ETag, a concurrent update refused, a
   transaction, and a delete.
2. Two apps with their own sidecars and a Redis pub/sub: an event published by one reaches
   the other (skipped when Redis is not reachable).
3. One service of each kind generated into a scratch folder and run together with one
   ``daprforge run``, each answering a real request (:mod:`daprforge.demo_services`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from daprforge.launch import SidecarProcess, free_port

STORE = "statestore"


@dataclass
class Step:
    action: str
    request: str
    status: int
    outcome: str
    expected: int
    check: bool = True
    """False when the status was right but the answer was not (wrong body, missing ETag)."""

    @property
    def ok(self) -> bool:
        return self.status == self.expected and self.check


def short(response: httpx.Response) -> str:
    if not response.content:
        return "(empty)"
    try:
        body = response.json()
    except ValueError:
        return response.text[:80]
    if isinstance(body, dict) and "errorCode" in body:
        return f"{body['errorCode']}: {body['message'][:60]}…"
    if isinstance(body, dict) and {"title", "status"} <= body.keys():  # RFC 9457 problem
        return f"{body['title']}: {body.get('detail', '')}"[:80]
    return json.dumps(body)[:80]


async def state_tour(client: httpx.AsyncClient) -> list[Step]:
    steps: list[Step] = []
    base = f"/v1.0/state/{STORE}"

    async def record(action: str, label: str, expected: int, response: httpx.Response) -> None:
        steps.append(Step(action, label, response.status_code, short(response), expected))

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


def render(parts: Sequence[Sequence[Step]], console: Console) -> None:
    """One table; a rule between the parts (sidecar, two apps, generated services)."""
    table = Table(
        title="daprforge demo: sidecar state, pub/sub, invocation; generated services",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("request")
    table.add_column("status", justify="right")
    table.add_column("result")
    number = 0
    for part in filter(None, parts):
        if number:
            table.add_section()
        for step in part:
            number += 1
            style = "green" if step.ok else "bold red"
            status = Text(str(step.status), style=style)
            cells = (Text(step.action), Text(step.request), status, Text(step.outcome))
            table.add_row(str(number), *cells)  # Text: a "[...]" in an answer is not markup
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
    await asyncio.to_thread(resources.mkdir)
    await asyncio.to_thread((resources / "pubsub.yaml").write_text, COMPONENTS)
    topic_stream = "lesson-completed"
    env = {"DAPRFORGE_DATA_DIR": str(tmp / "data")}
    app_port = free_port()
    app = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "daprforge.demo_app:app",
        "--port", str(app_port), "--log-level", "warning",
    )  # fmt: skip
    tracker = SidecarProcess(
        "progress-tracker",
        resources_paths=[resources],
        app_port=app_port,
        env=env,
        log_file=tmp / "progress-tracker.log",
    )
    publisher = SidecarProcess(
        "learner-api", resources_paths=[resources], env=env, log_file=tmp / "learner-api.log"
    )
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
                Step("publish (learner-api)", "POST publish", r.status_code, short(r), 204)
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
    """Every step; False if one failed. SIGTERM stops it as Ctrl-C does: what it started is
    stopped and its temporary folders are removed."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await _run_steps(console)
    except asyncio.CancelledError:
        if not terminated:
            raise
        console.print("[bold red]SIGTERM: the demo stopped what it had started.[/]")
        return False
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run_steps(console: Console) -> bool:
    with tempfile.TemporaryDirectory(prefix="daprforge-demo-") as tmp:
        env = {"DAPRFORGE_DATA_DIR": str(Path(tmp) / "data")}
        with console.status("starting the sidecar (embedded components: sqlite, in-memory)…"):
            sidecar = SidecarProcess("demo", env=env, log_file=Path(tmp) / "sidecar.log")
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
        pubsub: list[Step] = []
        if await asyncio.to_thread(_redis_reachable):
            pubsub = await two_apps_tour(Path(tmp), console)
        else:
            console.print(
                "[yellow]Redis is not reachable on 127.0.0.1:6379: skipping the two-app "
                "pub/sub step (pubsub.in-memory is local to one sidecar, as in Dapr).[/]"
            )
    from daprforge.demo_services import services_tour  # it builds on Step, defined here

    services = await services_tour(console)
    render([steps, pubsub, services.steps], console)
    every = [*steps, *pubsub, *services.steps]
    failed = [s for s in every if not s.ok]
    if failed:
        console.print(f"[bold red]{len(failed)} step(s) did not answer as expected.[/]")
    for problem in services.problems:
        console.print(Text(problem, style="bold red"), soft_wrap=True)
    if services.log_tail:
        console.print(f"[bold]last {len(services.log_tail)} lines of the daprforge run log:[/]")
        for line in services.log_tail:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if failed or not services.ok:
        return False
    console.print(f"[green]All {len(every)} steps returned the expected status and answer.[/]")
    return True
