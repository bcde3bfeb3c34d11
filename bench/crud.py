"""The generated crud-api against a seed-style implementation, through the local sidecar.

Run with ``.venv/bin/python bench/crud.py`` (``--seconds``, ``--rounds``); never run by
tests. It generates a crud-api project (``daprforge new crud-api``), starts it with
uvicorn next to its own ``daprforge sidecar`` (the project's local components: SQLite
state, in-memory pub/sub), and does the same for the baseline: the brief's style of
service, a FastAPI app whose ``async def`` routes call the sidecar with the synchronous
``requests`` library (one new connection per call, blocking the event loop), validating
with the same Pydantic model.

Both are driven at concurrency 32 with ``GET /exercises/{id}`` (ids created beforehand)
and ``POST /exercises``; the load comes from a small keep-alive HTTP/1.1 client in its own
process. Rounds alternate baseline and generated runs, so a busy machine skews both
alike; the table shows medians and the ratio of throughputs (target: 5x).

A third service, "empty FastAPI", is the ceiling any FastAPI service reaches here: the same
routes under the same uvicorn, answering without state (a fixed item; the body validated
and echoed), serialized once as the generated routes do. Its ratio to the seed is the most
a FastAPI service could show on this machine; the seed is bound by its synchronous calls'
latency, the others by CPU. After each run the bench waits until the service and its
sidecar are idle (the generated one publishes its events in the background), so no run
pays for the one before.

The generated service does more per request than the baseline (a POST also writes its
outbox record and index in one state transaction, then publishes the event in the
background); the comparison is what a user of each gets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from _common import make_console, new_table, process_cpu_seconds, started, verdict
from daprforge.launch import free_port

TARGET = 5.0
COLUMNS = (
    "operation", "service", "req/s", "p50 ms", "p99 ms", "errors",
    "app CPU µs/req", "sidecar CPU µs/req", "ratio", "target",
)  # fmt: skip
CONCURRENCY = 32
RESOURCE = "exercise"
BODY = {"name": "Lists", "description": "Slicing and append", "tags": ["py"]}

SEED_APP = '''
"""The brief's style: sync `requests` to the sidecar inside async def."""
import os
import uuid

import requests
from fastapi import FastAPI, HTTPException

from app.models.schemas import ExerciseFields

DAPR = f"http://localhost:{os.environ['DAPR_HTTP_PORT']}"
app = FastAPI()


def save_state(key, value):
    response = requests.post(f"{DAPR}/v1.0/state/statestore", json=[{"key": key, "value": value}])
    return response.status_code == 204


def get_state(key):
    response = requests.get(f"{DAPR}/v1.0/state/statestore/{key}")
    if response.status_code == 200:
        return response.json()
    return None


@app.post("/exercises", status_code=201)
async def create(body: ExerciseFields):
    item = {"id": uuid.uuid4().hex, **body.model_dump()}
    if not save_state(f"exercise:{item['id']}", item):
        raise HTTPException(500, "state store error")
    return item


@app.get("/exercises/{item_id}")
async def read(item_id: str):
    item = get_state(f"exercise:{item_id}")
    if item is None:
        raise HTTPException(404, "not found")
    return item
'''


CEILING_APP = '''
"""The ceiling: the same routes in plain FastAPI, with no state behind them."""
import json
import uuid

from fastapi import FastAPI, Response

from app.models.schemas import ExerciseFields

app = FastAPI()
ITEM = {"id": "0" * 24, "name": "Lists", "description": "Slicing and append", "tags": ["py"]}


@app.post("/exercises", status_code=201)
async def create(body: ExerciseFields) -> Response:
    item = {"id": uuid.uuid4().hex, **body.model_dump(mode="json")}
    return Response(json.dumps(item), 201, media_type="application/json")


@app.get("/exercises/{item_id}")
async def read(item_id: str) -> Response:
    body = json.dumps({**ITEM, "id": item_id})
    return Response(body, media_type="application/json", headers={"etag": \'"1"\'})
'''

SERVICES = ("seed-style", "generated", "empty FastAPI")


# --------------------------------------------------------------------------- the load


async def _load(
    port: int, method: str, paths: list[str], body: bytes, conc: int, seconds: float
) -> dict[str, float]:
    """``conc`` keep-alive connections sending requests for ``seconds``; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                path = random.choice(paths)
                head = (
                    f"{method} {path} HTTP/1.1\r\nhost: bench\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                )
                start = time.perf_counter()
                writer.write(head.encode() + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - start) * 1000)
                if int(status_line.split()[1]) >= 400:
                    errors += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "ops": len(latencies) / wall,
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "errors": errors,
    }


def load(port: int, method: str, paths: list[str], conc: int, seconds: float) -> dict[str, float]:
    """Run the load in its own process, so it does not share the bench's interpreter."""
    spec = json.dumps(
        {"port": port, "method": method, "paths": paths, "conc": conc, "seconds": seconds}
    )
    done = subprocess.run(
        [sys.executable, __file__, "--load", spec], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- the services


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    pids: tuple[int, int]
    """The app's and its sidecar's."""

    def cpu_seconds(self) -> tuple[float, float]:
        app, sidecar = self.pids
        return process_cpu_seconds(app), process_cpu_seconds(sidecar)

    def settled(self, most: float = 10.0) -> tuple[float, float]:
        """The CPU seconds once both processes are idle (under 2% for 0.2 s), so work
        left from a run is counted in it and not in the next one."""
        deadline = time.monotonic() + most
        now = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            before, now = now, self.cpu_seconds()
            if sum(now) - sum(before) < 0.004:
                break
        return now


@contextlib.contextmanager
def service(name: str, root: Path, module: str, tmp: Path) -> Iterator[Service]:
    """The app ``module`` (in ``root``) with its own sidecar and its own SQLite file."""
    app_port, dapr_port = free_port(), free_port()
    data = tmp / f"{name}-data"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DAPR_", "APP_", "OPENAI_"))
    }
    env |= {
        "DAPRFORGE_DATA_DIR": str(data),
        "DAPR_HTTP_PORT": str(dapr_port),
        "LOG_LEVEL": "WARNING",  # no access log line per request, on either side
        "LOG_JSON": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    components = tmp / f"{name}-components"
    components.mkdir()
    for path in (root / "components").glob("*.yaml"):
        text = path.read_text().replace(".data/state.db", str(tmp / f"{name}-state.db"))
        (components / path.name).write_text(text)
    sidecar = [
        sys.executable, "-m", "daprforge", "sidecar", "--app-id", "exercise-service",
        "--dapr-http-port", str(dapr_port), "--resources-path", str(components),
    ]  # fmt: skip
    app = [
        sys.executable, "-m", "uvicorn", module, "--port", str(app_port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with (
        started(
            sidecar,
            f"http://127.0.0.1:{dapr_port}/v1.0/healthz/outbound",
            tmp / f"{name}-sidecar.log",
            cwd=root,
            env=env,
        ) as sidecar_pid,
        started(
            app,
            f"http://127.0.0.1:{app_port}/exercises/{'0' * 24}",
            tmp / f"{name}-app.log",
            cwd=root,
            env=env,
        ) as app_pid,
    ):
        yield Service(name, app_port, (app_pid, sidecar_pid))


def seed_items(port: int, count: int) -> list[str]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        paths = []
        for _ in range(count):
            response = client.post("/exercises", json=BODY)
            response.raise_for_status()
            paths.append(f"/exercises/{response.json()['id']}")
        return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=200, help="created before the GETs")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        spec = json.loads(args.load)
        body = json.dumps(BODY).encode() if spec["method"] == "POST" else b""
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
        result = asyncio.run(
            _load(spec["port"], spec["method"], spec["paths"], body, spec["conc"], spec["seconds"])
        )
        print(json.dumps(result))
        return 0

    console = make_console()
    with tempfile.TemporaryDirectory(prefix="bench-crud-") as scratch:
        tmp = Path(scratch)
        root = tmp / "exercise-service"
        subprocess.run(
            [sys.executable, "-m", "daprforge", "new", "crud-api", "exercise-service",
             "--resource", RESOURCE, "--defaults", "--dir", str(root)],
            check=True, capture_output=True,
        )  # fmt: skip
        (root / "seed_app.py").write_text(SEED_APP)
        (root / "ceiling_app.py").write_text(CEILING_APP)
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        with (
            service("seed-style", root, "seed_app:app", tmp) as seed,
            service("generated", root, "app.main:app", tmp) as generated,
            service("empty FastAPI", root, "ceiling_app:app", tmp) as ceiling,
        ):
            services = (seed, generated, ceiling)
            paths = {s.name: seed_items(s.port, args.items) for s in services}
            for op in ("GET", "POST"):
                for s in services:  # warm-up
                    load(
                        s.port, op, paths[s.name] if op == "GET" else ["/exercises"], CONCURRENCY, 1
                    )
                for _ in range(args.rounds):
                    for s in services:
                        targets = paths[s.name] if op == "GET" else ["/exercises"]
                        before = s.cpu_seconds()
                        run = load(s.port, op, targets, CONCURRENCY, args.seconds)
                        after = s.settled()
                        requests = run["ops"] * args.seconds
                        run["app_us"] = (after[0] - before[0]) / requests * 1e6
                        run["sidecar_us"] = (after[1] - before[1]) / requests * 1e6
                        results.setdefault((op, s.name), []).append(run)

    table = new_table(
        f"crud-api through the local sidecar, concurrency {CONCURRENCY}",
        f"medians of {args.rounds} rounds of {args.seconds:g}s; target: generated >= "
        f"{TARGET:g}x the seed-style throughput",
        COLUMNS,
        ["operation", "service"],
    )
    met = True
    for op, path in (("GET", "GET /exercises/{id}"), ("POST", "POST /exercises")):
        base = statistics.median(r["ops"] for r in results[(op, "seed-style")])
        for name in SERVICES:
            runs = results[(op, name)]
            ops = statistics.median(r["ops"] for r in runs)
            ratio = ops / base if base else 0.0
            is_generated = name == "generated"
            if is_generated:
                met = met and ratio >= TARGET
            table.add_row(
                path,
                name,
                f"{ops:,.0f}",
                f"{statistics.median(r['p50'] for r in runs):.1f}",
                f"{statistics.median(r['p99'] for r in runs):.1f}",
                str(int(sum(r["errors"] for r in runs))),
                f"{statistics.median(r['app_us'] for r in runs):,.0f}",
                f"{statistics.median(r['sidecar_us'] for r in runs):,.0f}",
                f"{ratio:.2f}x",
                verdict(ratio >= TARGET) if is_generated else "",
            )
    console.print(table)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
