"""The Multi-App Run template (reference §9): parsing, merging, path rules, errors, and the
plan built from it (ports, app environment, sidecar and daprd flags)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest

from daprforge.launch import SidecarProcess
from daprforge.runner.plan import (
    DaprdNotFound,
    PlanError,
    check_support,
    find_daprd,
    plan_run,
)
from daprforge.runner.processes import DaprdProcess
from daprforge.runner.template import (
    AppConfig,
    RunTemplate,
    TemplateError,
    find_template,
    load_template,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return path


def template(tmp_path: Path, text: str, *, dirs: tuple[str, ...] = ("orders",)) -> RunTemplate:
    for name in dirs:
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    return load_template(write(tmp_path / "dapr.yaml", text))


def only(run: RunTemplate) -> AppConfig:
    assert len(run.apps) == 1
    return run.apps[0]


def counter() -> Callable[[], int]:
    ports = iter(range(41000, 42000))
    return lambda: next(ports)


# ---------------------------------------------------------------------- parsing and defaults


def test_minimal_app_gets_dapr_defaults(tmp_path: Path) -> None:
    run = template(tmp_path, "version: 1\napps:\n  - appDirPath: ./orders\n")
    app = only(run)
    assert run.version == 1
    assert run.name is None
    assert app.app_id == "orders"  # base name of appDirPath
    assert app.app_dir == tmp_path / "orders"
    assert app.command == ()
    assert app.app_port is None
    assert app.app_protocol == "http"
    assert app.channel_address == "127.0.0.1"
    assert app.resources_paths == ()
    assert app.resources_source == "none"
    assert app.config_file is None
    assert app.app_log_destination == "fileAndConsole"
    assert app.daprd_log_destination == "fileAndConsole"
    assert run.warnings == ()


def test_app_fields_are_typed(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        name: shop
        apps:
          - appDirPath: orders
            appID: order-api
            appPort: 8000
            appProtocol: HTTP
            appChannelAddress: 0.0.0.0
            command: ["python3", "-m", "uvicorn", "app.main:app"]
            env: {DEBUG: true, WORKERS: 2, EMPTY: null, NAME: x}
            daprHTTPPort: 3600
            daprGRPCPort: 50010
            metricsPort: 9095
            logLevel: debug
            enableApiLogging: true
            maxBodySize: 8Mi
            appLogDestination: console
            daprdLogDestination: file
            enableAppHealthCheck: true
            appHealthCheckPath: /healthz
        """,
    )
    app = only(run)
    assert run.name == "shop"
    assert app.app_id == "order-api"
    assert app.app_port == 8000
    assert app.app_protocol == "http"
    assert app.app_channel_address == "0.0.0.0"
    assert app.command == ("python3", "-m", "uvicorn", "app.main:app")
    # yaml.v2 reads any scalar into a string field: true -> "true", 2 -> "2", null -> ""
    assert app.env == {"DEBUG": "true", "WORKERS": "2", "EMPTY": "", "NAME": "x"}
    assert (app.dapr_http_port, app.dapr_grpc_port, app.metrics_port) == (3600, 50010, 9095)
    assert app.log_level == "debug"
    assert app.enable_api_logging is True
    assert app.max_body_size == "8Mi"
    assert (app.app_log_destination, app.daprd_log_destination) == ("console", "file")
    assert app.options == {"enableAppHealthCheck": True, "appHealthCheckPath": "/healthz"}


def test_zero_or_negative_port_means_unset(tmp_path: Path) -> None:
    app = only(
        template(tmp_path, "version: 1\napps: [{appDirPath: orders, appPort: 0, daprHTTPPort: -1}]")
    )
    assert app.app_port is None
    assert app.dapr_http_port is None


# ---------------------------------------------------------------------- common


def test_common_is_merged_app_value_wins_env_maps_merge(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        common:
          logLevel: warn
          enableApiLogging: true
          maxBodySize: 2Mi
          appProtocol: http
          env: {SHARED: common, OVERRIDE: common}
        apps:
          - appDirPath: orders
            logLevel: debug
            enableApiLogging: false
            env: {OVERRIDE: app, OWN: yes-please}
          - appDirPath: billing
        """,
        dirs=("orders", "billing"),
    )
    orders, billing = run.apps
    assert orders.log_level == "debug"
    assert orders.enable_api_logging is False  # present in the app: it wins
    assert orders.max_body_size == "2Mi"
    assert orders.env == {"SHARED": "common", "OVERRIDE": "app", "OWN": "yes-please"}
    assert billing.log_level == "warn"
    assert billing.enable_api_logging is True
    assert billing.env == {"SHARED": "common", "OVERRIDE": "common"}


def test_app_only_keys_in_common_are_not_shared(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        common:
          appID: everyone
          appPort: 8000
          command: ["python3", "app.py"]
        apps:
          - appDirPath: orders
        """,
    )
    app = only(run)
    assert app.app_id == "orders"
    assert app.app_port is None
    assert app.command == ()
    assert len(run.warnings) == 3
    assert all("is not shared" in warning for warning in run.warnings)


def test_unknown_keys_warn_with_a_suggestion(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        colour: blue
        common: {logLevl: debug}
        apps:
          - appDirPath: orders
            apPort: 8000
        """,
    )
    assert only(run).app_port is None
    warnings = "\n".join(run.warnings)
    assert "unknown key 'colour' ignored" in warnings
    assert "common: unknown key 'logLevl' ignored (did you mean 'logLevel'?)" in warnings
    assert "apps[0] (appDirPath 'orders'): unknown key 'apPort' ignored" in warnings
    assert "did you mean 'appPort'?" in warnings


# ---------------------------------------------------------------------- paths


def test_path_rules(tmp_path: Path) -> None:
    (tmp_path / "shared-components").mkdir()
    write(tmp_path / "shared-config.yaml", "kind: Configuration\n")
    (tmp_path / "services" / "orders" / "components").mkdir(parents=True)
    write(tmp_path / "services" / "orders" / "config.yaml", "kind: Configuration\n")
    (tmp_path / "services" / "orders" / "legacy").mkdir()
    (tmp_path / "services" / "billing").mkdir()
    run = template(
        tmp_path,
        """\
        version: 1
        common:
          resourcesPaths: [shared-components]
          configFilePath: shared-config.yaml
        apps:
          - appDirPath: services/orders
            resourcesPaths: [components]
            resourcesPath: legacy
            configFilePath: config.yaml
          - appDirPath: services/billing
        """,
        dirs=(),
    )
    orders, billing = run.apps
    # app paths: relative to appDirPath; the deprecated resourcesPath is appended
    assert orders.resources_paths == (
        tmp_path / "services/orders/components",
        tmp_path / "services/orders/legacy",
    )
    assert orders.resources_source == "app"
    assert orders.config_file == tmp_path / "services/orders/config.yaml"
    # common paths: relative to the template file
    assert billing.resources_paths == (tmp_path / "shared-components",)
    assert billing.resources_source == "common"
    assert billing.config_file == tmp_path / "shared-config.yaml"
    assert billing.config_source == "common"


def test_template_location_not_cwd_anchors_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project" / "orders").mkdir(parents=True)
    write(tmp_path / "project" / "dapr.yaml", "version: 1\napps: [{appDirPath: orders}]\n")
    monkeypatch.chdir(tmp_path)
    run = load_template(find_template(Path("project"), tmp_path))
    assert only(run).app_dir == tmp_path / "project" / "orders"


def test_dot_dapr_folder_beats_common_but_not_the_app(tmp_path: Path) -> None:
    (tmp_path / "common-res").mkdir()
    write(tmp_path / "common.yaml", "kind: Configuration\n")
    for name in ("orders", "billing"):
        (tmp_path / name / ".dapr" / "resources").mkdir(parents=True)
        write(tmp_path / name / ".dapr" / "config.yaml", "kind: Configuration\n")
    (tmp_path / "billing" / "mine").mkdir()
    write(tmp_path / "billing" / "mine.yaml", "kind: Configuration\n")
    run = template(
        tmp_path,
        """\
        version: 1
        common: {resourcesPaths: [common-res], configFilePath: common.yaml}
        apps:
          - appDirPath: orders
          - appDirPath: billing
            resourcesPaths: [mine]
            configFilePath: mine.yaml
        """,
        dirs=(),
    )
    orders, billing = run.apps
    assert orders.resources_paths == (tmp_path / "orders/.dapr/resources",)
    assert orders.resources_source == ".dapr/resources"
    assert orders.config_file == tmp_path / "orders/.dapr/config.yaml"
    assert orders.config_source == ".dapr/config.yaml"
    assert billing.resources_paths == (tmp_path / "billing/mine",)
    assert billing.config_file == tmp_path / "billing/mine.yaml"


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "components").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    app = only(
        template(
            tmp_path,
            f"""\
            version: 1
            apps:
              - appDirPath: {tmp_path / "elsewhere"}
                resourcesPaths: ["~/components"]
            """,
            dirs=(),
        )
    )
    assert app.app_dir == tmp_path / "elsewhere"
    assert app.resources_paths == (tmp_path / "home" / "components",)


def test_find_template(tmp_path: Path) -> None:
    file = write(tmp_path / "dapr.yaml", "version: 1\n")
    other = write(tmp_path / "sub" / "run.yaml", "version: 1\n")
    assert find_template(None, tmp_path) == file
    assert find_template(Path("."), tmp_path) == file
    assert find_template(Path("sub/run.yaml"), tmp_path) == other
    with pytest.raises(TemplateError, match=r"no dapr\.yaml in this folder; pass -f"):
        find_template(None, tmp_path / "sub")
    with pytest.raises(TemplateError, match="no such file or folder"):
        find_template(Path("missing.yaml"), tmp_path)


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "where", "key", "message"),
    [
        ("apps: [{appDirPath: orders}]", "", "version", "required"),
        ("version: 0\napps: [{appDirPath: orders}]", "", "version", "non-zero"),
        ('version: "1"\napps: [{appDirPath: orders}]', "", "version", "expected an integer"),
        ("version: 1", "", "apps", "no apps to run"),
        ("version: 1\napps: {appDirPath: orders}", "", "apps", "expected a list"),
        ("version: 1\napps: [{appID: x}]", "apps[0] (appID 'x')", "appDirPath", "required"),
        (
            "version: 1\napps: [{appDirPath: nope}]",
            "apps[0]",
            "appDirPath",
            "is not an existing folder",
        ),
        (
            'version: 1\napps: [{appDirPath: orders, appPort: "8000"}]',
            "apps[0] (appDirPath 'orders')",
            "appPort",
            "expected an integer, got the string '8000'",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, appPort: 70000}]",
            "apps[0]",
            "appPort",
            "not a port",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, command: python3 app.py}]",
            "apps[0]",
            "command",
            'expected a list, e.g. ["python3", "app.py"]',
        ),
        (
            "version: 1\napps: [{appDirPath: orders, command: [python3, [x]]}]",
            "apps[0]",
            "command",
            "a list of strings",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, env: [A=1]}]",
            "apps[0]",
            "env",
            "expected a mapping",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, env: {A: {b: 1}}}]",
            "apps[0]",
            "env",
            "'A' must map to a single value",
        ),
        (
            'version: 1\napps: [{appDirPath: orders, enableApiLogging: "yes"}]',
            "apps[0]",
            "enableApiLogging",
            "expected true or false",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, appLogDestination: stdout}]",
            "apps[0]",
            "appLogDestination",
            "one of file, console, fileAndConsole",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, resourcesPaths: [missing]}]",
            "apps[0]",
            "resourcesPaths",
            "does not exist",
        ),
        (
            "version: 1\ncommon: {configFilePath: missing.yaml}\napps: [{appDirPath: orders}]",
            "common",
            "configFilePath",
            "does not exist",
        ),
        (
            "version: 1\ncommon: {logLevel: [a]}\napps: [{appDirPath: orders}]",
            "common",
            "logLevel",
            "expected a string",
        ),
        (
            "version: 1\napps: [{appDirPath: orders}, {appDirPath: orders}]",
            "apps[1]",
            "appID",
            "app id 'orders' is used by apps[0] too",
        ),
        (
            "version: 1\napps: [{appDirPath: orders, appPort: 8000},"
            " {appDirPath: orders, appID: b, daprHTTPPort: 8000}]",
            "apps[1] (appID 'b')",
            "daprHTTPPort",
            "port 8000 is already taken by appPort of 'orders'",
        ),
        ("version: 1\napps: [orders]", "apps[0]", "", "expected a mapping"),
    ],
)
def test_invalid_templates_name_file_app_and_key(
    tmp_path: Path, body: str, where: str, key: str, message: str
) -> None:
    (tmp_path / "orders").mkdir()
    path = write(tmp_path / "dapr.yaml", body + "\n")
    with pytest.raises(TemplateError) as caught:
        load_template(path)
    error = caught.value
    text = str(error)
    assert text.startswith(str(path)), text
    assert message in text, text
    assert error.where.startswith(where), text
    assert error.key == key, text
    if key:
        assert f"key '{key}'" in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "the file is empty"),
        ("- just\n- a list\n", "expected a mapping at the top level, got a list"),
        ("version: 1\napps: [\n", "not valid YAML"),
    ],
)
def test_unreadable_templates(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        load_template(write(tmp_path / "dapr.yaml", body))


# ---------------------------------------------------------------------- plan: env and ports


def test_app_environment(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        apps:
          - appDirPath: orders
            appPort: 8000
            daprHTTPPort: 3601
            env: {GREETING: hi}
        """,
    )
    (plan,) = plan_run(run, "daprforge", check_ports=False)
    env = plan.app_env({"PATH": "/bin", "APP_PROTOCOL": "stale"})
    assert env == {
        "PATH": "/bin",
        "PYTHONUNBUFFERED": "1",
        "APP_ID": "orders",
        "APP_PORT": "8000",
        "APP_CHANNEL_ADDRESS": "127.0.0.1",
        "DAPR_HTTP_PORT": "3601",
        "APP_PROTOCOL": "http",
        "GREETING": "hi",
    }  # no DAPR_GRPC_PORT / DAPR_METRICS_PORT: not set, and our sidecar opens neither


def test_app_environment_template_env_wins_and_optional_ports(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        apps:
          - appDirPath: orders
            daprGRPCPort: 50011
            metricsPort: 9091
            env: {APP_ID: custom, PYTHONUNBUFFERED: "0"}
        """,
    )
    (plan,) = plan_run(run, "daprforge", pick_port=counter(), check_ports=False)
    env = plan.app_env({})
    assert "APP_PORT" not in env
    assert env["DAPR_HTTP_PORT"] == "41000"
    assert env["DAPR_GRPC_PORT"] == "50011"
    assert env["DAPR_METRICS_PORT"] == "9091"
    assert env["APP_ID"] == "custom"  # as the Dapr CLI: the template's env comes last
    assert env["PYTHONUNBUFFERED"] == "0"


def test_free_ports_are_distinct_and_avoid_template_ports(tmp_path: Path) -> None:
    # the picker repeats itself and offers a port the template uses: both are skipped
    ports = itertools.chain([3500, 41000, 41000], range(41001, 41100))
    run = template(
        tmp_path,
        """\
        version: 1
        apps:
          - {appDirPath: orders, appID: a, appPort: 3500}
          - {appDirPath: orders, appID: b}
          - {appDirPath: orders, appID: c}
        """,
    )
    plans = plan_run(run, "daprd", pick_port=lambda: next(ports), check_ports=False, home=tmp_path)
    chosen = [port for p in plans for port in (p.dapr_http_port, p.dapr_grpc_port, p.metrics_port)]
    assert len(chosen) == len(set(chosen)) == 9
    assert 3500 not in chosen


def test_port_already_in_use_is_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = template(
            tmp_path, f"version: 1\napps: [{{appDirPath: orders, daprHTTPPort: {port}}}]\n"
        )
        with pytest.raises(PlanError, match=f"key 'daprHTTPPort': port {port} is already in use"):
            plan_run(run, "daprforge")


# ---------------------------------------------------------------------- plan: sidecar flags


def full_template(tmp_path: Path) -> RunTemplate:
    (tmp_path / "orders" / "components").mkdir(parents=True)
    write(tmp_path / "orders" / "config.yaml", "kind: Configuration\n")
    return template(
        tmp_path,
        """\
        version: 1
        apps:
          - appDirPath: orders
            appID: order-api
            appPort: 8000
            appChannelAddress: 10.0.0.5
            command: ["python3", "app.py"]
            daprHTTPPort: 3601
            resourcesPaths: [components]
            configFilePath: config.yaml
            logLevel: debug
            maxBodySize: 8Mi
            enableApiLogging: true
            enableAppHealthCheck: true
            appHealthCheckPath: /healthz
            appHealthProbeInterval: 3
            appHealthProbeTimeout: 0
            appHealthThreshold: 2
            readBufferSize: 8Ki
            appMaxConcurrency: 10
            daprInternalGRPCPort: 50099
            placementHostAddress: localhost:50005
            containerImage: ghcr.io/x/orders:1
        """,
    )


def test_daprforge_sidecar_command(tmp_path: Path) -> None:
    (plan,) = plan_run(full_template(tmp_path), "daprforge", check_ports=False)
    sidecar = SidecarProcess(
        plan.app_id,
        port=plan.dapr_http_port,
        resources_paths=plan.resources_paths,
        app_port=plan.app.app_port,
        extra_args=plan.sidecar_args(),
    )
    command = sidecar.command()
    assert command[1:4] == ["-m", "daprforge", "sidecar"]
    assert command[4:] == [
        "--app-id", "order-api",
        "--dapr-http-port", "3601",
        "--resources-path", str(tmp_path / "orders" / "components"),
        "--app-port", "8000",
        "--app-protocol", "http",
        "--app-channel-address", "10.0.0.5",
        "--config", str(tmp_path / "orders" / "config.yaml"),
        "--log-level", "debug",
        "--max-body-size", "8Mi",
        "--enable-api-logging",
        "--dapr-internal-grpc-port", "50099",
    ]  # fmt: skip


def test_daprd_command_line(tmp_path: Path) -> None:
    ports = iter([50100, 9190])
    (plan,) = plan_run(
        full_template(tmp_path),
        "daprd",
        pick_port=lambda: next(ports),
        check_ports=False,
        home=tmp_path / "nohome",
    )
    daprd = DaprdProcess("/opt/dapr/daprd", plan, ready_timeout=5)
    assert daprd.command() == [
        "/opt/dapr/daprd",
        "--app-id", "order-api",
        "--dapr-http-port", "3601",
        "--dapr-grpc-port", "50100",  # free ports: the template sets neither
        "--metrics-port", "9190",
        "--app-port", "8000",
        "--app-protocol", "http",
        "--app-channel-address", "10.0.0.5",
        "--resources-path", str(tmp_path / "orders" / "components"),
        "--config", str(tmp_path / "orders" / "config.yaml"),
        "--log-level", "debug",
        "--max-body-size", "8Mi",
        "--enable-api-logging",
        "--dapr-internal-grpc-port", "50099",
        "--read-buffer-size", "8Ki",
        "--app-max-concurrency", "10",
        "--enable-app-health-check",
        "--app-health-check-path", "/healthz",
        "--app-health-probe-interval", "3",
        "--app-health-threshold", "2",  # a probe timeout of 0 is left out, as the Dapr CLI
        "--placement-host-address", "localhost:50005",
    ]  # fmt: skip
    assert daprd.url == "http://127.0.0.1:3601"
    assert daprd.cwd == tmp_path / "orders"
    assert daprd.env["DAPR_HOST_IP"] == os.environ.get("DAPR_HOST_IP", "127.0.0.1")
    env = plan.app_env({})
    assert (env["DAPR_GRPC_PORT"], env["DAPR_METRICS_PORT"]) == ("50100", "9190")


def test_daprd_falls_back_to_dot_dapr_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".dapr" / "components").mkdir(parents=True)
    write(home / ".dapr" / "config.yaml", "kind: Configuration\n")
    run = template(tmp_path, "version: 1\napps: [{appDirPath: orders}]\n")
    (ours,) = plan_run(run, "daprforge", check_ports=False, home=home)
    (theirs,) = plan_run(run, "daprd", check_ports=False, home=home)
    assert ours.resources_paths == ()  # our sidecar: embedded defaults
    assert ours.config_file is None
    assert theirs.resources_paths == (home / ".dapr" / "components",)
    assert theirs.config_file == home / ".dapr" / "config.yaml"
    assert "--resources-path" in theirs.daprd_args()


def test_app_ssl_upgrades_the_protocol(tmp_path: Path) -> None:
    run = template(tmp_path, "version: 1\napps: [{appDirPath: orders, appSSL: true}]\n")
    (plan,) = plan_run(run, "daprd", check_ports=False, home=tmp_path)
    assert plan.app_protocol == "https"
    assert plan.app_env({})["APP_PROTOCOL"] == "https"


def test_runtime_support(tmp_path: Path) -> None:
    run = template(
        tmp_path,
        """\
        version: 1
        apps:
          - {appDirPath: orders, appID: a, appProtocol: grpc, logLevel: fatal, maxBodySize: lots}
          - {appDirPath: orders, appID: b, enableAppHealthCheck: true, metricsPort: 9999,
             createService: true}
        """,
    )
    errors, notes = check_support(run, "daprforge")
    assert len(errors) == 3
    assert (
        "app 'a': key 'appProtocol': 'grpc' is not supported by the daprforge sidecar"
        in (errors[0])
    )
    assert "use --runtime daprd" in errors[0]
    assert "key 'logLevel'" in errors[1]
    assert "key 'maxBodySize'" in errors[2]
    assert notes == [
        "b: the daprforge sidecar ignores enableAppHealthCheck, metricsPort "
        "(--runtime daprd honours them)",
        "b: ignored by daprforge run: createService",
    ]
    errors, _ = check_support(run, "daprd")
    assert errors == []


def test_missing_daprd_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DaprdNotFound) as caught:
        find_daprd(path=str(tmp_path))
    message = str(caught.value)
    assert "'daprd' binary on PATH" in message
    assert "dapr init --slim" in message
    assert "drop '--runtime daprd'" in message
    fake = tmp_path / "daprd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_daprd(path=str(tmp_path)) == str(fake)
