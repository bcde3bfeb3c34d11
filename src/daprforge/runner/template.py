"""Read a Multi-App Run template (``dapr.yaml``, the ``dapr run -f`` format) into typed apps.

Follows the Dapr CLI's parser (reference §9): ``version`` is required and non-zero;
``common`` holds the shared fields and an app's own value wins when set; ``env`` maps are
merged with the app's keys winning; ``appID``/``appPort``/``command`` are never shared.
``appDirPath`` and ``common`` paths are relative to the template file, the other app paths to
``appDirPath``; every path must exist. Resources: app ``resourcesPaths`` (plus the deprecated
``resourcesPath``) > ``<appDirPath>/.dapr/resources`` > ``common`` > none. Config:
``configFilePath`` > ``<appDirPath>/.dapr/config.yaml`` > ``common`` > none.

Like Dapr's parser, unknown keys are ignored, but we say so (a typo should not pass silently).
A value of the wrong type, a missing required key or a missing path is a ``TemplateError``
naming the file, the app and the key; nothing is started then.

One deliberate difference: a key counts as "set" when it is present and not null, so an app's
explicit ``enableApiLogging: false`` wins over ``common``'s ``true``. (The Dapr CLI treats Go
zero values as unset and would take ``common``'s value.)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

TEMPLATE_NAME = "dapr.yaml"
LogDestination = Literal["file", "console", "fileAndConsole"]
LOG_DESTINATIONS: tuple[LogDestination, ...] = ("file", "console", "fileAndConsole")
DEFAULT_APP_LOG_DESTINATION: LogDestination = "fileAndConsole"
# Dapr's default for daprd is "file"; we show sidecar logs on the terminal too, because a
# multi-app run whose sidecar failures land only in a file is a known complaint (dapr/cli#1238).
DEFAULT_DAPRD_LOG_DESTINATION: LogDestination = "fileAndConsole"

Kind = Literal["str", "int", "port", "bool", "list", "map", "path", "paths", "logdest"]

# Keys of SharedRunConfig (dapr/cli pkg/standalone/run.go): allowed in `common` and in apps.
SHARED_KEYS: dict[str, Kind] = {
    "configFilePath": "path",
    "appProtocol": "str",
    "apiListenAddresses": "str",
    "enableProfiling": "bool",
    "logLevel": "str",
    "appMaxConcurrency": "int",
    "placementHostAddress": "str",
    "resourcesPath": "path",
    "resourcesPaths": "paths",
    "appSSL": "bool",
    "maxBodySize": "str",
    "readBufferSize": "str",
    "enableAppHealthCheck": "bool",
    "appHealthCheckPath": "str",
    "appHealthProbeInterval": "int",
    "appHealthProbeTimeout": "int",
    "appHealthThreshold": "int",
    "enableApiLogging": "bool",
    "runtimePath": "path",
    "env": "map",
    "daprdLogDestination": "logdest",
    "appLogDestination": "logdest",
    "schedulerHostAddress": "str",
}
# Keys of RunConfig and App that only an app may set.
APP_KEYS: dict[str, Kind] = {
    "appDirPath": "str",  # resolved separately: relative to the template file
    "appID": "str",
    "appChannelAddress": "str",
    "appPort": "port",
    "daprHTTPPort": "port",
    "daprGRPCPort": "port",
    "daprInternalGRPCPort": "port",
    "profilePort": "port",
    "metricsPort": "port",
    "command": "list",
    "unixDomainSocket": "str",
    "containerImage": "str",
    "containerImagePullPolicy": "str",
    "createService": "bool",
}
# Known to the Dapr CLI, read but not acted on by daprforge (warned about when set).
COMMON_ONLY_KEYS: dict[str, Kind] = {"envFile": "str"}
TOP_KEYS = ("version", "name", "common", "apps")


class TemplateError(Exception):
    """An invalid template: says which file, which app and which key."""

    def __init__(self, file: Path, message: str, *, where: str = "", key: str = "") -> None:
        self.file = file
        self.where = where
        self.key = key
        self.message = message
        location = ": ".join(part for part in (where, f"key '{key}'" if key else "") if part)
        super().__init__(f"{file}: {location + ': ' if location else ''}{message}")


@dataclass(frozen=True)
class AppConfig:
    """One app of the template after merging ``common`` and resolving paths and defaults."""

    app_id: str
    app_dir: Path
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    app_port: int | None = None
    app_protocol: str = "http"
    app_channel_address: str | None = None
    dapr_http_port: int | None = None
    dapr_grpc_port: int | None = None
    metrics_port: int | None = None
    resources_paths: tuple[Path, ...] = ()
    resources_source: str = "none"
    """``app``, ``.dapr/resources``, ``common`` or ``none`` (the sidecar's own defaults)."""
    config_file: Path | None = None
    config_source: str = "none"
    log_level: str | None = None
    enable_api_logging: bool = False
    max_body_size: str | None = None
    app_log_destination: LogDestination = DEFAULT_APP_LOG_DESTINATION
    daprd_log_destination: LogDestination = DEFAULT_DAPRD_LOG_DESTINATION
    options: Mapping[str, Any] = field(default_factory=dict)
    """Every other key that is set (after the merge), by its YAML name, e.g. the app health
    check settings: passed to daprd by ``--runtime daprd``, ignored by our sidecar."""

    @property
    def channel_address(self) -> str:
        return self.app_channel_address or "127.0.0.1"


@dataclass(frozen=True)
class RunTemplate:
    path: Path
    version: int
    name: str | None
    apps: tuple[AppConfig, ...]
    warnings: tuple[str, ...] = ()


def find_template(target: Path | None, cwd: Path) -> Path:
    """``-f FILE`` → FILE; ``-f DIR`` → DIR/dapr.yaml; nothing → ./dapr.yaml."""
    path = cwd if target is None else (cwd / target.expanduser())
    if path.is_dir():
        candidate = path / TEMPLATE_NAME
        if not candidate.is_file():
            hint = "" if target is not None else "; pass -f <file or folder>"
            raise TemplateError(path, f"no {TEMPLATE_NAME} in this folder{hint}")
        return candidate.resolve()
    if not path.exists():
        raise TemplateError(path, "no such file or folder")
    return path.resolve()


def load_template(path: Path) -> RunTemplate:
    """Parse, validate and merge a template file. Raises TemplateError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(path, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(path, f"not valid YAML: {exc}") from None
    return _Parser(path).parse(document)


class _Parser:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent.resolve()
        self.warnings: list[str] = []

    def error(self, message: str, *, where: str = "", key: str = "") -> TemplateError:
        return TemplateError(self.path, message, where=where, key=key)

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{self.path.name}: {where + ': ' if where else ''}{message}")

    # ------------------------------------------------------------------ document

    def parse(self, document: object) -> RunTemplate:
        if document is None:
            raise self.error("the file is empty; expected 'version' and 'apps'")
        if not isinstance(document, dict):
            raise self.error(f"expected a mapping at the top level, got {_kind(document)}")
        self.unknown_keys(document, TOP_KEYS, "")
        version = document.get("version")
        if version is None:
            raise self.error("required and must be non-zero, e.g. 'version: 1'", key="version")
        if not _is_int(version):
            raise self.error(f"expected an integer, got {_show(version)}", key="version")
        if version == 0:
            raise self.error("must be non-zero, e.g. 'version: 1'", key="version")
        name = document.get("name")
        if name is not None and not _is_scalar(name):
            raise self.error(f"expected a string, got {_kind(name)}", key="name")

        common_raw = document.get("common")
        if common_raw is None:
            common_raw = {}
        if not isinstance(common_raw, dict):
            raise self.error(f"expected a mapping, got {_kind(common_raw)}", key="common")
        common = self.fields(common_raw, "common", shared_only=True)
        self.resolve_paths(common, self.base, "common")

        apps_raw = document.get("apps")
        if apps_raw is None or apps_raw == []:
            raise self.error("no apps to run: add at least one entry under 'apps'", key="apps")
        if not isinstance(apps_raw, list):
            raise self.error(f"expected a list of apps, got {_kind(apps_raw)}", key="apps")

        apps = [self.app(index, raw, common) for index, raw in enumerate(apps_raw)]
        self.check_unique(apps)
        return RunTemplate(
            path=self.path,
            version=version,
            name=None if name is None else _text(name),
            apps=tuple(apps),
            warnings=tuple(self.warnings),
        )

    def app(self, index: int, raw: object, common: dict[str, Any]) -> AppConfig:
        where = f"apps[{index}]"
        if not isinstance(raw, dict):
            raise self.error(f"expected a mapping, got {_kind(raw)}", where=where)
        if _is_scalar(raw.get("appID")) and raw.get("appID") not in (None, ""):
            where = f"apps[{index}] (appID '{_text(raw['appID'])}')"
        elif _is_scalar(raw.get("appDirPath")):
            where = f"apps[{index}] (appDirPath '{_text(raw['appDirPath'])}')"
        values = self.fields(raw, where, shared_only=False)

        app_dir_text = values.pop("appDirPath", None)
        if not app_dir_text:
            raise self.error("required: the app's folder", where=where, key="appDirPath")
        app_dir = _absolute(app_dir_text, self.base)
        if not app_dir.is_dir():
            raise self.error(f"{app_dir} is not an existing folder", where=where, key="appDirPath")
        self.resolve_paths(values, app_dir, where)

        app_id = values.pop("appID", None) or app_dir.name
        # Resources and config: app > <appDir>/.dapr > common > none.
        resources, resources_source = _paths(values), "app"
        values.pop("resourcesPaths", None)
        values.pop("resourcesPath", None)
        if not resources:
            local = app_dir / ".dapr" / "resources"
            resources, resources_source = (
                ((local,), ".dapr/resources") if local.is_dir() else ((), "")
            )
        if not resources:
            resources, resources_source = _paths(common), "common"
        if not resources:
            resources_source = "none"
        config, config_source = values.pop("configFilePath", None), "app"
        if config is None:
            local_config = app_dir / ".dapr" / "config.yaml"
            if local_config.is_file():
                config, config_source = local_config, ".dapr/config.yaml"
            else:
                config, config_source = common.get("configFilePath"), "common"
        if config is None:
            config_source = "none"

        merged: dict[str, Any] = {
            key: value
            for key, value in common.items()
            if key not in ("resourcesPaths", "resourcesPath", "configFilePath")
        }
        env = {**merged.pop("env", {}), **values.pop("env", {})}
        merged.update(values)
        return AppConfig(
            app_id=app_id,
            app_dir=app_dir,
            command=tuple(merged.pop("command", ())),
            env=env,
            app_port=merged.pop("appPort", None),
            app_protocol=(merged.pop("appProtocol", None) or "http").lower(),
            app_channel_address=merged.pop("appChannelAddress", None) or None,
            dapr_http_port=merged.pop("daprHTTPPort", None),
            dapr_grpc_port=merged.pop("daprGRPCPort", None),
            metrics_port=merged.pop("metricsPort", None),
            resources_paths=resources,
            resources_source=resources_source,
            config_file=config,
            config_source=config_source,
            log_level=merged.pop("logLevel", None) or None,
            enable_api_logging=bool(merged.pop("enableApiLogging", False)),
            max_body_size=merged.pop("maxBodySize", None) or None,
            app_log_destination=merged.pop("appLogDestination", DEFAULT_APP_LOG_DESTINATION),
            daprd_log_destination=merged.pop("daprdLogDestination", DEFAULT_DAPRD_LOG_DESTINATION),
            options=merged,
        )

    def check_unique(self, apps: list[AppConfig]) -> None:
        seen: dict[str, int] = {}
        ports: dict[int, str] = {}
        for index, app in enumerate(apps):
            if app.app_id in seen:
                raise self.error(
                    f"app id '{app.app_id}' is used by apps[{seen[app.app_id]}] too; "
                    "set a distinct appID",
                    where=f"apps[{index}]",
                    key="appID",
                )
            seen[app.app_id] = index
            for key, port in (
                ("appPort", app.app_port),
                ("daprHTTPPort", app.dapr_http_port),
                ("daprGRPCPort", app.dapr_grpc_port),
                ("metricsPort", app.metrics_port),
            ):
                if port is None:
                    continue
                if port in ports:
                    raise self.error(
                        f"port {port} is already taken by {ports[port]}",
                        where=f"apps[{index}] (appID '{app.app_id}')",
                        key=key,
                    )
                ports[port] = f"{key} of '{app.app_id}'"

    # ------------------------------------------------------------------ fields

    def fields(self, raw: dict[Any, Any], where: str, *, shared_only: bool) -> dict[str, Any]:
        """Type-check every known key; warn about the rest. Null values count as unset."""
        known: dict[str, Kind] = dict(SHARED_KEYS)
        if shared_only:
            known.update(COMMON_ONLY_KEYS)
        else:
            known.update(APP_KEYS)
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                raise self.error(f"keys must be strings, got {_show(key)}", where=where)
            if key not in known:
                if shared_only and key in APP_KEYS:
                    self.warn(where, f"'{key}' is not shared; set it on each app (ignored)")
                else:
                    self.unknown_keys({key: value}, tuple(known), where)
                continue
            if value is None:
                continue
            values[key] = self.check(known[key], value, where, key)
        if "envFile" in values:
            self.warn(where, "'envFile' is not supported by daprforge yet (ignored)")
            values.pop("envFile")
        return values

    def check(self, kind: Kind, value: object, where: str, key: str) -> Any:
        def bad(expected: str) -> TemplateError:
            return self.error(f"expected {expected}, got {_show(value)}", where=where, key=key)

        if kind in ("str", "path"):
            if not _is_scalar(value):
                raise bad("a string")
            return _text(value)
        if kind in ("int", "port"):
            if not _is_int(value):
                raise bad("an integer")
            number = cast(int, value)
            if kind == "port":
                if number > 65535:
                    raise self.error(f"{number} is not a port (1-65535)", where=where, key=key)
                return number if number > 0 else None  # Dapr: <= 0 means "pick one"
            return number
        if kind == "bool":
            if not isinstance(value, bool):
                raise bad("true or false")
            return value
        if kind in ("list", "paths"):
            example = '["python3", "app.py"]' if key == "command" else '["./components"]'
            if not isinstance(value, list):
                raise bad(f"a list, e.g. {example}")
            if not all(_is_scalar(item) for item in value):
                raise bad(f"a list of strings, e.g. {example}")
            return [_text(item) for item in value]
        if kind == "map":
            if not isinstance(value, dict):
                raise bad("a mapping of names to values")
            env: dict[str, str] = {}
            for name, item in value.items():
                if not _is_scalar(name) or (item is not None and not _is_scalar(item)):
                    raise self.error(
                        f"'{name}' must map to a single value, got {_show(item)}",
                        where=where,
                        key=key,
                    )
                env[_text(name)] = "" if item is None else _text(item)
            return env
        if kind == "logdest":
            if value not in LOG_DESTINATIONS:
                raise bad("one of " + ", ".join(LOG_DESTINATIONS))
            return value
        raise AssertionError(kind)  # pragma: no cover

    def resolve_paths(self, values: dict[str, Any], base: Path, where: str) -> None:
        """Make path keys absolute (relative to ``base``) and check that they exist."""
        for key in ("configFilePath", "resourcesPath", "runtimePath"):
            if values.get(key):
                values[key] = self.existing(_absolute(values[key], base), where, key)
            else:
                values.pop(key, None)
        if "resourcesPaths" in values:
            values["resourcesPaths"] = [
                self.existing(_absolute(item, base), where, "resourcesPaths")
                for item in values["resourcesPaths"]
                if item.strip()
            ]

    def existing(self, path: Path, where: str, key: str) -> Path:
        if not path.exists():
            raise self.error(f"{path} does not exist", where=where, key=key)
        return path

    def unknown_keys(self, raw: dict[Any, Any], known: tuple[str, ...], where: str) -> None:
        for key in raw:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.warn(where, f"unknown key '{key}' ignored{hint}")


def _paths(values: dict[str, Any]) -> tuple[Path, ...]:
    """``resourcesPaths`` with the deprecated ``resourcesPath`` appended, as the Dapr CLI does."""
    paths: list[Path] = list(values.get("resourcesPaths", []))
    single = values.get("resourcesPath")
    if single is not None:
        paths.append(single)
    return tuple(paths)


def _absolute(text: str | Path, base: Path) -> Path:
    path = Path(os.path.expanduser(str(text)))
    return path if path.is_absolute() else (base / path).resolve()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "nothing"
    return type(value).__name__


def _show(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict | list):
        return _kind(value)
    if value is None:
        return "nothing"
    return f"{_kind(value)} ({_text(value)})"
