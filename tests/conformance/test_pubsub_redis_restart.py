"""pubsub.redis across sidecar restarts: reference §7.5 (consumer group = app id, XACK on
success, pending entries redelivered after ``processingTimeout``, every
``redeliverInterval``), §7.1 (consumerID defaults to the app id).

A message the app acknowledged is never delivered again to the same consumer group, even
after a restart; one that was in flight when the sidecar was killed with SIGKILL is
delivered again by the next sidecar with the same app id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from ._apps import AppProcess, Record, start_recorder, wait_quiet
from ._pubsub import (
    RUN,
    Topics,
    delete_streams,
    pending_count,
    publish,
    redis_pubsub,
    subscription_entry,
    wait_healthy,
    write_resources,
)
from ._support import SidecarProcess, describe, start_sidecar

pytestmark = [pytest.mark.redis, pytest.mark.own_process]

T = Topics("restart")
APP_ID = f"conf-restart-{RUN}"
PUBSUB = "redis"
PROCESSING_TIMEOUT = 0.5
REDELIVER_INTERVAL = 0.2


@dataclass
class Restarted:
    acked: list[Record]
    inflight: list[Record]
    pending_acked: int
    pending_inflight: int
    first_log: str
    second_log: str


async def start(tmp: Path, resources: Path, app: AppProcess) -> SidecarProcess:
    process = await start_sidecar(tmp, app_id=APP_ID, resources=[resources], app_port=app.port)
    await wait_healthy(process)
    return process


async def wait_pending(stream: str, expected: int, limit: float = 5.0) -> int:
    deadline = time.monotonic() + limit
    while True:
        count = pending_count(stream, APP_ID)
        if count == expected or time.monotonic() >= deadline:
            return count
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def restarted(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Restarted]:
    tmp = tmp_path_factory.mktemp("redis-restart")
    acked, inflight = T.topic("redis", "acked"), T.topic("redis", "inflight")
    resources = write_resources(
        tmp / "resources",
        [
            redis_pubsub(
                PUBSUB,
                processingTimeout=f"{int(PROCESSING_TIMEOUT * 1000)}ms",
                redeliverInterval=f"{int(REDELIVER_INTERVAL * 1000)}ms",
            )
        ],
    )
    app = await start_recorder(
        tmp,
        subscriptions=[
            subscription_entry(PUBSUB, acked, route="/acked"),
            subscription_entry(PUBSUB, inflight, route="/inflight"),
        ],
        # the first delivery of the in-flight message never gets an answer
        scripts={"/inflight": [{"delay": 60}, {}]},
    )
    first: SidecarProcess | None = None
    second: SidecarProcess | None = None
    try:
        first = await start(tmp / "first", resources, app)
        async with httpx.AsyncClient(base_url=first.url, timeout=10.0) as client:
            resp = await publish(client, PUBSUB, acked, b"acked before the kill")
            assert resp.status_code == 204, describe(resp)
            await app.wait_records("/acked")
            assert await wait_pending(acked, 0) == 0, "the acknowledged message is XACKed"
            resp = await publish(client, PUBSUB, inflight, b"in flight at the kill")
            assert resp.status_code == 204, describe(resp)
            await app.wait_records("/inflight")
        first.proc.kill()  # SIGKILL: no chance to ack or clean up
        await first.proc.wait()

        second = await start(tmp / "second", resources, app)
        await app.wait_records("/inflight", 2, limit=10, what="redelivery of the pending message")
        async with httpx.AsyncClient(base_url=second.url, timeout=10.0) as client:
            resp = await publish(client, PUBSUB, acked, b"after the restart")
            assert resp.status_code == 204, describe(resp)
        await app.wait_records("/acked", 2)
        await wait_quiet(PROCESSING_TIMEOUT + 3 * REDELIVER_INTERVAL)
        yield Restarted(
            acked=await app.records("/acked"),
            inflight=await app.records("/inflight"),
            pending_acked=await wait_pending(acked, 0),
            pending_inflight=await wait_pending(inflight, 0),
            first_log=first.log(),
            second_log=second.log(),
        )
    finally:
        for process in (second, first):
            if process is not None:
                await process.stop()
        await app.stop()
        delete_streams(T.prefix)


async def test_acked_message_is_never_redelivered(restarted: Restarted) -> None:
    data = [r.json()["data"] for r in restarted.acked]
    assert data == ["acked before the kill", "after the restart"], restarted.second_log
    assert restarted.pending_acked == 0


async def test_in_flight_message_is_redelivered_after_sigkill(restarted: Restarted) -> None:
    events = [r.json() for r in restarted.inflight]
    assert len(events) == 2, f"{len(events)} deliveries\n{restarted.second_log}"
    assert events[0]["id"] == events[1]["id"], "the same message, not a new one"
    assert events[1]["data"] == "in flight at the kill"
    assert restarted.inflight[0].body == restarted.inflight[1].body
    assert restarted.pending_inflight == 0, "acknowledged once the app answered"
