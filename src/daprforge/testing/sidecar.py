"""A real ``daprforge sidecar`` process for tests, with components written for it.

The sidecar runs as a subprocess (``daprforge.launch.SidecarProcess``), never in-process:
tests talk to it over HTTP exactly as a service talks to daprd.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from daprforge.client import DaprClient
from daprforge.launch import SidecarProcess, free_port

# Variables a test sidecar must not inherit from the shell that runs the tests.
_SCRUBBED_ENV = ("DAPR_API_TOKEN", "APP_API_TOKEN", "DAPR_HTTP_PORT", "APP_PORT", "NAMESPACE")


def component(
    name: str, type_: str, metadata: Mapping[str, Any] | None = None, *, version: str = "v1"
) -> dict[str, Any]:
    """A Dapr ``Component`` resource."""
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {
            "type": type_,
            "version": version,
            "metadata": [{"name": k, "value": str(v)} for k, v in (metadata or {}).items()],
        },
    }


def in_memory_components(
    state_store: str = "statestore", pubsub: str = "pubsub"
) -> list[dict[str, Any]]:
    """A ``state.in-memory`` store and a ``pubsub.in-memory`` broker."""
    return [component(state_store, "state.in-memory"), component(pubsub, "pubsub.in-memory")]


def pubsub_retry_policy(
    pubsub: str,
    *,
    max_retries: int,
    interval: str = "100ms",
    timeout: str | None = None,
) -> dict[str, Any]:
    """A ``Resiliency`` resource retrying deliveries from ``pubsub`` to the app
    ``max_retries`` times, ``interval`` apart; ``timeout`` bounds each delivery attempt."""
    policies: dict[str, Any] = {
        "retries": {
            "eventRetries": {"policy": "constant", "duration": interval, "maxRetries": max_retries}
        }
    }
    inbound: dict[str, str] = {"retry": "eventRetries"}
    if timeout is not None:
        policies["timeouts"] = {"eventTimeout": timeout}
        inbound["timeout"] = "eventTimeout"
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": f"{pubsub}-inbound"},
        "spec": {"policies": policies, "targets": {"components": {pubsub: {"inbound": inbound}}}},
    }


@dataclass
class Sidecar:
    """A running sidecar: ``url`` for clients, ``stop()``/``start()`` to simulate outages
    (it comes back on the same port, with the same components)."""

    app_id: str
    port: int
    resources_path: Path
    app_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: SidecarProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: Any) -> DaprClient:
        """A DaprClient for this sidecar (close it, or use ``async with``)."""
        options.setdefault("api_token", self.env.get("DAPR_API_TOKEN", ""))
        return DaprClient(self.url, **options)

    async def start(self) -> None:
        process = SidecarProcess(
            self.app_id,
            resources_paths=[self.resources_path],
            app_port=self.app_port,
            port=self.port,
            env=self.env,
            log_file=self.resources_path.parent / "sidecar.log",
        )
        for name in _SCRUBBED_ENV:
            if name not in self.env:
                process.env.pop(name, None)
        self.process = process
        await process.start()

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    async def wait_for_app(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the sidecar has found the app and subscribed to what the app's
        ``/dapr/subscribe`` lists (``/v1.0/healthz`` turns 204 only then, as in daprd), so
        published events will be delivered."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                try:
                    if (await http.get(f"{self.url}/v1.0/healthz")).status_code == 204:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        logs = await asyncio.to_thread(self.logs)
        raise TimeoutError(f"the sidecar did not see the app within {timeout}s:\n{logs}")

    def logs(self) -> str:
        return self.process.output() if self.process is not None else ""


class SidecarFactory(Protocol):
    """What the ``dapr_sidecar_factory`` fixture gives: start_sidecar without workdir."""

    async def __call__(
        self,
        *,
        app_id: str = "test-app",
        resources: Sequence[Mapping[str, Any]] | None = None,
        app_port: int | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Sidecar: ...


async def start_sidecar(
    workdir: Path,
    *,
    app_id: str = "test-app",
    resources: Sequence[Mapping[str, Any]] | None = None,
    app_port: int | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Sidecar:
    """Start a sidecar whose files (resources, data, log) live under ``workdir``.
    ``resources`` default to :func:`in_memory_components`."""
    resources_path = workdir / "resources"
    resources_path.mkdir(parents=True, exist_ok=True)
    documents = list(resources if resources is not None else in_memory_components())
    text = yaml.safe_dump_all(documents, sort_keys=False)
    await asyncio.to_thread((resources_path / "resources.yaml").write_text, text)
    sidecar_env = {"DAPRFORGE_DATA_DIR": str(workdir / "data"), **(env or {})}
    sidecar = Sidecar(app_id, port or free_port(), resources_path, app_port, sidecar_env)
    await sidecar.start()
    return sidecar
