"""``daprforge demo``: a scripted tour of the local sidecar, printed as a table.

It starts a real sidecar on the embedded default components (state in SQLite) and walks
through the state API the way a service would use it: save, read with an ETag, a
concurrent update refused, a transaction, and a delete.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from daprforge.launch import SidecarProcess

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
    table = Table(title="daprforge sidecar: state round-trip", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("request")
    table.add_column("status", justify="right")
    table.add_column("result")
    for i, step in enumerate(steps, 1):
        style = "green" if step.ok else "bold red"
        table.add_row(str(i), step.action, step.request, f"[{style}]{step.status}[/]", step.outcome)
    console.print(table)


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
    render(steps, console)
    failed = [s for s in steps if not s.ok]
    if failed:
        console.print(f"[bold red]{len(failed)} step(s) did not answer as Dapr would.[/]")
        return False
    console.print(
        f"[green]All {len(steps)} steps returned the status the Dapr HTTP API specifies.[/]"
    )
    return True
