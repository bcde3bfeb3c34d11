"""Pub/sub test worlds: a recorder app plus a sidecar subscribed for it, over the
pubsub.in-memory and pubsub.redis components (reference §2, §7.5, §7.6).

Topic names carry a per-session random prefix and the world's label, so that Redis streams of
concurrent or earlier runs never mix; each world deletes its streams when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import service_address, service_unavailable_reason

from ._apps import AppProcess, start_recorder
from ._support import SidecarProcess, component, describe, spawn_sidecar, write_components

RUN = uuid.uuid4().hex[:8]
REDIS_HOST, REDIS_PORT = service_address("redis")
KIND_PARAMS = [
    pytest.param("in-memory", id="in-memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
KINDS = pytest.mark.parametrize(
    "kind",
    [
        pytest.param("in-memory", id="in-memory", marks=pytest.mark.own_process),
        pytest.param("redis", id="redis", marks=[pytest.mark.redis, pytest.mark.own_process]),
    ],
)
"""For tests that need this suite's own sidecar and app (skipped against a real daprd)."""
HEALTHY_TIMEOUT = 30.0
CE_CONTENT_TYPE = "application/cloudevents+json"


def redis_available() -> bool:
    return service_unavailable_reason("redis") is None


@dataclass(frozen=True)
class Topics:
    """Topic and route names of one world: ``topic(kind, name)``, ``route(kind, name)``."""

    label: str
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", f"dfc-{RUN}-{self.label}")

    def topic(self, kind: str, name: str) -> str:
        return f"{self.prefix}.{name}.{kind}"

    def route(self, kind: str, name: str) -> str:
        return f"/{kind}/{name}"


# --------------------------------------------------------------------------- resources


def memory_pubsub(name: str, **metadata: str) -> dict[str, Any]:
    return component(name, "pubsub.in-memory", metadata=metadata)


def redis_pubsub(name: str, **metadata: str) -> dict[str, Any]:
    # Every subscribed stream holds one pooled connection in a blocking XREADGROUP (as in
    # daprd, whose default pool is 10 per CPU): the test worlds subscribe to many streams.
    md = {"redisHost": f"{REDIS_HOST}:{REDIS_PORT}", "poolSize": "200", **metadata}
    return component(name, "pubsub.redis", metadata=md)


def pubsub_component(kind: str, name: str, **metadata: str) -> dict[str, Any]:
    if kind == "in-memory":
        return memory_pubsub(name, **metadata)
    return redis_pubsub(name, **metadata)


def resiliency(
    name: str,
    retries: Mapping[str, Mapping[str, Any]],
    inbound: Mapping[str, str],
    *,
    scopes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A Resiliency resource: retry policies and ``component -> inbound retry policy``."""
    doc: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": name},
        "spec": {
            "policies": {"retries": {k: dict(v) for k, v in retries.items()}},
            "targets": {"components": {c: {"inbound": {"retry": p}} for c, p in inbound.items()}},
        },
    }
    if scopes is not None:
        doc["scopes"] = list(scopes)
    return doc


def subscription_entry(
    pubsub: str,
    topic: str,
    *,
    route: str | None = None,
    rules: Sequence[tuple[str, str]] = (),
    default: str | None = None,
    dead_letter_topic: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One entry of ``/dapr/subscribe`` (v1 ``route`` and/or v2 ``routes``)."""
    entry: dict[str, Any] = {"pubsubname": pubsub, "topic": topic}
    if route is not None:
        entry["route"] = route
    if rules or default is not None:
        routes: dict[str, Any] = {}
        if rules:
            routes["rules"] = [{"match": m, "path": p} for m, p in rules]
        if default is not None:
            routes["default"] = default
        entry["routes"] = routes
    if dead_letter_topic is not None:
        entry["deadLetterTopic"] = dead_letter_topic
    if metadata is not None:
        entry["metadata"] = dict(metadata)
    return entry


def subscription_resource(
    name: str,
    pubsub: str,
    topic: str,
    *,
    version: str = "v2alpha1",
    route: str | None = None,
    rules: Sequence[tuple[str, str]] = (),
    default: str | None = None,
    dead_letter_topic: str | None = None,
    metadata: Mapping[str, str] | None = None,
    scopes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A declarative ``Subscription`` (v2alpha1 ``routes`` or v1alpha1 ``route``)."""
    spec: dict[str, Any] = {"pubsubname": pubsub, "topic": topic}
    if version == "v1alpha1":
        spec["route"] = route
    else:
        routes: dict[str, Any] = {}
        if rules:
            routes["rules"] = [{"match": m, "path": p} for m, p in rules]
        if default is not None:
            routes["default"] = default
        spec["routes"] = routes
    if dead_letter_topic is not None:
        spec["deadLetterTopic"] = dead_letter_topic
    if metadata is not None:
        spec["metadata"] = dict(metadata)
    doc: dict[str, Any] = {
        "apiVersion": f"dapr.io/{version}",
        "kind": "Subscription",
        "metadata": {"name": name},
        "spec": spec,
    }
    if scopes is not None:
        doc["scopes"] = list(scopes)
    return doc


# --------------------------------------------------------------------------- worlds


@dataclass
class PubSubWorld:
    """A sidecar with its recorder app, and one client for the sidecar's API."""

    app_id: str
    sidecar: SidecarProcess
    app: AppProcess
    client: httpx.AsyncClient
    topics: Topics
    pubsubs: dict[str, str]
    """role (e.g. ``in-memory``, ``redis``, ``redis-retry``) -> component name"""

    def pubsub(self, kind: str, variant: str = "") -> str:
        role = f"{kind}-{variant}" if variant else kind
        return self.pubsubs[role]

    def topic(self, kind: str, name: str) -> str:
        return self.topics.topic(kind, name)

    def route(self, kind: str, name: str) -> str:
        return self.topics.route(kind, name)

    async def publish(
        self,
        pubsub: str,
        topic: str,
        body: bytes | str = b"",
        *,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return await publish(
            self.client,
            pubsub,
            topic,
            body,
            content_type=content_type,
            params=params,
            headers=headers,
        )

    async def publish_ok(self, pubsub: str, topic: str, body: bytes | str = b"", **kw: Any) -> None:
        resp = await self.publish(pubsub, topic, body, **kw)
        assert resp.status_code == 204, describe(resp)
        assert resp.content == b"", describe(resp)

    async def stop(self) -> None:
        try:
            await self.client.aclose()
            await self.sidecar.stop()
            await self.app.stop()
        finally:
            if any(c.startswith("redis") for c in self.pubsubs):
                delete_streams(self.topics.prefix)


async def publish(
    client: httpx.AsyncClient,
    pubsub: str,
    topic: str,
    body: bytes | str = b"",
    *,
    content_type: str | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["content-type"] = content_type
    content = body.encode() if isinstance(body, str) else body
    return await client.post(
        f"/v1.0/publish/{pubsub}/{topic}", content=content, params=params, headers=all_headers
    )


async def wait_healthy(process: SidecarProcess, limit: float = HEALTHY_TIMEOUT) -> None:
    """``/v1.0/healthz`` is 204 only once the app's subscriptions are in place (§5.1)."""
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(base_url=process.url, timeout=2.0) as client:
        while True:
            if process.proc.returncode is not None:
                pytest.fail(
                    f"sidecar {process.app_id} exited with {process.proc.returncode}\n"
                    f"{process.log()}",
                    pytrace=False,
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/v1.0/healthz")).status_code == 204:
                    return
            if time.monotonic() > deadline:
                await process.stop()
                pytest.fail(f"sidecar {process.app_id} not healthy\n{process.log()}", False)
            await asyncio.sleep(0.05)


def write_resources(directory: Path, docs: Sequence[dict[str, Any]]) -> Path:
    """One file per document, as users usually lay them out."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, doc in enumerate(docs):
        name = f"{index:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        if doc["kind"] == "Component":
            write_components(directory / name, doc)
        else:
            (directory / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


async def start_world(
    tmp: Path,
    *,
    app_id: str,
    topics: Topics,
    pubsubs: Mapping[str, str],
    resources: Sequence[dict[str, Any]],
    subscriptions: Sequence[dict[str, Any]] = (),
    scripts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    env: Mapping[str, str] | None = None,
) -> PubSubWorld:
    """Start the recorder app and a sidecar for it; return once the sidecar is healthy."""
    res = write_resources(tmp / "resources", resources)
    app = await start_recorder(tmp, subscriptions=subscriptions, scripts=scripts, name=app_id)
    sidecar = await spawn_sidecar(tmp, app_id=app_id, resources=[res], app_port=app.port, env=env)
    try:
        await sidecar.wait_ready()
        await wait_healthy(sidecar)
    except BaseException:
        await app.stop()
        raise
    client = httpx.AsyncClient(base_url=sidecar.url, timeout=30.0)
    return PubSubWorld(app_id, sidecar, app, client, topics, dict(pubsubs))


# --------------------------------------------------------------------------- redis


def redis_client() -> Any:
    from redis import Redis

    return Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5)


def delete_streams(prefix: str) -> None:
    """Delete every Redis key whose name starts with ``prefix``."""
    with contextlib.suppress(Exception), redis_client() as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def pending_count(stream: str, group: str) -> int:
    """Entries of ``stream`` delivered to ``group`` and not yet acknowledged (XPENDING)."""
    with redis_client() as client:
        summary = client.xpending(stream, group)
        return int(summary["pending"])
