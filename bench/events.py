"""Events/s end to end through a generated event-processor, against a bare subscriber.

Run with ``.venv/bin/python bench/events.py``; never run by tests.

What is measured, for pubsub.in-memory and pubsub.redis (Redis Streams on 127.0.0.1:6379):

- processor: the project ``daprforge new event-processor`` generates, served by uvicorn in
  its own process behind ``daprforge sidecar``. ``--events`` learning events (valid ones,
  spread over 100 learners) are bulk-published through that sidecar, 100 per request; the
  clock runs from the first publish until ``GET /stats`` counts them all. Each event is
  delivered, validated, read and written back in one state transaction with its
  idempotency marker (exactly once), as in production.
- bare: the same events, published the same way, to the minimal subscriber app of
  bench/pubsub.py (acks at once, counts), behind a sidecar with the same components: the
  raw publish → deliver → ack rate of the sidecar and broker.
- ratio = processor ÷ bare, each cell pairing runs taken seconds apart (median of
  ``--rounds``), so it says what the processor's work costs on this machine.

State is ``state.in-memory`` by default, so the figure is the pub/sub path plus the
processor's own work; ``--state postgres`` uses state.postgresql v2 on 127.0.0.1:5432
(database ``test``), the production store. With two or more CPUs (and taskset) the
sidecar runs on CPU 0 and the app on CPU 1. Loopback only; about a minute with defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from _common import (
    LOAD_CPU,
    SERVER_CPU,
    Machine,
    free_port,
    make_console,
    new_table,
    print_noise_notes,
    process_cpu_seconds,
)

COMPONENTS = ("in-memory", "redis")
PUBSUB = "pubsub"
STATE = "statestore"
APP_ID = "bench-events"
REDIS = ("127.0.0.1", 6379)
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
BATCH = 100
BENCH_PUBSUB = Path(__file__).resolve().with_name("pubsub.py")


def components(kind: str, state: str, table_prefix: str) -> list[dict[str, Any]]:
    metadata: list[dict[str, str]] = []
    if kind == "redis":
        metadata = [{"name": "redisHost", "value": f"{REDIS[0]}:{REDIS[1]}"}]
    state_spec: dict[str, Any] = {"type": "state.in-memory", "version": "v1", "metadata": []}
    if state == "postgres":
        state_spec = {
            "type": "state.postgresql",
            "version": "v2",
            "metadata": [
                {"name": "connectionString", "value": POSTGRES_URL},
                {"name": "tablePrefix", "value": table_prefix},
            ],
        }
    return [
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": PUBSUB},
            "spec": {"type": f"pubsub.{kind}", "version": "v1", "metadata": metadata},
        },
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": STATE},
            "spec": state_spec,
        },
    ]


def learning_events(count: int, run: str) -> list[dict[str, Any]]:
    """Bulk-publish entries: CloudEvents with unique ids, each carrying ``seq`` (which the
    bare subscriber counts; the processor's model ignores it)."""
    activities = ("exercise_started", "exercise_completed", "lesson_viewed")
    return [
        {
            "entryId": str(n),
            "contentType": "application/cloudevents+json",
            "event": {
                "id": f"{run}-{n}",
                "source": "bench",
                "type": "learning",
                "specversion": "1.0",
                "datacontenttype": "application/json",
                "data": {
                    "seq": n,
                    "learner_id": f"learner-{n % 100}",
                    "activity": activities[n % 3],
                    **({"score": 80} if n % 3 == 1 else {}),
                },
            },
        }
        for n in range(count)
    ]


@dataclass(frozen=True)
class Rate:
    events_per_s: float
    sidecar_ms: float
    """Sidecar CPU time per event (milliseconds)."""
    app_ms: float
    """App CPU time per event (milliseconds)."""


@dataclass
class World:
    """A sidecar and its app, ready: publish through ``sidecar``, count with ``count``."""

    sidecar: int
    app: int
    topic: str
    bare: bool
    sidecar_pid: int
    app_pid: int

    def cpu(self) -> tuple[float, float]:
        return process_cpu_seconds(self.sidecar_pid), process_cpu_seconds(self.app_pid)

    def count(self, http: httpx.Client) -> int:
        if self.bare:
            return int(http.get(f"http://127.0.0.1:{self.app}/stats").json()["seqs"])
        stats = http.get(f"http://127.0.0.1:{self.app}/stats").json()
        return int(stats["totals"]["events"])

    def reset(self, http: httpx.Client) -> None:
        if self.bare:
            http.post(f"http://127.0.0.1:{self.app}/reset")


class Bench:
    def __init__(self, console: Console, args: argparse.Namespace) -> None:
        self.console = console
        self.args = args
        self.machine = Machine()
        self.http = httpx.Client(timeout=60)
        self.rows: list[tuple[str, Rate, Rate]] = []

    @contextlib.contextmanager
    def world(self, kind: str, tmp: Path, project: Path | None, topic: str) -> Iterator[World]:
        name = "bare" if project is None else "processor"
        resources = tmp / f"resources-{kind}-{name}"
        resources.mkdir()
        docs = components(kind, self.args.state, f"bench_events_{uuid.uuid4().hex[:8]}_")
        (resources / "components.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        app_port, port = free_port(), free_port()
        if project is None:
            app_argv = [
                sys.executable, str(BENCH_PUBSUB), "--serve-subscriber", str(app_port),
                "--topic", topic,
            ]  # fmt: skip
            health = "/dapr/subscribe"
        else:
            env = {
                "DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{port}",
                "EVENTS_TOPIC": topic,
                "DEAD_LETTER_TOPIC": f"{topic}-dead",
                "NOTIFICATIONS_TOPIC": "",
                "LOG_LEVEL": "WARNING",
            }
            app_argv = [
                "env", "-C", str(project), *(f"{k}={v}" for k, v in env.items()),
                sys.executable, "-m", "uvicorn", "app.main:app",
                "--port", str(app_port), "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
            health = "/health"
        sidecar_argv = [
            sys.executable, "-m", "daprforge", "sidecar", "--app-id", f"{APP_ID}-{name}",
            "--app-port", str(app_port), "--dapr-http-port", str(port),
            "--resources-path", str(resources), "--log-level", "warn",
        ]  # fmt: skip
        app_log, sidecar_log = tmp / f"app-{kind}-{name}.log", tmp / f"sidecar-{kind}-{name}.log"
        with (
            self.machine.server(app_argv, app_port, health, app_log, LOAD_CPU) as app_pid,
            self.machine.server(
                sidecar_argv, port, "/v1.0/healthz", sidecar_log, SERVER_CPU
            ) as sidecar_pid,
        ):
            yield World(port, app_port, topic, project is None, sidecar_pid, app_pid)

    def run(self, world: World, count: int) -> Rate:
        """Publish ``count`` events and wait for all of them."""
        world.reset(self.http)
        base = world.count(self.http)  # the processor's totals keep earlier runs
        entries = learning_events(count, uuid.uuid4().hex[:8])
        url = f"http://127.0.0.1:{world.sidecar}/v1.0-alpha1/publish/bulk/{PUBSUB}/{world.topic}"
        failures: list[str] = []

        def publish() -> None:
            with httpx.Client(timeout=120) as client:
                for start in range(0, count, BATCH):
                    response = client.post(url, json=entries[start : start + BATCH])
                    if response.status_code != 204:
                        failures.append(response.text)
                        return

        cpu_before = world.cpu()
        started = time.monotonic()
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        deadline = started + self.args.timeout
        while world.count(self.http) < base + count:
            if failures:
                raise RuntimeError(f"publish failed: {failures[0]}")
            if time.monotonic() > deadline:
                arrived = world.count(self.http) - base
                raise RuntimeError(f"only {arrived} of {count} events arrived")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        publisher.join()
        sidecar_cpu, app_cpu = (
            after - before for after, before in zip(world.cpu(), cpu_before, strict=True)
        )
        return Rate(count / elapsed, sidecar_cpu / count * 1000, app_cpu / count * 1000)

    def component(self, kind: str, tmp: Path, project: Path) -> None:
        topic = f"bench-events-{uuid.uuid4().hex[:10]}"
        try:
            with (
                self.world(kind, tmp, None, f"{topic}-bare") as bare,
                self.world(kind, tmp, project, topic) as processor,
            ):
                self.run(bare, self.args.events // 4)  # warm-up
                self.run(processor, self.args.events // 4)
                bare_runs, runs = [], []
                for _ in range(self.args.rounds):
                    bare_runs.append(self.run(bare, self.args.events))
                    runs.append(self.run(processor, self.args.events))
                    self.console.log(
                        f"{kind}: bare {bare_runs[-1].events_per_s:.0f} events/s, "
                        f"processor {runs[-1].events_per_s:.0f} events/s"
                    )
                self.rows.append((kind, median_rate(bare_runs), median_rate(runs)))
        finally:
            if kind == "redis":
                with contextlib.suppress(Exception):
                    import redis

                    client = redis.Redis(host=REDIS[0], port=REDIS[1])
                    client.delete(topic, f"{topic}-bare", f"{topic}-dead")
                    client.close()

    def report(self) -> None:
        table = new_table(
            f"Events end to end through a generated event-processor (state: {self.args.state})",
            "events/s = events ÷ (first publish → all counted); ratio = processor ÷ bare",
            [
                "pub/sub", "bare events/s", "processor events/s", "ratio",
                "bare CPU ms/event (sidecar+app)", "processor CPU ms/event (sidecar+app)",
            ],
            ["pub/sub"],
        )  # fmt: skip
        for kind, bare, processor in self.rows:
            table.add_row(
                kind,
                f"{bare.events_per_s:.0f}",
                f"{processor.events_per_s:.0f}",
                f"{processor.events_per_s / bare.events_per_s:.2f}",
                f"{bare.sidecar_ms:.2f} + {bare.app_ms:.2f}",
                f"{processor.sidecar_ms:.2f} + {processor.app_ms:.2f}",
            )
        self.console.print(table)
        print_noise_notes(self.console, self.machine.pin)


def median_rate(runs: list[Rate]) -> Rate:
    return Rate(
        statistics.median(r.events_per_s for r in runs),
        statistics.median(r.sidecar_ms for r in runs),
        statistics.median(r.app_ms for r in runs),
    )


def generate(tmp: Path) -> Path:
    from typer.testing import CliRunner

    from daprforge.cli import app

    project = tmp / "bench-events"
    result = CliRunner().invoke(
        app, ["new", "event-processor", "bench-events", "--dir", str(project), "--defaults"]
    )
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per timed run")
    parser.add_argument("--rounds", type=int, default=2, help="bare/processor run pairs")
    parser.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated")
    parser.add_argument("--state", choices=("memory", "postgres"), default="memory")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run at most")
    args = parser.parse_args()
    console = make_console(width=160)
    bench = Bench(console, args)
    with tempfile.TemporaryDirectory(prefix="daprforge-bench-events-") as tmp:
        project = generate(Path(tmp))
        for kind in filter(None, args.components.split(",")):
            try:
                bench.component(kind, Path(tmp), project)
            except Exception as exc:  # report it and go on with the other components
                console.print(f"[red]{kind}: skipped: {exc}")
    bench.http.close()
    bench.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
