"""Exactly once, for real: a generated event-processor on Redis Streams and PostgreSQL.

10,000 learning events (1% of them poison: data that can never be valid) are published
through one sidecar while the processor's own sidecar delivers them to the generated app,
whose handler fails 20% of the time and whose answers are lost 5% of the time after it
committed (both injected, see _chaos_app.py). Midway the processor's sidecar is killed
with SIGKILL (its in-flight deliveries die unacknowledged) and started again, and picks
the pending entries up once they have been idle for ``processingTimeout``.

At the end every valid event has been applied to the aggregates exactly once (per-learner
counts and the totals match what was published: 0 lost, 0 doubled), every milestone
notification was published (one distinct id each), and the dead-letter store holds the
poison events and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from daprforge.cli import app as cli
from daprforge.client import BulkMessage, CloudEvent
from daprforge.launch import free_port
from daprforge.testing import Sidecar, SidecarFactory, component
from tests.conftest import service_address

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

EVENTS = int(os.environ.get("DAPRFORGE_EXACTLY_ONCE_EVENTS", "10000"))
POISON_EVERY = 100  # 1%
LEARNERS = 200
MILESTONE_EVERY = 5
FAIL_RATE = 0.20
LOSE_RATE = 0.05
APP_ID = "learning-processor"
CHAOS_APP = Path(__file__).with_name("_chaos_app.py")

PG_HOST, PG_PORT = service_address("postgres")
REDIS_HOST, REDIS_PORT = service_address("redis")
POSTGRES_URL = f"postgres://postgres@{PG_HOST}:{PG_PORT}/test?sslmode=disable"


def resources(topics: list[str], table_prefix: str) -> list[dict[str, Any]]:
    redis = component(
        "pubsub",
        "pubsub.redis",
        {
            "redisHost": f"{REDIS_HOST}:{REDIS_PORT}",
            # Enough workers that deliveries waiting out a retry do not hold up the rest.
            "concurrency": 24,
            "queueDepth": 200,
            # After the SIGKILL, entries the dead sidecar had read are claimed again once
            # idle this long (it also bounds one delivery with all its retries).
            "processingTimeout": "8s",
            "redeliverInterval": "1s",
        },
    )
    state = component(
        "statestore",
        "state.postgresql",
        {"connectionString": POSTGRES_URL, "tablePrefix": table_prefix, "maxConns": 8},
        version="v2",
    )
    resiliency = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "pubsub-inbound"},
        "spec": {
            "policies": {
                "timeouts": {"delivery": "5s"},
                # Exponential, capped low so the test does not wait; 12 retries make a
                # valid event's chance of failing every attempt (~0.25^13) negligible.
                "retries": {
                    "events": {"policy": "exponential", "maxInterval": "20ms", "maxRetries": 12}
                },
            },
            "targets": {
                "components": {"pubsub": {"inbound": {"retry": "events", "timeout": "delivery"}}}
            },
        },
    }
    return [redis, state, resiliency]


def learning_events(topic_seed: int) -> tuple[list[CloudEvent[dict[str, Any]]], set[str]]:
    rng = random.Random(topic_seed)
    activities = ["exercise_started", "exercise_completed", "lesson_viewed"]
    events, poison = [], set()
    for n in range(EVENTS):
        event_id = f"evt-{n:05d}"
        data: dict[str, Any] = {
            "learner_id": f"learner-{rng.randrange(LEARNERS):03d}",
            "activity": rng.choice(activities),
        }
        if data["activity"] == "exercise_completed":
            data["score"] = rng.randrange(101)
        if n % POISON_EVERY == POISON_EVERY - 1:
            data["activity"] = "not-an-activity"
            poison.add(event_id)
        events.append(CloudEvent[dict[str, Any]](id=event_id, type="learning", data=data))
    return events, poison


@contextlib.asynccontextmanager
async def chaos_app(
    project: Path, port: int, env: dict[str, str], log: Path
) -> AsyncIterator[None]:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(CHAOS_APP), str(project), str(port),
            env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=project,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code == 200:
                        break
                if process.returncode is not None:
                    output = await asyncio.to_thread(log.read_text)
                    raise RuntimeError(f"the app exited:\n{output}")
                await asyncio.sleep(0.1)
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def kill(sidecar: Sidecar) -> None:
    assert sidecar.process is not None
    assert sidecar.process.process is not None
    sidecar.process.process.kill()  # SIGKILL: no clean shutdown, nothing acknowledged
    await sidecar.process.process.wait()


async def stats(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/stats")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def wait_for_progress(progress: Any, done: Any, what: str, stall: float = 60.0) -> None:
    """Wait until ``done(await progress())``; fail if the progress figure stops growing for
    ``stall`` seconds (a slow CI machine is fine, a stuck pipeline is not)."""
    loop = asyncio.get_running_loop()
    best, since = None, loop.time()
    while True:
        current = await progress()
        if done(current):
            return
        if best is None or current > best:
            best, since = current, loop.time()
        elif loop.time() - since > stall:
            raise TimeoutError(f"{what}: no progress for {stall:.0f}s (at {current})")
        await asyncio.sleep(0.25)


@pytest.fixture
async def names() -> AsyncIterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    found = {
        "topic": f"learning-events-{suffix}",
        "dead": f"learning-events-{suffix}-dead",
        "notes": f"notifications-{suffix}",
        "tables": f"exactly_once_{suffix}_",
    }
    yield found
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        await redis.delete(found["topic"], found["dead"], found["notes"])
    finally:
        await redis.aclose()
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'DROP TABLE IF EXISTS "{found["tables"]}state"')


async def test_every_event_is_applied_exactly_once(
    dapr_sidecar_factory: SidecarFactory, names: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / APP_ID
    command = ["new", "event-processor", APP_ID, "--dir", str(project), "--defaults"]
    result = await asyncio.to_thread(CliRunner().invoke, cli, command)
    assert result.exit_code == 0, result.output

    topics = [names["topic"], names["dead"], names["notes"]]
    sidecar_port, app_port = free_port(), free_port()
    processor = await dapr_sidecar_factory(
        app_id=APP_ID,
        port=sidecar_port,
        app_port=app_port,
        resources=resources(topics, names["tables"]),
    )
    publisher = await dapr_sidecar_factory(
        app_id="learning-publisher", resources=resources(topics, names["tables"])[:1]
    )
    env = {
        **os.environ,
        "DAPR_HTTP_ENDPOINT": processor.url,
        "APP_ID": APP_ID,
        "EVENTS_TOPIC": names["topic"],
        "DEAD_LETTER_TOPIC": names["dead"],
        "NOTIFICATIONS_TOPIC": names["notes"],
        "MILESTONE_EVERY": str(MILESTONE_EVERY),
        # More shards than deliveries at once: events rarely compete for one.
        "STATS_SHARDS": "64",
        "LOG_LEVEL": "WARNING",
        "CHAOS_FAIL_RATE": str(FAIL_RATE),
        "CHAOS_LOSE_RATE": str(LOSE_RATE),
        "CHAOS_SEED": "8",
        # Two app processes share the port, as the Deployment's two replicas share the
        # topic: the app's CPU is the limit on two cores.
        "CHAOS_WORKERS": "2",
    }
    events, poison = learning_events(8)
    valid = [e for e in events if e.id not in poison]

    async with (
        chaos_app(project, app_port, env, tmp_path / "app.log"),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{app_port}", timeout=30) as http,
        publisher.client() as dapr,
    ):
        await processor.wait_for_app()

        async def publish_all() -> None:
            for start in range(0, EVENTS, 250):
                await dapr.pubsub.publish_bulk(
                    "pubsub",
                    names["topic"],
                    [BulkMessage(e, entry_id=e.id) for e in events[start : start + 250]],
                )

        publishing = asyncio.create_task(publish_all())
        # Kill the processor's sidecar while events flow, then bring it back.
        await wait_for_progress(
            lambda: _handled(http), lambda n: n >= EVENTS // 3, "a third of the events"
        )
        await kill(processor)
        await asyncio.sleep(1.0)
        await processor.start()
        await processor.wait_for_app()
        await publishing

        try:
            await wait_for_progress(
                lambda: _handled(http), lambda n: n >= len(valid) + len(poison), "every event"
            )
            await _drained(names["topic"])
        except TimeoutError as exc:
            pytest.fail(f"{exc}: {await stats(http)}\n{processor.logs()[-3000:]}")

        final = await stats(http)
        expected_by_learner = Counter(e.data["learner_id"] for e in valid if e.data)
        completed = Counter(
            e.data["learner_id"]
            for e in valid
            if e.data and e.data["activity"] == "exercise_completed"
        )
        assert final["totals"]["events"] == len(valid)  # 0 lost, 0 doubled
        assert final["totals"]["learners"] == len(expected_by_learner)
        assert final["totals"]["exercises_completed"] == sum(completed.values())
        for learner, count in expected_by_learner.items():
            progress = (await http.get(f"/stats/learners/{learner}")).json()
            assert (progress["events"], progress["exercises_completed"]) == (
                count,
                completed[learner],
            ), learner

        dead: set[str] = set()
        cursor: str | None = None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/dead-letters", params=params)).json()
            dead |= {item["id"] for item in page["items"]}
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert dead == poison

        milestones = sum(n // MILESTONE_EVERY for n in completed.values())
        assert await _distinct_notifications(names["notes"]) == milestones

        metrics = (await http.get("/metrics")).text
        assert "events_retried_total" in metrics
        assert "events_duplicates_total" in metrics


async def _handled(http: httpx.AsyncClient) -> int:
    """Events applied plus dead letters stored."""
    current = await stats(http)
    return int(current["totals"]["events"]) + int(current["dead_letters"])


async def _drained(topic: str) -> None:
    """Wait until the processor's consumer group has nothing pending (all acknowledged),
    so a late duplicate would have shown in the counts."""
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:

        async def pending() -> int:
            return -int((await redis.xpending(topic, APP_ID))["pending"])

        await wait_for_progress(pending, lambda n: n == 0, "acknowledging every entry")
    finally:
        await redis.aclose()


async def _distinct_notifications(stream: str) -> int:
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        entries = await redis.xrange(stream)
    finally:
        await redis.aclose()
    return len({json.loads(fields[b"data"])["id"] for _, fields in entries})
