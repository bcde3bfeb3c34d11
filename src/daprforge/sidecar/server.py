"""Run the sidecar: load components, serve the HTTP API, shut down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn

from daprforge.sidecar import system_api
from daprforge.sidecar.app import SidecarApp
from daprforge.sidecar.components.loader import ResourceError, load_resources
from daprforge.sidecar.configuration import load_secret_scopes
from daprforge.sidecar.defaults import data_dir, default_components
from daprforge.sidecar.options import SidecarOptions
from daprforge.sidecar.runtime import Runtime
from daprforge.sidecar.secrets import api as secrets_api
from daprforge.sidecar.state import api as state_api

log = logging.getLogger("daprforge.sidecar")

_GRACEFUL_SHUTDOWN_SECONDS = 10  # as daprd's HTTP server


class _Server(uvicorn.Server):
    """Uvicorn re-raises SIGTERM once it has stopped, which would kill the process before
    the components are closed; we handle the signals ourselves instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        # A second signal skips waiting for in-flight requests.
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def build(options: SidecarOptions) -> SidecarApp:
    """Read and check every resource file; nothing connects yet."""
    if options.resources_paths:
        components = load_resources(options.resources_paths).components
    else:
        components = default_components(options.app_id)
    runtime = Runtime(
        app_id=options.app_id,
        components=components,
        data_dir=str(data_dir(options.app_id)),
        app_port=options.app_port,
        app_address=options.app_channel_address,
        secret_scopes=load_secret_scopes(options.config) if options.config else {},
    )
    runtime.validate()
    return SidecarApp(
        runtime,
        [*state_api.ROUTES, *secrets_api.ROUTES, *system_api.ROUTES],
        system_api.invoke,
        max_body_size=options.max_body_size,
        api_token=options.api_token,
    )


async def serve(options: SidecarOptions) -> None:
    app = build(options)
    runtime = app.runtime
    if not options.resources_paths:
        data_dir(options.app_id).mkdir(parents=True, exist_ok=True)
    try:
        await runtime.start()
        config = uvicorn.Config(
            app,
            host=options.listen_address,
            port=options.dapr_http_port,
            lifespan="off",
            log_config=None,
            access_log=options.enable_api_logging,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, server.stop)
        watcher = asyncio.create_task(_exit_on_request(runtime, server))
        log.info(
            "HTTP API listening on %s:%s (app id %s)",
            options.listen_address,
            options.dapr_http_port,
            options.app_id,
        )
        try:
            await server.serve()
        finally:
            watcher.cancel()
    finally:
        await runtime.stop()
        log.info("sidecar stopped")


async def _exit_on_request(runtime: Runtime, server: _Server) -> None:
    await runtime.shutdown_requested.wait()
    server.stop()


def configure_logging(level: str, app_id: str, api_logging: bool) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=numeric,
        format=f"%(asctime)s %(levelname)-7s [{app_id}] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # Uvicorn's banner lines would drown the one-line-per-component start-up log.
    logging.getLogger("uvicorn.error").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if api_logging else logging.WARNING)


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(main)
    else:
        uvloop.run(main)


def run(options: SidecarOptions) -> int:
    """Serve until stopped; returns the process exit code."""
    configure_logging(options.log_level, options.app_id, options.enable_api_logging)
    try:
        _run(serve(options))
    except ResourceError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
