"""Component YAML loading: what users write, and the errors they see when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from daprforge.sidecar.components import registry
from daprforge.sidecar.components.loader import ResourceError, load_resources
from daprforge.sidecar.components.metadata import (
    ComponentConfigError,
    ComponentMetadata,
    parse_duration,
)
from daprforge.sidecar.options import parse_size
from daprforge.sidecar.state.keys import IllegalKeyError, key_prefix, original_key

STATE = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
auth:
  secretStore: local
spec:
  type: state.postgresql
  version: v2
  initTimeout: 10s
  metadata:
  - name: connectionString
    secretKeyRef: {name: pg, key: dsn}
  - name: timeout
    value: 30
  - name: actorStateStore
    value: true
  - name: tablePrefix
    envRef: TABLE_PREFIX
scopes: [exercises]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: sub}
spec: {pubsubname: pubsub, topic: t, routes: {default: /t}}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_loads_components_and_keeps_other_kinds(tmp_path: Path) -> None:
    resources = load_resources([write(tmp_path, "state.yaml", STATE)])
    [component] = resources.components
    assert (component.name, component.type, component.version) == (
        "statestore",
        "state.postgresql",
        "v2",
    )
    assert component.secret_store == "local"
    assert component.scopes == ("exercises",)
    assert component.scoped_to("exercises")
    assert not component.scoped_to("other")
    assert component.init_timeout == 10.0
    by_name = {item.name: item for item in component.metadata}
    assert (by_name["connectionString"].secret_name, by_name["connectionString"].secret_key) == (
        "pg",
        "dsn",
    )
    # YAML scalars become the strings Dapr sees.
    assert by_name["timeout"].value == "30"
    assert by_name["actorStateStore"].value == "true"
    assert by_name["tablePrefix"].env_ref == "TABLE_PREFIX"
    [(_, subscription)] = list(resources.of_kind("Subscription"))
    assert subscription["spec"]["topic"] == "t"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Component\nspec: {type: state.sqlite}\n", "metadata.name is required"),
        ("kind: Component\nmetadata: {name: s}\n", "'spec' is required"),
        ("kind: Component\nmetadata: {name: s}\nspec: {version: v1}\n", "spec.type is required"),
        (
            "kind: Component\nmetadata: {name: s}\nspec: {type: state.x, metadata: {a: b}}\n",
            "spec.metadata must be a list",
        ),
        (
            "kind: Component\nmetadata: {name: s}\nspec: {type: state.x, metadata: [{value: 1}]}\n",
            "spec.metadata[0] needs a non-empty 'name'",
        ),
        ("kind: Component\nmetadata: {name: [unclosed\n", "invalid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ResourceError) as caught:
        load_resources([write(tmp_path, "broken.yaml", text)])
    assert "broken.yaml" in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    component = "kind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory}\n"
    write(tmp_path, "a.yaml", component)
    write(tmp_path, "b.yml", component)
    with pytest.raises(ResourceError, match="defined twice"):
        load_resources([tmp_path])


def test_missing_resources_path(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="does not exist"):
        load_resources([tmp_path / "nope"])


def test_registry_names_supported_types_and_versions(tmp_path: Path) -> None:
    text = "kind: Component\nmetadata: {name: s}\nspec: {type: state.redis, version: v1}\n"
    [spec] = load_resources([write(tmp_path, "r.yaml", text)]).components
    with pytest.raises(ResourceError, match=r"supported types: .*state\.sqlite"):
        registry.resolve_version(spec)
    text = "kind: Component\nmetadata: {name: s}\nspec: {type: state.postgresql, version: v9}\n"
    [spec] = load_resources([write(tmp_path, "r.yaml", text)]).components
    with pytest.raises(ResourceError, match="use one of: v1, v2"):
        registry.resolve_version(spec)
    text = "kind: Component\nmetadata: {name: s}\nspec: {type: state.postgresql}\n"
    [spec] = load_resources([write(tmp_path, "r.yaml", text)]).components
    assert registry.resolve_version(spec) == "v1"  # daprd's default for postgres


def test_metadata_is_case_insensitive_and_typed() -> None:
    metadata = ComponentMetadata({"ConnectionString": "x", "timeout": "1m30s", "flag": "TRUE"})
    assert metadata["connectionstring"] == "x"
    assert metadata.duration("timeout", default=1) == 90
    assert metadata.boolean("flag") is True
    assert metadata.first("url", "connectionString") == "x"
    with pytest.raises(ComponentConfigError, match="'missing': is required"):
        metadata.require("missing")
    with pytest.raises(ComponentConfigError, match="duration"):
        ComponentMetadata({"t": "soon"}).duration("t", default=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20), ("1h", 3600), ("500ms", 0.5), ("1h30m", 5400), ("15", 15), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bare_duration_unit_is_the_callers() -> None:
    assert parse_duration("1500", bare_unit="ms") == 1.5


@pytest.mark.parametrize(
    ("text", "size"), [("4Mi", 4 * 2**20), ("512Ki", 512 * 1024), ("2M", 2_000_000), ("100", 100)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="4Mi"):
        parse_size("four megs")


@pytest.mark.parametrize(
    ("strategy", "prefix"),
    [("", "app||"), ("appid", "app||"), ("NAME", "store||"), ("none", ""), ("Custom", "custom||")],
)
def test_key_prefixes(strategy: str, prefix: str) -> None:
    assert key_prefix(strategy, "store", "app") == prefix


def test_namespace_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESPACE", "prod")
    assert key_prefix("namespace", "store", "app") == "prod.app||"
    monkeypatch.delenv("NAMESPACE")
    assert key_prefix("namespace", "store", "app") == "app||"


def test_illegal_prefix_and_original_key() -> None:
    with pytest.raises(IllegalKeyError):
        key_prefix("a||b", "store", "app")
    assert original_key("app||k") == "k"
    assert original_key("plain") == "plain"
