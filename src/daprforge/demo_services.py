"""The last part of ``daprforge demo``: one generated service of each kind, run together.

1. Generate an ai-agent, a crud-api, an event-processor and a code-executor into a scratch
   folder, as ``daprforge new KIND NAME --defaults --port N`` does (distinct ports).
2. Write one Multi-App Run template (``dapr.yaml``) listing the four apps, each entry taken
   from the project's own ``dapr.yaml``; every app keeps its own ``components/``.
3. Start them with ONE ``daprforge run``: a subprocess in its own session, its output in a
   log file. Wait until every app answers ``/ready`` and its sidecar ``/v1.0/healthz``.
4. Send each a real request: an AI answer (offline: the run's environment has no OPENAI_*
   variables), a CRUD create/read/update with ETags, an event published through the
   event-processor's own sidecar (its pub/sub is in-memory, local to that sidecar, as in
   Dapr) and then counted for its learner in ``/stats``, and a code execution.
5. Stop the run (SIGINT, then SIGTERM, then SIGKILL) and remove the scratch folder.

A problem anywhere is reported with the last lines of the run's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from rich.console import Console

from daprforge.demo import Step, short
from daprforge.generator import GeneratorError, NewRequest, prepare, render, write
from daprforge.launch import free_port

RESOURCE = "exercise"
TOPIC = "learning-events"
KIND_FLAGS: dict[str, tuple[str, ...]] = {
    "ai-agent": ("--role", "concepts"),
    "crud-api": ("--resource", RESOURCE),
    "event-processor": ("--topic", TOPIC),
    "code-executor": (),
}
READY_WITHIN = 30.0
"""Seconds for every app to come up (a few are usual)."""
GRACE = 5.0
"""``daprforge run --grace-period``: seconds its children get between SIGTERM and SIGKILL."""
LOG_LINES = 30
RUNTIME_MODULES = ("uvicorn", "openai")
"""What the generated apps import beyond daprforge's base install
(``.[sidecar,ai,sandbox,dev]``)."""


class DemoError(Exception):
    """A step that could not go on (the run exited, an app never became ready…)."""


@dataclass(frozen=True)
class Service:
    """One generated project: its kind (also its name and app id) and its ports."""

    kind: str
    root: Path
    port: int
    dapr_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_port}"


@dataclass
class ServicesReport:
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(step.ok for step in self.steps)


# ---------------------------------------------------------------------- generate and start


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (see :func:`daprforge.launch.free_port`)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def generate(scratch: Path) -> list[Service]:
    """Every kind, rendered and written as ``daprforge new`` would (blocking: run in a thread)."""
    ports = free_ports(2 * len(KIND_FLAGS))
    services = []
    for i, (kind, flags) in enumerate(KIND_FLAGS.items()):
        port, dapr_port = ports[2 * i], ports[2 * i + 1]
        request = NewRequest(kind=kind, name=kind, port=port, flags=flags)
        project = prepare(request, cwd=scratch)  # no prompter: defaults, as --defaults
        write(project, render(project))
        services.append(Service(kind, project.target, port, dapr_port))
    return services


def write_run_file(scratch: Path, services: list[Service]) -> Path:
    """One ``dapr.yaml`` for all four apps, each entry from the project's own template with
    its folder, a fixed sidecar port (to publish through) and its logs on the run's output."""
    apps = []
    for service in services:
        own = yaml.safe_load((service.root / "dapr.yaml").read_text())
        (app,) = own["apps"]
        app.update(
            appDirPath=f"./{service.root.relative_to(scratch)}",
            daprHTTPPort=service.dapr_port,
            appLogDestination="console",
            daprdLogDestination="console",
        )
        apps.append(app)
    path = scratch / "dapr.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "daprforge demo", "apps": apps}))
    return path


def run_env(scratch: Path) -> dict[str, str]:
    """Ours, minus the OpenAI settings (the agent answers offline) and any Dapr/app variables
    of the calling shell (an API token there would lock us out); this interpreter's folder
    first on PATH, because the apps' command is ``python -m uvicorn``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "DAPR_", "APP_"))
    }
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    env["DAPRFORGE_DATA_DIR"] = str(scratch / "data")  # the sidecars' name registry
    env["COLUMNS"] = "120"
    return env


async def start_run(run_file: Path, log_path: Path) -> asyncio.subprocess.Process:
    log = await asyncio.to_thread(log_path.open, "wb")
    with log:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daprforge", "run", "--run-file", str(run_file),
            "--grace-period", str(GRACE), "--health-timeout", str(READY_WITHIN),
            cwd=run_file.parent,
            env=run_env(run_file.parent),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


async def wait_ready(services: list[Service], run: asyncio.subprocess.Process) -> None:
    """Until every app's ``/ready`` is 200 and its sidecar's ``/v1.0/healthz`` 204 (which
    waits for the app's subscriptions); DemoError if the run exits or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WITHIN
    waiting = list(services)
    async with httpx.AsyncClient(timeout=1.0) as client:

        async def ready(service: Service) -> bool:
            try:
                app = await client.get(f"{service.url}/ready")
                sidecar = await client.get(f"{service.dapr_url}/v1.0/healthz")
            except httpx.TransportError:
                return False
            return app.status_code == 200 and sidecar.status_code == 204

        while waiting:
            if run.returncode is not None:
                raise DemoError(f"daprforge run exited (code {run.returncode}) during start-up")
            if loop.time() > deadline:
                names = ", ".join(service.kind for service in waiting)
                raise DemoError(f"not ready after {READY_WITHIN:g}s: {names}")
            results = await asyncio.gather(*(ready(service) for service in waiting))
            waiting = [s for s, ok in zip(waiting, results, strict=True) if not ok]
            if waiting:
                await asyncio.sleep(0.1)


async def stop_run(run: asyncio.subprocess.Process, scratch: Path) -> int:
    """SIGINT to the run's process group (it stops apps, then sidecars); a second signal makes
    it kill them at once; SIGKILL last. Then whatever it left behind in the scratch folder."""
    try:
        for signum, wait in ((signal.SIGINT, 2 * GRACE + 5), (signal.SIGTERM, 5.0)):
            if run.returncode is not None:
                return run.returncode
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signum)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(run.wait(), wait)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        return await run.wait()
    finally:
        await asyncio.to_thread(kill_left_in, scratch)


def kill_left_in(folder: Path) -> None:
    """SIGKILL processes working in ``folder`` (apps and sidecars of a run that was killed
    itself: each leads its own session, so killing the run's group does not reach them)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def tail(path: Path, count: int = LOG_LINES) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-count:]


# ---------------------------------------------------------------------- the requests


async def ask_agent(client: httpx.AsyncClient, service: Service) -> list[Step]:
    r = await client.post(
        f"{service.url}/process", json={"prompt": "Explain Python lists in one sentence."}
    )
    step = Step("ai-agent: AI answer", "POST /process", r.status_code, short(r), 200)
    if r.status_code == 200:
        body = r.json()
        # Offline, the concepts tutor explains from its built-in set: "Lists: a list is ...".
        text = str(body.get("response"))
        answer = text.split("\n\n", 1)[-1]
        offline = body.get("provider") == "offline"
        step.check = offline and answer.startswith("Lists")
        step.outcome = f"offline={offline}  {clip(answer, 58)}"
    return [step]


async def crud_round(client: httpx.AsyncClient, service: Service) -> list[Step]:
    collection = f"{service.url}/{RESOURCE}s"
    r = await client.post(
        collection, json={"name": "Lists", "description": "Slicing and append", "tags": ["py"]}
    )
    created = Step("crud-api: create", f"POST /{RESOURCE}s", r.status_code, short(r), 201)
    if r.status_code != 201:
        return [created]
    location, etag = r.headers.get("location", ""), r.headers.get("etag", "")
    path = httpx.URL(location).path
    created.check = bool(location and etag)
    created.outcome = f"Location {clip(path, 24)}  ETag {clip(etag, 12)}"

    r = await client.get(f"{service.url}{path}")
    read = Step("crud-api: read", f"GET /{RESOURCE}s/{{id}}", r.status_code, short(r), 200)
    if r.status_code == 200:
        read.check = r.headers.get("etag") == etag and r.json()["name"] == "Lists"
        read.outcome = f"name={r.json()['name']!r}  same ETag {clip(etag, 12)}"

    r = await client.put(
        f"{service.url}{path}",
        json={"name": "Lists and tuples", "tags": ["py"]},
        headers={"If-Match": etag},
    )
    updated = Step("crud-api: update", "PUT + If-Match: ETag", r.status_code, "", 200)
    new_etag = r.headers.get("etag", "")
    updated.outcome = short(r)
    if r.status_code == 200:
        updated.check = bool(new_etag) and new_etag != etag
        updated.outcome = f"name={r.json()['name']!r}  new ETag {clip(new_etag, 12)}"

    r = await client.put(
        f"{service.url}{path}", json={"name": "Lost update"}, headers={"If-Match": etag}
    )
    stale = Step("crud-api: update, stale ETag", "PUT + If-Match: old", r.status_code, "", 412)
    stale.outcome = short(r)
    return [created, read, updated, stale]


async def event_round(client: httpx.AsyncClient, service: Service) -> list[Step]:
    event = {
        "learner_id": "ada",
        "activity": "exercise_completed",
        "exercise_id": "lists-1",
        "score": 90,
    }
    r = await client.post(f"{service.dapr_url}/v1.0/publish/pubsub/{TOPIC}", json=event)
    published = Step(
        "event-processor: publish", f"POST its sidecar /{TOPIC}", r.status_code, short(r), 204
    )
    if r.status_code != 204:
        return [published]

    async def stats() -> httpx.Response:
        return await client.get(f"{service.url}/stats/learners/ada")

    r = await poll(stats, lambda got: got.status_code == 200)
    step = Step("event-processor: aggregated", "GET /stats/learners/ada", r.status_code, "", 200)
    step.outcome = short(r)
    if r.status_code == 200:
        body = r.json()
        step.check = body["events"] == 1 and body["exercises_completed"] == 1
        step.outcome = (
            f"events={body['events']}  completed={body['exercises_completed']}  "
            f"average score={body['average_score']}"
        )
    return [published, step]


async def run_code(client: httpx.AsyncClient, service: Service) -> list[Step]:
    code = "print(6 * 7)"
    r = await client.post(f"{service.url}/execute", json={"code": code})
    step = Step("code-executor: run code", f"POST /execute {code}", r.status_code, short(r), 200)
    if r.status_code == 200:
        body = r.json()
        step.check = body["status"] == "ok" and body["stdout"] == "42\n"
        step.outcome = (
            f"stdout={body['stdout'].strip()}  status={body['status']}  "
            f"exit code {body['exit_code']}  {body['duration_ms']:.0f} ms"
        )
    return [step]


async def poll(
    get: Callable[[], Awaitable[httpx.Response]],
    done: Callable[[httpx.Response], bool],
    within: float = 10.0,
) -> httpx.Response:
    """``get()`` until ``done`` says so or time runs out; the last response either way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    response = await get()
    while not done(response) and loop.time() < deadline:
        await asyncio.sleep(0.1)
        response = await get()
    return response


REQUESTS: dict[str, Callable[[httpx.AsyncClient, Service], Awaitable[list[Step]]]] = {
    "ai-agent": ask_agent,
    "crud-api": crud_round,
    "event-processor": event_round,
    "code-executor": run_code,
}


async def exercise(service: Service) -> list[Step]:
    """The kind's requests; an HTTP failure becomes a failed step, not an exception."""
    async with httpx.AsyncClient(timeout=10) as client:
        try:
            return await REQUESTS[service.kind](client, service)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            return [Step(f"{service.kind}: request", service.url, 0, problem, 200)]


# ---------------------------------------------------------------------- the tour


async def services_tour(console: Console) -> ServicesReport:
    report = ServicesReport()
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="daprforge-demo-services-"))
    try:
        await _tour(scratch, console, report)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)
        console.print(f"removed {scratch}\n")
    return report


async def _tour(scratch: Path, console: Console, report: ServicesReport) -> None:
    missing = [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        report.problems.append(
            f"the generated services need {', '.join(missing)} in this environment: "
            "pip install -e '.[sidecar,ai,sandbox,dev]' (make demo does)"
        )
        return
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with console.status(f"generating {len(KIND_FLAGS)} services (daprforge new)…"):
            services = await asyncio.to_thread(generate, scratch)
            run_file = await asyncio.to_thread(write_run_file, scratch, services)
    except (GeneratorError, OSError) as exc:
        report.problems.append(f"generating the services failed: {exc}")
        return
    console.print(f"generated in {loop.time() - started:.1f}s, into {scratch}:")
    for service in services:
        console.print(
            f"  [bold]{service.kind}[/]: app on :{service.port}, sidecar on :{service.dapr_port}"
        )
    log_path = scratch / "run.log"
    started = loop.time()
    try:
        run = await start_run(run_file, log_path)
    except OSError as exc:
        report.problems.append(f"daprforge run could not start: {exc}")
        return
    try:
        count = len(services)
        with console.status(f"starting {count} apps and their sidecars (one daprforge run)…"):
            await wait_ready(services, run)
        console.print(f"daprforge run: {count} apps ready in {loop.time() - started:.1f}s")
        for steps in await asyncio.gather(*(exercise(service) for service in services)):
            report.steps += steps
    except DemoError as exc:
        report.problems.append(str(exc))
    finally:
        if not report.ok:  # the log as it was when the problem showed, before the stop
            report.log_tail = await asyncio.to_thread(tail, log_path)
        started = loop.time()
        code = await stop_run(run, scratch)
        console.print(f"daprforge run stopped in {loop.time() - started:.1f}s (exit code {code})")
        if code != 0:
            last = await asyncio.to_thread(tail, log_path, 1)
            report.problems.append(f"daprforge run ended with exit code {code}: {''.join(last)}")
            report.log_tail = report.log_tail or await asyncio.to_thread(tail, log_path)
