"""Read Dapr resource YAML (``--resources-path``) into typed component specs.

Only the file format is handled here: which types exist and how references resolve is the
registry's and the runtime's job. Every problem is a :class:`ResourceError` naming the
file, the field and what to write instead, because a typo in a component file is the most
common way a local run fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from daprforge.sidecar.components.metadata import parse_duration


class ResourceError(Exception):
    """A resource file that cannot be used; the message says where and why."""

    def __init__(self, source: Path | str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


@dataclass(frozen=True, slots=True)
class MetadataItem:
    """One ``spec.metadata`` entry: a plain value, a secret reference or an env reference."""

    name: str
    value: str | None = None
    secret_name: str | None = None
    secret_key: str | None = None
    env_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    name: str
    type: str
    version: str
    metadata: tuple[MetadataItem, ...]
    source: Path | str
    secret_store: str | None = None
    scopes: tuple[str, ...] = ()
    ignore_errors: bool = False
    init_timeout: float = 5.0
    """Seconds a component may take to start (``spec.initTimeout``, daprd's default 5s)."""

    @property
    def building_block(self) -> str:
        return self.type.split(".", 1)[0]

    def scoped_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes


@dataclass(slots=True)
class Resources:
    """Everything read from the resources paths, by kind."""

    components: list[ComponentSpec] = field(default_factory=list)
    other: list[tuple[Path | str, dict[str, Any]]] = field(default_factory=list)
    """Documents of other kinds (Subscription, Resiliency, ...) for the parts that use them."""

    def of_kind(self, kind: str) -> Iterator[tuple[Path | str, dict[str, Any]]]:
        return ((src, doc) for src, doc in self.other if doc.get("kind") == kind)


def _scalar_text(value: Any) -> str:
    # YAML reads `true` and `5` as bool/int; Dapr treats every metadata value as a string.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _parse_metadata(source: Path | str, items: Any) -> tuple[MetadataItem, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ResourceError(source, "spec.metadata must be a list of {name, value} entries")
    parsed: list[MetadataItem] = []
    for index, item in enumerate(items):
        where = f"spec.metadata[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ResourceError(source, f"{where} needs a non-empty 'name'")
        name = item["name"]
        if "secretKeyRef" in item:
            ref = item["secretKeyRef"]
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                raise ResourceError(
                    source, f"{where} ({name}): secretKeyRef needs 'name' (and optionally 'key')"
                )
            key = ref.get("key") or ref["name"]
            parsed.append(MetadataItem(name, secret_name=ref["name"], secret_key=str(key)))
        elif "envRef" in item:
            if not isinstance(item["envRef"], str) or not item["envRef"]:
                raise ResourceError(source, f"{where} ({name}): envRef must name a variable")
            parsed.append(MetadataItem(name, env_ref=item["envRef"]))
        else:
            parsed.append(MetadataItem(name, value=_scalar_text(item.get("value"))))
    return tuple(parsed)


def parse_component(source: Path | str, doc: dict[str, Any]) -> ComponentSpec:
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ResourceError(source, "metadata.name is required (the component's name)")
    name = meta["name"]
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ResourceError(source, f"component {name!r}: 'spec' is required")
    type_ = spec.get("type")
    if not isinstance(type_, str) or "." not in type_:
        raise ResourceError(
            source, f"component {name!r}: spec.type is required, e.g. 'state.sqlite'"
        )
    version = spec.get("version")
    if version is not None and not isinstance(version, str):
        raise ResourceError(source, f"component {name!r}: spec.version must be a string like v1")
    auth = doc.get("auth") or {}
    secret_store = auth.get("secretStore") if isinstance(auth, dict) else None
    scopes = doc.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ResourceError(source, f"component {name!r}: scopes must be a list of app ids")
    try:
        init_timeout = parse_duration(str(spec.get("initTimeout") or "5s"))
    except ValueError:
        raise ResourceError(
            source, f"component {name!r}: spec.initTimeout must be a duration such as 5s"
        ) from None
    return ComponentSpec(
        name=name,
        type=type_,
        version=version or "",
        metadata=_parse_metadata(source, spec.get("metadata")),
        source=source,
        secret_store=secret_store if isinstance(secret_store, str) and secret_store else None,
        scopes=tuple(scopes),
        ignore_errors=bool(spec.get("ignoreErrors", False)),
        init_timeout=init_timeout,
    )


def parse_documents(source: Path | str, text: str) -> Iterator[dict[str, Any]]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ResourceError(source, f"invalid YAML: {exc}") from None
    for doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ResourceError(source, "each YAML document must be a mapping with 'kind'")
        yield doc


def _resource_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ResourceError(path, "resources path does not exist (expected a folder of YAML)")
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def add_documents(resources: Resources, source: Path | str, text: str) -> None:
    for doc in parse_documents(source, text):
        if doc.get("kind") == "Component":
            resources.components.append(parse_component(source, doc))
        else:
            resources.other.append((source, doc))


def load_resources(paths: Iterable[Path]) -> Resources:
    """Read every ``*.yaml``/``*.yml`` file of the given folders (not recursive, as daprd)."""
    resources = Resources()
    for path in paths:
        for file in _resource_files(path):
            add_documents(resources, file, file.read_text(encoding="utf-8"))
    seen: dict[str, ComponentSpec] = {}
    for component in resources.components:
        if component.name in seen:
            first = seen[component.name]
            raise ResourceError(
                component.source,
                f"component {component.name!r} is defined twice (also in {first.source})",
            )
        seen[component.name] = component
    return resources
