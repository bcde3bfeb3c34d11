"""The pytest plugin: ``dapr_sidecar``, ``dapr_sidecar_factory`` and ``openai_server``.

Enabled through the ``pytest11`` entry point when daprforge is installed. Fixtures are
async (pytest-asyncio); imports of the heavier pieces happen inside them, so loading the
plugin costs nothing in test runs that do not use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daprforge.testing.openai_server import OpenAIServer
    from daprforge.testing.sidecar import Sidecar, SidecarFactory

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - without pytest-asyncio the plugin offers nothing
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True


if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def dapr_sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
        """A sidecar with an in-memory state store ``statestore`` and pub/sub ``pubsub``,
        no app; stopped after the test."""
        from daprforge.testing.sidecar import start_sidecar

        sidecar = await start_sidecar(tmp_path / "dapr_sidecar")
        try:
            yield sidecar
        finally:
            await sidecar.stop()

    @pytest_asyncio.fixture
    async def dapr_sidecar_factory(tmp_path: Path) -> AsyncIterator[SidecarFactory]:
        """``await dapr_sidecar_factory(app_port=..., resources=[...], env={...})``
        starts another sidecar (arguments as ``start_sidecar``); all stop after the test."""
        from daprforge.testing.sidecar import start_sidecar

        started: list[Sidecar] = []

        async def factory(
            *,
            app_id: str = "test-app",
            resources: Sequence[Mapping[str, Any]] | None = None,
            app_port: int | None = None,
            port: int | None = None,
            env: Mapping[str, str] | None = None,
        ) -> Sidecar:
            workdir = tmp_path / f"sidecar-{len(started)}"
            sidecar = await start_sidecar(
                workdir, app_id=app_id, resources=resources, app_port=app_port, port=port, env=env
            )
            started.append(sidecar)
            return sidecar

        try:
            yield factory
        finally:
            for sidecar in reversed(started):
                with contextlib.suppress(Exception):
                    await sidecar.stop()

    @pytest_asyncio.fixture
    async def openai_server() -> AsyncIterator[OpenAIServer]:
        """A local OpenAI-compatible server: ``openai_server.url`` is the base URL (with
        ``/v1``), ``openai_server.api_key`` the key it expects."""
        from daprforge.testing.openai_server import OpenAIServer

        async with OpenAIServer().running() as server:
            yield server
