"""The ``daprforge`` command line: thin commands that parse, call one function, report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from daprforge import __version__

app = typer.Typer(
    name="daprforge",
    help="Generate and run FastAPI microservices wired to a Dapr sidecar.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"daprforge {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """daprforge: FastAPI + Dapr services, generated and run locally."""


def _size(text: str) -> int:
    from daprforge.sidecar.options import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def sidecar(
    app_id: Annotated[str, typer.Option("--app-id", help="The app's Dapr id.")],
    app_port: Annotated[
        int | None,
        typer.Option("--app-port", min=1, max=65535, help="Port the app listens on."),
    ] = None,
    dapr_http_port: Annotated[
        int, typer.Option("--dapr-http-port", min=1, max=65535, help="Port of the Dapr HTTP API.")
    ] = 3500,
    dapr_internal_grpc_port: Annotated[
        int,
        typer.Option(
            "--dapr-internal-grpc-port",
            min=0,
            max=65535,
            help="Port other sidecars use to reach this one (0: any free port).",
        ),
    ] = 0,
    resources_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--resources-path",
            help="Folder of Dapr component/resource YAML (repeatable). "
            "Default: embedded statestore (state.sqlite) and pubsub (pubsub.in-memory).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A Dapr Configuration YAML file.")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warn or error.")
    ] = "info",
    app_protocol: Annotated[
        str, typer.Option("--app-protocol", help="Protocol of the app channel (http only).")
    ] = "http",
    app_channel_address: Annotated[
        str, typer.Option("--app-channel-address", help="Address the app listens on.")
    ] = "127.0.0.1",
    max_body_size: Annotated[
        str, typer.Option("--max-body-size", help="Largest request body accepted, e.g. 4Mi.")
    ] = "4Mi",
    enable_api_logging: Annotated[
        bool, typer.Option("--enable-api-logging", help="Log every API call.")
    ] = False,
) -> None:
    """Run a local Dapr-compatible sidecar (the Dapr HTTP API v1.0).

    Reads DAPR_API_TOKEN (required on every API call when set) and APP_API_TOKEN
    (sent to the app) from the environment, as daprd does.
    """
    from daprforge.sidecar.options import SidecarOptions
    from daprforge.sidecar.server import run

    if app_protocol != "http":
        raise typer.BadParameter("only 'http' is supported", param_hint="--app-protocol")
    level = {"warn": "warning"}.get(log_level.lower(), log_level.lower())
    if level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("use debug, info, warn or error", param_hint="--log-level")
    options = SidecarOptions(
        app_id=app_id,
        app_port=app_port,
        app_channel_address=app_channel_address,
        app_protocol=app_protocol,
        dapr_http_port=dapr_http_port,
        dapr_internal_port=dapr_internal_grpc_port,
        resources_paths=tuple(resources_path or ()),
        config=config,
        log_level=level,
        max_body_size=_size(max_body_size),
        enable_api_logging=enable_api_logging,
        api_token=os.environ.get("DAPR_API_TOKEN") or None,
        app_token=os.environ.get("APP_API_TOKEN") or None,
    )
    raise typer.Exit(run(options))


@app.command()
def demo() -> None:
    """Tour daprforge: the sidecar (state, pub/sub, invocation), then one generated service
    of each kind running under `daprforge run`, each answering a real request."""
    import asyncio

    from rich.console import Console

    from daprforge.demo import run_demo

    if not asyncio.run(run_demo(Console())):
        raise typer.Exit(1)


@app.command("run")
def run_command(
    run_file: Annotated[
        Path | None,
        typer.Option(
            "--run-file",
            "-f",
            help="A Multi-App Run template (dapr.yaml, as for `dapr run -f`) or a folder "
            "holding one. Default: ./dapr.yaml.",
        ),
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="Sidecar to start for each app: 'daprforge' (built in) or 'daprd' "
            "(the real Dapr runtime, from PATH).",
        ),
    ] = "daprforge",
    grace_period: Annotated[
        float,
        typer.Option(
            "--grace-period", min=0.0, help="Seconds between SIGTERM and SIGKILL at stop."
        ),
    ] = 5.0,
    health_timeout: Annotated[
        float,
        typer.Option(
            "--health-timeout",
            min=0.1,
            help="Seconds to wait for an app's port before reporting it as not coming up.",
        ),
    ] = 60.0,
) -> None:
    """Run every app of a dapr.yaml with its sidecar, like `dapr run -f`.

    Sidecars start first, then the apps; all logs are merged on the terminal, prefixed with
    the app id. An app that crashes is reported (exit code, last lines) while the others keep
    running. Ctrl-C or SIGTERM stops everything: apps first, then sidecars.

    Exit code: 0 after a clean stop, 1 if an app crashed or never came up, 2 for an invalid
    template.
    """
    from daprforge.runner import RunOptions, run_apps

    if runtime not in ("daprforge", "daprd"):
        raise typer.BadParameter("use 'daprforge' or 'daprd'", param_hint="--runtime")
    options = RunOptions(
        run_file=run_file,
        runtime="daprd" if runtime == "daprd" else "daprforge",
        grace_period=grace_period,
        health_timeout=health_timeout,
    )
    raise typer.Exit(run_apps(options))


@app.command(
    "new",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Kind options (see `daprforge kinds`): "
    "ai-agent --role --model --system-prompt --max-tokens --temperature; "
    "crud-api --resource --plural --events-topic --soft-delete; "
    "event-processor --topic --dead-letter-topic --max-retries; "
    "code-executor --timeout --max-output --concurrency --queue; "
    "every kind --replicas --image.",
)
def new(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Argument(help="ai-agent, crud-api, event-processor or code-executor."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Argument(help="Service name: a Kubernetes name such as exercise-service."),
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to create it. Default: ./NAME.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port the app listens on. Default: 8000.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty folder (over our files).")
    ] = False,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Never ask; use defaults for what is not given.")
    ] = False,
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="An option as key=value (repeatable), e.g. topic=orders."),
    ] = None,
) -> None:
    """Generate a production-ready FastAPI + Dapr service.

    Everything is validated before anything is written. With a terminal attached (and
    without --defaults), missing values are asked for.
    """
    import sys

    from rich.console import Console

    from daprforge.generator import NewRequest
    from daprforge.generator.console import run_new

    request = NewRequest(
        kind=kind,
        name=name,
        directory=directory,
        port=port,
        force=force,
        set_values=tuple(set_values or ()),
        flags=tuple(ctx.args),
    )
    interactive = sys.stdin.isatty() and not defaults
    raise typer.Exit(
        run_new(
            request,
            console=Console(highlight=False),
            errors=Console(stderr=True, highlight=False),
            interactive=interactive,
        )
    )


@app.command("kinds")
def kinds() -> None:
    """List the kinds of service `daprforge new` creates, with their options."""
    from rich.console import Console

    from daprforge.generator.console import kinds_table

    Console().print(kinds_table())
