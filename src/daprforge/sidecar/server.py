"""Run the sidecar: load components, serve the HTTP API, shut down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn

from daprforge.sidecar import system_api
from daprforge.sidecar.app import SidecarApp
from daprforge.sidecar.components.loader import ResourceError, Resources, load_resources
from daprforge.sidecar.configuration import Configuration, load_configuration
from daprforge.sidecar.defaults import data_dir, default_components, default_resolver
from daprforge.sidecar.invoke import InternalApp, invoke
from daprforge.sidecar.nameresolution import SQLiteResolver
from daprforge.sidecar.options import SidecarOptions
from daprforge.sidecar.pubsub import api as pubsub_api
from daprforge.sidecar.pubsub.subscriptions import Subscription, from_resource
from daprforge.sidecar.resiliency import load_resiliency
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
    configuration = load_configuration(options.config) if options.config else Configuration()
    if options.resources_paths:
        resources = load_resources(options.resources_paths)
    else:
        resources = Resources(components=default_components(options.app_id))
    runtime = Runtime(
        app_id=options.app_id,
        components=resources.components,
        declared_subscriptions=_declared_subscriptions(resources, options.app_id),
        resiliency=load_resiliency(resources.of_kind("Resiliency"), options.app_id),
        app_token=options.app_token,
        data_dir=str(data_dir(options.app_id)),
        app_port=options.app_port,
        app_address=options.app_channel_address,
        secret_scopes=configuration.secret_scopes,
        resolver=SQLiteResolver(configuration.name_resolution or default_resolver()),
    )
    runtime.validate()
    return SidecarApp(
        runtime,
        [*state_api.ROUTES, *pubsub_api.ROUTES, *secrets_api.ROUTES, *system_api.ROUTES],
        invoke,
        max_body_size=options.max_body_size,
        api_token=options.api_token,
    )


def _declared_subscriptions(resources: Resources, app_id: str) -> list[Subscription]:
    found = (from_resource(src, doc, app_id) for src, doc in resources.of_kind("Subscription"))
    return [subscription for subscription in found if subscription is not None]


class StartupError(Exception):
    """The sidecar cannot start; the message says what to do."""


def _listen(host: str, port: int, flag: str) -> socket.socket:
    """Bind before anything connects, so a busy port fails fast with a useful message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror}); "
            f"stop whatever uses it or choose another port with {flag}"
        ) from None
    sock.listen(2048)
    return sock


def _server(app: Any, *, api_logging: bool) -> _Server:
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=api_logging,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )
    return _Server(config)


async def serve(options: SidecarOptions) -> None:
    # Reading resource files is blocking I/O: keep it off the event loop.
    app = await asyncio.to_thread(build, options)
    runtime = app.runtime
    api_socket = _listen(options.listen_address, options.dapr_http_port, "--dapr-http-port")
    internal_socket = _listen("127.0.0.1", options.dapr_internal_port, "--dapr-internal-grpc-port")
    if not options.resources_paths:
        data_dir(options.app_id).mkdir(parents=True, exist_ok=True)
    api = _server(app, api_logging=options.enable_api_logging)
    internal = _server(InternalApp(runtime), api_logging=False)
    try:
        await runtime.start()
        internal_address = f"127.0.0.1:{internal_socket.getsockname()[1]}"
        if runtime.resolver is not None:
            await runtime.resolver.register(options.app_id, internal_address)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stop_all, api, internal)
        watcher = asyncio.create_task(_exit_on_request(runtime, api, internal))
        log.info(
            "HTTP API listening on %s:%s, internal invocation on %s (app id %s)",
            options.listen_address,
            api_socket.getsockname()[1],
            internal_address,
            options.app_id,
        )
        try:
            await asyncio.gather(
                _serve_then_stop(api, api_socket, internal),
                _serve_then_stop(internal, internal_socket, api),
            )
        finally:
            watcher.cancel()
    finally:
        await runtime.stop()
        api_socket.close()
        internal_socket.close()
        log.info("sidecar stopped")


def _stop_all(*servers: _Server) -> None:
    for server in servers:
        server.stop()


async def _serve_then_stop(server: _Server, sock: socket.socket, other: _Server) -> None:
    # Whichever server stops first (a signal, /v1.0/shutdown, an error) takes the other along.
    try:
        await server.serve(sockets=[sock])
    finally:
        other.stop()


async def _exit_on_request(runtime: Runtime, *servers: _Server) -> None:
    await runtime.shutdown_requested.wait()
    _stop_all(*servers)


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
    # httpx logs every request at INFO; the app channel would flood the log.
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))


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
    except (ResourceError, StartupError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
