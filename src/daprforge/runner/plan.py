"""Turn a template into launch plans: ports, the app's environment and the sidecar's flags.

Pure data plus two small checks of the machine (is a port free, where is ``daprd``), so every
rule here is unit-tested without starting a process.
"""

from __future__ import annotations

import errno
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from daprforge.launch import free_port
from daprforge.runner.template import AppConfig, RunTemplate

Runtime = Literal["daprforge", "daprd"]
RUNTIMES: tuple[Runtime, ...] = ("daprforge", "daprd")

DAPRD_PROTOCOLS = ("http", "https", "grpc", "grpcs", "h2c")
SIDECAR_LOG_LEVELS = ("debug", "info", "warn", "warning", "error")

# Template keys (kept in AppConfig.options) that map one-to-one onto a daprd flag.
# Booleans become a bare flag when true; integers are left out when they are not positive.
DAPRD_OPTION_FLAGS: dict[str, str] = {
    "daprInternalGRPCPort": "--dapr-internal-grpc-port",
    "apiListenAddresses": "--dapr-listen-addresses",
    "readBufferSize": "--read-buffer-size",
    "appMaxConcurrency": "--app-max-concurrency",
    "enableAppHealthCheck": "--enable-app-health-check",
    "appHealthCheckPath": "--app-health-check-path",
    "appHealthProbeInterval": "--app-health-probe-interval",
    "appHealthProbeTimeout": "--app-health-probe-timeout",
    "appHealthThreshold": "--app-health-threshold",
    "placementHostAddress": "--placement-host-address",
    "schedulerHostAddress": "--scheduler-host-address",
    "unixDomainSocket": "--unix-domain-socket",
    "enableProfiling": "--enable-profiling",
    "profilePort": "--profile-port",
}
# The subset of those our sidecar understands too.
SIDECAR_OPTION_FLAGS: dict[str, str] = {
    "daprInternalGRPCPort": "--dapr-internal-grpc-port",  # its internal invocation port
}
# Used only by `dapr run -k` or by the Dapr CLI itself: no runtime flag.
NO_FLAG_OPTIONS = (
    "containerImage",
    "containerImagePullPolicy",
    "createService",
    "runtimePath",
    "appSSL",
)


class PlanError(Exception):
    """Something in the template this runtime cannot do, or a port already in use."""


class DaprdNotFound(PlanError):
    def __init__(self) -> None:
        super().__init__(
            "--runtime daprd needs the 'daprd' binary on PATH, and there is none.\n"
            "Install Dapr (https://docs.dapr.io/getting-started/install-dapr-selfhost/: "
            "'dapr init --slim' puts daprd in ~/.dapr/bin, then add that folder to PATH), "
            "or drop '--runtime daprd' to use daprforge's built-in sidecar."
        )


def find_daprd(path: str | None = None) -> str:
    """The daprd executable on PATH (or on ``path``), else DaprdNotFound."""
    found = shutil.which("daprd", path=path)
    if found is None:
        raise DaprdNotFound()
    return found


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Is something listening there? (SO_REUSEADDR, as servers use: a port whose last
    connections are in TIME_WAIT is free for them.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


@dataclass(frozen=True)
class AppPlan:
    """One app and its sidecar, with every port decided."""

    app: AppConfig
    runtime: Runtime
    dapr_http_port: int
    dapr_grpc_port: int | None
    metrics_port: int | None
    resources_paths: tuple[Path, ...]
    config_file: Path | None

    @property
    def app_id(self) -> str:
        return self.app.app_id

    @property
    def app_protocol(self) -> str:
        """As the Dapr CLI: the deprecated ``appSSL`` turns http into https, grpc into grpcs."""
        protocol = self.app.app_protocol
        if self.app.options.get("appSSL") and protocol in ("http", "grpc"):
            return protocol + "s"
        return protocol

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_http_port}"

    def app_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The app's environment: ``base`` (the runner's own), the Dapr variables, then the
        template's ``env``, which wins on a clash, as with the Dapr CLI (its variables are
        appended last). Unset ports are left out. PYTHONUNBUFFERED=1 unless already set, so
        a Python app's prints reach the terminal as they happen rather than at exit."""
        env = dict(base)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["APP_ID"] = self.app_id
        if self.app.app_port is not None:
            env["APP_PORT"] = str(self.app.app_port)
        env["APP_CHANNEL_ADDRESS"] = self.app.channel_address
        env["DAPR_HTTP_PORT"] = str(self.dapr_http_port)
        if self.dapr_grpc_port is not None:
            env["DAPR_GRPC_PORT"] = str(self.dapr_grpc_port)
        if self.metrics_port is not None:
            env["DAPR_METRICS_PORT"] = str(self.metrics_port)
        env["APP_PROTOCOL"] = self.app_protocol
        env.update(self.app.env)
        return env

    def _shared_flags(self) -> list[str]:
        """Flags that mean the same to daprd and to our sidecar."""
        app = self.app
        args: list[str] = []
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        if app.log_level:
            args += ["--log-level", app.log_level]
        if app.max_body_size:
            args += ["--max-body-size", app.max_body_size]
        if app.enable_api_logging:
            args.append("--enable-api-logging")
        return args

    def sidecar_args(self) -> list[str]:
        """Flags for ``daprforge sidecar`` beyond the ones SidecarProcess always passes
        (``--app-id``, ``--dapr-http-port``, ``--resources-path``, ``--app-port``)."""
        app = self.app
        args = ["--app-protocol", self.app_protocol]
        if app.app_channel_address:
            args += ["--app-channel-address", app.app_channel_address]
        args += self._shared_flags()
        for key, flag in SIDECAR_OPTION_FLAGS.items():
            if (value := app.options.get(key)) is not None:
                args += [flag, str(value)]
        return args

    def daprd_args(self) -> list[str]:
        """The daprd command line (without the binary), as ``dapr run`` builds it."""
        app = self.app
        args = ["--app-id", app.app_id, "--dapr-http-port", str(self.dapr_http_port)]
        if self.dapr_grpc_port is not None:
            args += ["--dapr-grpc-port", str(self.dapr_grpc_port)]
        if self.metrics_port is not None:
            args += ["--metrics-port", str(self.metrics_port)]
        if app.app_port is not None:
            args += ["--app-port", str(app.app_port)]
        args += ["--app-protocol", self.app_protocol]
        if app.app_channel_address:
            args += ["--app-channel-address", app.app_channel_address]
        for path in self.resources_paths:
            args += ["--resources-path", str(path)]
        args += self._shared_flags()
        for key, flag in DAPRD_OPTION_FLAGS.items():
            value = app.options.get(key)
            if value is None or value is False or value == "":
                continue
            if value is True:
                args.append(flag)
            elif isinstance(value, int) and value <= 0:
                continue
            else:
                args += [flag, str(value)]
        return args

    def daprd_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """daprd inherits the runner's environment, not the template's ``env`` (§9)."""
        env = dict(base)
        env.setdefault("DAPR_HOST_IP", "127.0.0.1")
        return env


def check_support(template: RunTemplate, runtime: Runtime) -> tuple[list[str], list[str]]:
    """(errors, notes): what the runtime cannot do at all, and template keys it ignores."""
    errors: list[str] = []
    notes: list[str] = []
    for app in template.apps:
        where = f"{template.path.name}: app '{app.app_id}'"
        protocol = app.app_protocol
        if runtime == "daprforge":
            if protocol != "http" or app.options.get("appSSL"):
                errors.append(
                    f"{where}: key 'appProtocol': {protocol!r} is not supported by the "
                    "daprforge sidecar (only http); use --runtime daprd"
                )
            if app.log_level and app.log_level.lower() not in SIDECAR_LOG_LEVELS:
                errors.append(
                    f"{where}: key 'logLevel': {app.log_level!r} is not one of "
                    "debug, info, warn, error"
                )
            if app.max_body_size:
                from daprforge.sidecar.options import parse_size

                try:
                    parse_size(app.max_body_size)
                except ValueError as exc:
                    errors.append(f"{where}: key 'maxBodySize': {exc}")
            ignored = [
                key
                for key in app.options
                if key not in NO_FLAG_OPTIONS and key not in SIDECAR_OPTION_FLAGS
            ]
            ignored += [
                key
                for key, value in (
                    ("daprGRPCPort", app.dapr_grpc_port),
                    ("metricsPort", app.metrics_port),
                )
                if value is not None
            ]
            if ignored:
                notes.append(
                    f"{app.app_id}: the daprforge sidecar ignores {', '.join(sorted(ignored))} "
                    "(--runtime daprd honours them)"
                )
        elif protocol not in DAPRD_PROTOCOLS:
            errors.append(
                f"{where}: key 'appProtocol': {protocol!r} is not one of "
                + ", ".join(DAPRD_PROTOCOLS)
            )
        unused = [key for key in NO_FLAG_OPTIONS if key in app.options and key != "appSSL"]
        if unused:
            notes.append(f"{app.app_id}: ignored by daprforge run: {', '.join(unused)}")
    return errors, notes


def plan_run(
    template: RunTemplate,
    runtime: Runtime,
    *,
    pick_port: Callable[[], int] = free_port,
    home: Path | None = None,
    check_ports: bool = True,
) -> list[AppPlan]:
    """Decide every port (free ones where the template sets none). With ``--runtime daprd``,
    apps without resources or config fall back to ``~/.dapr/components`` and
    ``~/.dapr/config.yaml`` when present, as with the Dapr CLI; our sidecar uses its embedded
    defaults instead. Raises PlanError when a port the template names is already in use."""
    dapr_home = (home or Path.home()) / ".dapr"
    taken: set[int] = set()
    for app in template.apps:
        taken.update(
            port
            for port in (app.app_port, app.dapr_http_port, app.dapr_grpc_port, app.metrics_port)
            if port is not None
        )

    def pick() -> int:
        for _ in range(100):
            port = pick_port()
            if port not in taken:
                taken.add(port)
                return port
        raise PlanError("could not find a free port")  # pragma: no cover

    if check_ports:
        _check_ports(template, runtime)
    plans: list[AppPlan] = []
    for app in template.apps:
        resources, config = app.resources_paths, app.config_file
        grpc_port, metrics_port = app.dapr_grpc_port, app.metrics_port
        if runtime == "daprd":
            grpc_port = grpc_port or pick()
            metrics_port = metrics_port or pick()
            if not resources and (dapr_home / "components").is_dir():
                resources = (dapr_home / "components",)
            if config is None and (dapr_home / "config.yaml").is_file():
                config = dapr_home / "config.yaml"
        plans.append(
            AppPlan(
                app=app,
                runtime=runtime,
                dapr_http_port=app.dapr_http_port or pick(),
                dapr_grpc_port=grpc_port,
                metrics_port=metrics_port,
                resources_paths=resources,
                config_file=config,
            )
        )
    return plans


def _check_ports(template: RunTemplate, runtime: Runtime) -> None:
    for app in template.apps:
        ports = [("daprHTTPPort", app.dapr_http_port)]
        if runtime == "daprd":  # our sidecar opens neither
            ports += [("daprGRPCPort", app.dapr_grpc_port), ("metricsPort", app.metrics_port)]
        if app.command:  # without a command the app is started by someone else
            ports.append(("appPort", app.app_port))
        for key, port in ports:
            if port is not None and port_in_use(port):
                raise PlanError(
                    f"{template.path.name}: app '{app.app_id}': key '{key}': port {port} is "
                    "already in use (is another run still up?)"
                )
